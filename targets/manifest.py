"""The placement manifest (`manifest.json`): what runs where, why, and what was built.

It is the contract with a runtime and with CI (`agentc check` diffs two of them), so it
is deterministic: keys sorted, floats rounded to 6 significant digits, paths relative,
no timestamps; the solver's wall time is left out for that reason. Its JSON Schema is
`docs/manifest.schema.json`; tests validate every example's manifest against it.
"""

from __future__ import annotations

import hashlib
import json
import os

from agentc.planner.queueing import LIGHT_LOAD_RPS
from agentc.planner.scenarios import continue_prob

SCHEMA_VERSION = "1.3"


def _r(x):
    if x is None:
        return None
    if isinstance(x, float):
        return float(f"{x:.6g}")
    return x


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def build(c) -> dict:
    """The manifest of a finished compile (needs the `placed` stage's plan)."""
    from agentc.passes._ir import get, source_loc
    from agentc.passes._plan_ctx import entry_graph, excluded_plans, sized_bounds

    plan, problem, labels = c.placement.plan, c.placement.problem, c.placement.labels
    cluster = c.pass_ctx.cluster
    graph = entry_graph(c.module)
    pools = {p.name: p for p in cluster.pools}

    inputs, seen = [], set()
    for path, digest in sources(c) + [(p, None) for p in c.pass_ctx.files]:
        if path in seen or (digest is None and not os.path.isfile(path)):
            continue
        seen.add(path)
        inputs.append({"path": _display(path), "sha256": digest or _sha(_read(path))})

    weights = {op.id: op.weight for op in problem.ops}
    edge_bytes: dict[tuple[str, str], float] = {}
    for e in problem.edges:
        edge_bytes[(e.src, e.dst)] = edge_bytes.get((e.src, e.dst), 0.0) + e.bytes
    ops = []
    for op_id in sorted(plan.ops):
        p = plan.ops[op_id]
        op = labels[op_id]
        loc = source_loc(op)
        ru = p.runner_up
        ops.append({
            "id": op_id, "kind": op.name, "loc": str(loc) if loc else "",
            "device_class": pools[p.pool].device.name, "device": pools[p.pool].device.name,
            "pool": p.pool, "tp": p.option.tp,
            "replicas": p.replicas, "weight": _r(weights.get(op_id, 1.0)),
            # a decode's at the batch its traffic fills (planner/queueing.py), as the plan's latency counts it
            "est_latency_ms": _r(p.option.time_ms if p.time_ms is None else p.time_ms),
            "usd_per_call": _r(p.option.usd_per_call),
            "start_ms": _r(p.start_ms), "finish_ms": _r(p.finish_ms), "slack_ms": _r(p.slack_ms),
            "binding_resource": p.option.note,
            "runner_up": None if ru is None else {"pool": ru.pool, "tp": ru.option.tp,
                                                  "delta_ms": _r(ru.delta_ms), "delta_cost": _r(ru.delta_cost),
                                                  "feasible": ru.feasible},
            **call_fields(op),
        })
        if p.split:  # a split op (planner/split.py): the fields above are its largest part's
            ops[-1]["split"] = [{"pool": s.pool, "device": pools[s.pool].device.name, "fraction": _r(s.fraction),
                                 "tp": s.option.tp, "replicas": s.replicas, "devices": s.devices,
                                 "est_latency_ms": _r(s.option.time_ms), "busy_ms": _r(s.option.busy_ms),
                                 "queue_wait_ms": _r(s.wait_ms), "usd_per_call": _r(s.option.usd_per_call)}
                                for s in p.split]
    edges = [{"src": e.src, "dst": e.dst, "src_pool": e.src_pool, "dst_pool": e.dst_pool,
              "bytes": _r(edge_bytes.get((e.src, e.dst), 0.0)), "link": f"{e.src_pool}<->{e.dst_pool}",
              "ms": _r(e.ms), "usd": _r(e.usd)} for e in sorted(plan.edges, key=lambda e: (e.src, e.dst))]
    tokens = problem.tokens_per_request
    usd_req = plan.usd_per_request
    totals = {
        "e2e_ms": _r(plan.e2e_ms), "ttft_ms": _r(plan.ttft_ms), "tbt_ms": _r(plan.tbt_ms),
        "usd_per_hr": _r(plan.usd_per_hr), "usd_per_request": _r(usd_req),
        "usd_per_1m_requests": _r(usd_req * 1e6),
        "usd_per_1m_tokens": _r(usd_req / tokens * 1e6) if tokens else None,
        "devices": dict(sorted(plan.devices.items())),
    }
    baselines = [{"name": b.name, "feasible": b.feasible, "cost": _r(b.cost), "e2e_ms": _r(b.e2e_ms),
                  "ratio": _r(b.ratio), "reason": b.reason, "status": b.status, "gap": _r(b.gap)}
                 for b in plan.baselines]
    artifacts = []
    meta = c.artifact_meta
    for path in sorted(c.artifacts):
        if path.startswith("."):
            continue
        m = meta.get(path, {})
        artifacts.append({"path": path, "sha256": _sha(c.artifacts[path]), "bytes": len(c.artifacts[path]),
                          "pool": m.get("pool"), "target": m.get("target"), "kind": m.get("kind"),
                          "note": m.get("note"), **launch_fields(m)})
    sla = {"e2e_ms": get(graph, "sla_latency_ms"), "percentile": get(graph, "sla_percentile"),
           "ttft_ms": get(graph, "sla_ttft_ms"), "tbt_ms": get(graph, "sla_tbt_ms"),
           "load_rps": get(graph, "load_rps"), "mode": c.options.sla_mode,
           # the arrival rate latency terms are planned at: the load, else the light rate
           "latency_rps": get(graph, "load_rps") or LIGHT_LOAD_RPS,
           "worst_case": c.options.worst_case,
           # the statistic each term holds at over control-flow paths: all, mean, pNN
           "stats": dict(sorted(plan.stats.items()))}
    sized = sized_bounds(graph)
    if sized:   # the bounds the plan was sized to so that its prediction holds the SLA (agentc/promise.py)
        sla["sized_ms"] = {("e2e" if t == "latency" else t) + "_ms": v for t, v in sorted(sized.items())}
    excluded = len(excluded_plans(graph))
    if excluded:   # plans the MILP preferred, predicted to miss the SLA (agentc/promise.py)
        sla["excluded_plans"] = excluded
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "agent": get(graph, "sym_name"),
        "inputs": inputs,
        "cluster": {"name": cluster.name, "pricing": cluster.pricing,
                    "pools": [{"name": p.name, "device": p.device.name, "count": p.count,
                               "target": p.device.target, "chip": p.device.chip} for p in cluster.pools]},
        "sla": sla,
        "objective": plan.objective,
        "ops": ops,
        "edges": edges,
        "totals": totals,
        "baselines": baselines,
        "solver": {"name": "HiGHS", "status": plan.status, "gap": _r(plan.gap),
                   "binding": list(plan.binding), "critical_path": list(plan.critical_path),
                   "violations": list(plan.violations), "penalty": _r(plan.penalty)},
        "artifacts": artifacts,
        "models": models_table(c.module),
    }
    add_simulation_fields(manifest, c)
    return manifest


