"""`solve` and `pareto`: optimise, explain, compare with baselines.

The MILP picks the placement; everything reported about it (latency, cost, slack,
alternatives, baselines) is recomputed by `Instance.evaluate`, so the numbers a user
sees never depend on solver tolerances.

Objectives: "cost" minimises $/request (or $/hr under load); "latency" minimises the
e2e time, then cost at that time (two solves, exact lexicographic order);
"tokens-per-dollar" maximises tokens_per_request / cost, and since tokens per request
are fixed by the program this is the same plan as "cost" (batch-size choices show up as
different options' busy_ms and usd_per_call, which the cost already weighs); the plan
reports `tokens_per_usd`.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

from agentc.diagnostics import InfeasiblePlanError

from .greedy import greedy_choice
from .improve import consolidate, descend
from .instance import Instance, Metrics
from .milp import Formulation, MilpResult
from .problem import (SLA, Alternative, Baseline, EdgePlacement, OpPlacement, Plan,
                      Problem)

LP_ROUNDING_MIN_CHOICES = 200
RINS_FIX = 0.99   # an op is fixed in the RINS sub-MILP when the LP puts this much on its incumbent option
ALTERNATIVES_ALL_UP_TO = 2000  # choices in the problem; beyond, one alternative per pool
RELAX_NOTE = ("binding constraints found by slack relaxation of the MILP (every SLA, capacity "
              "and memory limit made soft, total violation minimised), not by an LP IIS")


def solve(problem: Problem, *, baselines: bool = True, explain: bool = True) -> Plan:
    """The best placement of `problem`; raises InfeasiblePlanError naming what binds."""
    inst = Instance(problem)
    # An agent that only passes its input through has nothing to place: the empty plan.
    res = MilpResult("optimal", (), 0.0, 0.0, 0.0) if not inst.ops else _optimise(inst)[0]
    if res.choice is None:
        raise _infeasible(inst, res)
    m = inst.evaluate(res.choice)
    plan = _plan(inst, m, res, explain)
    if baselines:
        plan.baselines = _baselines(problem, inst, m)
    return plan


def _optimise(inst: Instance) -> tuple[MilpResult, Metrics | None]:
    """Greedy + LP-guided warm start, then the MILP (two stages for latency)."""
    g = greedy_choice(inst)
    gm = inst.evaluate(g) if g is not None else None
    if inst.problem.objective != "latency":
        return _run(inst, "cost", None, gm), gm
    first = _run(inst, "latency", None, gm)
    if first.choice is None:
        return first, gm
    m1 = inst.evaluate(first.choice)
    cap = m1.e2e_ms * (1 + 1e-9) + 1e-6
    second = _run(inst, "cost", cap, m1)
    if second.choice is None:
        return first, gm
    second.solve_time_s += first.solve_time_s
    second.gap = max(first.gap, second.gap)
    if first.status != "optimal":
        second.status = first.status
    return second, gm


def _run(inst: Instance, mode: str, cap: float | None, warm: Metrics | None) -> MilpResult:
    """Solve one formulation; large ones via their LP relaxation first.

    HiGHS's primal heuristics only run after long cut rounds on these models, so for
    large graphs: (1) solve the LP; (2) solve the MILP restricted to the options the LP
    uses (most ops are integral there, so it is small) for an incumbent, polished by a
    same-pool descent (improve.py); (3) under load, if that is not within the requested
    gap of the LP bound, first a RINS sub-MILP (ops where the incumbent and the LP agree
    stay fixed, the rest may move within the pools below), then the MILP over every
    option on the pools the LP uses for
    each op (a neighbourhood that holds the other tp degrees and batch sizes: what
    closes the gap when whole devices are paid for, where the descent's one-op moves
    rarely cross a device boundary), time-boxed, stopping at the first plan within the
    gap; (4) reduced cost fixing: an option whose LP reduced cost exceeds UB - LP bound
    cannot be in a plan better than UB, so dropping it loses nothing; (5) solve the MILP
    over the options left, warm-started with UB. Its optimum is the full problem's
    optimum.

    Under load, the LP leaves out the rows `devices >= tp`: without them it is several
    times faster, and its bound (hence the gap test and the fixing) stays valid. Every
    MILP keeps them.
    """
    t0 = time.perf_counter()
    rel_gap = inst.problem.mip_rel_gap
    f = Formulation(inst, mode, cap)
    if f.trivially_infeasible:
        return MilpResult("infeasible", None, None, math.inf, time.perf_counter() - t0)
    starts = [warm] if warm is not None and _fits(inst, warm, cap) else []
    key = (lambda m: (m.e2e_ms, m.objective)) if mode == "latency" else (lambda m: m.objective)

    def polish(res: MilpResult) -> None:
        if res.choice is not None:
            rm = inst.evaluate(res.choice)
            if _fits(inst, rm, cap):
                starts.append(consolidate(inst, descend(inst, rm, cap), cap) if mode == "cost" else rm)

    def closed(bound: float) -> MilpResult | None:
        if not starts:
            return None
        best = min(starts, key=key)
        ub = _value(inst, mode, best)
        gap = (ub - bound) / max(abs(ub), 1e-12)
        return MilpResult("optimal", best.choice, ub, max(gap, 0.0), 0.0) if gap <= rel_gap else None

    cand = f.cand
    if len(f.xcol) >= LP_ROUNDING_MIN_CHOICES:
        relaxed = f if inst.load <= 0 else Formulation(inst, mode, cap, tp_rows=False)
        lp = relaxed.lp_relaxation()
        if lp is None:
            return MilpResult("infeasible", None, None, math.inf, time.perf_counter() - t0)
        bound, x, reduced = lp
        support = [[k for k in ks if x.get(k, 0.0) > 1e-6] or ks for ks in cand]
        g = greedy_choice(inst, support)
        gm = inst.evaluate(g) if g is not None else None
        polish(_solve(inst, mode, cap, support, gm if gm is not None and _fits(inst, gm, cap) else None))
        done = closed(bound)
        if done is None and inst.load > 0:
            pools = [{inst.choices[k].site for k in ks} for ks in support]
            for i, k in enumerate(min(starts, key=key).choice if starts else ()):
                pools[i].add(inst.choices[k].site)
            near = [[k for k in ks if inst.choices[k].site in pools[i]] for i, ks in enumerate(cand)]
            if starts:
                # RINS (relaxation induced neighbourhood search): fix every op whose
                # incumbent option the LP also picks, search the rest; small and fast.
                inc = min(starts, key=key)
                rins = [[inc.choice[i]] if x.get(inc.choice[i], 0.0) > RINS_FIX else ks
                        for i, ks in enumerate(near)]
                polish(_solve(inst, mode, cap, rins, inc, time_limit=inst.problem.time_limit_s / 8,
                              target=bound + rel_gap * abs(bound)))
                done = closed(bound)
            if done is None and sum(map(len, near)) < len(f.xcol):
                polish(_solve(inst, mode, cap, near, min(starts, key=key) if starts else None,
                              time_limit=inst.problem.time_limit_s / 4, target=bound + rel_gap * abs(bound)))
                done = closed(bound)
        if done is not None:
            done.solve_time_s = time.perf_counter() - t0
            return done
        if starts:
            ub = _value(inst, mode, min(starts, key=key))
            margin = ub - bound + 1e-9 * max(1.0, abs(ub))
            cand = [[k for k in ks if x.get(k, 0.0) > 1e-6 or reduced.get(k, 0.0) <= margin] for ks in cand]
    best = min(starts, key=key) if starts else None
    res = f.solve(best) if cand is f.cand else _solve(inst, mode, cap, cand, best)
    res.solve_time_s = time.perf_counter() - t0
    return res


def _solve(inst: Instance, mode: str, cap: float | None, cand: list[list[int]], warm: Metrics | None,
           time_limit: float | None = None, target: float | None = None) -> MilpResult:
    """The MILP restricted to the options in `cand`."""
    return Formulation(inst, mode, cap, cand=cand).solve(warm, time_limit, target)


def _fits(inst: Instance, m: Metrics, cap: float | None) -> bool:
    return inst.feasible(m) and (cap is None or m.e2e_ms <= cap)


def _value(inst: Instance, mode: str, m: Metrics) -> float:
    """The formulation's objective at plan m (penalties included)."""
    if mode == "latency":
        return m.e2e_ms + sum(inst.problem.lam * (inst.choices[k].ttft_excess_ms + inst.choices[k].tbt_excess_ms)
                              for k in m.choice) * (not inst.hard)
    return m.objective


