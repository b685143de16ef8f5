"""Measure this machine's CPU and write it as a device profile the planner can use.

The catalog's CPU numbers are vendor peaks scaled by guessed efficiencies. `agentc
calibrate` replaces guesses with measurements: GEMM FLOP/s through numpy's BLAS by size,
streaming-read and copy bandwidth by working set (one figure per level of the memory
hierarchy, found by the sweep rather than read from sysfs, which in a VM reports the
host's caches), a large copy, and the fixed cost of one small call (the analogue of a kernel
launch). `write_profile` stores the result as
TOML in the catalog's device format, so the file works as a `--catalog` extra file, as a
cluster's `device_files` entry, or through `load_device_profile`. `fit_efficiency`
turns a measurement into the efficiency factors of a catalog device (measured / peak).

Measured rates are achieved rates, so a profile's efficiencies are 1.0. Prices (capex,
TDP, $/hr) cannot be measured: they are placeholders to edit, marked in the file.
"""

from __future__ import annotations

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
from agentc.diagnostics import UsageError
from agentc.outputs import writing

__all__ = ["calibrate_cpu", "measure_matmul_gflops", "measure_copy_gbps", "measure_call_overhead_us",
           "measure_gemv_seconds", "measure_copy_seconds",
           "write_profile", "fit_efficiency", "apply_efficiency", "best_time_s"]


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


def measure_gemv_seconds(n: int, repeats: int = 5) -> float:
    """Best time of a float32 matrix-vector product over an n x n matrix: a streaming
    read on every core (BLAS threads it), hot in whatever level of the memory
    hierarchy holds the matrix."""
    a = np.ones((n, n), dtype=np.float32)  # the values do not change a streaming read
    x = np.ones(n, dtype=np.float32)
    y = np.empty(n, dtype=np.float32)
    return best_time_s(lambda: np.matmul(a, x, out=y), repeats, min_time_s=0.01)


def _net_rate(work: float, seconds: float, call_s: float) -> float:
    """Work per second once the fixed call cost (charged separately as launch_us) is
    taken out; at most 3/4 of a tiny call's time is taken as fixed, so noise in the
    overhead cannot make the rate explode."""
    return work / max(seconds - call_s, 0.25 * seconds)


def measure_copy_seconds(working_set_bytes: int, repeats: int = 5) -> float:
    """Best time of a float32 array copy whose source and destination together take
    `working_set_bytes`: numpy copies on one thread, reading each line it writes."""
    count = max(1, working_set_bytes // 8)
    src = np.ones(count, dtype=np.float32)
    dst = np.empty_like(src)
    return best_time_s(lambda: np.copyto(dst, src), repeats, min_time_s=0.01)


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


GEMM_SIZES = (32, 64, 128, 256, 512, 1024, 2048)
# Working sets of the bandwidth sweep, 16 KB to 512 MB: from inside L1 to well past any
# last-level cache a 2026 server slice has (the sweep finds the levels; sysfs may not).
BANDWIDTH_BYTES = tuple(1 << k for k in range(14, 30))


def calibrate_cpu(name: str = "this-cpu", sizes: tuple[int, ...] = GEMM_SIZES, repeats: int = 5,
                  copy_mb: float = 128, capex_usd: float = 2000.0, tdp_w: float | None = None,
                  given_usd_per_hr: float = 0.05, nic_gbits_s: float = 10.0,
                  bandwidth_bytes: tuple[int, ...] = BANDWIDTH_BYTES) -> dict[str, Any]:
    """Measure this CPU. Returns {"device": {...catalog keys...}, "measured": {...}}.

    Three curves carry what one peak and one bandwidth cannot: `gemm_curve`, GFLOP/s of
    square GEMMs by FLOPs per call (small ones run below the large ones' rate), and
    `bandwidth_curve`, the streaming-read GB/s of a matrix-vector product by working set
    (a matrix in the last-level cache streams ~2x faster than from DRAM), and
    `copy_curve`, the GB/s (read + written) of an array copy by working set, which prices
    the traffic an op writes. All are net of the fixed call cost, which is `launch_us`.
    `dram_gbps` is the read curve's largest working set; `fp32_tflops` its best GEMM rate.

    `capex_usd`, `tdp_w` (default 15 W per core), `given_usd_per_hr` and `nic_gbits_s`
    are not measurable and are stored as given.
    """
    _check_device_name(name)
    call_us = measure_call_overhead_us(repeats)
    call_s = call_us / 1e6
    by_size = {n: measure_matmul_gflops(n, repeats) for n in sizes}
    gemm_curve = [[float(2 * n**3), round(_net_rate(2 * n**3, 2 * n**3 / (g * 1e9), call_s) / 1e9, 3)]
                  for n, g in sorted(by_size.items())]
    bandwidth_curve = []
    for nbytes in sorted(bandwidth_bytes):
        side = max(8, int(math.isqrt(max(nbytes, 256) // 4)))
        real = side * side * 4
        if bandwidth_curve and real <= bandwidth_curve[-1][0]:
            continue
        t = measure_gemv_seconds(side, repeats)
        bandwidth_curve.append([float(real), round(_net_rate(real, t, call_s) / 1e9, 3)])
    copy_curve = []
    for nbytes in sorted(set(bandwidth_bytes)):
        real = 8 * max(1, nbytes // 8)  # a copy of real/2 bytes reads and writes `real`
        t = measure_copy_seconds(real, repeats)
        copy_curve.append([float(real), round(_net_rate(real, t, call_s) / 1e9, 3)])
    best_gflops = max(r for _, r in gemm_curve)
    copy_gbps = measure_copy_gbps(copy_mb, repeats)
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
        "dram_gbps": bandwidth_curve[-1][1],
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
        "gemm_curve": gemm_curve,
        "bandwidth_curve": bandwidth_curve,
        "copy_curve": copy_curve,
    }
    measured: dict[str, Any] = {
        "cpu_model": info.get("model name", platform.processor() or "unknown"),
        "logical_cpus": cores,
        "numpy_version": np.__version__,
        "copy_mb": float(copy_mb),
        "repeats": repeats,
        "matmul_best_gflops": round(max(by_size.values()), 3),
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