# ---------------------------------------------------------------------------- simulation

DECODE_KINDS = ("llm.decode", "moe.expert_decode")
TOKEN_KINDS = ("llm.tokenize", "llm.prefill", "moe.expert_prefill") + DECODE_KINDS
_PLACEMENT_ATTRS = ("pool", "device", "target", "chip", "tp", "replicas", "start_ms", "finish_ms", "costs")


def add_simulation_fields(manifest: dict, c) -> None:
    """What `agentc simulate` needs beyond the plan (schema 1.2, all additive), so the
    simulator reads the manifest alone and never the IR or the passes:

    - per op: `region` (the innermost loop/branch arm/parallel block holding it, "" at
      top level), `inputs` (the ops whose results it reads), `busy_ms` (device time
      one execution holds its tp devices, as the planner counts it), `wait_ms` (time
      waited on an external service without a device), `queue_wait_ms` (the planner's
      queueing wait per call under load, on the path of the planned latency: 1.3, additive),
      `call` (the source call it
      came from), `model` (the model it runs, if any), `batch` (the batch the planner priced), `tokens` (prompt tokens of
      tokenize/prefill, generated tokens of decode), for decode ops `decode`:
      tokens, the mean step time by batch size from the cost model, the prompt
      (`context`) and the KV bytes per token and per tp group (memory less weights),
      and for prefill ops `prefill`: a batch's time by its total prompt tokens;
    - `regions`: the control flow (loops with max and expected trips and the continue
      probability whose truncated geometric law has that mean; branches and their arm
      probabilities; parallel blocks), keyed by id with their parent;
    - `returns`: the ops whose results the agent returns;
    - `links`: bandwidth and latency of every link an edge uses, and
      per edge one transfer's `latency_ms` and its time on the wire at full bandwidth
      (`wire_ms`, shared by concurrent transfers), or a `profiled` latency alone.
    """
    from agentc.costmodel import op_cost
    from agentc.passes._ir import attrs_of, get, source_loc
    from agentc.passes._plan_ctx import entry_graph, model_for, models_of

    plan, problem, labels = c.placement.plan, c.placement.problem, c.placement.labels
    cluster = c.pass_ctx.cluster
    pools = {p.name: p for p in cluster.pools}
    models = models_of(c.module)
    graph = entry_graph(c.module)

    regions: dict[str, dict] = {}
    region_of: dict[str, str] = {}

    def visit(block, parent: str) -> None:
        for op in block.operations:
            name = op.name
            if name in ("agent.loop", "agent.branch", "agent.parallel"):
                kind = name.split(".")[1]
                rid = f"{kind}{len(regions) + 1}"
                loc = source_loc(op)
                entry = {"kind": kind, "parent": parent, "loc": str(loc) if loc else ""}
                if kind == "loop":
                    n, e = int(get(op, "max_trips")), float(get(op, "expected_trips"))
                    entry.update(max_trips=n, expected_trips=_r(e), continue_prob=_r(continue_prob(n, e)))
                    regions[rid] = entry
                    visit(op.regions[0].blocks[0], rid)
                elif kind == "branch":
                    prob = float(get(op, "prob"))
                    regions[rid] = entry
                    for i, (arm, p) in enumerate((("then", prob), ("else", 1.0 - prob))):
                        regions[f"{rid}.{arm}"] = {"kind": "arm", "parent": rid, "index": i, "prob": _r(p),
                                                   "loc": entry["loc"]}
                        visit(op.regions[i].blocks[0], f"{rid}.{arm}")
                else:
                    regions[rid] = entry
                    visit(op.regions[0].blocks[0], rid)
            elif "op_id" in op.attributes:
                region_of[get(op, "op_id")] = parent

    visit(graph.regions[0].blocks[0], "")

    inputs: dict[str, set[str]] = {}
    for e in problem.edges:
        inputs.setdefault(e.dst, set()).add(e.src)
    for entry in manifest["ops"]:
        op_id = entry["id"]
        op, p = labels[op_id], plan.ops[op_id]
        batch = p.option.batch  # the decode batch is the planner's choice, one costs entry per size
        cost = next((x for x in get(op, "costs", []) if x["pool"] == p.pool and int(x["tp"]) == p.option.tp
                     and int(x.get("batch", 1)) == batch), {})
        entry.update(region=region_of.get(op_id, ""), inputs=sorted(inputs.get(op_id, ())),
                     call=get(op, "call"), model=get(op, "model"), batch=batch, busy_ms=_r(p.option.busy_ms),
                     wait_ms=_r(max(0.0, p.option.time_ms - p.option.busy_ms * batch)),
                     queue_wait_ms=_r(p.wait_ms))
        if op.name in TOKEN_KINDS:
            entry["tokens"] = int(get(op, "tokens", 0)) * int(get(op, "batch", 1))
        if op.name in DECODE_KINDS:
            entry["decode"] = _decode_steps(op, p, batch, cost, models, pools, cluster,
                                            op_cost, attrs_of, model_for)
        if op.name in ("llm.prefill", "moe.expert_prefill"):
            table = _prefill_steps(op, p, cost, models, pools, cluster, op_cost, attrs_of, model_for)
            if table:
                entry["prefill"] = table

    producers = _returned(graph)
    manifest["returns"] = sorted(x for x in producers if x in plan.ops)
    manifest["regions"] = dict(sorted(regions.items()))
    measured = {(e.src, e.dst): e.profiled for e in problem.edges if e.profiled}
    links = {}
    for e in manifest["edges"]:
        # `ms` is weighted by expected executions (what the planner adds up); the
        # simulator needs one transfer's latency and its time on the wire.
        prof = measured.get((e["src"], e["dst"]), {}).get((e["src_pool"], e["dst_pool"]))
        link = cluster.link_between(e["src_pool"], e["dst_pool"])
        if prof is not None or link is None:
            e.update(latency_ms=_r(prof[0] if prof else 0.0), wire_ms=0.0, profiled=True)
            continue
        links[e["link"]] = {"gbps": _r(link.gbps), "latency_ms": _r(link.latency_ms)}
        e.update(latency_ms=_r(link.latency_ms), wire_ms=_r(e["bytes"] * 8 / (link.gbps * 1e9) * 1e3),
                 profiled=False)
    manifest["links"] = dict(sorted(links.items()))


