"""What a plan says about itself: timings, slack, the critical path, per-op alternatives,
binding constraints, and why there is no plan when there is none.

Every number here is recomputed by `Instance.evaluate` from the chosen options, never
read from the solver's columns, so reports do not depend on solver tolerances.
"""

from __future__ import annotations

import math

from agentc.diagnostics import InfeasiblePlanError

from .formulation import Formulation, MilpResult
from .instance import Instance, Metrics, denoise
from . import split
from .problem import Alternative, EdgePlacement, OpPlacement, Plan, SplitPart

ALTERNATIVES_ALL_UP_TO = 2000  # choices in the problem; beyond, one alternative per pool
# Each alternative re-evaluates the whole plan, so explaining every op costs O(ops^2):
# beyond this many ops a plan lists no per-op alternatives (runner-ups), so that large
# graphs place in time linear in their size; `agentc explain` still answers for them.
ALTERNATIVES_UP_TO_OPS = 300
RELAX_NOTE = ("binding constraints found by slack relaxation of the MILP (every SLA, capacity "
              "and memory limit made soft, total violation minimised), not by an LP IIS")


def infeasible(inst: Instance, res: MilpResult) -> InfeasiblePlanError:
    p = inst.problem
    if res.status == "no-solution":
        return InfeasiblePlanError(
            f"no placement found within the time limit of {p.time_limit_s:g} s",
            notes=["the MILP neither found a plan nor proved there is none; give it longer with --time-limit SECONDS"])
    notes, heads = [], []
    for i, ks in enumerate(inst.op_choices):
        if all(not inst.choices[k].memory_ok for k in ks):
            pools = ", ".join(sorted({inst.sites[inst.choices[k].site].name for k in ks}))
            notes.append(f"op '{inst.ops[i].id}' has no option that fits device memory (tried {pools})")
            heads.append("memory")
    # An op that alone needs more devices than any pool it may use has: said directly,
    # and exactly (a slack relaxation at such magnitudes is at the mercy of tolerances).
    too_big = False
    for i, ks in enumerate(inst.op_choices if inst.load > 0 else ()):
        sized = [(max(math.ceil(inst.demand(k) - 1e-9), inst.choices[k].option.tp), inst.sites[inst.choices[k].site])
                 for k in ks]
        if sized and all(s.count is not None and n > s.count for n, s in sized):
            n, s = min(sized, key=lambda e: e[0] - e[1].count)
            notes.append(f"op '{inst.ops[i].id}' alone needs more devices than any pool it can use has: "
                         f"at {p.load_rps:g} req/s at least {n} on pool {s.name}, which has {s.count}; "
                         f"no split of it over up to {split.MAX_PARTS} pools (fractions of "
                         f"1/{split.FRACTION_STEPS}) carries it either")
            heads.append(f"pool {s.name} count")
            too_big = True
    relaxed = MilpResult("skipped", None, None, math.inf, 0.0) if too_big else Formulation(inst, "relax").solve()
    if relaxed.choice is not None:
        m = inst.evaluate(relaxed.choice)
        if m.e2e_over_ms > 0:
            notes.append(f"e2e SLA of {p.sla.e2e_ms:g} ms ({_stat_words(p.sla.e2e_stat)}): the best "
                         f"achievable plan takes {m.e2e_ms:g} ms, missing it by {m.e2e_over_ms:g} ms")
            heads.append(f"e2e SLA (misses by {m.e2e_over_ms:g} ms)")
        if m.ttft_over_ms > 0:
            notes.append(f"TTFT SLA of {p.sla.ttft_ms:g} ms ({_stat_words(p.sla.ttft_stat)}): the best "
                         f"achievable first token comes at {m.ttft_ms:g} ms, missing it by {m.ttft_over_ms:g} ms")
            heads.append("TTFT SLA")
        for i, k in enumerate(m.choice):
            c, op_id = inst.choices[k], inst.ops[i].id
            if c.ttft_excess_ms > 0:
                notes.append(f"TTFT SLA of {p.sla.ttft_ms:g} ms: op '{op_id}' needs at least "
                             f"{c.option.ttft_ms:g} ms, missing it by {c.ttft_excess_ms:g} ms")
                heads.append("TTFT SLA")
            if c.tbt_excess_ms > 0:
                notes.append(f"TBT SLA of {p.sla.tbt_ms:g} ms: op '{op_id}' needs at least "
                             f"{c.tbt:g} ms, missing it by {c.tbt_excess_ms:g} ms")
                heads.append("TBT SLA")
            if c.tp_excess:
                site = inst.sites[c.site]
                notes.append(f"pool {site.name}: op '{op_id}' needs tp={c.option.tp}, the pool has "
                             f"{site.count} devices (exceeded by {c.tp_excess})")
                heads.append(f"pool {site.name}")
        for j, over in sorted(m.pool_over.items()):
            site = inst.sites[j]
            notes.append(f"pool {site.name}: {p.load_rps:g} req/s needs {m.devices[j]} devices, the "
                         f"pool has {site.count} (exceeded by {over})")
            heads.append(f"pool {site.name} count")
    if not notes:
        notes.append("the slack relaxation found no violation; the constraints conflict only "
                     "at integer points")
    if not too_big:
        notes.append(RELAX_NOTE)
    heads = list(dict.fromkeys(heads)) or ["SLA and capacity"]
    return InfeasiblePlanError("no placement meets " + ", ".join(heads), notes=notes)


