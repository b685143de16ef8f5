"""Same-pool 1-opt descent: spend a plan's SLA slack on cheaper options.

Moving op i to another option on the same pool leaves every transfer unchanged, so the
move keeps the e2e SLA exactly when its extra time fits op i's slack against the SLA
deadline (critical-path method). Each round takes the best saving, recomputes slack
and repeats. Used to polish MILP incumbents on large graphs, where HiGHS's own
heuristics start late.

Under load a plan pays for whole devices, ceil(busy demand) per pool, so most single
moves do not change the cost at all; the descent then ranks moves by their effect on
the fractional demand ($/hr of busy devices) and keeps a move only when the real cost
does not rise. Shaving demand this way is what brings a pool under its next integer.
"""

from __future__ import annotations

import math

from .instance import Instance, Metrics


def _deadline_slack(inst: Instance, m: Metrics, deadline: float) -> list[float]:
    n = len(inst.ops)
    dur = [m.finish[i] - m.start[i] for i in range(n)]
    latest = [deadline] * n
    for i in reversed(inst.topo):
        for k in inst.succ[i]:
            e = inst.edges[k]
            latest[i] = min(latest[i], latest[e.v] - dur[e.v] - e.weight * m.transfers[k][0])
    return [latest[i] - m.finish[i] for i in range(n)]


def _rate(inst: Instance, k: int) -> float:
    """What choice k adds to the objective: $/request, or fractional $/hr under load."""
    if inst.load <= 0:
        return inst.per_call_usd[k]
    site = inst.sites[inst.choices[k].site]
    rate = inst.per_call_usd[k] * inst.load * 3600.0
    return rate if site.metered else rate + site.usd_per_hr * inst.demand(k)


def descend(inst: Instance, m: Metrics, cap: float | None = None, rounds: int = 10000) -> Metrics:
    """Cheapest plan reachable from m by same-pool moves that keep every limit.

    Only for hard SLAs (no penalties), where a move's effect is exactly its own cost
    change plus its time against the slack."""
    if not inst.hard:
        return m
    deadline = min(x for x in (inst.problem.sla.e2e_ms, cap, math.inf) if x is not None)
    tried: set[tuple[int, int]] = set()
    for _ in range(rounds):
        slack = _deadline_slack(inst, m, deadline) if deadline < math.inf else None
        best, best_gain = None, 1e-12 * max(1.0, abs(m.objective))
        for i, k in enumerate(m.choice):
            cur = inst.choices[k]
            w = inst.ops[i].weight
            here = _rate(inst, k)
            for k2 in inst.allowed[i]:
                c = inst.choices[k2]
                if k2 == k or c.site != cur.site or (i, k2) in tried:
                    continue
                if slack is not None and w * (c.option.time_ms - cur.option.time_ms) > slack[i] - 1e-9:
                    continue
                gain = here - _rate(inst, k2)
                if gain > best_gain:
                    best, best_gain = (i, k2), gain
        if best is None:
            return m
        trial = list(m.choice)
        trial[best[0]] = best[1]
        t = inst.evaluate(trial)
        if inst.feasible(t) and t.objective <= m.objective + 1e-12 * max(1.0, abs(m.objective)):
            m = t
        else:  # e.g. a larger tp than the pool's devices: never offer this move again
            tried.add(best)
    return m


def consolidate(inst: Instance, m: Metrics, cap: float | None = None) -> Metrics:
    """Under load, empty the pools that hold few devices into the others.

    Whole devices are paid for, so a pool kept for one small op costs a device that the
    busy pools may absorb for free. For each pool in the plan, least used first, every
    op on it moves to its cheapest feasible option elsewhere (by evaluated cost, keeping
    the SLA); the move set is kept when the plan gets cheaper."""
    if inst.load <= 0 or not inst.hard:
        return m
    deadline = min(x for x in (inst.problem.sla.e2e_ms, cap, math.inf) if x is not None)
    for j in sorted(m.devices, key=lambda s: (m.devices[s], s)):
        ops = [i for i, k in enumerate(m.choice) if inst.choices[k].site == j]
        trial = list(m.choice)
        for i in ops:
            best = None
            for k2 in inst.allowed[i]:
                if inst.choices[k2].site == j:
                    continue
                cand = list(trial)
                cand[i] = k2
                t = inst.evaluate(cand)
                if t.e2e_ms <= deadline + 1e-9 and inst.feasible(t) and (best is None or t.objective < best[0]):
                    best = (t.objective, k2)
            if best is None:
                break
            trial[i] = best[1]
        else:
            t = inst.evaluate(trial)
            if inst.feasible(t) and t.objective < m.objective - 1e-12 * max(1.0, abs(m.objective)):
                m = descend(inst, t, cap)
    return m
