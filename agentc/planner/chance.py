"""The timing rows of the placement MILP: start times per control-flow scenario and
the SLA statistics over them (README, "SLA semantics"; scenarios.py).

In scenario s op i takes counts[i] calls back to back and edge k carries ec[k]
transfers. A statistic Q of a term with per-scenario value V_s is, for "all",
Q >= V_s in every scenario; for pNN, binary z_s ("scenario s is covered"),
V_s <= Q + M_s (1 - z_s) and sum_s P_s z_s >= NN% (M_s: V_s's largest value, with the
slowest options); for the mean, Q >= sum_s P_s V_s. Each is exact for the scenarios
given. Functions of a `Formulation` `f` (its columns, rows and candidate choices).
"""

from __future__ import annotations

import math

import numpy as np

from .instance import QUANTILE_TOL, SLA_REL_TOL, Metrics, exceeds, ttft_part

INF = math.inf


def timing_rows(f, edge_ms, mode: str, e2e_cap: float | None, lam: float) -> None:
    """Start times per scenario (a copy of the DAG's precedence rows each), and the
    latency and TTFT statistics over them; under a hard bound at "all", starts are
    bounded above by the bound less the fastest tail, as before scenarios."""
    inst, sla = f.inst, f.inst.problem.sla
    n = len(inst.ops)
    one = [[(f.xcol[k], inst.call_ms(k)) for k in f.cand[i]] for i in range(n)]  # a call and its wait
    fast = [min(v for _, v in d) for d in one]
    slow = [max(v for _, v in d) for d in one]
    for i, (z, hi) in f.crowd_col.items():   # a decode's loss to jobs crowding its pool
        slow[i] += hi
        one[i] = one[i] + [(z, 1.0)]
    tr_hi = []
    for k, e in enumerate(inst.edges):
        su, sv = f.sites_of[e.u], f.sites_of[e.v]
        tr_hi.append(max(inst.transfer(k, a, b)[0] for a in su for b in sv))
    cap = e2e_cap
    if inst.hard and not f.relax and sla.e2e_ms is not None:
        cap = sla.e2e_ms if cap is None else min(cap, sla.e2e_ms)
    tol = SLA_REL_TOL * max(1.0, cap) if cap is not None else 0.0
    want_e2e = sla.e2e_ms is not None or mode == "latency" or e2e_cap is not None
    q = inst.q_e2e
    f.scol: list[list[int]] = []
    f.sinks = [i for i in range(n) if not inst.succ[i]]
    lows, his, hi_start = [], [], []
    for s, (prob, counts, ec) in enumerate(inst.scen):
        es, tail, ls = [0.0] * n, [0.0] * n, [0.0] * n
        for i in inst.topo:
            for k in inst.pred[i]:
                u = inst.edges[k].u
                es[i] = max(es[i], es[u] + counts[u] * fast[u])
                ls[i] = max(ls[i], ls[u] + counts[u] * slow[u] + ec[k] * tr_hi[k])
        for i in reversed(inst.topo):
            tail[i] = counts[i] * fast[i] + max((tail[inst.edges[k].v] for k in inst.succ[i]), default=0.0)
        low = max((es[i] + tail[i] for i in range(n)), default=0.0)
        lows.append(low)
        his.append(max((ls[i] + counts[i] * slow[i] for i in range(n)), default=0.0))
        hi_start.append(ls)
        bounded = cap is not None and want_e2e and q == 1.0
        if bounded and prob > 0 and low > cap + tol:
            f.trivially_infeasible = True
        f.scol.append([f._col(0.0, es[i], max(es[i], cap - tail[i]) if bounded else INF)
                          for i in range(n)])
        for k, e in enumerate(inst.edges):
            terms, const = edge_ms[k]
            row = [(f.scol[s][e.v], 1.0), (f.scol[s][e.u], -1.0)]
            row += [(c, -counts[e.u] * v) for c, v in one[e.u]] + [(c, -ec[k] * v) for c, v in terms]
            f._row(row, ec[k] * const, INF)

    def finish(s: int, i: int, sign: float) -> list[tuple[int, float]]:
        counts = inst.scen[s][1]
        return [(f.scol[s][i], sign)] + [(c, sign * counts[i] * v) for c, v in one[i]]

    if want_e2e:
        lower = max(lows, default=0.0) if q == 1.0 else 0.0
        f.ecol = f._col(1.0 if mode == "latency" else 0.0, lower,
                              INF if cap is None else max(lower, cap))
        statistic_rows(f, "e2e", q, [[finish(s, i, 1.0) for i in f.sinks] for s in range(len(inst.scen))],
                        [0.0] * len(inst.scen), his, f.ecol,
                        [cap is not None and lows[s] > cap + tol for s in range(len(inst.scen))])
        if sla.e2e_ms is not None and (f.relax or not inst.hard):
            f.sigma_e2e = f._col(1.0 if f.relax else lam, 0.0, INF)
            f._row([(f.ecol, 1.0), (f.sigma_e2e, -1.0)], -INF, sla.e2e_ms)
    if sla.ttft_ms is not None and any(f is not None for f in inst.first):
        hard = inst.hard and not f.relax
        f.ttft_col = f._col(0.0, 0.0, sla.ttft_ms if hard else INF)
        exprs, consts, bigm = [], [], []
        for s, chain in enumerate(inst.first):
            if chain is None:
                exprs.append(None)
                consts.append(0.0)
                bigm.append(0.0)
                continue
            ops, links = chain
            expr = [(f.scol[s][ops[0]], 1.0)]
            hi = hi_start[s][ops[0]]
            for j, i in enumerate(ops):
                parts = [(k, ttft_part(inst.choices[k], j == 0, j == len(ops) - 1)) for k in f.cand[i]]
                expr += [(f.xcol[k], v) for k, v in parts]
                hi += max(v for _, v in parts)
            const = 0.0
            for k in links:
                terms, c0 = edge_ms[k]
                expr += terms
                const += c0
                hi += tr_hi[k]
            exprs.append([expr])
            consts.append(const)
            bigm.append(hi)
        statistic_rows(f, "ttft", inst.q_ttft, exprs, consts, bigm, f.ttft_col, [False] * len(exprs))
        if not hard:
            f.sigma_ttft = f._col(1.0 if f.relax else lam, 0.0, INF)
            f._row([(f.ttft_col, 1.0), (f.sigma_ttft, -1.0)], -INF, sla.ttft_ms)

