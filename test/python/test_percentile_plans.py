"""Percentile SLAs by hand: a loop and a branch program where p50, p90 and p99 each
give a different plan, every number below worked out on paper; plus the scenario laws,
the sound bound past the scenario cap, TTFT on the first call, and the SLA syntax."""

from __future__ import annotations

import itertools
import math

import pytest

from agentc.diagnostics import AgentcError
from agentc.planner import (SLA, Branch, Loop, Option, PlanEdge, PlanOp, Problem, continue_prob, solve,
                            trip_law)
from agentc.planner.scenarios import MAX_SCENARIOS


def _op(name, *opts, weight=1.0):
    return PlanOp(name, "compute", [Option(dev, 1, ms, usd, ms) for dev, ms, usd in opts], weight=weight)


def _chain(ids):
    return [PlanEdge(a, b, 0.0) for a, b in zip(ids, ids[1:])]


def _pick(plan):
    return tuple(plan.ops[k].option.device for k in sorted(plan.ops))


# A then `loop max 3 while 0.4 { B }`: P(0, 1, 2, 3 trips) = 0.6, 0.24, 0.096, 0.064
# (cumulative 0.6, 0.84, 0.936, 1), so p50 counts 0 trips, p90 2 and p99 3; B runs
# 0.24 + 2 * 0.096 + 3 * 0.064 = 0.624 times per request on average.
# A: fast 100 ms $3 | slow 300 ms $1; B: fast 50 ms $2 | slow 150 ms $1; bound 400 ms.
#   p50: A <= 400                 -> A slow, B slow:  1 + 0.624 * 1 = 1.624
#   p90: A + 2B <= 400            -> A slow, B fast (300 + 100):  1 + 0.624 * 2 = 2.248
#        (A fast, B slow: 100 + 300 = 400 too, but 3 + 0.624 = 3.624)
#   p99: A + 3B <= 400            -> A fast, B fast (250; A slow + 3 * 50 = 450 misses,
#        A fast + 3 * 150 = 550 misses): 3 + 0.624 * 2 = 4.248
EB = 0.24 + 2 * 0.096 + 3 * 0.064


def loop_problem(stat):
    ops = [_op("a", ("fast", 100, 3.0), ("slow", 300, 1.0)),
           _op("b", ("fast", 50, 2.0), ("slow", 150, 1.0), weight=EB)]
    return Problem(ops, _chain(["a", "b"]), [], [], SLA(e2e_ms=400, e2e_stat=stat),
                   flow=("a", Loop(("b",), 3, 0.4)))


@pytest.mark.parametrize("stat, pick, cost, e2e", [
    ("p50", ("slow", "slow"), 1 + EB, 300.0),
    ("p90", ("slow", "fast"), 1 + 2 * EB, 400.0),
    ("p99", ("fast", "fast"), 3 + 2 * EB, 250.0),
])
def test_loop_percentiles_give_three_plans(stat, pick, cost, e2e):
    plan = solve(loop_problem(stat), baselines=False)
    assert _pick(plan) == pick
    assert plan.cost == pytest.approx(cost, rel=1e-12)
    assert plan.e2e_ms == pytest.approx(e2e, rel=1e-12)
    assert plan.status == "optimal" and plan.scenarios == 4 and plan.scenarios_exact


# A, then `if 0.3 { B }`, then `if 0.08 { C }`, a chain. Traces: none 0.7 * 0.92 = 0.644,
# B only 0.276, C only 0.056, both 0.024. p50 is met by covering `none` (0.644); p90 by
# `none` + `B` (0.92); p99 needs all four (0.976 without `both`).
# A: fast 100 $3 | slow 300 $1; B: fast 50 $2 | slow 150 $1; C: fast 50 $2 | slow 400 $1;
# bound 400 ms; B runs 0.3 and C 0.08 times per request.
#   p50: A <= 400                 -> slow, slow, slow: 1 + 0.3 + 0.08 = 1.38
#   p90: A + B <= 400 (C free)    -> slow, fast, slow: 1 + 0.6 + 0.08 = 1.68
#   p99: A + B + C <= 400         -> slow, fast, fast (400): 1 + 0.6 + 0.16 = 1.76
def branch_problem(stat):
    ops = [_op("a", ("fast", 100, 3.0), ("slow", 300, 1.0)),
           _op("b", ("fast", 50, 2.0), ("slow", 150, 1.0), weight=0.3),
           _op("c", ("fast", 50, 2.0), ("slow", 400, 1.0), weight=0.08)]
    return Problem(ops, _chain(["a", "b", "c"]), [], [], SLA(e2e_ms=400, e2e_stat=stat),
                   flow=("a", Branch(0.3, ("b",), ()), Branch(0.08, ("c",), ())))


