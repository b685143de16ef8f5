"""partition: split the placed entry graph into one nested module per device pool.

Input: the `placed` module, where every granular op of the entry `agent.graph` carries
`pool`, `device`, `target`, `chip`, `tp`, `replicas`, `start_ms`, `finish_ms`. Output,
appended to the top-level module (the graph and models stay, for the manifest):

    builtin.module @<pool> attributes {agentc.pool, agentc.device, agentc.target, agentc.chip} {
      func.func @<label>(<operands>) -> <result> { <the granular op>; return }   // one per op
      func.func @schedule(<graph inputs>) -> <graph outputs made here> {
        calls of the op functions in program order, with
        "agent.send"/"agent.recv" {peer, channel, bytes, link} at every cross-pool edge
      }
    }

Every pool's schedule walks the same program order, so the send on one side and the
recv on the other sit at the same point; `channel` pairs them. Graph inputs are
arguments of every schedule (the runtime hands them to each pool that reads them).

Control flow: the schedule is one straight pass through the graph. Ops inside a loop,
branch or parallel region are called once, their calls marked `agentc.max_trips`
(product of the enclosing loops' bounds) and `agentc.region`; a loop's carried value
is its initial value, and a region's result is the value its last body yields. The
runtime, which owns control decisions, repeats or skips calls from those marks.
Pools placed on `target = "none"` (no upstream MLIR backend) are partitioned the same
way; code generation writes their module out as MLIR only.
"""

from __future__ import annotations

import re

from mlir import ir
from mlir.dialects import func

from agentc import dialects
from agentc.diagnostics import AgentcError
from agentc.passes._ir import get, source_loc, top_ops
from agentc.passes._plan_ctx import models_of, value_bytes

NAME = "partition"
# Nested loop bounds multiply; the recorded bound saturates at the largest i64 (a runtime
# never reaches it: the loops' own bounds stop it first).
MAX_TRIPS = 2**63 - 1

PLACEMENT = ("pool", "device", "target", "chip")
STRUCTURE = {"agent.loop", "agent.branch", "agent.parallel"}
# Per-op attributes that describe the plan, not the op: dropped from the op functions.
_PLAN_ONLY = {"costs", "operandSegmentSizes", "resultSegmentSizes"}

class PartitionError(AgentcError):
    pass


