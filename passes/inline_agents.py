"""inline-agents: replace each agent.call by a copy of the callee's body.

Placement and costing see one dataflow graph per entry agent, so nested agents are
inlined (the frontend has already refused recursion). The callee's agent.input values
become the call's operands and its yielded outputs replace the call's results. Call
operands and results are grouped by kind (IRDL segments), so they are matched to the
callee's declared inputs/outputs through the same grouping. Inlined ops get labels
prefixed with the call's label, so names stay unique. The entry agent (the one no other
agent calls; the last such in the file) is marked with the unit attribute `entry`.
"""

from __future__ import annotations

from mlir import ir

from agentc import dialects
from agentc.passes._ir import get, top_ops, walk

NAME = "inline-agents"


def _grouped_order(kinds: list[str]) -> list[int]:
    order = {k: i for i, k in enumerate(dialects.VALUE_KINDS)}
    return sorted(range(len(kinds)), key=lambda i: (order[kinds[i]], i))


def _inline(call, graph) -> None:
    label = get(call, "label", get(call, "callee"))
    clone = graph.clone(ip=ir.InsertionPoint(call))
    body = clone.regions[0].blocks[0]
    in_perm = _grouped_order(get(graph, "input_kinds", []))
    by_index = {in_perm[j]: call.operands[j] for j in range(len(in_perm))}
    for op in list(body.operations):
        if op.name == "agent.input":
            op.results[0].replace_all_uses_with(by_index[get(op, "index")])
            op.erase()
    terminator = list(body.operations)[-1]
    outputs = list(terminator.operands)
    out_perm = _grouped_order(get(graph, "output_kinds", []))
    for j, old in enumerate(out_perm):
        call.results[j].replace_all_uses_with(outputs[old])
    terminator.erase()
    for op in list(body.operations):
        for nested in walk(op):
            if "label" in nested.attributes:
                nested.attributes["label"] = ir.StringAttr.get(f"{label}/{get(nested, 'label')}")
            if "call" in nested.attributes:
                nested.attributes["call"] = ir.StringAttr.get(f"{label}/{get(nested, 'call')}")
        op.move_before(call)
    clone.erase()
    call.erase()


def run(module, ctx) -> None:
    graphs = {get(op, "sym_name"): op for op in top_ops(module) if op.name == "agent.graph"}
    called = set()
    for g in graphs.values():
        for op in walk(g):
            if op.name == "agent.call":
                called.add(get(op, "callee"))
    # Inline until no calls remain (callees may call further agents; no recursion).
    changed = True
    while changed:
        changed = False
        for g in graphs.values():
            calls = [op for op in walk(g) if op.name == "agent.call"]
            for call in calls:
                _inline(call, graphs[get(call, "callee")])
                changed = True
    roots = [name for name in graphs if name not in called]
    if roots and not any("entry" in g.attributes for g in graphs.values()):
        graphs[roots[-1]].attributes["entry"] = ir.UnitAttr.get()
