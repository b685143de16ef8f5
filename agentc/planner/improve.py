"""Same-pool 1-opt descent: spend a plan's SLA slack on cheaper options.

Moving op i to another option on the same pool leaves every transfer unchanged, so the
move keeps the e2e SLA exactly when its extra time fits op i's slack against the SLA
deadline (critical-path method). Each round takes the best saving, recomputes slack
and repeats. Used to polish MILP incumbents on large graphs, where HiGHS's own
heuristics start late.
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


def descend(inst: Instance, m: Metrics, cap: float | None = None, rounds: int = 10000) -> Metrics:
    """Cheapest plan reachable from m by same-pool moves that keep every limit.

    Only for per-request cost with hard SLAs (no load, no penalties), where a move's
    effect is exactly its own $ change plus its time against the slack."""
    if inst.load > 0 or not inst.hard:
        return m
    deadline = min(x for x in (inst.problem.sla.e2e_ms, cap, math.inf) if x is not None)
    for _ in range(rounds):
        slack = _deadline_slack(inst, m, deadline) if deadline < math.inf else None
        best, best_gain = None, 1e-12 * max(1.0, abs(m.objective))
        for i, k in enumerate(m.choice):
            cur = inst.choices[k]
            w = inst.ops[i].weight
            for k2 in inst.allowed[i]:
                c = inst.choices[k2]
                if k2 == k or c.site != cur.site:
                    continue
                if slack is not None and w * (c.option.time_ms - cur.option.time_ms) > slack[i] - 1e-9:
                    continue
                gain = w * (cur.option.usd_per_call - c.option.usd_per_call)
                if gain > best_gain:
                    best, best_gain = (i, k2), gain
        if best is None:
            return m
        trial = list(m.choice)
        trial[best[0]] = best[1]
        m = inst.evaluate(trial)
    return m
