"""Review 6 of the planner's promise (after the simulator's decode engines became the
plan's replicas and a first token's wait for a crowded engine was charged), off the
tests' grid, against the simulator (agentc/sim, no code shared with the prediction or
the MILP). A defect that is deterministic here (its plan proven optimal well inside
the time limit) is a strict xfail with its measured cause, so a fix turns it into a
failure to be made a plain test.

Measured: 130 variants (83 distinct plans; 8 found no plan): supervisor at 2-10 req/s
(latency.p99 10-15 s, TBT 12-40 ms, TTFT 150-300), rag at 3-8 req/s (TTFT 350-550, TBT
15-30), react at 10-30 req/s, voice at 20-200 req/s; 6,000 requests each (seed 0),
every miss again at 10,000 on seeds 0-1. 113 held every term. The misses: TBT on 7
supervisor variants (6 plans) whose worker decodes (query.decode, notes.decode: a100, tp 1, one
replica each) share their pool with prefill replicas (bound / predicted / simulated:
12 / 11.19 / 12.31-12.70 for the $21.37/hr plan at 3 and 3.3 req/s; 12.5 / 12.02 /
13.42-13.43 at 5 req/s; 12 / 11.2 / 12.02-12.03 at 8 req/s; 12 / 11.96 / 12.32-12.45
at 6; 12.5 / 12.35 / 12.68-12.77 at 4.7; 12 / 11.84 / 12.01 and 11.97 at 7.7), and
TTFT on rag's $10.71/hr plan at 6.4 and 6.6 req/s (490 / 449.1 / 497.4-497.8; 500 /
453.3 / 518.6-523.9). One test each below.
"""

from __future__ import annotations

import pytest
from test_promise_review4 import _compiled, _simulated, _variant

from agentc import promise


def _kept(src: str, usd_per_hr: float, load: float, bounds: dict) -> tuple[dict, dict]:
    """(prediction, simulated terms at 10,000 requests, seed 0) of the plan the planner
    keeps for `src`, after checking its price, that HiGHS proved it optimal and that its
    prediction makes the promise (every term within `bounds`)."""
    c, view = _compiled(src)
    assert view["totals"]["usd_per_hr"] == pytest.approx(usd_per_hr, rel=1e-5)
    assert view["solver"]["status"] == "optimal"
    pred = promise.prediction(c, load, view)
    assert all(pred[k] <= v for k, v in bounds.items()), pred   # the promise is made
    return pred, _simulated(view, None, 10000, 0)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="supervisor at 3 req/s, tbt < 12: TBT predicted 11.19 ms, simulated 12.44 and 12.31 "
                          "(10,000 requests, seeds 0-1): the a100 decodes' stalls behind the pool's prefills "
                          "are predicted at a chance of 0.0004 a visit, where the pool has a waiter 1.2% of the time")
