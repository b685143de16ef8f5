"""Heuristics around the placement MILP: they find good plans fast, the MILP proves them.

- Greedy list scheduling: the warm start and the "greedy" baseline. Ops are visited in
  topological order; each takes the cheapest usable option whose finish time, plus the
  fastest possible rest of its path, still meets the e2e SLA and whose pool still has
  room for its load; if none does, the one that finishes first. Under the latency
  objective, finish time comes before money.
- Same-pool 1-opt descent (`descend`): moving an op to another option on the same pool
  leaves every transfer unchanged, so the move keeps the e2e SLA exactly when its extra
  time fits the op's slack against the deadline (critical-path method). Under load a
  plan pays for whole devices, ceil(busy demand) per pool, so moves are ranked by their
  effect on the fractional demand and kept only when the real cost does not rise.
  `consolidate` empties lightly used pools into the others.
- `crash_start`: under load, a plan within the pools by construction (`slack.crash`: lean
  from the cost LP, then late paths sped up where pools have room; where that stays
  late, again on the min-latency LP's pools), beside the fastest-then-slowed
  `slack.slack_start`.
- `moved`: ops and groups moved across pools where the price falls (relocate.py), the
  polish of every loaded start on a large graph.
- `search`: for large graphs, an LP-guided incumbent (support MILP, RINS, a pool
  neighbourhood) and reduced-cost fixing before the full MILP (see its docstring).
"""

from __future__ import annotations

import math
import time

from .formulation import ABS_GAP, MIN_SOLVE_S, Formulation, MilpResult, relative_gap
from .instance import Instance, Metrics, exceeds
from .relocate import relocate
from .slack import crash, slack_start

LP_ROUNDING_MIN_CHOICES = 200
HEAVY_EDGE_SHARE = 0.01  # an edge whose cut costs this share of the deadline keeps its ends together (partition_start)
RINS_FIX = 0.99   # an op is fixed in the RINS sub-MILP when the LP puts this much on its incumbent option
SLACK_SHARE = 0.35  # of the time limit, at most, for the loaded plan without the LP (slack.py)
CRASH_SHARE = 0.5   # of the time limit, at most, for the crashed plans and their band MILPs (crash_start)
CRASH_BUDGET = 1.1  # an op's budget in the crash's lean placement: this times its mean time in the LP
BAND_SHARE = 0.01   # crash_start frees the ops with less slack than this share of the deadline


# -------------------------------------------------------------------- greedy list scheduling


def greedy_choice(inst: Instance, candidates: list[list[int]] | None = None) -> tuple[int, ...] | None:
    """One choice per op (indices into inst.choices), or None if some op has none.

    `candidates` narrows each op's usable choices (e.g. to those an LP relaxation uses).

    The look-ahead ignores transfers still to come, so a pass can overshoot the SLA;
    the pass is repeated with a tighter internal budget until the plan fits (or the
    budget reaches zero, which is the latency-greedy plan).
    """
    cand = candidates or inst.useful
    if any(not ks for ks in cand):
        return None
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
    fastest = [min(inst.duration(k) for k in cand[i])
               for i in range(n)]
    after = [0.0] * n  # fastest time from the end of op i to the end of the graph
    for i in reversed(inst.topo):
        after[i] = max((fastest[inst.edges[k].v] + after[inst.edges[k].v] for k in inst.succ[i]), default=0.0)
    used: dict[int, float] = {}
    pick: list[int] = [-1] * n
    finish = [0.0] * n
    for i in inst.topo:
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
            end = start + inst.duration(k)
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
        finish[i] = start + inst.duration(best)
    return tuple(pick)


# -------------------------------------------------------------------- descent


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


