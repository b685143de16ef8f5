"""place: choose a pool, tensor-parallel degree and replica count for every op of the
entry agent by a MILP that meets the SLA at least cost (agentc.planner, HiGHS).

The costed IR becomes the planner's abstract `Problem`: one `PlanOp` per granular op,
its options from the `costs` attribute; one `PlanEdge` per def-use pair, sized by what
flows on it. `kv.transfer` ops are not placed themselves: they become the edge from
prefill to decode, priced by the link (or the cluster's transfer profile) only when the
two ends sit on different pools, which is exactly the paper's disaggregation choice.
Loops weight their body by expected trips and branches their arms by probability
(`--worst-case`: maximum trips, both arms). The plan is written back as attributes on
each op (pool, device, target, chip, tp, replicas, start/finish, and `option`, the rank
of the chosen entry of `costs`) and on the graph (solver status and gap), and left on
the pass context for the manifest and `agentc explain`. `place{restore=1}` rebuilds
that same plan from those attributes without solving: how a module printed at `placed`
or later resumes.
"""

from __future__ import annotations

import math

from mlir import ir

from agentc.costmodel import kv_cache_bytes, usd_per_hr
from agentc.diagnostics import InfeasiblePlanError, VerifyError
from agentc.frontend.lower import attrs
from agentc.passes._ir import get, source_loc
from agentc.dialects import type_kind
from agentc.dialects.ops import LAYER_INTERLEAVED
from agentc.passes._plan_ctx import entry_graph, excluded_plans, model_for, models_of, sized_bounds, value_bytes
from agentc.state import Placement

NAME = "place"
TRANSFER_OPS = ("kv.transfer",)


def _is_granular(op) -> bool:
    return "costs" in op.attributes or op.name in TRANSFER_OPS


class _Graph:
    """The entry graph flattened into weighted ops and def-use edges."""

    def __init__(self, graph, worst_case: bool, models):
        self.models = models
        self.worst_case = worst_case
        self.ops: list = []          # (op, weight)
        self.ids: set[str] = set()   # op_id of every placed or transfer op
        self.transfer_ends: dict[str, tuple[str, str]] = {}  # kv.transfer id -> (prefill, decode)
        self.flow = self._visit(graph.regions[0].blocks[0], 1.0)

    def _visit(self, block, weight) -> tuple:
        """Flatten `block` into self.ops; returns its control flow (planner.Loop/Branch
        around op ids, in program order) for the planner's scenarios."""
        from agentc import planner

        flow: list = []
        for op in block.operations:
            if op.name == "agent.loop":
                trips = get(op, "max_trips") if self.worst_case else get(op, "expected_trips")
                body = self._visit(op.regions[0].blocks[0], weight * trips)
                n = int(get(op, "max_trips"))
                flow.append(planner.Loop(body, n, planner.continue_prob(n, float(get(op, "expected_trips")))))
            elif op.name == "agent.branch":
                p = get(op, "prob")
                then = self._visit(op.regions[0].blocks[0], weight * (1.0 if self.worst_case else p))
                orelse = self._visit(op.regions[1].blocks[0], weight * (1.0 if self.worst_case else 1 - p))
                flow.append(planner.Branch(float(p), then, orelse))
            elif op.name == "agent.parallel":
                flow += self._visit(op.regions[0].blocks[0], weight)
            elif _is_granular(op):
                base = get(op, "label", op.name)
                name, n = base, 1
                while name in self.ids:
                    n += 1
                    name = f"{base}#{n}"
                op.attributes["op_id"] = ir.StringAttr.get(name)
                self.ids.add(name)
                self.ops.append((op, weight))
                if op.name not in TRANSFER_OPS:
                    flow.append(name)
        return tuple(flow)

    def producers(self, value) -> list:
        """Granular ops whose result reaches `value` (through region results/arguments)."""
        if isinstance(value.owner, ir.Block):
            arg = ir.BlockArgument(value)
            parent = value.owner.owner
            if parent is not None and parent.name == "agent.loop":
                return self.producers(parent.operands[arg.arg_number])
            return []
        res = ir.OpResult(value)
        op = res.owner
        if op.name in ("agent.loop", "agent.branch", "agent.parallel"):
            out = []
            for region in op.regions:
                term = list(region.blocks[0].operations)[-1]
                out += self.producers(term.operands[res.result_number])
            return out
        if op.name == "agent.input":
            return []
        return [op]


def _key(op):
    """A stable identity for an op (Python wrappers of one op are not hash-equal)."""
    return get(op, "op_id")


# What each entry of an op's `costs` attribute holds (written by annotate-cost).
_COST_KEYS = {"pool": str, "tp": int, "time_ms": float, "usd_per_call": float, "fits": bool, "binding": str}
_COST_OPTIONAL = {"busy_ms": float, "fee_usd": float, "ttft_ms": float, "tbt_ms": float, "batch": int}


