"""How compile time grows with the graph and the cluster (issue 15).

Generates chains, fan-outs and nested loops of N tool calls ending in one LLM call, and
clusters of P CPU pools, and times `agentc compile` to `placed` and (up to
--full-max nodes) a full compile for the CPU target, each in a fresh process. Prints
seconds, peak memory and, per shape, the growth exponent k fitted to time ~ n^k (the
goal is k <= 1.2), so the figures compare with each other within one run.

    python benchmarks/bench_scale.py [--sizes 100,1000,5000] [--pools 10,100,1000] [--full-max 1000]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time


def program(shape: str, n: int) -> str:
    head = ["model m = llama3-8b", "", "agent main(q: text) -> text {"]
    if shape == "chain":
        body = ["  x0 = tool t0(q, latency=5ms, payload=1KB)"]
        body += [f"  x{i} = tool t{i}(x{i - 1}, latency=5ms, payload=1KB)" for i in range(1, n)]
        last = f"x{n - 1}"
    elif shape == "fanout":
        body = [f"  x{i} = tool t{i}(q, latency=5ms, payload=1KB)" for i in range(n)]
        last = "[" + ", ".join(f"x{i}" for i in range(n)) + "]"
    else:  # nested: a new loop around every 10 calls, up to 20 deep
        body, depth = ["  x = tool t0(q, latency=5ms, payload=1KB)"], 0
        for i in range(1, n):
            if i % 10 == 0 and depth < 20:
                body.append("  " * (depth + 1) + "loop max 2 while 0.5 {")
                depth += 1
            body.append("  " * (depth + 1) + f"x = tool t{i}(x, latency=5ms, payload=1KB)")
        body += ["  " * d + "}" for d in range(depth, 0, -1)]
        last = "x"
    return "\n".join(head + body + [f"  return llm(m, {last}, in=64, out=16)", "}"]) + "\n"


def cluster(pools: int) -> str:
    lines = ['name = "scale"', ""]
    for i in range(pools):
        lines += ["[[pool]]", f'name = "cpu{i}"', 'device = "epyc-9654"', "count = 8", ""]
    lines += ["[[pool]]", 'name = "gpu"', 'device = "H100"', "count = 8", "",
              "[default_link]", "gbps = 100", "latency_ms = 0.05", ""]
    return "\n".join(lines)


def run(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident MiB of one agentc process (its own rusage)."""
    t = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "agentc", *args], stdout=subprocess.DEVNULL, stderr=err)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(f"agentc {' '.join(args)} failed:\n{err.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def exponent(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log(time) on log(n)."""
    if len(points) < 2:
        return None
    xs, ys = [math.log(n) for n, _ in points], [math.log(t) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,1000,5000")
    ap.add_argument("--pools", default="10,100,1000")
    ap.add_argument("--shapes", default="chain,fanout,nested")
    ap.add_argument("--full-max", type=int, default=1000, help="largest graph compiled in full")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'case':22s} {'placed s':>9s} {'MiB':>6s} {'full s':>8s} {'MiB':>6s}")
        for shape in a.shapes.split(","):
            placed, full = [], []
            for n in sizes:
                src = os.path.join(tmp, f"{shape}{n}.agent")
                with open(src, "w") as f:
                    f.write(program(shape, n))
                t, mem = run(["compile", src, "--emit", "placed", "-o", os.path.join(tmp, "p.mlir")])
                placed.append((n, t))
                row = f"{shape} n={n:<14d} {t:9.2f} {mem:6.0f}"
                if n <= a.full_max:
                    tf, memf = run(["compile", src, "--targets", "cpu", "-q", "-o", os.path.join(tmp, "out")])
                    full.append((n, tf))
                    row += f" {tf:8.2f} {memf:6.0f}"
                print(row, flush=True)
            kp, kf = exponent(placed), exponent(full)
            if kp is not None:
                print(f"{shape}: growth exponent k (time ~ n^k): placed {kp:.2f}"
                      + (f", full {kf:.2f}" if kf is not None else ""), flush=True)
        src = os.path.join(tmp, "chain100.agent")
        with open(src, "w") as f:
            f.write(program("chain", 100))
        pts = []
        for p in [int(s) for s in a.pools.split(",")]:
            cl = os.path.join(tmp, f"pools{p}.toml")
            with open(cl, "w") as f:
                f.write(cluster(p))
            t, mem = run(["compile", src, "--cluster", cl, "--emit", "placed", "-o", os.path.join(tmp, "p.mlir")])
            pts.append((p, t))
            print(f"pools={p:<16d} {t:9.2f} {mem:6.0f}", flush=True)
        if exponent(pts) is not None:
            print(f"pools: growth exponent k (time ~ pools^k): placed {exponent(pts):.2f}")


if __name__ == "__main__":
    main()
