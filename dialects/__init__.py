"""agentc's MLIR dialects (IRDL), loaded into an upstream `mlir.ir.Context`.

`make_context()` is the one way the compiler creates contexts: it loads the IRDL
definitions in this folder, so generic-syntax ops like `"llm.call"(...)` parse and
verify with unregistered dialects disallowed.
"""

from __future__ import annotations

import re
import sys
import types
from importlib import resources

from mlir import ir
from mlir.dialects import irdl

IRDL_FILES = ("agent.irdl.mlir",)

# Value kinds of the .agent language; each is a parameterless type `!agent.<kind>`.
VALUE_KINDS = ("audio", "text", "tokens", "embedding", "documents", "json")


def load_into(ctx: ir.Context) -> None:
    """Load every IRDL dialect definition of agentc into `ctx`."""
    with ctx, ir.Location.unknown():
        for name in IRDL_FILES:
            text = resources.files("agentc.dialects").joinpath(name).read_text()
            irdl.load_dialects(ir.Module.parse(text))
            _no_python_classes(re.findall(r"^irdl\.dialect @(\w+)", text, re.M))


def _no_python_classes(namespaces) -> None:
    """The bindings look for op and type classes in a Python module `mlir.dialects.<ns>`
    each time they wrap an op or type of dialect `ns`, and retry the import whenever it
    fails; IRDL dialects have no such module, so an empty one stands in for each. (The
    failed imports took most of the frontend's time on large graphs.)"""
    for ns in namespaces:
        sys.modules.setdefault(f"mlir.dialects.{ns}", types.ModuleType(f"mlir.dialects.{ns}"))


def make_context() -> ir.Context:
    """A fresh context with agentc's dialects loaded and unregistered ops refused."""
    ctx = ir.Context()
    ctx.allow_unregistered_dialects = False
    load_into(ctx)
    return ctx


def kind_type(kind: str) -> ir.Type:
    """The MLIR type of a value kind (`text` -> `!agent.text`); needs an active context."""
    return ir.Type.parse(f"!agent.{kind}")


def type_kind(t: ir.Type) -> str:
    """Inverse of `kind_type`: `!agent.text` -> `text`."""
    s = str(t)
    return s[len("!agent."):] if s.startswith("!agent.") else s


def _slot_table():
    """op name -> (operand specs, result specs) from the IRDL generator's table."""
    from agentc.dialects import gen_irdl

    table = {f"{d}.{n}": (ops, res) for d, n, _doc, _a, ops, res, _r in gen_irdl.GRAPH}
    from agentc.dialects.ops import OPS

    for name in OPS:
        table[name] = ([("in", gen_irdl.KINDS)], [("out", "?any")])
    return table


_SLOTS = None


def _group(specs, kinds):
    """Order items (given by kind) into the op's slot order; returns (perm, sizes) where
    perm lists original indices in new order and sizes is None when no slot is grouped."""
    if not any(isinstance(s, tuple) for _n, s in specs):
        return list(range(len(kinds))), None
    (_name, group), = [(n, s) for n, s in specs if isinstance(s, tuple)]
    perm, sizes = [], []
    for k in group:
        members = [i for i, kk in enumerate(kinds) if kk == k]
        perm += members
        sizes.append(len(members))
    if len(perm) != len(kinds):
        bad = sorted({kinds[i] for i in range(len(kinds)) if i not in perm})
        raise ValueError(f"kind(s) {', '.join(bad)} not accepted")
    return perm, sizes


def create(name: str, operands=(), result_kinds=(), attrs=None, loc=None, regions: int = 0):
    """Create op `name` with operands/results grouped by kind as the IRDL definition
    requires. Returns (op, results) where `results[i]` is the value for
    `result_kinds[i]` in the caller's order. Raises ValueError for a kind the op refuses.
    """
    global _SLOTS
    if _SLOTS is None:
        _SLOTS = _slot_table()
    op_specs, res_specs = _SLOTS[name]
    operands = list(operands)
    op_perm, op_sizes = _group(op_specs, [type_kind(v.type) for v in operands])
    res_perm, res_sizes = _group(res_specs, list(result_kinds))
    attributes = dict(attrs or {})
    if op_sizes is not None:
        attributes["operandSegmentSizes"] = ir.DenseI32ArrayAttr.get(op_sizes)
    if res_sizes is not None:
        attributes["resultSegmentSizes"] = ir.DenseI32ArrayAttr.get(res_sizes)
    op = ir.Operation.create(
        name,
        results=[kind_type(result_kinds[i]) for i in res_perm],
        operands=[operands[i] for i in op_perm],
        attributes=attributes,
        regions=regions,
        loc=loc,
    )
    results = [None] * len(result_kinds)
    for new_index, old_index in enumerate(res_perm):
        results[old_index] = op.results[new_index]
    return op, results


def op_names() -> frozenset[str]:
    """Every op name agentc's dialects define (`agent.graph`, `llm.prefill`, ...)."""
    global _SLOTS
    if _SLOTS is None:
        _SLOTS = _slot_table()
    return frozenset(_SLOTS)
