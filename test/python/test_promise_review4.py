"""Review 4 of the planner's promise as a whole (agentc/promise.py's walk, the prediction
of planner/predict.py + queueing.BatchLaw) against the simulator, at loads and bounds
the other tests do not use. Each defect found is a strict xfail with its measured
cause, so the fix turns it into a failure to be made a plain test; the rest pins what
the review checked and found to hold.

References: the simulator (agentc/sim, sharing no code with the prediction or the
MILP) at the steady state (10,000-20,000 requests, seeds 0-2), and the plans the
MILP returns for other bounds of the same program.

Measured and found to hold (not all pinned here, to keep the file short): 61 variants
(rag at 5-7.5 req/s, react at 10-32, supervisor at 2-9, voice at 20-500; latency, TTFT
and TBT tightened) planned and simulated at 10,000 requests (voice 20,000), seeds 0-1:
every kept plan held every bound in simulation but supervisor at 8 req/s with
latency.p99 < 11500 ms (below; fixed since: decode engines crowded out of a shared
pool, queueing.crowding). Monotonicity over sweeps of 11-16 points: react's TTFT
(at 10 and 25 req/s), latency and TBT, supervisor's latency (at 2 and 8 req/s) and
TTFT never cost more as the bound loosens; supervisor's TBT does, once (below)."""

from __future__ import annotations

import functools
import json
import os

import pytest
from helpers import cli_ok

from agentc import pipeline, promise
from agentc.cli._common import make_options
from agentc.sim import verify
from agentc.targets import manifest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")


def _variant(tmp_path, name: str, example: str, *edits: tuple[str, str]) -> str:
    """`example` with `edits` applied, written beside a copy of examples/lib (supervisor
    imports lib/researchers.agent)."""
    text = open(os.path.join(EXAMPLES, f"{example}.agent"), encoding="utf-8").read()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    lib = tmp_path / "lib"
    if not lib.exists():
        lib.mkdir()
        for f in os.listdir(os.path.join(EXAMPLES, "lib")):
            (lib / f).write_text(open(os.path.join(EXAMPLES, "lib", f), encoding="utf-8").read())
    src = tmp_path / f"{name}.agent"
    src.write_text(text)
    return str(src)


def _plan(path: str) -> dict:
    return json.loads(cli_ok("plan", path, "--json"))


def _compiled(path: str):
    """(compilation at `placed`, its manifest): the prediction needs the placement."""
    c = pipeline.compile_file(path, make_options(emit="placed"), or_later=True)
    pipeline.placement(c)
    return c, json.loads(manifest.dumps(manifest.build(c)))


def _simulated(view: dict, load: float | None, requests: int, seed: int) -> dict:
    """term kind ('latency', 'ttft', 'tbt') -> its sla_terms row in one run of `requests`
    (verify.simulated: the point the figures here were measured with, not --verify's
    replicated verdict)."""
    return {t["term"].split(".")[0]: t for t in verify.simulated(view, load, requests, seed).terms}


KEYS = {"latency": "e2e_ms", "ttft": "ttft_ms", "tbt": "tbt_ms"}


@pytest.mark.slow
def test_supervisor_at_8_rps_kept_plan_holds_its_latency_in_simulation(tmp_path):
    """supervisor with `load 8 rps` and `latency.p99 < 11500ms`. Found: the plan kept
    ($26.31/hr: b200's 8 devices held report.decode tp 4, notes.1.decode and 3
    report.prefill replicas) was predicted at 10365 ms and simulated at 16842
    (10,000 requests, seed 0): its decode engines, which give the pool up at each step
    boundary while a prefill waits (sim/engines.py), stalled 369 ms a sequence on
    average (4.0 s at the p99), which neither the sizing model nor the prediction
    counted. Both charge it now (queueing.crowding: the chance the prefills' Poisson
    occupancy passes their room, times the part of such a spell the engine notices):
    that plan's figure is 12052 ms, and the MILP keeps one of $27.95/hr (report.decode
    on mi300x tp 8; on b200 four prefill replicas beside the tp-1 plan.decode and
    notes.1.decode), predicted at 10741 ms and simulated at 10243, 10259 and 10342 ms
    (10,000 requests, seeds 0-2): every request within 11.5 s."""
    src = _variant(tmp_path, "sup8", "supervisor", ("latency.p99 < 12000ms", "latency.p99 < 11500ms"),
                   ("load 2 rps", "load 8 rps"))
    c, view = _compiled(src)
    pred = promise.prediction(c, 8.0, view)
    assert pred["e2e_ms"] <= 11500.0   # the walk's own check: the promise is made
    held = _simulated(view, None, 10000, 0)["latency"]
    assert held["holds"], (pred, held)
    assert abs(pred["e2e_ms"] - held["observed_ms"]) <= 0.10 * held["observed_ms"], (pred, held)