@pytest.mark.parametrize("stat, pick, cost, e2e", [
    ("p50", ("slow", "slow", "slow"), 1.38, 300.0),
    ("p90", ("slow", "fast", "slow"), 1.68, 350.0),
    ("p99", ("slow", "fast", "fast"), 1.76, 400.0),
])
def test_branch_percentiles_give_three_plans(stat, pick, cost, e2e):
    plan = solve(branch_problem(stat), baselines=False)
    assert _pick(plan) == pick
    assert plan.cost == pytest.approx(cost, rel=1e-12)
    assert plan.e2e_ms == pytest.approx(e2e, rel=1e-12)
    assert plan.status == "optimal"


def test_every_path_and_mean():
    # plain `latency < 400`: every trace, so as p99 above; the mean of the p90 plan's
    # traces (A slow, B fast, C slow): 300 + 0.3 * 50 + 0.08 * 400 = 347 ms
    assert _pick(solve(branch_problem("all"), baselines=False)) == ("slow", "fast", "fast")
    p = branch_problem("mean")
    p.sla = SLA(e2e_ms=347, e2e_stat="mean")
    plan = solve(p, baselines=False)
    assert _pick(plan) == ("slow", "fast", "slow") and plan.e2e_ms == pytest.approx(347, rel=1e-12)


def test_a_branch_is_priced_per_arm():
    # arms of 1614 and 2445 ms (the case): no plan meets 1840 ms on every path,
    # and the p50 of a 0.6 / 0.4 branch is the longer arm only below 40%
    ops = [_op("x", ("g", 1614, 1.0)), _op("y", ("g", 2445, 1.0))]
    for stat, bound, ok in (("all", 1840, False), ("p50", 1840, True), ("p70", 1840, False)):
        p = Problem(ops, [], [], [], SLA(e2e_ms=bound, e2e_stat=stat), flow=(Branch(0.6, ("x",), ("y",)),))
        if ok:
            assert solve(p, baselines=False).e2e_ms == 1614
        else:
            with pytest.raises(AgentcError):
                solve(p, baselines=False)


def test_trip_law_and_continue_probability():
    assert trip_law(3, 0.3) == pytest.approx([0.7, 0.21, 0.063, 0.027])
    assert trip_law(2, 1.0) == [0.0, 0.0, 1.0]
    p = continue_prob(4, 1.5)
    assert p + p ** 2 + p ** 3 + p ** 4 == pytest.approx(1.5, rel=1e-9)
    assert sum(k * q for k, q in enumerate(trip_law(4, p))) == pytest.approx(1.5, rel=1e-9)


def test_ttft_counts_the_path_and_the_first_call_in_a_loop():
    # embed (40) -> prefill (ttft 30, runs up to 3 times in a loop): TTFT is 40 + 30 on
    # every path, not the largest single prefill and not the second call's
    ops = [PlanOp("embed", "embed", [Option("g", 1, 40.0, 1.0, 40.0)]),
           PlanOp("pre", "llm.prefill", [Option("g", 1, 30.0, 1.0, 30.0, ttft_ms=30.0),
                                         Option("h", 1, 20.0, 5.0, 20.0, ttft_ms=20.0)])]
    p = Problem(ops, [PlanEdge("embed", "pre", 0.0)], [], [], SLA(ttft_ms=70.0),
                flow=("embed", Loop(("pre",), 3, 1.0)), ttft_ops=["pre"])
    plan = solve(p, baselines=False)
    assert plan.ttft_ms == 70.0 and plan.ops["pre"].option.device == "g"
    p.sla = SLA(ttft_ms=69.0)
    assert solve(p, baselines=False).ttft_ms == 60.0  # the dearer, faster prefill


def test_past_the_cap_scenarios_merge_into_a_sound_bound():
    # 8 independent branches: 256 traces > MAX_SCENARIOS; the plan must still meet the
    # exact p90 (checked here over all 256) and cost no less than the exact optimum
    n = 8
    assert 2 ** n > MAX_SCENARIOS
    ops = [_op(f"o{i}", ("fast", 10 + i, 2.0), ("slow", 30 + 2 * i, 1.0), weight=0.5) for i in range(n)]
    ids = [o.id for o in ops]
    flow = tuple(Branch(0.5, (x,), ()) for x in ids)
    p = Problem(ops, _chain(ids), [], [], SLA(e2e_ms=150, e2e_stat="p90"), flow=flow)
    plan = solve(p, baselines=False)
    assert not plan.scenarios_exact and plan.scenarios <= MAX_SCENARIOS

    def p90(times):
        lat = sorted(sum(t for t, on in zip(times, arms) if on) for arms in itertools.product((0, 1), repeat=n))
        return lat[math.ceil(0.9 * len(lat)) - 1]  # 256 equally likely traces

    chosen = [plan.ops[x].option.time_ms for x in ids]
    assert p90(chosen) <= 150
    best = min(sum(0.5 * o.usd_per_call for o in pick) for pick in itertools.product(*(op.options for op in ops))
               if p90([o.time_ms for o in pick]) <= 150)
    assert plan.cost >= best - 1e-12


