"""Queueing-aware sizing (agentc/planner/queueing.py) against independent references.

- Erlang C and the M/M/c waiting-time quantile against the textbook direct sum
  (references/queueing_ref.py), hand-worked closed forms (M/M/1: C = rho; M/M/2:
  C = 2 rho^2 / (1 + rho)) and Pollaczek-Khinchine for M/D/1;
- the same numbers against discrete-event simulations of M/M/c and M/D/c queues (ciw);
- the planner's replica count for a loaded op against agentc's own simulator: with the
  devices the plan buys the simulated p99 wait fits the SLA's budget for waiting, with
  one device fewer it does not.
"""

from __future__ import annotations

import math

import ciw
import numpy as np
import pytest

from agentc.planner import SLA, Option, PlanOp, Pool, Problem, solve
from agentc.planner import queueing
from agentc.sim import arrivals, model
from agentc.sim import plan as simplan
from references import queueing_ref


@pytest.mark.parametrize("c", [1, 2, 3, 5, 8, 16, 64])
@pytest.mark.parametrize("rho", [0.05, 0.3, 0.6, 0.85, 0.97])
def test_erlang_c_and_quantile_match_the_direct_sum(c, rho):
    a = rho * c
    assert queueing.erlang_c(c, a) == pytest.approx(queueing_ref.erlang_c(c, a), rel=1e-10)
    for q in (0.5, 0.9, 0.99, 0.999):
        assert queueing.wait_quantile_ms(c, a, 120.0, q) == pytest.approx(
            queueing_ref.wait_quantile(c, a, 120.0, q), rel=1e-9, abs=1e-9)


def test_closed_forms_by_hand():
    # M/M/1: P(wait) = rho, P(W > t) = rho exp(-(mu - lambda) t)
    assert queueing.erlang_c(1, 0.7) == pytest.approx(0.7)
    t99 = queueing.wait_quantile_ms(1, 0.7, 100.0, 0.99)  # S = 100 ms: mu - lambda = 0.003 /ms
    assert 0.7 * math.exp(-0.003 * t99) == pytest.approx(0.01)
    # M/M/2 at rho = 0.5: C = 2 rho^2 / (1 + rho) = 1/3
    assert queueing.erlang_c(2, 1.0) == pytest.approx(1 / 3)
    # below the quantile's mass nobody waits; unstable queues wait forever
    assert queueing.wait_quantile_ms(4, 0.5, 100.0, 0.99) == 0.0
    assert queueing.wait_quantile_ms(2, 2.0, 100.0, 0.99) == math.inf
    # Allen-Cunneen with deterministic service is Pollaczek-Khinchine for one server:
    # Wq = rho S / (2 (1 - rho))
    assert queueing.mean_wait_ms(1, 0.6, 50.0, cs2=0.0) == pytest.approx(0.6 * 50.0 / (2 * 0.4))
    # the mean for exponential service: C S / (c - a)
    assert queueing.mean_wait_ms(3, 2.0, 10.0) == pytest.approx(queueing_ref.erlang_c(3, 2.0) * 10.0 / 1.0)


def _ciw_waits(lam: float, service, c: int, horizon: float, seed: int) -> np.ndarray:
    net = ciw.create_network(arrival_distributions=[ciw.dists.Exponential(rate=lam)],
                             service_distributions=[service], number_of_servers=[c])
    ciw.seed(seed)
    sim = ciw.Simulation(net)
    sim.simulate_until_max_time(horizon)
    return np.array([r.waiting_time for r in sim.get_all_records() if r.arrival_date > horizon * 0.02])


def test_mmc_against_a_ciw_simulation():
    """M/M/4 at 2.5 Erlangs (S = 1 s): P(wait), mean and quantiles within sampling error."""
    w = _ciw_waits(2.5, ciw.dists.Exponential(rate=1.0), 4, 12000.0, 7)
    assert (w > 1e-12).mean() == pytest.approx(queueing.erlang_c(4, 2.5), abs=0.02)
    assert w.mean() == pytest.approx(queueing.mean_wait_ms(4, 2.5, 1.0), rel=0.1)
    for q in (0.9, 0.95, 0.99):
        assert np.quantile(w, q) == pytest.approx(queueing.wait_quantile_ms(4, 2.5, 1.0, q), rel=0.12)


def test_mdc_allen_cunneen_against_a_ciw_simulation():
    """M/D/3 at 2.4 Erlangs: Allen-Cunneen's mean is close, and its p99 (the M/M/c tail
    scaled by (1 + cs2) / 2) does not promise less than the simulation waits."""
    w = _ciw_waits(2.4, ciw.dists.Deterministic(value=1.0), 3, 12000.0, 3)
    assert w.mean() == pytest.approx(queueing.mean_wait_ms(3, 2.4, 1.0, cs2=0.0), rel=0.15)
    assert queueing.wait_quantile_ms(3, 2.4, 1.0, 0.99, cs2=0.0) >= np.quantile(w, 0.99) * 0.9
    # and the planner's default (exponential) is above both
    assert queueing.wait_quantile_ms(3, 2.4, 1.0, 0.99) > np.quantile(w, 0.99)


