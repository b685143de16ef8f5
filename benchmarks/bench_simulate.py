"""`agentc simulate` speed: simulated requests per second of wall time.

(a) The voice agent (examples/voice_agent.agent; no load clause, so at --load, default
    20 req/s), continuous batching and --batching planned, against a baseline measured
    in the same run: a one-op plan (M/M/1 at load 0.5), the cheapest request there is.
(b) Growth with graph size: chains of 10, 100 and 500 ops on one pool; requests/s and
    op executions/s (flat op executions/s = linear in the graph size).
(c) Linearity in requests: wall time of 4N requests over N requests (4.0 = linear).

Run: python benchmarks/bench_simulate.py [--requests 2000] [--load 20]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from agentc.sim import arrivals, model, plan

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def chain(n_ops: int, service_ms: float = 1.0, devices: int = 4) -> plan.Plan:
    ops = [{"id": f"op{i:04d}", "kind": "compute.cpu", "pool": "cpu", "tp": 1, "est_latency_ms": service_ms,
            "busy_ms": service_ms, "region": "", "inputs": [f"op{i - 1:04d}"] if i else []} for i in range(n_ops)]
    return plan.from_manifest({"schema_version": "1.2", "agent": f"chain{n_ops}", "sla": {},
                               "cluster": {"pools": [{"name": "cpu", "count": devices}]}, "ops": ops, "edges": [],
                               "totals": {}, "regions": {}, "returns": [ops[-1]["id"]]})


def rate(p: plan.Plan, load_rps: float, n: int, **cfg) -> tuple[float, float]:
    """(simulated requests per wall second, wall seconds) for n Poisson requests."""
    arr = arrivals.poisson(load_rps, np.random.default_rng(0), requests=n)
    t = time.perf_counter()
    model.simulate(p, arr, model.Config(seed=0, **cfg))
    wall = time.perf_counter() - t
    return n / wall, wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--load", type=float, default=20.0)
    args = ap.parse_args()
    n = args.requests

    base, _ = rate(chain(1, 10.0, 1), 50.0, n * 5, cv=(("*", 1.0),))
    voice = plan.load(os.path.join(REPO, "examples", "voice_agent.agent"))
    cont, _ = rate(voice, args.load, n)
    planned, _ = rate(voice, args.load, n, batching="planned")
    print(f"(a) baseline one-op M/M/1: {base:,.0f} req/s")
    print(f"    voice agent at {args.load:g} req/s, continuous batching: {cont:,.0f} req/s "
          f"({cont / base:.3f} x baseline)")
    print(f"    voice agent at {args.load:g} req/s, --batching planned:  {planned:,.0f} req/s "
          f"({planned / base:.3f} x baseline)")
    print("(b) chain of k ops on one pool (4 devices, 1 ms each, 100 req/s):")
    for k in (10, 100, 500):
        reqs = max(50, n * 10 // k)
        r, _ = rate(chain(k), 100.0, reqs)
        print(f"    k={k:4d}: {r:10,.1f} req/s  {r * k:12,.0f} op executions/s")
    _, w1 = rate(voice, args.load, n // 2)
    _, w4 = rate(voice, args.load, 2 * n)
    print(f"(c) voice agent: wall time for {2 * n} requests / for {n // 2}: {w4 / w1:.2f} (4.00 = linear)")


if __name__ == "__main__":
    main()
