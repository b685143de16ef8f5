"""What a simulation says: percentiles, SLA attainment, goodput, pool and link load.

`summarize` turns a model.Result into a plain dict (the `--json` output, rounded to
6 significant digits, keys sorted by the writer, so one seed gives the same bytes);
`print_table` shows the same dict with rich.

SLA terms (README, "SLA semantics"): `latency.pNN < T` (and `ttft.pNN`, `tbt.pNN`) is
judged at NN; `.mean` by the mean; a plain term, which the planner meets on every
control-flow path, at p99 (the allowance for queueing and service-time variability).
A term holds when at least that fraction of the measured requests meets it. Goodput
counts the requests meeting every term.
"""

from __future__ import annotations

import json

import numpy as np

from agentc.sim.model import Result

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
DEFAULT_PERCENTILE = 99.0


def _r(x):
    if x is None:
        return None
    x = float(x)
    return float(f"{x:.6g}") if np.isfinite(x) else None


def _dist(values) -> dict | None:
    if not len(values):
        return None
    a = np.asarray(values, dtype=float)
    out = {"mean": _r(a.mean()), "max": _r(a.max())}
    for q in PERCENTILES:
        out[f"p{q:g}"] = _r(np.percentile(a, q))
    return out


def _weighted_quantile(hist: dict, q: float) -> float:
    total = sum(hist.values())
    if total <= 0:
        return 0.0
    acc = 0.0
    for k in sorted(hist):
        acc += hist[k]
        if acc >= q * total - 1e-12:
            return float(k)
    return float(max(hist))


def term_stats(sla) -> dict[str, str]:
    """The statistic of each term: the manifest's (the planner's), else, for manifests
    written before it, the latency term's percentile for every term."""
    stats = dict(sla.stats)
    if stats:
        return stats
    legacy = "all" if sla.percentile is None else f"p{sla.percentile:g}"
    return {"e2e": legacy, "ttft": legacy, "tbt": legacy}


def judged_at(term: dict) -> str:
    """How a term row is judged: "p99" or "mean"."""
    return "mean" if term["percentile"] is None else f"p{term['percentile']:g}"


def term_values(result: Result) -> list[tuple[str, str, float, np.ndarray]]:
    """Per SLA term with measured requests: its name ("latency.p99", "ttft"), statistic
    ("p99", "mean", "all"), bound (ms) and the measured requests' values (ms)."""
    sla = result.plan.sla
    stats = term_stats(sla)
    reqs = result.requests
    out = []
    for term, label, bound, values in (
            ("e2e", "latency", sla.e2e_ms, [r.end_ms - r.arrival_ms for r in reqs]),
            ("ttft", "ttft", sla.ttft_ms, [r.ttft_ms for r in reqs if r.ttft_ms is not None]),
            ("tbt", "tbt", sla.tbt_ms, [r.tbt_ms for r in reqs if r.tbt_ms is not None])):
        if bound is None or not values:
            continue
        stat = stats.get(term, "all")
        out.append((label if stat == "all" else f"{label}.{stat}", stat, bound, np.asarray(values, dtype=float)))
    return out


def term_percentile(stat: str) -> float | None:
    """The percentile a term is judged at (None: its mean): NN for "pNN", DEFAULT_PERCENTILE
    for a plain term (every control-flow path)."""
    return None if stat == "mean" else DEFAULT_PERCENTILE if stat == "all" else float(stat[1:])


def sla_terms(result: Result) -> list[dict]:
    """One entry per SLA term: bound, percentile, fraction meeting it, and whether it holds."""
    out = []
    for name, stat, bound, a in term_values(result):
        met = float((a <= within(bound)).mean())
        if stat == "mean":
            observed = float(a.mean())
            out.append({"term": name, "bound_ms": _r(bound), "percentile": None, "statistic": "mean",
                        "observed_ms": _r(observed), "attained": _r(met),
                        "holds": bool(observed <= within(bound))})
            continue
        # every control-flow path ("all"): judged at DEFAULT_PERCENTILE of requests, the
        # allowance for queueing and service-time variability the planner does not price
        pct = term_percentile(stat)
        out.append({"term": name, "bound_ms": _r(bound), "percentile": _r(pct), "statistic": stat,
                    "observed_ms": _r(np.percentile(a, pct)), "attained": _r(met),
                    "holds": bool(met >= pct / 100.0 - 1e-12)})
    return out


# A request meets a bound when its time is within these tolerances of it: a latency is a
# difference of two clock readings, and at simulated times of days (light loads) the
# clock's float spacing is ~1e-8 ms, so an exact hit lands a few ulps either side.
# 10 ns is far below anything an SLA can mean.
SLA_REL_TOL, SLA_ABS_TOL_MS = 1e-9, 1e-5


def within(bound: float) -> float:
    """The largest time that meets `bound`: the bound and its clock tolerance (above)."""
    return bound * (1 + SLA_REL_TOL) + SLA_ABS_TOL_MS


