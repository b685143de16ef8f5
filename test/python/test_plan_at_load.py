"""A plan's prediction at another load (issue 17's agreement check asks the planner
about the load it simulates): the same placement evaluated by the planner at load L
(planner/replay.py at_load, cli/plan.py predictor_at, Instance.given)."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os

import pytest

from agentc import pipeline
from agentc.cli._common import make_options
from agentc.cli.plan import predictor_at
from agentc.planner.instance import Instance
from agentc.targets import manifest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@functools.lru_cache(maxsize=None)
def placed(name: str):
    c = pipeline.compile_file(os.path.join(ROOT, "examples", f"{name}.agent"), make_options(emit="placed"),
                              or_later=True)
    pipeline.placement(c)
    return c, json.loads(manifest.dumps(manifest.build(c)))


def _mmc_p99_wait_ms(c: int, rate_per_s: float, service_ms: float, q: float = 0.99) -> float:
    """The q-quantile of the M/M/c wait, written out here: P(wait > t) =
    C(c, a) exp(-(c - a) t / S) with the Erlang C probability C from its sum."""
    a = rate_per_s * service_ms / 1000.0
    head = sum(a ** k / math.factorial(k) for k in range(c))
    tail = a ** c / math.factorial(c) * c / (c - a)
    pw = tail / (head + tail)
    return 0.0 if pw <= 1.0 - q else service_ms / (c - a) * math.log(pw / (1.0 - q))


@pytest.mark.parametrize("name", ["rag_agent", "react_tools", "supervisor"])
def test_at_its_own_load_the_prediction_is_not_the_sizing_bound(name):
    """The plan's own figures (the manifest's totals) are the sizing model's: the
    placement evaluated again gives the same floats (replay). The prediction at that
    load (predictor_at: planner/predict.py) models the plan as the simulator runs it,
    and differs: pooled waits, host waits, decode batches per pool."""
    from agentc.planner import replay

    c, view = placed(name)
    plan, problem = c.placement.plan, c.placement.problem
    options = {op.id: op.options for op in problem.ops}
    chosen = {i: (options[i].index(p.option), p.pool, p.replicas, p.split_key) for i, p in plan.ops.items()}
    again = replay(problem, chosen, plan.status, plan.gap, baselines=False, explain=False, exact=True)
    assert (again.e2e_ms, again.ttft_ms, again.tbt_ms) == (plan.e2e_ms, plan.ttft_ms, plan.tbt_ms)
    assert {k: view["totals"][k] for k in ("e2e_ms", "ttft_ms", "tbt_ms")} == {
        k: float(f"{v:.6g}") for k, v in (("e2e_ms", plan.e2e_ms), ("ttft_ms", plan.ttft_ms), ("tbt_ms", plan.tbt_ms))}
    got = predictor_at(c)(view["sla"]["load_rps"])
    assert got != {"e2e_ms": plan.e2e_ms, "ttft_ms": plan.ttft_ms, "tbt_ms": plan.tbt_ms}
    assert all(0 < v < math.inf for v in got.values())


def test_a_plan_without_a_load_clause_is_predicted_on_its_pools_whole_counts():
    """voice_agent has no load clause: the simulator runs it on every device of its
    pools, and so does its prediction. At its light rate (1 req/s) the pools are free
    and the prediction is the plan's own figures to 2% (its two answers' decodes share
    b200's engines, whose mixed steps are the mean of theirs); at 100 req/s it waits."""
    c, view = placed("voice_agent")
    light = predictor_at(c)(1.0)
    for k in ("e2e_ms", "ttft_ms", "tbt_ms"):
        assert light[k] == pytest.approx(view["totals"][k], rel=0.02)
    assert predictor_at(c)(100.0)["ttft_ms"] > light["ttft_ms"]


def test_a_lighter_load_waits_as_mmc_with_the_planned_replicas():
    """react_tools' plan.prefill: 2 replicas (tp 2, batch 1, 80.2021 ms) on a100, a p99
    wait of 209.787 ms at its 10 req/s. Evaluated at 5 and 1 req/s it keeps its 2
    replicas (the planner alone offers 1 and 2 at 1 req/s and stops at the count whose
    wait is 0) and waits what M/M/2 says there (service_cv 1)."""
    c, view = placed("react_tools")
    op = next(o for o in view["ops"] if o["id"] == "plan.prefill")
    assert (op["pool"], op["tp"], op["batch"], op["replicas"]) == ("a100", 2, 1, 2)
    problem, plan = c.placement.problem, c.placement.plan
    assert problem.service_cv == 1.0
    rank = next(o for o in problem.ops if o.id == "plan.prefill").options.index(plan.ops["plan.prefill"].option)
    busy = plan.ops["plan.prefill"].option.busy_ms   # the manifest's 80.2021, unrounded
    assert busy == pytest.approx(float(op["busy_ms"]), rel=1e-6)
    assert op["queue_wait_ms"] == pytest.approx(_mmc_p99_wait_ms(2, 10.0, busy), rel=1e-5)
    for load in (5.0, 1.0):
        inst = Instance(dataclasses.replace(problem, load_rps=load), merge_identical=False,
                        given={"plan.prefill": (rank, 2)})
        i = inst.index["plan.prefill"]
        mine = [inst.choices[k] for k in inst.op_choices[i]
                if inst.choices[k].rank == rank and inst.sites[inst.choices[k].site].name == "a100"]
        assert [(ch.replicas, ch.devices) for ch in mine] == [(2, 4)]
        assert mine[0].wait_ms == pytest.approx(_mmc_p99_wait_ms(2, load, busy), rel=1e-9, abs=1e-12)
    assert _mmc_p99_wait_ms(2, 5.0, busy) > 0 and _mmc_p99_wait_ms(2, 1.0, busy) == 0.0


