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

SCHEMA_VERSION = "1.1"


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
    from agentc.passes._plan_ctx import entry_graph

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
            "est_latency_ms": _r(p.option.time_ms), "usd_per_call": _r(p.option.usd_per_call),
            "start_ms": _r(p.start_ms), "finish_ms": _r(p.finish_ms), "slack_ms": _r(p.slack_ms),
            "binding_resource": p.option.note,
            "runner_up": None if ru is None else {"pool": ru.pool, "tp": ru.option.tp,
                                                  "delta_ms": _r(ru.delta_ms), "delta_cost": _r(ru.delta_cost),
                                                  "feasible": ru.feasible},
            **call_fields(op),
        })
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
                  "ratio": _r(b.ratio), "reason": b.reason} for b in plan.baselines]
    artifacts = []
    meta = c.artifact_meta
    for path in sorted(c.artifacts):
        if path.startswith("."):
            continue
        m = meta.get(path, {})
        artifacts.append({"path": path, "sha256": _sha(c.artifacts[path]), "bytes": len(c.artifacts[path]),
                          "pool": m.get("pool"), "target": m.get("target"), "kind": m.get("kind"),
                          "note": m.get("note")})
    sla = {"e2e_ms": get(graph, "sla_latency_ms"), "percentile": get(graph, "sla_percentile"),
           "ttft_ms": get(graph, "sla_ttft_ms"), "tbt_ms": get(graph, "sla_tbt_ms"),
           "load_rps": get(graph, "load_rps"), "mode": c.options.sla_mode,
           "worst_case": c.options.worst_case}
    return {
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
    from mlir import ir

    attrs = c.module.operation.attributes
    if SOURCES_ATTR in attrs:
        return [(ir.StringAttr(a[0]).value, ir.StringAttr(a[1]).value) for a in ir.ArrayAttr(attrs[SOURCES_ATTR])]
    return [(p, None) for p in c.inputs]


def call_fields(op) -> dict:
    """Additive in 1.1: the model an op runs and the source call it was decomposed from,
    so `agentc deploy` pairs each call's prefill and decode and names the model a
    serving stack loads from the manifest alone; `models_table` gives the architectures."""
    from agentc.passes._ir import get

    return {k: get(op, k) for k in ("model", "call") if get(op, k) is not None}


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
