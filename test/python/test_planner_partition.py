"""The loaded starts: heuristics.partition_start (every op's pool fixed first),
slack.slack_start (every op fast, then slowed within its slack) and
heuristics.crash_start (every op lean within the pools, then sped up).

A chain of four ops on a fast pool with room for two of them and a slow pool; two
edges are heavy (4.02 ms across pools at 200 Gb/s, 1% of the deadline is 0.9 ms), the
middle one light. The heavy edges are found as two groups, and the start is a plan:
checked by hand (path time, transfers, devices per pool), not by the planner's
evaluator, from the cost LP with the groups, from the min-latency LP op by op, and
from slack_start. Its cost is at least the exhaustive optimum over the 2^4 placements,
priced here too. slack_start's incremental schedule is held against a longest-path
pass written here, over random moves on a random DAG.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest

from agentc.planner import SLA, Link, Option, PlanEdge, PlanOp, Pool, Problem
from agentc.planner.formulation import Formulation
from agentc.planner.heuristics import crash_start, fits, heavy_groups, partition_start
from agentc.planner.instance import Instance
from agentc.planner.slack import _Schedule, slack_start

FAST_MS, SLOW_MS = 10.0, 30.0
PRICE = {"F": 4.0, "S": 1.0}          # $/hr per device
LINK = Link("*", "*", 200.0, 0.02, 0.0)
HEAVY, LIGHT = 1e8, 1e5
DEADLINE = 90.0
LOAD = 0.2  # req/s: one replica of either option waits 0 at p99 (P(wait) = a < 1%)


def problem() -> Problem:
    ops = [PlanOp(f"o{i}", "compute", [Option("F", 1, FAST_MS, 0.0, FAST_MS), Option("S", 1, SLOW_MS, 0.0, SLOW_MS)])
           for i in range(4)]
    edges = [PlanEdge("o0", "o1", HEAVY), PlanEdge("o1", "o2", LIGHT), PlanEdge("o2", "o3", HEAVY)]
    pools = [Pool("F", "F", 2, PRICE["F"]), Pool("S", "S", 10, PRICE["S"])]
    return Problem(ops, edges, pools, [], SLA(DEADLINE), load_rps=LOAD, default_link=LINK, service_cv=0.0)


def by_hand(pools: tuple[str, ...]) -> tuple[float, float, dict[str, int]]:
    """(e2e ms, $/hr, devices per pool) of the chain with op i on pools[i], one replica each."""
    e2e = sum(FAST_MS if x == "F" else SLOW_MS for x in pools)
    for (a, b), nbytes in zip(zip(pools, pools[1:]), (HEAVY, LIGHT, HEAVY)):
        if a != b:
            e2e += LINK.latency_ms + nbytes * 8 / (LINK.gbps * 1e6)
    devices = {x: pools.count(x) for x in set(pools)}
    return e2e, sum(n * PRICE[x] for x, n in devices.items()), devices


def test_heavy_edges_make_two_groups():
    inst = Instance(problem())
    groups = sorted(sorted(inst.ops[i].id for i in g) for g in heavy_groups(inst, inst.useful, DEADLINE))
    assert groups == [["o0", "o1"], ["o2", "o3"]]


@pytest.mark.parametrize("dive,groups", [("cost", True), ("latency", False)])
def test_partition_start_is_a_plan_no_cheaper_than_the_optimum(dive, groups):
    inst = Instance(problem())
    x = None
    if dive == "cost":  # the caller's LP, as search hands it over
        lp = Formulation(inst, "cost", None, tp_rows=False).lp_relaxation()
        assert lp is not None
        x = lp[1]
    check_start(inst, partition_start(inst, inst.useful, x, None, 10.0, dive=dive, groups=groups))


def test_slack_start_is_a_plan_no_cheaper_than_the_optimum():
    """All four ops fast would need 4 devices of F's 2; the start moves one heavy group
    (whole) to S, where the 30 ms ops still meet the 90 ms deadline."""
    inst = Instance(problem())
    check_start(inst, slack_start(inst, inst.useful, None, 10.0, fits, heavy_groups))


def test_crash_start_is_a_plan_no_cheaper_than_the_optimum():
    """Lean, all four ops sit on S (120 ms, over the 90 ms deadline); the crash speeds
    them up onto F's two devices, from the cost LP's mean times as budgets."""
    inst = Instance(problem())
    lp = Formulation(inst, "cost", None, tp_rows=False).lp_relaxation()
    assert lp is not None
    check_start(inst, crash_start(inst, inst.useful, lp[1], None, 10.0))


def test_crash_start_returns_no_plan_past_the_deadline():
    """At 70 ms no plan exists (the fastest within F's two devices, F F S S, takes
    80.02 ms): the crash ends late and its band MILP finds nothing, so no start at all."""
    inst = Instance(replace(problem(), sla=SLA(70.0)))
    assert by_hand(("F", "F", "S", "S"))[0] > 70.0
    assert crash_start(inst, inst.useful, {}, None, 10.0) is None


def check_start(inst: Instance, m) -> None:
    """m is a plan (by hand: path, devices, $/hr) at least as dear as the optimum."""
    assert m is not None
    pools = tuple(inst.sites[inst.choices[k].site].name for k in m.choice)
    assert all(inst.choices[k].replicas == 1 for k in m.choice)
    e2e, usd_hr, devices = by_hand(pools)
    assert e2e <= DEADLINE and devices.get("F", 0) <= 2
    assert abs(m.cost - usd_hr) <= 1e-9 * usd_hr
    best = min(by_hand(c)[1] for c in itertools.product("FS", repeat=4)
               if by_hand(c)[0] <= DEADLINE and by_hand(c)[2].get("F", 0) <= 2)
    assert usd_hr >= best - 1e-9


def test_incremental_schedule_matches_a_full_pass():
    """Earliest and latest finishes after each of 200 random moves (option and pool) on
    a 40-op random DAG equal a forward and backward pass over the whole graph, with op
    time = weight x option time and a transfer = latency + bytes / bandwidth (x edge
    weight) between different pools, as priced here from the problem's own numbers."""
    rng = random.Random(5)
    names = ["P", "Q", "R"]
    link = Link("*", "*", 100.0, 0.5, 0.0)
    n = 40
    # an op's two speeds are the same on every pool: a move between pools then often
    # changes only transfers, which must still reach the successors
    speeds = [(rng.uniform(1, 20), rng.uniform(1, 20)) for _ in range(n)]
    ops = [PlanOp(f"o{i}", "compute", [Option(d, 1, t, 0.0, 1.0) for d in names for t in speeds[i]],
                  weight=rng.choice([0.5, 1.0, 2.0])) for i in range(n)]
    pairs = sorted({(u, v) for v in range(1, n) for u in rng.sample(range(v), min(v, 2))})
    edges = [PlanEdge(f"o{u}", f"o{v}", rng.choice([1e5, 1e7, 1e8]), weight=rng.choice([1.0, 2.0])) for u, v in pairs]
    p = Problem(ops, edges, [Pool(d, d, None, 1.0) for d in names], [], SLA(1000.0), default_link=link)
    inst = Instance(p, merge_identical=False)
    deadline = 1000.0
    # choice k of op i: its option rank and pool name, read off the problem
    opt = {k: (c.op, c.rank, inst.sites[c.site].name) for k, c in enumerate(inst.choices)}
    by_op = [[k for k in range(len(inst.choices)) if opt[k][0] == i] for i in range(n)]
    choice = [rng.choice(ks) for ks in by_op]
    sched = _Schedule(inst, choice, deadline)

    def reference() -> tuple[list[float], list[float]]:
        def ms(i: int) -> float:
            return ops[i].weight * ops[i].options[opt[choice[i]][1]].time_ms

        def hop(e: PlanEdge) -> float:
            a, b = opt[choice[int(e.src[1:])]][2], opt[choice[int(e.dst[1:])]][2]
            return 0.0 if a == b else e.weight * (link.latency_ms + e.bytes * 8 / (link.gbps * 1e6))

        ef = [0.0] * n
        for v in range(n):   # ops are numbered in topological order
            ef[v] = max([ef[int(e.src[1:])] + hop(e) for e in edges if e.dst == f"o{v}"], default=0.0) + ms(v)
        lf = [deadline] * n
        for u in reversed(range(n)):
            lf[u] = min([lf[int(e.dst[1:])] - ms(int(e.dst[1:])) - hop(e) for e in edges if e.src == f"o{u}"],
                        default=deadline)
        return ef, lf

    for _ in range(200):
        i = rng.randrange(n)
        sched.move(i, rng.choice(by_op[i]))
        ef, lf = reference()
        assert sched.ef == pytest.approx(ef, rel=1e-12, abs=1e-9)
        assert sched.lf == pytest.approx(lf, rel=1e-12, abs=1e-9)