# -------------------------------------------------------------------- the plan


def build_plan(inst: Instance, m: Metrics, res: MilpResult, explain: bool) -> Plan:
    p = inst.problem
    n = len(inst.ops)
    ch = [inst.choices[k] for k in m.choice]
    timed = inst.crowded(m.choice)   # the times evaluate() gave m: decode calls stretched by crowding
    dur = [inst.duration(k) for k in timed]
    latest_finish = [m.path_ms] * n
    for i in reversed(inst.topo):
        for k in inst.succ[i]:
            e = inst.edges[k]
            latest_finish[i] = min(latest_finish[i],
                                   latest_finish[e.v] - dur[e.v] - e.weight * m.transfers[k][0])
    slack = [max(0.0, denoise(latest_finish[i] - m.finish[i], m.path_ms)) for i in range(n)]
    ops = {}
    for i, c in enumerate(ch):
        reps = c.replicas  # sized by queueing.py; host work on a CPU pool shares its devices
        if inst.load > 0 and inst.sites[c.site].is_cpu:
            reps = max(1, math.ceil(inst.demand(m.choice[i]) / c.option.tp - 1e-9))
        option, pool, parts = c.option, inst.sites[c.site].name, []
        if c.parts:  # a split: shown by its parts, the largest standing for the op
            parts = [SplitPart(inst.sites[pt.site].name, pt.fraction, pt.option, pt.replicas, pt.devices,
                               pt.wait_ms) for pt in sorted(c.parts, key=lambda pt: (-pt.fraction, pt.site))]
            option, pool = parts[0].option, parts[0].pool
        ops[inst.ops[i].id] = OpPlacement(
            inst.ops[i].id, option, pool, reps, m.start[i], m.finish[i], slack[i],
            excluded=[(inst.choices[k].option, inst.choices[k].excluded) for k in inst.op_choices[i]
                      if inst.choices[k].excluded is not None], wait_ms=inst.choices[timed[i]].wait_ms,
            split=parts, split_key=split.key(inst, c) if c.parts else "",
            time_ms=c.ms, tbt_ms=c.tbt, run_batch=c.run_batch)
    edges = []
    for k, e in enumerate(inst.edges):
        a, b = ch[e.u].site, ch[e.v].site
        if a != b:
            ms, usd = m.transfers[k]
            # a split end: named by the pair of pools whose transfer is the slowest
            a, b = _slowest_pair(inst, k, a, b)
            if a == b:
                continue
            edges.append(EdgePlacement(inst.ops[e.u].id, inst.ops[e.v].id, inst.sites[a].name,
                                       inst.sites[b].name, e.weight * ms, e.weight * usd))
    plan = Plan(
        ops=ops, edges=edges, e2e_ms=m.e2e_ms, ttft_ms=m.ttft_ms, tbt_ms=m.tbt_ms,
        usd_per_request=m.usd_per_request, usd_per_hr=m.usd_per_hr,
        devices={inst.sites[j].name: d for j, d in m.devices.items()},
        cost=m.cost, objective=p.objective, status=status_label(res),
        gap=res.gap if math.isfinite(res.gap) else None,
        solve_time_s=res.solve_time_s, critical_path=_critical_path(inst, m),
        sla_slack_ms=None if p.sla.e2e_ms is None else denoise(p.sla.e2e_ms - m.e2e_ms, p.sla.e2e_ms),
        violations=list(m.violations), penalty=m.penalty,
        tokens_per_usd=(p.tokens_per_request / m.usd_per_request
                        if p.tokens_per_request and m.usd_per_request > 0 else None),
        stats={"e2e": p.sla.e2e_stat, "ttft": p.sla.ttft_stat, "tbt": p.sla.tbt_stat},
        scenarios=len(inst.scen), scenarios_exact=inst.scen_exact)
    if explain and n <= ALTERNATIVES_UP_TO_OPS:
        for i in range(n):
            ops[inst.ops[i].id].alternatives = _alternatives(inst, m, i)
    plan.binding = _binding(inst, m, plan)
    return plan


