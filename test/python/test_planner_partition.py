"""heuristics.partition_start, the loaded start with every op's pool fixed first.

A chain of four ops on a fast pool with room for two of them and a slow pool; two
edges are heavy (4.02 ms across pools at 200 Gb/s, 1% of the deadline is 0.9 ms), the
middle one light. The heavy edges are found as two groups, and the start is a plan:
checked by hand (path time, transfers, devices per pool), not by the planner's
evaluator, both from the cost LP with the groups and from the min-latency LP op by op. Its cost is at least the exhaustive optimum over the 2^4 placements,
priced here too.
"""

from __future__ import annotations

import itertools

import pytest

from agentc.planner import SLA, Link, Option, PlanEdge, PlanOp, Pool, Problem
from agentc.planner.formulation import Formulation
from agentc.planner.heuristics import heavy_groups, partition_start
from agentc.planner.instance import Instance

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
    m = partition_start(inst, inst.useful, x, None, 10.0, dive=dive, groups=groups)
    assert m is not None
    pools = tuple(inst.sites[inst.choices[k].site].name for k in m.choice)
    assert all(inst.choices[k].replicas == 1 for k in m.choice)
    e2e, usd_hr, devices = by_hand(pools)
    assert e2e <= DEADLINE and devices.get("F", 0) <= 2
    assert abs(m.cost - usd_hr) <= 1e-9 * usd_hr
    best = min(by_hand(c)[1] for c in itertools.product("FS", repeat=4)
               if by_hand(c)[0] <= DEADLINE and by_hand(c)[2].get("F", 0) <= 2)
    assert usd_hr >= best - 1e-9
