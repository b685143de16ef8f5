"""A loaded start without the LP: every op at its fastest, then slowed where its slack allows.

Under load on a large graph (the 500-op benchmark at 10 req/s) the LP relaxation costs
seconds per solve and its dives find a plan in minutes, if at all. This start needs no
LP. Each group of ops joined by heavy edges (`heuristics.heavy_groups`) is one unit on
one pool, so the transfers that would cost the SLA most are never cut.

1. **Budgets.** Each op gets its fastest time on its unit's pools, scaled by D / L_i:
   D is the deadline, and L_i the longest path through the op at those times (edges
   between units at their transfer between the units' fastest pools). On a path P each
   L_i is at least P's length, so the budgets along P add up to at most D. They only
   estimate what each op will hold (its leanest choice within budget); the deadline
   itself is checked exactly below.
2. **Pools.** Units in order of least slack (everything at its fastest) take the fastest
   of their pools whose estimated devices still fit FILL of it; each op starts at its
   fastest choice there. If the transfers between units then miss the deadline, every
   unit starts on its fastest pool instead.
3. **Slowdown.** Each op moves to a choice that saves $/hr (its devices at their pool's
   price, a device beyond a pool's count at PENALTY times it; its calls' fees; its
   transfers' $) while the move fits its slack against the deadline (critical-path
   method). A single-op unit may change pools, a larger unit moves whole (each op at
   its fastest there); new transfers are checked exactly, and a move into a pool is
   taken only while the estimates leave room there. Moves are taken best saving per ms
   first, from a heap re-ranked lazily as pools fill. Durations only grow, so slack
   only shrinks; earliest and latest finishes are updated incrementally after each
   move, so the deadline holds after every step.
4. **Passes.** A plan over some pool's count is not returned; each op's estimate becomes
   the mean of the old one and what it held, and the whole thing runs again (at most
   ROUNDS times, within the time given), while each pass overdraws the pools less than
   every pass before: where the plan is found (20 and 40 req/s, seed 16 at 10) they
   do; on the 500-op graph at 10 req/s the passes after the second cycle between the
   same overdraws (seed 11: 930, 155, 484, 930, 489, 930, ...), 0.5 CPU s spent.

What it gives on the 500-op benchmark (seeds 11-16; 0.5-1.3 CPU s for a pass that finds
a plan): at 20 req/s a plan on every seed (1,530-1,818 $/hr; seeds 14 and 15, whose
deadlines make no edge heavy, 4,611 and 5,926), at 40 req/s on every seed (2,058-2,700;
6,829 and 11,609), most of it transfers, which `relocate.py` then takes out (seed 13
at 20 req/s: 1,818 -> 1,264 $/hr in 0.4 s; the crashed start below, 2,262 -> 1,092).
At 10 req/s (512 devices per class) only seed 16 (1,276 $/hr, where the offline LP
dive found 4,762); on the others its best pass ends 99-521 devices over the fast
pools' counts, so it returns None: the estimates of what ops will hold, and so the
pools they start on, do not settle.

`crash` goes the other way, for when this start finds none: every op at its cheapest
choice that still fits its pool (within a budget, the caller's: its mean time in the
cost LP, which the pools hold fractionally), then the late paths sped up one op at a
time, by the move that buys the most ms of lateness per $/hr (devices priced up as
their pool fills, calls, and transfers to the ops placed, which keeps heavy edges
uncut), only where the pool has room; every EVERY moves (and when no move
fits, at most RELEASES times) the ops with slack drop to their leanest choice that
keeps it, freeing devices. So the pools hold after every step, and the plan is one
when the last path is on time (`heuristics.crash_start`, which frees the ops near the
deadline for a MILP when it is not). At 10 req/s, from the LP, it gives plans on seeds
11, 13, 14 and 16 in 0.1-0.3 CPU s (1,804-4,870 $/hr) and ends late on seeds 12
(0.05%, which the MILP closes) and 15 (5.8%: its pools, picked by price, are the
wrong ones; crash_start then crashes on the min-latency LP's pools). Without the
transfers in its price its plans cost 3x as much at 20 req/s (~9,000 $/hr: cut heavy
edges).

The times here are the planner's own (`Instance.duration`, `Instance.transfer` at the
edges' weights). They are exact for a program without control flow, which is the only
case this start takes. Every plan returned has passed `heuristics.fits` (the planner's
evaluator), so the caller treats it as one more start.
"""

