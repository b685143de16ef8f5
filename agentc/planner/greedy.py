"""Greedy list scheduling: the MILP's warm start and the heuristic baseline.

Ops are visited in topological order; each takes the cheapest usable option whose
finish time, plus the fastest possible rest of its path, still meets the e2e SLA and
whose pool still has room for its load. If none does, it takes the one that finishes
first. Under the latency objective, finish time comes before money.
"""

from __future__ import annotations

import math

from .instance import Instance


def greedy_choice(inst: Instance, candidates: list[list[int]] | None = None) -> tuple[int, ...] | None:
    """One choice per op (indices into inst.choices), or None if some op has none.

    `candidates` narrows each op's usable choices (e.g. to those an LP relaxation uses).

    The look-ahead ignores transfers still to come, so a pass can overshoot the SLA;
    the pass is repeated with a tighter internal budget until the plan fits (or the
    budget reaches zero, which is the latency-greedy plan).
    """
    if any(not ks for ks in inst.allowed):
        return None
    cand = candidates or inst.allowed
    sla = inst.problem.sla.e2e_ms
    pick = _pass(inst, cand, math.inf if sla is None else sla)
    if sla is None or inst.problem.objective == "latency":
        return pick
    for factor in (0.98, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.0):
        if inst.evaluate(pick).e2e_ms <= sla + 1e-9:
            break
        pick = _pass(inst, cand, sla * factor)
    return pick


def _pass(inst: Instance, cand: list[list[int]], budget: float) -> tuple[int, ...]:
    p = inst.problem
    n = len(inst.ops)
    latency_first = p.objective == "latency"
    scale = inst.load * 3600.0 if inst.load > 0 else 1.0
    fastest = [min(inst.ops[i].weight * inst.choices[k].option.time_ms for k in cand[i])
               for i in range(n)]
    after = [0.0] * n  # fastest time from the end of op i to the end of the graph
    for i in reversed(inst.topo):
        after[i] = max((fastest[inst.edges[k].v] + after[inst.edges[k].v] for k in inst.succ[i]), default=0.0)
    used: dict[int, float] = {}
    pick: list[int] = [-1] * n
    finish = [0.0] * n
    for i in inst.topo:
        w = inst.ops[i].weight
        best_key, best = None, -1
        options = cand[i]
        j = inst.partner.get(i)
        if j is not None and pick[j] >= 0:  # follow a colocated op placed before
            options = [k for k in cand[i] if inst.choices[k].site == inst.choices[pick[j]].site] or cand[i]
        for r, k in enumerate(options):
            c = inst.choices[k]
            site = inst.sites[c.site]
            start, money = 0.0, 0.0
            for ek in inst.pred[i]:
                e = inst.edges[ek]
                ms, usd = inst.transfer(ek, inst.choices[pick[e.u]].site, c.site)
                start = max(start, finish[e.u] + e.weight * ms)
                money += e.weight * usd * scale
            end = start + w * c.option.time_ms
            money += inst.per_call_usd[k] * scale
            if inst.load > 0 and not site.metered:
                money += inst.demand(k) * site.usd_per_hr
            room = (inst.load <= 0 or site.count is None
                    or max(c.option.tp, math.ceil(used.get(c.site, 0.0) + inst.demand(k) - 1e-9)) <= site.count)
            fits = room and end + after[i] <= budget + 1e-9
            if fits:
                key = (0, end, money, r) if latency_first else (0, money, end, r)
            else:
                key = (1, not room, end, money, r)
            if best_key is None or key < best_key:
                best_key, best = key, k
        pick[i] = best
        c = inst.choices[best]
        used[c.site] = used.get(c.site, 0.0) + inst.demand(best)
        start = 0.0
        for ek in inst.pred[i]:
            e = inst.edges[ek]
            ms, _ = inst.transfer(ek, inst.choices[pick[e.u]].site, c.site)
            start = max(start, finish[e.u] + e.weight * ms)
        finish[i] = start + w * c.option.time_ms
    return tuple(pick)