@functools.lru_cache(maxsize=None)
def _example_at_share_of_capacity(share: float):
    """(prediction, simulation rows) of the supervisor example's plan at `share` of the
    capacity it buys (verify.capacity_rps; 10,000 requests, seed 0)."""
    c, view = _compiled(os.path.join(EXAMPLES, "supervisor.agent"))
    load = round(share * verify.capacity_rps(view), 3)
    return promise.prediction(c, load, view), _simulated(view, load, 10000, 0)


@pytest.mark.slow
def test_supervisor_prediction_agrees_at_60_percent_of_capacity():
    """The example's plan (17.96 $/hr, sized for 2 req/s, capacity 5.64 req/s) at 3.382
    req/s: latency p99 predicted 11972 against 11355 ms simulated, TBT 15.02 against
    13.78 (1.09; 11771 and 13.0 before its crowded decodes were counted)."""
    pred, sim = _example_at_share_of_capacity(0.6)
    for term in ("latency", "tbt"):
        assert abs(pred[KEYS[term]] - sim[term]["observed_ms"]) <= 0.10 * sim[term]["observed_ms"], (term, pred, sim[term])


@pytest.mark.slow
@pytest.mark.xdist_group("supervisor_at_75")   # one simulation for both (lru_cache)
def test_supervisor_latency_prediction_agrees_at_75_percent_of_capacity():
    """The example's plan (17.96 $/hr) at 4.228 req/s: latency p99 predicted 13835
    against 13944 ms simulated (0.99; 10,000 requests, seed 0; 12855 and 13518 with
    seeds 1-2). Before the simulator ran the plan's replicas as its decode engines
    (sim/engines.py decode_engines) it ran one per tp devices of each pool, and
    mi300x's extra notes.decode engines held report.decode (tp 4 of 5 devices) back:
    15046 simulated (0.92). At 85% (4.791 req/s) 25355 against 18442 (1.37: over)."""
    pred, sim = _example_at_share_of_capacity(0.75)
    assert abs(pred["e2e_ms"] - sim["latency"]["observed_ms"]) <= 0.10 * sim["latency"]["observed_ms"], (pred, sim)


@pytest.mark.slow
@pytest.mark.xdist_group("supervisor_at_75")   # one simulation for both (lru_cache)
@pytest.mark.xfail(strict=True, raises=AssertionError, reason="TBT predicted 15.65 ms, simulated 14.12-14.28 (1.10-1.11): "
                                                              "the crowded engine's loss at the TBT quantile is over")
def test_supervisor_tbt_prediction_agrees_at_75_percent_of_capacity():
    """The same plan and load: TBT (plan.decode's, on b200) predicted 15.65 against
    14.21 ms simulated (1.10; 14.12 and 14.28 with seeds 1-2), 10% over the bound.
    plan.decode's steps in simulation: mean 12.96 ms, p99 14.22; predicted at 13.07
    with the crowding (queueing.crowding: 25 spells of 67 ms, each stalled with
    chance 0.026) adding 2.6 ms at the TBT quantile where the simulation shows about
    1.3. Pessimistic (it costs money, it breaks no promise). Its decode steps wait
    between steps for their devices on b200, a pool shared with queued prefills
    (report.prefill's 205 ms batches beside plan.decode and notes.1.decode, tp 1); the
    prediction left that out (TBT 13.1, 0.90) until queueing.crowding charged it. At
    60% (3.382 req/s) TBT 15.0 against 13.8 (1.09), at 85% 16.1 against 14.4 (1.11).
    test_sim_agreement's grid cannot see it: at 90% of capacity the plan is
    re-planned, and its other loads are 0.2 and 2 req/s."""
    pred, sim = _example_at_share_of_capacity(0.75)
    assert abs(pred["tbt_ms"] - sim["tbt"]["observed_ms"]) <= 0.10 * sim["tbt"]["observed_ms"], (pred, sim)


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="rag planned at 7 req/s: TTFT predicted 455 ms, simulated 311-333 (1.37-1.46); "
                                       "with ttft < 450 the walk pays 10.73 $/hr where this 9.76 $/hr plan holds")
