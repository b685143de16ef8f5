"""Reading a cluster inventory file into a `Cluster`.

A cluster file is what users pass around, so it is untrusted input: every key is
checked against the set this module knows, every number against its range and every
name against the name rule (`agentc.catalog.validate`), because pool names become
directories of the output and symbols of the generated code. The keys (documented in
the README, "Cluster files"):

- top level: `name`, `pricing` ("tco" | "capex" | "given"), `energy_usd_per_kwh`,
  `financing_years`, `interest_rate`, `device_files = [...]` (catalog or calibrate
  profile files, relative to the cluster file);
- `[device.NAME]`: full classes, overrides of catalog classes, `base = "H100"`
  derivations, or abstract classes with only `given_usd_per_hr` or nothing;
- `[[pool]]`: name, device, count, nodes; `[[link]]`: a, b, gbps (Gb/s), latency_ms;
  `[default_link]`: gbps, latency_ms, for pool pairs without a link;
- `[[profile]]`: measured overrides (op, device or from/to, latency_ms, usd_per_token or
  usd_per_call; for tool and remote-store ops the latency is waited, not paid, and
  usd_per_call is the API fee), as in the paper's Table 3 (arXiv 2507.19635).
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from agentc.catalog.catalogs import CatalogBuilder, load_device_tables, package_file
from agentc.catalog.specs import PRICING, Catalog, Cluster, DeviceSpec, Link, Pool, Profile, did_you_mean
from agentc.catalog.toml_source import TomlFile
from agentc.catalog.validate import MAX_DEVICES, check_name, number, string
from agentc.dialects.ops import canonical_kind, profile_op_names

__all__ = ["load_cluster", "list_files_used", "CLUSTER_KEYS", "POOL_KEYS", "LINK_KEYS", "DEFAULT_LINK_KEYS",
           "PROFILE_KEYS"]

CLUSTER_KEYS = ("name", "pricing", "energy_usd_per_kwh", "financing_years", "interest_rate",
                "device_files", "device", "pool", "link", "default_link", "profile")
POOL_KEYS = ("name", "device", "count", "nodes")
LINK_KEYS = ("a", "b", "gbps", "latency_ms")
DEFAULT_LINK_KEYS = ("gbps", "latency_ms")
PROFILE_KEYS = ("op", "device", "from", "to", "latency_ms", "usd_per_token", "usd_per_call")


def load_cluster(path: str | os.PathLike | None, catalog: Catalog) -> Cluster:
    """Read a cluster inventory (None: the shipped default mixed fleet)."""
    path = package_file("default_cluster.toml") if path is None else os.fspath(path)
    tf = TomlFile(path, "cluster file")
    data = tf.data
    _known_keys(tf, (), data, CLUSTER_KEYS, "cluster file")

    b = CatalogBuilder.from_catalog(catalog)
    files = [path]
    device_files = data.get("device_files", [])
    if not isinstance(device_files, list) or not all(isinstance(p, str) for p in device_files):
        raise tf.error("'device_files' must be a list of paths", (), "device_files")
    for rel in device_files:
        full = rel if os.path.isabs(rel) else os.path.join(os.path.dirname(path), rel)
        b.add_file(full, ("device", "model", "measured"), loc=tf.loc((), "device_files"))
        files.append(full)
    if "device" in data:
        load_device_tables(tf, data["device"], b.devices, b.device_raws)

    if "name" in data:
        name = string(tf, (), data, "name")
        check_name(name, "cluster", lambda msg: tf.error(msg, (), "name"))
    else:  # never a path or symbol: only shown and written into the manifest as a string
        name = os.path.splitext(os.path.basename(path))[0]
    pricing = string(tf, (), data, "pricing", PRICING) if "pricing" in data else "tco"
    energy = number(tf, (), data, "energy_usd_per_kwh", nonneg=True) if "energy_usd_per_kwh" in data else 0.40
    years = (number(tf, (), data, "financing_years", positive=True, high=100)
             if "financing_years" in data else 4)
    rate = number(tf, (), data, "interest_rate", nonneg=True, high=1) if "interest_rate" in data else 0.08

    pools = _load_pools(tf, data.get("pool"), b.devices)
    links = _load_links(tf, data.get("link", []), {p.name for p in pools})
    default_link = _load_default_link(tf, data["default_link"]) if "default_link" in data else None
    classes = {p.device.name for p in pools} | set(data.get("device", {}))
    profiles = _load_profiles(tf, data.get("profile", []), classes)
    return Cluster(name=name, pools=pools, links=links, energy_usd_per_kwh=energy, financing_years=years,
                   interest_rate=rate, pricing=pricing, profiles=profiles, default_link=default_link,
                   files=tuple(files))


def _known_keys(tf: TomlFile, table: tuple[str, ...], raw: Mapping[str, Any], allowed: tuple[str, ...],
                where: str, index: int = 0) -> None:
    """An unknown key is an error that lists the valid ones (and the closest)."""
    for key in raw:
        if key not in allowed:
            close = did_you_mean(key, allowed)
            notes = [n for n in close if n.startswith("did you mean")]
            notes.append(f"valid keys: {', '.join(allowed)}")
            raise tf.error(f"unknown key '{key}' in {where}", table, key, index, notes=notes)


def _array_of_tables(tf: TomlFile, value: Any, key: str) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise tf.error(f"'{key}' must be an array of tables ([[{key}]])", (), key)
    return value


def _required(tf: TomlFile, table: tuple[str, ...], raw: Mapping[str, Any], keys: Iterable[str], index: int) -> None:
    for key in keys:
        if key not in raw:
            raise tf.error(f"[[{table[0]}]] is missing '{key}'", table, None, index)


def _load_pools(tf: TomlFile, value: Any, devices: Mapping[str, DeviceSpec]) -> tuple[Pool, ...]:
    if value is None:
        raise tf.error("a cluster needs at least one [[pool]]")
    pools: list[Pool] = []
    folded: dict[str, str] = {}  # lower-cased name -> name: output directories on case-insensitive file systems
    for i, raw in enumerate(_array_of_tables(tf, value, "pool")):
        table = ("pool",)
        _known_keys(tf, table, raw, POOL_KEYS, "[[pool]]", i)
        _required(tf, table, raw, ("name", "device", "count"), i)
        name = string(tf, table, raw, "name", index=i)
        check_name(name, "pool", lambda msg: tf.error(msg, table, "name", i))
        dev_name = string(tf, table, raw, "device", index=i)
        if dev_name not in devices:
            raise tf.error(f"unknown device type '{dev_name}' in pool '{name}'", table, "device", i,
                           notes=did_you_mean(dev_name, devices))
        what = f"pool '{name}': "
        count = number(tf, table, raw, "count", index=i, positive=True, integer=True, what=what, high=MAX_DEVICES)
        nodes = (number(tf, table, raw, "nodes", index=i, positive=True, integer=True, what=what, high=MAX_DEVICES)
                 if "nodes" in raw else 1)
        if nodes > count:
            raise tf.error(f"{what}{nodes} nodes for {count} devices", table, "nodes", i)
        if name.lower() in folded:
            same = folded[name.lower()]
            raise tf.error(f"duplicate pool name '{name}'" if same == name else
                           f"pool names '{same}' and '{name}' differ only in case (they name one output "
                           f"directory on case-insensitive file systems)", table, "name", i)
        folded[name.lower()] = name
        pools.append(Pool(name, devices[dev_name], count, nodes))
    return tuple(pools)


def _load_links(tf: TomlFile, value: Any, pools: set[str]) -> tuple[Link, ...]:
    links: list[Link] = []
    linked: set[frozenset[str]] = set()
    for i, raw in enumerate(_array_of_tables(tf, value, "link")):
        table = ("link",)
        _known_keys(tf, table, raw, LINK_KEYS, "[[link]]", i)
        _required(tf, table, raw, ("a", "b", "gbps"), i)
        ends = []
        for key in ("a", "b"):
            end = string(tf, table, raw, key, index=i)
            if end not in pools:
                raise tf.error(f"link endpoint {end!r} is not a pool", table, key, i,
                               notes=did_you_mean(end, pools))
            ends.append(end)
        if ends[0] == ends[1]:
            raise tf.error("a link must join two different pools", table, "b", i)
        if frozenset(ends) in linked:
            raise tf.error(f"pools '{ends[0]}' and '{ends[1]}' are already linked (links are undirected)",
                           table, "a", i)
        linked.add(frozenset(ends))
        gbps = number(tf, table, raw, "gbps", index=i, positive=True, what="link: ")
        lat = number(tf, table, raw, "latency_ms", index=i, nonneg=True, what="link: ") if "latency_ms" in raw else 0.0
        links.append(Link(ends[0], ends[1], gbps, lat))
    return tuple(links)


def _load_default_link(tf: TomlFile, raw: Any) -> Link:
    table = ("default_link",)
    if not isinstance(raw, dict):
        raise tf.error("'default_link' must be a table ([default_link])", (), "default_link")
    _known_keys(tf, table, raw, DEFAULT_LINK_KEYS, "[default_link]")
    if "gbps" not in raw:
        raise tf.error("[default_link] needs 'gbps'", table)
    gbps = number(tf, table, raw, "gbps", positive=True, what="default_link: ")
    lat = number(tf, table, raw, "latency_ms", nonneg=True, what="default_link: ") if "latency_ms" in raw else 0.0
    return Link("*", "*", gbps, lat)


def _load_profiles(tf: TomlFile, value: Any, classes: set[str]) -> tuple[Profile, ...]:
    profiles: list[Profile] = []
    seen: set[tuple[str, str | None, str | None, str | None]] = set()  # (canonical kind, device, from, to)
    for i, raw in enumerate(_array_of_tables(tf, value, "profile")):
        table = ("profile",)
        _known_keys(tf, table, raw, PROFILE_KEYS, "[[profile]]", i)
        _required(tf, table, raw, ("op", "latency_ms"), i)
        op = string(tf, table, raw, "op", index=i)
        kind = canonical_kind(op)
        if kind is None:
            raise tf.error(f"unknown op kind {op!r} in [[profile]]", table, "op", i,
                           notes=did_you_mean(op, profile_op_names()))
        if ("device" in raw) == ("from" in raw or "to" in raw) or (("from" in raw) != ("to" in raw)):
            raise tf.error("a [[profile]] names either 'device' or both 'from' and 'to'", table, "op", i)
        names = {}
        for key in ("device", "from", "to"):
            if key in raw:
                names[key] = string(tf, table, raw, key, index=i)
                if names[key] not in classes:
                    raise tf.error(f"unknown device type {names[key]!r} in [[profile]]", table, key, i,
                                   notes=did_you_mean(names[key], classes))
        if "usd_per_token" in raw and "usd_per_call" in raw:
            raise tf.error("a [[profile]] sets 'usd_per_token' or 'usd_per_call', not both", table,
                           "usd_per_call", i)
        prices = {k: number(tf, table, raw, k, index=i, nonneg=True, what="profile: ")
                  for k in ("usd_per_token", "usd_per_call") if k in raw}
        where = (kind, names.get("device"), names.get("from"), names.get("to"))
        if where in seen:
            raise tf.error(f"a second [[profile]] for op '{op}' on the same device", table, "op", i)
        seen.add(where)
        latency = number(tf, table, raw, "latency_ms", index=i, nonneg=True, what="profile: ")
        profiles.append(Profile(op=op, latency_ms=latency, device=names.get("device"), src=names.get("from"),
                                dst=names.get("to"), **prices))
    return tuple(profiles)


def list_files_used(catalog: Catalog | None = None, cluster: Cluster | None = None) -> list[str]:
    """Every catalog and cluster file read, sorted: the inputs of a Make depfile."""
    files: set[str] = set()
    if catalog is not None:
        files.update(catalog.files)
    if cluster is not None:
        files.update(cluster.files)
    return sorted(files)
