"""Measure this machine's CPU and write it as a device profile the planner can use.

The catalog's CPU numbers are vendor peaks scaled by guessed efficiencies. `agentc
calibrate` replaces guesses with measurements: GEMM FLOP/s through numpy's BLAS (several
sizes, best of N), streaming bandwidth through large array copies, and the fixed cost of
one small call (the analogue of a kernel launch). `write_profile` stores the result as
TOML in the catalog's device format, so the file works as a `--catalog` extra file, as a
cluster's `device_files` entry, or through `load_device_profile`. `fit_efficiency`
turns a measurement into the efficiency factors of a catalog device (measured / peak).

Measured rates are achieved rates, so a profile's efficiencies are 1.0. Prices (capex,
TDP, $/hr) cannot be measured: they are placeholders to edit, marked in the file.
"""

from __future__ import annotations

import csv
import math
import os
import platform
import time
from dataclasses import replace
from typing import Any, Callable, Mapping

import numpy as np
import tomli_w

from agentc.catalog import DeviceSpec
from agentc.catalog.validate import check_name
from agentc.diagnostics import AgentcError, SourceLoc, UsageError
from agentc.outputs import writing

__all__ = ["calibrate_cpu", "measure_matmul_gflops", "measure_copy_gbps", "measure_call_overhead_us",
           "write_profile", "fit_efficiency", "apply_efficiency", "best_time_s", "read_measurements",
           "fit_measurements", "write_overlay", "predict_rows", "accuracy", "MeasurementError"]


def best_time_s(fn: Callable[[], Any], repeats: int, min_time_s: float = 0.0) -> float:
    """Best wall time of `fn` over `repeats` runs (after one warm-up); each run loops
    `fn` until `min_time_s` has passed, so tiny kernels are timed above clock noise."""
    fn()
    best = math.inf
    for _ in range(max(1, repeats)):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time_s:
                break
        best = min(best, elapsed / n)
    return best


def measure_matmul_gflops(n: int, repeats: int = 5, dtype: str = "float32") -> float:
    """GFLOP/s of an n x n x n matmul (2 n^3 FLOPs) through numpy's BLAS."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype=dtype)
    t = best_time_s(lambda: np.matmul(a, b, out=out), repeats, min_time_s=0.01)
    return 2 * n**3 / t / 1e9


def measure_copy_gbps(megabytes: float = 128, repeats: int = 5) -> float:
    """Streaming bandwidth in GB/s: bytes read + bytes written by a large array copy."""
    count = int(megabytes * 1e6 // 8)
    src = np.ones(count, dtype=np.float64)
    dst = np.empty_like(src)
    t = best_time_s(lambda: np.copyto(dst, src), repeats)
    return 2 * src.nbytes / t / 1e9


def measure_call_overhead_us(repeats: int = 5) -> float:
    """Fixed cost of one tiny numpy call: the per-op launch overhead on this host."""
    a = np.ones(1, dtype=np.float32)
    out = np.empty_like(a)
    return best_time_s(lambda: np.add(a, a, out=out), repeats, min_time_s=0.005) * 1e6


def _cpu_info() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def _memory_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        return 8.0


def _llvm_cpu(flags: str) -> tuple[str, str]:
    """LLVM triple and CPU name for code generated for this host."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        fl = set(flags.split())
        chip = "x86-64-v4" if "avx512f" in fl else "x86-64-v3" if "avx2" in fl else "x86-64"
        return "x86_64-unknown-linux-gnu", chip
    if machine in ("aarch64", "arm64"):
        return "aarch64-unknown-linux-gnu", "generic"
    return f"{machine}-unknown-linux-gnu", "generic"