def descend(inst: Instance, m: Metrics, cap: float | None = None, rounds: int = 10000,
            until: float = math.inf) -> Metrics:
    """Cheapest plan reachable from m by same-pool moves that keep every limit.

    Only for hard SLAs (no penalties), where a move's effect is exactly its own cost
    change plus its time against the slack."""
    if not inst.hard:
        return m
    deadline = min(x for x in (inst.problem.sla.e2e_ms, cap, math.inf) if x is not None)
    tried: set[tuple[int, int]] = set()
    for _ in range(rounds):
        if time.perf_counter() > until:  # out of time: what was found so far
            return m
        slack = _deadline_slack(inst, m, deadline) if deadline < math.inf else None
        best, best_gain = None, 1e-12 * abs(m.objective)
        for i, k in enumerate(m.choice):
            cur = inst.choices[k]
            here = _rate(inst, k)
            for k2 in inst.allowed[i]:
                c = inst.choices[k2]
                if k2 == k or c.site != cur.site or (i, k2) in tried:
                    continue
                if slack is not None and inst.duration(k2) - inst.duration(k) > slack[i] - 1e-9:
                    continue
                gain = here - _rate(inst, k2)
                if gain > best_gain:
                    best, best_gain = (i, k2), gain
        if best is None:
            return m
        trial = list(m.choice)
        trial[best[0]] = best[1]
        t = inst.evaluate(trial)
        # the slack above is read off one schedule; the SLA statistic over scenarios
        # (and the cap) is checked on the evaluated plan
        if inst.feasible(t) and not exceeds(t.e2e_ms, deadline) and t.objective <= m.objective + 1e-12 * abs(m.objective):
            m = t
        else:  # e.g. a larger tp than the pool's devices: never offer this move again
            tried.add(best)
    return m


def moved(inst: Instance, m: Metrics, cap: float | None, until: float) -> Metrics:
    """`m` after ops and groups change pools where that lowers the price (relocate.py),
    then the same-pool descent; where relocate.py does not apply (control flow, a
    percentile bound), `consolidate`. `m` itself when neither finds a cheaper plan."""
    choice = relocate(inst, inst.useful, m.choice, cap, until)
    if choice is None:
        return consolidate(inst, m, cap, until)
    if tuple(choice) == m.choice:
        return m
    t = inst.evaluate(choice)
    if not fits(inst, t, cap) or t.objective >= m.objective - 1e-12 * abs(m.objective):
        return m
    return descend(inst, t, cap, until=until)


def consolidate(inst: Instance, m: Metrics, cap: float | None = None, until: float = math.inf) -> Metrics:
    """Under load, empty the pools that hold few devices into the others.

    Whole devices are paid for, so a pool kept for one small op costs a device that the
    busy pools may absorb for free. For each pool in the plan, least used first, every
    op on it moves to its cheapest feasible option elsewhere (by evaluated cost, keeping
    the SLA); the move set is kept when the plan gets cheaper."""
    if inst.load <= 0 or not inst.hard:
        return m
    deadline = min(x for x in (inst.problem.sla.e2e_ms, cap, math.inf) if x is not None)
    for j in sorted(m.devices, key=lambda s: (m.devices[s], s)):
        if time.perf_counter() > until:
            break
        ops = [i for i, k in enumerate(m.choice) if inst.choices[k].site == j]
        trial = list(m.choice)
        for i in ops:
            if time.perf_counter() > until:  # each op costs an evaluation per option
                return m
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
            if inst.feasible(t) and t.objective < m.objective - 1e-12 * abs(m.objective):
                m = descend(inst, t, cap, until=until)
    return m


