"""Load a placed plan for the simulator: from a manifest (a file or an output
directory) or by compiling a `.agent` file in memory, and turn it into the small,
immutable structures the SimPy model walks.

The simulator reads the manifest and nothing else (schema 1.2 adds the control flow,
the data dependencies, busy/wait times and decode step tables it needs), so a plan
written yesterday simulates the same today, and the simulator never reaches into the
compiler's passes.
"""

from __future__ import annotations

import json
import os
from bisect import bisect_left
from dataclasses import dataclass, field, replace

from agentc.diagnostics import SimulationInputError, SourceLoc, UsageError, locate_in_file

SCHEMA_MAJOR_MINOR = (1, 2)  # the first manifest version carrying the simulation fields
DECODE_KINDS = ("llm.decode", "moe.expert_decode")


@dataclass(frozen=True)
class Decode:
    """Iteration-level decode: `tokens` steps per request, at most `max_batch` sequences
    per step, the step time interpolated linearly between the tabulated batch sizes."""

    tokens: int
    max_batch: int
    batches: tuple[int, ...]
    step_ms: tuple[float, ...]
    context: float = 0.0             # prompt tokens the sequence's KV cache starts with
    kv_bytes_per_token: float = 0.0  # KV cache of one token (all layers), 0 = not limited
    kv_budget_bytes: float = 0.0     # a tp group's memory left after the weights, 0 = no limit

    def step(self, batch: int) -> float:
        bs, ts = self.batches, self.step_ms
        if batch <= bs[0]:
            return ts[0]
        for i in range(1, len(bs)):
            if batch <= bs[i]:
                f = (batch - bs[i - 1]) / (bs[i] - bs[i - 1])
                return ts[i - 1] + f * (ts[i] - ts[i - 1])
        return ts[-1]


@dataclass(frozen=True)
class Prefill:
    """A prefill batch's time by its total prompt tokens (the cost model's, tabulated
    in the manifest at multiples of this op's prompt): linear between the points,
    proportional below the first, along the last segment's slope beyond the last."""

    tokens: tuple[float, ...]
    ms: tuple[float, ...]

    def at(self, total: float) -> float:
        xs, ys = self.tokens, self.ms
        if total <= xs[0] or len(xs) == 1:
            return ys[0] * total / xs[0]
        i = bisect_left(xs, total)
        if i >= len(xs):
            i = len(xs) - 1
        return ys[i - 1] + (total - xs[i - 1]) * (ys[i] - ys[i - 1]) / (xs[i] - xs[i - 1])


@dataclass(frozen=True)
class Op:
    id: str
    kind: str
    pool: str
    tp: int
    latency_ms: float   # the planner's time for one execution (busy + wait, or a whole batch)
    busy_ms: float      # device time one execution holds its tp devices
    region: str
    inputs: tuple[str, ...]
    call: str | None
    decode: Decode | None
    loc: str = ""
    tokens: int = 0       # prompt tokens (tokenize/prefill) or generated tokens (decode)
    start_ms: float = 0.0  # where the planner's path puts it (orders LLM calls)
    model: str | None = None  # decode ops of one model on one pool share their batches
    prefill: Prefill | None = None  # batched prefill time by total tokens, when the manifest has it
    # a split op (planner/split.py): (fraction, the op as that part runs it), each call
    # goes to one part drawn by the fractions; empty for an op on one pool
    parts: tuple = ()
    replicas: int = 1     # the servers the plan dedicates to it (what `agentc deploy` starts)


@dataclass(frozen=True)
class Edge:
    """A cross-pool transfer: `latency_ms` added, `wire_ms` at the link's full bandwidth
    (stretched when transfers share the link); `link` is None for a profiled latency."""

    src: str
    dst: str
    link: str | None
    latency_ms: float
    wire_ms: float


@dataclass
class Region:
    """A block of the program: the top level (""), a loop body, a branch (whose items
    are its arms), a branch arm, or a parallel block. `items` are op ids and child
    region ids in program order; `deps[i]` the items item i waits for."""

    id: str
    kind: str
    parent: str | None
    max_trips: int = 1
    continue_prob: float = 1.0
    prob: float = 1.0
    index: int = 0       # a branch arm's position: 0 = then, 1 = else
    items: list[str] = field(default_factory=list)
    deps: dict[str, tuple[str, ...]] = field(default_factory=dict)
    chain: bool = True   # items run one after another exactly as the dependencies require


@dataclass(frozen=True)
class SLA:
    e2e_ms: float | None
    percentile: float | None
    ttft_ms: float | None
    tbt_ms: float | None
    # the statistic per term ("e2e", "ttft", "tbt"): "all" (every control-flow path),
    # "mean" or "pNN", as the planner planned it (manifest sla.stats); empty in older manifests
    stats: tuple[tuple[str, str], ...] = ()


@dataclass
class Plan:
    agent: str
    source: str
    ops: dict[str, Op]
    regions: dict[str, Region]
    out_edges: dict[str, tuple[Edge, ...]]
    pools: dict[str, int]          # devices per pool
    links: dict[str, float]        # gbps per link (only for display)
    sla: SLA
    load_rps: float | None
    planned: dict                  # the manifest's totals
    ttft_ops: frozenset[str]       # decode ops whose output reaches the agent's result
    has_control_flow: bool