def statistic_rows(f, name: str, q: float | None, exprs, consts, bigm, qcol: int, never) -> None:
    """Rows making column `qcol` at least the statistic of the per-scenario value
    max(expr) + const (exprs[s] a list of linear expressions; None: the scenario has
    no value)."""
    inst = f.inst
    live = [s for s, e in enumerate(exprs) if e is not None and inst.scen[s][0] > 0]
    mass = sum(inst.scen[s][0] for s in live)
    f.zcol[name] = [None] * len(exprs)
    f.mcol[name] = [None] * len(exprs)
    if q == 1.0:
        for s in live:
            for expr in exprs[s]:
                f._row([(qcol, 1.0)] + [(c, -v) for c, v in expr], consts[s], INF)
    elif q is None:
        agg = [(qcol, mass)]
        for s in live:
            ms = f.mcol[name][s] = f._col(0.0, 0.0, INF)
            for expr in exprs[s]:
                f._row([(ms, 1.0)] + [(c, -v) for c, v in expr], consts[s], INF)
            agg.append((ms, -inst.scen[s][0]))
        f._row(agg, 0.0, INF)
    else:
        for s in live:
            z = f.zcol[name][s] = f._col(0.0, 0.0, 0.0 if never[s] else 1.0, True)
            m = max(bigm[s], 0.0)
            for expr in exprs[s]:  # expr + const <= Q + M (1 - z)
                f._row(expr + [(qcol, -1.0), (z, m)], -INF, m - consts[s])
        f._row([(f.zcol[name][s], inst.scen[s][0]) for s in live], q * mass - QUANTILE_TOL, INF)
        dominance_rows(f, name, live)

