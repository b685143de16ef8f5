"""Re-planning: the cheapest placement for a changed cluster, load or cost table that
moves little from the plan already running (`agentc replan`; arXiv 2507.19635 names
re-planning and runtime cost feedback as its future work).

The MILP minimises the plan's cost plus a movement penalty: what changing the running
plan costs once, in dollars (`Movement`), spread over a payback horizon so it is in
the objective's own unit ($/hr under load, $/request without). Every term depends only
on the option an op takes, so it is added to that option's per-call price
(`Instance.per_call_usd`, the one list that the MILP, the heuristics and the evaluator
all price calls from): the formulation is unchanged and the heuristics stay consistent
with it. The penalty of one option of op i, whose old placement was pool P, tp t, r
replicas, on pool Q with tp u and s replicas:

- another pool or tp: `usd_per_op_moved` (another pool only), r replicas stopped, s
  replicas started, and s copies of the op's weights loaded (`usd_per_gb_loaded`);
- same pool and tp: only the replicas added (started, weights loaded) or removed.

An op the old plan did not have pays nothing (it starts wherever it goes). The plan
reported is priced without the penalty, by a second, clean `Instance`; its solver
status and gap are those of the penalised problem (the one actually solved). With no
previous plan, or the penalty off, this is `agentc.planner.solve`: the from-scratch
optimum.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace

from .baselines import baselines as baseline_plans
from .explain import build_plan, infeasible
from .formulation import Formulation, MilpResult, relative_gap
from .heuristics import MIN_SOLVE_S, RINS_FIX, greedy_choice, proven, search
from .instance import Instance
from .problem import Plan, Problem
from .solve import optimise
from .solve import solve as solve_from_scratch


REPAIR_SHARE = 0.25  # of the time limit, for the MILP that repairs the running plan
# A re-plan answers within this many seconds of solving (or the problem's own limit if
# lower), with the gap it proved: it runs while a system is short of devices.
REPLAN_LIMIT_S = 4.0


@dataclass(frozen=True)
class Placed:
    """Where the running plan has an op: its pool, tp and replicas; a split op (split.py)
    also its parts, (pool, fraction, tp, replicas) each, largest first."""

    pool: str
    tp: int
    replicas: int
    split: tuple = ()

    def per_pool(self) -> dict[str, tuple[int, int]]:
        """Pool -> (tp, replicas) the op holds there."""
        if self.split:
            return {pool: (tp, reps) for pool, _f, tp, reps in self.split}
        return {self.pool: (self.tp, self.replicas)}


@dataclass(frozen=True)
class Previous:
    """The running plan, as far as re-planning needs it (read from its manifest)."""

    ops: dict[str, Placed]


@dataclass(frozen=True)
class Movement:
    """One-time dollars of changing a running plan, and how long a change has to pay
    for itself. Defaults: restarting a replica idles its devices for about a minute
    (an H100 at ~$2.5/hr: $0.04; stopping drains it, half that), loading weights runs at
    ~2 GB/s per device ($0.0004 per GB on that device, rounded up to $0.001 for the
    storage read), and moving an op (re-routing, a new placement to watch) is priced at
    one more replica start. A move must pay back within `horizon_h` hours of operation:
    under load the one-time dollars become dollars per hour over `horizon_h`; without a
    load (a $/request objective) over the requests of `horizon_h` hours at 1 req/s."""

    usd_per_op_moved: float = 0.04
    usd_per_replica_started: float = 0.04
    usd_per_replica_stopped: float = 0.02
    usd_per_gb_loaded: float = 0.001
    horizon_h: float = 1.0

    def requests(self, load_rps: float) -> float:
        """Requests over the payback horizon: what one-time dollars are divided by."""
        return self.horizon_h * 3600.0 * (load_rps if load_rps > 0 else 1.0)


@dataclass
class Replanned:
    """The new plan and what moving to it costs once (dollars, by the `Movement` rates)."""

    plan: Plan
    movement_usd: float = 0.0
    penalised: bool = False
    notes: list[str] = field(default_factory=list)


def replicas(inst: Instance, k: int) -> int:
    """Replicas of choice k: as `build_plan` counts them (busy devices / tp under load)."""
    c = inst.choices[k]
    return max(1, math.ceil(inst.demand(k) / c.option.tp - 1e-9)) if inst.load > 0 else 1


def movement_usd(inst: Instance, previous: Previous, movement: Movement,
                 weight_bytes: dict[str, float] | None = None) -> list[float]:
    """One-time dollars of each choice of `inst` against the running plan."""
    weight_bytes = weight_bytes or {}
    out = []
    for k, c in enumerate(inst.choices):
        op_id = inst.ops[c.op].id
        old = previous.ops.get(op_id)
        if old is None:
            out.append(0.0)
            continue
        gb = weight_bytes.get(op_id, 0.0) / 1e9
        start = movement.usd_per_replica_started + gb * movement.usd_per_gb_loaded
        stop = movement.usd_per_replica_stopped
        # per pool the op holds (a split op several): kept tp -> replicas added or
        # removed; else the old replicas stopped and the new started; moved when the
        # pools differ
        before, after = old.per_pool(), _per_pool(inst, k)
        usd = movement.usd_per_op_moved if set(before) != set(after) else 0.0
        for pool in sorted(set(before) | set(after)):
            (tp0, r0), (tp1, r1) = before.get(pool, (0, 0)), after.get(pool, (0, 0))
            if pool in before and pool in after and tp0 == tp1:
                usd += max(0, r1 - r0) * start + max(0, r0 - r1) * stop
            else:
                usd += r0 * stop + r1 * start
        out.append(usd)
    return out


def _per_pool(inst: Instance, k: int) -> dict[str, tuple[int, int]]:
    """Pool -> (tp, replicas) choice k holds (a split's parts each on their pool)."""
    c = inst.choices[k]
    if c.parts:
        return {inst.sites[pt.site].name: (pt.option.tp, pt.replicas) for pt in c.parts}
    return {inst.sites[c.site].name: (c.option.tp, replicas(inst, k))}


def _layout(inst: Instance, k: int) -> tuple:
    """Where choice k runs, as the manifest records it: (pool, fraction, tp) per part."""
    c = inst.choices[k]
    if c.parts:
        return tuple(sorted((inst.sites[pt.site].name, pt.fraction, pt.option.tp) for pt in c.parts))
    return ((inst.sites[c.site].name, 1.0, c.option.tp),)


def _old_layout(old: Placed) -> tuple:
    if old.split:
        return tuple(sorted((pool, f, tp) for pool, f, tp, _r in old.split))
    return ((old.pool, 1.0, old.tp),)


def solve(problem: Problem, previous: Previous | None, movement: Movement | None = Movement(),
          weight_bytes: dict[str, float] | None = None, *, baselines: bool = True,
          explain: bool = True, time_limit_s: float = REPLAN_LIMIT_S) -> Replanned:
    """The best plan for `problem` counting the cost of moving from `previous`, found
    within `time_limit_s` (or the problem's limit if lower). `previous` None, or
    `movement` None: the from-scratch optimum (`agentc.planner.solve`, its own limit)."""
    if previous is None or movement is None:
        return Replanned(solve_from_scratch(problem, baselines=baselines, explain=explain))
    clean = Instance(problem, merge_identical=False)  # the running plan names its pools
    if not clean.ops:
        return Replanned(solve_from_scratch(problem, baselines=baselines, explain=explain))
    # The penalised instance: the clean one's choices (built once: half a second at 500
    # ops; nothing it precomputes reads the prices changed below but the dominance
    # pruning, which both instances do at the clean prices anyway) with its own prices.
    inst = copy.copy(clean)
    inst.per_call_usd = list(clean.per_call_usd)
    usd = movement_usd(inst, previous, movement, weight_bytes)
    per_request = movement.requests(inst.load)
    for k, u in enumerate(usd):
        inst.per_call_usd[k] += u / per_request
    budget_s = min(time_limit_s, problem.time_limit_s)
    res = _optimise(inst, previous, budget_s)
    if res.choice is None:
        raise infeasible(clean, res)
    m = clean.evaluate(res.choice)
    plan = build_plan(clean, m, res, explain)
    if baselines:
        plan.baselines = baseline_plans(problem, clean, m, optimise, budget_s)   # the re-plan's budget again
    return Replanned(plan, sum(usd[k] for k in res.choice), True)


def _optimise(inst: Instance, previous: Previous, budget_s: float) -> MilpResult:
    """`optimise`, started from the running plan repaired (`_repair`). When that plan is
    within the requested gap of the LP bound (usual after a small change: the penalty
    makes staying put cheap), it is the answer; else the full search runs, warm-started
    from it (or, without a repair, from greedy list scheduling), for what is left of
    `budget_s`: a re-plan answers in seconds, with the gap it proved. Every phase (the
    LP, the repair's MILPs, the search) stops by one deadline, `budget_s` from now
    (`Instance.until`), as a from-scratch plan's do by its limit."""
    t0 = time.perf_counter()
    until = t0 + budget_s
    if inst.problem.objective == "latency":
        return optimise(inst, until)
    inst.until = until
    try:
        return _warm_search(inst, previous, budget_s, t0)
    finally:
        inst.until = math.inf


def _warm_search(inst: Instance, previous: Previous, budget_s: float, t0: float) -> MilpResult:
    lp = Formulation(inst, "cost", None, tp_rows=inst.load <= 0).lp_relaxation()
    if lp is None:  # infeasible, or out of time: the planner's own search says which
        return optimise(inst, inst.until)
    t_lp = time.perf_counter() - t0
    warm = _repair(inst, previous, lp[1])
    if warm is None:
        g = greedy_choice(inst)
        warm = inst.evaluate(g) if g is not None else None
        warm = warm if warm is not None and inst.feasible(warm) else None
    if warm is not None:
        gap = relative_gap(warm.objective, lp[0])
        if proven(gap, inst.problem.mip_rel_gap):
            return MilpResult("optimal", warm.choice, warm.objective, gap, time.perf_counter() - t0, bound=lp[0])
    left = budget_s - (time.perf_counter() - t0)
    if warm is not None and left < 3 * t_lp:
        # the search starts with this LP again, then MILPs: no time for it to improve
        return MilpResult("feasible", warm.choice, warm.objective, gap, time.perf_counter() - t0, bound=lp[0])
    inst.problem = replace(inst.problem, time_limit_s=max(MIN_SOLVE_S, left))
    res = search(inst, "cost", None, warm)
    if warm is not None and (res.choice is None or res.objective > warm.objective):
        # the search ran out of time before its own first plan (its LP, even): the
        # repaired plan stands, with the gap to the LP bound found above
        res = MilpResult("feasible", warm.choice, warm.objective, relative_gap(warm.objective, lp[0]), 0.0,
                         bound=lp[0])
    res.solve_time_s = time.perf_counter() - t0
    return res


def _repair(inst: Instance, previous: Previous, lp_x: dict[int, float]):
    """The running plan made feasible with few moves: every op keeps its pool and tp
    where it still can. If that is not a plan, the ops that cannot keep them (pool or
    option gone, a new op), and those whose kept option the penalised LP relaxation
    does not take (it moves them, at least in part), are placed by the MILP restricted
    to them, the others fixed; if that fails, every op on a pool over its devices may
    move too. None when neither has a plan."""
    kept, free = [], set()
    for i, ks in enumerate(inst.allowed):
        old = previous.ops.get(inst.ops[i].id)
        same = [k for k in ks if old is not None and _layout(inst, k) == _old_layout(old)]
        # under load an option comes in one choice per replica count: keep the running
        # count (else the nearest, more before fewer), not the first, which waits longest
        kept.append(min(same, key=lambda k: (abs(inst.choices[k].replicas - old.replicas),
                                             -inst.choices[k].replicas)) if same else None)
        if not same:
            free.add(i)
    if not free:
        m = inst.evaluate(kept)
        if inst.feasible(m):
            return m
        m = _shed(inst, m)
        if m is not None:
            return m
    rounds = [free | {i for i, k in enumerate(kept) if k is not None and lp_x.get(k, 0.0) < RINS_FIX}]
    if not free:
        over = set(inst.evaluate(kept).pool_over)
        rounds.append(rounds[0] | {i for i, k in enumerate(kept) if inst.choices[k].site in over})
    limit = inst.problem.time_limit_s * REPAIR_SHARE
    for free in rounds:
        cand = [ks if i in free else [kept[i]] for i, ks in enumerate(inst.allowed)]
        res = Formulation(inst, "cost", None, cand=cand).solve(None, limit)
        if res.choice is not None:
            m = inst.evaluate(res.choice)
            if inst.feasible(m):
                return m
    return None


def _shed(inst: Instance, m):
    """A device loss repaired by small steps, each evaluated exactly: while a pool is
    over its devices (and nothing else is wrong), take one replica off an op of that
    pool (every op's one-fewer variant is tried), or, when no replica can go without
    breaking the SLA, move one op of the pool elsewhere (the moves its slack in the
    running schedule admits, cheapest own price first, `SHED_MOVES` of them tried).
    Each step takes the cheapest trial that keeps the SLA and lowers the excess. None
    when a step finds nothing."""
    if not _fits_apart_from_devices(inst, m):
        return None
    by_shape = [{(inst.choices[k].site, inst.choices[k].option.tp, inst.choices[k].replicas): k for k in ks}
                for ks in inst.allowed]

    def better(trial, best):
        return (_fits_apart_from_devices(inst, trial) and sum(trial.pool_over.values()) < sum(m.pool_over.values())
                and (best is None or trial.objective < best.objective))

    while m.pool_over:
        best = None
        for i, k in enumerate(m.choice):
            c = inst.choices[k]
            fewer = by_shape[i].get((c.site, c.option.tp, c.replicas - 1)) if c.site in m.pool_over else None
            if fewer is not None:
                trial = inst.evaluate(m.choice[:i] + (fewer,) + m.choice[i + 1:])
                best = trial if better(trial, best) else best
        if best is None:
            for i, k in _moves(inst, m)[:SHED_MOVES]:
                trial = inst.evaluate(m.choice[:i] + (k,) + m.choice[i + 1:])
                best = trial if better(trial, best) else best
        if best is None:
            return None
        m = best
    return m if inst.feasible(m) else None


SHED_MOVES = 64   # moves evaluated per step (~3 ms each at 500 ops)


def _moves(inst: Instance, m) -> list[tuple[int, int]]:
    """(op, choice) moves of ops off the pools `m` overfills, onto choices whose extra
    time fits the op's slack in `m`'s schedule (expected counts, measured against the
    e2e bound when there is one), cheapest own price first (its calls and, under load,
    its devices by the hour; the evaluation prices the whole plan exactly)."""
    n, dur = len(inst.ops), [inst.duration(k) for k in m.choice]
    bound = inst.problem.sla.e2e_ms
    latest = [m.path_ms + (bound - m.e2e_ms if bound is not None else 0.0)] * n
    for i in reversed(inst.topo):
        for e_k in inst.succ[i]:
            e = inst.edges[e_k]
            latest[i] = min(latest[i], latest[e.v] - dur[e.v] - e.weight * m.transfers[e_k][0])
    per_hr = inst.load * 3600.0 if inst.load > 0 else 1.0

    def own(k: int) -> float:
        site = inst.sites[inst.choices[k].site]
        return inst.per_call_usd[k] * per_hr + (inst.demand(k) * site.usd_per_hr if inst.load > 0 else 0.0)

    out = []
    for i, k in enumerate(m.choice):
        if inst.choices[k].site not in m.pool_over:
            continue
        slack = latest[i] - m.finish[i]
        out += [(own(k2), i, k2) for k2 in inst.allowed[i]
                if inst.choices[k2].site not in m.pool_over and inst.duration(k2) - dur[i] <= slack]
    return [(i, k2) for _, i, k2 in sorted(out)]


def _fits_apart_from_devices(inst: Instance, m) -> bool:
    """`inst.feasible(m)` with the pools' device counts left out."""
    sla = not inst.hard or not (m.e2e_over_ms or m.ttft_over_ms or m.tbt_over_ms)
    return sla and not m.split and all(inst.choices[k].memory_ok and not inst.choices[k].tp_excess
                                       for k in m.choice)


# ---------------------------------------------------------------------------- the diff


@dataclass(frozen=True)
class OpChange:
    op: str
    before: Placed | None  # None: an op the old plan did not have
    after: Placed | None   # None: an op the new plan does not have

    @property
    def moved(self) -> bool:
        return self.before is not None and self.after is not None and self.before.pool != self.after.pool


@dataclass
class Diff:
    """Two manifests side by side: what changes when the new plan replaces the old."""

    ops: list[OpChange]
    devices: dict[str, tuple[int, int]]      # pool -> (devices used before, after), changed only
    inventory: dict[str, tuple[int, int]]    # pool -> (devices in the cluster before, after), changed only
    totals: dict[str, tuple[float | None, float | None]]  # cost and SLA figures, before/after
    sla: dict[str, float | None]

    @property
    def empty(self) -> bool:
        """Nothing to do on the running system: no op, replica or device changes."""
        return not self.ops and not self.devices

    def to_dict(self) -> dict:
        def placed(p):
            if p is None:
                return None
            out = {"pool": p.pool, "tp": p.tp, "replicas": p.replicas}
            if p.split:
                out["split"] = [{"pool": x, "fraction": f, "tp": tp, "replicas": r} for x, f, tp, r in p.split]
            return out

        return {
            "empty": self.empty,
            "ops": [{"op": c.op, "moved": c.moved, "before": placed(c.before), "after": placed(c.after)}
                    for c in self.ops],
            "devices": {p: {"before": b, "after": a} for p, (b, a) in self.devices.items()},
            "inventory": {p: {"before": b, "after": a} for p, (b, a) in self.inventory.items()},
            "totals": {k: {"before": b, "after": a} for k, (b, a) in self.totals.items()},
            "sla": dict(self.sla),
        }


TOTALS = ("usd_per_hr", "usd_per_request", "e2e_ms", "ttft_ms", "tbt_ms")


def placements(manifest: dict) -> dict[str, Placed]:
    return {o["id"]: Placed(o["pool"], int(o["tp"]), int(o["replicas"]),
                            tuple((x["pool"], float(x["fraction"]), int(x["tp"]), int(x["replicas"]))
                                  for x in o.get("split") or ()))
            for o in manifest["ops"]}


def diff(old: dict, new: dict) -> Diff:
    """What differs between two manifests (read as `agentc compile` writes them)."""
    before, after = placements(old), placements(new)
    ops = [OpChange(op, before.get(op), after.get(op)) for op in sorted(set(before) | set(after))
           if before.get(op) != after.get(op)]
    used_b, used_a = old["totals"].get("devices", {}), new["totals"].get("devices", {})
    devices = {p: (used_b.get(p, 0), used_a.get(p, 0)) for p in sorted(set(used_b) | set(used_a))
               if used_b.get(p, 0) != used_a.get(p, 0)}
    inv_b = {p["name"]: p["count"] for p in old["cluster"]["pools"]}
    inv_a = {p["name"]: p["count"] for p in new["cluster"]["pools"]}
    inventory = {p: (inv_b.get(p, 0), inv_a.get(p, 0)) for p in sorted(set(inv_b) | set(inv_a))
                 if inv_b.get(p, 0) != inv_a.get(p, 0)}
    totals = {k: (old["totals"].get(k), new["totals"].get(k)) for k in TOTALS}
    sla = {k: new["sla"].get(k) for k in ("e2e_ms", "ttft_ms", "tbt_ms", "load_rps")}
    sla["load_rps_before"] = old["sla"].get("load_rps")
    return Diff(ops, devices, inventory, totals, sla)