# ------------------------------------------------------------------ planner vs agentc.sim

RATE, SERVICE_MS, WAIT_BUDGET_MS = 20.0, 100.0, 100.0  # 2 Erlangs; the SLA leaves 100 ms to wait


def _one_op_problem() -> Problem:
    op = PlanOp("work", "compute", [Option("G", 1, SERVICE_MS, 1e-5, SERVICE_MS)])
    return Problem([op], [], [Pool("g", "G", 16, 2.0)], [], SLA(e2e_ms=SERVICE_MS + WAIT_BUDGET_MS),
                   load_rps=RATE)


def _simulated_p99_wait(devices: int, requests: int = 30000) -> float:
    """agentc.sim on one op of one pool, exponential service (cv 1: the planner's M/M/c)."""
    op = simplan.Op("work", "compute", "g", 1, SERVICE_MS, SERVICE_MS, "", (), None, None)
    plan = simplan.Plan("one", "-", {"work": op}, {"": simplan.Region("", "block", None, items=["work"])}, {},
                        {"g": devices}, {}, simplan.SLA(None, None, None, None), RATE, {}, frozenset(), False)
    rng = np.random.default_rng(11)
    arr = arrivals.poisson(RATE, rng, requests=requests)
    res = model.simulate(plan, arr, model.Config(seed=5, cv=(("*", 1.0),), warmup=1000))
    return float(np.percentile(res.pools["g"].waits, 99))


def test_planned_devices_meet_the_wait_and_one_fewer_misses():
    plan = solve(_one_op_problem(), baselines=False, explain=False)
    n = plan.devices["g"]
    placed = plan.ops["work"]
    # by hand: c = 4 waits 143 ms at p99 (C = 0.174), c = 5 waits 60 ms (C = 0.060)
    assert n == 5 and placed.replicas == 5
    assert placed.wait_ms == pytest.approx(queueing_ref.wait_quantile(5, 2.0, SERVICE_MS, 0.99))
    assert plan.e2e_ms == pytest.approx(SERVICE_MS + placed.wait_ms)
    assert _simulated_p99_wait(n) <= WAIT_BUDGET_MS
    assert _simulated_p99_wait(n - 1) > WAIT_BUDGET_MS


def test_a_looser_wait_budget_buys_fewer_devices():
    p = _one_op_problem()
    p.sla = SLA(e2e_ms=SERVICE_MS + 200.0)  # c = 4 (143 ms) now fits
    assert solve(p, baselines=False, explain=False).devices == {"g": 4}
    p.sla = SLA(e2e_ms=None)  # no bound: the least stable count, c > a
    assert solve(p, baselines=False, explain=False).devices == {"g": 3}


# ------------------------------------------------------- the batch a decode runs at

@pytest.mark.parametrize("mean", [0.0, 0.08, 0.2, 1.0, 7.5, 13.5, 60.0, 400.0])
@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.99, 0.999])
def test_poisson_quantile_matches_scipy(mean, q):
    from scipy.stats import poisson

    want = 0 if mean == 0 else int(poisson.ppf(q, mean))
    assert queueing.poisson_quantile(mean, q) == want
    assert queueing.filled_batch(mean, 16, q) == min(16, 1 + want)


def test_filled_mean_by_hand():
    """A 128-token decode that takes 2400 ms alone, 2460 at batch 4, 2736 at 16 and 3160
    at 32, at 5 calls/s. The least root of m = 5 T(1 + m) / 1000 lies where T is the
    line through (4, 2460) and (16, 2736), slope 23 ms per sequence: x = 1 + m solves
    x - 1 = 0.005 (2460 + 23 (x - 4)), so 0.885 x = 12.84, x = 14.50847..., m = 13.50847...
    At 50 calls/s the batch is full: m = 50 * 3.16 = 158. Another 4 sequences of the
    same model in flight move the root past 16 (x - 1 = 4 + 0.005 (2460 + 23 (x - 4)) gives
    x = 19.03 > 16), onto the line through (16, 2736) and (32, 3160), slope 26.5:
    x - 1 = 4 + 0.005 (2736 + 26.5 (x - 16)), so 0.8675 x = 16.56."""
    pts = [(1, 2400.0), (4, 2460.0), (16, 2736.0), (32, 3160.0)]
    assert queueing.filled_mean(5.0, pts) == pytest.approx(12.84 / 0.885 - 1, rel=1e-12)
    assert queueing.filled_mean(50.0, pts) == pytest.approx(158.0, rel=1e-12)
    assert queueing.filled_mean(5.0, pts, 4.0) == pytest.approx(16.56 / 0.8675 - 1, rel=1e-12)
    assert queueing.filled_mean(0.0, pts) == 0.0
    # the mean term's batch is 1 + m (capped at B), a quantile's 1 + a whole count
    m = queueing.filled_mean(5.0, pts)
    assert queueing.filled_batch(m, 32, None) == pytest.approx(1 + m)
    assert queueing.filled_batch(158.0, 32, 0.01) == 32.0 and queueing.filled_batch(158.0, 32, None) == 32.0
    assert queueing.interpolate(pts, 1 + m) == pytest.approx(1000 * m / 5.0, rel=1e-12)
