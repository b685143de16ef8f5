"""Plan quality on the shipped examples: the MILP plan's cost as a ratio of the best
homogeneous baseline and of greedy list scheduling, all measured in the same run
(below 1: agentc's heterogeneous plan is cheaper). Also the compile time per stage
group, as a ratio of the frontend's time.

Run: python benchmarks/bench_examples.py
"""

from __future__ import annotations

import glob
import os
import time

from agentc import pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    print(f"{'example':26s} {'unit':10s} {'plan':>10s} {'best homog.':>22s} {'ratio':>7s} {'greedy':>7s}")
    for path in sorted(glob.glob(os.path.join(ROOT, "examples", "*.agent"))):
        name = os.path.basename(path)
        cluster = os.path.join(ROOT, "examples", "clusters", "table3.toml") if name == "table3.agent" else None
        t0 = time.perf_counter()
        pipeline.compile_file(path, pipeline.Options(emit="agent", cluster=cluster))
        t_front = time.perf_counter() - t0
        t0 = time.perf_counter()
        c = pipeline.compile_file(path, pipeline.Options(emit="placed", cluster=cluster))
        t_place = time.perf_counter() - t0
        plan = c.plan
        homog = [b for b in plan.baselines if b.feasible and b.name.startswith("homogeneous")]
        best = min(homog, key=lambda b: b.cost) if homog else None
        greedy = next((b for b in plan.baselines if b.name.startswith("greedy") and b.feasible), None)
        unit = "$/hr" if plan.usd_per_hr is not None else "$/request"
        print(f"{name:26s} {unit:10s} {plan.cost:10.4g} "
              f"{(f'{best.cost:.4g} ({best.name[12:]})' if best else 'none feasible'):>22s} "
              f"{(plan.cost / best.cost if best else float('nan')):7.3f} "
              f"{(plan.cost / greedy.cost if greedy else float('nan')):7.3f}"
              f"   place/frontend time {t_place / t_front:5.1f}x")


if __name__ == "__main__":
    main()