def _costs(op) -> list[dict]:
    """The op's `costs` entries, each checked (a module edited by hand may lack a key)."""
    entries = get(op, "costs")
    if not isinstance(entries, list) or not entries:
        raise VerifyError(f"'{op.name}' has no `costs` to place it by (run annotate-cost first)", source_loc(op))
    for i, c in enumerate(entries):
        if not isinstance(c, dict):
            raise VerifyError(f"'{op.name}': costs[{i}] is not a dictionary", source_loc(op))
        for key, kind in list(_COST_KEYS.items()) + list(_COST_OPTIONAL.items()):
            if key not in c:
                if key in _COST_KEYS:
                    raise VerifyError(f"'{op.name}': costs[{i}] lacks '{key}'", source_loc(op))
                continue
            value = c[key]
            ok = isinstance(value, kind) or (kind is float and isinstance(value, int) and not isinstance(value, bool))
            if not ok or (kind is int and isinstance(value, bool)):
                raise VerifyError(f"'{op.name}': costs[{i}].{key} must be a {kind.__name__}", source_loc(op))
            if kind in (int, float) and not (math.isfinite(value) and value >= 0):
                raise VerifyError(f"'{op.name}': costs[{i}].{key} must be finite and not negative, got {value!r}",
                                  source_loc(op))
    return entries


def _result_kind(op) -> str:
    return type_kind(op.results[0].type) if len(op.results) else "json"


def build_problem(module, ctx):
    """The planner Problem for the module's entry graph, and the flattened graph."""
    from agentc import planner

    cluster = ctx.cluster
    opts = ctx.options
    models = models_of(module)
    graph_op = entry_graph(module)
    if graph_op is None:
        raise VerifyError("module has no agent.graph to place")
    g = _Graph(graph_op, bool(opts and opts.worst_case), models)
    ops, edges = [], []
    pools = {p.name: p for p in cluster.pools}
    for op, weight in g.ops:
        if op.name in TRANSFER_OPS:
            continue
        options = []
        for c in _costs(op):
            options.append(planner.Option(
                device=c["pool"], tp=int(c["tp"]), time_ms=float(c["time_ms"]),
                usd_per_call=float(c["usd_per_call"]), busy_ms=float(c.get("busy_ms", c["time_ms"])),
                fee_usd=float(c.get("fee_usd", 0.0)), batch=int(c.get("batch", 1)),
                ttft_ms=c.get("ttft_ms"), tbt_ms=c.get("tbt_ms"), memory_ok=bool(c["fits"]),
                note=str(c["binding"])))
        loc = source_loc(op)
        ops.append(planner.PlanOp(id=_key(op), kind=op.name, options=options, weight=weight,
                                  loc=str(loc) if loc else "", model=str(get(op, "model") or "")))
    for op, weight in g.ops:
        if op.name in TRANSFER_OPS:
            continue
        for operand in op.operands:
            for prod in g.producers(operand):
                if prod.name in TRANSFER_OPS:
                    edges += _transfer_edges(g, prod, op, weight, models, cluster, pools)
                elif _key(prod) in g.ids:
                    edges.append(planner.PlanEdge(src=_key(prod), dst=_key(op),
                                                  bytes=value_bytes(prod, _result_kind(prod), models),
                                                  weight=weight))
    # an explicit all-reduce joins the shards of the op that feeds it: same pool
    colocate = [(_key(prod), _key(op)) for op, _w in g.ops if op.name == "comm.allreduce"
                for operand in op.operands for prod in g.producers(operand) if _key(prod) in g.ids]
    # and the ops of one MoE layer take turns layer by layer: same pool (ops.LAYER_INTERLEAVED)
    colocate += [(_key(prod), _key(op)) for op, _w in g.ops for operand in op.operands
                 for prod in g.producers(operand)
                 if (prod.name, op.name) in LAYER_INTERLEAVED and _key(prod) in g.ids]
    # a bound the plan's prediction made the planner size below the program's
    # (agentc/promise.py) is read where recorded, so a restored module solves the same
    sla = planner.SLA(e2e_ms=_bound(graph_op, "latency"), ttft_ms=_bound(graph_op, "ttft"),
                      tbt_ms=_bound(graph_op, "tbt"), **sla_stats(graph_op))
    plan_pools = [planner.Pool(p.name, p.device.name, p.count, pool_price(p.device, cluster), p.device.is_cpu)
                  for p in cluster.pools]
    links = [planner.Link(l.a, l.b, l.gbps, l.latency_ms) for l in cluster.links]
    default = cluster.default_link
    tokens = sum(get(op, "tokens", 0) * w for op, w in g.ops if op.name == "llm.detokenize")
    problem = planner.Problem(
        ops=ops, edges=edges, pools=plan_pools, links=links, sla=sla,
        load_rps=float(get(graph_op, "load_rps", 0.0) or 0.0),
        objective=opts.objective if opts else "cost", sla_mode=opts.sla_mode if opts else "hard",
        lam=opts.lam if opts else 1e3, time_limit_s=opts.time_limit_s if opts else 10.0,
        default_link=planner.Link("*", "*", default.gbps, default.latency_ms) if default else None,
        tokens_per_request=float(tokens), colocate=colocate,
        # --worst-case: one scenario, every trip and both arms (the weights above)
        flow=None if g.worst_case else g.flow, ttft_ops=_first_token_ops(g, graph_op, edges),
        # plans whose prediction misses the SLA (agentc/promise.py), read where recorded
        # as the sized bounds are: a restored module judges its alternatives the same
        exclude=excluded_plans(graph_op))
    return problem, g, graph_op, cluster


