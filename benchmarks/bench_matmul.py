"""CPU codegen against numpy on the same machine and thread count.

Measures the generated `linalg.matmul` kernel (512x512x512 fp32 by default) and one
prefill decoder layer against numpy doing the same work, once per thread count: the
kernels are compiled with `threads=T` and numpy's BLAS is pinned to T threads.
OpenBLAS fixes its thread count when numpy loads, so each thread count runs in a
child process of this script (OPENBLAS_NUM_THREADS set before the import).

Timings are the best of several rounds; each round times the kernel and numpy back
to back, so both see the same background load (the machine may be shared). Prints
GFLOP/s and ratios (agentc / numpy); it asserts nothing about time.

    python benchmarks/bench_matmul.py [--threads 1 2] [--size 512] [--tile 6 16 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="thread counts to compare at (default: 1 2)")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--tile", type=int, nargs=3, default=None,
                   help="matmul register tile m n k (default: the cpu target's)")
    p.add_argument("--rounds", type=int, default=10, help="timing rounds (best is kept)")
    p.add_argument("--repeat", type=int, default=20, help="calls timed per round")
    p.add_argument("--prefill", default="128,512,8,2,1376",
                   help="seq,d_model,heads,kv_heads,ffn for the prefill-layer comparison")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    return p.parse_args()


def _best_pair(gen, ref, rounds: int, repeat: int) -> tuple[float, float]:
    """Best seconds per call of `gen` and `ref`, timed alternately round by round."""
    gen(), ref()  # warm-up
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for i, fn in enumerate((gen, ref)):
            for _ in range(repeat):
                start = time.perf_counter()
                fn()
                best[i] = min(best[i], time.perf_counter() - start)
    return best[0], best[1]


def _measure(args: argparse.Namespace, threads: int) -> dict:
    """Runs in the child process: numpy is already pinned to `threads`."""
    # The numpy reference lives with the tests, apart from the code it checks.
    sys.path.insert(0, os.path.join(ROOT, "test", "python"))
    import numpy as np
    from references.kernels_ref import ref_prefill_layer

    from agentc.codegen import kernels
    from agentc.codegen.jit import jit

    tile = {"tile": tuple(args.tile)} if args.tile else {}
    rng = np.random.default_rng(0)
    n = args.size
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    kernel = jit(kernels.matmul(n, n, n), threads=threads, **tile)
    out = [np.zeros((n, n), np.float32)]
    err = float(np.abs(kernel(a, b, outputs=out)[0] - a @ b).max())
    t_gen, t_np = _best_pair(lambda: kernel(a, b, outputs=out), lambda: a @ b, args.rounds, args.repeat)
    result = {"threads": threads, "n": n, "matmul_err": err, "matmul_flops": 2.0 * n ** 3,
              "matmul_s": t_gen, "matmul_numpy_s": t_np}

    seq, d, heads, kv_heads, ffn = (int(x) for x in args.prefill.split(","))
    hd = d // heads
    shapes = [(seq, d), (seq, hd // 2), (seq, hd // 2), (d,), (d, d), (d, kv_heads * hd),
              (d, kv_heads * hd), (d, d), (d,), (d, ffn), (d, ffn), (ffn, d)]
    weights = [rng.standard_normal(s, dtype=np.float32) / np.sqrt(s[0]) for s in shapes]
    layer = jit(kernels.prefill_layer(seq, d, heads, kv_heads, ffn), threads=threads, **tile)
    ref = lambda: ref_prefill_layer(*weights, heads=heads, kv_heads=kv_heads)  # noqa: E731
    out = [np.zeros((seq, d), np.float32)] + [np.zeros((seq, kv_heads * hd), np.float32) for _ in 'kv']
    err = float(np.abs(layer(*weights, outputs=out)[0] - ref()[0]).max())
    t_gen, t_np = _best_pair(lambda: layer(*weights, outputs=out), ref, args.rounds,
                             max(2, args.repeat // 3))
    result.update(prefill=args.prefill, layer_err=err, layer_s=t_gen, layer_numpy_s=t_np,
                  layer_flops=2.0 * seq * (2 * d * d + 2 * d * kv_heads * hd + 3 * d * ffn)
                  + 4.0 * seq * seq * d)
    return result


def _run_child(threads: int) -> dict:
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    done = subprocess.run([sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--child", str(threads)],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"benchmark child for threads={threads} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _report(r: dict) -> None:
    n, gf = r["n"], lambda flops, s: flops / s / 1e9
    print(f"threads={r['threads']} (agentc kernels compiled with threads={r['threads']}, "
          f"numpy pinned to {r['threads']})")
    print(f"  matmul {n}x{n}x{n} f32 (max abs err {r['matmul_err']:.1e}): "
          f"agentc {gf(r['matmul_flops'], r['matmul_s']):6.1f} GFLOP/s   "
          f"numpy {gf(r['matmul_flops'], r['matmul_numpy_s']):6.1f} GFLOP/s   "
          f"ratio {r['matmul_numpy_s'] / r['matmul_s']:.2f}")
    print(f"  prefill layer {r['prefill']} (max abs err {r['layer_err']:.1e}): "
          f"agentc {r['layer_s'] * 1e3:6.2f} ms ({gf(r['layer_flops'], r['layer_s']):.1f} GFLOP/s)   "
          f"numpy {r['layer_numpy_s'] * 1e3:6.2f} ms ({gf(r['layer_flops'], r['layer_numpy_s']):.1f} "
          f"GFLOP/s)   ratio {r['layer_numpy_s'] / r['layer_s']:.2f}")


def main() -> None:
    args = _parse()
    if args.child is not None:
        print(json.dumps(_measure(args, args.child)))
        return
    cores = os.cpu_count()
    print(f"{cores} cores; load average {os.getloadavg()[0]:.2f} before the run (other work on the "
          "machine slows both sides, numpy's 2-thread BLAS the most)")
    for threads in args.threads:
        _report(_run_child(threads))


if __name__ == "__main__":
    main()
