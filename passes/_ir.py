"""Helpers shared by agentc's passes: walking ops, reading attributes, locations."""

from __future__ import annotations

import re
from typing import Iterator

from mlir import ir

from agentc.diagnostics import SourceLoc

_FILE_LOC = re.compile(r'loc\("((?:[^"\\]|\\.)*)":(\d+):(\d+)')


def source_loc(op_or_loc) -> SourceLoc | None:
    """The first file:line:col inside an op's location (through fused/name locs)."""
    loc = op_or_loc.location if hasattr(op_or_loc, "location") else op_or_loc
    m = _FILE_LOC.search(str(loc))
    return SourceLoc(m.group(1), int(m.group(2)), int(m.group(3))) if m else None


def walk(op) -> Iterator[ir.Operation]:
    """Pre-order walk over `op` and everything nested in it."""
    op = op.operation if hasattr(op, "operation") else op
    yield op
    for region in op.regions:
        for block in region.blocks:
            for child in block.operations:
                yield from walk(child)


def attr_value(attr: ir.Attribute):
    """A Python value for a builtin attribute (int, float, str, bool, list)."""
    if isinstance(attr, ir.BoolAttr):
        return attr.value
    if isinstance(attr, ir.IntegerAttr):
        return attr.value
    if isinstance(attr, ir.FloatAttr):
        return attr.value
    if isinstance(attr, ir.StringAttr):
        return attr.value
    if isinstance(attr, ir.ArrayAttr):
        return [attr_value(a) for a in attr]
    if isinstance(attr, ir.DictAttr):
        return {named.name: attr_value(named.attr) for named in attr}
    if isinstance(attr, ir.DenseI32ArrayAttr):
        return list(attr)
    return str(attr)


def attrs_of(op) -> dict:
    op = op.operation if hasattr(op, "operation") else op
    out = {}
    for item in op.attributes:
        name = item if isinstance(item, str) else item.name
        out[name] = attr_value(op.attributes[name])
    return out


def str_attr(s: str) -> str:
    """A Python string as an MLIR string-attribute literal (quotes and backslashes escaped)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def get(op, name, default=None):
    op = op.operation if hasattr(op, "operation") else op
    return attr_value(op.attributes[name]) if name in op.attributes else default


def module_stage(module) -> str | None:
    return get(module.operation, "agentc.stage")


def set_module_stage(module, stage: str) -> None:
    module.operation.attributes["agentc.stage"] = ir.StringAttr.get(stage)


def top_ops(module) -> list:
    """Ops directly in a module (accepts ir.Module, a module op or its opview)."""
    op = module.operation if hasattr(module, "operation") else module
    return list(op.regions[0].blocks[0].operations)


def model_attrs(module) -> dict:
    """Each `agent.model` of a module by name, as a dict of its attribute values."""
    return {get(op, "sym_name"): attrs_of(op) for op in top_ops(module) if op.name == "agent.model"}


def apply_patterns(module, patterns: dict) -> None:
    """Apply small rewrite functions `(op, rewriter)` keyed by op name, greedily, with
    upstream MLIR's pattern driver. A function returns None when it rewrote the op."""
    from mlir import rewrite

    patterns_set = rewrite.RewritePatternSet()
    for name, fn in patterns.items():
        patterns_set.add(name, fn)
    op = module.operation if hasattr(module, "operation") else module
    rewrite.apply_patterns_and_fold_greedily(op, patterns_set.freeze())


def make(name: str, operands, result_kind: str | None, attributes: dict, loc):
    """Create a granular op (operands grouped by kind) and return its result or None."""
    from agentc import dialects

    _op, results = dialects.create(name, list(operands), (result_kind,) if result_kind else (),
                                   attributes, loc)
    return results[0] if results else None


def copy_attrs(op, *names) -> dict:
    """Selected attributes of `op` as ir.Attributes (missing ones skipped)."""
    op = op.operation if hasattr(op, "operation") else op
    return {n: op.attributes[n] for n in names if n in op.attributes}


class StringGlobals:
    """NUL-terminated `llvm.mlir.global` strings for a module, one symbol per distinct
    value (`__agentc_str_<value>`, numbered when two values sanitise alike)."""

    def __init__(self):
        self.syms: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        """The symbol of `value`, added if new."""
        if value not in self.syms:
            base = "__agentc_str_" + "".join(ch if ch.isalnum() else "_" for ch in value)
            sym, i = base, 1
            while sym in self.syms.values():
                sym, i = f"{base}_{i}", i + 1
            self.syms[value] = sym
        return self.syms[value]

    def decls(self) -> list[str]:
        """The globals, sorted by symbol; bytes outside [A-Za-z0-9 ._-:/>] hex-escaped."""
        out = []
        for value, sym in sorted(self.syms.items(), key=lambda kv: kv[1]):
            esc = "".join(ch if ch.isalnum() or ch in " ._-:/>" else f"\\{ord(ch):02X}" for ch in value)
            out.append(f'llvm.mlir.global internal constant @{sym}("{esc}\\00") {{addr_space = 0 : i32}}')
        return out


def placed_nothing(module_op) -> bool:
    """True when no op carries a placement (an agent that passes its input through):
    the codegen passes then have nothing to lower and leave the module as it is."""
    return not any("pool" in op.attributes for op in walk(module_op))