def mend(inst: Instance, choice, cap: float | None, until: float, rounds: int = 2000) -> Metrics | None:
    """A plan keeping every limit, reached from `choice` (an LP rounding) one op at a
    time, or None. Each round fixes the worst violation: a pool over its devices moves
    one of its ops to the choice that frees the most devices per dollar and per ms of
    slack lost; a path over the deadline speeds up one op without slack by the choice
    that buys its ms cheapest where its pool has room. A move is kept when the total
    violation (pool excess relative to the pool, latency excess relative to the
    deadline) falls. For large graphs under load, where the LP is fractional on most
    ops and the sub-MILPs find no plan in time."""
    if not inst.hard:
        return None
    deadline = min(x for x in (inst.problem.sla.e2e_ms, cap, math.inf) if x is not None)
    cur = list(choice)
    m = inst.evaluate(cur)

    def badness(t: Metrics) -> tuple[float, float, float]:
        """(latency excess and other misses, the ms all ops together lack against the
        deadline (with several critical paths one speed-up does not yet shorten the
        latency), devices over the pools): the deadline first, since a full fast
        pool is emptied afterwards by moving ops with slack to slower pools."""
        over = sum(n / max(1, inst.sites[j].count or 1) for j, n in t.pool_over.items())
        late = max(0.0, t.e2e_ms - deadline) if deadline < math.inf else 0.0
        lacking = -sum(min(0.0, x) for x in _deadline_slack(inst, t, deadline)) if late else 0.0
        return late + len([v for v in t.violations if "pool" not in v and "latency" not in v]), lacking, over

    tried: set[tuple[int, int]] = set()
    for _ in range(rounds):
        if fits(inst, m, cap):
            return m
        if time.perf_counter() > until:
            return None
        slack = _deadline_slack(inst, m, deadline) if deadline < math.inf else [math.inf] * len(cur)
        room = {j: (inst.sites[j].count or math.inf) - m.devices.get(j, 0) for j in range(len(inst.sites))}
        moves, speedups = [], []
        if m.pool_over:
            j = max(m.pool_over, key=lambda s: (m.pool_over[s] / (inst.sites[s].count or 1), -s))
            for i, k in enumerate(cur):
                if inst.choices[k].site != j:
                    continue
                for k2 in inst.useful[i]:
                    c2 = inst.choices[k2]
                    freed = inst.demand(k) - (inst.demand(k2) if c2.site == j else 0.0)
                    if k2 == k or (i, k2) in tried or freed <= 0:
                        continue
                    if c2.site != j and inst.demand(k2) > room[c2.site]:
                        continue
                    late = max(0.0, inst.duration(k2) - inst.duration(k) - max(0.0, slack[i]))
                    cost = max(0.0, _rate(inst, k2) - _rate(inst, k)) + 1e-12
                    moves.append(((cost * (1.0 + late)) / freed, i, k2))
        if m.e2e_ms > deadline:
            for i, k in enumerate(cur):
                if slack[i] >= 0:
                    continue
                c = inst.choices[k]
                for k2 in inst.useful[i]:
                    c2 = inst.choices[k2]
                    gain = inst.duration(k) - inst.duration(k2)
                    if k2 == k or (i, k2) in tried or gain <= 0:
                        continue
                    # a move into a full pool is allowed (the next rounds move an op
                    # with slack out of it), but one that fits is preferred
                    extra = inst.demand(k2) - (inst.demand(k) if c2.site == c.site else 0.0)
                    cost = max(0.0, _rate(inst, k2) - _rate(inst, k)) + 1e-12
                    speedups.append((cost / min(gain, -slack[i]) * (1.0 if c2.site == c.site else 2.0)
                                     * (1.0 if extra <= room[c2.site] else 4.0), i, k2))
        if not moves and not speedups:
            return None
        for _score, i, k2 in sorted(speedups)[:4] + sorted(moves)[:4]:
            trial = list(cur)
            trial[i] = k2
            t = inst.evaluate(trial)
            if badness(t) < badness(m):
                cur, m = trial, t
                break
            tried.add((i, k2))
        else:
            continue
    return m if fits(inst, m, cap) else None


# -------------------------------------------------------------------- pool partition


