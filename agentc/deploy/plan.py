"""What every deploy format reads from a manifest: LLM groups, pool parts, device facts.

`agentc deploy` reads `manifest.json` and nothing else (never the compiler's passes), so
a plan written by `agentc compile` (or re-planned later) is all a serving stack needs.
One LLM call of the source decomposes into tokenize, prefill, KV transfer, decode,
sample and detokenize; serving engines (vLLM, SGLang, Ray Serve LLM, Dynamo, llm-d)
do tokenizing and sampling inside the engine, so a call becomes one serving group: its
prefill role and decode role with the plan's pool, device class, tp and replicas. Calls
to the same model placed the same way share one group (one server set serves both
call sites; replicas add up, as each op's replicas were sized for its own traffic).
A group whose prefill and decode share a pool and tp is served aggregated (one engine
does both phases, as the plan time-shares that pool's devices); otherwise it is
disaggregated, with the KV cache moving prefill pool -> decode pool.

Everything else (speech, embeddings, retrieval, tools, compute) stays in its pool,
run by agentc's own pool actors; formats that serve only LLMs state those parts in
`Deployment.notes` instead of dropping them.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field

from agentc.diagnostics import SourceLoc, UsageError, locate_in_file

MANIFEST_MAJOR = "1."

# Ray's accelerator_type labels (ray.util.accelerators) for the catalog's device classes;
# a class Ray has no label for (A40) is pinned by the pool's custom resource alone.
RAY_ACCELERATOR = {
    "A100": "A100", "H100": "H100", "B200": "B200", "L40S": "L40S",
    "MI300x": "AMD-Instinct-MI300X-OAM", "Gaudi3": "Intel-GAUDI",
}

# Per vendor: the Ray resource one device counts as, the Kubernetes extended resource of
# its device plugin, and the variable that picks devices on a host.
VENDORS = {
    "nvidia": ("GPU", "nvidia.com/gpu", "CUDA_VISIBLE_DEVICES"),
    "amd": ("GPU", "amd.com/gpu", "HIP_VISIBLE_DEVICES"),
    "intel-gaudi": ("HPU", "habana.ai/gaudi", "HABANA_VISIBLE_MODULES"),
    "cpu": ("CPU", "cpu", None),
}
_TARGET_VENDOR = {"nvvm": "nvidia", "rocdl": "amd", "llvm-cpu": "cpu"}
_DEVICE_VENDOR = {"Gaudi3": "intel-gaudi"}

# Published checkpoints of the catalog's models (Hugging Face ids), matched by shape.
MODEL_SOURCES = {
    "llama3-8b": "meta-llama/Meta-Llama-3-8B-Instruct",
    "llama3-70b": "meta-llama/Meta-Llama-3-70B-Instruct",
    "mixtral-8x7b": "mistralai/Mixtral-8x7B-Instruct-v0.1",
}
_SHAPE_KEYS = ("kind", "layers", "d_model", "heads", "kv_heads", "ffn", "vocab", "experts", "top_k")
# dtypes a serving engine loads by on-the-fly quantization (vLLM/SGLang --quantization).
QUANTIZATION = {"fp8": "fp8"}

LLM_PHASES = {"llm.prefill": "prefill", "llm.decode": "decode"}
ENGINE_SIDE = {"llm.tokenize", "llm.sample", "llm.detokenize"}


@dataclass(frozen=True)
class Device:
    """A pool's device class as serving stacks name it."""

    pool: str
    device_class: str
    target: str
    vendor: str | None  # None: a class agentc knows no vendor for (a profiled abstraction)

    @property
    def ray_resource(self) -> str:
        return VENDORS[self.vendor][0] if self.vendor else "GPU"

    @property
    def k8s_resource(self) -> str:
        # An unknown class is asked for as its own extended resource, which the cluster's
        # device plugin (or an admin) must advertise: nothing is assumed about its vendor.
        return VENDORS[self.vendor][1] if self.vendor else f"agentc.dev/{slug(self.device_class)}"

    @property
    def visible_devices_env(self) -> str | None:
        return VENDORS[self.vendor][2] if self.vendor else None

    @property
    def accelerator_type(self) -> str | None:
        return RAY_ACCELERATOR.get(self.device_class)

    @property
    def has_code(self) -> bool:
        return self.target != "none"