def _meets_all(result: Result, r) -> bool:
    sla = result.plan.sla
    if sla.e2e_ms is not None and r.end_ms - r.arrival_ms > within(sla.e2e_ms):
        return False
    if sla.ttft_ms is not None and r.ttft_ms is not None and r.ttft_ms > within(sla.ttft_ms):
        return False
    if sla.tbt_ms is not None and r.tbt_ms is not None and r.tbt_ms > within(sla.tbt_ms):
        return False
    return True


def windows(result: Result, window_ms: float) -> list[dict]:
    """SLA attainment of the requests arriving in each window [k w, (k+1) w) of
    simulated time: what a load step, a ramp or a lost device does to the plan."""
    sla = result.plan.sla
    pct = sla.percentile if sla.percentile is not None else DEFAULT_PERCENTILE
    groups: dict[int, list] = {}
    for r in result.requests:
        groups.setdefault(int(r.arrival_ms // window_ms), []).append(r)
    out = []
    for k in sorted(groups):
        rs = groups[k]
        e2e = np.asarray([r.end_ms - r.arrival_ms for r in rs], dtype=float)
        terms = {}
        for name, bound, values in (("latency", sla.e2e_ms, e2e),
                                    ("ttft", sla.ttft_ms, [r.ttft_ms for r in rs if r.ttft_ms is not None]),
                                    ("tbt", sla.tbt_ms, [r.tbt_ms for r in rs if r.tbt_ms is not None])):
            if bound is not None and len(values):
                met = float((np.asarray(values, dtype=float) <= within(bound)).mean())
                terms[name] = {"attained": _r(met), "holds": bool(met >= pct / 100.0 - 1e-12)}
        out.append({"start_s": _r(k * window_ms / 1e3), "end_s": _r((k + 1) * window_ms / 1e3), "requests": len(rs),
                    "offered_rps": _r(len(rs) / (window_ms / 1e3)), "e2e_p50_ms": _r(np.percentile(e2e, 50)),
                    "e2e_p99_ms": _r(np.percentile(e2e, 99)), "terms": terms,
                    "sla_attained": _r(sum(1 for r in rs if _meets_all(result, r)) / len(rs))})
    return out


def summarize(result: Result, window_ms: float | None = None) -> dict:
    plan, cfg, reqs = result.plan, result.config, result.requests
    t0, t1 = result.window_ms
    span_s = max(t1 - t0, 1e-9) / 1e3
    n = len(reqs)
    good = sum(1 for r in reqs if _meets_all(result, r))
    pools = {}
    for name, p in sorted(result.pools.items()):
        waits = np.asarray(p.waits, dtype=float)
        total_t = sum(p.queue_time.values())
        pools[name] = {
            "devices": p.devices,
            "utilisation": _r(p.busy_area / (p.devices * span_s * 1e3)) if t1 > t0 else None,
            "queue_mean": _r(sum(k * v for k, v in p.queue_time.items()) / total_t) if total_t else 0.0,
            "queue_p99": _r(_weighted_quantile(p.queue_time, 0.99)),
            "wait_mean_ms": _r(waits.mean()) if len(waits) else 0.0,
            "wait_p99_ms": _r(np.percentile(waits, 99)) if len(waits) else 0.0,
        }
    loops = {}
    for rid, counts in sorted(result.loop_trips.items()):
        total = sum(counts)
        region = plan.regions[rid]
        loops[rid] = {"max_trips": region.max_trips, "continue_prob": _r(region.continue_prob),
                      "entries": total,
                      "trip_frequencies": [_r(c / total) if total else None for c in counts]}
    branches = {}
    for rid, counts in sorted(result.arm_counts.items()):
        total = sum(counts)
        branches[rid] = {"entries": total, "arm_frequencies": [_r(c / total) if total else None for c in counts]}
    decode = {}
    for op_id, counts in sorted(result.decode_batches.items()):
        steps = sum(counts)
        if steps:
            decode[op_id] = {"steps": steps, "mean_batch": _r(sum((i + 1) * c for i, c in enumerate(counts)) / steps),
                             "max_batch": plan.ops[op_id].decode.max_batch, "engines": result.engines.get(op_id)}
    prefill = {}
    for op_id, counts in sorted(result.prefill_batches.items()):
        batches = sum(counts.values())
        if batches:
            prefill[op_id] = {"batches": batches,
                              "mean_prompts": _r(sum(k * c for k, c in counts.items()) / batches),
                              "max_prompts": max(counts)}
    kv = {}
    for name, k in sorted(result.kv.items()):
        blocked = k["blocked"]
        kv[name] = {"budget_gb": _r(k["budget_bytes"] / 1e9), "blocked_sequences": len(blocked),
                    "blocked_wait_mean_ms": _r(np.mean(blocked)) if blocked else 0.0}
    planned = plan.planned
    extra = {}
    if window_ms:
        extra["windows"] = windows(result, window_ms)
        extra["window_s"] = _r(window_ms / 1e3)
    return {**extra,
        "agent": plan.agent,
        "source": plan.source,
        "seed": cfg.seed,
        "batching": cfg.batching,
        "cv": {k: v for k, v in sorted(cfg.cv)},
        "requests": n,
        "warmup": cfg.warmup,
        "cooldown": cfg.cooldown,
        "offered_rps": _r(n / span_s) if n > 1 and t1 > t0 else None,
        "planned": {"e2e_ms": planned.get("e2e_ms"), "ttft_ms": planned.get("ttft_ms"),
                    "tbt_ms": planned.get("tbt_ms"), "load_rps": plan.load_rps,
                    "devices": dict(sorted(plan.pools.items()))},
        "latency_ms": {"e2e": _dist([r.end_ms - r.arrival_ms for r in reqs]),
                       "ttft": _dist([r.ttft_ms for r in reqs if r.ttft_ms is not None]),
                       "tbt": _dist([r.tbt_ms for r in reqs if r.tbt_ms is not None])},
        "sla": sla_terms(result),
        "goodput_rps": _r(good / span_s) if t1 > t0 else None,
        "sla_attained": _r(good / n) if n else None,
        "pools": pools,
        "links": {k: {"utilisation": _r(v)} for k, v in sorted(result.links.items())},
        "loops": loops,
        "branches": branches,
        "decode": decode,
        "prefill": prefill,
        "prefill_budget_tokens": cfg.prefill_budget if cfg.batching == "continuous" else None,
        "kv": kv,
    }


def dumps(summary: dict) -> str:
    return json.dumps(summary, indent=2, sort_keys=True) + "\n"


def print_table(summary: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    lat = summary["latency_ms"]
    planned = summary["planned"]
    t = Table(title=f"agentc simulate: {summary['agent']} ({summary['requests']} requests, "
                    f"{summary['offered_rps'] or 0:g} req/s, seed {summary['seed']})")
    t.add_column("metric")
    t.add_column("planned ms", justify="right")
    for q in ("mean",) + tuple(f"p{q:g}" for q in PERCENTILES):
        t.add_column(q, justify="right")
    for key, label in (("e2e", "end-to-end"), ("ttft", "TTFT"), ("tbt", "TBT")):
        d = lat.get(key)
        if d is None:
            continue
        p = planned.get(f"{key}_ms")
        t.add_row(label, "-" if p is None else f"{p:.4g}",
                  *[f"{d[c]:.4g}" for c in ("mean",) + tuple(f"p{q:g}" for q in PERCENTILES)])
    console.print(t)
    if summary["sla"]:
        s = Table(title="SLA")
        for c in ("term", "bound ms", "observed ms", "met by", "holds"):
            s.add_column(c, justify="right" if c not in ("term", "holds") else "left")
        for term in summary["sla"]:
            s.add_row(f"{term['term']} ({judged_at(term)})", f"{term['bound_ms']:g}",
                      f"{term['observed_ms']:.4g}", f"{100 * term['attained']:.2f}%",
                      "[green]yes[/]" if term["holds"] else "[red]no[/]")
        console.print(s)
    if summary["goodput_rps"] is not None:
        console.print(f"goodput: {summary['goodput_rps']:g} req/s meeting every SLA term "
                      f"({100 * (summary['sla_attained'] or 0):.2f}% of requests)")
    pt = Table(title="pools")
    for c in ("pool", "devices", "utilisation", "mean queue", "p99 queue", "mean wait ms", "p99 wait ms"):
        pt.add_column(c, justify="left" if c == "pool" else "right")
    for name, p in summary["pools"].items():
        u = p["utilisation"]
        pt.add_row(name, str(p["devices"]), "-" if u is None else f"{100 * u:.1f}%", f"{p['queue_mean']:.3g}",
                   f"{p['queue_p99']:g}", f"{p['wait_mean_ms']:.4g}", f"{p['wait_p99_ms']:.4g}")
    console.print(pt)
    if summary.get("kv") and any(k["blocked_sequences"] for k in summary["kv"].values()):
        console.print("KV memory: " + ", ".join(
            f"{name} {k['blocked_sequences']} sequences waited for KV memory (mean {k['blocked_wait_mean_ms']:.4g} ms)"
            for name, k in summary["kv"].items() if k["blocked_sequences"]))
    if summary.get("windows"):
        w = Table(title=f"SLA by window of {summary['window_s']:g} s (requests by arrival time)")
        names = sorted({n for row in summary["windows"] for n in row["terms"]})
        for c in ("window s", "requests", "req/s", "p50 ms", "p99 ms", *[f"{n} met" for n in names], "met every term"):
            w.add_column(c, justify="left" if c == "window s" else "right")
        for row in summary["windows"]:
            cells = []
            for n in names:
                t = row["terms"].get(n)
                cells.append("-" if t is None else
                             (f"{100 * t['attained']:.1f}%" if t["holds"] else f"[red]{100 * t['attained']:.1f}%[/]"))
            w.add_row(f"{row['start_s']:g}-{row['end_s']:g}", str(row["requests"]), f"{row['offered_rps']:.3g}",
                      f"{row['e2e_p50_ms']:.4g}", f"{row['e2e_p99_ms']:.4g}", *cells,
                      f"{100 * row['sla_attained']:.1f}%")
        console.print(w)
    if summary["links"]:
        console.print("links: " + ", ".join(f"{k} {100 * v['utilisation']:.2f}%"
                                            for k, v in summary["links"].items()))