def calibrate_cpu(name: str = "this-cpu", sizes: tuple[int, ...] = (256, 512, 1024), repeats: int = 5,
                  copy_mb: float = 128, capex_usd: float = 2000.0, tdp_w: float | None = None,
                  given_usd_per_hr: float = 0.05, nic_gbits_s: float = 10.0) -> dict[str, Any]:
    """Measure this CPU. Returns {"device": {...catalog keys...}, "measured": {...}}.

    `capex_usd`, `tdp_w` (default 15 W per core), `given_usd_per_hr` and `nic_gbits_s`
    are not measurable and are stored as given.
    """
    _check_device_name(name)
    by_size = {n: measure_matmul_gflops(n, repeats) for n in sizes}
    best_gflops = max(by_size.values())
    copy_gbps = measure_copy_gbps(copy_mb, repeats)
    call_us = measure_call_overhead_us(repeats)
    info = _cpu_info()
    cores = os.cpu_count() or 1
    triple, chip = _llvm_cpu(info.get("flags", ""))
    tflops = best_gflops / 1e3
    device = {
        "name": name,
        "vendor": info.get("vendor_id", platform.processor() or "unknown"),
        "kind": "cpu",
        "capex_usd": capex_usd,
        "memory_gb": round(_memory_gb(), 1),
        "dram_gbps": round(copy_gbps, 3),
        # numpy has no fast half-precision GEMM; CPU runtimes widen fp16/bf16 to fp32.
        "fp16_tflops": round(tflops, 6),
        "bf16_tflops": round(tflops, 6),
        "fp8_tflops": 0.0,
        "fp32_tflops": round(tflops, 6),
        "tdp_w": float(tdp_w if tdp_w is not None else 15.0 * cores),
        "given_usd_per_hr": given_usd_per_hr,
        "fabric_gbytes_s": 0.0,
        "devices_per_chassis": 1,
        "nic_gbits_s": nic_gbits_s,
        "fabric_latency_us": 0.0,
        "launch_us": round(call_us, 4),
        "compute_efficiency": 1.0,
        "memory_efficiency": 1.0,
        "target": "llvm-cpu",
        "triple": triple,
        "chip": chip,
    }
    measured: dict[str, Any] = {
        "cpu_model": info.get("model name", platform.processor() or "unknown"),
        "logical_cpus": cores,
        "numpy_version": np.__version__,
        "copy_mb": float(copy_mb),
        "repeats": repeats,
        "matmul_best_gflops": round(best_gflops, 3),
        "copy_gbps": round(copy_gbps, 3),
        "call_overhead_us": round(call_us, 4),
    }
    for n, g in sorted(by_size.items()):
        measured[f"matmul_{n}_gflops"] = round(g, 3)
    return {"device": device, "measured": measured}


_PLACEHOLDERS = ("capex_usd", "tdp_w", "given_usd_per_hr", "nic_gbits_s")


def _check_device_name(name: str) -> None:
    """The profile is read back as a catalog, whose device names follow the name rule:
    refuse a bad `--name` before measuring, not when the profile is used."""
    check_name(name, "device", lambda msg: UsageError(msg))


def write_profile(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    """Write `calibrate_cpu`'s result as a catalog-format TOML device profile."""
    device = dict(data["device"])
    name = device.pop("name")
    _check_device_name(name)
    measured = dict(data.get("measured") or {})
    for key, value in list(device.items()) + list(measured.items()):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"cannot write non-finite {key} = {value!r} to a profile")
    doc: dict[str, Any] = {"device": {name: device}}
    if measured:
        doc["measured"] = measured
    placeholders = ", ".join(k for k in _PLACEHOLDERS if k in device)
    header = ("# agentc device profile, written by `agentc calibrate`.\n"
              "# Rates are measured (efficiencies are therefore 1.0); these keys are placeholders\n"
              f"# that cannot be measured: edit them: {placeholders}.\n")
    with writing(path), open(path, "w", encoding="utf-8") as f:
        f.write(header + tomli_w.dumps(doc))