from __future__ import annotations

import heapq
import math
import time

from .instance import Instance, Metrics

TOL = 1e-9   # ms: float noise when a move's finish is compared with a latest finish
FILL = 0.85      # share of a pool the estimates may fill (they run low: critical ops keep more)
PENALTY = 100.0  # a device beyond a pool's count costs this many times its price
ROUNDS = 8       # passes at most (each re-estimates what its ops hold)
FINAL = 5       # crash: releases at most once the deadline is met (moves that lower the price)
EVERY = 50       # crash: moves between two releases of the devices ops with slack hold
LOOSER = (1.0, 1.5, 2.5, math.inf)  # crash: budget factors tried in turn for the lean placement
RELEASES = 20    # crash: times at most that a stuck crash frees devices and goes on


class _Schedule:
    """Earliest and latest finishes of a placement against deadline D, updated
    incrementally when one op changes (its duration or its pool). The hot loop of
    slack_start: each op's pool and duration are kept in lists, and each edge's
    transfer ms (times its weight) per pair of pools in a dict."""

    def __init__(self, inst: Instance, choice: list[int], deadline: float):
        self.inst, self.ch, self.d = inst, choice, deadline
        n = len(inst.ops)
        self.pos = [0] * n
        for p, i in enumerate(inst.topo):
            self.pos[i] = p
        e = inst.edges
        self.pred = [[(e[k].u, k) for k in inst.pred[i]] for i in range(n)]
        self.succ = [[(e[k].v, k) for k in inst.succ[i]] for i in range(n)]
        self.at = [inst.choices[k].site for k in choice]
        self.dur = [inst.duration(k) for k in choice]
        self._tr: dict[tuple[int, int, int], float] = {}
        self.ef = [0.0] * n
        self.lf = [deadline] * n
        for i in inst.topo:
            self.ef[i] = self._ef(i)
        for i in reversed(inst.topo):
            self.lf[i] = self._lf(i)

    def tr(self, k: int, a: int, b: int) -> float:
        if a == b:
            return self.inst.transfer(k, a, b)[0] * self.inst.edges[k].weight
        key = (k, a, b)
        ms = self._tr.get(key)
        if ms is None:
            ms = self._tr[key] = self.inst.edges[k].weight * self.inst.transfer(k, a, b)[0]
        return ms

    def _ef(self, i: int) -> float:
        s, at, ef, tr = self.at[i], self.at, self.ef, self.tr
        start = 0.0
        for u, k in self.pred[i]:
            x = ef[u] + (tr(k, at[u], s) if at[u] != s else 0.0)
            if x > start:
                start = x
        return start + self.dur[i]

    def _lf(self, i: int) -> float:
        s, at, lf, dur, tr = self.at[i], self.at, self.lf, self.dur, self.tr
        latest = self.d
        for v, k in self.succ[i]:
            x = lf[v] - dur[v] - (tr(k, s, at[v]) if at[v] != s else 0.0)
            if x < latest:
                latest = x
        return latest

    def fits(self, i: int, k: int) -> bool:
        """Op i at choice k keeps every path within the deadline (others unchanged)."""
        inst = self.inst
        s = inst.choices[k].site
        if s == self.at[i]:
            return self.ef[i] + inst.duration(k) - self.dur[i] <= self.lf[i] + TOL
        fin = max((self.ef[u] + self.tr(e, self.at[u], s) for u, e in self.pred[i]), default=0.0)
        fin += inst.duration(k)
        return fin <= self.lf[i] + TOL and all(
            fin + self.tr(e, s, self.at[v]) <= self.lf[v] - self.dur[v] + TOL for v, e in self.succ[i])

    def move(self, i: int, k: int) -> None:
        site = self.inst.choices[k].site
        moved = site != self.at[i]
        self.ch[i], self.at[i], self.dur[i] = k, site, self.inst.duration(k)
        forward = [(self.pos[i], i)] + ([(self.pos[v], v) for v, _ in self.succ[i]] if moved else [])
        backward = [(-self.pos[i], i)] + [(-self.pos[u], u) for u, _ in self.pred[i]]
        self._sweep(forward, self.ef, self._ef, self.succ, 1)
        self._sweep(backward, self.lf, self._lf, self.pred, -1)

    def _sweep(self, heap, value, compute, onward, sign: int) -> None:
        """Recompute `value` from the ops in `heap` on, in (reverse) topological order,
        as far as it changes."""
        heapq.heapify(heap)
        seen = set()
        pos = self.pos
        while heap:
            _, i = heapq.heappop(heap)
            if i in seen:
                continue
            seen.add(i)
            new = compute(i)
            if new != value[i]:
                value[i] = new
                for j, _ in onward[i]:
                    heapq.heappush(heap, (sign * pos[j], j))