def _bound(graph_op, term: str):
    sized = sized_bounds(graph_op).get(term)
    return sized if sized is not None else get(graph_op, f"sla_{term}_ms")


def sla_stats(graph_op) -> dict[str, str]:
    """The statistic each SLA term holds at, from the graph's attributes (frontend):
    `sla_percentile` etc. give pNN, `sla_*_mean` the mean, neither every path."""
    out = {}
    for term, pct, mean in (("e2e", "sla_percentile", "sla_latency_mean"),
                            ("ttft", "sla_ttft_percentile", "sla_ttft_mean"),
                            ("tbt", "sla_tbt_percentile", "sla_tbt_mean")):
        if get(graph_op, mean):
            out[f"{term}_stat"] = "mean"
        elif get(graph_op, pct) is not None:
            out[f"{term}_stat"] = f"p{float(get(graph_op, pct)):g}"
    return out


PREFILL_KINDS = ("llm.prefill", "moe.expert_prefill")
DECODE_KINDS = ("llm.decode", "moe.expert_decode")


def _first_token_ops(g, graph_op, edges) -> list[str]:
    """Per LLM call whose output reaches the returned value (program order), the chain
    from its prefill to its decode: where the answer's first token can come from."""
    term = list(graph_op.regions[0].blocks[0].operations)[-1]
    reach = {_key(p) for v in term.operands for p in g.producers(v) if _key(p) in g.ids}
    preds: dict[str, set[str]] = {}
    for e in edges:
        preds.setdefault(e.dst, set()).add(e.src)
    todo = list(reach)
    while todo:
        for x in preds.get(todo.pop(), ()):
            if x not in reach:
                reach.add(x)
                todo.append(x)
    succ: dict[str, list[str]] = {}
    for e in edges:
        succ.setdefault(e.src, []).append(e.dst)
    kinds = {_key(op): op.name for op, _w in g.ops}
    chains = []
    for op, _w in g.ops:
        if op.name in PREFILL_KINDS and _key(op) in reach:
            chains.append(_to_decode(_key(op), succ, kinds))
    return chains


def _to_decode(prefill: str, succ: dict[str, list[str]], kinds: dict[str, str]) -> list[str]:
    """The ops from a prefill to the decode that streams its first token (breadth first
    along the edges: MoE gates and merges sit between); the prefill alone if none."""
    parent, todo = {prefill: None}, [prefill]
    while todo:
        x = todo.pop(0)
        if kinds.get(x) in DECODE_KINDS:
            chain = []
            while x is not None:
                chain.append(x)
                x = parent[x]
            return chain[::-1]
        for y in succ.get(x, ()):
            if y not in parent:
                parent[y] = x
                todo.append(y)
    return [prefill]


def pool_price(device, cluster) -> float:
    """$/hr of one device; an abstract, unpriced class (profiled per op, like the paper's
    HP/CO) is metered: 0 $/hr, and its ops pay their profiled $ per call."""
    if device.is_abstract and device.given_usd_per_hr is None:
        return 0.0
    return usd_per_hr(device, cluster)


