"""Device and model catalogs and cluster inventories, loaded from TOML.

The planner needs numbers about hardware (peak rates, memory, prices, fabric) and about
models (shapes, from which FLOPs and bytes follow). Those numbers are data, shipped as
package TOML files (`devices.toml`, `models.toml`, `default_cluster.toml`) that users
extend with their own files. The package is split by concern:

- `specs`: the frozen dataclasses and the one dtype table (no file reading);
- `toml_source`: a parsed TOML file with the line and column of every table and key,
  since `tomllib` keeps no positions and every mistake is reported at its key;
- `validate`: typed value readers, ranges, the name rule, device and model checks;
- `catalogs`: catalog files (`[device.NAME]`, `[model.NAME]`, overrides, `base`);
- `clusters`: cluster inventories (`[[pool]]`, `[[link]]`, `[[profile]]`, pricing).

This module re-exports the public names, so `from agentc.catalog import X` is the API.
"""

from __future__ import annotations

from agentc.catalog.catalogs import load_catalog, load_device_profile
from agentc.catalog.clusters import list_files_used, load_cluster
from agentc.catalog.specs import (DTYPE_BYTES, Catalog, Cluster, DeviceSpec, Link, ModelSpec, Pool, Profile,
                                  bytes_per_elem)
from agentc.catalog.validate import model_from_decl

__all__ = [
    "DTYPE_BYTES", "DeviceSpec", "ModelSpec", "Pool", "Link", "Profile", "Cluster", "Catalog",
    "load_catalog", "load_cluster", "load_device_profile", "model_from_decl",
    "list_files_used", "bytes_per_elem",
]
