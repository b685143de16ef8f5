"""The simulator against queueing theory and an independent simulator.

References share no code with agentc.sim: Erlang C and the M/M/c response-time law
(closed forms, written out below), Pollaczek-Khinchine for M/D/1, Jackson's product
form and `ciw` (a separately written queueing-network simulator) for a tandem network.
Plans are tiny manifests written by hand, so only the model is under test.

Tolerances: the issue's 3% at 200k requests where sampling allows it. Measured over
seeds 0-5 at 200k, the relative error of the mean wait has a spread (sd) of about 1%
for M/M/1 at load 0.3 and 2% for M/M/3 at load 0.5 (few arrivals wait there), the p99
of the response time about 1%; so M/M/3's mean wait is held to 8% and everything else
to 3%. Seed 0 is the default seed, not one picked after the fact.
"""

from __future__ import annotations

import collections
import math

import numpy as np

from agentc.sim import arrivals, model, plan


def manifest(stages, servers):
    """A chain of single-device ops: stage i (mean service ms) on pool i with servers[i] devices."""
    ops = []
    for i, service in enumerate(stages):
        ops.append({"id": f"s{i}", "kind": "compute.cpu", "pool": f"p{i}", "tp": 1, "est_latency_ms": service,
                    "busy_ms": service, "region": "", "inputs": [f"s{i - 1}"] if i else []})
    return {"schema_version": "1.2", "agent": "queue", "sla": {},
            "cluster": {"pools": [{"name": f"p{i}", "count": c} for i, c in enumerate(servers)]},
            "ops": ops, "edges": [], "totals": {"e2e_ms": sum(stages)}, "regions": {},
            "returns": [f"s{len(stages) - 1}"]}


def run(stages, servers, rate_per_ms, n, cv, seed=0):
    p = plan.from_manifest(manifest(stages, servers))
    arr = arrivals.poisson(rate_per_ms * 1e3, np.random.default_rng(1000 + seed), requests=n)
    return model.simulate(p, arr, model.Config(seed=seed, cv=(("*", cv),), warmup=n // 20))


def erlang_c(c, a):
    """Probability that an arrival waits in M/M/c with offered load a = lambda * S."""
    head = sum(a ** k / math.factorial(k) for k in range(c))
    tail = a ** c / math.factorial(c) * c / (c - a)
    return tail / (head + tail)


def mmc_response_quantile(c, service, rate, q):
    """q-quantile of M/M/c response time: T = W + S, W = 0 w.p. 1-C else Exp(c mu - lambda)."""
    mu = 1.0 / service
    C = erlang_c(c, rate * service)
    theta = c * mu - rate

    def survival(t):
        both = (theta * math.exp(-mu * t) - mu * math.exp(-theta * t)) / (theta - mu)
        return (1 - C) * math.exp(-mu * t) + C * both

    lo, hi = 0.0, 1e3 * service
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if survival(mid) > 1 - q else (lo, mid)
    return lo


def test_mm1_matches_erlang_c_mean_wait_and_p99_response():
    service, rho = 10.0, 0.3
    rate = rho / service
    res = run([service], [1], rate, 200_000, cv=1.0)
    wait = np.mean(res.pools["p0"].waits)
    expected_wait = erlang_c(1, rate * service) / (1 / service - rate)
    assert abs(wait / expected_wait - 1) < 0.03, (wait, expected_wait)
    e2e = np.array([r.end_ms - r.arrival_ms for r in res.requests])
    expected_p99 = mmc_response_quantile(1, service, rate, 0.99)
    assert abs(np.percentile(e2e, 99) / expected_p99 - 1) < 0.03, (np.percentile(e2e, 99), expected_p99)


def test_mmc_matches_erlang_c():
    """c = 3 devices in one FIFO pool: the probability of waiting (Erlang C itself),
    the mean and p99 of the response time within 3%; the mean wait, which is small
    here and noisier (sd about 2% over seeds), within 8%."""
    c, service, rho = 3, 10.0, 0.5
    rate = rho * c / service
    res = run([service], [c], rate, 200_000, cv=1.0)
    waits = np.array(res.pools["p0"].waits)
    C = erlang_c(c, rate * service)
    assert abs((waits > 1e-9).mean() / C - 1) < 0.03, ((waits > 1e-9).mean(), C)
    expected_wait = C / (c / service - rate)
    assert abs(waits.mean() / expected_wait - 1) < 0.08, (waits.mean(), expected_wait)
    e2e = np.array([r.end_ms - r.arrival_ms for r in res.requests])
    assert abs(e2e.mean() / (expected_wait + service) - 1) < 0.03
    expected_p99 = mmc_response_quantile(c, service, rate, 0.99)
    assert abs(np.percentile(e2e, 99) / expected_p99 - 1) < 0.03, (np.percentile(e2e, 99), expected_p99)
    # the time-average queue length agrees with Little's law on the same run
    q = res.pools["p0"].queue_time
    mean_queue = sum(k * v for k, v in q.items()) / sum(q.values())
    assert abs(mean_queue / (rate * waits.mean()) - 1) < 0.03


def test_md1_matches_pollaczek_khinchine():
    service, rho = 10.0, 0.6
    rate = rho / service
    res = run([service], [1], rate, 60_000, cv=0.0)
    wait = np.mean(res.pools["p0"].waits)
    expected = rho * service / (2 * (1 - rho))
    assert abs(wait / expected - 1) < 0.03, (wait, expected)
    # deterministic service: every response is the wait plus exactly the service time
    e2e = np.array([r.end_ms - r.arrival_ms for r in res.requests])
    assert np.allclose(e2e - service, np.array(res.pools["p0"].waits), atol=1e-6)


def test_tandem_network_matches_jackson_and_ciw():
    import ciw

    s1, s2, c1, c2, rate = 10.0, 30.0, 1, 2, 0.04
    res = run([s1, s2], [c1, c2], rate, 100_000, cv=1.0)
    e2e = np.array([r.end_ms - r.arrival_ms for r in res.requests])

    def mmc_response(c, service):
        return erlang_c(c, rate * service) / (c / service - rate) + service

    jackson = mmc_response(c1, s1) + mmc_response(c2, s2)
    assert abs(e2e.mean() / jackson - 1) < 0.03, (e2e.mean(), jackson)

    network = ciw.create_network(
        arrival_distributions=[ciw.dists.Exponential(rate=rate), None],
        service_distributions=[ciw.dists.Exponential(rate=1 / s1), ciw.dists.Exponential(rate=1 / s2)],
        routing=[[0.0, 1.0], [0.0, 0.0]], number_of_servers=[c1, c2])
    ciw.seed(0)
    sim = ciw.Simulation(network=network)
    sim.simulate_until_max_time(1_000_000)  # about 40k customers
    visits = collections.defaultdict(list)
    for r in sim.get_all_records():
        visits[r.id_number].append(r.waiting_time + r.service_time)
    sojourn = np.array([sum(v) for k, v in sorted(visits.items()) if len(v) == 2 and k > 2000])
    assert len(sojourn) > 30_000
    # two noisy estimates (ciw's is the smaller sample): 5% on the mean, 8% on the p90
    assert abs(e2e.mean() / sojourn.mean() - 1) < 0.05, (e2e.mean(), sojourn.mean())
    assert abs(np.percentile(e2e, 90) / np.percentile(sojourn, 90) - 1) < 0.08
