"""Review 6 of the planner's promise (after the simulator's decode engines became the
plan's replicas and a first token's wait for a crowded engine was charged), off the
tests' grid, against the simulator (agentc/sim, no code shared with the prediction or
the MILP). A defect that is deterministic here (its plan proven optimal well inside
the time limit) is a strict xfail with its measured cause, so a fix turns it into a
failure to be made a plain test.

Measured: supervisor at 2-10 req/s (latency.p99 10-15 s, TBT 12-40 ms, TTFT 150-300),
rag at 3-8 req/s (TTFT 350-550), react at 10-30 req/s, voice at 20-200 req/s; 6,000
requests each, every miss again at 10,000 on seeds 0-1. The misses were all TBT on
supervisor plans whose worker decodes (query.decode, notes.decode: tp 1, one
replica each) share a small a100 pool with prefill replicas; see the test below.
"""

from __future__ import annotations

import pytest
from test_promise_review4 import _compiled, _simulated, _variant

from agentc import promise


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="supervisor at 3 req/s, tbt < 12: TBT predicted 11.19 ms, simulated 12.44 and 12.31 "
                          "(10,000 requests, seeds 0-1): the a100 decodes' stalls behind the pool's prefills "
                          "are predicted at a chance of 0.0004 a visit, where the pool has a waiter 1.2% of the time")
def test_supervisor_at_3_rps_tbt_12_holds_in_simulation(tmp_path):
    """supervisor with `load 3 rps`, `latency.p99 < 13000ms`, `ttft < 250ms` and
    `tbt < 12ms` keeps a $21.37/hr plan (HiGHS optimal, gap 0; a100 5, b200 6, epyc 1,
    gaudi3 8, mi300x 2). Predicted TBT 11.19 ms; simulated 12.44 and 12.31 (10,000
    requests, seeds 0-1), 12.20 in `agentc plan --verify` (2,000): a broken promise.
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
    quantile. With jobs=0.88 and room=3 the same formula gives notes.decode 11.9. The
    same cause misses at 6 req/s, latency.p99 < 13000, ttft < 220 ($24.38/hr: a100 3
    devices, query.decode beside query and notes prefills, whose crowding jobs=0.127
    against 0.47 of prefills; TBT 11.96 predicted, 12.3 and 12.4 simulated) and at 4.7
    req/s, tbt < 12.5 ($22.57/hr, 12.35 against 12.7). `--verify --repair` adds one
    a100 (llm.prefill 1 -> 2 replicas, $21.80/hr), and the repaired manifest, simulated
    on its own, holds: 11.21 and 11.17 ms (10,000, seeds 0-1); its prediction is
    unchanged (11.19)."""
    src = _variant(tmp_path, "sup3t12", "supervisor", ("latency.p99 < 12000ms", "latency.p99 < 13000ms"),
                   ("ttft < 800ms", "ttft < 250ms"), ("tbt < 40ms", "tbt < 12ms"), ("load 2 rps", "load 3 rps"))
    c, view = _compiled(src)
    assert view["totals"]["usd_per_hr"] == pytest.approx(21.3714, rel=1e-5)
    assert view["solver"]["status"] == "optimal"
    pred = promise.prediction(c, 3.0, view)
    assert pred["tbt_ms"] <= 12.0 and pred["e2e_ms"] <= 13000.0 and pred["ttft_ms"] <= 250.0   # the promise is made
    held = _simulated(view, None, 10000, 0)
    assert held["latency"]["holds"] and held["ttft"]["holds"], (pred, held)
    assert held["tbt"]["holds"], (pred, held)
