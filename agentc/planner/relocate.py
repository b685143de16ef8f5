"""Pool-changing local search for a loaded plan: one op to any pool, where it pays.

Under load on a large graph the starts (`slack.slack_start`, `heuristics.crash_start`,
the sub-MILPs) leave plans whose price is mostly transfers: at 10-20 req/s a 100 MB
edge cut between pools costs 36 $/hr per 10 req/s, a device 0.15-0.6 $/hr, and the
same-pool descent (`heuristics.descend`) never moves an op off its pool. Here each op
may move to any of its candidate choices, on any pool, when the move lowers the plan's
$/hr (its devices, whole per pool; its calls; its transfers to its neighbours where
they are) and keeps every path within the deadline (`slack._Schedule.fits`, exact for
a program without control flow) and every pool within its count. Ops are visited in
rounds, each taking its best such move. A round where none pays tries, for the EJECT
ops whose best move only a full pool refuses (ranked without that pool's devices), the
move with one op of that pool moving out to make room (at 10 req/s every fast pool is
full, and single moves stop there); then, dearest cut edge first, a group of up to
GROUP ops grown from one end along its pool's edges moved whole to the other end's
pool (a chain moved op by op pays a new cut at every step). It stops when a round
moves nothing or the time is out.

The price of a move is exact but for one term: a pool's devices are taken as its
summed demand rounded up, without `Instance.evaluate`'s floor of the largest tp on
it. The caller evaluates the result and keeps it only when it fits and is cheaper.
"""

from __future__ import annotations

import math
import time

from .instance import Instance
from .slack import TOL, _deadline_bound, _Schedule, _site_menu, _wires

ROUNDS = 50   # rounds over every op at most
GROUP = 16    # ops moved together at most (a group grown along edges from a cut one)
EJECT = 30    # ops tried per round with a move into a full pool (the cheapest first)