# -------------------------------------------------------------------- infeasibility


def _infeasible(inst: Instance, res: MilpResult) -> InfeasiblePlanError:
    p = inst.problem
    if res.status == "no-solution":
        return InfeasiblePlanError(
            f"no placement found within the time limit of {p.time_limit_s:g} s",
            notes=["the MILP neither found a plan nor proved there is none; raise time_limit_s"])
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
                         f"at {p.load_rps:g} req/s at least {n} on pool {s.name}, which has {s.count}")
            heads.append(f"pool {s.name} count")
            too_big = True
    relaxed = MilpResult("skipped", None, None, math.inf, 0.0) if too_big else Formulation(inst, "relax").solve()
    if relaxed.choice is not None:
        m = inst.evaluate(relaxed.choice)
        if m.e2e_over_ms > 1e-6:
            notes.append(f"e2e SLA of {p.sla.e2e_ms:g} ms: the best achievable plan takes "
                         f"{m.e2e_ms:g} ms, missing it by {m.e2e_over_ms:g} ms")
            heads.append(f"e2e SLA (misses by {m.e2e_over_ms:g} ms)")
        for i, k in enumerate(m.choice):
            c, op_id = inst.choices[k], inst.ops[i].id
            if c.ttft_excess_ms > 0:
                notes.append(f"TTFT SLA of {p.sla.ttft_ms:g} ms: op '{op_id}' needs at least "
                             f"{c.option.ttft_ms:g} ms, missing it by {c.ttft_excess_ms:g} ms")
                heads.append("TTFT SLA")
            if c.tbt_excess_ms > 0:
                notes.append(f"TBT SLA of {p.sla.tbt_ms:g} ms: op '{op_id}' needs at least "
                             f"{c.option.tbt_ms:g} ms, missing it by {c.tbt_excess_ms:g} ms")
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