def test_supervisor_at_3_rps_tbt_12_holds_in_simulation(tmp_path):
    """supervisor with `load 3 rps`, `latency.p99 < 13000ms`, `ttft < 250ms` and
    `tbt < 12ms` keeps a $21.37/hr plan (HiGHS optimal, gap 0; a100 5, b200 6, epyc 1,
    gaudi3 8, mi300x 2). Predicted TBT 11.19 ms; simulated 12.44 and 12.31 (10,000
    requests, seeds 0-1), 12.45 in `agentc plan --verify` (5 replications of 2,000: a
    miss, 98.27% within 12 ms, interval 97.6-98.9%): a broken promise, which --verify
    now reports.
    A request's TBT is the largest of its decode calls' mean gaps (sim/model.py
    _tokens). Alone, each decode's p99 (6,000 requests, seed 0): notes.decode 12.14
    (predicted 10.53), query.decode 11.74 (10.45), both on a100 (tp 1, one replica
    each: one worker decoder of 2 engines) beside the llm, query and notes prefill
    replicas (215, 39, 39 ms); the b200 and mi300x decodes are within 2%. The engines
    give their devices up at a step boundary while a prefill waits (queueing.crowding):
    in simulation a100 has a waiter 1.18% of the time, which the Poisson occupancy of
    the prefills alone with the engines' devices held (mean 0.88 on 3 devices: 1.23%)
    matches; the prediction passes crowding jobs=0.628 (the pool's busy devices, the
    engines' step share included, less the engine's own tp) and room=4 (n less its own
    tp, not the other engine's): a chance of 0.00037 a visit, nothing at the TBT
    quantile. With jobs=0.88 and room=3 the same formula gives notes.decode 11.9.
    Measured since (2,000 requests, seed 0): the worker's second engine runs 8.8% of
    the time (the first 84%), so the room is mostly 4, not 3; what makes the waiter common is that
    query.prefill and notes.prefill reach a100 together (one request's parallel
    region), so the jobs' occupancy is a compound Poisson (llm.prefill alone, 0.646;
    the two 39 ms prefills in pairs, 2 x Poisson(0.117)): P(5 or more) 0.0065 where
    independent jobs give 0.0021, 0.0081 over the engines' two states against 1.07%
    simulated. On b200 in the example (both engines running 99% and 85% of the time)
    the shortage is shared: engines rotate the missing device at step boundaries. Tried
    in the prediction: every engine's devices held with the full loss gives this plan
    12.51 (right) and the example 1.15-1.21 (over); each engine losing its share of
    the shortage gives the example 1.05-1.06 (60-85% of capacity) and this plan 11.48
    (under). A third law (session 13, not kept: the diff is in its note) counts a
    request's jobs that start together as one bundle (a compound Poisson occupancy),
    each other engine by its chance of having sequences, and the engines passing the
    missing devices round (each losing E[min(T, (N - room)+)] / T): against a pool of
    always-busy engines and bundled jobs simulated apart it is within 10% for tp-1
    engines (0.91-1.06; 0.81 for heavy pairs; 0.44 beside a tp-4 engine, the FIFO's
    head blocked), and it gives this plan 11.92 ms (the request's TBT its worst
    call's, queueing.worst_call, as now; the present law still gives 11.19, its chance
    of 0.0004 a spell too small to add up) and the example 1.06-1.09. It was not kept because voice at
    90% of its capacity then misses the agreement test (latency 1.117): there the
    engines lose about 10% of their time to stalls in simulation (a waiter on b200
    42% of the time) where the present law gives 1.3% and this one 3.4%, and the
    prediction's decode step is high to match (a mixed batch's calls weighted by
    their own call times where the simulator steps them together: the base TBT 6.1-6.3
    against steps of 5.3-5.4 at batch 224-256), so the two have to be fixed together. The
    same cause misses at 6 req/s, latency.p99 < 13000, ttft < 220 ($24.38/hr: a100 3
    devices, query.decode beside query and notes prefills, whose crowding jobs=0.127
    against 0.47 of prefills; TBT 11.96 predicted, 12.3 and 12.4 simulated) and at 4.7
    req/s, tbt < 12.5 ($22.57/hr, 12.35 against 12.7). `--verify --repair` adds one
    a100 (llm.prefill 1 -> 2 replicas, $21.80/hr), and the repaired manifest, simulated
    on its own, holds: 11.21 and 11.17 ms (10,000, seeds 0-1); its prediction is
    unchanged (11.19)."""
    src = _variant(tmp_path, "sup3t12", "supervisor", ("latency.p99 < 12000ms", "latency.p99 < 13000ms"),
                   ("ttft < 800ms", "ttft < 250ms"), ("tbt < 40ms", "tbt < 12ms"), ("load 2 rps", "load 3 rps"))
    pred, held = _kept(src, 21.3714, 3.0, {"e2e_ms": 13000.0, "ttft_ms": 250.0, "tbt_ms": 12.0})
    assert held["latency"]["holds"] and held["ttft"]["holds"], (pred, held)
    assert held["tbt"]["holds"], (pred, held)


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="rag at 6.6 req/s, ttft < 500, tbt < 16: TTFT predicted 453.3 ms, simulated 518.6 and 523.9 "
                          "(10,000 requests, seeds 0-1); `plan --verify` (2,000) sees 480.9 and passes it")
def test_rag_at_6_6_rps_ttft_500_holds_in_simulation(tmp_path):
    """rag with `load 6.6 rps`, `ttft < 500ms` and `tbt < 16ms` keeps a $10.71/hr plan
    (HiGHS optimal, gap 0; b200 4: ans.prefill tp 2, 2 replicas; gaudi3 4: ans.decode
    tp 4; epyc 1 holds the host run e.encode, hits (retrieve.search, 47.6 ms), safe,
    ans.tokenize). TTFT predicted 453.3 ms, simulated 518.6 and 523.9 (10,000 requests,
    seeds 0-1): a broken promise (the prediction 13% under). The first token waits on
    two queues, and both are under-predicted at p99: with epyc at 4 devices the same
    simulation gives 413 ms, with b200 at 8 it gives 392. The prediction takes the
    epyc run as one job waiting once (predict._runs, C 0.376, theta 45 ms), where the
    simulator's members each rejoin the FIFO's back (its docstring measures that
    approximation's mean 22% under), and ans.prefill's wait at C 0.21, theta 65 ms.
    One run of 2,000 requests gives 480.9 ms and passed the plan; `agentc plan --verify`
    now judges replications and reports it not verified (40 of 2,000: 98.78-99.05%
    within 500 ms, astride 99%; test_plan_verify.py), and `--verify --repair` adds an
    epyc (TTFT 422.7 ms, 99.94-100%).
    With `ttft < 540ms` it is kept too and holds (518.6 < 540) with no margin."""
    src = _variant(tmp_path, "rag66", "rag_agent", ("tbt < 30ms", "tbt < 16ms"),
                   ("load 5 rps", "load 6.6 rps"))
    pred, held = _kept(src, 10.7085, 6.6, {"e2e_ms": 4000.0, "ttft_ms": 500.0, "tbt_ms": 16.0})
    assert held["latency"]["holds"] and held["tbt"]["holds"], (pred, held)
    assert held["ttft"]["holds"], (pred, held)