def relocate(inst: Instance, cand: list[list[int]], choice: tuple[int, ...], cap: float | None,
             until: float) -> list[int] | None:
    """A plan at most as dear as `choice` (estimated as above), reached by moves of one
    op, then of groups, across pools; None where the search does not apply (see
    slack._deadline_bound) or `choice` misses the deadline or overdraws a pool. An op
    whose choice is not in `cand`'s unsplit menu keeps it."""
    sla = _deadline_bound(inst)
    if sla is None:
        return None
    deadline = sla if cap is None else min(cap, sla)
    menu = _site_menu(inst, cand)
    n = len(inst.ops)
    choice = list(choice)
    # an op whose choice is off the menu (a split, a dominated choice) stays where it is
    for i, k in enumerate(choice):
        if k not in menu[i].get(inst.choices[k].site, ()):
            menu[i] = {}
    sites = inst.sites
    per_hr = inst.load * 3600.0
    room = [math.inf if s.count is None else float(s.count) for s in sites]
    used = [0.0] * len(sites)
    for k in choice:
        for j, d, _ in inst.holds(k):
            used[j] += d
    sched = _Schedule(inst, choice, deadline)   # sched.ch is `choice`
    if max(sched.ef, default=0.0) > deadline + TOL or any(math.ceil(u - 1e-9) > r for u, r in zip(used, room)):
        return None
    nbrs = [[(inst.edges[e].u, e, False) for e in inst.pred[i]] + [(inst.edges[e].v, e, True) for e in inst.succ[i]]
            for i in range(n)]
    wire = _wires(inst, per_hr)

    def devices_usd(j: int, demand: float) -> float:
        return sites[j].usd_per_hr * math.ceil(demand - 1e-9) if demand > 1e-9 else 0.0

    def resized(a: int, d0: float, d1: float) -> float | None:
        """$/hr change of pool a when a demand d0 there becomes d1; None when it no
        longer fits the pool."""
        after = used[a] - d0 + d1
        if math.ceil(after - 1e-9) > room[a]:
            return None
        return devices_usd(a, after) - devices_usd(a, used[a])

    def moved_usd(a: int, d0: float, b: int, d1: float) -> float:
        """$/hr change of pools a and b when a demand d0 leaves a and d1 joins b."""
        return (devices_usd(a, used[a] - d0) - devices_usd(a, used[a])
                + devices_usd(b, used[b] + d1) - devices_usd(b, used[b]))

    def links_usd(i: int, j: int) -> float:
        """$/hr of op i's transfers when it sits on pool j, its neighbours where they are."""
        at = sched.at
        return sum(wire(e, j, at[v]) if out else wire(e, at[v], j) for v, e, out in nbrs[i])

    def others(i: int, a: int):
        """Op i's other choices (it sits on pool a), as (pool, choice, its demand, op
        i's links $/hr there, pool a's $/hr change for a choice on a, else None); a
        choice on pool a that no longer fits it is left out."""
        k0 = choice[i]
        d0 = inst.demand(k0)
        here = links_usd(i, a)
        for b, ks in menu[i].items():
            links = here if b == a else links_usd(i, b)
            for k in ks:
                if k == k0:
                    continue
                d1 = inst.demand(k)
                same = resized(a, d0, d1) if b == a else None
                if b != a or same is not None:
                    yield b, k, d1, links, same

    def best_move(i: int, blocked: list | None = None) -> tuple[float, int] | None:
        """Op i's cheapest move within the pools and the deadline, as ($/hr change,
        choice); its cheapest that only a full pool refuses goes to `blocked` as
        (change without that pool's devices, op, choice)."""
        k0 = choice[i]
        a = sched.at[i]
        d0 = inst.demand(k0)
        here = links_usd(i, a)
        best = refused = None
        if not menu[i]:
            return None
        for b, k, d1, links, delta in others(i, a):
            if b != a:
                full = math.ceil(used[b] + d1 - 1e-9) > room[b]
                if full and blocked is None:
                    continue
                delta = moved_usd(a, d0, b, d1)
                if full:   # ranked without pool b's devices: an op leaving b is to pay for them
                    delta += ((inst.per_call_usd[k] - inst.per_call_usd[k0]) * per_hr + links - here
                              - devices_usd(b, used[b] + d1) + devices_usd(b, used[b]))
                    if delta < -1e-9 and (refused is None or delta < refused[0]) and sched.fits(i, k):
                        refused = (delta, i, k)
                    continue
            delta += (inst.per_call_usd[k] - inst.per_call_usd[k0]) * per_hr + links - here
            if delta < -1e-9 and (best is None or delta < best[0]) and sched.fits(i, k):
                best = (delta, k)
        if refused is not None and blocked is not None:
            blocked.append(refused)
        return best

    def eject(i: int, k: int) -> bool:
        """Op i to choice k on another pool without room for it, and one op of that
        pool out (to any pool with room, or leaner on its own) to make the room, if
        the two together lower the price and keep the deadline."""
        b, k0 = inst.choices[k].site, choice[i]
        a = sched.at[i]
        if a == b or not sched.fits(i, k):
            return False
        d0, d1 = inst.demand(k0), inst.demand(k)
        delta_i = (moved_usd(a, d0, b, d1)
                   + (inst.per_call_usd[k] - inst.per_call_usd[k0]) * per_hr + links_usd(i, b) - links_usd(i, a))
        apply(i, k)
        best = None
        for j in range(n):
            if j == i or sched.at[j] != b or not menu[j]:
                continue
            kj = choice[j]
            dj = inst.demand(kj)
            here = links_usd(j, b)
            for c, k2, d2, links, delta in others(j, b):
                if c != b:
                    if (math.ceil(used[b] - dj - 1e-9) > room[b]
                            or math.ceil(used[c] + d2 - 1e-9) > room[c]):
                        continue
                    delta = moved_usd(b, dj, c, d2)
                delta += (inst.per_call_usd[k2] - inst.per_call_usd[kj]) * per_hr + links - here
                if delta_i + delta < -1e-9 and (best is None or delta < best[0]) and sched.fits(j, k2):
                    best = (delta, j, k2)
        if best is None:
            apply(i, k0)
            return False
        apply(best[1], best[2])
        return True

    def pick(i: int, b: int) -> int:
        """Op i's choice on pool b for a group move: the cheapest no slower than its
        current one, else the fastest there."""
        ks = menu[i][b]
        now = inst.duration(choice[i])
        within = [k for k in ks if inst.duration(k) <= now + TOL]
        if within:
            return min(within, key=lambda k: (inst.demand(k) * sites[b].usd_per_hr + inst.per_call_usd[k] * per_hr, k))
        return min(ks, key=lambda k: (inst.duration(k), k))

    def group_delta(group: list[int], picks: list[int], b: int) -> float | None:
        """$/hr change when `group` (all on one pool) moves to pool b at `picks`; None
        when pool b has no room for it."""
        a = sched.at[group[0]]
        d0 = sum(inst.demand(choice[i]) for i in group)
        d1 = sum(inst.demand(k) for k in picks)
        if math.ceil(used[b] + d1 - 1e-9) > room[b]:
            return None
        inside = set(group)
        delta = (devices_usd(a, used[a] - d0) - devices_usd(a, used[a])
                 + devices_usd(b, used[b] + d1) - devices_usd(b, used[b]))
        for i, k in zip(group, picks):
            delta += (inst.per_call_usd[k] - inst.per_call_usd[choice[i]]) * per_hr
            for v, e, out in nbrs[i]:
                if v in inside:
                    continue
                w = sched.at[v]
                delta += (wire(e, b, w) - wire(e, a, w)) if out else (wire(e, w, b) - wire(e, w, a))
        return delta

    def apply(i: int, k: int) -> None:
        k0 = choice[i]
        used[inst.choices[k0].site] -= inst.demand(k0)
        used[inst.choices[k].site] += inst.demand(k)
        sched.move(i, k)

    def group_move(u: int, b: int) -> bool:
        """Grow a group from op u over its neighbours on its pool, most $/hr of
        transfers to the group first, up to GROUP ops; move the best prefix that
        lowers the price to pool b if every path still fits."""
        a = sched.at[u]
        if b not in menu[u]:
            return False
        group, best = [u], None
        while True:
            if all(b in menu[i] for i in group):
                picks = [pick(i, b) for i in group]
                delta = group_delta(group, picks, b)
                if delta is not None and delta < -1e-9 and (best is None or delta < best[0]):
                    best = (delta, list(group), picks)
            if len(group) >= GROUP:
                break
            inside = set(group)
            pull: dict[int, float] = {}
            for i in group:
                for v, e, out in nbrs[i]:
                    if v not in inside and sched.at[v] == a and b in menu[v]:
                        pull[v] = pull.get(v, 0.0) + (wire(e, a, b) if out else wire(e, b, a))
            if not pull:
                break
            group.append(max(pull, key=lambda v: (pull[v], -v)))
        if best is None:
            return False
        _, group, picks = best
        before = [choice[i] for i in group]
        for i, k in zip(group, picks):
            apply(i, k)
        if max(sched.ef) > deadline + TOL:
            for i, k0 in zip(reversed(group), reversed(before)):
                apply(i, k0)
            return False
        return True

    for _ in range(ROUNDS):
        moved = False
        for i in inst.topo:
            if time.perf_counter() > until:
                return choice
            mv = best_move(i)
            if mv is not None:
                apply(i, mv[1])
                moved = True
        if not moved:   # none pays within the pools: one op into a full pool, another out of it
            blocked: list = []
            for i in inst.topo:
                best_move(i, blocked)
            for _, i, k in sorted(blocked)[:EJECT]:
                if time.perf_counter() > until:
                    return choice
                moved = eject(i, k) or moved
        if not moved:   # no single move pays: whole groups across a cut edge, dearest cut first
            cuts = sorted(((wire(e, sched.at[ed.u], sched.at[ed.v]), e) for e, ed in enumerate(inst.edges)
                           if sched.at[ed.u] != sched.at[ed.v]), reverse=True)
            for usd, e in cuts:
                if time.perf_counter() > until:
                    return choice
                ed = inst.edges[e]
                a, b = sched.at[ed.u], sched.at[ed.v]
                if a == b or usd <= 0:
                    continue
                moved = group_move(ed.u, b) or group_move(ed.v, a) or moved
        if not moved:
            break
    return choice
