"""Compile time per target for the voice example on the built-in cluster.

Each target (`--targets cpu|nvvm|rocdl`) is built alone to `objects`, so its time is
the code generation for the pools of that target (plus their host programs); the
figures are ratios against the time to reach `placed` (parse, decompose, cost, MILP),
measured in the same run. Absolute seconds are printed for context only.

Run: python benchmarks/bench_compile.py
"""

from __future__ import annotations

import os
import time

from agentc import pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOICE = os.path.join(ROOT, "examples", "voice_agent.agent")


def _timed(**options) -> tuple[float, pipeline.Compilation]:
    t0 = time.perf_counter()
    c = pipeline.compile_file(VOICE, pipeline.Options(**options))
    return time.perf_counter() - t0, c


def main() -> None:
    _timed(emit="placed")                        # warm imports and caches
    base, _ = _timed(emit="placed")
    print(f"voice_agent.agent: up to 'placed' {base:.2f} s (the baseline)")
    print(f"{'target':8s} {'pools':24s} {'files':>5s} {'codegen / baseline':>19s}")
    for target in ("cpu", "nvvm", "rocdl"):
        total, c = _timed(emit="objects", targets=(target,))
        meta = c.artifact_meta
        pools = sorted({m["pool"] for m in meta.values() if m["target"] == target and m["kind"] != "mlir"})
        files = sum(1 for m in meta.values() if m["target"] == target and m["kind"] != "mlir")
        print(f"{target:8s} {','.join(pools):24s} {files:5d} {(total - base) / base:19.2f}"
              f"   ({total - base:.1f} s)")


if __name__ == "__main__":
    main()
