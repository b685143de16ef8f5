"""Simulation agreement (issue 17): every example with a plan on the built-in cluster
(table3 has none there: test below), at three loads (verify.agreement_loads: a tenth of
its load clause, the load clause, 90% of the capacity the plan buys), in the simulator.

1. Every SLA term holds in simulation at its statistic, with `--repair` where the plan
   misses (verify.repair; on this commit every plan holds at its own load and at a tenth
   of it; rag, react and supervisor at 90% of capacity are re-planned for that load: a
   load past what a plan was sized for is re-planned).
2. The planner's predicted value of each term is within 10% of the simulated one, for
   the plan that holds. A prediction is for a load: each row compares the simulation at
   load L with the same placement predicted by the planner at L as the simulator runs
   it (planner/predict.py: each pool one queue over its devices with the simulated
   service cv, host waits on the path, decode batches filled by the decodes on their
   own pool, a request's run of host calls one job of its pool's queue, the tail of a
   path's waits, a waiting prompt run in the batch of those
   reaching its engines meanwhile, a decode engine stalled while its pool's jobs
   overflow the room its engines leave them, queueing.crowding; verify.agreement's `predict`, cli/plan.py
   predictor_at; a repaired row, the plan the repair settled on, from its manifest).
   36 of 36 agree (35 while a waiting prompt's batch was its mean given its wait and
   the pool's queue an Erlang C of prompts one by one: voice's TTFT at 90% of its fleet
   1.187, below; 34 while voice at 90% of its fleet was simulated at 2000 requests, its
   start-up, below; 33 while the EPYC's queue took each of rag's five host calls in a
   row as its own Poisson stream, TTFT 1.156, before a run of a request's host calls
   became one job of the pool's queue; 34 while a path's waits were a union of tails,
   which undercounted rag's EPYC waits and so hid that overcount; 32 before prefill batches
   were modelled, 24 when the prediction was the sizing model's: per-op M/M/c
   replicas, no host wait, decode batches counting every same-model decode): 36 plain
   tests. The rows nearest the line, or re-planned at 90% of capacity, say why in
   NEAR (they were non-strict xfails, which cannot fail, until the simulation and
   re-plans were made deterministic: seed 0, and a re-plan's solve not stopped by the
   clock); none is a strict xfail (DISAGREE, with its measured cause, when one is).
   benchmarks/bench_agreement.py prints the whole table; a fix that brings a DISAGREE
   row within 10% turns its xfail into a failure, to be removed here.

Requests: REQUESTS per example, seed 0. The voice agent at 90% of its fleet (567 req/s)
takes 20,000: its decodes last 0.7 s and a request with three search rounds 3 s, so
2000 requests (3.5 s) measured the start-up, with the decode engines and the prefill
queue still filling: latency, TTFT and TBT at p99 of 2846, 47.0 and 5.92 ms (seed 0)
against 3429-3537, 60.4-69.5 and 6.38-6.65 ms at 20,000 (seeds 0-3) and 3504-3583,
66.1-70.2 and 6.55-6.75 ms at 100,000 (seeds 0-1), whose 10,000-request slices show no
trend (latency 3410-3566 ms, TTFT 58-78 ms). The prediction is of the steady state: against 2000 requests it was
1.320 (latency) and 1.635 (TTFT), against 20,000 1.096 and 1.187; with a prompt's batch
and wait as queueing.BatchLaw has them (the prompt waits for one device to free, a
decode engine's at its next step, and runs with a discrete count of the prompts of its
batch's window; the pool's queue counts batches, not prompts), 1.087 and 0.968
(seeds 0-3: latency 1.054-1.087, TTFT 0.902-1.038). Its prompts then: the prediction's
chance of waiting 0.61 (simulated 0.59), the B200s' load 6.93 devices (6.82), the p99
of a prompt's wait and batch over its run alone 36.6 ms (45.6; TTFT 62.7 against 64.7).

The sampling error of the simulated terms
(std/mean over 5 seeds of the given plan, bench_agreement.py --seeds 5) is below 3.5%
at the light and planned loads (mostly below 1%; supervisor's latency.p99 3.4% at its
load), except rag's TTFT p99 at 5 req/s, which sits in its prefill queue's tail (13% at
2000 requests, 2.5% at 20,000), hence 10,000 for rag. At 90% of capacity a queue near
saturation converges slowly (2-20% spread), which moves no verdict here: the given
plans miss by 2-100x and are re-planned (voice, whose plan holds there, is predicted on its pools' whole counts).
"""

from __future__ import annotations

import functools
import json
import os

import pytest

from agentc import pipeline
from agentc.cli._common import make_options
from agentc.cli.plan import planner_at, predictor_at
from agentc.diagnostics import InfeasiblePlanError
from agentc.passes.place import pool_price
from agentc.sim import verify
from agentc.targets import manifest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = ("voice_agent", "rag_agent", "react_tools", "supervisor")
LOADS = ("light", "planned", "90% capacity")
TERMS = ("latency", "ttft", "tbt")
REQUESTS = {"rag_agent": 10000, "voice_agent": 20000}
DEFAULT_REQUESTS = 2000

