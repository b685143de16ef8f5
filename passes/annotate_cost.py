"""annotate-cost: price every granular op on every device pool of the cluster.

For each op and each pool (and each admissible tensor-parallel degree where the op
splits), the cost model gives time, binding resource, memory fit and dollars (arXiv
2507.19635, section 3.1). The result is attached to the op as `costs`, an array of dictionaries, so
the placement pass, `agentc cost` and a human reading `--emit costed` all see the same
numbers. Host-side work (tokenizing, tool calls, memory, glue) is offered only on CPU
pools when the cluster has any. An op that fits no device is an error here, located at
the source that created it.
"""

from __future__ import annotations

from mlir import ir

from agentc.costmodel import KINDS, CostModelError, batch_sweep, op_cost, op_demand, supports_tp
from agentc.diagnostics import VerifyError
from agentc.frontend.lower import attrs
from agentc.passes._ir import attrs_of, get, source_loc, top_ops, walk
from agentc.dialects.ops import DECODE_KINDS, SHARD_ONLY_IF_TOO_BIG
from agentc.passes._plan_ctx import model_for, models_of

NAME = "annotate-cost"
MAX_BATCH = 256


def _batches(kind, a, model, dev, tp, cluster, loc, tbt_sla_ms):
    """Decode is served in batches, one picked per op by the planner: a small batch buys
    latency (a shorter step), a large one devices (more sequences per step); under load
    it drops the sizes its traffic cannot fill (planner/queueing.py). Offered: every
    power of two up to MAX_BATCH that fits in memory and keeps the per-token step within
    the TBT SLA, the largest of them included (the paper maximises batch under the
    SLA). Every one, not a sparser menu plus the largest: the sizes offered under a
    bound must be offered under every looser one, or loosening the TBT bound can take
    a cheaper plan away (supervisor: `tbt < 15ms` planned at 17.9639 $/hr with a batch
    of 32 that `tbt < 16ms` no longer offered, 17.9914). Returns [(cost at that batch,
    batch)]; per-request busy time and dollars are the batch's divided by the batch
    size. Profiled costs are taken as measured, unbatched."""
    first = op_cost(kind, a, model, dev, tp, cluster, loc)
    if first.profiled:
        return [(first, 1)]
    sweep = list(batch_sweep(kind, a, model, dev, tp, cluster, tbt_sla_ms, MAX_BATCH, loc))
    if not sweep:
        return [(first, 1)]
    return [(c, b) for b, c in sweep]


def op_costs(op, models, cluster, tbt_sla_ms=None, pools=None):
    """The list of (pool, OpCost, batch) for `op` over `pools` (default: the cluster's;
    the source of the `costs` attribute)."""
    kind = op.name
    a = attrs_of(op)
    model = model_for(op, models)
    loc = source_loc(op)
    demand = op_demand(kind, a, model, loc)
    has_cpu = any(p.device.is_cpu for p in cluster.pools)
    out = []
    for pool in cluster.pools if pools is None else pools:
        dev = pool.device
        if demand.host_side and has_cpu and not dev.is_cpu:
            continue
        fixed = a.get("tp")
        if fixed is not None and fixed > 1:
            # Sharded explicitly by decompose-llm{tp=K}: only pools that host K devices.
            if fixed not in pool.admissible_tp():
                continue
            degrees = (fixed,) if supports_tp(kind) else (1,)
        else:
            degrees = pool.admissible_tp() if supports_tp(kind) else (1,)
        for tp in degrees:
            try:
                if kind in DECODE_KINDS:
                    priced = _batches(kind, a, model, dev, tp, cluster, loc, tbt_sla_ms)
                else:
                    priced = [(op_cost(kind, a, model, dev, tp, cluster, loc), 1)]
            except CostModelError:
                if dev.is_abstract:
                    continue
                raise
            out += [(pool, cost, batch) for cost, batch in priced]
    if kind in SHARD_ONLY_IF_TOO_BIG:
        out = _least_shards(out)
    return out


def _least_shards(entries):
    """Per pool, an op sharded only where one device cannot hold it (an index): tp=1
    when that fits, else the fewest devices that hold it (else tp=1, reported as not
    fitting): more shards would only be offered for speed, which is not their purpose."""
    out = []
    for name in dict.fromkeys(p.name for p, _c, _b in entries):
        mine = [e for e in entries if e[0].name == name]
        fitting = [e for e in mine if e[1].fits]
        least = min((e[1].tp for e in fitting), default=1)
        out += [e for e in mine if e[1].tp == least]
    return out


def run(module, ctx) -> None:
    cluster = ctx.cluster
    models = models_of(module)
    for graph in [op for op in top_ops(module) if op.name == "agent.graph"]:
        tbt = get(graph, "sla_tbt_ms")
        # kv.transfer is an edge: the place pass prices it by link or transfer profile.
        priced = [op for op in walk(graph) if op.name in KINDS and op.name != "kv.transfer"]
        # identical pools (Cluster.without_twins): priced once without load; under load
        # once per op that keeps devices busy, and one more (twins that host only ops
        # keeping nothing busy merge into one), found by pricing on one twin first
        pools, _twins = cluster.without_twins(1)
        first = {id(op): op_costs(op, models, cluster, tbt, pools) for op in priced}
        if get(graph, "load_rps", 0.0):
            busy = sum(1 for op in priced if any(c.busy_ms > 0 for _p, c, _b in first[id(op)]))
            more, _twins = cluster.without_twins(min(len(priced), busy + 1))
            if len(more) != len(pools):
                pools, first = more, {}
        for op in priced:
            entries = first.get(id(op)) or op_costs(op, models, cluster, tbt, pools)
            loc = source_loc(op)
            if not entries:
                raise VerifyError(f"no pool of cluster '{cluster.name}' can run {op.name}", loc)
            if not any(c.fits for _p, c, _b in entries):
                model = model_for(op, models)
                biggest = max(entries, key=lambda e: e[0].device.memory_gb * e[1].tp)[:2]
                need = biggest[1].memory_bytes * biggest[1].tp / 1e9
                raise VerifyError(
                    f"{op.name} of model '{model.name if model else '?'}' fits no device of cluster "
                    f"'{cluster.name}': it needs {need:.1f} GB, the largest option "
                    f"({biggest[0].name}, tp={biggest[1].tp}) has "
                    f"{biggest[0].device.memory_gb * biggest[1].tp:.0f} GB", loc)
            op.attributes["costs"] = ir.ArrayAttr.get([
                ir.DictAttr.get(attrs(
                    pool=pool.name, device=c.device, tp=c.tp, time_ms=float(c.time_ms), binding=c.binding,
                    fits=bool(c.fits), usd_per_call=float(c.usd_per_call) / b, fee_usd=float(c.fee_usd) / b, busy_ms=float(c.busy_ms) / b,
                    batch=int(b), memory_bytes=float(c.memory_bytes),
                    energy_j=float(c.energy_j) / b, ttft_ms=None if c.ttft_ms is None else float(c.ttft_ms),
                    tbt_ms=None if c.tbt_ms is None else float(c.tbt_ms), profiled=bool(c.profiled)))
                for pool, c, b in entries])