def test_rag_prediction_agrees_at_7_rps(tmp_path):
    """rag with `load 7 rps` (bounds as written) keeps a $9.76/hr plan (3 plans
    excluded); its TTFT is predicted at 455.0 ms and simulated at 329.4 and 327.4 ms
    (10,000 requests, seeds 0-1), 311.5 and 332.4 ms (20,000, seeds 0 and 2): the
    prediction is 37-46% over. The cost of it: with `ttft < 450ms` at 7 req/s the walk
    excludes this plan too (455 > 450) and four more, and keeps one of $10.73/hr (10%
    dearer), while this one holds 450 ms in simulation by a 27% margin. Latency and
    TBT agree (2209 against 2211-2216, 15.3 against 15.9-16.2)."""
    src = _variant(tmp_path, "rag7", "rag_agent", ("load 5 rps", "load 7 rps"))
    c, view = _compiled(src)
    assert view["totals"]["usd_per_hr"] == pytest.approx(9.76165, rel=1e-5)
    pred = promise.prediction(c, 7.0, view)
    sim = _simulated(view, None, 10000, 0)["ttft"]
    assert abs(pred["ttft_ms"] - sim["observed_ms"]) <= 0.10 * sim["observed_ms"], (pred, sim)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=AssertionError, reason="voice at 20 req/s, ttft < 150: TTFT predicted 138.1 ms, simulated "
                                       "111.1-114.5 (1.21-1.24, 20,000 requests)")
def test_voice_ttft_prediction_agrees_at_20_rps(tmp_path):
    """voice with `load 20 rps` and `ttft < 150ms` keeps a $4.26/hr plan predicted at
    138.1 ms TTFT, simulated at 114.5 and 111.1 ms (20,000 requests, seeds 0-1): 21-24%
    over (latency p99 4191 against 3636-3646, 15% over). The same over-prediction at
    other loads: 100 req/s 45.9 against 39.7-40.5, 300 req/s 70.5 against 54.3-57.1, 500
    req/s 77.3 against 64.3-65.3. It errs on the safe side, but it is what ends
    `ttft < 100ms` at 20 req/s in the step limit's error (plans predicted at 136-175
    ms, test_promise_review.py), and test_sim_agreement, without a load clause for
    voice, never sees these loads."""
    src = _variant(tmp_path, "v20", "voice_agent", ("ttft < 250ms", "ttft < 150ms"),
                   ("tbt < 20ms }", "tbt < 20ms }\n  load 20 rps"))
    c, view = _compiled(src)
    pred = promise.prediction(c, 20.0, view)
    sim = _simulated(view, None, 20000, 0)["ttft"]
    assert sim["holds"]
    assert abs(pred["ttft_ms"] - sim["observed_ms"]) <= 0.10 * sim["observed_ms"], (pred, sim)


def test_supervisor_cost_does_not_rise_as_tbt_loosens_from_15_to_16(tmp_path):
    """Fixed: annotate-cost offered decode batches of a menu (1, 4, 16, 64, 256) plus the
    largest power of two within the TBT bound, so report.decode's batch 32 on mi300x tp 4
    was offered under 15 ms and not under 16 (the largest became 64); every power of two
    within the bound is offered now, and both bounds plan at 17.9639 $/hr. As found:
    supervisor's TBT swept 8-40 ms (bounds as written otherwise, 2 req/s): $/hr
    24.08 (9), 23.46 (10), 20.11 (11), 19.99 (12), 18.38 (13), 17.9639 (14, 15), then
    17.9914 (16-40, the example's plan). Neither solve went through the walk (no plan
    excluded, no bound sized) and both report HiGHS 'optimal' (gap 0 and 5.6e-11). The
    14-15 ms plan (devices a100 2, b200 4, gaudi3 6, mi300x 5; figures latency 11994.4,
    TTFT 275.2, TBT 13.11 ms) meets every bound of the 16 ms program by its own
    figures, so the 16 ms solve's 'optimal' is not the cheapest plan of its feasible
    set: the MILP's candidates, not the promise, depend on the TBT bound in a way that
    drops this plan."""
    tight = _plan(_variant(tmp_path, "tbt15", "supervisor", ("tbt < 40ms", "tbt < 15ms")))
    loose = _plan(_variant(tmp_path, "tbt16", "supervisor", ("tbt < 40ms", "tbt < 16ms")))
    assert tight["totals"]["tbt_ms"] < 16.0 and tight["totals"]["e2e_ms"] < 12000.0
    assert loose["totals"]["usd_per_hr"] <= tight["totals"]["usd_per_hr"] * (1 + 1e-9), \
        (tight["totals"], loose["totals"])