# Why a prediction is off by more than 10% (none on this commit; planned / simulated in brackets;
# planned: the placement predicted at the load simulated, planner/predict.py, or the
# repaired plan's, predicted from its manifest).
DISAGREE: dict[tuple[str, str, str], str] = {}
# Plain tests nearest the 10% line, or re-planned at 90% of capacity: the ratio on this
# commit and what puts it there (a change that moves one past 10% fails its test)
NEAR = {
    ("voice_agent", "90% capacity", "latency"): "1.087 at 20,000 requests (1.054-1.087 over seeds 0-3): the p99 "
                                                "path prices its four decodes at a full batch of 256 (772-792 ms a "
                                                "call); the simulator's sequences see 218 on average over their steps "
                                                "(engines filled fullest first: 255, 246 and 58), 697 ms a call; "
                                                "1.098 (seed 0) with crowded decode engines counted "
                                                "(queueing.crowding: the B200s' prefill batches)",
    ("rag_agent", "90% capacity", "latency"): "1.03 at 10,000 requests, re-planned for 7.748 req/s (0.99 before "
                                              "crowded decode engines were counted, queueing.crowding); the "
                                              "simulated value spreads 15% over seeds this near saturation",
    ("rag_agent", "90% capacity", "ttft"): "1.01 at 10,000 requests, re-planned for 7.748 req/s (0.96 with a "
                                           "batch its mean given the wait, 0.75 before prefill batches were "
                                           "modelled): its TTFT p99 is the 1% of prompts batched with one more "
                                           "(+200 ms), and spreads 2.5-13% over seeds",
    ("react_tools", "90% capacity", "latency"): "1.03, re-planned for 32.18 req/s",
    ("supervisor", "90% capacity", "latency"): "1.05, re-planned for 5.073 req/s at 22.45 $/hr (0.98 for the "
                                               "21.47 $/hr re-plan before crowded decode engines were counted, "
                                               "queueing.crowding; 9.004 req/s before its plan took every "
                                               "power-of-two decode batch: 17.96 $/hr, capacity 5.64 req/s)",
    ("supervisor", "90% capacity", "tbt"): "1.01, re-planned for 5.073 req/s (0.93 for the 21.47 $/hr re-plan "
                                           "before crowded decode engines were counted; 0.91 at 9.004 with the "
                                           "earlier plan: plan.decode's batch on mi300x)",
}


@functools.lru_cache(maxsize=None)
def rows(name: str) -> dict[tuple[str, str], dict]:
    """(load, term kind) -> agreement row for one example (verify.agreement)."""
    # a re-plan's solve is not stopped by the clock: on a loaded machine the default 10 s
    # limit returned supervisor another plan at 9.004 req/s (TTFT 233 against 309 ms)
    c = pipeline.compile_file(os.path.join(ROOT, "examples", f"{name}.agent"),
                              make_options(emit="placed", time_limit_s=300.0), or_later=True)
    pipeline.placement(c)
    view = json.loads(manifest.dumps(manifest.build(c)))
    cluster = c.pass_ctx.cluster
    prices = {p.name: pool_price(p.device, cluster) for p in cluster.pools}
    out = verify.agreement(view, prices, planner_at(c), REQUESTS.get(name, DEFAULT_REQUESTS), 0, name,
                           attribution=False, predict=predictor_at(c))
    return {(r["load"], r["term"].split(".")[0]): r for r in out}


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_sla_term_holds_at_every_load(name):
    got = rows(name)
    assert sorted(got) == sorted((load, term) for load in LOADS for term in TERMS)
    for key, r in got.items():
        assert r["holds"], (key, r)
        # every term here is judged at a percentile: that share of requests meets the bound
        assert r["judged"].startswith("p") and r["attained"] >= float(r["judged"][1:]) / 100.0 - 1e-12, (key, r)


def _cases():
    for name in EXAMPLES:
        for load in LOADS:
            for term in TERMS:
                key = (name, load, term)
                marks = [pytest.mark.xfail(strict=True, reason=DISAGREE[key])] if key in DISAGREE else []
                yield pytest.param(name, load, term, marks=marks, id=f"{name}-{load}-{term}")


@pytest.mark.parametrize("name,load,term", list(_cases()))
def test_planned_within_10_percent_of_simulated(name, load, term):
    r = rows(name)[(load, term)]
    assert abs(r["planned_ms"] - r["simulated_ms"]) <= 0.10 * r["simulated_ms"], (r, NEAR.get((name, load, term)))


def test_the_capacity_load_is_where_the_busiest_pool_is_always_busy():
    """capacity_rps against a hand count: rag's MI300x pool holds 1 device and each
    request asks 116.164 ms of it (its decode, tp 1, at batch 32): 1000 / 116.164 =
    8.6085 req/s, below its B200 (4 devices, prefill 205.282 ms: 19.49) and EPYC (1
    device, 56.977 ms of host work and retrieve: 17.55)."""
    c = pipeline.compile_file(os.path.join(ROOT, "examples", "rag_agent.agent"), make_options(emit="placed"),
                              or_later=True)
    pipeline.placement(c)
    view = json.loads(manifest.dumps(manifest.build(c)))
    assert view["totals"]["devices"] == {"b200": 4, "epyc": 1, "mi300x": 1}
    busy = 116.164
    assert verify.capacity_rps(view) == pytest.approx(1000 / busy, rel=1e-5)
    assert verify.agreement_loads(view) == pytest.approx(
        {"light": 0.5, "planned": 5.0, "90% capacity": 0.9 * 1000 / busy}, rel=1e-5)


def test_table3_has_no_plan_on_the_built_in_cluster():
    """Why the agreement check leaves Table 3 out: on the built-in cluster no placement
    meets its 120 ms (it is planned on examples/clusters/table3.toml)."""
    with pytest.raises(InfeasiblePlanError, match="e2e SLA"):
        pipeline.compile_file(os.path.join(ROOT, "examples", "table3.agent"), make_options(emit="placed"))
