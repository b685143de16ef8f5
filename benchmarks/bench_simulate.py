"""`agentc simulate` speed: simulated requests per CPU second.

(a) The voice agent (examples/voice_agent.agent; no load clause, so at --load, default
    20 req/s), continuous batching and --batching planned, against two baselines
    measured in the same run: a textbook SimPy M/M/1 (a Resource and one process per
    customer, load 0.5: what SimPy itself costs per request) and a one-op plan through
    agentc's model (the cheapest request there is). The goal is 20,000 simulated
    requests/s for the voice agent on one core. Beside the rates, SimPy events
    processed per request: a count the machine's load does not change.
(b) Growth with graph size: chains of 10, 100 and 500 ops on one pool; requests/s and
    op executions/s (flat op executions/s = linear in the graph size).
(c) Linearity in requests: CPU time of 4N requests over N requests (4.0 = linear).
(d) With --against REV: every example at its load (the voice agent at --load), this
    simulator against agentc/sim as of git revision REV, run alternately in the same
    process (the older copy imported under another package name), as a ratio of
    simulated requests per CPU second (time.process_time: the machine may be shared),
    and whether the two give the same statistics, float for float.

Run: python benchmarks/bench_simulate.py [--requests 2000] [--load 20] [--against REV]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import subprocess
import sys
import tempfile
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


def simpy_mm1(n: int, rate_per_ms: float = 0.05, service_ms: float = 10.0) -> float:
    """Simulated requests per CPU second of a plain SimPy M/M/1 (no agentc code)."""
    import simpy

    rng = np.random.default_rng(0)
    gaps, services = rng.exponential(1 / rate_per_ms, n), rng.exponential(service_ms, n)
    env = simpy.Environment()
    server = simpy.Resource(env, capacity=1)
    done = []

    def customer(i):
        with server.request() as req:
            yield req
            yield env.timeout(services[i])
        done.append(env.now)

    def source():
        for i in range(n):
            yield env.timeout(gaps[i])
            env.process(customer(i))

    env.process(source())
    t = time.process_time()
    env.run()
    return n / (time.process_time() - t)


def events(p: plan.Plan, load_rps: float, n: int, **cfg) -> float:
    """SimPy events processed per request (SimPy's steps: a decode engine's timer that
    moves is renumbered, so its event numbers count more than it processes)."""
    arr = arrivals.poisson(load_rps, np.random.default_rng(0), requests=n)
    s = model.Simulation(p, arr, model.Config(seed=0, **cfg))
    steps, step = [0], s.env.step

    def counted():
        steps[0] += 1
        step()

    s.env.step = counted
    s.run()
    return steps[0] / n


def rate(p: plan.Plan, load_rps: float, n: int, sim=model, **cfg) -> tuple[float, float]:
    """(simulated requests per CPU second, CPU seconds) for n Poisson requests."""
    arr = arrivals.poisson(load_rps, np.random.default_rng(0), requests=n)
    gc.collect()
    t = time.process_time()
    sim.simulate(p, arr, sim.Config(seed=0, **cfg))
    wall = time.process_time() - t
    return n / wall, wall


EXAMPLES = (("voice_agent", None), ("rag_agent", None), ("react_tools", None), ("supervisor", None),
            ("table3", "clusters/table3.toml"))


def older_sim(rev: str):
    """agentc/sim as of git revision `rev`, importable beside this one: its files are
    written to a temporary package `agentc_sim_<rev>` with its own imports renamed."""
    name = "agentc_sim_" + "".join(c for c in rev if c.isalnum())
    root = tempfile.mkdtemp(prefix="bench-simulate-")
    os.makedirs(os.path.join(root, name))
    files = subprocess.run(["git", "-C", REPO, "ls-tree", "--name-only", rev, "agentc/sim/"],
                           check=True, capture_output=True, text=True).stdout.split()
    for path in files:
        text = subprocess.run(["git", "-C", REPO, "show", f"{rev}:{path}"], check=True, capture_output=True,
                              text=True).stdout
        with open(os.path.join(root, name, os.path.basename(path)), "w", encoding="utf-8") as f:
            f.write(text.replace("agentc.sim", name))
    sys.path.insert(0, root)
    return importlib.import_module(f"{name}.model"), importlib.import_module(f"{name}.plan")


def against(rev: str, n: int, repeats: int, voice_load: float):
    """(d): per example, this simulator's rate over REV's, the best run of each."""
    old_model, old_plan = older_sim(rev)
    print(f"(d) every example, {n} requests, this simulator against agentc/sim at {rev} (best of {repeats}, "
          f"alternating):")
    for name, cluster in EXAMPLES:
        manifest = plan.compile_manifest(os.path.join(REPO, "examples", f"{name}.agent"),
                                         os.path.join(REPO, "examples", cluster) if cluster else None, ())
        new_p, old_p = plan.from_manifest(manifest), old_plan.from_manifest(manifest)
        load = new_p.load_rps or voice_load
        new = old = 0.0
        for k in range(repeats):
            runs = [("new", new_p, model), ("old", old_p, old_model)]
            for who, p, sim in (runs if k % 2 == 0 else runs[::-1]):
                r, _ = rate(p, load, n, sim=sim)
                if who == "new":
                    new = max(new, r)
                else:
                    old = max(old, r)
        same = _outcome(new_p, load, n, model) == _outcome(old_p, load, n, old_model)
        print(f"    {name:12s} at {load:g} req/s: {new:9,.0f} req/s, {rev}: {old:9,.0f} req/s, ratio {new / old:.2f}, "
              f"results {'identical' if same else 'DIFFERENT'}")


def _outcome(p, load_rps: float, n: int, sim) -> tuple:
    """Every statistic of a run with the benchmark's arrivals and seed, as plain values
    (the two simulators' dataclasses are different classes)."""
    r = sim.simulate(p, arrivals.poisson(load_rps, np.random.default_rng(0), requests=n), sim.Config(seed=0))
    return _plain((r.requests, r.pools, r.links, r.loop_trips, r.arm_counts, r.op_counts, r.decode_batches,
                   r.prefill_batches, r.kv, r.trace, r.end_ms, r.unfinished, r.window_ms))


def _plain(x):
    if hasattr(x, "__dataclass_fields__"):
        return tuple((k, _plain(getattr(x, k))) for k in x.__dataclass_fields__)
    if isinstance(x, dict):
        return tuple((k, _plain(v)) for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return tuple(_plain(v) for v in x)
    return x


def best(fn, repeats: int):
    """The fastest of `repeats` runs: the machine is shared, so the least disturbed one."""
    return max((fn() for _ in range(repeats)), key=lambda x: x[0] if isinstance(x, tuple) else x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--load", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--against", metavar="REV", default=None,
                    help="also time every example against agentc/sim at this git revision (d)")
    args = ap.parse_args()
    n, k = args.requests, args.repeats

    mm1 = best(lambda: simpy_mm1(n * 5), k)
    base, _ = best(lambda: rate(chain(1, 10.0, 1), 50.0, n * 5, cv=(("*", 1.0),)), k)
    voice = plan.load(os.path.join(REPO, "examples", "voice_agent.agent"))
    cont, _ = best(lambda: rate(voice, args.load, n), k)
    planned, _ = best(lambda: rate(voice, args.load, n, batching="planned"), k)
    print("simulated requests per CPU second (best of %d runs)" % k)
    print(f"(a) baseline: textbook SimPy M/M/1: {mm1:,.0f} req/s; one-op plan (M/M/1) in agentc: {base:,.0f} req/s")
    for name, r, cfg in (("continuous batching", cont, {}), ("--batching planned", planned, {"batching": "planned"})):
        print(f"    voice agent at {args.load:g} req/s, {name:20s}: {r:,.0f} req/s = {r / mm1:.3f} x SimPy M/M/1, "
              f"{r / base:.3f} x one-op plan, {r / 20000:.2f} of the 20,000 goal; "
              f"{events(voice, args.load, n, **cfg):.2f} events/request")
    print("(b) chain of k ops on one pool (4 devices, 1 ms each, at 50% utilisation: 2000/k req/s):")
    for k in (10, 100, 500):
        reqs = max(50, n * 10 // k)
        r, _ = rate(chain(k), 2000.0 / k, reqs)
        print(f"    k={k:4d}: {r:10,.1f} req/s  {r * k:12,.0f} op executions/s")
    _, w1 = rate(voice, args.load, n // 2)
    _, w4 = rate(voice, args.load, 2 * n)
    print(f"(c) voice agent: CPU time for {2 * n} requests / for {n // 2}: {w4 / w1:.2f} (4.00 = linear)")
    if args.against:
        against(args.against, n, args.repeats, args.load)


if __name__ == "__main__":
    main()
