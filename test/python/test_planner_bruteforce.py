"""The planner against an exhaustive search over the same cost tables.

Each generated graph (<= 8 ops: chains, fan-out, fan-in, diamonds, random DAGs; with and
without a load; hard SLAs that are loose, tight, exactly at a plan's latency, at the
fastest plan's latency, and just below it) is solved by `agentc.planner.solve` and by
enumerating every assignment of options to ops. The enumeration prices an assignment
from the problem's raw numbers with code written here (not agentc's Instance or
evaluate): the path latency with transfer terms on cross-pool edges, money per request
or per hour with whole devices under load, where every op also picks its replica count
and waits its M/M/c p99 wait (test/python/references/queueing_ref.py). The planner must return the enumeration's
optimum (to 1e-9 relative), meet every hard bound, and say `optimal`.

Prices are realistic ($/request ~1e-6), the range where the solver's absolute
tolerances once accepted plans up to 19% dearer than the optimum.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
import math
import random

import pytest

from agentc.diagnostics import InfeasiblePlanError
from agentc.planner import SLA, Link, Option, PlanEdge, PlanOp, Pool, Problem, solve
from references import queueing_ref

REL = 1e-9
# device class: (relative speed, $/hr per device)
CLASSES = {"A": (1.0, 0.25), "B": (2.2, 0.49), "C": (2.6, 0.60), "D": (0.35, 0.15)}
SHAPES = ("chain", "fan-out", "fan-in", "diamond", "dag")


def _edges(rng: random.Random, shape: str, n: int) -> list[tuple[int, int]]:
    """Edges u -> v with u < v, so op index order is a topological order."""
    if shape == "chain":
        return [(i, i + 1) for i in range(n - 1)]
    if shape == "fan-out":
        return [(0, i) for i in range(1, n)]
    if shape == "fan-in":
        return [(i, n - 1) for i in range(n - 1)]
    if shape == "diamond":
        return [(0, i) for i in range(1, n - 1)] + [(i, n - 1) for i in range(1, n - 1)]
    return [(i, j) for i in range(n) for j in range(i + 1, n) if rng.random() < 0.4]


def make_problem(seed: int) -> Problem:
    rng = random.Random(seed)
    shape = SHAPES[seed % len(SHAPES)]
    loaded = seed % 3 == 2
    classes = rng.sample(sorted(CLASSES), 3)
    # assignments in all, kept small for the enumeration (under load each also picks
    # replica counts per op)
    budget = 200 if loaded else 4000
    n = rng.randint(3 if shape != "diamond" else 4, 8)
    ops = []
    total = 1
    for i in range(n):
        work = rng.uniform(5, 60)
        weight = rng.choice([1.0, 1.0, 0.5, 2.0, 1.7])
        width = max(1, min(4, int((budget / total) ** (1 / max(1, n - i)))))
        opts = []
        for name in rng.sample(classes, min(len(classes), rng.randint(1, 3))):
            speed, usd_hr = CLASSES[name]
            for tp in rng.sample([1, 2], rng.randint(1, 2)):
                t = work / (speed * tp ** 0.8) * rng.uniform(0.8, 1.2)
                fee = rng.choice([0.0, 0.0, 0.0, 2e-7])
                ttft = t * 0.3 if rng.random() < 0.3 else None
                opts.append(Option(name, tp, t, t * usd_hr * tp / 3.6e6 + fee, t * rng.uniform(0.6, 1.0),
                                   ttft_ms=ttft, memory_ok=rng.random() > 0.1, fee_usd=fee))
        opts = opts[:width]
        if not any(o.memory_ok for o in opts):
            opts[0] = Option(opts[0].device, opts[0].tp, opts[0].time_ms, opts[0].usd_per_call,
                             opts[0].busy_ms, ttft_ms=opts[0].ttft_ms, fee_usd=opts[0].fee_usd)
        total *= len(opts)
        ops.append(PlanOp(f"op{i}", "compute", opts, weight=weight))
    edges = []
    for u, v in _edges(rng, shape, n):
        profiled = None
        if rng.random() < 0.2:
            a, b = rng.sample(classes, 2)
            profiled = {(a, b): (rng.uniform(1, 20), rng.uniform(0, 1e-6))}
        edges.append(PlanEdge(f"op{u}", f"op{v}", rng.choice([0.0, 1e5, 1e7, 1e8]),
                              weight=rng.choice([1.0, 1.0, 0.5]), profiled=profiled))
    links = [Link(a, b, rng.choice([25.0, 100.0, 400.0]), rng.choice([0.0, 0.05, 2.0]),
                  rng.choice([0.0, 0.01]))
             for a, b in itertools.combinations(classes, 2) if rng.random() < 0.7]
    pools = []
    if loaded or rng.random() < 0.5:
        for name in classes:
            metered = not loaded or rng.random() < 0.15
            pools.append(Pool(name, name, rng.choice([2, 3, 4, 8]) if loaded and not metered else 64,
                              0.0 if metered else CLASSES[name][1]))
    return Problem(ops, edges, pools, links, SLA(None), load_rps=rng.choice([2.0, 10.0, 40.0]) if loaded else 0.0,
                   default_link=Link("*", "*", rng.choice([50.0, 200.0]), 0.02, 0.01))


# ------------------------------------------------------------ the independent oracle


def _transfer(p: Problem, e: PlanEdge, a: str, b: str) -> tuple[float, float]:
    """(ms, $) of one transfer from pool a to pool b: a profiled figure (either direction),
    else the link between the two, else the default link; free within a pool."""
    if a == b:
        return 0.0, 0.0
    for key in ((a, b), (b, a)):
        if e.profiled and key in e.profiled:
            return e.profiled[key]
    link = next((ln for ln in p.links if {ln.a, ln.b} == {a, b}), p.default_link)
    return link.latency_ms + e.bytes * 8.0 / (link.gbps * 1e6), e.bytes / 1e9 * link.usd_per_gb


def menus(p: Problem, pick: tuple[Option, ...]) -> list[list[tuple[int, int, float]]]:
    """Per op, the (replicas, devices, p99 wait) it may take under load (queueing_ref)."""
    pools = {pl.name: pl for pl in p.pools}
    return [queueing_ref.sizes(p.load_rps * op.weight, o.busy_ms, o.tp, 0.99, pools[o.device].count)
            for op, o in zip(p.ops, pick)]


def price(p: Problem, pick: tuple[Option, ...], ttft_sla: float | None = None,
          sized: tuple | None = None) -> tuple[float, float] | None:
    """(e2e ms, cost) of one assignment (under load with `sized`: per op, the replicas,
    devices and wait per call it takes), or None if a limit other than the e2e SLA rules
    it out (memory, tp over a pool, TTFT, devices over a pool under load).

    TTFT: the first op (in program order) that reports a TTFT on any option and runs
    gives the first token, at its start plus its wait and one call's TTFT (its time if
    none)."""
    ids = {op.id: i for i, op in enumerate(p.ops)}
    pools = {pl.name: pl for pl in p.pools}
    waits = [s[2] for s in sized] if sized else [0.0] * len(p.ops)
    for o in pick:
        if not o.memory_ok or (o.device in pools and o.tp > pools[o.device].count):
            return None
    finish = [0.0] * len(p.ops)
    moved_usd = 0.0
    first = next((i for i, op in enumerate(p.ops) if op.weight > 0
                  and any(o.ttft_ms is not None for o in op.options)), None)
    for i, op in enumerate(p.ops):  # index order is topological
        start = 0.0
        for e in p.edges:
            if ids[e.dst] == i:
                u = ids[e.src]
                ms, usd = _transfer(p, e, pick[u].device, pick[i].device)
                start = max(start, finish[u] + e.weight * ms)
        finish[i] = start + op.weight * (pick[i].time_ms + waits[i])
        if i == first and ttft_sla is not None:
            ttft = start + waits[i] + (pick[i].ttft_ms if pick[i].ttft_ms is not None else pick[i].time_ms)
            if not meets(ttft, ttft_sla):
                return None
    for e in p.edges:
        moved_usd += e.weight * _transfer(p, e, pick[ids[e.src]].device, pick[ids[e.dst]].device)[1]
    e2e = max(finish)
    if p.load_rps <= 0:
        return e2e, sum(op.weight * o.usd_per_call for op, o in zip(p.ops, pick)) + moved_usd
    per_call, held, widest = moved_usd, {}, {}
    for op, o, (_r, n, _w) in zip(p.ops, pick, sized):
        metered = pools[o.device].usd_per_hr == 0
        per_call += op.weight * (o.usd_per_call if metered else o.fee_usd)
        held[o.device] = held.get(o.device, 0) + n  # replicas are the op's own
        widest[o.device] = max(widest.get(o.device, 0), o.tp)
    usd_hr = p.load_rps * 3600.0 * per_call
    for name, n in held.items():
        devices = max(widest[name], n)
        if devices > pools[name].count:
            return None
        usd_hr += devices * pools[name].usd_per_hr
    return e2e, usd_hr


def table(p: Problem, ttft_sla: float | None = None) -> list[tuple[float, float]]:
    """(e2e, cost) of every assignment that no limit but the e2e SLA rules out."""
    rows = []
    for pick in itertools.product(*(op.options for op in p.ops)):
        for sized in itertools.product(*menus(p, pick)) if p.load_rps > 0 else [None]:
            r = price(p, pick, ttft_sla, sized)
            if r is not None:
                rows.append(r)
    return rows


def meets(e2e: float, bound: float | None) -> bool:
    return bound is None or e2e <= bound + REL * max(1.0, bound)


def slas(rows: list[tuple[float, float]]) -> list[tuple[str, float | None]]:
    """Loose, tight, edge and infeasible e2e bounds for one graph."""
    lats = sorted({r[0] for r in rows})
    fastest, slowest = lats[0], lats[-1]
    return [("none", None), ("loose", slowest * 1.01), ("mid", (fastest + slowest) / 2),
            ("tight", lats[len(lats) // 5]),  # exactly one plan's latency
            ("edge", fastest),                # only the fastest plans qualify
            ("below", fastest * (1 - 1e-6))]  # nothing qualifies


CASES = list(range(36))


@pytest.mark.parametrize("seed", CASES)
def test_planner_matches_exhaustive_search(seed):
    p = make_problem(seed)
    ttft = None
    if seed % 4 == 1:  # a TTFT bound that rules out the slower options that report TTFT
        # (on the first op that reports one, TTFT is its start plus one call's TTFT)
        reported = sorted(o.ttft_ms for op in p.ops for o in op.options if o.ttft_ms is not None)
        ttft = reported[len(reported) // 2] if reported else None
    rows = table(p, ttft)
    p.sla = SLA(ttft_ms=ttft)
    if not rows:  # memory, TTFT or pool sizes rule out every assignment
        with pytest.raises(InfeasiblePlanError):
            solve(p, baselines=False, explain=False)
        return
    for label, bound in slas(rows):
        p.sla = SLA(e2e_ms=bound, ttft_ms=ttft)
        best = min((c for lat, c in rows if meets(lat, bound)), default=None)
        if best is None:
            with pytest.raises(InfeasiblePlanError):
                solve(p, baselines=False, explain=False)
            continue
        plan = solve(p, baselines=False, explain=False)
        pick = tuple(plan.ops[op.id].option for op in p.ops)
        assert all(plan.ops[op.id].pool == plan.ops[op.id].option.device for op in p.ops)
        sized = None
        if p.load_rps > 0:  # the plan's replicas, priced by the reference
            sized = tuple(next(s for s in menu if s[0] == plan.ops[op.id].replicas)
                          for op, menu in zip(p.ops, menus(p, pick)))
        got = price(p, pick, ttft, sized)
        assert got is not None, f"{label}: the plan breaks a limit"
        e2e, cost = got
        assert meets(e2e, bound), f"{label}: plan takes {e2e} ms over the SLA {bound}"
        assert cost == pytest.approx(best, rel=REL), f"{label} (SLA {bound}): plan {cost} vs optimum {best}"
        assert plan.cost == pytest.approx(cost, rel=REL) and plan.e2e_ms == pytest.approx(e2e, rel=REL)
        assert plan.status == "optimal" and plan.gap is not None and plan.gap <= p.mip_rel_gap + 1e-9
        assert not plan.violations


def test_generated_cases_cover_every_shape_and_load():
    kinds = {(SHAPES[s % len(SHAPES)], make_problem(s).load_rps > 0) for s in CASES}
    assert kinds == {(shape, loaded) for shape in SHAPES for loaded in (False, True)}
    assert all(len(make_problem(s).ops) <= 8 for s in CASES)
    assert sum(bool(table(make_problem(s))) for s in CASES) >= 30  # graphs with a plan


# ------------------------------------------------ identical pools (Instance._merge_twins)


def with_twins(p: Problem, copies: int) -> Problem | None:
    """`p` with `copies` more pools identical to one of its pools that no profiled
    transfer names (its own links dropped: the default link joins them all alike), every
    option on it offered on each copy too; None when there is no such pool."""
    named = {x for e in p.edges if e.profiled for pair in e.profiled for x in pair}
    base = next((pl for pl in p.pools if pl.name not in named), None)
    if base is None:
        return None
    p = replace(p, links=[ln for ln in p.links if base.name not in (ln.a, ln.b)])
    names = [f"{base.name}{j}" for j in range(copies)]
    pools = list(p.pools) + [Pool(n, base.device_class, base.count, base.usd_per_hr) for n in names]
    ops = [PlanOp(op.id, op.kind, list(op.options) + [replace(o, device=n) for n in names
                                                         for o in op.options if o.device == base.name],
                  weight=op.weight) for op in p.ops]
    return replace(p, ops=ops, pools=pools)


def twin_problem(seed: int) -> Problem | None:
    """Seed's problem with twins enough that some are dropped: 2 without load (one is
    kept), one more than its ops under load (one per op is kept)."""
    p = make_problem(seed)
    return with_twins(p, len(p.ops) if p.load_rps > 0 else 2)


def _small(q: Problem | None) -> bool:
    return q is not None and math.prod(len(op.options) for op in q.ops) <= (400 if q.load_rps > 0 else 3000)


TWIN_CASES = ([s for s in range(120) if make_problem(s).load_rps <= 0 and _small(twin_problem(s))][:5]
              + [s for s in range(120) if make_problem(s).load_rps > 0 and _small(twin_problem(s))][:5])


@pytest.mark.parametrize("seed", TWIN_CASES)
def test_identical_pools_are_merged_without_losing_the_optimum(seed):
    """Pools interchangeable by symmetry are kept once without load (and once per op
    under load): the plan still costs the optimum of the enumeration over every pool."""
    p = twin_problem(seed)
    rows = table(p)
    from agentc.planner.instance import Instance
    copies = len(p.ops) if p.load_rps > 0 else 2
    assert len(Instance(p).dropped) == copies + 1 - (len(p.ops) if p.load_rps > 0 else 1)
    if not rows:
        with pytest.raises(InfeasiblePlanError):
            solve(p, baselines=False, explain=False)
        return
    for label, bound in slas(rows)[:4]:
        p.sla = SLA(e2e_ms=bound)
        best = min((c for lat, c in rows if meets(lat, bound)), default=None)
        if best is None:
            continue
        plan = solve(p, baselines=False, explain=False)
        assert plan.cost == pytest.approx(best, rel=REL), f"{label}: plan {plan.cost} vs optimum {best}"
        assert plan.status == "optimal"


def test_twin_cases_cover_both_loads():
    assert len(TWIN_CASES) == 10
    assert {make_problem(s).load_rps > 0 for s in TWIN_CASES} == {False, True}
    assert sum(bool(table(twin_problem(s))) for s in TWIN_CASES) >= 8  # most have a plan


def _decisions(p: Problem, plan) -> tuple:
    """A plan as Problem.exclude takes it: per op its id, option rank, pool, replicas, split."""
    return tuple(sorted((op.id, op.options.index(plan.ops[op.id].option), plan.ops[op.id].pool,
                         int(plan.ops[op.id].replicas), plan.ops[op.id].split_key) for op in p.ops))


@pytest.mark.parametrize("seed", [s for s in CASES if s % 3 == 0])
def test_excluded_plans_give_the_next_cheapest_in_order(seed):
    """Problem.exclude (a no-good cut per plan; agentc/promise.py excludes the plans its
    prediction misses): solving again with each returned plan excluded yields the
    enumeration's cheapest costs in order, ties included, each plan new. Without a
    load: under one the planner offers an op only the replica counts that can shorten
    a counted wait, so the enumeration's next plan may be one it never offers."""
    p = make_problem(seed)
    assert p.load_rps == 0
    rows = [r[1] for pick in itertools.product(*(op.options for op in p.ops))
            for r in [price(p, pick)] if r is not None]
    if len(rows) < 4:
        pytest.skip("fewer than 4 plans to order")
    exclude, costs = (), []
    for _ in range(4):
        plan = solve(replace(p, exclude=exclude), baselines=False, explain=False)
        assert _decisions(p, plan) not in exclude and plan.status == "optimal"
        costs.append(plan.cost)
        exclude += (_decisions(p, plan),)
    assert costs == pytest.approx(sorted(rows)[:4], rel=REL), (costs, sorted(rows)[:4])