def _transfer_edges(g, transfer, consumer, weight, models, cluster, pools):
    """The prefill -> decode edge that a kv.transfer op stands for."""
    from agentc import planner

    model = model_for(transfer, models)
    nbytes = kv_cache_bytes(model, get(transfer, "tokens"), get(transfer, "batch", 1))
    profiled = {}
    for a in pools.values():
        for b in pools.values():
            if a.name == b.name:
                continue
            prof = cluster.transfer_profile("kv.transfer", a.device.name, b.device.name)
            if prof is not None:
                usd = prof.usd_per_call if prof.usd_per_call is not None else \
                    (prof.usd_per_token or 0.0) * get(transfer, "tokens") * get(transfer, "batch", 1)
                profiled[(a.name, b.name)] = (prof.latency_ms, usd)
    out = []
    for prod in g.producers(transfer.operands[0]):
        if _key(prod) in g.ids:
            g.transfer_ends.setdefault(_key(transfer), (_key(prod), _key(consumer)))
            out.append(planner.PlanEdge(src=_key(prod), dst=_key(consumer), bytes=nbytes,
                                        weight=weight, kind="kv.transfer", profiled=profiled or None))
    return out


def run(module, ctx, restore=None) -> None:
    from agentc import planner

    problem, g, graph_op, cluster = build_problem(module, ctx)
    if restore not in (None, "0", "1"):
        raise VerifyError(f"place: restore must be 0 or 1, got '{restore}'")
    if restore == "1":
        plan = _restore(problem, g, graph_op)
    else:
        try:
            plan = (ctx.solver or planner.solve)(problem)
        except InfeasiblePlanError as e:
            raise InfeasiblePlanError(e.message, e.loc or source_loc(graph_op), e.notes) from None
        _write_back(plan, problem, g, graph_op, cluster)
    ctx.placement = Placement(problem, plan, {_key(op): op for op, _ in g.ops})


def _write_back(plan, problem, g, graph_op, cluster) -> None:
    pools = {p.name: p for p in cluster.pools}
    options = {op.id: op.options for op in problem.ops}
    for op, _w in g.ops:
        if op.name in TRANSFER_OPS:
            ends = g.transfer_ends.get(_key(op))
            if ends is not None:
                src, dst = plan.ops[ends[0]], plan.ops[ends[1]]
                op.attributes["src_pool"] = ir.StringAttr.get(src.pool)
                _annotate(op, pools[dst.pool], 1, 1, dst.start_ms, dst.start_ms)
            continue
        p = plan.ops[_key(op)]
        _annotate(op, pools[p.pool], p.option.tp, p.replicas, p.start_ms, p.finish_ms)
        op.attributes["option"] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), _rank(options[_key(op)], p))
        if p.split_key:  # a split op: `pool` etc. are its largest part's, `split` all parts
            op.attributes["split"] = ir.StringAttr.get(p.split_key)
    f64 = ir.F64Type.get()
    graph_op.attributes["plan_e2e_ms"] = ir.FloatAttr.get(f64, float(plan.e2e_ms))
    graph_op.attributes["plan_cost"] = ir.FloatAttr.get(f64, float(plan.cost))
    graph_op.attributes["plan_status"] = ir.StringAttr.get(plan.status)
    if plan.gap is not None:         # no gap: no bound was proven
        graph_op.attributes["plan_gap"] = ir.FloatAttr.get(f64, float(plan.gap))


def _rank(options, placed) -> int:
    """Position of the chosen option among the op's options (the `costs` order); equal
    options evaluate alike, so the first equal one stands for all."""
    return options.index(placed.option)


def _restore(problem, g, graph_op):
    """The plan recorded on the ops, re-evaluated (no solve)."""
    from agentc import planner

    status, gap = get(graph_op, "plan_status"), get(graph_op, "plan_gap")
    if not isinstance(status, str):
        raise VerifyError("this module carries no placement to resume from (no plan_status on the graph); "
                          "resume from a module printed at 'placed' or later", source_loc(graph_op))
    if gap is not None and not isinstance(gap, (int, float)):
        raise VerifyError("the graph's plan_gap must be a number", source_loc(graph_op))
    chosen = {}
    for op, _w in g.ops:
        if op.name in TRANSFER_OPS:
            continue
        rank, pool = get(op, "option"), get(op, "pool")
        if not isinstance(rank, int) or isinstance(rank, bool) or not isinstance(pool, str):
            raise VerifyError(f"op '{_key(op)}' carries no placement (integer `option`, string `pool`) to "
                              "resume from", source_loc(op))
        replicas, parts = get(op, "replicas"), get(op, "split", "")
        if not isinstance(parts, str):
            raise VerifyError(f"op '{_key(op)}': its `split` must be a string", source_loc(op))
        chosen[_key(op)] = (rank, pool, replicas if isinstance(replicas, int) else None, parts)
    return planner.replay(problem, chosen, status, None if gap is None else float(gap))


def _annotate(op, pool, tp, replicas, start, finish):
    dev = pool.device
    for k, v in attrs(pool=pool.name, device=dev.name, target=dev.target, chip=dev.chip or "", tp=int(tp),
                      replicas=int(replicas), start_ms=float(start), finish_ms=float(finish)).items():
        op.attributes[k] = v
