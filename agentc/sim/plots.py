"""Pictures of a simulation (matplotlib, SVG and PNG): the latency CDF with the SLA
bounds marked, and per-pool utilisation and queue length over time. The SVG carries no
date and a fixed hash salt, so one seed gives the same bytes."""

from __future__ import annotations

import io

import numpy as np

from agentc.sim.model import Result

BINS = 200


def _binned(timeline, end_ms: float, devices: int, column: int):
    """Time-weighted mean of a step function (t, busy, queue) in BINS bins."""
    if not timeline or end_ms <= 0:
        return np.zeros(0), np.zeros(0)
    t = np.array([p[0] for p in timeline] + [end_ms])
    v = np.array([p[column] for p in timeline], dtype=float)
    cum = np.concatenate([[0.0], np.cumsum(v * np.diff(t))])
    edges = np.linspace(0.0, end_ms, BINS + 1)
    area = np.interp(edges, t, cum, left=0.0)
    mean = np.diff(area) / np.diff(edges)
    if column == 1:
        mean = mean / max(devices, 1)
    return (edges[:-1] + edges[1:]) / 2e3, mean


def render(result: Result, summary: dict) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "agentc-simulate"
    files: dict[str, bytes] = {}
    figs = {}

    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("e2e", "end-to-end"), ("ttft", "TTFT")):
        if key == "e2e":
            values = [r.end_ms - r.arrival_ms for r in result.requests]
        else:
            values = [r.ttft_ms for r in result.requests if r.ttft_ms is not None]
        if values:
            x = np.sort(values)
            ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", label=label)
    for term in summary["sla"]:
        if term["term"].startswith("tbt"):
            continue
        ax.axvline(term["bound_ms"], linestyle="--", color="tab:red" if not term["holds"] else "tab:green")
        ax.annotate(f"{term['term']} < {term['bound_ms']:g} ms", (term["bound_ms"], 0.05), rotation=90,
                    fontsize=8, ha="right")
        if term["percentile"] is not None:  # a mean has no level on the CDF
            ax.axhline(term["percentile"] / 100.0, linestyle=":", color="grey", linewidth=0.8)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(f"{summary['agent']}: latency CDF ({summary['requests']} requests)")
    ax.legend(loc="lower right")
    figs["latency_cdf"] = fig

    for name, column, ylabel in (("utilisation", 1, "busy devices / devices"), ("queue", 2, "requests waiting")):
        fig, ax = plt.subplots(figsize=(7, 4))
        for pool, stats in sorted(result.pools.items()):
            x, y = _binned(stats.timeline, result.end_ms, stats.devices, column)
            if len(x) and y.max() > 0:
                ax.plot(x, y, label=pool, linewidth=1)
        ax.set_xlabel("time (s)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{summary['agent']}: {'pool utilisation' if column == 1 else 'queue length'} over time")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=8)
        figs[name] = fig

    for name, fig in figs.items():
        fig.tight_layout()
        for fmt in ("svg", "png"):
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else {"Software": None})
            files[f"{name}.{fmt}"] = buf.getvalue()
        plt.close(fig)
    return files