def _plan(inst: Instance, m: Metrics, res: MilpResult, explain: bool) -> Plan:
    p = inst.problem
    n = len(inst.ops)
    ch = [inst.choices[k] for k in m.choice]
    dur = [inst.ops[i].weight * ch[i].option.time_ms for i in range(n)]
    latest_finish = [m.e2e_ms] * n
    for i in reversed(inst.topo):
        for k in inst.succ[i]:
            e = inst.edges[k]
            latest_finish[i] = min(latest_finish[i],
                                   latest_finish[e.v] - dur[e.v] - e.weight * m.transfers[k][0])
    slack = [max(0.0, latest_finish[i] - m.finish[i]) for i in range(n)]
    ops = {}
    for i, c in enumerate(ch):
        reps = max(1, math.ceil(inst.demand(m.choice[i]) / c.option.tp - 1e-9)) if inst.load > 0 else 1
        ops[inst.ops[i].id] = OpPlacement(
            inst.ops[i].id, c.option, inst.sites[c.site].name, reps, m.start[i], m.finish[i], slack[i],
            excluded=[(inst.choices[k].option, inst.choices[k].excluded) for k in inst.op_choices[i]
                      if inst.choices[k].excluded is not None])
    edges = []
    for k, e in enumerate(inst.edges):
        a, b = ch[e.u].site, ch[e.v].site
        if a != b:
            ms, usd = m.transfers[k]
            edges.append(EdgePlacement(inst.ops[e.u].id, inst.ops[e.v].id, inst.sites[a].name,
                                       inst.sites[b].name, e.weight * ms, e.weight * usd))
    ttfts = [c.option.ttft_ms for c in ch if c.option.ttft_ms is not None]
    tbts = [c.option.tbt_ms for c in ch if c.option.tbt_ms is not None]
    plan = Plan(
        ops=ops, edges=edges, e2e_ms=m.e2e_ms,
        ttft_ms=max(ttfts) if ttfts else None, tbt_ms=max(tbts) if tbts else None,
        usd_per_request=m.usd_per_request, usd_per_hr=m.usd_per_hr,
        devices={inst.sites[j].name: d for j, d in m.devices.items()},
        cost=m.cost, objective=p.objective, status=res.status, gap=res.gap,
        solve_time_s=res.solve_time_s, critical_path=_critical_path(inst, m, dur),
        sla_slack_ms=None if p.sla.e2e_ms is None else p.sla.e2e_ms - m.e2e_ms,
        violations=list(m.violations), penalty=m.penalty,
        tokens_per_usd=(p.tokens_per_request / m.usd_per_request
                        if p.tokens_per_request and m.usd_per_request > 0 else None))
    if explain:
        for i in range(n):
            ops[inst.ops[i].id].alternatives = _alternatives(inst, m, i)
    plan.binding = _binding(inst, m, plan)
    return plan


def _critical_path(inst: Instance, m: Metrics, dur: list[float]) -> list[str]:
    if not inst.ops:
        return []
    i = next(i for i in inst.topo if not inst.succ[i] and abs(m.finish[i] - m.e2e_ms) < 1e-9)
    path = [i]
    while True:
        tight = [inst.edges[k].u for k in inst.pred[i]
                 if abs(m.finish[inst.edges[k].u] + inst.edges[k].weight * m.transfers[k][0] - m.start[i]) < 1e-9]
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
            c.option, inst.sites[c.site].name, t.e2e_ms, t.cost, t.e2e_ms - m.e2e_ms,
            t.cost - m.cost, feasible, tuple(dict.fromkeys(reasons)))))
    out.sort(key=lambda r: r[:4])
    return [r[4] for r in out]