# ---------------------------------------------------------------------------- reading

def load(source: str, cluster: str | None = None, catalogs: tuple[str, ...] = ()) -> Plan:
    """A Plan from an `.agent` file, an output directory or a manifest.json."""
    if os.path.isdir(source):
        path = os.path.join(source, "manifest.json")
        if not os.path.isfile(path):
            raise UsageError(f"'{source}' is a directory without manifest.json")
        return from_manifest(_read_json(path), path)
    if source.endswith(".json"):
        if cluster is not None:
            raise UsageError("--cluster applies when compiling a .agent file; a manifest is already placed")
        return from_manifest(_read_json(source), source)
    if not os.path.isfile(source):
        raise UsageError(f"no such file: '{source}'")
    return from_manifest(compile_manifest(source, cluster, catalogs), source)


def compile_manifest(source: str, cluster: str | None, catalogs: tuple[str, ...]) -> dict:
    """The one place the simulator calls the compiler: plan `source` up to placement and
    build its manifest in memory (no code is generated)."""
    from agentc import pipeline
    from agentc.targets import manifest

    c = pipeline.compile_file(source, pipeline.Options(emit="placed", targets=(), cluster=cluster,
                                                       catalogs=tuple(catalogs)), or_later=True)
    pipeline.placement(c)
    return json.loads(manifest.dumps(manifest.build(c)))


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise UsageError(f"cannot read '{path}': {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise SimulationInputError(f"not a JSON manifest: {e.msg}", SourceLoc(path, e.lineno, e.colno)) from None


def _where(path: str, needle: str) -> SourceLoc:
    return locate_in_file(path, needle) if os.path.isfile(path) else SourceLoc(path, 1, 1)


def from_manifest(m: dict, path: str = "manifest.json") -> Plan:
    """Check a manifest dict and build the Plan; errors point into `path`."""
    if not isinstance(m, dict):
        raise SimulationInputError("the manifest is not a JSON object", SourceLoc(path, 1, 1))
    version = str(m.get("schema_version", ""))
    try:
        major_minor = tuple(int(x) for x in version.split(".")[:2])
    except ValueError:
        major_minor = ()
    if len(major_minor) != 2 or major_minor[0] != SCHEMA_MAJOR_MINOR[0] or major_minor < SCHEMA_MAJOR_MINOR:
        raise SimulationInputError(
            f"manifest schema version '{version}' cannot be simulated; this agentc simulates "
            f"{SCHEMA_MAJOR_MINOR[0]}.x from {SCHEMA_MAJOR_MINOR[0]}.{SCHEMA_MAJOR_MINOR[1]} on",
            _where(path, '"schema_version"'),
            ("recompile the program with this agentc (`agentc compile FILE.agent -o DIR`)",))
    ops_in = m.get("ops")
    if not isinstance(ops_in, list) or not ops_in or any("pool" not in o or "region" not in o for o in ops_in):
        raise SimulationInputError("the manifest has no placement (no placed ops with their regions)",
                                   _where(path, '"ops"'))
    ops = {}
    for o in ops_in:
        dec = o.get("decode")
        decode = None
        if dec:
            steps = sorted((int(b), float(t)) for b, t in dec["step_ms"])
            decode = Decode(int(dec["tokens"]), int(dec["max_batch"]), tuple(b for b, _ in steps),
                            tuple(t for _, t in steps), float(dec.get("context", 0.0)),
                            float(dec.get("kv_bytes_per_token", 0.0)), float(dec.get("kv_budget_bytes", 0.0)))
        pre = o.get("prefill")
        prefill = None
        if pre:
            pts = sorted((float(n), float(t)) for n, t in pre["step_ms"])
            prefill = Prefill(tuple(n for n, _ in pts), tuple(t for _, t in pts))
        ops[o["id"]] = Op(o["id"], o["kind"], o["pool"], int(o["tp"]), float(o["est_latency_ms"]),
                          float(o["busy_ms"]), o["region"], tuple(o.get("inputs", ())), o.get("call"),
                          decode, o.get("loc", ""), int(o.get("tokens", 0) or 0), float(o.get("start_ms", 0.0)),
                          o.get("model"), prefill, replicas=max(1, int(o.get("replicas", 1) or 1)))
    for o in ops_in:
        if o.get("split"):
            op = ops[o["id"]]
            # each part runs the op's call on its own pool, priced as planned there (the
            # batch engines are the primary pool's, so parts run at their planned times)
            ops[op.id] = replace(op, parts=tuple(
                (float(x["fraction"]), replace(op, pool=x["pool"], tp=int(x["tp"]),
                                               latency_ms=float(x["est_latency_ms"]), busy_ms=float(x["busy_ms"]),
                                               prefill=None, replicas=max(1, int(x.get("replicas", 1) or 1))))
                for x in o["split"]))
    for op in ops.values():
        for s in op.inputs:
            if s not in ops:
                raise SimulationInputError(f"op '{op.id}' reads '{s}', which the manifest does not list",
                                           _where(path, f'"{op.id}"'))
    totals = m.get("totals", {})
    load = (m.get("sla") or {}).get("load_rps")
    pools = {}
    for p in m.get("cluster", {}).get("pools", []):
        planned = (totals.get("devices") or {}).get(p["name"])
        # Under load the plan bought whole devices per pool; without a load clause the
        # plan is priced per use on the shared fleet, which then has all its devices.
        pools[p["name"]] = int(planned) if load and planned else int(p["count"])
    for op in [x for op in ops.values() for x in (op,) + tuple(part for _f, part in op.parts)]:
        if op.pool not in pools:
            raise SimulationInputError(f"op '{op.id}' is placed on pool '{op.pool}', which the cluster lacks",
                                       _where(path, f'"{op.id}"'))
        pools[op.pool] = max(pools[op.pool], op.tp)
    out_edges: dict[str, list[Edge]] = {}
    for e in m.get("edges", []):
        if e["src"] not in ops or e["dst"] not in ops:
            continue
        link = None if e.get("profiled") else e["link"]
        out_edges.setdefault(e["src"], []).append(
            Edge(e["src"], e["dst"], link, float(e.get("latency_ms", e["ms"])), float(e.get("wire_ms", 0.0))))
    regions = _regions(m.get("regions", {}), ops)
    sla_in = m.get("sla") or {}
    sla = SLA(sla_in.get("e2e_ms"), sla_in.get("percentile"), sla_in.get("ttft_ms"), sla_in.get("tbt_ms"),
              tuple(sorted((sla_in.get("stats") or {}).items())))
    return Plan(agent=m.get("agent", "agent"), source=path, ops=ops, regions=regions,
                out_edges={k: tuple(v) for k, v in sorted(out_edges.items())}, pools=dict(sorted(pools.items())),
                links={k: float(v["gbps"]) for k, v in sorted((m.get("links") or {}).items())},
                sla=sla, load_rps=float(load) if load else None, planned=totals,
                ttft_ops=_ttft_ops(ops, m.get("returns", [])),
                has_control_flow=any(r.kind in ("loop", "branch") for r in regions.values()))


def _regions(table: dict, ops: dict[str, Op]) -> dict[str, Region]:
    regions = {"": Region("", "root", None)}
    for rid, r in table.items():
        regions[rid] = Region(rid, r["kind"], r["parent"], max_trips=int(r.get("max_trips", 1)),
                              continue_prob=float(r.get("continue_prob", 1.0)), prob=float(r.get("prob", 1.0)),
                              index=int(r.get("index", 0)))
    # program order: regions were numbered in order; ops follow their manifest order,
    # which the dependencies below reorder as needed
    for rid in table:
        regions[table[rid]["parent"]].items.append(rid)
    for op in ops.values():
        regions[op.region].items.append(op.id)

    def chain_of(item: str) -> list[str]:
        """`item`'s region ancestry, innermost last, item itself at the end."""
        r = ops[item].region if item in ops else regions[item].parent
        out = [item]
        while r is not None:
            out.append(r)
            r = regions[r].parent
        return out[::-1]

    ancestry = {x: chain_of(x) for x in list(ops) + list(table)}
    for op in ops.values():
        for s in op.inputs:
            a, b = ancestry[op.id], ancestry[s]
            k = 0
            while k < min(len(a), len(b)) and a[k] == b[k]:
                k += 1
            # the first items where the two paths part are siblings in region a[k-1]
            if k < len(a) and k < len(b) and k > 0:
                region = regions[a[k - 1]]
                if region.kind != "branch":
                    deps = region.deps.setdefault(a[k], ())
                    if b[k] not in deps:
                        region.deps[a[k]] = deps + (b[k],)
    for region in regions.values():
        region.items = _topo(region.items, region.deps)
        region.deps = {k: tuple(sorted(v, key=region.items.index)) for k, v in region.deps.items()}
        region.chain = all(region.items[i - 1] in region.deps.get(region.items[i], ())
                           for i in range(1, len(region.items)))
    return regions


def _topo(items: list[str], deps: dict[str, tuple[str, ...]]) -> list[str]:
    """Items in an order that respects `deps`, otherwise in their given order."""
    done: list[str] = []
    placed: set[str] = set()
    pending = list(items)
    while pending:
        for i, x in enumerate(pending):
            if all(d in placed or d not in items for d in deps.get(x, ())):
                done.append(x)
                placed.add(x)
                del pending[i]
                break
        else:  # a cycle cannot come out of a compiled plan; keep the order rather than hang
            done += pending
            break
    return done


def _ttft_ops(ops: dict[str, Op], returns: list[str]) -> frozenset[str]:
    """Decode ops whose output reaches the agent's result (the ones TTFT is timed on)."""
    reach, todo = set(), [r for r in returns if r in ops]
    while todo:
        x = todo.pop()
        if x in reach:
            continue
        reach.add(x)
        todo.extend(ops[x].inputs)
    return frozenset(x for x in reach if ops[x].decode is not None)