def dominance_rows(f, name: str, live: list[int]) -> None:
    """z_s <= z_t when scenario t runs no more of anything than s: covering s costs
    at least what covering t does (values only grow with counts), so the cut keeps
    an optimum and tightens the LP."""
    inst, z = f.inst, f.zcol[name]
    for s in live:
        cs = inst.scen[s][1]
        for t in live:
            if t != s and all(a <= b for a, b in zip(inst.scen[t][1], cs)) and inst.scen[t][1] != cs:
                f._row([(z[s], 1.0), (z[t], -1.0)], -INF, 0.0)

def tbt_rows(f) -> None:
    """TBT at a percentile or mean: a scenario's TBT is the slowest step of the
    streaming ops it runs (the largest tbt_ms of their chosen options)."""
    inst, bound = f.inst, f.inst.problem.sla.tbt_ms
    q = inst.q_tbt
    live = [s for s, (pr, c, _) in enumerate(inst.scen) if pr > 0 and any(c[i] > 0 for i in inst.tbt_ops)]
    mass = sum(inst.scen[s][0] for s in live)
    f.zcol["tbt"] = [None] * len(inst.scen)
    f.mcol["tbt"] = [None] * len(inst.scen)
    if q is None:
        f.tbt_col = f._col(0.0, 0.0, bound)
        agg = [(f.tbt_col, mass)]
        for s in live:
            ms = f.mcol["tbt"][s] = f._col(0.0, 0.0, INF)
            for i in inst.tbt_ops:
                if inst.scen[s][1][i] > 0:
                    f._row([(ms, 1.0)] + [(f.xcol[k], -(inst.choices[k].tbt or 0.0))
                                             for k in f.cand[i]], 0.0, INF)
            agg.append((ms, -inst.scen[s][0]))
        f._row(agg, 0.0, INF)
        return
    for s in live:
        z = f.zcol["tbt"][s] = f._col(0.0, 0.0, 1.0, True)
        for i in inst.tbt_ops:
            if inst.scen[s][1][i] > 0:
                for k in f.cand[i]:
                    if exceeds(inst.choices[k].tbt or 0.0, bound):
                        f._row([(z, 1.0), (f.xcol[k], 1.0)], -INF, 1.0)
    f._row([(f.zcol["tbt"][s], inst.scen[s][0]) for s in live], q * mass - QUANTILE_TOL, INF)
    dominance_rows(f, "tbt", live)


def warm_rows(f, m: Metrics, v: np.ndarray) -> None:
    """The warm start's timing, coverage and statistic columns (Formulation.warm)."""
    inst = f.inst
    timed = inst.crowded(m.choice)   # the times evaluate() gives the plan
    if f.timed:
        times = inst.scenario_times(timed, m.transfers)
        for s, (prob, counts, ec) in enumerate(inst.scen):
            start, _ = inst.longest(timed, m.transfers, counts, ec)
            for i, c in enumerate(f.scol[s]):
                v[c] = max(start[i], f.lb[c])
        for name, col, value, at in (("e2e", f.ecol, m.e2e_ms, 1), ("ttft", f.ttft_col, m.ttft_ms, 2)):
            if col is None:
                continue
            v[col] = max(value or 0.0, f.lb[col])
            for s, t in enumerate(times):
                if f.zcol[name][s] is not None:
                    v[f.zcol[name][s]] = float(t[at] is not None and t[at] <= v[col])
                if f.mcol[name][s] is not None:
                    v[f.mcol[name][s]] = t[at] or 0.0
        if f.sigma_e2e is not None:
            v[f.sigma_e2e] = max(0.0, v[f.ecol] - inst.problem.sla.e2e_ms)
        if f.sigma_ttft is not None:
            v[f.sigma_ttft] = max(0.0, v[f.ttft_col] - inst.problem.sla.ttft_ms)
    if "tbt" in f.zcol:
        times = inst.scenario_times(timed, m.transfers)
        bound = inst.problem.sla.tbt_ms
        for s, t in enumerate(times):
            if f.zcol["tbt"][s] is not None:
                v[f.zcol["tbt"][s]] = float(t[3] is None or not exceeds(t[3], bound))
            if f.mcol["tbt"][s] is not None:
                v[f.mcol["tbt"][s]] = t[3] or 0.0
        if inst.q_tbt is None:
            v[f.tbt_col] = m.tbt_ms or 0.0