def _decode_steps(op, p, batch, cost, models, pools, cluster, op_cost, attrs_of, model_for) -> dict:
    """Mean decode step time by batch size on the chosen pool and tp, scaled so the
    planned batch reproduces the planner's own time exactly (iteration-level batching
    needs the step time at every batch the simulator sees)."""
    a = {k: v for k, v in attrs_of(op).items() if k not in _PLACEMENT_ATTRS}
    tokens = max(1, int(a.get("tokens", 1)))
    planned = p.option.time_ms / tokens
    steps = [[batch, _r(planned)]]
    if not cost.get("profiled", False):
        model, device = model_for(op, models), pools[p.pool].device
        try:
            ref = op_cost(op.name, dict(a, batch=batch), model, device, p.option.tp, cluster).time_ms
            b, sizes = 1, []
            while b < batch:
                sizes.append(b)
                b *= 2
            steps = [[s, _r(planned * op_cost(op.name, dict(a, batch=s), model, device, p.option.tp,
                                              cluster).time_ms / ref)] for s in sizes] + steps
        except Exception:  # noqa: BLE001 - a price the cost model refuses: keep the planned step
            steps = [[batch, _r(planned)]]
    out = {"tokens": tokens, "max_batch": batch, "step_ms": steps}
    try:  # the KV memory a tp group has for sequences: its memory less the weights
        from agentc.dialects.ops import kv_cache_bytes

        model, device = model_for(op, models), pools[p.pool].device
        if model is not None and device.memory_gb > 0:
            out.update(context=_r(float(a.get("context", 0))), kv_bytes_per_token=_r(kv_cache_bytes(model, 1, 1)),
                       kv_budget_bytes=_r(p.option.tp * device.memory_bytes - model.weight_bytes))
    except Exception:  # noqa: BLE001 - a model the catalog cannot size: no KV limit
        pass
    return out