def _binding(inst: Instance, m: Metrics, plan: Plan) -> list[str]:
    """Constraints that are tight, or that rule out a cheaper single-op move."""
    p = inst.problem
    out = []
    if p.sla.e2e_ms is not None and abs(m.e2e_ms - p.sla.e2e_ms) <= 1e-6:
        out.append(f"e2e SLA {p.sla.e2e_ms:g} ms: tight (plan takes {m.e2e_ms:g} ms)")
    for op_id, placed in plan.ops.items():
        for alt in placed.alternatives:
            if alt.feasible or alt.delta_cost >= -1e-12:
                continue
            why = "; ".join(alt.reasons) if alt.reasons else "infeasible"
            out.append(f"op '{op_id}' on {alt.pool} would cost {-alt.delta_cost:.6g} less but: {why}")
    if inst.load > 0:
        for j, d in m.devices.items():
            cnt = inst.sites[j].count
            if cnt is not None and d >= cnt:
                out.append(f"pool {inst.sites[j].name}: all {cnt} devices in use")
    return out


# -------------------------------------------------------------------- baselines


def _baselines(problem: Problem, inst: Instance, m: Metrics) -> list[Baseline]:
    out = []
    cpu_only = [all(inst.sites[inst.choices[k].site].is_cpu for k in ks) for ks in inst.op_choices]
    classes = sorted({inst.sites[c.site].device_class for c in inst.choices if not inst.sites[c.site].is_cpu})
    for cls in classes:
        name = f"homogeneous {cls}"
        missing = [inst.ops[i].id for i, ks in enumerate(inst.op_choices) if not cpu_only[i]
                   and not any(inst.sites[inst.choices[k].site].device_class == cls for k in ks)]
        if missing:
            out.append(Baseline(name, False, None, None, None, None, f"op '{missing[0]}' has no option on {cls}"))
            continue
        sub = Instance(problem, lambda i, c, cls=cls: cpu_only[i] or inst.sites[c.site].device_class == cls)
        res, _ = _optimise(sub)
        if res.choice is not None:
            bm = sub.evaluate(res.choice)
            out.append(Baseline(name, True, bm.cost, bm.e2e_ms, bm.usd_per_request, _ratio(m.cost, bm.cost)))
            continue
        relaxed = Formulation(sub, "relax").solve()
        if relaxed.choice is None:
            out.append(Baseline(name, False, None, None, None, None, "no plan even with constraints relaxed"))
            continue
        bm = sub.evaluate(relaxed.choice)
        out.append(Baseline(name, False, bm.cost, bm.e2e_ms, bm.usd_per_request, None, "; ".join(bm.violations)))
    g = greedy_choice(inst)
    if g is None:
        out.append(Baseline("greedy list scheduling", False, None, None, None, None, "an op has no usable option"))
    else:
        gm = inst.evaluate(g)
        ok = inst.feasible(gm)
        out.append(Baseline("greedy list scheduling", ok, gm.objective, gm.e2e_ms, gm.usd_per_request,
                            _ratio(m.objective, gm.objective) if ok else None, "; ".join(gm.violations)))
    return out


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


# -------------------------------------------------------------------- pareto


def pareto(problem: Problem, points: int = 8) -> list[tuple[float, float]]:
    """(e2e ms, cost) points from the fastest plan to the cheapest, dominated ones dropped.

    Sweeps a hard e2e SLA evenly between the min-latency plan's e2e and the min-cost
    plan's e2e (TTFT/TBT and capacity limits stay as given).
    """
    base = replace(problem, sla_mode="hard")
    fast = solve(replace(base, objective="latency"), baselines=False, explain=False)
    cheap = solve(replace(base, objective="cost", sla=replace(base.sla, e2e_ms=None)),
                  baselines=False, explain=False)
    found = [(fast.e2e_ms, fast.cost), (cheap.e2e_ms, cheap.cost)]
    lo, hi = fast.e2e_ms, cheap.e2e_ms
    for j in range(1, max(points, 2) - 1):
        bound = lo + (hi - lo) * j / (points - 1)
        try:
            pl = solve(replace(base, objective="cost", sla=replace(base.sla, e2e_ms=bound)),
                       baselines=False, explain=False)
        except InfeasiblePlanError:
            continue
        found.append((pl.e2e_ms, pl.cost))
    frontier: list[tuple[float, float]] = []
    for lat, cost in sorted(set(found)):
        if not frontier or cost < frontier[-1][1] - 1e-12:
            frontier.append((lat, cost))
    return frontier


__all__ = ["solve", "pareto", "SLA"]
