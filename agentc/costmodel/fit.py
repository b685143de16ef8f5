"""Fit a device's efficiencies and fixed costs from a table of measured kernel times
(`agentc calibrate --from-measurements`): least squares on the relative error of the
per-kernel layer model (agentc/costmodel/layers.py), and a catalog overlay (TOML) that
carries the fitted numbers and the fit's error. The CSV format is docs/calibration.md.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import replace
from typing import Any, Mapping

import numpy as np
import tomli_w

from agentc.catalog import DeviceSpec
from agentc.diagnostics import AgentcError, SourceLoc
from agentc.outputs import writing

__all__ = ["read_measurements", "fit_measurements", "write_overlay", "predict_rows", "accuracy",
           "MeasurementError", "ALLREDUCE"]

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


def _fit_roofs(t: np.ndarray, c: np.ndarray, m: np.ndarray, p_grid, compute_eff: float | None = None):
    """(error, p, compute_eff, memory_eff, fixed ms) minimising the relative squared
    error of t = fixed + roof(c / compute_eff, m / memory_eff; p): a grid over the
    efficiencies (compute_eff held when given) for each p, refined twice around the best."""
    best = None
    for p in p_grid:
        lo_c, hi_c = (compute_eff, compute_eff) if compute_eff else (0.02, 1.0)
        lo_m, hi_m = 0.02, 1.0
        for _ in range(3):  # coarse grid, then two refinements around the best cell
            ce = np.linspace(lo_c, hi_c, 1 if compute_eff else 33)
            me = np.linspace(lo_m, hi_m, 33)
            f = np.empty((ce.size, me.size))
            err = np.empty_like(f)
            for a, eff in enumerate(ce):  # one row of the grid at a time keeps memory small
                f[a], err[a] = _best_fixed(_roof(c[None, :] / eff, m[None, :] / me[:, None], p), t)
            i, j = np.unravel_index(np.argmin(err), err.shape)
            step_m = me[1] - me[0]
            if not compute_eff:
                step_c = ce[1] - ce[0]
                lo_c, hi_c = max(0.005, ce[i] - step_c), min(1.0, ce[i] + step_c)
            lo_m, hi_m = max(0.005, me[j] - step_m), min(1.0, me[j] + step_m)
            cand = (float(err[i, j]), p, float(ce[i]), float(me[j]), float(f[i, j]))
        if best is None or cand[0] < best[0]:
            best = cand
    return best


def fit_kernels(rows: list[Mapping[str, Any]], device: DeviceSpec) -> dict[str, float]:
    """Least-squares fit (relative error) of the layer model's numbers to measured kernel
    times: on the GEMM-like kernels, compute_efficiency, memory_efficiency, roofline_p
    and the fixed cost launch_us (t = launch + roof(c / compute_eff, m / memory_eff; p));
    on the elementwise kernels (layers.ELEMENTWISE), given rows of them, their own
    elementwise_memory_efficiency and elementwise_launch_us at the GEMMs' compute
    efficiency and p."""
    from agentc.costmodel.layers import ELEMENTWISE

    if len(rows) > _FIT_ROWS:  # a seeded subsample (not a stride: tables interleave kernels)
        pick = np.sort(np.random.default_rng(0).choice(len(rows), _FIT_ROWS, replace=False))
        rows = [rows[i] for i in pick]
    elem = np.array([r["kernel"] in ELEMENTWISE for r in rows])
    t = np.array([r["median_ms"] for r in rows])
    c, m = kernel_roofs(rows, device)
    gemm = ~elem if (~elem).any() else elem  # a table of elementwise kernels only: one class
    _, p, ce, me, f = _fit_roofs(t[gemm], c[gemm], m[gemm], _P_GRID)
    out = {"compute_efficiency": ce, "memory_efficiency": me, "roofline_p": p, "launch_us": f * 1e3}
    if elem.any() and (~elem).any():
        _, _, _, me_e, f_e = _fit_roofs(t[elem], c[elem], m[elem], (p,), compute_eff=ce)
        out.update(elementwise_memory_efficiency=me_e, elementwise_launch_us=f_e * 1e3)
    return out


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
    from agentc.costmodel.layers import allreduce_ms, kernel_class, kernel_ms, measured_kernel

    out = []
    for r in rows:
        tp = int(r["tp"])
        if r["kernel"] == ALLREDUCE:
            from agentc.catalog import bytes_per_elem
            out.append(allreduce_ms(r["tokens"] * r["d_model"] * bytes_per_elem(r.get("dtype", "fp16")), tp, device))
        else:
            k = measured_kernel(r["kernel"], row_model(r), r["tokens"], r["context"])
            out.append(kernel_ms(k, device, tp, r.get("dtype", "fp16"))[2] + kernel_class(k.name, device)[1] / 1e3)
    return np.array(out)


def fit_measurements(rows: list[Mapping[str, Any]], device: DeviceSpec) -> dict[str, Any]:
    """Fit `device`'s efficiencies, roofline exponent, fixed cost and (given all-reduce
    rows) collective latency and bus bandwidth. Returns {"device": keys, "measured": fit error}."""
    if device.gemm_curve or device.bandwidth_curve or device.copy_curve:
        # efficiencies scale a peak; on measured curves they would discount a measurement
        raise MeasurementError(f"device '{device.name}' has measured rate curves (agentc calibrate); "
                               "fit efficiencies for a device priced by its peaks")
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
