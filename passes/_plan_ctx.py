"""What passes read from a module: its models (as ModelSpecs, built one way), its entry
graph, and the bytes a value carries (the op contract's rule)."""

from __future__ import annotations

import dataclasses

from agentc.passes._ir import attrs_of, get, top_ops


def models_of(module) -> dict:
    """sym_name -> ModelSpec rebuilt from the module's agent.model ops."""
    from agentc.catalog import ModelSpec, model_from_decl

    fields = {f.name: f.type for f in dataclasses.fields(ModelSpec)}
    out = {}
    for op in top_ops(module):
        if op.name != "agent.model":
            continue
        a = attrs_of(op)
        name = a.pop("sym_name")
        kw = {}
        for k, v in a.items():
            if k not in fields or k in ("name", "source"):
                continue
            t = str(fields[k])
            kw[k] = float(v) if "float" in t and not isinstance(v, bool) else v
        out[name] = model_from_decl(None, name=name, **kw)
    return out


def entry_graph(module):
    graphs = [op for op in top_ops(module) if op.name == "agent.graph"]
    for g in graphs:
        if "entry" in g.attributes:
            return g
    return graphs[-1] if graphs else None


def sized_bounds(graph_op) -> dict[str, float]:
    """SLA term ('latency', 'ttft', 'tbt') -> the bound the planner sized it to below the
    program's (`sized_<term>_ms`, written by agentc/promise.py), for each such term."""
    out = {}
    for term in ("latency", "ttft", "tbt"):
        value = get(graph_op, f"sized_{term}_ms")
        if value is not None:
            out[term] = value
    return out


EXCLUDED_PLANS = "excluded_plans"


def excluded_plans(graph_op) -> tuple:
    """The placements the planner may not return (`excluded_plans`, written by
    agentc/promise.py: plans predicted to miss the SLA at the load), as
    planner.Problem.exclude takes them; () when none."""
    return tuple(tuple((str(op), int(rank), str(pool), int(replicas), str(parts))
                       for op, rank, pool, replicas, parts in plan)
                 for plan in get(graph_op, EXCLUDED_PLANS, []))


def model_for(op, models):
    name = get(op, "model")
    return models.get(name) if name else None


def value_bytes(op, kind: str, models: dict) -> float:
    """Bytes of the value of kind `kind` that `op` yields (agentc.dialects.ops.value_bytes);
    `models` from `models_of`."""
    from agentc.dialects.ops import value_bytes as contract_bytes

    return contract_bytes(op.name, kind, attrs_of(op), model_for(op, models))