def test_a_light_load_times_the_planned_decode_at_the_batch_it_fills():
    """rag's ans.decode is planned at batch 32 (1 replica) for 5 req/s; at 0.5 req/s
    the planner alone no longer offers batch 32 (instance.py _sizes: a batch the load
    cannot fill), the evaluation at that load does, at the batch 0.5 req/s fills, so
    TBT falls below the plan's (27.86 ms at 5 req/s) and the path with it."""
    c, view = placed("rag_agent")
    problem, plan = c.placement.problem, c.placement.plan
    options = next(o for o in problem.ops if o.id == "ans.decode").options
    rank = options.index(plan.ops["ans.decode"].option)
    assert options[rank].batch == 32
    light = dataclasses.replace(problem, load_rps=0.5)
    i = Instance(light, merge_identical=False).index["ans.decode"]
    plain = Instance(light, merge_identical=False)
    assert not [k for k in plain.op_choices[i] if plain.choices[k].rank == rank]
    given = Instance(light, merge_identical=False, given={"ans.decode": (rank, 1)})
    [ch] = [given.choices[k] for k in given.op_choices[i] if given.choices[k].rank == rank]
    assert (ch.replicas, ch.wait_ms) == (1, 0.0) and ch.run_batch < 32
    got = predictor_at(c)(0.5)
    assert got["tbt_ms"] < view["totals"]["tbt_ms"] and got["e2e_ms"] < view["totals"]["e2e_ms"]


def _mmc_p99_ms(c: int, a: float, service_ms: float, q: float = 0.99) -> float:
    """The q-quantile of the M/M/c wait, Erlang C by its sum (independent of queueing.py)."""
    head = sum(a ** k / math.factorial(k) for k in range(c))
    tail = a ** c / math.factorial(c) * c / (c - a)
    pw = tail / (head + tail)
    return 0.0 if pw <= 1 - q else service_ms / (c - a) * math.log(pw / (1 - q))


def test_a_grown_replay_is_evaluated_at_exactly_its_replicas():
    """--repair's growth past the counts the planner offers (only the least, without an
    e2e or TTFT bound): replay(exact=True) prices each op at its grown replicas, as
    at_load does; the plain replay stays at the most it offers. Hand check: op a (100 ms
    at 15 req/s, a = 1.5 Erlangs) at 2 + 2 = 4 replicas waits the M/M/4 p99."""
    from agentc.planner import SLA, Option, PlanOp, Pool, Problem, replay, solve
    from agentc.planner.replay import at_load

    ops = [PlanOp("a", "compute", [Option("g", 1, 100.0, 1e-4, 100.0)]),
           PlanOp("d", "llm.decode", [Option("g", 1, 50.0, 1e-4, 50.0, tbt_ms=5.0)])]
    p = Problem(ops, [], [Pool("g", "g", 16, 2.0)], [], SLA(None, tbt_ms=20.0), load_rps=15.0)
    plan = solve(p, baselines=False, explain=False)
    assert plan.ops["a"].replicas == 2
    chosen = {i: (0, o.pool, o.replicas + 2, "") for i, o in plan.ops.items()}
    grown = replay(p, chosen, plan.status, plan.gap, baselines=False, exact=True)
    assert {i: o.replicas for i, o in grown.ops.items()} == {"a": 4, "d": plan.ops["d"].replicas + 2}
    assert grown.ops["a"].wait_ms == pytest.approx(_mmc_p99_ms(4, 1.5, 100.0), rel=1e-9, abs=1e-9)
    # as the simulator runs it (one queue over the pool's 4 + 2 devices, deterministic
    # service) the grown plan waits less than its dedicated M/M/4 replicas
    assert at_load(p, chosen).e2e_ms < grown.e2e_ms
    assert grown.e2e_ms < replay(p, chosen, plan.status, plan.gap, baselines=False).e2e_ms


def test_a_split_op_is_evaluated_at_its_own_load():
    """A split op (no single pool of 4 carries 60 req/s of 100 ms) keeps its recorded
    split: at_load at the plan's own load is the plan's evaluation (it once pinned the
    largest part's option, which then fit alone, and no split was offered)."""
    from agentc.planner import SLA, Option, PlanOp, Pool, Problem, solve
    from agentc.planner.replay import at_load

    ops = [PlanOp("x", "compute", [Option("g", 1, 100.0, 1e-4, 100.0), Option("h", 1, 120.0, 1e-4, 120.0)])]
    p = Problem(ops, [], [Pool("g", "g", 4, 2.0), Pool("h", "h", 4, 2.0)], [], SLA(2000.0), load_rps=60.0)
    plan = solve(p, baselines=False, explain=False)
    o = plan.ops["x"]
    assert o.split_key
    chosen = {"x": (p.ops[0].options.index(o.option), o.pool, o.replicas, o.split_key)}
    assert at_load(p, chosen).e2e_ms == pytest.approx(plan.e2e_ms, rel=1e-12)