@dataclass(frozen=True)
class Role:
    """One serving role (prefill, decode, or both when aggregated) of an LLM group."""

    phase: str  # prefill | decode | both
    device: Device
    tp: int
    replicas: int
    ops: tuple[str, ...]


@dataclass(frozen=True)
class LLMGroup:
    name: str
    model: str
    model_source: str
    model_known: bool
    quantization: str | None
    calls: tuple[str, ...]
    roles: tuple[Role, ...]  # (prefill, decode), or (both,) when aggregated
    engine_ops: tuple[str, ...]  # tokenize/sample/detokenize the engine does itself

    @property
    def aggregated(self) -> bool:
        return len(self.roles) == 1

    @property
    def kv_transfer(self) -> tuple[str, str] | None:
        """(from pool, to pool) of the KV cache, None when aggregated."""
        return None if self.aggregated else (self.roles[0].device.pool, self.roles[1].device.pool)


@dataclass(frozen=True)
class PoolPart:
    """The non-LLM ops of one pool, run by agentc's pool actors."""

    device: Device
    ops: tuple[str, ...]
    kinds: tuple[str, ...]
    tp: int
    replicas: int


@dataclass
class Deployment:
    agent: str
    llms: list[LLMGroup]
    pools: list[PoolPart]
    notes: list[str] = field(default_factory=list)


def slug(name: str) -> str:
    """A DNS-1123 label (Kubernetes names, Serve names) for an agentc name."""
    s = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return s or "x"


def manifest_path(path: str) -> str:
    if os.path.isdir(path):
        path = os.path.join(path, "manifest.json")
    if not os.path.isfile(path):
        raise UsageError(f"no manifest at '{path}'; pass an `agentc compile -o DIR` output directory "
                         f"or its manifest.json")
    return path


def load(path: str) -> dict:
    """The manifest at `path` (a compile output directory or the JSON file), checked."""
    path = manifest_path(path)
    try:
        with open(path, encoding="utf-8") as f:
            m = json.load(f)
    except json.JSONDecodeError as e:
        raise UsageError(f"'{path}' is not JSON: {e.msg}", SourceLoc(path, e.lineno, e.colno)) from None
    except UnicodeDecodeError:
        raise UsageError(f"'{path}' is not JSON: it is not UTF-8 text", SourceLoc(path, 1, 1)) from None
    except OSError as e:
        raise UsageError(f"cannot read manifest '{path}': {e.strerror}") from None
    if not isinstance(m, dict) or "schema_version" not in m:
        raise UsageError(f"'{path}' is not an agentc manifest (no schema_version)", SourceLoc(path, 1, 1))
    version = str(m["schema_version"])
    if not version.startswith(MANIFEST_MAJOR):
        raise UsageError(f"manifest schema version {version!r}; agentc deploy reads 1.x",
                         locate_in_file(path, '"schema_version"'))
    for key, kind in (("ops", list), ("cluster", dict), ("agent", str)):
        if not isinstance(m.get(key), kind):
            raise UsageError(f"the manifest has no '{key}'; was it written by `agentc compile`?",
                             SourceLoc(path, 1, 1))
    pools = {p.get("name") for p in m["cluster"].get("pools", []) if isinstance(p, dict)}
    for o in m["ops"]:
        if not (isinstance(o, dict) and isinstance(o.get("id"), str) and isinstance(o.get("kind"), str)
                and o.get("pool") in pools and isinstance(o.get("tp"), int) and isinstance(o.get("replicas"), int)):
            where = o.get("id") if isinstance(o, dict) else o
            raise UsageError(f"the manifest's op {where!r} lacks an id, kind, known pool, tp or replicas",
                             locate_in_file(path, f'"{where}"') if isinstance(where, str) else SourceLoc(path, 1, 1))
    split = [o["id"] for o in m["ops"] if o.get("split")]
    if split:  # one engine per op and pool here; a split op needs one per part (planner/split.py)
        raise UsageError(f"op '{split[0]}' is split over pools ("
                         + ", ".join(f"{s.get('pool')} {s.get('fraction')}" for s in
                                     next(o for o in m["ops"] if o["id"] == split[0])["split"])
                         + "); agentc deploy does not write configs for split ops yet: give the pool enough "
                         "devices for the whole op, or lower the load", locate_in_file(path, f'"id": "{split[0]}"'))
    llm_ops = [o for o in m["ops"] if o["kind"] in LLM_PHASES]
    if any("call" not in o or "model" not in o for o in llm_ops):
        raise UsageError("the manifest's LLM ops lack 'model' and 'call' (written by an older agentc); "
                         "compile the source again", locate_in_file(path, '"llm.prefill"'))
    return m


