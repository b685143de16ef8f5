"""How well does the analytic cost model predict this CPU, once calibrated?

Calibrates the host (numpy GEMM rate, copy bandwidth, call overhead), loads the written
profile back as a catalog device, then compares the cost model's predicted time with
the measured time for numpy matmul (compute-bound) and matrix-vector products
(memory-bound) at sizes 64..2048 and for a large memory copy. Prints predicted /
measured per case (1.0 = exact; < 1 means the model is optimistic) and the geometric
mean per family. Run: python benchmarks/bench_costmodel.py [--quick]

The model has one memory level (DRAM), so matrix-vector products whose matrix fits in
cache run faster than predicted (ratio > 1) until the matrix outgrows the last-level
cache. On a shared or loaded host, `OPENBLAS_NUM_THREADS=1` gives steadier figures;
calibration and measurement always run in the same process, so thread counts match.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile

import numpy as np

from agentc.calibrate import best_time_s, calibrate_cpu, write_profile
from agentc.catalog import load_device_profile
from agentc.costmodel import op_cost

SIZES = (64, 128, 256, 512, 1024, 2048)


def predicted_ms(device, flops: float, nbytes: float) -> float:
    return op_cost("compute.cpu", {"flops": flops, "bytes": nbytes}, None, device).time_ms


def main(quick: bool = False) -> None:
    repeats = 3 if quick else 7
    data = calibrate_cpu(name="bench-host", sizes=(256, 512, 1024), repeats=repeats, copy_mb=64 if quick else 256)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "host.toml")
        write_profile(path, data)
        device = load_device_profile(path)
    print(f"calibrated: {device.fp32_tflops * 1e3:.1f} GFLOP/s fp32, {device.mem_gbps:.2f} GB/s copy, "
          f"{device.launch_us:.2f} us per call ({data['measured']['cpu_model']}, "
          f"{data['measured']['logical_cpus']} CPUs)")
    print(f"{'case':<22}{'measured ms':>14}{'predicted ms':>14}{'pred/meas':>11}")
    rng = np.random.default_rng(0)
    families: dict[str, list[float]] = {}

    def report(family: str, label: str, measured_s: float, pred_ms: float) -> None:
        ratio = pred_ms / (measured_s * 1e3)
        families.setdefault(family, []).append(ratio)
        print(f"{label:<22}{measured_s * 1e3:>14.4f}{pred_ms:>14.4f}{ratio:>11.3f}")

    for n in SIZES:
        a = rng.standard_normal((n, n)).astype(np.float32)
        b = rng.standard_normal((n, n)).astype(np.float32)
        out = np.empty((n, n), np.float32)
        t = best_time_s(lambda: np.matmul(a, b, out=out), repeats, min_time_s=0.02)
        report("matmul", f"matmul {n}", t, predicted_ms(device, 2 * n**3, 3 * n * n * 4))
    for n in SIZES:
        a = rng.standard_normal((n, n)).astype(np.float32)
        x = rng.standard_normal(n).astype(np.float32)
        y = np.empty(n, np.float32)
        t = best_time_s(lambda: np.matmul(a, x, out=y), repeats, min_time_s=0.02)
        report("matvec", f"matvec {n}", t, predicted_ms(device, 2 * n * n, (n * n + 2 * n) * 4))
    count = (64 if quick else 256) * 1_000_000 // 8
    src, dst = np.ones(count), np.empty(count)
    t = best_time_s(lambda: np.copyto(dst, src), repeats)
    report("copy", f"copy {src.nbytes // 1_000_000} MB", t, predicted_ms(device, 0, 2 * src.nbytes))
    print("geometric mean pred/meas: " + ", ".join(
        f"{fam} {math.exp(sum(map(math.log, rs)) / len(rs)):.3f}" for fam, rs in families.items()))


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