PREFILL_TABLE_BATCHES = (1, 2, 4, 8, 16, 32)


def _prefill_steps(op, p, cost, models, pools, cluster, op_cost, attrs_of, model_for) -> dict | None:
    """A prefill batch's time by its total prompt tokens (k prompts of this op's length),
    scaled so one prompt takes the planner's busy time: the simulator batches prompts
    up to a token budget and prices the batch from this table."""
    if cost.get("profiled", False):
        return None
    a = {k: v for k, v in attrs_of(op).items() if k not in _PLACEMENT_ATTRS}
    b0 = int(a.get("batch", 1) or 1)
    tokens = int(a.get("tokens", 0)) * b0
    if tokens <= 0:
        return None
    try:
        model, device = model_for(op, models), pools[p.pool].device

        def busy(k):
            return op_cost(op.name, dict(a, batch=k * b0), model, device, p.option.tp, cluster).busy_ms

        ref = busy(1)
        if not ref > 0:
            return None
        return {"step_ms": [[k * tokens, _r(p.option.busy_ms * busy(k) / ref)] for k in PREFILL_TABLE_BATCHES]}
    except Exception:  # noqa: BLE001 - a price the cost model refuses: prefill stays unbatched
        return None


def _returned(graph) -> set[str]:
    """Op ids whose results the entry agent returns (through loops, branches, blocks)."""
    from mlir import ir

    from agentc.passes._ir import get

    out: set[str] = set()

    def producers(value) -> None:
        owner = value.owner
        if isinstance(owner, ir.Block):
            parent = owner.owner
            if parent is not None and parent.name == "agent.loop":
                producers(parent.operands[ir.BlockArgument(value).arg_number])
            return
        res = ir.OpResult(value)
        op = res.owner
        if op.name in ("agent.loop", "agent.branch", "agent.parallel"):
            for region in op.regions:
                producers(list(region.blocks[0].operations)[-1].operands[res.result_number])
            if op.name == "agent.loop":
                producers(op.operands[res.result_number])
        elif "op_id" in op.attributes and op.name != "kv.transfer":
            out.add(get(op, "op_id"))
        else:
            for operand in op.operands:
                producers(operand)

    term = list(graph.regions[0].blocks[0].operations)[-1]
    for v in term.operands:
        producers(v)
    return out


