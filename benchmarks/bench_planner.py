"""Placement MILP benchmark: optimality against brute force, and solve time at scale.

(a) Optimality: random DAGs of up to 10 ops on 4 device classes; the exhaustive optimum
    is found by a numpy enumeration of every placement (4^10 ~ 1M), independent of the
    planner's own evaluator; printed as MILP cost / optimum (1.000 means optimal).
(b) Scale: a layered 500-op DAG on 6 device classes with tp in {1, 2, 4, 8} (24 options
    per op), a hard e2e SLA; prints solve time, MIP gap, and cost ratios against the
    greedy list scheduler and the homogeneous baselines measured in the same run.

Run: python benchmarks/bench_planner.py [--quick] [--scale-only] [--seeds 11,12] [--loads 0,20]
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import time

import numpy as np

from agentc.diagnostics import InfeasiblePlanError
from agentc.planner import SLA, Link, Option, PlanEdge, PlanOp, Pool, Problem, solve

# name, relative speed, $/hr per device (shape of arXiv 2507.19635 Table 5, not its numbers)
CLASSES = [("cpu", 0.08, 0.05), ("A40", 0.35, 0.15), ("A100", 1.0, 0.25),
           ("Gaudi3", 2.2, 0.49), ("MI300x", 2.0, 0.52), ("H100", 2.6, 0.60)]


def random_dag(rng: random.Random, n: int, p_edge: float) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(i + 1, n) if rng.random() < p_edge]


def small_problem(rng: random.Random, n: int) -> Problem:
    classes = CLASSES[2:6]
    ops = []
    for i in range(n):
        work = rng.uniform(5, 60)
        opts = []
        for name, speed, usd_hr in classes:
            tp = rng.choice([1, 2])
            t = work / (speed * tp ** 0.8) * rng.uniform(0.8, 1.2)
            opts.append(Option(name, tp, t, t * usd_hr * tp / 3.6e6 * 1e3, t))
        ops.append(PlanOp(f"op{i}", "compute", opts))
    edges = [PlanEdge(f"op{i}", f"op{j}", rng.choice([1e6, 1e8, 1e9])) for i, j in random_dag(rng, n, 0.35)]
    links = [Link(a[0], b[0], rng.choice([100.0, 400.0]), 0.05, 0.01)
             for a, b in itertools.combinations(classes, 2)]
    p = Problem(ops, edges, [], links, SLA(None), default_link=Link("*", "*", 200.0, 0.05, 0.01),
                mip_rel_gap=1e-9)
    fastest = solve(Problem(**{**p.__dict__, "objective": "latency"}), baselines=False, explain=False)
    p.sla = SLA(fastest.e2e_ms * rng.uniform(1.05, 1.5))
    return p


def brute_force(p: Problem) -> float:
    """Cheapest placement meeting the e2e SLA, by vectorised enumeration."""
    n = len(p.ops)
    idx = {op.id: i for i, op in enumerate(p.ops)}
    k = [len(op.options) for op in p.ops]
    total = math.prod(k)
    links = {frozenset((ln.a, ln.b)): ln for ln in p.links}
    best = math.inf
    chunk = 1 << 18
    for lo in range(0, total, chunk):
        flat = np.arange(lo, min(total, lo + chunk))
        pick = []
        for i in range(n):  # mixed-radix digits: op i's option index
            pick.append(flat % k[i])
            flat = flat // k[i]
        time_of = [np.array([o.time_ms for o in op.options])[pick[i]] for i, op in enumerate(p.ops)]
        cost = sum(np.array([o.usd_per_call for o in op.options])[pick[i]] for i, op in enumerate(p.ops))
        finish = [None] * n
        for i in range(n):  # ops are generated in topological order
            start = np.zeros_like(time_of[i])
            for e in p.edges:
                if idx[e.dst] != i:
                    u = idx[e.src]
                    continue
                u = idx[e.src]
                devs_u = [o.device for o in p.ops[u].options]
                devs_v = [o.device for o in p.ops[i].options]
                ms = np.zeros((len(devs_u), len(devs_v)))
                usd = np.zeros_like(ms)
                for a, da in enumerate(devs_u):
                    for b, db in enumerate(devs_v):
                        if da != db:
                            ln = links.get(frozenset((da, db)), p.default_link)
                            ms[a, b] = ln.latency_ms + e.bytes * 8 / (ln.gbps * 1e6)
                            usd[a, b] = e.bytes / 1e9 * ln.usd_per_gb
                start = np.maximum(start, finish[u] + ms[pick[u], pick[i]])
                cost = cost + usd[pick[u], pick[i]]
            finish[i] = start + time_of[i]
        e2e = np.max(np.stack(finish), axis=0)
        ok = e2e <= p.sla.e2e_ms + 1e-9
        if ok.any():
            best = min(best, float(cost[ok].min()))
    return best


def bench_optimality(cases: int) -> None:
    print("(a) optimality: MILP cost / exhaustive optimum")
    rng = random.Random(7)
    worst = 1.0
    for c in range(cases):
        n = 4 + c % 7
        p = small_problem(rng, n)
        t0 = time.perf_counter()
        opt = brute_force(p)
        t_bf = time.perf_counter() - t0
        plan = solve(p, baselines=False, explain=False)
        ratio = plan.cost / opt
        worst = max(worst, ratio)
        print(f"  case {c:2d}: {n:2d} ops x 4 classes, {math.prod(len(o.options) for o in p.ops):8d} placements"
              f"  ratio {ratio:.6f}  milp {plan.solve_time_s * 1e3:6.1f} ms  brute force {t_bf:5.2f} s")
    print(f"  worst ratio {worst:.6f}")


def large_problem(rng: random.Random, n: int, load_rps: float = 0.0) -> Problem:
    layers, width = [], 0
    while width < n:
        size = min(n - width, rng.randint(3, 12))
        layers.append(list(range(width, width + size)))
        width += size
    edges = []
    for li in range(1, len(layers)):
        for v in layers[li]:
            for u in rng.sample(layers[li - 1], min(len(layers[li - 1]), rng.choice([1, 1, 2]))):
                edges.append((u, v))
            if li >= 2 and rng.random() < 0.1:
                edges.append((rng.choice(layers[li - 2]), v))
    ops = []
    for i in range(n):
        kind = rng.choice(["llm", "llm", "tool", "compute"])
        work = rng.uniform(2, 40)
        opts = []
        for name, speed, usd_hr in CLASSES:
            if kind == "llm" and name == "cpu":
                continue
            for tp in (1, 2, 4, 8):
                if name == "cpu" and tp > 1:
                    continue
                eff = tp ** (0.85 if kind == "llm" else 0.3)
                t = work / (speed * eff) * rng.uniform(0.9, 1.1)
                busy = t
                opts.append(Option(name, tp, t, busy * usd_hr * tp / 3.6e6 * 1e3, busy,
                                   memory_ok=not (kind == "llm" and tp == 1 and name in ("A40", "A100")
                                                  and rng.random() < 0.5)))
        ops.append(PlanOp(f"op{i}", kind, opts, weight=rng.choice([1.0, 1.0, 1.0, 2.0, 0.5])))
    plan_edges = [PlanEdge(f"op{u}", f"op{v}", rng.choice([1e5, 1e7, 1e8])) for u, v in edges]
    pools = [Pool(name, name, 4096 if name == "cpu" else 512, usd_hr) for name, _, usd_hr in CLASSES]
    p = Problem(ops, plan_edges, pools, [], SLA(None), load_rps=load_rps,
                default_link=Link("*", "*", 200.0, 0.02, 0.01), time_limit_s=30, mip_rel_gap=0.01)
    return p


def bench_scale(n: int, slack: float, load_rps: float, seed: int = 11) -> None:
    rng = random.Random(seed)
    p = large_problem(rng, n, load_rps)
    t0 = time.perf_counter()
    fastest = solve(Problem(**{**p.__dict__, "objective": "latency", "load_rps": 0.0}),
                    baselines=False, explain=False)
    p.sla = SLA(fastest.e2e_ms * slack)
    n_opt = sum(len(o.options) for o in p.ops)
    print(f"(b) scale, seed {seed}: {n} ops, {len(p.edges)} edges, 6 classes x tp {{1,2,4,8}} = {n_opt} options, "
          f"load {load_rps:g} req/s, e2e SLA {p.sla.e2e_ms:.1f} ms ({slack:g} x fastest "
          f"{fastest.e2e_ms:.1f} ms, found in {fastest.solve_time_s:.2f} s)")
    t0 = time.perf_counter()
    try:
        plan = solve(p, explain=False)
    except InfeasiblePlanError as err:
        print("  infeasible:", err.message, err.notes)
        return
    wall = time.perf_counter() - t0
    unit = "$/hr" if load_rps else "$/request"
    print(f"  MILP: status {plan.status}, solve {plan.solve_time_s:.2f} s (with baselines {wall:.2f} s), "
          f"gap {plan.gap * 100:.3f}%, cost {plan.cost:.6g} {unit}, e2e {plan.e2e_ms:.1f} ms")
    for b in plan.baselines:
        if b.feasible:
            print(f"  vs {b.name:24s} cost {b.cost:.6g}  plan/baseline {b.ratio:.3f}")
        else:
            print(f"  vs {b.name:24s} infeasible: {b.reason[:90]}")
    t0 = time.perf_counter()
    solve(p, baselines=False, explain=True)
    print(f"  solve + per-op alternatives: {time.perf_counter() - t0:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer optimality cases")
    ap.add_argument("--seeds", default="11", help="graph seeds for the scale runs, e.g. 11,12,13")
    ap.add_argument("--loads", default="0,20", help="loads in req/s for the scale runs (0: per request)")
    ap.add_argument("--scale-only", action="store_true", help="skip the optimality cases")
    args = ap.parse_args()
    if not args.scale_only:
        bench_optimality(7 if args.quick else 14)
    for seed in (int(x) for x in args.seeds.split(",")):
        for load in (float(x) for x in args.loads.split(",")):
            bench_scale(500, 1.3, load, seed)


if __name__ == "__main__":
    main()