def _wires(inst: Instance, per_hr: float):
    """`wire(e, a, b)`: $/hr of edge e's transfers from its source on pool a to its end
    on pool b, memoised (a local search prices the same moves over and over)."""
    wired: dict[tuple[int, int, int], float] = {}

    def wire(e: int, a: int, b: int) -> float:
        if a == b:
            return 0.0
        key = (e, a, b)
        usd = wired.get(key)
        if usd is None:
            usd = wired[key] = inst.edges[e].weight * per_hr * inst.transfer(e, a, b)[1]
        return usd

    return wire


def _deadline_bound(inst: Instance) -> float | None:
    """The hard every-path e2e bound these starts work to, or None where they do not
    apply: no load, a soft or percentile bound, control flow, colocated ops."""
    sla = inst.problem.sla.e2e_ms
    if (inst.load <= 0 or not inst.hard or sla is None or inst.q_e2e != 1.0 or len(inst.scen) != 1
            or inst.colocate):
        return None
    return sla


def _site_menu(inst: Instance, cand: list[list[int]]) -> list[dict[int, list[int]]]:
    """Per op, its unsplit candidate choices by pool (a split pool's parts left out)."""
    menu: list[dict[int, list[int]]] = [{} for _ in cand]
    for i, ks in enumerate(cand):
        for k in ks:
            c = inst.choices[k]
            if not c.parts and not inst.sites[c.site].parts:
                menu[i].setdefault(c.site, []).append(k)
    return menu


