"""How well does the analytic cost model predict measured times?

Two parts. With no arguments: this CPU, calibrated and then measured (below). With
`--table FILE.csv --device NAME` (a measurement table, docs/calibration.md; any number
of pairs): per kernel and per layer (the sum of one row's layer kernels: the
non-attention layer time), predicted / measured by regime (decode-like <= 64 tokens,
prefill-like >= 512, mid between), geomean and share within 10% and 25%, first with
the catalog's numbers and then with the device fitted on the table; `--holdout TEXT`
fits on the rows whose `source` does not contain TEXT and reports both parts apart.
All-reduce rows are reported above 1 MiB. Run:
python benchmarks/bench_costmodel.py --table h100.csv --device H100 --holdout Llama-2-7b

Calibrates the host (`agentc calibrate`'s measurement: GEMM rate by size at n = 32..2048,
streaming-read and copy bandwidth by working set at 16 KB..512 MB, the call overhead),
loads the written profile back as a catalog device, then compares the cost model's
predicted time with measured numpy matmul, matrix-vector and copy times at shapes the
calibration did not measure: squares between its sizes, rectangles, copies between its
working sets. Prints predicted / measured per case (1.0 = exact; < 1 means the model is
optimistic) and per family the geometric mean and the share within 10% and 25%. Every
case is then timed a second time: "again/meas" is this machine's own repeatability, the
floor under any model's accuracy. Run:
python benchmarks/bench_costmodel.py [--quick]

CPU timings need a quiet machine: on a shared host every figure moves, calibration and
measurement alike (they run in the same process).
"""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np

from agentc.calibrate import best_time_s, calibrate_cpu, write_profile
from agentc.costmodel.fit import accuracy, predict_rows
from agentc.catalog import load_device_profile
from agentc.costmodel import op_cost

