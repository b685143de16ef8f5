"""Review 5 of the planner's promise (after the crowded-engine charge and the loaded
local search were merged), off the tests' grid, against the simulator (agentc/sim, no
code shared with the prediction or the MILP). Each defect that is deterministic here
(its plan proven optimal well inside the time limit) is a strict xfail with its
measured cause, so a fix turns it into a failure to be made a plain test.

Measured: 109 variants (about 90 distinct plans): supervisor at 3 and 5-9 req/s with
latency.p99 10-14 s, TBT 12-40 ms and TTFT 200-260 ms; rag at 4-7 req/s with TTFT
380-550 ms and an every-path latency of 2.3-3.5 s; react at 12-30 req/s with and
without its branch; voice at 50 and 200 req/s; each simulated at 6,000-8,000 requests,
every miss again at 10,000 on seeds 0-1. 101 held every term. The misses (bound /
predicted / simulated), and what they are now (10,000 requests, seeds 0-1):

- supervisor 3 req/s, latency.p99 < 14000 ($16.39/hr): latency 14000 / 12449 /
  14941-15178. Now 12531 predicted, 12051-12057 simulated (below);
- supervisor 9 req/s, latency.p99 < 14000 and tbt < 15 (or < 14; 4 plans excluded,
  $24.90/hr): latency 14000 / 12198 / 19367-19393, TBT 15 / 13.09 / 20.2-21.1. Now
  latency 12212 / 11503-11651, TBT 13.1 / 12.92-12.96 (TTFT 696 against 566-589);
- supervisor 8 req/s, latency.p99 < 14000 and tbt < 15 ($22.68/hr): TBT 15 / 14.3 /
  16.3-16.9. Now 14.3 / 14.98-15.02: within the prediction's 10%, at the bound;
- supervisor 6 req/s, latency.p99 < 11000 and tbt < 12 or 13 ($26.66/hr): TBT 10.87
  predicted, 13.37-13.85 simulated. Now a $27.33/hr plan (optimal), TBT 10.9 /
  11.57-11.68, latency 10454 / 9858-9870;
- supervisor 6 req/s, latency.p99 < 13000 and ttft < 200 ($22.85/hr): TTFT 178
  predicted, 235-247 simulated. Now a first token's wait for a crowded engine is
  charged (below);
- rag with `load 6.2 rps` ($9.15/hr): TTFT 500 / 466 / 499-508 (7% under, within
  10%, but no margin).

The supervisor misses shared one cause: the simulator ran one decode engine per tp
devices of each pool for each model (report.decode tp 4 beside tp-1 engines;
plan.decode and report.decode on a pool of decodes only), more engines than the plan
has replicas, contending for the pool's devices in its strict FIFO (head-of-line
blocking of the wide ones). A deployment starts the plan's replicas, one server
each (agentc deploy), and the simulator now runs those as its engines
(sim/engines.py decode_engines; the prediction counts the same, predict._engines).
Monotonicity held within each of 5 sweeps (supervisor latency at 3 and 6 req/s, rag
TTFT at 6 req/s, react TTFT at 20 req/s, supervisor TBT at 3 req/s), except that a
solve stopped by the clock can return a dearer plan on a rerun (supervisor at 6 req/s,
latency.p99 < 12000 ms: $23.65, then $26.36).
"""

from __future__ import annotations

import pytest
from test_promise_review4 import _compiled, _simulated, _variant

from agentc import promise


@pytest.mark.slow
def test_supervisor_at_3_rps_kept_plan_holds_its_latency_in_simulation(tmp_path):
    """supervisor with `load 3 rps` and `latency.p99 < 14000ms`: the MILP's plan
    ($16.3859/hr, HiGHS optimal, gap 0; a100 6, b200 4, epyc 1, gaudi3 8 devices;
    figure 13720 ms; b200 holds one replica each of plan.decode and notes.1.decode at
    tp 1 and report.decode at tp 2) is kept. Found: simulated at 14941 and 15178 ms
    (10,000 requests, seeds 0-1), TBT 18.4 against 13.1 predicted, while the simulator
    ran one decode engine per tp devices of each pool (4 + 4 + 2 engines on b200's 4
    devices, contending in its strict FIFO), where a deployment starts the plan's
    replicas (one server each). It now runs those (sim/engines.py decode_engines):
    12057 and 12051 ms against 12531 predicted (1.04), TBT 12.86 against 13.10."""
    src = _variant(tmp_path, "sup3", "supervisor", ("latency.p99 < 12000ms", "latency.p99 < 14000ms"),
                   ("load 2 rps", "load 3 rps"))
    c, view = _compiled(src)
    assert view["totals"]["usd_per_hr"] == pytest.approx(16.3859, rel=1e-5)
    pred = promise.prediction(c, 3.0, view)
    assert pred["e2e_ms"] <= 14000.0   # the walk's own check: the promise is made
    held = _simulated(view, None, 10000, 0)
    assert held["latency"]["holds"], (pred, held)
    for term, key in (("latency", "e2e_ms"), ("tbt", "tbt_ms")):
        assert abs(pred[key] - held[term]["observed_ms"]) <= 0.10 * held[term]["observed_ms"], (term, pred, held)


@pytest.mark.slow
def test_supervisor_at_6_rps_first_token_waits_for_a_crowded_engine(tmp_path):
    """supervisor with `load 6 rps`, `latency.p99 < 13000ms` and `ttft < 200ms`. Found
    (after the engines became the plan's replicas): a $23.19/hr plan predicted at
    178.6 ms TTFT and simulated at 243 and 248 (10,000 requests, seeds 0-1). Its
    plan.decode engine (b200, tp 1) shares the pool with report.prefill's 205 ms
    batches, gives its device up whenever one waits, and a sequence joining it then
    waits for the device before its first token; the prediction charged that stall on
    the call and its TBT, not on the first token. It does now (one visit of the
    engine's stalls, queueing.crowding: chance 0.067, 51 ms): that plan is predicted
    over 200 ms, and the walk keeps one of $23.21/hr, predicted at 89.7 ms and
    simulated at 82.4 (latency 11440 against 10511 and 10446)."""
    src = _variant(tmp_path, "sup6c", "supervisor", ("latency.p99 < 12000ms", "latency.p99 < 13000ms"),
                   ("ttft < 800ms", "ttft < 200ms"), ("load 2 rps", "load 6 rps"))
    c, view = _compiled(src)
    pred = promise.prediction(c, 6.0, view)
    assert pred["ttft_ms"] <= 200.0 and pred["e2e_ms"] <= 13000.0
    held = _simulated(view, None, 10000, 0)
    assert held["ttft"]["holds"] and held["latency"]["holds"], (pred, held)
    assert abs(pred["ttft_ms"] - held["ttft"]["observed_ms"]) <= 0.10 * held["ttft"]["observed_ms"], (pred, held)