def slack_start(inst: Instance, cand: list[list[int]], cap: float | None, time_limit: float,
                fits, heavy_groups) -> Metrics | None:
    """A plan from fastest-then-slowed placements, or None (see the module docstring).
    Only under load, with a hard every-path e2e bound, no control flow and no colocated
    ops. `fits` and `heavy_groups` are heuristics.py's (passed in: it imports this)."""

    sla = _deadline_bound(inst)
    if sla is None:
        return None
    t0 = time.perf_counter()
    deadline = sla if cap is None else min(cap, sla)
    units = heavy_groups(inst, cand, deadline)
    n = len(inst.ops)
    sites = inst.sites
    # per op and pool its choices, fastest first; units keep to the pools all their ops have
    menu = _site_menu(inst, cand)
    for m in menu:
        for ms in m.values():
            ms.sort(key=lambda k: (inst.duration(k), inst.demand(k), k))
    unit_of = [0] * n
    pools = []
    for u, g in enumerate(units):
        common = sorted(set.intersection(*(set(menu[i]) for i in g)))
        if not common:
            return None
        pools.append(common)
        for i in g:
            unit_of[i] = u
    # (1) budgets: fastest times scaled by D / (longest path through the op); an edge
    # between units is reserved its transfer between the units' fastest pools
    fast = [min(inst.duration(menu[i][j][0]) for j in pools[unit_of[i]]) for i in range(n)]
    home = [min(pools[u], key=lambda j: (sum(inst.duration(menu[i][j][0]) for i in g), j))
            for u, g in enumerate(units)]
    reserve = [e.weight * inst.transfer(k, home[unit_of[e.u]], home[unit_of[e.v]])[0]
               for k, e in enumerate(inst.edges)]
    head = [0.0] * n
    for i in inst.topo:
        head[i] = max((head[inst.edges[k].u] + reserve[k] for k in inst.pred[i]), default=0.0) + fast[i]
    tail = [0.0] * n
    for i in reversed(inst.topo):
        tail[i] = fast[i] + max((reserve[k] + tail[inst.edges[k].v] for k in inst.succ[i]), default=0.0)
    if max(head, default=0.0) > deadline:
        return None
    budget = [fast[i] * deadline / (head[i] + tail[i] - fast[i]) if fast[i] > 0 else 0.0 for i in range(n)]
    fastest = [menu[i][home[unit_of[i]]][0] for i in range(n)]

    best = None
    est = None
    least_over = math.inf
    for _ in range(ROUNDS):
        if time.perf_counter() - t0 > time_limit:
            break
        choice = _slowdown(inst, units, pools, menu, budget, fastest, deadline, unit_of, t0 + time_limit,
                           est)
        if choice is None:
            break
        m = inst.evaluate(choice)
        if fits(inst, m, cap):
            best = m
            break
        over = sum(m.pool_over.values())
        if over >= least_over:   # the estimates no longer settle: later passes cycle
            break
        least_over = over
        est = [inst.demand(k) if est is None else (inst.demand(k) + est[i]) / 2 for i, k in enumerate(choice)]
    return best