def heavy_groups(inst: Instance, cand: list[list[int]], deadline: float) -> list[list[int]]:
    """Ops joined by edges whose cheapest cross-pool transfer costs at least
    HEAVY_EDGE_SHARE of the deadline, as groups (connected components), in op order.

    A plan that cuts such an edge pays a visible part of the SLA for it, so a start
    keeps each group on one pool; the LP relaxation gives no hint here (it splits
    neighbours over pools in the same fractions and so pays no transfer at all)."""
    n = len(inst.ops)
    parent = list(range(n))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    sites = [{inst.choices[k].site for k in ks} for ks in cand]
    for k, e in enumerate(inst.edges):
        ms = min((inst.transfer(k, a, b)[0] * e.weight for a in sites[e.u] for b in sites[e.v] if a != b),
                 default=0.0)
        if ms >= HEAVY_EDGE_SHARE * deadline:
            parent[root(e.u)] = root(e.v)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def partition_start(inst: Instance, cand: list[list[int]], x: dict[int, float] | None, cap: float | None,
                    time_limit: float, dive: str = "cost", groups: bool = True) -> Metrics | None:
    """A plan with every op's pool fixed first, or None (under load, hard e2e bound).

    HiGHS finds no plan in the full loaded MILP of a large graph (the 500-op benchmark
    at 10-20 req/s), and rounding the LP misses the deadline by far: the LP spreads most
    ops over two pools and pays no transfers, while a plan must cut the graph between
    pools. With each op's pool fixed, every transfer is a constant and what is left (tp,
    replicas per op, the pools' device counts) is a small MILP HiGHS solves well. So:
    (1) heavy edges (`heavy_groups`) contracted into groups (`groups`; else every op is
    its own); (2) each group to one pool by LP diving: the groups the LP puts on one
    pool, and the more decided half of
    the rest, each to the pool the LP puts most of it on, then the LP again over what is
    left (a one-shot rounding sends every group to its majority pool: the LP spreads
    them all alike, e.g. 0.375 fast / 0.625 slow, and the plan misses the deadline);
    the LP is the cost one (`x`, the caller's, first) or, with `dive="latency"`, the
    min-latency one, which keeps the most room under the deadline where the SLA is
    barely reachable (10 req/s; there the groups cost too much: fixed to one pool each
    they lift the min-latency LP from 329.6 to 354.5 ms, single ops to 330.4);
    (3) on those pools, the min-latency LP, then the MILP over the options it uses,
    stopped at its first plan
    within the deadline (the latency objective drives it to feasibility, where the
    cost MILP wanders; 0.1 s where the cost MILP found nothing in 7), else each op at
    the fastest option that LP uses, mended to the pools' devices (`mend`); (4) the cost LP
    on the same pools, and the MILP over the options it uses and the plan's, from that
    plan, then over every option on those pools while time is left. Every plan is
    checked by `Instance.evaluate` (`fits`); the caller treats the
    result as one more start, so it only adds plans, never removes one."""
    sla = inst.problem.sla.e2e_ms
    if inst.load <= 0 or not inst.hard or sla is None or inst.q_e2e != 1.0:
        return None
    t0 = time.perf_counter()
    deadline = sla if cap is None else min(cap, sla)
    units = []  # groups, split into single ops where they share no pool
    for g in heavy_groups(inst, cand, deadline) if groups else [[i] for i in range(len(cand))]:
        common = set.intersection(*({inst.choices[k].site for k in cand[i]} for i in g))
        units += [(g, sorted(common))] if common else [([i], sorted({inst.choices[k].site for k in cand[i]}))
                                                        for i in g]
    pool: dict[int, int] = {}  # unit -> its pool

    def restricted() -> list[list[int]]:
        where = {i: pool[u] for u in pool for i in units[u][0]}
        return [[k for k in ks if inst.choices[k].site == where[i]] if i in where else ks
                for i, ks in enumerate(cand)]

    # (2) LP diving: fix the units the LP already puts on one pool and the more
    # decided half of the rest, re-solve the LP on what is left, repeat; an LP with no
    # solution undoes the last half-step and retries half as many (one unit: its next pool)
    batch: list[tuple[int, list[int]]] = []
    while len(pool) < len(units):
        if time.perf_counter() - t0 > time_limit / 2:
            return None
        if pool or x is None:
            lp = Formulation(inst, dive, cap, cand=restricted(), tp_rows=False).lp_relaxation()
            if lp is None:
                if not batch:
                    return None
                if len(batch) == 1:
                    u, prefs = batch[0]
                    if len(prefs) < 2:
                        return None
                    batch = [(u, prefs[1:])]
                    pool[u] = prefs[1]
                else:
                    for u, _ in batch[len(batch) // 2:]:
                        del pool[u]
                    batch = batch[:len(batch) // 2]
                continue
            x = lp[1]
        ranked = []
        for u, (g, sites) in enumerate(units):
            if u in pool:
                continue
            share = {j: sum(x.get(k, 0.0) for i in g for k in cand[i] if inst.choices[k].site == j) / len(g)
                     for j in sites}
            prefs = sorted(sites, key=lambda j: (-share[j], j))
            ranked.append((-share[prefs[0]], u, prefs))
        ranked.sort()
        sure = [(u, prefs) for top, u, prefs in ranked if -top >= 1 - 1e-6]
        rest = [(u, prefs) for top, u, prefs in ranked if -top < 1 - 1e-6]
        batch = rest[:max(1, len(rest) // 2)] if rest else []
        for u, prefs in sure + batch:
            pool[u] = prefs[0]
    fixed = restricted()
    found = None
    for mode in ("latency", "cost"):
        left = max(MIN_SOLVE_S, time_limit - (time.perf_counter() - t0))
        f = Formulation(inst, mode, cap, cand=fixed)
        lp = f.lp_relaxation()
        if lp is None:
            return found
        near = [[k for k in ks if lp[1].get(k, 0.0) > 1e-6 or (found and k == found.choice[i])] or ks
                for i, ks in enumerate(fixed)]
        res = _solve(inst, mode, cap, near, found, left / 2, target=deadline if mode == "latency" else None)
        if res.choice is None and mode == "latency":
            # the LP's mixes round to no plan: each op at the fastest option the LP uses
            # meets the deadline (no path is longer than the LP's; the transfers are
            # fixed with the pools), and `mend` then frees the devices it overdraws
            fast = [min(ks, key=lambda k: (inst.call_ms(k), k)) for ks in near]
            mended = mend(inst, fast, cap, time.perf_counter() + left / 2)
            if mended is not None:
                res = MilpResult("feasible", mended.choice, None, math.inf, 0.0)
            else:
                res = _solve(inst, mode, cap, fixed, None, left / 2, target=deadline)
        if res.choice is not None:
            m = inst.evaluate(res.choice)
            if fits(inst, m, cap) and (found is None or m.objective < found.objective):
                found = m
        if found is None:
            return None
        # the pools the plan uses (`mend` may have moved an op)
        fixed = [[k for k in ks if inst.choices[k].site == inst.choices[found.choice[i]].site]
                 for i, ks in enumerate(cand)]
    # then every option on those pools, from that plan, in the time left
    left = time_limit - (time.perf_counter() - t0)
    if left > MIN_SOLVE_S:
        res = _solve(inst, "cost", cap, fixed, found, left)
        if res.choice is not None:
            m = inst.evaluate(res.choice)
            if fits(inst, m, cap) and m.objective < found.objective:
                found = m
    return found


# -------------------------------------------------------------------- crashing


def crash_start(inst: Instance, cand: list[list[int]], x: dict[int, float], cap: float | None,
                time_limit: float) -> Metrics | None:
    """A loaded plan within every pool's count, or None.

    `slack.crash` places each op at its cheapest choice within CRASH_BUDGET times its
    mean time in the cost LP `x` (which the pools hold, fractionally) and speeds up the
    late paths while the pools have room. When it is stuck, still late, the late ops
    and those with less slack than BAND_SHARE of the deadline are freed on their own
    pools, and the min-latency MILP over them (every other op fixed) stops at its first
    plan within the deadline. If that finds none, the pools were the wrong ones: the
    crash picks them by price, and where nearly every fast device must be bought (the
    500-op graph at 10 req/s) the paths cannot all be sped up on them. So each op is
    fixed to the pool the min-latency LP puts most of it on (by interior point: where
    it leans is all that is read), crashed again there from that LP's mean times, then
    on from that plan with every pool open (seed 15 at 10 req/s: 430.4 ms for a 407.0
    ms bound from the cost LP; 408.6 on the min-latency LP's pools, then 406.9 in
    0.2 s); if still late, the late ops alone freed for the same MILP. Last, the first
    crash's band on any pool. Every plan returned has passed `fits`."""
    t0 = time.perf_counter()
    deadline = inst.problem.sla.e2e_ms if cap is None else min(cap, inst.problem.sla.e2e_ms)

    def left() -> float:
        return time_limit - (time.perf_counter() - t0)

    def crashed(menu: list[list[int]], xs: dict[int, float], factor: float):
        """`slack.crash` over `menu`, each op's budget `factor` times its mean time in
        the LP `xs` (over all its choices)."""
        budget = [factor * sum(xs.get(k, 0.0) * inst.duration(k) for k in ks) for ks in cand]
        return crash(inst, menu, cap, budget, t0 + time_limit)

    def closed(choice: list[int], slack: list[float], band_share: float, same_pool: bool) -> Metrics | None:
        """The min-latency MILP over the ops with at most `band_share` of the deadline
        as slack, stopped at its first plan on time, then released (crash from it)."""
        site = [inst.choices[k].site for k in choice]
        band = [([k for k in ks if inst.choices[k].site == site[i]] if same_pool else ks)
                if slack[i] <= band_share * deadline else [choice[i]] for i, ks in enumerate(cand)]
        res = _solve(inst, "latency", cap, band, None, left(), target=deadline)
        if res.choice is None:
            return None
        m = inst.evaluate(res.choice)
        if not fits(inst, m, cap):
            return None
        # the MILP stops at its first plan on time: the slack it leaves, released
        got = crash(inst, cand, cap, None, t0 + time_limit, start=m.choice)
        cheaper = inst.evaluate(got[0]) if got is not None else m
        return cheaper if fits(inst, cheaper, cap) and cheaper.objective < m.objective else m

    got = crashed(cand, x, CRASH_BUDGET)
    if got is None:
        return None
    first = got
    m = inst.evaluate(got[0])
    if fits(inst, m, cap):
        return m
    if left() > MIN_SOLVE_S:
        m = closed(*first, BAND_SHARE, True)
        if m is not None:
            return m
    if left() > MIN_SOLVE_S:
        lean = Formulation(inst, "latency", cap, cand=cand, tp_rows=False).lp_relaxation(interior=True)
        if lean is not None and left() > MIN_SOLVE_S:
            xl = lean[1]
            pools = [max(sorted({inst.choices[k].site for k in ks}),
                         key=lambda j: sum(xl.get(k, 0.0) for k in ks if inst.choices[k].site == j))
                     for ks in cand]
            menu = [[k for k in ks if inst.choices[k].site == pools[i]] for i, ks in enumerate(cand)]
            got = crashed(menu, xl, 1.0)
            if got is not None and left() > 0:
                # on from there with every pool open (the pools keep their counts)
                got = crash(inst, cand, cap, None, t0 + time_limit, start=tuple(got[0])) or got
                m = inst.evaluate(got[0])
                if fits(inst, m, cap):
                    return m
                if left() > MIN_SOLVE_S:
                    m = closed(*got, 0.0, True)
                    if m is not None:
                        return m
    if left() > MIN_SOLVE_S:
        return closed(*first, BAND_SHARE, False)
    return None


# -------------------------------------------------------------------- LP-guided search


def search(inst: Instance, mode: str, cap: float | None, warm: Metrics | None) -> MilpResult:
    """Solve one formulation; large ones via their LP relaxation first.

    HiGHS's primal heuristics only run after long cut rounds on these models, so for
    large graphs: (0) under load, a plan without the LP (`slack.slack_start`); (1) solve
    the LP (under load, a plan crashed from it, `crash_start`; it and (0) are polished at
    once: the same-pool descent, then moves across pools, `moved`, which take out most
    of their transfers; then `partition_start` from the LP, and where nothing else finds
    a plan, its min-latency dive); (2) solve the MILP restricted to the options the LP
    uses (most ops are integral there, so it is small) for an incumbent, polished the
    same way; (3) under load, if that is not within the requested
    gap of the LP bound, first a RINS sub-MILP (ops where the incumbent and the LP agree
    stay fixed, the rest may move within the pools below), then the MILP over every
    option on the pools the LP uses for
    each op (a neighbourhood that holds the other tp degrees and batch sizes: what
    closes the gap when whole devices are paid for, where the descent's one-op moves
    rarely cross a device boundary), time-boxed, stopping at the first plan within the
    gap; (4) reduced cost fixing: an option whose LP reduced cost exceeds UB - LP bound
    cannot be in a plan better than UB, so dropping it loses nothing; (5) solve the MILP
    over the options left, warm-started with UB. Its optimum is the full problem's
    optimum. All of this shares one deadline (`Instance.until`, from the start of
    `solve`, or the time limit from here): every LP and MILP is cut to it and no phase
    starts after it (the best plan so far is returned at the LP's bound).

    The result is the best plan found, re-evaluated exactly (a MILP pick that misses the
    deadline by a solver tolerance is repaired, `_repair`), with its gap to the best
    proven bound; "optimal" only when that gap is within the requested one.

    Under load, the LP leaves out the rows `devices >= tp`: without them it is several
    times faster, and its bound (hence the gap test and the fixing) stays valid. Every
    MILP keeps them.
    """
    t0 = time.perf_counter()
    rel_gap, limit = inst.problem.mip_rel_gap, inst.problem.time_limit_s
    until = min(inst.until, t0 + limit)

    def left(share: float = 1.0) -> float:
        """Seconds for the next solve: `share` of the time limit, within what is left."""
        return max(MIN_SOLVE_S, min(limit * share, until - time.perf_counter()))

    def out() -> bool:
        """The deadline has passed: no phase starts (each would take MIN_SOLVE_S and
        the building of its model)."""
        return time.perf_counter() >= until

    f = Formulation(inst, mode, cap)
    if f.trivially_infeasible:
        return MilpResult("infeasible", None, None, math.inf, time.perf_counter() - t0)
    starts = [warm] if warm is not None and fits(inst, warm, cap) else []
    key = (lambda m: (m.e2e_ms, m.objective)) if mode == "latency" else (lambda m: m.objective)

    def polish(res: MilpResult) -> None:
        if res.choice is not None:
            rm = inst.evaluate(res.choice)
            if fits(inst, rm, cap):
                starts.append(moved(inst, descend(inst, rm, cap, until=until), cap, until) if mode == "cost" else rm)

    def closed(bound: float) -> MilpResult | None:
        if not starts:
            return None
        best = min(starts, key=key)
        ub = value(inst, mode, best)
        gap = relative_gap(ub, bound)
        return MilpResult("optimal", best.choice, ub, gap, 0.0, bound=bound) if proven(gap, rel_gap) else None

    cand = f.cand
    lp_bound, fixed_below = -math.inf, math.inf
    if len(f.xcol) >= LP_ROUNDING_MIN_CHOICES:
        # under load, a plan that needs no LP, found first while there is time; polished
        # with the crashed one once the LP is solved, or kept for when the time is out
        reserve = slack_start(inst, cand, cap, left(SLACK_SHARE), fits, heavy_groups) if inst.load > 0 and mode == "cost" else None

        def fall_back() -> None:
            if not starts and reserve is not None:
                polish(MilpResult("feasible", reserve.choice, None, math.inf, 0.0))

        relaxed = f if inst.load <= 0 else Formulation(inst, mode, cap, tp_rows=False)
        lp = relaxed.lp_relaxation()
        if lp is None and relaxed.lp_infeasible:  # no fractional plan: no plan at all
            return MilpResult("infeasible", None, None, math.inf, time.perf_counter() - t0)
        if lp is None:  # the LP ran out of time: the MILP gets what is left
            fall_back()
            res = _solve(inst, mode, cap, cand, starts[0] if starts else None, time_limit=left())
            res.solve_time_s = time.perf_counter() - t0
            return res
        bound, x, reduced = lp
        lp_bound = bound
        if inst.load > 0 and mode == "cost" and not out():
            # a plan crashed from the LP, then both starts moved across pools where
            # that pays (relocate.py): mostly their transfers, which the LP-based
            # starts below pay too when they find a plan at all
            crashed = crash_start(inst, cand, x, cap, left(CRASH_SHARE))
            for m in (reserve, crashed):
                if m is not None:
                    polish(MilpResult("feasible", m.choice, None, math.inf, 0.0))
            reserve = None
        if inst.load > 0 and mode == "cost" and not out():  # pools first, then the rest (partition_start)
            parted = partition_start(inst, cand, x, cap, left(1 / 2))
            if parted is not None:
                polish(MilpResult("feasible", parted.choice, None, math.inf, 0.0))
        support = [[k for k in ks if x.get(k, 0.0) > 1e-6] or ks for ks in cand]
        g = greedy_choice(inst, support)
        gm = inst.evaluate(g) if g is not None else None
        if not out() or not starts:
            polish(_solve(inst, mode, cap, support, gm if gm is not None and fits(inst, gm, cap) else None,
                          time_limit=left(0.5)))
        fall_back()
        if not starts and mode == "cost" and inst.load > 0 and not out():
            # still none: dive on the min-latency LP, op by op (seed 11 at 10 req/s: the
            # only way a plan was found, in 23 s of CPU)
            parted = partition_start(inst, cand, None, cap, left(), dive="latency", groups=False)
            if parted is not None:
                polish(MilpResult("feasible", parted.choice, None, math.inf, 0.0))
        if not starts and mode == "cost" and not out():  # no plan yet: mend the LP's rounding
            mended = mend(inst, [max(ks, key=lambda k: x.get(k, 0.0)) for ks in cand], cap, until)
            if mended is not None:
                polish(MilpResult("feasible", mended.choice, None, math.inf, 0.0))
        done = closed(bound)
        if done is None and inst.load > 0 and not out():
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
                polish(_solve(inst, mode, cap, rins, inc, time_limit=left(1 / 8),
                              target=bound + rel_gap * abs(bound)))
                done = closed(bound)
            # the pool neighbourhood is nearly the whole model: HiGHS's presolve and MIP
            # start on it overran a 1 s limit by 0.5 s (seed 13 at 40 req/s), so it
            # starts only with its whole share of the time left
            if done is None and sum(map(len, near)) < len(f.xcol) and until - time.perf_counter() >= limit / 4:
                polish(_solve(inst, mode, cap, near, min(starts, key=key) if starts else None,
                              time_limit=left(1 / 4), target=bound + rel_gap * abs(bound)))
                done = closed(bound)
        if done is not None:
            done.solve_time_s = time.perf_counter() - t0
            return done
        if starts:
            fixed_below = value(inst, mode, min(starts, key=key))
            margin = fixed_below - bound + 1e-9 * max(1.0, abs(fixed_below))
            cand = [[k for k in ks if x.get(k, 0.0) > 1e-6 or reduced.get(k, 0.0) <= margin] for ks in cand]
    best = min(starts, key=key) if starts else None
    if best is not None and out():  # no time for the MILP: the best plan, at the LP's bound
        gap = relative_gap(value(inst, mode, best), lp_bound)
        return MilpResult("optimal" if proven(gap, rel_gap) else "feasible", best.choice, value(inst, mode, best),
                          gap, time.perf_counter() - t0, bound=lp_bound)
    res = f.solve(best, left()) if cand is f.cand else _solve(inst, mode, cap, cand, best, left())
    # The options fixed away cannot beat `fixed_below`, so the restricted MILP's bound
    # holds for the whole problem only up to that value; the LP bound holds everywhere.
    bound = max(lp_bound, min(res.bound, fixed_below))
    if res.choice is not None:
        m = inst.evaluate(res.choice)
        if not fits(inst, m, cap):
            m = _repair(inst, mode, cap, cand, m, starts)
        if m is not None:
            starts.append(m)
    if not starts:
        res.solve_time_s = time.perf_counter() - t0
        return res if res.choice is None else MilpResult("no-solution", None, None, math.inf, res.solve_time_s)
    best = min(starts, key=key)
    ub = value(inst, mode, best)
    gap = relative_gap(ub, bound)
    return MilpResult("optimal" if proven(gap, rel_gap) else "feasible", best.choice, ub, gap,
                      time.perf_counter() - t0, bound=bound)


def proven(gap: float, rel_gap: float) -> bool:
    """Within the requested relative gap, up to the scaled objective's absolute gap."""
    return gap <= rel_gap + ABS_GAP


def _repair(inst: Instance, mode: str, cap: float | None, cand: list[list[int]], m: Metrics,
            starts: list[Metrics]) -> Metrics | None:
    """A plan meeting the e2e deadline exactly, when the MILP's pick misses it.

    HiGHS accepts a column within its feasibility tolerance of integral (x = 1 - 1e-6
    times a 1 s op is 1 us), so the rounded plan can finish a few ns-us after the
    deadline. A miss is never reported as feasible: re-solve with the deadline tightened
    by a growing multiple of the miss until the plan fits; None if it never does."""
    sla = inst.problem.sla.e2e_ms if inst.hard else None
    limits = [x for x in (cap, sla) if x is not None]
    deadline = min(limits, default=math.inf)
    if not exceeds(m.e2e_ms, deadline):  # it misses something else (capacity at a tolerance)
        return None
    over = m.e2e_ms - deadline
    for step in (2.0, 8.0, 64.0, 1024.0):
        tight = deadline - step * over
        warm = min((s for s in starts if s.e2e_ms <= tight), key=lambda s: value(inst, mode, s), default=None)
        res = _solve(inst, mode, tight, cand, warm, time_limit=MIN_SOLVE_S * 20)
        if res.choice is None:
            return None
        rm = inst.evaluate(res.choice)
        if fits(inst, rm, cap):
            return rm
    return None


def _solve(inst: Instance, mode: str, cap: float | None, cand: list[list[int]], warm: Metrics | None,
           time_limit: float | None = None, target: float | None = None) -> MilpResult:
    """The MILP restricted to the options in `cand`."""
    return Formulation(inst, mode, cap, cand=cand).solve(warm, time_limit, target)


def fits(inst: Instance, m: Metrics, cap: float | None) -> bool:
    return inst.feasible(m) and (cap is None or not exceeds(m.e2e_ms, cap))


def value(inst: Instance, mode: str, m: Metrics) -> float:
    """The formulation's objective at plan m (penalties included)."""
    if mode == "latency":
        return m.e2e_ms + inst.problem.lam * m.latency_excess_ms * (not inst.hard)
    return m.objective