def _compile_sla(tmp_path, sla):
    from agentc import pipeline

    src = tmp_path / "a.agent"
    src.write_text("model m = llama3-8b\nagent a(q: text) -> text {\n  sla { " + sla + " }\n"
                   "  return llm(m, q, in=64, out=8)\n}\n")
    return pipeline.compile_file(str(src), pipeline.Options(emit="placed"))


def test_sla_syntax_sets_each_terms_statistic(tmp_path):
    c = _compile_sla(tmp_path, "latency.p90 < 5s; ttft.p99 < 2s; tbt.mean < 1s")
    sla = c.placement.problem.sla
    assert (sla.e2e_stat, sla.ttft_stat, sla.tbt_stat) == ("p90", "p99", "mean")
    assert c.plan.stats == {"e2e": "p90", "ttft": "p99", "tbt": "mean"}
    sla = _compile_sla(tmp_path, "latency < 5s; ttft < 2s").placement.problem.sla
    assert (sla.e2e_stat, sla.ttft_stat) == ("all", "all")
    with pytest.raises(AgentcError, match="bad percentile 'ttft.p0'"):
        _compile_sla(tmp_path, "ttft.p0 < 2s")
    with pytest.raises(AgentcError, match="unknown SLA term 'tokens.p9'"):
        _compile_sla(tmp_path, "tokens.p9 < 2s")


def test_scenario_sums_in_numpy_are_the_python_sums_to_the_bit(monkeypatch):
    """scenarios._product (nested loops of many ops: 47 s -> 6 s to `placed` for 100 ops)
    against the pair-by-pair Python sum it replaces: the same scenarios, probabilities to
    the bit, the same merges, on random nests of loops and branches."""
    import random

    from agentc.planner import scenarios as S
    from agentc.planner.problem import Branch, Loop

    def flow(rng, ops, depth):
        items = []
        for _ in range(rng.randint(1, 5)):
            r = rng.random()
            if r < 0.4 or depth > 4:
                if ops:
                    items.append(ops.pop())
            elif r < 0.75:
                items.append(Loop(tuple(flow(rng, ops, depth + 1)), rng.randint(1, 5), rng.choice([0.3, 0.5, 0.9])))
            else:
                items.append(Branch(rng.choice([0.2, 0.5]), tuple(flow(rng, ops, depth + 1)),
                                    tuple(flow(rng, ops, depth + 1))))
        return items

    merged = 0
    for seed in (s for s in range(30) if s != 10):   # 10: 51k scenarios, a third of the time, nothing new
        rng = random.Random(seed)
        names = [f"o{i}" for i in range(rng.randint(10, 60))]
        left = list(names)
        f = tuple(flow(rng, left, 0)) + tuple(left)   # every op once
        index = {x: i for i, x in enumerate(names)}
        size = [rng.uniform(1, 10) for _ in names]
        runs = []
        for vector_min in (1 << 62, 1):   # never numpy, always numpy
            monkeypatch.setattr(S, "VECTOR_MIN", vector_min)
            en = S.Enumerator(index, size)
            runs.append((en.run(f), en.merged, en.total))
        assert runs[0] == runs[1], seed
        merged += runs[0][1]
    assert merged >= 10   # the merging bound was exercised too


def test_an_op_twice_in_the_control_flow_is_refused():
    from agentc.diagnostics import VerifyError
    from agentc.planner import SLA, Option, PlanOp, Problem
    from agentc.planner.instance import Instance
    from agentc.planner.problem import Loop

    ops = [PlanOp(x, "compute", [Option("P", 1, 1.0, 1e-6, 1.0)]) for x in "ab"]
    with pytest.raises(VerifyError, match="op 'a' appears twice in the control flow"):
        Instance(Problem(ops, [], [], [], SLA(None), flow=("a", Loop(("b", "a"), 2, 0.5))))


def test_all_scenarios_in_one_numpy_pass_are_the_per_scenario_floats(monkeypatch):
    """Instance._longest_all (every scenario's schedule in one numpy pass, for graphs of
    many scenarios x ops) against `longest` run scenario by scenario: the same latency,
    TTFT and TBT floats for random placements of random loop/branch programs."""

    from agentc.planner import instance as I
    from test_percentile_bruteforce import make_case

    compared = 0
    for seed in range(30):
        p, _ = make_case(seed)
        runs = []
        for vector_min in (1 << 62, 0):   # never numpy, always numpy
            monkeypatch.setattr(I, "SCENARIO_VECTOR_MIN", vector_min)
            inst = I.Instance(p)
            picks = [tuple(ks[(k * 7 + i) % len(ks)] for i, ks in enumerate(inst.allowed)) for k in range(4)]
            runs.append([inst.scenario_times(list(c)) for c in picks])
        assert runs[0] == runs[1], seed
        compared += sum(len(r) for r in runs[0])
    assert compared > 300    # scenarios compared in all