def fit_efficiency(profile: DeviceSpec, peak: DeviceSpec, dtype: str = "fp32") -> dict[str, float]:
    """Efficiency factors of catalog device `peak` from a measured `profile` of it:
    achieved rate / vendor peak, capped at 1."""
    achieved_flops = profile.tflops(dtype) * profile.compute_efficiency
    achieved_bw = profile.mem_gbps * profile.memory_efficiency
    return {
        "compute_efficiency": min(1.0, achieved_flops / peak.tflops(dtype)),
        "memory_efficiency": min(1.0, achieved_bw / peak.mem_gbps),
    }


def apply_efficiency(device: DeviceSpec, fitted: Mapping[str, float]) -> DeviceSpec:
    """`device` with fitted efficiency factors."""
    return replace(device, compute_efficiency=fitted["compute_efficiency"],
                   memory_efficiency=fitted["memory_efficiency"])


# --------------------------------------------------------------------------- fitting measured kernel tables

# Columns of a measurement table (docs/calibration.md); `dtype` is optional (fp16).
MEASUREMENT_COLUMNS = ("kernel", "tokens", "context", "tp", "d_model", "ffn", "heads", "kv_heads", "median_ms")
ALLREDUCE = "allreduce"
# The smooth-roofline exponents tried (0 = the hard max); efficiencies on a grid, then refined.
_P_GRID = (0.0, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0)
_FIT_ROWS = 4000


class MeasurementError(AgentcError):
    """A measurement table agentc cannot read or fit."""


def read_measurements(path: str) -> list[dict[str, Any]]:
    """Rows of a measurement CSV, checked: numbers where numbers belong, known kernels."""
    from agentc.costmodel.layers import KERNEL_NAMES

    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in MEASUREMENT_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise MeasurementError(f"measurement table lacks column(s) {', '.join(missing)}",
                                       SourceLoc(path, 1, 1), (f"columns: {', '.join(MEASUREMENT_COLUMNS)}",))
            rows = []
            for line, raw in enumerate(reader, start=2):
                loc = SourceLoc(path, line, 1)
                kernel = (raw.get("kernel") or "").strip()
                if kernel not in KERNEL_NAMES + (ALLREDUCE,):
                    raise MeasurementError(f"unknown kernel '{kernel}'", loc,
                                           (f"known kernels: {', '.join(KERNEL_NAMES + (ALLREDUCE,))}",))
                row: dict[str, Any] = {"kernel": kernel, "dtype": (raw.get("dtype") or "fp16").strip(),
                                       "source": (raw.get("source") or "").strip()}
                for col in MEASUREMENT_COLUMNS[1:]:
                    try:
                        value = float(raw.get(col) or "")
                    except ValueError:
                        raise MeasurementError(f"column '{col}' must be a number, got {raw.get(col)!r}", loc) from None
                    if not math.isfinite(value) or value < 0:
                        raise MeasurementError(f"column '{col}' must be a non-negative number, got {value!r}", loc)
                    row[col] = value
                if row["median_ms"] <= 0 or row["tp"] < 1 or row["d_model"] <= 0 or row["heads"] < 1:
                    raise MeasurementError("median_ms and d_model must be positive, tp and heads at least 1", loc)
                rows.append(row)
    except OSError as e:
        raise MeasurementError(f"cannot read measurement table: {e.strerror}", SourceLoc(path, 1, 1)) from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise MeasurementError(f"measurement table is not a CSV file: {e}", SourceLoc(path, 1, 1)) from None
    if not rows:
        raise MeasurementError("measurement table has no rows", SourceLoc(path, 1, 1))
    return rows


def row_model(row: Mapping[str, Any]):
    """A one-layer model with a row's dimensions (the kernels' shapes)."""
    from agentc.catalog import ModelSpec

    return ModelSpec(name="measured", kind="decoder", layers=1, d_model=int(row["d_model"]), heads=int(row["heads"]),
                     kv_heads=int(row["kv_heads"] or row["heads"]), ffn=int(row["ffn"]), vocab=1,
                     dtype=row.get("dtype", "fp16"))


