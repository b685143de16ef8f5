"""verify-agent: check an agent-dialect module beyond what IRDL can express.

IRDL checks op shapes and operand kinds per slot; this pass checks the rules that need
the whole module, so that a hand-written or edited `.mlir` file gets the same located
errors as a `.agent` file: models and indexes are declared, calls name an agent with a
matching signature, loops are bounded with consistent trip counts, probabilities lie in
[0, 1], and SLA numbers are positive and mutually possible.
"""

from __future__ import annotations

from agentc.diagnostics import VerifyError
from agentc.passes._ir import get, source_loc, top_ops, walk
from agentc.dialects.ops import MODEL_KIND_FOR

NAME = "verify-agent"


def _error(op, message):
    return VerifyError(message, source_loc(op))


_REGION_OPS = ("agent.graph", "agent.loop", "agent.branch", "agent.parallel")


def _check_bodies(op) -> None:
    """Each region of a graph, loop, branch or parallel is one block ending in gpu.yield:
    the passes walk exactly that shape (IRDL cannot require a terminator)."""
    for region in op.regions:
        blocks = list(region.blocks)
        if len(blocks) != 1:
            raise _error(op, f"'{op.name}' must have one block in each region, found {len(blocks)}")
        body = list(blocks[0].operations)
        if not body or body[-1].name != "gpu.yield":
            raise _error(op, f"'{op.name}': each region must end with gpu.yield of its results")


def run(module, ctx) -> None:
    ops = top_ops(module)
    models = {get(op, "sym_name"): get(op, "kind") for op in ops if op.name == "agent.model"}
    indexes = {get(op, "sym_name") for op in ops if op.name == "agent.index"}
    graphs = {get(op, "sym_name"): op for op in ops if op.name == "agent.graph"}
    for gname, graph in graphs.items():
        lat = get(graph, "sla_latency_ms")
        for key in ("sla_latency_ms", "sla_ttft_ms", "sla_tbt_ms", "load_rps"):
            v = get(graph, key)
            if v is not None and v <= 0:
                raise _error(graph, f"agent '{gname}': {key} must be positive, got {v:g}")
        for key, term in (("sla_ttft_ms", "ttft"), ("sla_tbt_ms", "tbt")):
            v = get(graph, key)
            # only comparable at the same statistic (pNN / mean / every path)
            same = (get(graph, f"sla_{term}_percentile") == get(graph, "sla_percentile")
                    and bool(get(graph, f"sla_{term}_mean")) == bool(get(graph, "sla_latency_mean")))
            if v is not None and lat is not None and same and v >= lat:
                raise _error(graph, f"agent '{gname}': impossible SLA: {key} = {v:g} is not below "
                                    f"sla_latency_ms = {lat:g}")
        for op in walk(graph):
            name = op.name
            if name in _REGION_OPS:
                _check_bodies(op)
            if name in MODEL_KIND_FOR:
                model = get(op, "model")
                if model not in models:
                    raise _error(op, f"unknown model '{model}' (no agent.model declares it)")
                if models[model] != MODEL_KIND_FOR[name]:
                    raise _error(op, f"{name} needs a {MODEL_KIND_FOR[name]} model, but '{model}' is "
                                     f"a {models[model]} model")
            elif name == "agent.retrieve" and get(op, "index") not in indexes:
                raise _error(op, f"unknown index '{get(op, 'index')}'")
            elif name == "agent.loop":
                mx, ex = get(op, "max_trips"), get(op, "expected_trips")
                if mx < 1:
                    raise _error(op, f"unbounded loop: max_trips must be >= 1, got {mx}")
                if not 0 <= ex <= mx:
                    raise _error(op, f"expected_trips {ex:g} must lie between 0 and max_trips {mx}")
            elif name == "agent.branch":
                p = get(op, "prob")
                if not 0 <= p <= 1:
                    raise _error(op, f"branch probability must be between 0 and 1, got {p:g}")
            elif name == "agent.call":
                callee = get(op, "callee")
                if callee not in graphs:
                    raise _error(op, f"call of unknown agent '{callee}'")
                want = get(graphs[callee], "input_kinds", [])
                got = sorted(str(v.type)[len("!agent."):] for v in op.operands)
                if sorted(want) != got:
                    raise _error(op, f"call of '{callee}' passes ({', '.join(got)}) but it takes "
                                     f"({', '.join(want)})")