def _slowest_pair(inst: Instance, k: int, a: int, b: int) -> tuple[int, int]:
    """The pools of sites a and b (a split site stands for its parts) whose transfer on
    edge k takes longest; (a, b) themselves when neither is split."""
    pairs = [(x, y) for x, _ in (inst.sites[a].parts or ((a, 1.0),))
             for y, _ in (inst.sites[b].parts or ((b, 1.0),))]
    return max(pairs, key=lambda xy: (inst.transfer(k, *xy)[0], xy[0] != xy[1], -xy[0], -xy[1]))


def _stat_words(stat: str) -> str:
    """How an SLA statistic reads in a note."""
    if stat == "all":
        return "every control-flow path"
    return "mean over control-flow paths" if stat == "mean" else f"{stat[1:]}% of requests"


# The most a plan's proven relative gap may be for the word "optimal": float noise. A
# solve stopped at a looser requested gap (Problem.mip_rel_gap, e.g. bench_planner's 1%)
# is "feasible (gap X%)": a gap beside "optimal" would claim what was not proved.
OPTIMAL_GAP = 1e-9


def status_label(res: MilpResult) -> str:
    """"optimal" when proved to float noise (OPTIMAL_GAP), else "feasible (gap X%)"."""
    if res.status == "optimal" and res.gap <= OPTIMAL_GAP:
        return "optimal"
    return "feasible (gap unknown)" if not math.isfinite(res.gap) else f"feasible (gap {res.gap * 100:.3g}%)"


def _critical_path(inst: Instance, m: Metrics) -> list[str]:
    if not inst.ops:
        return []
    i = next(i for i in inst.topo if not inst.succ[i] and denoise(m.finish[i] - m.path_ms, m.path_ms) == 0)
    path = [i]
    while True:
        tight = [inst.edges[k].u for k in inst.pred[i]
                 if denoise(m.finish[inst.edges[k].u] + inst.edges[k].weight * m.transfers[k][0] - m.start[i],
                            m.path_ms) == 0]
        if not tight or m.start[i] <= 0.0:
            break
        i = tight[0]
        path.append(i)
    return [inst.ops[i].id for i in reversed(path)]


def _alternatives(inst: Instance, m: Metrics, i: int) -> list[Alternative]:
    """Other choices for op i, each priced with the rest of the plan fixed."""
    out = []
    base = list(m.choice)
    ks = inst.op_choices[i]
    if len(inst.choices) > ALTERNATIVES_ALL_UP_TO:  # large graphs: the cheapest option per pool
        per_site: dict[int, int] = {}
        for k in ks:
            c = inst.choices[k]
            j = per_site.get(c.site)
            if k != m.choice[i] and (j is None or c.option.usd_per_call < inst.choices[j].option.usd_per_call):
                per_site[c.site] = k
        ks = sorted(per_site.values())
    for k in ks:
        if k == m.choice[i]:
            continue
        trial = base.copy()
        trial[i] = k
        t = inst.evaluate(trial)
        c = inst.choices[k]
        reasons = ([c.excluded] if c.excluded else []) + [v for v in t.violations if v not in m.violations]
        feasible = c.excluded is None and inst.feasible(t)
        out.append((not feasible, t.cost, t.e2e_ms, c.rank, Alternative(
            c.option, inst.sites[c.site].name, t.e2e_ms, t.cost, denoise(t.e2e_ms - m.e2e_ms, m.e2e_ms),
            denoise(t.cost - m.cost, m.cost), feasible, tuple(dict.fromkeys(reasons)))))
    out.sort(key=lambda r: r[:4])
    # under load an option is a choice per replica count: list each option on each pool
    # once, at its best count, and not the chosen option at other counts
    mine = inst.choices[m.choice[i]]
    seen = {(mine.rank, inst.sites[mine.site].name)}
    kept = []
    for r in out:
        key = (r[3], r[4].pool)
        if key not in seen:
            seen.add(key)
            kept.append(r[4])
    return kept


def _binding(inst: Instance, m: Metrics, plan: Plan) -> list[str]:
    """Constraints that are tight, or that rule out a cheaper single-op move."""
    p = inst.problem
    out = []
    if p.sla.e2e_ms is not None and denoise(m.e2e_ms - p.sla.e2e_ms, p.sla.e2e_ms) == 0:
        out.append(f"e2e SLA {p.sla.e2e_ms:g} ms: tight (plan takes {m.e2e_ms:g} ms)")
    for op_id, placed in plan.ops.items():
        for alt in placed.alternatives:
            if alt.feasible or alt.delta_cost >= 0:
                continue
            why = "; ".join(alt.reasons) if alt.reasons else "infeasible"
            out.append(f"op '{op_id}' on {alt.pool} would cost {-alt.delta_cost:.6g} less but: {why}")
    if inst.load > 0:
        for j, d in m.devices.items():
            cnt = inst.sites[j].count
            if cnt is not None and d >= cnt:
                out.append(f"pool {inst.sites[j].name}: all {cnt} devices in use")
    return out