SOURCES_ATTR = "agentc.sources"


def record_sources(c) -> None:
    """Record the source files (path, sha256) on the module, so a module printed at any
    stage still names the sources it came from and resumes to the same manifest."""
    from mlir import ir

    files = list(dict.fromkeys(p for p in c.inputs if os.path.isfile(p)))
    c.module.operation.attributes[SOURCES_ATTR] = ir.ArrayAttr.get(
        [ir.ArrayAttr.get([ir.StringAttr.get(p), ir.StringAttr.get(_sha(_read(p)))]) for p in files])


def sources(c) -> list[tuple[str, str | None]]:
    """(path, sha256) of the sources: as recorded on the module, else the files read."""

    from agentc.diagnostics import SourceLoc, VerifyError
    from agentc.passes._ir import attr_value

    attrs = c.module.operation.attributes
    if SOURCES_ATTR not in attrs:
        return [(p, None) for p in c.inputs]
    pairs = attr_value(attrs[SOURCES_ATTR])
    if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in pairs):
        raise VerifyError(f"module attribute {SOURCES_ATTR} must be a list of [path, sha256] pairs",
                          SourceLoc(c.input_path, 1, 1))
    return [(p[0], p[1]) for p in pairs]


def call_fields(op) -> dict:
    """Additive in 1.1: the model an op runs and the source call it was decomposed from,
    so `agentc deploy` pairs each call's prefill and decode and names the model a
    serving stack loads from the manifest alone; `models_table` gives the architectures."""
    from agentc.passes._ir import get

    return {k: get(op, k) for k in ("model", "call") if get(op, k) is not None}


def launch_fields(meta: dict) -> dict:
    """Additive in 1.3: a GPU launcher's (`{pool}/{kernel}.host.o`) kernel launches in call
    order, each `{"kernel", "grid": [x, y, z], "block": [x, y, z]}`, so a runtime or a
    profiler knows the launch dimensions without reading the object."""
    return {"launches": meta["launches"]} if "launches" in meta else {}


def models_table(module) -> dict:
    """Additive in 1.1: each declared model's architecture (kind, shape, dtype), by name."""
    from agentc.passes._ir import attrs_of, top_ops

    table = {}
    for op in top_ops(module):
        if op.name == "agent.model":
            fields = attrs_of(op)
            name = fields.pop("sym_name")
            table[name] = dict(sorted(fields.items()))
    return table


def _display(path: str) -> str:
    """Paths in the manifest are relative (to the working directory) when possible, and
    package data is named by its package path, so manifests do not leak machine paths."""
    import agentc.catalog

    ap = os.path.abspath(path)
    catalog_dir = os.path.dirname(os.path.abspath(agentc.catalog.__file__))
    if ap.startswith(catalog_dir + os.sep):
        return "<agentc>/catalog/" + os.path.relpath(ap, catalog_dir)
    rel = os.path.relpath(ap)
    return rel if not rel.startswith("..") else os.path.basename(ap)


def dumps(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
