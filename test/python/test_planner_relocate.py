"""relocate.py: ops and groups moved across pools where the plan's price falls.

A chain of four ops, each on a fast pool F (10 ms, 4 $/hr a device, two devices) or a
slow one S (30 ms, 1 $/hr, ten devices), under a 90 ms deadline; the two outer edges
are heavy (100 MB: 4.02 ms and 0.001 $ a transfer across pools), the middle one light.
The start F S F S meets the deadline but cuts all three edges; F is full, so the only
way out is a pair of moves (one op into F, another out). The result is checked by hand
(path, devices, $/hr from the problem's own numbers, not the planner's evaluator) and
against the exhaustive optimum over the 2^4 placements.
"""

from __future__ import annotations

import itertools
import math

from agentc.planner import SLA, Link, Option, PlanEdge, PlanOp, Pool, Problem
from agentc.planner.instance import Instance
from agentc.planner.relocate import relocate

FAST_MS, SLOW_MS = 10.0, 30.0
PRICE = {"F": 4.0, "S": 1.0}          # $/hr per device
COUNT = {"F": 2, "S": 10}
LINK = Link("*", "*", 200.0, 0.02, 0.01)   # 200 Gb/s, 0.02 ms, 0.01 $/GB
BYTES = (1e8, 1e5, 1e8)
DEADLINE = 90.0
LOAD = 0.2  # req/s: one replica of either option waits 0 at p99


def problem() -> Problem:
    ops = [PlanOp(f"o{i}", "compute", [Option("F", 1, FAST_MS, 0.0, FAST_MS), Option("S", 1, SLOW_MS, 0.0, SLOW_MS)])
           for i in range(4)]
    edges = [PlanEdge(f"o{i}", f"o{i + 1}", b) for i, b in enumerate(BYTES)]
    pools = [Pool(x, x, COUNT[x], PRICE[x]) for x in "FS"]
    return Problem(ops, edges, pools, [], SLA(DEADLINE), load_rps=LOAD, default_link=LINK, service_cv=0.0)


def by_hand(pools: tuple[str, ...]) -> tuple[float, float, dict[str, int]]:
    """(e2e ms, $/hr, devices per pool) of the chain with op i on pools[i], one replica each."""
    e2e = sum(FAST_MS if x == "F" else SLOW_MS for x in pools)
    usd_hr = 0.0
    for (a, b), nbytes in zip(zip(pools, pools[1:]), BYTES):
        if a != b:
            e2e += LINK.latency_ms + nbytes * 8 / (LINK.gbps * 1e6)
            usd_hr += nbytes / 1e9 * LINK.usd_per_gb * LOAD * 3600.0
    devices = {x: pools.count(x) for x in set(pools)}
    return e2e, usd_hr + sum(n * PRICE[x] for x, n in devices.items()), devices


def plan_of(inst: Instance, pools: tuple[str, ...]) -> list[int]:
    return [next(k for k in inst.useful[i] if inst.sites[inst.choices[k].site].name == x)
            for i, x in enumerate(pools)]


def feasible(pools: tuple[str, ...]) -> bool:
    e2e, _, devices = by_hand(pools)
    return e2e <= DEADLINE and all(n <= COUNT[x] for x, n in devices.items())


def test_relocate_reaches_the_optimum_through_a_full_pool():
    start = ("F", "S", "F", "S")
    assert feasible(start)
    inst = Instance(problem())
    choice = relocate(inst, inst.useful, tuple(plan_of(inst, start)), None, math.inf)
    assert choice is not None
    pools = tuple(inst.sites[inst.choices[k].site].name for k in choice)
    assert all(inst.choices[k].replicas == 1 for k in choice)
    best = min(by_hand(c)[1] for c in itertools.product("FS", repeat=4) if feasible(c))
    assert feasible(pools)
    assert by_hand(pools)[1] == best < by_hand(start)[1]
    assert abs(inst.evaluate(choice).cost - best) <= 1e-9 * best


def test_relocate_refuses_a_late_start():
    """A start over the deadline (all on S: 120 ms) is not a plan to improve."""
    inst = Instance(problem())
    assert relocate(inst, inst.useful, tuple(plan_of(inst, ("S",) * 4)), None, math.inf) is None