# Held out: none of these shapes is one the calibration measured.
MATMUL_SHAPES = [(n, n, n) for n in (48, 96, 192, 384, 768, 1536)] + [(n, 2 * n, n // 2) for n in (96, 384, 1536)]
MATVEC_SHAPES = [(n, n) for n in (96, 192, 384, 768, 1536, 3072, 6144)] + [(n, 4 * n) for n in (192, 768, 3072)]
# Copies (source bytes), float64 as the issue measured: 256 MB is the case; the
# others sit between the calibration's working sets (powers of two), in cache and out.
COPY_BYTES = (96 << 10, 3 << 19, 24 << 20, 64_000_000, 256_000_000)


def predicted_ms(device, flops: float, nbytes: float, written: float = 0.0) -> float:
    attrs = {"flops": flops, "bytes": nbytes, "bytes_written": written}
    return op_cost("compute.cpu", attrs, None, device).time_ms


def cases(device, quick: bool):
    """(family, label, call, predicted ms) for every held-out shape."""
    rng = np.random.default_rng(0)
    out = []
    for m, k, n in MATMUL_SHAPES:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        c = np.empty((m, n), np.float32)
        out.append(("matmul", f"matmul {m}x{k}x{n}", lambda a=a, b=b, c=c: np.matmul(a, b, out=c),
                    predicted_ms(device, 2 * m * k * n, (m * k + k * n) * 4, m * n * 4)))
    for m, k in MATVEC_SHAPES:
        a, x, y = np.ones((m, k), np.float32), np.ones(k, np.float32), np.empty(m, np.float32)
        out.append(("matvec", f"matvec {m}x{k}", lambda a=a, x=x, y=y: np.matmul(a, x, out=y),
                    predicted_ms(device, 2 * m * k, (m * k + k) * 4, m * 4)))
    for nbytes in COPY_BYTES[-2:-1] if quick else COPY_BYTES:
        src = np.ones(nbytes // 8)
        dst = np.empty_like(src)
        label = (f"copy {nbytes / 1e6:g} MB" if nbytes % 1_000_000 == 0 else
                 f"copy {nbytes / 2**20:g} MiB" if nbytes >= 1 << 20 else f"copy {nbytes >> 10} KiB")
        out.append(("copy", label, lambda s=src, d=dst: np.copyto(d, s),
                    predicted_ms(device, 0, src.nbytes, src.nbytes)))
    return out


def main(quick: bool = False) -> None:
    repeats = 3 if quick else 7
    data = calibrate_cpu(name="bench-host", repeats=repeats, copy_mb=64 if quick else 256)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "host.toml")
        write_profile(path, data)
        device = load_device_profile(path)
    print(f"calibrated: {device.fp32_tflops * 1e3:.1f} GFLOP/s fp32, {device.mem_gbps:.2f} GB/s DRAM read, "
          f"{device.launch_us:.2f} us per call ({data['measured']['cpu_model']}, "
          f"{data['measured']['logical_cpus']} CPUs)")
    todo = cases(device, quick)
    first = [best_time_s(call, repeats, min_time_s=0.02) for _, _, call, _ in todo]
    # The same cases again: how well this machine reproduces its own timings is the
    # floor under any model's accuracy here (a VM's neighbours move every figure).
    again = [best_time_s(call, repeats, min_time_s=0.02) for _, _, call, _ in todo]
    print(f"{'case':<22}{'measured ms':>14}{'predicted ms':>14}{'pred/meas':>11}{'again/meas':>12}")
    families: dict[str, list[float]] = {}
    repeat: dict[str, list[float]] = {}
    for (family, label, _, pred_ms), t, t2 in zip(todo, first, again):
        ratio = pred_ms / (t * 1e3)
        families.setdefault(family, []).append(ratio)
        repeat.setdefault(family, []).append(t2 / t)
        print(f"{label:<22}{t * 1e3:>14.4f}{pred_ms:>14.4f}{ratio:>11.3f}{t2 / t:>12.3f}")
    for fam, rs in families.items():
        print(_line(f"{fam} pred/meas", rs))
        print(_line(f"{fam} measured again/meas", repeat[fam]))


def _regime(tokens: float) -> str:
    return "decode<=64" if tokens <= 64 else "prefill>=512" if tokens >= 512 else "mid"


def _line(label: str, ratios) -> str:
    a = accuracy(np.asarray(ratios))
    return (f"  {label:<28}{a['cases']:>7}  geomean {a['geomean']:.3f}  within 10% {a['within_10pct']:.0%}"
            f"  within 25% {a['within_25pct']:.0%}")


def table_report(rows, device, title: str) -> None:
    """Per-kernel and per-layer accuracy of `device` on measured `rows`, by regime."""
    from agentc.costmodel.fit import ALLREDUCE

    pred = predict_rows(rows, device)
    meas = np.array([r["median_ms"] for r in rows])
    print(f"{title}: {device.name} compute_eff {device.compute_efficiency:.3f} memory_eff "
          f"{device.memory_efficiency:.3f} p {device.roofline_p} fixed {device.launch_us:.2f} us"
          + (f"; elementwise memory_eff {device.elementwise_memory_efficiency:.3f} fixed "
             f"{device.elementwise_launch_us:.2f} us" if device.elementwise_memory_efficiency is not None else ""))
    layers: dict[tuple, list[float]] = {}
    groups: dict[str, list[float]] = {}
    for r, p, t in zip(rows, pred, meas):
        if r["kernel"] == ALLREDUCE:
            if r["tokens"] * r["d_model"] * 2 >= 1 << 20:
                groups.setdefault("allreduce >= 1 MiB", []).append(p / t)
            continue
        groups.setdefault(f"kernel {r['kernel']}", []).append(p / t)
        key = (r["source"], r["tokens"], r["context"], r["tp"])
        acc = layers.setdefault(key, [0.0, 0.0])
        acc[0] += p
        acc[1] += t
    for (src, tokens, ctx, tp), (p, t) in sorted(layers.items()):
        groups.setdefault(f"layer {_regime(tokens)}", []).append(p / t)
        groups.setdefault(f"layer tp={int(tp)}", []).append(p / t)
    for label in sorted(groups):
        print(_line(label, groups[label]))


def table_main(args) -> None:
    import dataclasses

    from agentc.costmodel.fit import fit_measurements, read_measurements
    from agentc.catalog import load_catalog

    cat = load_catalog()
    for path, name in zip(args.table, args.device):
        rows = read_measurements(path)
        device = cat.devices[name]
        print(f"== {path} on {name}: {len(rows)} rows")
        table_report(rows, device, "catalog")
        fit_rows = [r for r in rows if not (args.holdout and args.holdout in r["source"])]
        held = [r for r in rows if args.holdout and args.holdout in r["source"]]
        fit = fit_measurements(fit_rows, device)
        fitted = dataclasses.replace(device, **fit["device"])
        table_report(fit_rows, fitted, "fitted, on the fitted rows")
        if held:
            table_report(held, fitted, f"fitted, on held-out rows ('{args.holdout}')")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--table", action="append", default=[])
    ap.add_argument("--device", action="append", default=[])
    ap.add_argument("--holdout", default="")
    args = ap.parse_args()
    if args.table:
        table_main(args)
    else:
        main(quick=args.quick)