def kernel_roofs(rows: list[Mapping[str, Any]], device: DeviceSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per row (non-all-reduce): compute and memory time in ms at efficiency 1."""
    from agentc.costmodel.layers import measured_kernel

    c, m = [], []
    for row in rows:
        k = measured_kernel(row["kernel"], row_model(row), row["tokens"], row["context"])
        tp = int(row["tp"])
        c.append(k.flops_at(tp) / (device.tflops(row.get("dtype", "fp16")) * 1e12) * 1e3)
        m.append(k.bytes_at(tp) / (device.mem_gbps * 1e9) * 1e3)
    return np.array(c), np.array(m)


def _roof(c: np.ndarray, m: np.ndarray, p: float) -> np.ndarray:
    if not p:
        return np.maximum(c, m)
    top = np.maximum(np.maximum(c, m), 1e-300)
    return top * ((c / top) ** p + (m / top) ** p) ** (1 / p)


def _best_fixed(roof: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each candidate roof (last axis: rows), the fixed cost f >= 0 minimising the
    relative squared error sum(((f + roof - t) / t)^2), and that error."""
    w = 1 / t**2
    f = np.maximum(0.0, ((t - roof) * w).sum(-1) / w.sum())
    err = (((f[..., None] + roof - t) / t) ** 2).sum(-1)
    return f, err


def fit_kernels(rows: list[Mapping[str, Any]], device: DeviceSpec) -> dict[str, float]:
    """Least-squares fit (relative error) of compute_efficiency, memory_efficiency,
    roofline_p and the per-kernel fixed cost launch_us to measured kernel times:
    t = launch + roof(c / compute_eff, m / memory_eff; p). A grid over the
    efficiencies and p, then a finer grid around the best point."""
    if len(rows) > _FIT_ROWS:  # a seeded subsample (not a stride: tables interleave kernels)
        pick = np.sort(np.random.default_rng(0).choice(len(rows), _FIT_ROWS, replace=False))
        rows = [rows[i] for i in pick]
    t = np.array([r["median_ms"] for r in rows])
    c, m = kernel_roofs(rows, device)
    best = None
    for p in _P_GRID:
        lo_c, hi_c, lo_m, hi_m = 0.02, 1.0, 0.02, 1.0
        for _ in range(3):  # coarse grid, then two refinements around the best cell
            ce = np.linspace(lo_c, hi_c, 33)
            me = np.linspace(lo_m, hi_m, 33)
            f = np.empty((ce.size, me.size))
            err = np.empty_like(f)
            for a, eff in enumerate(ce):  # one row of the grid at a time keeps memory small
                f[a], err[a] = _best_fixed(_roof(c[None, :] / eff, m[None, :] / me[:, None], p), t)
            i, j = np.unravel_index(np.argmin(err), err.shape)
            step_c, step_m = ce[1] - ce[0], me[1] - me[0]
            lo_c, hi_c = max(0.005, ce[i] - step_c), min(1.0, ce[i] + step_c)
            lo_m, hi_m = max(0.005, me[j] - step_m), min(1.0, me[j] + step_m)
            cand = (float(err[i, j]), p, float(ce[i]), float(me[j]), float(f[i, j]))
        if best is None or cand[0] < best[0]:
            best = cand
    _, p, ce, me, f = best
    return {"compute_efficiency": ce, "memory_efficiency": me, "roofline_p": p, "launch_us": f * 1e3}


def fit_allreduce(rows: list[Mapping[str, Any]]) -> dict[str, float]:
    """Least squares of t = latency + 2 (g-1)/g x bytes / busbw over all-reduce rows
    (message = tokens x d_model x bytes per element), relative error."""
    from agentc.catalog import bytes_per_elem

    t = np.array([r["median_ms"] for r in rows]) / 1e3
    g = np.array([r["tp"] for r in rows])
    nbytes = np.array([r["tokens"] * r["d_model"] * bytes_per_elem(r.get("dtype", "fp16")) for r in rows])
    a = np.stack([np.ones_like(t), 2 * (g - 1) / g * nbytes], axis=1) / t[:, None]
    (lat, inv_bw), *_ = np.linalg.lstsq(a, np.ones_like(t), rcond=None)
    if inv_bw <= 0:
        raise MeasurementError("all-reduce times do not grow with message size: cannot fit a bandwidth")
    return {"fabric_latency_us": max(0.0, float(lat)) * 1e6, "allreduce_gbytes_s": 1 / float(inv_bw) / 1e9}


def accuracy(ratios: np.ndarray) -> dict[str, float]:
    """Geomean of predicted/measured and the shares within 10% and 25%."""
    r = np.asarray(ratios, dtype=float)
    return {"cases": int(r.size), "geomean": float(np.exp(np.log(r).mean())),
            "within_10pct": float(np.mean(np.abs(r - 1) <= 0.10)), "within_25pct": float(np.mean(np.abs(r - 1) <= 0.25))}


def predict_rows(rows: list[Mapping[str, Any]], device: DeviceSpec) -> np.ndarray:
    """agentc's predicted ms for each measured row on `device` (its efficiencies)."""
    from agentc.costmodel.layers import allreduce_ms, kernel_ms, measured_kernel

    out = []
    for r in rows:
        tp = int(r["tp"])
        if r["kernel"] == ALLREDUCE:
            from agentc.catalog import bytes_per_elem
            out.append(allreduce_ms(r["tokens"] * r["d_model"] * bytes_per_elem(r.get("dtype", "fp16")), tp, device))
        else:
            k = measured_kernel(r["kernel"], row_model(r), r["tokens"], r["context"])
            out.append(kernel_ms(k, device, tp, r.get("dtype", "fp16"))[2] + device.launch_us / 1e3)
    return np.array(out)


def fit_measurements(rows: list[Mapping[str, Any]], device: DeviceSpec) -> dict[str, Any]:
    """Fit `device`'s efficiencies, roofline exponent, fixed cost and (given all-reduce
    rows) collective latency and bus bandwidth. Returns {"device": keys, "measured": fit error}."""
    kernels = [r for r in rows if r["kernel"] != ALLREDUCE]
    comms = [r for r in rows if r["kernel"] == ALLREDUCE]
    keys: dict[str, float] = {}
    if kernels:
        keys.update(fit_kernels(kernels, device))
    if len(comms) >= 2:
        keys.update(fit_allreduce(comms))
    if not keys:
        raise MeasurementError("need kernel rows, or at least two all-reduce rows, to fit anything")
    keys = {k: round(v, 4) for k, v in keys.items()}
    fitted = replace(device, **keys)
    measured: dict[str, Any] = {"rows": len(rows)}
    for label, part in (("kernels", kernels), ("allreduce", comms)):
        if part:
            acc = accuracy(predict_rows(part, fitted) / np.array([r["median_ms"] for r in part]))
            measured.update({f"{label}_{k}": round(v, 4) if isinstance(v, float) else v for k, v in acc.items()})
    return {"device": keys, "measured": measured}


def write_overlay(path: str | os.PathLike, device_name: str, fit: Mapping[str, Any], source: str) -> None:
    """A catalog overlay: the fitted keys of `[device.NAME]` and the fit's error under
    `[measured]`; load it with --catalog or a cluster's device_files."""

    doc = {"device": {device_name: dict(sorted(fit["device"].items()))},
           "measured": dict(sorted(dict(fit["measured"], source=source).items()))}
    text = ("# agentc catalog overlay, fitted by `agentc calibrate --from-measurements`.\n"
            "# [measured] holds the fit's error on the table it was fitted to.\n" + tomli_w.dumps(doc))
    with writing(path), open(path, "w", encoding="utf-8") as f:
        f.write(text)