def test_supervisor_walked_plan_holds_in_simulation(tmp_path):
    """supervisor with `ttft < 60ms` (2 req/s): the MILP's first plans miss by their
    prediction and are excluded (2 of one cost), and the walk sizes TTFT to 57.43 ms;
    the plan kept ($27.13/hr) is predicted at 58.49 ms and simulated at 56.00 and 55.99
    ms (10,000 requests, seeds 0-1; 4,000 here), every term held: the walk's promise
    holds outside rag. (With the sparser batch menu: 1 plan excluded, sized to 57.81 ms,
    $27.30/hr, predicted 58.10, simulated 55.96.)"""
    m = _plan(_variant(tmp_path, "sup60", "supervisor", ("ttft < 800ms", "ttft < 60ms")))
    assert m["sla"]["excluded_plans"] >= 1 and m["sla"]["sized_ms"]["ttft_ms"] < 60.0
    held = _simulated(m, None, 4000, 0)
    assert all(t["holds"] for t in held.values()), held


@pytest.mark.slow
@pytest.mark.parametrize("load", [10, 25])
def test_react_cost_never_rises_as_ttft_loosens(tmp_path, load):
    """react_tools' TTFT swept 100-400 ms at 10 and 25 req/s (other bounds as written):
    $/hr never rises as the bound loosens. Measured at 10 req/s: 20.47 (100-140), 19.63
    (160), 19.38 (180-300), 18.83 (320-400); at 25: 24.90, 24.31, 24.12, 23.34 (160-220),
    22.37 (240-400)."""
    costs = []
    for b in range(100, 401, 20):
        m = _plan(_variant(tmp_path, f"r{load}_{b}", "react_tools", ("ttft < 400ms", f"ttft < {b}ms"),
                           ("load 10 rps", f"load {load} rps")))
        assert m["totals"]["ttft_ms"] <= b
        costs.append((b, m["totals"]["usd_per_hr"]))
    for (_, c0), (_, c1) in zip(costs, costs[1:]):
        assert c1 <= c0 * (1 + 1e-9), costs
    assert costs[-1][1] < costs[0][1], costs   # the sweep crosses plans of several costs


@pytest.mark.parametrize("example,term,bounds", [
    ("supervisor", "tbt < 40ms", (10, 12, 14, 15, 16, 20, 30, 40)),
    ("voice_agent", "tbt < 20ms", (2, 3, 4, 6, 10, 20)),
], ids=["supervisor", "voice"])
def test_cost_never_rises_as_tbt_loosens(tmp_path, example, term, bounds):
    """The TBT bound is read twice: by the MILP, and by annotate-cost, which offers the
    decode batches whose step fits it. Swept through the whole compile (not the MILP
    alone, as test_planner_monotone does): $/hr, or $/request without a load clause, never
    rises as the bound loosens."""
    costs = []
    for b in bounds:
        m = _plan(_variant(tmp_path, f"{example}{b}", example, (term, term.replace(term.split("<")[1].strip(), f"{b}ms"))))
        t = m["totals"]
        costs.append((b, t["usd_per_hr"] if t["usd_per_hr"] is not None else t["usd_per_request"]))
        assert t["tbt_ms"] <= b * (1 + 1e-9), (b, t)
    for (b0, c0), (b1, c1) in zip(costs, costs[1:]):
        assert c1 <= c0 * (1 + 1e-9), (b0, b1, costs)
    assert costs[-1][1] < costs[0][1], costs   # the sweep crosses plans of several costs