def _slowdown(inst: Instance, units, pools, menu, budget, fastest, deadline, unit_of, until,
              est) -> list[int] | None:
    """Steps (2) and (3) of the module docstring; None when out of time. `est`: devices
    each op is expected to hold (None: its leanest choice within its budget)."""
    sites = inst.sites
    room = [math.inf if s.count is None else float(s.count) for s in sites]
    used = [0.0] * len(sites)

    def worth(j: int, x: float) -> float:
        """What x devices on pool j cost: its price, PENALTY times that beyond its count."""
        return sites[j].usd_per_hr * (x + (PENALTY - 1.0) * max(0.0, x - room[j]))

    per_hr = inst.load * 3600.0

    def wires(i: int, a: int, b: int, inside=()) -> float:
        """$/hr saved on op i's transfers (to ops outside `inside`) when it moves from
        pool a to pool b."""
        saved = 0.0
        for u, e in sched.pred[i]:
            if u not in inside:
                w = inst.edges[e].weight * per_hr
                saved += w * (inst.transfer(e, sched.at[u], a)[1] - inst.transfer(e, sched.at[u], b)[1])
        for v, e in sched.succ[i]:
            if v not in inside:
                w = inst.edges[e].weight * per_hr
                saved += w * (inst.transfer(e, a, sched.at[v])[1] - inst.transfer(e, b, sched.at[v])[1])
        return saved

    def gain(k0: int, k: int, wired: float | None = None) -> float:
        """$/hr (PENALTY-priced) saved when op i goes from choice k0 to k; `wired`: its
        transfers' part, when the caller has it."""
        a, b = inst.choices[k0].site, inst.choices[k].site
        d0, d1 = inst.demand(k0), inst.demand(k)
        saved = (inst.per_call_usd[k0] - inst.per_call_usd[k]) * per_hr
        if a == b:
            return saved + worth(a, used[a]) - worth(a, used[a] - d0 + d1)
        if wired is None:
            wired = wires(inst.choices[k].op, a, b)
        return saved + worth(a, used[a]) - worth(a, used[a] - d0) + worth(b, used[b]) - worth(b, used[b] + d1) + wired

    # (2) each unit, least slack first (all at their fastest), to the fastest of its pools
    # whose estimated devices still fit FILL of the pool, else to the one with most room
    choice = [0] * len(inst.ops)
    if est is None:   # what each op will hold: its leanest choice within budget
        est = [min((inst.demand(k) for ms in menu[i].values() for k in ms if inst.duration(k) <= budget[i] + TOL),
                   default=inst.demand(fastest[i])) for i in range(len(inst.ops))]
    first = _Schedule(inst, list(fastest), deadline)
    slack = [min(first.lf[i] - first.ef[i] for i in g) for g in units]
    for u in sorted(range(len(units)), key=lambda u: (slack[u], u)):
        speed = sorted(pools[u], key=lambda j: (sum(inst.duration(menu[i][j][0]) for i in units[u]), j))
        need = sum(est[i] for i in units[u])
        j = next((j for j in speed if used[j] + need <= room[j] * FILL),
                 max(speed, key=lambda j: (room[j] - used[j], -j)))
        for i in units[u]:
            choice[i] = menu[i][j][0]
        used[j] += need
    proj = used   # what each pool will hold, by the estimates
    used = [0.0] * len(sites)
    sched = _Schedule(inst, choice, deadline)
    if max(sched.ef, default=0.0) > deadline + TOL:   # the transfers between units: all at home
        choice[:] = fastest
        sched = _Schedule(inst, choice, deadline)
        if max(sched.ef, default=0.0) > deadline + TOL:
            return None
    for k in choice:
        used[inst.choices[k].site] += inst.demand(k)

    def ratio(k0: int, k: int, wired: float | None = None) -> float:
        return gain(k0, k, wired) / max(inst.duration(k) - inst.duration(k0), 1e-6)

    def unit_ratio(u: int, b: int) -> float:
        """A whole unit to pool b, each op at its fastest there: saving per ms added."""
        a = inst.choices[choice[units[u][0]]].site
        d0 = sum(inst.demand(choice[i]) for i in units[u])
        d1 = sum(inst.demand(menu[i][b][0]) for i in units[u])
        slower = sum(max(0.0, inst.duration(menu[i][b][0]) - inst.duration(choice[i])) for i in units[u])
        saved = worth(a, used[a]) - worth(a, used[a] - d0) + worth(b, used[b]) - worth(b, used[b] + d1)
        inside = set(units[u])
        saved += sum((inst.per_call_usd[choice[i]] - inst.per_call_usd[menu[i][b][0]]) * per_hr
                     + wires(i, a, b, inside) for i in units[u])
        return saved / max(slower, 1e-6)

    version = [0] * len(units)

    def moves(i: int) -> list[tuple]:
        k0 = choice[i]
        u = unit_of[i]
        if len(units[u]) > 1:
            here = inst.choices[k0].site
            need = sum(est[i] for i in units[u])
            out = [(-r, 1, u, version[u], b) for b in pools[u] if b != here and proj[b] + need <= room[b] * FILL
                   for r in (unit_ratio(u, b),) if r > 1e-12]
            where = [here]
        else:
            out, where = [], pools[u]
        a = inst.choices[k0].site
        for j in where:
            if j != a and proj[j] + est[i] > room[j] * FILL:
                continue
            wired = wires(i, a, j) if j != a else 0.0
            for k in menu[i][j]:
                r = ratio(k0, k, wired)
                if r > 1e-12:
                    out.append((-r, 0, i, k0, k))
        return out

    def take(i: int, k: int) -> None:
        k0 = choice[i]
        proj[inst.choices[k0].site] -= est[i]
        proj[inst.choices[k].site] += est[i]
        used[inst.choices[k0].site] -= inst.demand(k0)
        used[inst.choices[k].site] += inst.demand(k)
        sched.move(i, k)   # sched.ch is `choice`
        version[unit_of[i]] += 1

    heap = [mv for i in range(len(inst.ops)) for mv in moves(i)]
    heapq.heapify(heap)
    steps = 0
    while heap:
        entry = heapq.heappop(heap)
        key, whole = entry[0], entry[1]
        if whole:
            _, _, u, ver, b = entry
            if version[u] != ver:
                continue
            r = unit_ratio(u, b)
        else:
            _, _, i, k0, k = entry
            if choice[i] != k0:
                continue
            r = ratio(k0, k)
        if r <= 1e-12:
            continue
        if r < -key * (1 - 1e-9) and heap and r < -heap[0][0]:   # the pools' use moved: re-rank
            heapq.heappush(heap, (-r,) + entry[1:])
            continue
        if whole:
            before = [choice[i] for i in units[u]]
            for i in units[u]:
                take(i, menu[i][b][0])
            if max(sched.ef) > deadline + TOL:
                for i, k0 in zip(units[u], before):
                    take(i, k0)
                version[u] = ver   # refused: the unit's other moves stay valid
                continue
            touched = units[u]
        else:
            if not sched.fits(i, k):
                continue
            take(i, k)
            touched = [i]
        for i in touched:
            for mv in moves(i):
                heapq.heappush(heap, mv)
        steps += 1
        if steps % 64 == 0 and time.perf_counter() > until:
            return None
    return choice