def _devices(m: dict) -> dict[str, Device]:
    out = {}
    for p in m["cluster"].get("pools", []):
        vendor = _TARGET_VENDOR.get(p["target"]) or _DEVICE_VENDOR.get(p["device"])
        out[p["name"]] = Device(p["name"], p["device"], p["target"], vendor)
    return out


def _catalog_shapes() -> dict[tuple, str]:
    import agentc.catalog

    path = os.path.join(os.path.dirname(agentc.catalog.__file__), "models.toml")
    with open(path, "rb") as f:
        models = tomllib.load(f)["model"]
    return {_shape(spec): name for name, spec in models.items()}


def _shape(spec: dict) -> tuple:
    defaults = {"experts": 1, "top_k": 1}
    return tuple(spec.get(k, defaults.get(k)) for k in _SHAPE_KEYS)


def model_source(name: str, arch: dict | None, overrides: dict[str, str]) -> tuple[str, bool]:
    """(what the engine loads, whether agentc knows it): an override, else the published
    checkpoint of the catalog model with this shape, else the declared name as a placeholder."""
    if name in overrides:
        return overrides[name], True
    catalog_name = _catalog_shapes().get(_shape(arch)) if arch else None
    if catalog_name in MODEL_SOURCES:
        return MODEL_SOURCES[catalog_name], True
    return name, False


