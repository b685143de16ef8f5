"""Simulation agreement (issue 17): the planner's predicted percentiles against the
simulated ones, for every example with a plan on the built-in cluster, at three loads.

Loads: light (a tenth of the planned load), the planned load (the `load` clause; the
voice agent has none and is checked at `plan --verify`'s 1 req/s), and 90% of the
capacity the plan buys (verify.capacity_rps: the busiest pool busy all the time; the
voice agent rents per use, so its pools' whole counts). Where the plan misses at a
load, `--repair` (verify.repair) is applied and the row says what it did; planned
values are then those of the repaired plan. Ratio = planned / simulated: within 10%
is 0.90-1.10 (a ratio above 1 is a conservative prediction).

Also prints the sampling error of the simulated percentiles at the request count used
(--requests): the relative spread of each term over --seeds seeds at the planned load.

Run: python benchmarks/bench_agreement.py [--requests 2000] [--seeds 5] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from agentc import pipeline
from agentc.cli._common import make_options
from agentc.cli.plan import planner_at
from agentc.passes.place import pool_price
from agentc.sim import verify
from agentc.targets import manifest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = ("voice_agent", "rag_agent", "react_tools", "supervisor")   # table3: no plan on the built-in cluster
LOADS = ("light", "planned", "90% capacity")


def plan_of(name: str):
    """The example's compilation (to `placed`), its manifest and its pool prices."""
    import json

    c = pipeline.compile_file(os.path.join(REPO, "examples", f"{name}.agent"), make_options(emit="placed"),
                              or_later=True)
    pipeline.placement(c)
    view = json.loads(manifest.dumps(manifest.build(c)))
    cluster = c.pass_ctx.cluster
    return c, view, {p.name: pool_price(p.device, cluster) for p in cluster.pools}


def loads_of(view: dict) -> dict[str, float]:
    planned = (view.get("sla") or {}).get("load_rps") or verify.LIGHT_LOAD_RPS
    return {"light": planned / 10.0, "planned": planned, "90% capacity": 0.9 * verify.capacity_rps(view)}


def rows(name: str, requests: int, seed: int = 0) -> list[dict]:
    """One row per load and SLA term: planned, simulated, ratio, attainment, repair."""
    c, view, prices = plan_of(name)
    out = []
    for label, rate in loads_of(view).items():
        final, verdict, rep = verify.hold(view, rate, prices, planner_at(c), requests, seed)
        did = "-"
        if rep is not None:
            did = (f"re-planned for {rep.replanned_rps:g} req/s; " if rep.replanned_rps is not None else "") + \
                (", ".join(f"{k} {n:+d}" for k, n in rep.added.items()) or "no devices") + \
                f"; {rep.usd_per_hr_before:.2f} -> {rep.usd_per_hr_after:.2f} $/hr"
        for t in verdict.terms:
            out.append({"example": name, "load": label, "rps": rate, "term": t["term"],
                        "judged": "mean" if t["percentile"] is None else f"p{t['percentile']:g}",
                        "bound_ms": t["bound_ms"], "planned_ms": t["planned_ms"], "simulated_ms": t["observed_ms"],
                        "ratio": t["planned_ms"] / t["observed_ms"] if t["observed_ms"] else float("inf"),
                        "attained": t["attained"], "holds": t["holds"], "repair": did})
    return out


def sampling_error(name: str, requests: int, seeds: int) -> dict[str, float]:
    """Relative spread (std / mean) of each simulated term over `seeds` seeds at the planned load."""
    _, view, _ = plan_of(name)
    rate = loads_of(view)["planned"]
    vals: dict[str, list[float]] = {}
    for s in range(seeds):
        for t in verify.verify(view, rate, requests, s).terms:
            vals.setdefault(t["term"], []).append(t["observed_ms"])
    return {k: float(np.std(v, ddof=1) / np.mean(v)) for k, v in vals.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=verify.DEFAULT_VERIFY_REQUESTS)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--examples", default=",".join(EXAMPLES))
    args = ap.parse_args(argv)
    names = [n for n in args.examples.split(",") if n]
    print(f"simulated requests per point: {args.requests} (seed 0)")
    print("| example | load | req/s | term | bound ms | planned ms | simulated ms | planned/sim | met by | holds |"
          " repair |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    within = total = 0
    for name in names:
        for r in rows(name, args.requests):
            ok = 0.9 <= r["ratio"] <= 1.1
            within += ok
            total += 1
            print(f"| {r['example']} | {r['load']} | {r['rps']:.3g} | {r['term']} ({r['judged']}) | {r['bound_ms']:g} |"
                  f" {r['planned_ms']:.4g} | {r['simulated_ms']:.4g} | {r['ratio']:.3f}{'' if ok else ' *'} |"
                  f" {100 * r['attained']:.2f}% | {'yes' if r['holds'] else 'NO'} | {r['repair']} |")
            sys.stdout.flush()
    print(f"\nwithin 10%: {within} of {total} terms (* = outside)")
    if args.seeds > 1:
        print(f"\nsampling error at {args.requests} requests (std/mean over {args.seeds} seeds, planned load):")
        for name in names:
            err = sampling_error(name, args.requests, args.seeds)
            print(f"  {name}: " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in err.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
