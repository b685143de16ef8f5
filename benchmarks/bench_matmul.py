"""CPU codegen against numpy on the same machine and thread count.

Measures the generated `linalg.matmul` kernel (512x512x512 fp32 by default) and one
prefill decoder layer against numpy doing the same work. numpy's BLAS thread count is
pinned through OPENBLAS_NUM_THREADS before numpy loads, so run this script once per
thread count (`--threads 1`, the default, matches the single-threaded kernels).
Prints GFLOP/s and ratios; it asserts nothing about time.

    python benchmarks/bench_matmul.py [--threads 1] [--size 512] [--tile 8 32 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--tile", type=int, nargs=3, default=(8, 32, 1))
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--prefill", default="128,512,8,2,1376",
                   help="seq,d_model,heads,kv_heads,ffn for the prefill-layer comparison")
    return p.parse_args()


def _best_seconds(fn, repeat: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    args = _parse()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import numpy as np

    from agentc import kernels
    from targets import cpu

    rng = np.random.default_rng(0)
    n = args.size
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    kernel = cpu.jit(kernels.matmul(n, n, n), tile=tuple(args.tile))
    out = [np.zeros((n, n), np.float32)]
    err = float(np.abs(kernel(a, b, outputs=out)[0] - a @ b).max())
    flops = 2.0 * n ** 3
    t_gen = _best_seconds(lambda: kernel(a, b, outputs=out), args.repeat)
    t_np = _best_seconds(lambda: a @ b, args.repeat)
    print(f"threads={args.threads} (agentc kernels are single-threaded)")
    print(f"matmul {n}x{n}x{n} f32, tile {tuple(args.tile)}: max abs err {err:.2e}")
    print(f"  agentc {flops / t_gen / 1e9:8.1f} GFLOP/s   numpy {flops / t_np / 1e9:8.1f} GFLOP/s"
          f"   ratio {t_np / t_gen:.2f}")

    seq, d, heads, kv_heads, ffn = (int(x) for x in args.prefill.split(","))
    hd = d // heads
    shapes = [(seq, d), (d,), (d, d), (d, kv_heads * hd), (d, kv_heads * hd), (d, d), (d,),
              (d, ffn), (d, ffn), (ffn, d)]
    weights = [rng.standard_normal(s, dtype=np.float32) / np.sqrt(s[0]) for s in shapes]
    layer = cpu.jit(kernels.prefill_layer(seq, d, heads, kv_heads, ffn), tile=tuple(args.tile))
    ref = lambda: kernels.ref_prefill_layer(*weights, heads=heads, kv_heads=kv_heads)  # noqa: E731
    out = [np.zeros((seq, d), np.float32)]
    err = float(np.abs(layer(*weights, outputs=out)[0] - ref()).max())
    layer_flops = 2.0 * seq * (2 * d * d + 2 * d * kv_heads * hd + 3 * d * ffn) + 4.0 * seq * seq * d
    t_gen = _best_seconds(lambda: layer(*weights, outputs=out), max(3, args.repeat // 4))
    t_np = _best_seconds(ref, max(3, args.repeat // 4))
    print(f"prefill layer seq={seq} d={d} heads={heads}/{kv_heads} ffn={ffn}: max abs err {err:.2e}")
    print(f"  agentc {t_gen * 1e3:8.2f} ms ({layer_flops / t_gen / 1e9:.1f} GFLOP/s)   numpy "
          f"{t_np * 1e3:8.2f} ms ({layer_flops / t_np / 1e9:.1f} GFLOP/s)   ratio {t_np / t_gen:.2f}")


if __name__ == "__main__":
    main()