def build(m: dict, model_overrides: dict[str, str] | None = None) -> Deployment:
    """Group the manifest's ops into LLM serving groups and per-pool parts."""
    overrides = model_overrides or {}
    devices = _devices(m)
    ops = sorted(m["ops"], key=lambda o: o["id"])
    models = m.get("models", {})
    notes: list[str] = []

    calls: dict[str, dict[str, dict]] = {}
    for o in ops:
        if o["kind"] in LLM_PHASES:
            calls.setdefault(o["call"], {})[LLM_PHASES[o["kind"]]] = o
    engine_side: dict[str, list[str]] = {}
    for o in ops:
        if o["kind"] in ENGINE_SIDE and o.get("call") in calls:
            engine_side.setdefault(o["call"], []).append(o["id"])

    groups: dict[tuple, dict] = {}
    for call, phases in sorted(calls.items()):
        if set(phases) != {"prefill", "decode"}:
            notes.append(f"LLM call '{call}' has no {'decode' if 'prefill' in phases else 'prefill'} op "
                         f"in the plan; not exported")
            continue
        p, d = phases["prefill"], phases["decode"]
        key = (p["model"], p["pool"], p["tp"], d["pool"], d["tp"])
        g = groups.setdefault(key, {"calls": [], "p": [], "d": [], "engine": []})
        g["calls"].append(call)
        g["p"].append(p)
        g["d"].append(d)
        g["engine"] += engine_side.get(call, [])

    llms = []
    used_names: set[str] = set()
    for (model, ppool, ptp, dpool, dtp), g in sorted(groups.items()):
        arch = models.get(model)
        source, known = model_source(model, arch, overrides)
        if not known:
            notes.append(f"model '{model}': no published checkpoint matches its architecture; the "
                         f"configs load '{model}' (pass --model {model}=SOURCE to name it)")
        name = slug(model)
        if name in used_names:
            name = slug(f"{model}-{g['calls'][0]}")
        used_names.add(name)
        prep = sum(o["replicas"] for o in g["p"])
        drep = sum(o["replicas"] for o in g["d"])
        pids = tuple(o["id"] for o in g["p"])
        dids = tuple(o["id"] for o in g["d"])
        if ppool == dpool and ptp == dtp:
            roles = (Role("both", devices[ppool], ptp, max(prep, drep), pids + dids),)
        else:
            roles = (Role("prefill", devices[ppool], ptp, prep, pids), Role("decode", devices[dpool], dtp, drep, dids))
        quant = QUANTIZATION.get((arch or {}).get("dtype"))
        llms.append(LLMGroup(name, model, source, known, quant, tuple(g["calls"]), roles, tuple(sorted(g["engine"]))))
        for r in roles:
            if r.device.vendor is None:
                notes.append(f"device class '{r.device.device_class}' (pool {r.device.pool}) has no known vendor: "
                             f"it is requested as '{r.device.k8s_resource}' on Kubernetes and as Ray's "
                             f"'{r.device.ray_resource}' plus the pool's resource")

    by_id = {o["id"]: o for o in ops}
    for g in llms:  # an engine samples and detokenizes where it runs, whatever pool the plan chose
        engine_pools = sorted({r.device.pool for r in g.roles})
        for i in g.engine_ops:
            if by_id[i]["pool"] not in engine_pools:
                notes.append(f"op {i} is planned on pool {by_id[i]['pool']} but runs inside the "
                             f"'{g.name}' engine on {' and '.join(engine_pools)}")
    in_llm = {i for g in llms for r in g.roles for i in r.ops} | {i for g in llms for i in g.engine_ops}
    by_pool: dict[str, list[dict]] = {}
    for o in ops:
        if o["id"] not in in_llm:
            by_pool.setdefault(o["pool"], []).append(o)
    pools = []
    for pool, pops in sorted(by_pool.items()):
        dev = devices[pool]
        part = PoolPart(dev, tuple(o["id"] for o in pops), tuple(sorted({o["kind"] for o in pops})),
                        max(o["tp"] for o in pops), max(o["replicas"] for o in pops))
        if not dev.has_code:
            notes.append(f"pool {pool} ({dev.device_class}) has no code (target 'none': no upstream "
                         f"compiler backend), so its ops cannot run there: {', '.join(part.ops)}")
        pools.append(part)
    return Deployment(m["agent"], llms, pools, notes)


def pool_resource(pool: str) -> str:
    """The Ray custom resource that pins work to a pool (`agentc run --ray` names nodes so)."""
    return f"agentc_pool_{pool}"


def yaml_text(docs: list[dict], comments: list[str]) -> bytes:
    """YAML documents with `#` comment lines on top; keys sorted, so bytes are stable."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data):  # repeated label maps stay spelled out, not &id001
            return True

    head = "".join(f"# {line}\n" if line else "#\n" for line in comments)
    body = "---\n".join(yaml.dump(d, Dumper=Dumper, sort_keys=True, default_flow_style=False, width=1000)
                         for d in docs)
    return (head + body).encode()


def stated(dep: Deployment, extra: list[str] = ()) -> list[str]:
    """The notes every format states: what the plan holds that this output does not run."""
    return list(dep.notes) + list(extra)
