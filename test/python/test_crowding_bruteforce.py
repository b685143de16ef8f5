"""The crowded decode engine in the MILP (Formulation._crowd_rows, Instance.crowded)
against an exhaustive search written here, apart from agentc's planner.

Generated loaded chains of 3-5 ops on two accelerator pools: one `llm.decode` op (an
engine, batch 1) among `compute` jobs. Every assignment of options and replica counts
(the M/M/c menus of references/queueing_ref.py, waits at the p99) is priced as the
sizing model states it (docs/planner.md, queueing.crowding's docstring):

- a call's time on the path is its option's time plus its p99 wait;
- the decode's call also loses, to each job on its pool, call_ms x min(1, s): with
  the job's Erlangs a = rate x service / 1000 and room r = its replicas, a stall
  happens while the job's Poisson(a) occupancy passes r, lasts D = service / (r + 1),
  and is noticed at the decode's next step boundary, s = P(N > r) x (D / step) x
  (1 - exp(-step / D)); losses under a microsecond are dropped;
- a pool holds the sum of its ops' replicas; cost is devices x $/hr.

The planner must return the search's optimum to 1e-9 relative, its figure the
search's for that plan, and say `optimal`, with no bound, a loose one, one between,
the least any plan meets, and just below it (infeasible). The same chains with the
decode of kind `compute` are never crowded (a streaming op that is no engine).
"""

from __future__ import annotations

import itertools
import math
import random

import pytest

from agentc.diagnostics import InfeasiblePlanError
from agentc.planner import SLA, Link, Option, PlanEdge, PlanOp, Pool, Problem, solve
from references import queueing_ref

REL = 1e-9
PRICES = {"A": 2.0, "B": 3.5}
SPEED = {"A": 1.0, "B": 1.6}


def make_case(seed: int, decode_kind: str = "llm.decode") -> Problem:
    rng = random.Random(7000 + seed)
    n = rng.randint(3, 5)
    d = rng.randrange(n)
    ops = []
    for i in range(n):
        opts = []
        for pool in PRICES:
            if i == d:   # a long call of many short steps
                t = rng.uniform(300, 900) / SPEED[pool]
                opts.append(Option(pool, 1, t, 0.0, t * rng.uniform(0.3, 0.6), tbt_ms=t / rng.choice([50, 200])))
            else:        # a prefill-like job: busy for most of its time
                t = rng.uniform(20, 120) / SPEED[pool]
                opts.append(Option(pool, 1, t, 0.0, t * rng.uniform(0.7, 1.0)))
        ops.append(PlanOp(f"op{i}", decode_kind if i == d else "compute", opts))
    edges = [PlanEdge(f"op{i}", f"op{i + 1}", 0.0) for i in range(n - 1)]
    pools = [Pool(name, name, rng.choice([10, 14]), usd) for name, usd in PRICES.items()]
    return Problem(ops, edges, pools, [], SLA(None), load_rps=rng.choice([10.0, 20.0]),
                   default_link=Link("*", "*", 100.0, 0.0, 0.0))


def _stall(a: float, room: int, service: float, step: float) -> float:
    """The share of a decode call lost to one job (module docstring)."""
    below = sum(math.exp(-a) * a ** k / math.factorial(k) for k in range(room + 1))
    spell = service / (room + 1)
    noticed = spell / step * (1.0 - math.exp(-step / spell))
    return max(0.0, 1.0 - below) * noticed


def search(p: Problem, crowded: bool) -> list[tuple[float, float, tuple]]:
    """(e2e ms, $/hr, (pools, replicas)) of every assignment that fits the pools."""
    counts = {pl.name: pl.count for pl in p.pools}
    rows = []
    for pick in itertools.product(*(op.options for op in p.ops)):
        menus = [queueing_ref.sizes(p.load_rps, o.busy_ms, o.tp, 0.99, counts[o.device]) for o in pick]
        for sized in itertools.product(*menus):
            held = {}
            for o, (_r, dev, _w) in zip(pick, sized):
                held[o.device] = held.get(o.device, 0) + dev
            if any(v > counts[k] for k, v in held.items()):
                continue
            e2e = sum(o.time_ms + w for o, (_r, _d, w) in zip(pick, sized))
            if crowded:
                for i, op in enumerate(p.ops):
                    if op.kind != "llm.decode":
                        continue
                    dec = pick[i]
                    for j, (o, (r, _d, _w)) in enumerate(zip(pick, sized)):
                        if j != i and o.device == dec.device:
                            lost = dec.time_ms * min(1.0, _stall(p.load_rps * o.busy_ms / 1000.0, r, o.busy_ms,
                                                                 dec.tbt_ms))
                            e2e += lost if lost > 1e-3 else 0.0
            cost = sum(dev * PRICES[name] for name, dev in held.items())
            rows.append((e2e, cost, tuple((o.device, r) for o, (r, _d, _w) in zip(pick, sized))))
    return rows


CASES = list(range(10))


def test_the_cases_crowd_their_decodes():
    """In most cases the search's cheapest plan without a bound puts a job beside the
    decode and loses time to it: the crowding is what these cases test."""
    lost = 0
    for seed in CASES:
        p = make_case(seed)
        with_c, without = search(p, True), search(p, False)
        cheapest = min(with_c, key=lambda r: (r[1], r[0]))
        plain = next(r for r in without if r[2] == cheapest[2])
        lost += cheapest[0] > plain[0] + 1e-6
    assert lost >= len(CASES) // 2, lost


@pytest.mark.parametrize("seed", CASES)
def test_crowded_plans_match_exhaustive_search(seed):
    p = make_case(seed)
    rows = search(p, True)
    assert rows
    lats = sorted({e for e, _, _ in rows})
    for label, bound in (("none", None), ("loose", lats[-1] * 1.01), ("between", lats[len(lats) // 3]),
                         ("edge", lats[0]), ("below", lats[0] * (1 - 1e-6))):
        p.sla = SLA(e2e_ms=bound)
        ok = [(c, e, k) for e, c, k in rows if bound is None or e <= bound * (1 + REL)]
        if not ok:
            with pytest.raises(InfeasiblePlanError):
                solve(p, baselines=False, explain=False)
            continue
        plan = solve(p, baselines=False, explain=False)
        key = tuple((plan.ops[op.id].pool, plan.ops[op.id].replicas) for op in p.ops)
        mine = next((e, c) for e, c, k in rows if k == key)
        best = min(c for c, _, _ in ok)
        assert plan.cost == pytest.approx(best, rel=REL), (label, plan.cost, best)
        assert mine[1] == pytest.approx(plan.cost, rel=REL), label
        assert plan.e2e_ms == pytest.approx(mine[0], rel=REL), (label, plan.e2e_ms, mine[0])
        assert plan.status == "optimal", (label, plan.status)


@pytest.mark.parametrize("seed", CASES[:4])
def test_a_streaming_op_that_is_no_engine_is_not_crowded(seed):
    """The same chains with the decode's kind `compute`: the planner's figure is the
    plain sum of times and waits, with no loss to the jobs beside it."""
    p = make_case(seed, decode_kind="compute")
    rows = search(p, False)
    plan = solve(p, baselines=False, explain=False)
    key = tuple((plan.ops[op.id].pool, plan.ops[op.id].replicas) for op in p.ops)
    assert plan.cost == pytest.approx(min(c for _, c, _ in rows), rel=REL)
    assert plan.e2e_ms == pytest.approx(next(e for e, _, k in rows if k == key), rel=REL)
