"""The placement MILP, built column by column and handed to HiGHS in one call.

Variables (the placement problem of arXiv 2507.19635 section 3.1.2, refined):
- x[k] binary per usable choice (op option on one pool), one per op;
- per cross-pool edge, the pair of sites (a, b) its ends land on, linearised tightly:
  when one end can only sit on one pool the transfer is linear in the other end's x;
  when every cross-pool pair costs the same, q[a] <= x-mass of both ends on a, and the
  edge pays c * (1 - sum_a q[a]); otherwise a transport block y[a,b] >= 0 with
  sum_b y[a,b] = x-mass(u, a) and sum_a y[a,b] = x-mass(v, b). Both are exact at
  integer points and their LP relaxations equal the earth mover's distance between the
  ends' fractional placements, far tighter than y >= x_u + x_v - 1;
- per control-flow scenario, start times on the DAG with every op's duration times its
  count there, bounded below by the fastest-option earliest start; the SLA statistics
  over scenarios (every path, pNN by a chance constraint, mean): chance.py;
- colocated op pairs (an explicit all-reduce and its tensor-parallel op): equal x-mass
  on every pool;
- n[p] integer devices per pool under load, n[p] >= sum of busy-device demand and
  n[p] >= tp of every op placed on p (a replica needs its tp devices at once).
- per decode op that may share a pool with jobs, z >= what its call loses to the
  jobs chosen there (Instance.crowded, queueing.crowding), linearised with a big-M on
  its own choice and added to its calls' durations.

Modes: "cost" (money + soft-SLA penalties), "latency" (minimise E, then cost under the
found E), "relax" (every SLA, capacity and memory limit softened, total violation
minimised: the source of infeasibility notes).

In "cost" mode money is divided by `Instance.money_scale`, so the objective is O(1)
whatever the unit ($/request ~1e-6 or $/hr ~1e2): HiGHS's absolute tolerances then mean
what they say, and a proven gap is a real one. Results are reported in the original
unit.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import time
from dataclasses import dataclass

import highspy
import numpy as np

from agentc.diagnostics import InfeasiblePlanError

from .chance import tbt_rows, timing_rows, warm_rows
from .instance import Instance, Metrics

INF = math.inf
# Relaxation weights: a device over a pool's count, and an op placed where its weights
# do not fit, count as this many ms of SLA miss; memory first, then capacity, then ms.
RELAX_DEVICE_WEIGHT = 1e3
RELAX_MEMORY_WEIGHT = 1e6
MIN_SOLVE_S = 0.05  # the least an LP or MILP gets, even past the deadline (a MILP returns its start)
ABS_GAP = 1e-9  # in the scaled objective: a relative 1e-9 of the cheapest calls' price

_banner_silenced = False


def new_highs() -> highspy.Highs:
    """A silent, deterministic HiGHS instance (the banner goes to fd 1 only once)."""
    global _banner_silenced
    if _banner_silenced:
        h = highspy.Highs()
    else:
        sys.stdout.flush()
        saved = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            h = highspy.Highs()
            ctypes.CDLL(None).fflush(None)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(devnull)
        _banner_silenced = True
    h.setOptionValue("output_flag", False)
    h.setOptionValue("random_seed", 0)
    h.setOptionValue("threads", 1)
    return h


@dataclass
class MilpResult:
    """`status`: "optimal" (proved within the requested gap), "feasible" (a plan, gap
    not closed), "infeasible" or "no-solution"; `bound` is the proven lower bound on the
    objective, in its own unit (-inf when none)."""

    status: str
    choice: tuple[int, ...] | None
    objective: float | None
    gap: float
    solve_time_s: float
    values: np.ndarray | None = None
    bound: float = -INF


class Formulation:
    """One MILP over an Instance; `solve()` runs it, `warm(m)` maps a plan to columns."""

    def __init__(self, inst: Instance, mode: str = "cost", e2e_cap: float | None = None,
                 cand: list[list[int]] | None = None, tp_rows: bool = True):
        self.inst, self.mode = inst, mode
        self.tp_rows = tp_rows
        p = inst.problem
        self.relax = mode == "relax"
        self.cost, self.lb, self.ub, self.integer = [], [], [], []
        self.rows: list[tuple[list[int], list[float], float, float]] = []
        self.offset = 0.0
        self.trivially_infeasible = False

        # objective units per $ (per request, or per hour under load)
        self.unit = 1.0 / inst.money_scale if mode == "cost" else 1.0
        money = 0.0 if mode in ("relax", "latency") else self.unit
        scale = inst.load * 3600.0 if inst.load > 0 else 1.0
        lam = 0.0 if self.relax else (0.0 if inst.hard else p.lam * self.unit)
        self.cand = cand or (inst.op_choices if self.relax else inst.useful)
        if any(not ks for ks in self.cand):
            self.trivially_infeasible = True
            return

        # x and per-op objective terms
        self.xcol: dict[int, int] = {}
        for i, ks in enumerate(self.cand):
            for k in ks:
                c = inst.choices[k]
                obj = money * inst.per_call_usd[k] * scale
                if self.relax:
                    obj += c.ttft_excess_ms + c.tbt_excess_ms
                    obj += 0.0 if c.memory_ok else RELAX_MEMORY_WEIGHT
                    obj += RELAX_DEVICE_WEIGHT * c.tp_excess
                else:
                    obj += lam * (c.ttft_excess_ms + c.tbt_excess_ms)
                self.xcol[k] = self._col(obj, 0.0, 1.0, True)
            self._row([(self.xcol[k], 1.0) for k in ks], 1.0, 1.0)
        for plan in inst.excluded:   # a no-good cut: not every op on its choice of that plan
            terms = [[(self.xcol[k], 1.0) for k in ks if k in plan[i]] for i, ks in enumerate(self.cand)]
            if all(terms):
                self._row([t for op_terms in terms for t in op_terms], -INF, len(terms) - 1.0)

        self.sites_of = [sorted({inst.choices[k].site for k in ks}) for ks in self.cand]
        for a, b in inst.colocate:  # same pool: equal x-mass on every site
            for site in sorted(set(self.sites_of[a]) | set(self.sites_of[b])):
                self._row(self._mass(a, site) + [(c, -v) for c, v in self._mass(b, site)], 0.0, 0.0)
        self.timed = (p.sla.e2e_ms is not None or p.sla.ttft_ms is not None or mode == "latency"
                      or e2e_cap is not None)
        self.edge_aux: list[tuple[str, dict]] = []
        edge_ms = [self._edge(k, money * scale) for k in range(len(inst.edges))]
        self.ecol = self.ttft_col = self.sigma_e2e = self.sigma_ttft = None
        self.zcol: dict[str, list[int | None]] = {}
        self.mcol: dict[str, list[int | None]] = {}
        self.crowd_col: dict[int, tuple[int, float]] = {}
        if self.timed:
            if inst.load > 0:
                self._crowd_rows()
            timing_rows(self, edge_ms, mode, e2e_cap, lam)
        if p.sla.tbt_ms is not None and inst.hard and not self.relax and inst.q_tbt != 1.0:
            tbt_rows(self)
        if inst.load > 0:
            self._capacity(money)

    # -- building blocks ------------------------------------------------------------

    def _col(self, cost: float, lb: float, ub: float, integer: bool = False) -> int:
        self.cost.append(cost)
        self.lb.append(lb)
        self.ub.append(ub)
        self.integer.append(integer)
        return len(self.cost) - 1

    def _row(self, terms: list[tuple[int, float]], lo: float, hi: float) -> None:
        merged: dict[int, float] = {}
        for col, coef in terms:  # HiGHS rejects a row that names a column twice
            merged[col] = merged.get(col, 0.0) + coef
        self.rows.append((list(merged), list(merged.values()), lo, hi))

    def _mass(self, i: int, site: int) -> list[tuple[int, float]]:
        return [(self.xcol[k], 1.0) for k in self.cand[i] if self.inst.choices[k].site == site]

    def _edge(self, k: int, money: float) -> tuple[list[tuple[int, float]], float]:
        """Objective terms for edge k's transfer $ (at its expected weight); returns the
        ms of one transfer as (terms, constant)."""
        inst = self.inst
        e = inst.edges[k]
        su, sv = self.sites_of[e.u], self.sites_of[e.v]
        pairs = {(a, b): inst.transfer(k, a, b) for a in su for b in sv if a != b}
        if all(ms == 0 and usd == 0 for ms, usd in pairs.values()):
            self.edge_aux.append(("none", {}))
            return [], 0.0
        w = e.weight
        terms: list[tuple[int, float]] = []
        if len(su) == 1 or len(sv) == 1:
            fixed_u = len(su) == 1
            other = e.v if fixed_u else e.u
            for kk in self.cand[other]:
                s = inst.choices[kk].site
                ms, usd = inst.transfer(k, su[0], s) if fixed_u else inst.transfer(k, s, sv[0])
                col = self.xcol[kk]
                self.cost[col] += money * w * usd
                if ms:
                    terms.append((col, ms))
            self.edge_aux.append(("linear", {}))
            return terms, 0.0
        values = set(pairs.values())
        if len(values) == 1:
            ms0, usd0 = values.pop()
            self.offset += money * w * usd0
            q = {}
            for a in sorted(set(su) & set(sv)):
                q[a] = self._col(-money * w * usd0, 0.0, 1.0)
                self._row([(q[a], 1.0)] + [(c, -1.0) for c, _ in self._mass(e.u, a)], -INF, 0.0)
                self._row([(q[a], 1.0)] + [(c, -1.0) for c, _ in self._mass(e.v, a)], -INF, 0.0)
                if ms0:
                    terms.append((q[a], -ms0))
            self.edge_aux.append(("same", q))
            return terms, ms0
        y = {}
        for a in su:
            for b in sv:
                ms, usd = pairs.get((a, b), (0.0, 0.0))
                y[(a, b)] = self._col(money * w * usd, 0.0, 1.0)
                if ms:
                    terms.append((y[(a, b)], ms))
        for a in su:
            self._row([(y[(a, b)], 1.0) for b in sv] + [(c, -1.0) for c, _ in self._mass(e.u, a)], 0.0, 0.0)
        for b in sv:
            self._row([(y[(a, b)], 1.0) for a in su] + [(c, -1.0) for c, _ in self._mass(e.v, b)], 0.0, 0.0)
        self.edge_aux.append(("transport", y))
        return terms, 0.0

    def _crowd_rows(self) -> None:
        """Per decode op that may share a pool with jobs that wait (Instance.crowd), a
        column of what its call loses to them (Instance.crowded), at least that for its
        chosen choice d: z >= sum_k crowd_ms(d, k) x_k - M (1 - x_d), M the most the
        pool's jobs can take (one choice per op). Exact at integer points; timing_rows
        adds it to the op's calls."""
        inst = self.inst
        by_site: dict[int, list[tuple[int, int]]] = {}   # site -> (op, job choice)
        for i, ks in enumerate(self.cand):
            for k in ks:
                if inst.crowd[k] is not None:
                    by_site.setdefault(inst.choices[k].site, []).append((i, k))
        for d in inst.engine_ops:
            rows, hi = [], 0.0
            for k in self.cand[d]:
                jobs = [(i, kj, inst.crowd_ms(k, kj)) for i, kj in by_site.get(inst.choices[k].site, ()) if i != d]
                jobs = [(i, kj, w) for i, kj, w in jobs if w > 0]
                if not jobs:
                    continue
                most: dict[int, float] = {}
                for i, _, w in jobs:
                    most[i] = max(most.get(i, 0.0), w)
                big = sum(most.values())
                if not math.isfinite(big):
                    continue
                rows.append(([(self.xcol[kj], -w) for _, kj, w in jobs] + [(self.xcol[k], -big)], -big))
                hi = max(hi, big)
            if rows:
                z = self._col(0.0, 0.0, INF)
                for terms, lo in rows:
                    self._row([(z, 1.0)] + terms, lo, INF)
                self.crowd_col[d] = (z, hi)

    def _capacity(self, money: float) -> None:
        inst = self.inst
        self.ncol: dict[int, int] = {}
        self.sigma_pool: dict[int, int] = {}
        # per pool, what each choice holds there (a split's parts on their own pools)
        by_site: dict[int, list[tuple[int, float, int]]] = {}
        for ks in self.cand:
            for k in ks:
                for j, d, tp in inst.holds(k):
                    by_site.setdefault(j, []).append((k, d, tp))
        for j in sorted(by_site):
            site = inst.sites[j]
            if site.implicit or site.parts:
                continue
            ub = INF if (self.relax or site.count is None) else float(site.count)
            self.ncol[j] = n = self._col(money * site.usd_per_hr, 0.0, ub, True)
            self._row([(n, 1.0)] + [(self.xcol[k], -d) for k, d, _ in by_site[j]], 0.0, INF)
            # a tensor-parallel replica holds all its tp devices at once: n >= tp of each op
            # (left out with tp_rows=False: a weaker relaxation, still a valid bound)
            per_op: dict[int, list[tuple[int, float, int]]] = {}
            if self.tp_rows:
                for held in by_site[j]:
                    per_op.setdefault(inst.choices[held[0]].op, []).append(held)
            for held in per_op.values():
                # also where an option keeps no device busy (a profiled tool call: all
                # wait): the pool still needs one device to host it
                if max(tp for _, _, tp in held) > 1 or min(d for _, d, _ in held) <= 0:
                    self._row([(n, 1.0)] + [(self.xcol[k], -float(tp)) for k, _, tp in held], 0.0, INF)
            if self.relax and site.count is not None:
                self.sigma_pool[j] = sg = self._col(RELAX_DEVICE_WEIGHT, 0.0, INF)
                self._row([(n, 1.0), (sg, -1.0)], -INF, float(site.count))

    # -- warm start and solve --------------------------------------------------------

    def warm(self, m: Metrics) -> np.ndarray:
        """Column values of the plan `m` (a full, consistent MILP point)."""
        inst = self.inst
        v = np.zeros(len(self.cost))
        site = [inst.choices[k].site for k in m.choice]
        for k in m.choice:
            v[self.xcol[k]] = 1.0
        for k, (kind, aux) in enumerate(self.edge_aux):
            e = inst.edges[k]
            if kind == "same" and site[e.u] == site[e.v] and site[e.u] in aux:
                v[aux[site[e.u]]] = 1.0
            elif kind == "transport":
                v[aux[(site[e.u], site[e.v])]] = 1.0
        if self.crowd_col:
            timed = inst.crowded(m.choice)
            for i, (c, _) in self.crowd_col.items():
                v[c] = inst.call_ms(timed[i]) - inst.call_ms(m.choice[i])
        warm_rows(self, m, v)
        if inst.load > 0:
            for j, c in self.ncol.items():
                v[c] = m.devices.get(j, 0)
            for j, c in self.sigma_pool.items():
                v[c] = max(0.0, m.devices.get(j, 0) - inst.sites[j].count)
        return v

    def _load(self, integer: bool, time_limit: float | None = None,
              target: float | None = None) -> highspy.Highs:
        """The model in a fresh HiGHS; `target`: stop at the first plan costing at most
        this (with the gap then judged by the caller against a bound of its own)."""
        p = self.inst.problem
        h = new_highs()
        h.setOptionValue("mip_rel_gap", float(p.mip_rel_gap) if target is None else 1e-6)
        if target is not None:
            h.setOptionValue("objective_target", float(target) * self.unit)
        h.setOptionValue("mip_abs_gap", ABS_GAP)
        ncol = len(self.cost)
        h.addCols(ncol, np.array(self.cost), np.array(self.lb), np.array(self.ub), 0,
                  np.array([], dtype=np.int32), np.array([], dtype=np.int32), np.array([]))
        starts, index, value, lo, hi = [], [], [], [], []
        for idx, vals, rlo, rhi in self.rows:
            starts.append(len(index))
            index += idx
            value += vals
            lo.append(rlo)
            hi.append(rhi)
        status = h.addRows(len(self.rows), np.array(lo), np.array(hi), len(index),
                           np.array(starts, dtype=np.int32), np.array(index, dtype=np.int32), np.array(value))
        if status != highspy.HighsStatus.kOk:
            raise InfeasiblePlanError(
                "the placement model's numbers are out of the MILP solver's range (HiGHS rejected it)",
                notes=["a time, size, rate or price in the program or cluster is extreme: HiGHS takes "
                       "1e20 and above as infinite"])
        if integer:
            ints = [j for j in range(ncol) if self.integer[j]]
            h.changeColsIntegrality(len(ints), np.array(ints, dtype=np.int32),
                                    np.array([highspy.HighsVarType.kInteger] * len(ints)))
        h.changeObjectiveOffset(self.offset)
        # set last: what is left of the solve's deadline once the model is loaded
        limit = p.time_limit_s if time_limit is None else time_limit
        limit = max(MIN_SOLVE_S, min(limit, self.inst.until - time.perf_counter()))
        h.setOptionValue("time_limit", float(limit))
        return h

    def lp_relaxation(self, interior: bool = False) -> tuple[float, dict[int, float], dict[int, float]] | None:
        """(bound, x, reduced cost) of the LP relaxation, by choice; None if it has none
        (`lp_infeasible` then says whether that is proven or the time ran out).
        `interior`: by interior point without crossover (the 500-op min-latency LP at
        10 req/s: 1.5 s, 4.1 s by simplex), for a caller that only reads where x leans;
        its value and duals are then not a proven bound."""
        self.lp_infeasible = self.trivially_infeasible
        if self.trivially_infeasible:
            return None
        h = self._load(integer=False)
        if interior:
            h.setOptionValue("solver", "ipm")
            h.setOptionValue("run_crossover", "off")
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            self.lp_infeasible = h.getModelStatus() == highspy.HighsModelStatus.kInfeasible
            return None
        sol = h.getSolution()
        vals, duals = sol.col_value, sol.col_dual
        return (h.getInfo().objective_function_value / self.unit, {k: vals[c] for k, c in self.xcol.items()},
                {k: duals[c] / self.unit for k, c in self.xcol.items()})

    def _consistent(self, h: highspy.Highs) -> bool:
        """The objective HiGHS reports is the one its returned columns give."""
        if h.getInfo().primal_solution_status != 2:
            return True
        reported = h.getInfo().objective_function_value
        actual = float(np.dot(self.cost, h.getSolution().col_value)) + self.offset
        return abs(actual - reported) <= 1e-6 * max(1.0, abs(reported))

    def solve(self, warm: Metrics | None = None, time_limit: float | None = None,
              target: float | None = None) -> MilpResult:
        if self.trivially_infeasible:
            return MilpResult("infeasible", None, None, INF, 0.0)
        t0 = time.perf_counter()
        h = self._load(integer=True, time_limit=time_limit, target=target)
        warmed = warm is not None and all(k in self.xcol for k in warm.choice)
        if warmed:
            sol = highspy.HighsSolution()
            sol.col_value = list(self.warm(warm))
            sol.value_valid = True
            h.setSolution(sol)
        h.run()
        if warmed and not self._consistent(h):
            # HiGHS 1.16's presolve can price a MIP start differently in its reduced space
            # and then return the start's columns beside another solution's objective
            # (seen on transport-linearised edges); solve again without the start.
            h = self._load(integer=True, time_limit=time_limit, target=target)
            h.run()
        elapsed = time.perf_counter() - t0
        status = h.getModelStatus()
        info = h.getInfo()
        has_sol = info.primal_solution_status == 2
        if status == highspy.HighsModelStatus.kInfeasible:
            return MilpResult("infeasible", None, None, INF, elapsed)
        if not has_sol:
            return MilpResult("no-solution", None, None, INF, elapsed)
        vals = np.array(h.getSolution().col_value)
        choice = tuple(max(ks, key=lambda k: (vals[self.xcol[k]], -ks.index(k))) for ks in self.cand)
        objective = float(info.objective_function_value) / self.unit
        bound = float(info.mip_dual_bound) / self.unit
        proven = status == highspy.HighsModelStatus.kOptimal
        gap = relative_gap(objective, bound)
        return MilpResult("optimal" if proven and target is None else "feasible", choice, objective,
                          gap, elapsed, vals, bound)


def relative_gap(objective: float, bound: float) -> float:
    """(objective - bound) / objective, the gap HiGHS reports; 0 when the bound meets the
    objective up to float noise, inf without a bound. Every objective here (money, ms,
    penalties) is non-negative, so a bound below 0 is 0."""
    if not math.isfinite(bound):
        return INF
    diff = objective - max(bound, 0.0)
    if diff <= 1e-12 * abs(objective):
        return 0.0
    return diff / abs(objective)