def symbol(label: str) -> str:
    """A label as a symbol name: `ans.1.prefill` -> `ans_1_prefill`."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", label).strip("_") or "op"   # ASCII: an MLIR symbol
    return name if not name[0].isdigit() else f"op_{name}"


def _entry(module):
    graphs = [op for op in top_ops(module) if op.name == "agent.graph"]
    for g in graphs:
        if "entry" in g.attributes:
            return g
    if graphs:
        return graphs[-1]
    raise PartitionError("no agent.graph to partition")


def _body(op) -> list:
    return [o for region in op.regions for block in region.blocks for o in block.operations]


class _Program:
    """The entry graph in program order: granular ops, the regions around them, and
    each SSA value resolved to the granular op result (or graph input) it stands for."""

    def __init__(self, graph):
        self.steps: list[tuple[ir.Operation, int, str]] = []     # (op, max_trips, region)
        self.alias: dict = {}
        self.inputs: list[ir.Value] = []
        self._visit(_body(graph), 1, "")
        self.outputs = [self.resolve(v) for v in _body(graph)[-1].operands]

    def _visit(self, ops, trips, region):
        for op in ops:
            op = op.operation
            if op.name == "agent.input":
                self.inputs.append(op.results[0])
            elif op.name in STRUCTURE:
                inner_trips = trips * (get(op, "max_trips", 1) or 1)
                kind = op.name.split(".")[1]
                for r_index, reg in enumerate(op.regions):
                    block = reg.blocks[0]
                    for arg, init in zip(block.arguments, op.operands):
                        self.alias[arg] = init
                    tag = f"{kind}@{get(op, 'max_trips', r_index)}" if kind == "loop" else f"{kind}#{r_index}"
                    self._visit(list(block.operations), inner_trips,
                                f"{region}/{tag}" if region else tag)
                last = op.regions[len(op.regions) - 1].blocks[0]
                yielded = list(last.operations)[-1].operands
                for res, val in zip(op.results, yielded):
                    self.alias[res] = val
            elif op.name == "gpu.yield":
                continue
            else:
                if "pool" not in op.attributes:
                    loc = source_loc(op)
                    raise PartitionError(f"'{op.name}' ({get(op, 'label', '?')}) has no placement; "
                                         "run the place pass first (stage 'placed')", loc)
                self.steps.append((op, trips, region))

    def resolve(self, value):
        seen = 0
        while value in self.alias and seen < 10_000:
            value, seen = self.alias[value], seen + 1
        return value


def _attr_names(op) -> list[str]:
    return [getattr(a, "name", a) for a in op.attributes]


def _owner(value) -> ir.Operation | None:
    owner = value.owner
    return owner if isinstance(owner, ir.Operation) else getattr(owner, "operation", None) \
        if not isinstance(owner, ir.Block) else None


def run(module, ctx) -> None:
    module_op = module.operation if hasattr(module, "operation") else module
    top = module_op.regions[0].blocks[0]
    for op in top_ops(module_op):
        if op.name == "builtin.module":
            raise PartitionError("module is already partitioned")
    graph = _entry(module_op)
    models = models_of(module_op)
    prog = _Program(graph)
    if not prog.steps:
        return

    # Pools in order of first use; placement attrs from the first op on each.
    pools: dict[str, dict] = {}
    for op, _trips, _region in prog.steps:
        pool = get(op, "pool")
        pools.setdefault(pool, {k: str(get(op, k, "")) for k in PLACEMENT})

    def pool_of(value):
        owner = _owner(value)
        return get(owner, "pool") if owner is not None and "pool" in owner.attributes else None

    # Consumers per (resolved) value: which pools read it.
    readers: dict = {}
    for op, _t, _r in prog.steps:
        for operand in op.operands:
            v = prog.resolve(operand)
            readers.setdefault(v, [])
            if get(op, "pool") not in readers[v]:
                readers[v].append(get(op, "pool"))

    loc = graph.location
    with loc:
        builders = {}
        for name, placement in pools.items():
            sub = ir.Operation.create("builtin.module", regions=1, loc=loc)
            sub.regions[0].blocks.append()
            sub.attributes["sym_name"] = ir.StringAttr.get(name)
            for k in PLACEMENT:
                sub.attributes[f"agentc.{k}"] = ir.StringAttr.get(placement[k])
            top.append(sub)
            builders[name] = _PoolBuilder(sub, prog, [v for v in prog.outputs if pool_of(v) == name])

        channel = 0
        for op, trips, region in prog.steps:
            here = get(op, "pool")
            builders[here].call(op, trips, region)
            for res in op.results:
                for peer in readers.get(res, []):
                    if peer == here:
                        continue
                    nbytes = int(value_bytes(op, dialects.type_kind(res.type), models))
                    attrs = {"channel": channel, "bytes": nbytes, "link": f"{here}->{peer}"}
                    builders[here].send(res, peer, attrs, trips, region)
                    builders[peer].recv(res, here, attrs, trips, region)
                    channel += 1
        for name, b in builders.items():
            b.finish([v for v in prog.outputs if pool_of(v) == name])


class _PoolBuilder:
    """Fills one pool module: op functions and the schedule that calls them."""

    def __init__(self, sub, prog: _Program, made_here: list):
        self.body = sub.regions[0].blocks[0]
        self.prog = prog
        self.names: set[str] = set()
        self.values: dict = {}
        inputs = [v.type for v in prog.inputs]
        outputs = [v.type for v in made_here]     # the graph outputs this pool makes
        self._sched_outputs = outputs
        with ir.InsertionPoint(self.body):
            self.schedule = func.FuncOp("schedule", (inputs, outputs))
        self.schedule.attributes["agentc.schedule"] = ir.UnitAttr.get()
        self.block = self.schedule.add_entry_block()
        for v, arg in zip(prog.inputs, self.block.arguments):
            self.values[v] = arg

    def _unique(self, label: str) -> str:
        base = symbol(label)
        name, i = base, 1
        while name in self.names or name == "schedule":
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def _mark(self, op, trips, region):
        if trips > 1:
            op.attributes["agentc.max_trips"] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64),
                                                                   min(trips, MAX_TRIPS))
        if region:
            op.attributes["agentc.region"] = ir.StringAttr.get(region)

    def call(self, op, trips, region):
        operands = [self.values[self.prog.resolve(v)] for v in op.operands]
        in_types = [v.type for v in operands]
        out_types = [r.type for r in op.results]
        name = self._unique(get(op, "label", op.name))
        with ir.InsertionPoint(self.schedule):    # op functions first, the schedule last
            fn = func.FuncOp(name, (in_types, out_types), loc=op.location)
        fn.attributes["agentc.op"] = ir.StringAttr.get(op.name)
        entry = fn.add_entry_block()
        attrs = {n: op.attributes[n] for n in _attr_names(op) if n not in _PLAN_ONLY}
        with ir.InsertionPoint(entry), op.location:
            _new, results = dialects.create(op.name, list(entry.arguments),
                                            [dialects.type_kind(r.type) for r in op.results],
                                            attrs, op.location)
            func.ReturnOp([r for r in results])
        with ir.InsertionPoint(self.block), op.location:
            c = func.CallOp(out_types, ir.FlatSymbolRefAttr.get(name), operands)
        self._mark(c.operation, trips, region)
        for res, new in zip(op.results, c.results):
            self.values[res] = new

    def send(self, value, peer, attrs, trips, region):
        with ir.InsertionPoint(self.block), value.owner.location:
            op, _ = dialects.create("agent.send", [self.values[value]], (),
                                    self._attrs(peer, attrs), value.owner.location)
        self._mark(op, trips, region)

    def recv(self, value, peer, attrs, trips, region):
        kind = dialects.type_kind(value.type)
        with ir.InsertionPoint(self.block), value.owner.location:
            op, results = dialects.create("agent.recv", [], (kind,), self._attrs(peer, attrs),
                                          value.owner.location)
        self._mark(op, trips, region)
        self.values[value] = results[0]

    @staticmethod
    def _attrs(peer, attrs):
        i64 = ir.IntegerType.get_signless(64)
        return {"peer": ir.StringAttr.get(peer), "channel": ir.IntegerAttr.get(i64, attrs["channel"]),
                "bytes": ir.IntegerAttr.get(i64, attrs["bytes"]), "link": ir.StringAttr.get(attrs["link"])}

    def finish(self, outputs):
        with ir.InsertionPoint(self.block):
            func.ReturnOp([self.values[v] for v in outputs] if self._sched_outputs else [])
