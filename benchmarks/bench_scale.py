"""How compile time grows with the graph and the cluster (issue 15).

Generates chains, fan-outs and nested loops of N tool calls ending in one LLM call, and
clusters of P CPU pools, and times `agentc compile` to `placed` and (up to
--full-max nodes) a full compile for the CPU target, each in a fresh process. Prints
wall and CPU seconds (user + system; the steadier figure on a shared machine), peak
memory and, per shape, the growth exponent k fitted to time ~ n^k (the goal is
k <= 1.2), so the figures compare with each other within one run. With --baseline, an
older source tree (`git archive BASE | tar -x -C DIR`) runs every case right after this
one, and the row shows the ratio of their CPU times.

    python benchmarks/bench_scale.py [--sizes 100,1000,5000] [--pools 10,100,1000] [--full-max 1000]
                                     [--placed-max N] [--shapes chain,fanout] [--baseline DIR]
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


def baseline_tree(checkout: str, tmp: str) -> str:
    """A directory to put first on PYTHONPATH so that `import agentc` loads `checkout`
    (an agentc source tree, e.g. `git archive BASE | tar -x -C DIR`) instead of the
    installed one: agentc/ with the top-level dialects/, passes/ and targets/ linked in
    where pyproject.toml's package-dir puts them."""
    root = os.path.join(tmp, "baseline-path")
    pkg = os.path.join(root, "agentc")
    os.makedirs(pkg)
    for name in os.listdir(os.path.join(checkout, "agentc")):
        os.symlink(os.path.abspath(os.path.join(checkout, "agentc", name)), os.path.join(pkg, name))
    for name in ("dialects", "passes", "targets"):
        os.symlink(os.path.abspath(os.path.join(checkout, name)), os.path.join(pkg, name))
    found = subprocess.run([sys.executable, "-c", "import agentc; print(agentc.__file__)"], cwd=tmp,
                           env=dict(os.environ, PYTHONPATH=root), capture_output=True, text=True).stdout.strip()
    if not found.startswith(root):
        raise SystemExit(f"the baseline does not load: `import agentc` gives {found or 'an error'}")
    return root


def run(args: list[str], path: str | None = None, cwd: str | None = None) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak resident MiB of one agentc
    process, from its own rusage; `path`: a baseline_tree to run instead. The machine may
    be shared: CPU time is the steadier figure, wall time what a user waits. `cwd`: a
    directory without an `agentc` package (`python -m` puts the working directory
    first on sys.path, so from a checkout's root the baseline would run that checkout)."""
    env = dict(os.environ, PYTHONPATH=path) if path else None
    t = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "agentc", *args], stdout=subprocess.DEVNULL, stderr=err,
                                env=env, cwd=cwd)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(f"agentc {' '.join(args)} failed:\n{err.read().decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def exponent(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log(time) on log(n)."""
    if len(points) < 2:
        return None
    xs, ys = [math.log(n) for n, _ in points], [math.log(t) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def _k(points: list[tuple[int, float]]) -> str:
    k = exponent(points)
    return "-" if k is None else f"{k:.2f}"


class Table:
    """Rows of one case measured by this checkout and, with --baseline, by the baseline
    right after it (so both see the same load); ratios are this / baseline CPU time."""

    def __init__(self, base: str | None, cwd: str):
        self.base, self.cwd = base, cwd
        head = f"{'case':20s} {'wall s':>8s} {'cpu s':>8s} {'MiB':>6s}"
        if base:
            head += f" {'base cpu':>9s} {'cpu ratio':>9s} {'base wall':>9s}"
        print(head, flush=True)

    def case(self, label: str, args: list[str], series: dict[str, list]) -> None:
        wall, cpu, mem = run(args, cwd=self.cwd)
        series.setdefault("wall", []).append(wall)
        series.setdefault("cpu", []).append(cpu)
        row = f"{label:20s} {wall:8.2f} {cpu:8.2f} {mem:6.0f}"
        if self.base:
            bwall, bcpu, _ = run(args, self.base, self.cwd)
            series.setdefault("base cpu", []).append(bcpu)
            row += f" {bcpu:9.2f} {cpu / bcpu:9.2f} {bwall:9.2f}"
        print(row, flush=True)

    @staticmethod
    def growth(what: str, ns: list[int], series: dict[str, list]) -> None:
        if len(ns) < 2:
            return
        fits = ", ".join(f"{name} {_k(list(zip(ns, ts)))}" for name, ts in series.items())
        print(f"{what}: growth exponent k (time ~ n^k): {fits}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,1000,5000")
    ap.add_argument("--pools", default="10,100,1000", help="pool counts ('' for none)")
    ap.add_argument("--shapes", default="chain,fanout,nested")
    ap.add_argument("--full-max", type=int, default=1000, help="largest graph compiled in full")
    ap.add_argument("--placed-max", type=int, default=None, help="largest graph compiled to `placed`")
    ap.add_argument("--baseline", default=None, metavar="CHECKOUT",
                    help="an agentc source tree to time beside this one, case by case")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        table = Table(baseline_tree(a.baseline, tmp) if a.baseline else None, tmp)
        for shape in a.shapes.split(","):
            placed, full = {}, {}
            placed_ns, full_ns = [], []
            for n in sizes:
                src = os.path.join(tmp, f"{shape}{n}.agent")
                with open(src, "w") as f:
                    f.write(program(shape, n))
                if a.placed_max is None or n <= a.placed_max:
                    table.case(f"{shape} {n} placed", ["compile", src, "--emit", "placed", "-o",
                                                       os.path.join(tmp, "p.mlir")], placed)
                    placed_ns.append(n)
                if n <= a.full_max:
                    table.case(f"{shape} {n} full", ["compile", src, "--targets", "cpu", "-q", "-o",
                                                     os.path.join(tmp, "out")], full)
                    full_ns.append(n)
            table.growth(f"{shape} placed", placed_ns, placed)
            table.growth(f"{shape} full", full_ns, full)
        pool_counts = [int(s) for s in a.pools.split(",") if s.strip()]
        if pool_counts:
            src = os.path.join(tmp, "chain100.agent")
            with open(src, "w") as f:
                f.write(program("chain", 100))
            series: dict[str, list] = {}
            for p in pool_counts:
                cl = os.path.join(tmp, f"pools{p}.toml")
                with open(cl, "w") as f:
                    f.write(cluster(p))
                table.case(f"pools {p} placed", ["compile", src, "--cluster", cl, "--emit", "placed", "-o",
                                                 os.path.join(tmp, "p.mlir")], series)
            table.growth("pools placed", pool_counts, series)


if __name__ == "__main__":
    main()