def crash(inst: Instance, cand: list[list[int]], cap: float | None, budget: list[float] | None,
          until: float, start: tuple[int, ...] | None = None) -> tuple[list[int], list[float]] | None:
    """A placement within every pool's count, sped up until it meets the deadline or
    no move fits; returns (choice, each op's slack against the deadline, negative on
    a late path), or None when the lean placement already overdraws a pool or the time
    runs out. `start`: a plan within the pools to go on from instead of the lean
    placement (one on time is only released). See `heuristics.crash_start`."""
    sla = _deadline_bound(inst)
    if sla is None:
        return None
    deadline = sla if cap is None else min(cap, sla)
    sites = inst.sites
    n = len(inst.ops)
    room = [math.inf if s.count is None else float(s.count) for s in sites]
    used = [0.0] * len(sites)
    per_hr = inst.load * 3600.0
    menu = _site_menu(inst, cand)
    if any(not m for m in menu):
        return None
    dur, dem = inst.duration, inst.demand

    at = [-1] * n   # each op's pool, -1 while unplaced
    nbrs = [[(inst.edges[k].u, k) for k in inst.pred[i]] + [(inst.edges[k].v, k) for k in inst.succ[i]]
            for i in range(n)]
    wire = _wires(inst, per_hr)

    def price(k: int) -> float:
        """$/hr of choice k: its devices, priced up as their pool fills, its calls, and
        its transfers to the ops placed."""
        c = inst.choices[k]
        j, i = c.site, c.op
        scarce = 1.0 if room[j] == math.inf else room[j] / max(room[j] - used[j], 1.0)
        usd = sites[j].usd_per_hr * dem(k) * scarce + inst.per_call_usd[k] * per_hr
        for v, e in nbrs[i]:
            if at[v] >= 0 and at[v] != j:
                usd += wire(e, at[v], j) if inst.edges[e].v == i else wire(e, j, at[v])
        return usd

    # (1) lean placement: the cheapest choice within each op's budget that still fits,
    # the ops with the least room in their budget first; where the budgets overdraw a
    # pool, again with looser ones (the crash then buys the time back)
    fastest = [min(dur(k) for ks in menu[i].values() for k in ks) for i in range(n)]
    choice = [0] * n
    for loose in (LOOSER if start is None else ()):
        used[:] = [0.0] * len(sites)
        at[:] = [-1] * n
        limit = [math.inf if budget is None else budget[i] * loose for i in range(n)]
        for i in sorted(range(n), key=lambda i: (limit[i] - fastest[i], i)):
            fitting = [k for j, ks in sorted(menu[i].items()) for k in ks if used[j] + dem(k) <= room[j]]
            if not fitting:
                break
            within = [k for k in fitting if dur(k) <= limit[i] + TOL]
            k = (min(within, key=lambda k: (price(k), dur(k), k)) if within
                 else min(fitting, key=lambda k: (dur(k), k)))
            choice[i] = k
            at[i] = inst.choices[k].site
            used[at[i]] += dem(k)
        else:
            break
    else:
        if start is None:
            return None
        choice = list(start)
        at[:] = [inst.choices[k].site for k in choice]
        used[:] = [0.0] * len(sites)
        for k in choice:
            used[inst.choices[k].site] += dem(k)
        if any(u > r + 1e-9 for u, r in zip(used, room)) or any(k not in set(ks) for k, ks in zip(choice, cand)):
            return None
    sched = _Schedule(inst, choice, deadline)

    def place(i: int, k: int) -> None:
        k0 = choice[i]
        used[inst.choices[k0].site] -= dem(k0)
        used[inst.choices[k].site] += dem(k)
        at[i] = inst.choices[k].site
        sched.move(i, k)

    def release(to: float | None = None) -> bool:
        """Ops with slack against the current latency to their leanest choice that keeps
        it (devices freed for the next speed-ups); True if any moved."""
        nonlocal sched
        sched = _Schedule(inst, choice, max(deadline, max(sched.ef)) if to is None else to)
        moved = False
        for i in sorted(range(n), key=lambda i: (sched.ef[i] - sched.lf[i], i)):
            k0 = choice[i]
            if sched.lf[i] - sched.ef[i] <= TOL:
                continue
            a = inst.choices[k0].site
            best = (price(k0) - 1e-9 * abs(price(k0)), k0)
            for j, ks in sorted(menu[i].items()):
                for k in ks:
                    if k != k0 and used[j] + dem(k) - (dem(k0) if j == a else 0.0) <= room[j]:
                        pk = price(k)
                        if pk < best[0] and sched.fits(i, k):
                            best = (pk, k)
            if best[1] != k0:
                place(i, best[1])
                moved = True
        sched = _Schedule(inst, choice, deadline)
        return moved

    # (2) crashing: the move that buys the most ms of a late op's lateness per $/hr
    releases = steps = 0
    while max(sched.ef) > deadline + TOL:
        if time.perf_counter() > until:
            return None
        slack = [sched.lf[i] - sched.ef[i] for i in range(n)]
        worst = min(slack)
        best = None
        for i in range(n):
            if slack[i] > worst + 1e-6:
                continue
            k0 = choice[i]
            a, p0 = inst.choices[k0].site, price(k0)
            for b, ks in sorted(menu[i].items()):
                if b == a:
                    start, out, free = sched.ef[i] - sched.dur[i], -sched.lf[i], room[b] - used[b] + dem(k0)
                else:
                    start = max((sched.ef[u] + sched.tr(e, sched.at[u], b) for u, e in sched.pred[i]), default=0.0)
                    out = max([-deadline] + [sched.tr(e, b, sched.at[v]) - sched.lf[v] + sched.dur[v]
                                             for v, e in sched.succ[i]])
                    free = room[b] - used[b]
                for k in ks:
                    if dem(k) > free + 1e-9:
                        continue
                    gain = -worst - max(start + dur(k) + out, 0.0)
                    if gain > 1e-9:
                        key = (price(k) - p0) / gain
                        if best is None or key < best[0]:
                            best = (key, i, k)
        if best is None:
            releases += 1
            if releases > RELEASES or not release():
                break
            continue
        place(best[1], best[2])
        steps += 1
        if EVERY and steps % EVERY == 0:
            release(deadline)
    if FINAL and max(sched.ef) <= deadline + TOL:
        for _ in range(FINAL):
            if not release(deadline):
                break
    return choice, [sched.lf[i] - sched.ef[i] for i in range(n)]
