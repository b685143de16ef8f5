"""Simulation agreement (issue 17): every example with a plan on the built-in cluster
(table3 has none there: test below), at three loads (verify.agreement_loads: a tenth of
its load clause, the load clause, 90% of the capacity the plan buys), in the simulator.

1. Every SLA term holds in simulation at its statistic, with `--repair` where the plan
   misses (verify.repair; on this commit every plan holds at its own load and at a tenth
   of it; rag, react and supervisor at 90% of capacity are re-planned for that load: a
   load past what a plan was sized for is re-planned).
2. The planner's predicted value of each term is within 10% of the simulated one, for
   the plan that holds. A prediction is for a load: each row compares the simulation at
   load L with the same placement evaluated by the planner at L (verify.agreement's
   `predict`, cli/plan.py predictor_at; a repaired row, the plan the repair settled on).
   24 of 36 are (17 when every row took the prediction at the plan's load clause, its
   waits and decode batches sized for ten times the light load; 7 of 36 before decode
   was priced at the batch its traffic fills): 22 plain tests, and rag's latency and
   TTFT at 90% of capacity, which stay xfails that may pass (EDGE) since they spread
   over seeds near saturation, as do 2 more near the line. The other 10 are strict
   xfails (DISAGREE), each with the measured cause (benchmarks/bench_agreement.py
   prints the whole table, with the simulation at the planner's batch times); a fix
   that brings one within 10% turns its xfail into a failure, to be removed here.

Requests: REQUESTS per example, seed 0. The sampling error of the simulated terms
(std/mean over 5 seeds of the given plan, bench_agreement.py --seeds 5) is below 3.5%
at the light and planned loads (mostly below 1%; supervisor's latency.p99 3.4% at its
load), except rag's TTFT p99 at 5 req/s, which sits in its prefill queue's tail (13% at
2000 requests, 2.5% at 20,000), hence 10,000 for rag. At 90% of capacity a queue near
saturation converges slowly (2-20% spread), which moves no verdict here: the given
plans miss by 2-100x and are re-planned, and voice's ratios there stay 50% or more off.
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
REQUESTS = {"rag_agent": 10000}
DEFAULT_REQUESTS = 2000

# Why a prediction is off by more than 10% (planned / simulated in brackets, this commit;
# planned: the placement evaluated at the load simulated, or the repaired plan's).
LIGHT_ONLY = ("no load clause: the plan's latency terms are its own requests' at the light rate (1 req/s); at "
              "567 req/s the fleet's engines fill batches and its pools queue, which a plan without a load "
              "clause does not claim to hold")
WAITS = ("the planner sums per-op p99 M/M/c waits (cs2 = 1) sized for the plan's load; the simulator's service "
         "is deterministic (about half the wait) and a tail is not a sum of tails")
SHARED = ("plan.decode is priced at its full batch 16: the rule counts answer.decode's ~27 sequences of the "
          "same model as if they shared its H100 engines (sound wherever they land), which here they do not")
LIGHT_SHARED = ("plan.decode's TBT at 1 req/s is priced at batch 7 (p99 of the batch its traffic fills), counting "
                "answer.decode's ~1.6 sequences in flight as if they shared its H100 engines (they run on mi300x): "
                "8.21 ms planned, 7.29 simulated")
RAG_TTFT = ("the shared EPYC's queue, whose wait the planner does not charge (host work capped at 70% busy): 51.7 ms "
            "p99 a call; on four EPYCs the plan simulates 375 ms, not 469 (386 planned; prefill batching adds 3 ms)")
DISAGREE = {
    ("voice_agent", "90% capacity", "latency"): LIGHT_ONLY + " (0.51)",
    ("voice_agent", "90% capacity", "ttft"): LIGHT_ONLY + " (0.30)",
    ("voice_agent", "90% capacity", "tbt"): LIGHT_ONLY + " (0.31)",
    ("rag_agent", "planned", "ttft"): RAG_TTFT + " (0.82)",
    ("react_tools", "light", "tbt"): LIGHT_SHARED + " (1.13)",
    ("react_tools", "planned", "latency"): SHARED + "; " + WAITS + " (1.14)",
    ("react_tools", "planned", "ttft"): WAITS + ": plan.prefill's p99 wait (1.91)",
    ("react_tools", "90% capacity", "ttft"): WAITS + " (2.20, re-planned)",
    ("supervisor", "planned", "ttft"): WAITS + ": plan.prefill's p99 wait (1.61)",
    ("supervisor", "90% capacity", "ttft"): WAITS + " (2.35, re-planned)",
}
# On the 10% line, or spread over seeds near saturation: the ratio moves across it with the sample (not strict)
EDGE = {
    ("rag_agent", "90% capacity", "latency"): "0.98 at 10,000 requests, re-planned for 7.748 req/s; the simulated "
                                              "value spreads 15% over seeds this near saturation",
    ("rag_agent", "90% capacity", "ttft"): "0.985 at 10,000 requests, re-planned; spreads 17% over seeds",
    ("react_tools", "90% capacity", "latency"): SHARED + "; " + WAITS + " (1.16, re-planned for 32.18 req/s)",
    ("supervisor", "90% capacity", "latency"): WAITS + " (1.11, re-planned for 9.004 req/s)",
}


@functools.lru_cache(maxsize=None)
def rows(name: str) -> dict[tuple[str, str], dict]:
    """(load, term kind) -> agreement row for one example (verify.agreement)."""
    c = pipeline.compile_file(os.path.join(ROOT, "examples", f"{name}.agent"), make_options(emit="placed"),
                              or_later=True)
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
                marks = ([pytest.mark.xfail(strict=True, reason=DISAGREE[key])] if key in DISAGREE else
                         [pytest.mark.xfail(strict=False, reason=EDGE[key])] if key in EDGE else [])
                yield pytest.param(name, load, term, marks=marks, id=f"{name}-{load}-{term}")


@pytest.mark.parametrize("name,load,term", list(_cases()))
def test_planned_within_10_percent_of_simulated(name, load, term):
    r = rows(name)[(load, term)]
    assert abs(r["planned_ms"] - r["simulated_ms"]) <= 0.10 * r["simulated_ms"], r


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
