"""Reading device and model catalog files into a `Catalog`.

The shipped `devices.toml` and `models.toml` come first; each extra file (`--catalog`,
a cluster's `device_files`, a calibrate profile) adds `[device.NAME]` / `[model.NAME]`
tables or overrides single keys of existing ones, so the raw keys of every entry are
kept next to its spec. A `[device.X]` table with `base = "H100"` derives a class.
"""

from __future__ import annotations

import dataclasses
import os
from importlib import resources
from typing import Any, Iterable

from agentc.catalog.specs import Catalog, DeviceSpec, ModelSpec, did_you_mean
from agentc.catalog.toml_source import TomlFile
from agentc.catalog.validate import DEVICE_CURVES, DEVICE_NUMBERS, DEVICE_STRINGS, check_model, check_name, device_from_table
from agentc.diagnostics import SourceLoc

__all__ = ["CatalogBuilder", "load_catalog", "load_device_profile", "load_device_tables", "package_file"]


def package_file(name: str) -> str:
    """Path of a TOML file shipped in this package."""
    return str(resources.files("agentc.catalog").joinpath(name))


def load_device_tables(tf: TomlFile, tables: Any, devices: dict[str, DeviceSpec],
                       raws: dict[str, dict]) -> None:
    """Add or override the `[device.NAME]` tables of one file (`raws`: keys so far)."""
    if not isinstance(tables, dict):
        raise tf.error("'device' must be a table of [device.NAME] tables", ("device",))
    for name, raw in tables.items():
        table = ("device", name)
        check_name(name, "device", lambda msg: tf.error(msg, table))
        base = raws.get(name)
        if isinstance(raw, dict) and "base" in raw:
            base_name = raw["base"]
            if not isinstance(base_name, str):
                raise tf.error(f"device '{name}': 'base' must be a string, got {base_name!r}", table, "base")
            if base_name not in raws:
                raise tf.error(f"unknown device type '{base_name}'", table, "base",
                               notes=did_you_mean(str(base_name), raws))
            base = {k: v for k, v in raws[base_name].items() if k != "base"}
        spec, merged = device_from_table(tf, name, raw, base, table)
        devices[name] = spec
        raws[name] = merged


def _load_model_tables(tf: TomlFile, tables: Any, models: dict[str, ModelSpec], raws: dict[str, dict]) -> None:
    if not isinstance(tables, dict):
        raise tf.error("'model' must be a table of [model.NAME] tables", ("model",))
    for name, raw in tables.items():
        table = ("model", name)
        check_name(name, "model", lambda msg: tf.error(msg, table))
        if not isinstance(raw, dict):
            raise tf.error(f"'model.{name}' must be a table", table)
        merged = dict(raws.get(name, {}))
        merged.update(raw)
        spec = check_model(name, merged, lambda msg, key, notes: tf.error(msg, table, key, notes=notes))
        models[name] = dataclasses.replace(spec, source=tf.path)
        raws[name] = merged


class CatalogBuilder:
    """Accumulates devices/models over several files, later files overriding earlier."""

    def __init__(self) -> None:
        self.devices: dict[str, DeviceSpec] = {}
        self.models: dict[str, ModelSpec] = {}
        self.device_raws: dict[str, dict] = {}
        self.model_raws: dict[str, dict] = {}
        self.files: list[str] = []

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> "CatalogBuilder":
        b = cls()
        b.devices = dict(catalog.devices)
        b.models = dict(catalog.models)
        b.files = list(catalog.files)
        b.device_raws = {n: _device_raw(d) for n, d in catalog.devices.items()}
        b.model_raws = {n: {f.name: getattr(m, f.name) for f in dataclasses.fields(ModelSpec)
                            if f.name not in ("name", "source")} for n, m in catalog.models.items()}
        return b

    def add_file(self, path: str, allowed: tuple[str, ...] = ("device", "model", "measured"),
                 loc: SourceLoc | None = None) -> TomlFile:
        """Add one catalog file's tables; `loc`: the entry that named the file."""
        tf = TomlFile(path, "catalog file", loc)
        expected = " or ".join(f"[{a}]" if a == "measured" else f"[{a}.NAME]" for a in allowed)
        for key in tf.data:
            if key not in allowed:
                raise tf.error(f"unexpected top-level key '{key}' in a catalog file (expected {expected})", (), key)
        if "device" in tf.data:
            load_device_tables(tf, tf.data["device"], self.devices, self.device_raws)
        if "model" in tf.data:
            _load_model_tables(tf, tf.data["model"], self.models, self.model_raws)
        self.files.append(path)
        return tf

    def build(self) -> Catalog:
        return Catalog(devices=dict(sorted(self.devices.items())), models=dict(sorted(self.models.items())),
                       files=tuple(self.files))


def _device_raw(d: DeviceSpec) -> dict:
    """TOML keys equivalent to a spec, so files can override single keys of it."""
    if d.is_abstract:
        raw: dict[str, Any] = {"kind": "abstract"}
        if d.given_usd_per_hr is not None:
            raw["given_usd_per_hr"] = d.given_usd_per_hr
        return raw
    raw = {k: getattr(d, k) for k in list(DEVICE_NUMBERS) + list(DEVICE_STRINGS)}
    raw = {k: v for k, v in raw.items() if v is not None}  # unset optional keys stay unset
    raw["dram_gbps" if d.is_cpu else "hbm_gbps"] = d.mem_gbps
    raw.update({k: [list(p) for p in getattr(d, k)] for k in DEVICE_CURVES if getattr(d, k)})
    return raw


def load_catalog(extra_files: Iterable[str | os.PathLike] = ()) -> Catalog:
    """The shipped devices and models, then each extra file adding or overriding."""
    b = CatalogBuilder()
    b.add_file(package_file("devices.toml"), ("device",))
    b.add_file(package_file("models.toml"), ("model",))
    for path in extra_files:
        b.add_file(os.fspath(path))
    return b.build()


def load_device_profile(path: str | os.PathLike) -> DeviceSpec:
    """The device described by a calibrate profile (exactly one `[device.NAME]` table;
    the `[measured]` table with raw figures is allowed and ignored here)."""
    tf = TomlFile(os.fspath(path), "device profile")
    for key in tf.data:
        if key not in ("device", "measured"):
            raise tf.error(f"unexpected top-level key '{key}' in a device profile", (), key)
    tables = tf.data.get("device")
    if not isinstance(tables, dict) or len(tables) != 1:
        raise tf.error("a device profile needs exactly one [device.NAME] table", ("device",))
    devices: dict[str, DeviceSpec] = {}
    load_device_tables(tf, tables, devices, {})
    (spec,) = devices.values()
    return spec

