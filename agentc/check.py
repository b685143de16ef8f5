"""`agentc check`: the CI gate. Plan a program, compare its totals with a baseline
manifest, fail on an SLA violation or a regression beyond the allowed bound.

A manifest's `totals` hold `e2e_ms`, `ttft_ms`, `tbt_ms` (latency metrics),
`usd_per_request`, `usd_per_hr` (cost metrics); its `sla` (top level, or inside
`totals`) holds the program's bounds `e2e_ms`, `ttft_ms`, `tbt_ms` (null: unbounded). A
metric regresses when it grows by more than the bound for its class relative to the
baseline; a metric missing on either side is shown but never fails the gate, so a
baseline from an older agentc still works. The SLA is judged on the current plan only.

The logic is pure (`compare` over two dicts) so that it is tested without compiling;
`current_manifest` is the one place that runs the compiler.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

from agentc.diagnostics import UsageError

# (key in totals, label, unit, class)
METRICS = [
    ("e2e_ms", "e2e latency", "ms", "latency"),
    ("ttft_ms", "TTFT", "ms", "latency"),
    ("tbt_ms", "TBT", "ms", "latency"),
    ("usd_per_request", "cost per request", "$", "cost"),
    ("usd_per_hr", "cost per hour", "$/hr", "cost"),
]

# Names an SLA bound may have in `totals.sla`, mapped to the total it bounds.
_SLA_KEYS = {
    "e2e_ms": "e2e_ms", "latency_ms": "e2e_ms", "latency": "e2e_ms",
    "ttft_ms": "ttft_ms", "ttft": "ttft_ms", "tbt_ms": "tbt_ms", "tbt": "tbt_ms",
}


def parse_bound(text: str | float | None) -> float | None:
    """'5%' -> 0.05. A bare number is a percentage too ('5' -> 0.05); None: no bound."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = str(text).strip()
        try:
            value = float(s[:-1] if s.endswith("%") else s)
        except ValueError:
            raise UsageError(f"bad bound '{text}'; write a percentage such as 5%") from None
    if value < 0 or math.isnan(value):
        raise UsageError(f"bad bound '{text}'; it must be a percentage >= 0")
    return value / 100.0


@dataclass
class Row:
    key: str
    label: str
    unit: str
    baseline: float | None
    current: float | None
    change: float | None      # relative: 0.05 = +5%
    bound: float | None
    status: str               # "ok", "regressed", "improved", "new", "gone", "-"


@dataclass
class CheckResult:
    rows: list[Row]
    sla_violations: list[str] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.sla_violations or self.regressions)


def _num(value) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def totals(manifest: dict) -> dict:
    """The manifest's totals, checked: a baseline that cannot be compared must fail the
    gate, not pass it with every metric reported as new."""
    version = manifest.get("schema_version")
    if version is not None and not str(version).startswith("1."):
        raise UsageError(f"manifest schema version {version!r}; this agentc reads 1.x")
    t = manifest.get("totals")
    if not isinstance(t, dict):
        raise UsageError("the manifest has no 'totals' object; was it written by `agentc compile`?")
    for key, *_ in METRICS:
        if t.get(key) is not None and _num(t[key]) is None:
            raise UsageError(f"the manifest's totals.{key} is {t[key]!r}, not a number")
    if _num(t.get("e2e_ms")) is None or _num(t.get("usd_per_request")) is None:
        raise UsageError("the manifest's totals lack e2e_ms or usd_per_request; was it written by "
                         "`agentc compile`?")
    return t


def sla_violations(t: dict, sla=None) -> list[str]:
    """Violations recorded in the SLA object or implied by its bounds on the totals."""
    sla = t.get("sla") if sla is None else sla
    out: list[str] = []
    if isinstance(sla, dict):
        for v in sla.get("violations", []) or []:
            out.append(str(v))
        if sla.get("met") is False and not out:
            out.append("the plan does not meet its SLA")
        for name, bound in sorted(sla.items()):
            key = _SLA_KEYS.get(name)
            bound = _num(bound)
            value = _num(t.get(key)) if key else None
            if key and bound is not None and value is not None and value > bound * (1 + 1e-9):
                msg = f"{key} {value:g} ms exceeds the SLA of {bound:g} ms"
                if msg not in out:
                    out.append(msg)
    elif isinstance(sla, list):
        out.extend(str(v) for v in sla)
    for v in t.get("violations", []) or []:
        if str(v) not in out:
            out.append(str(v))
    return out


def compare(current: dict, baseline: dict, *, max_cost_increase: float | None = 0.05,
            max_latency_increase: float | None = 0.05) -> CheckResult:
    """Compare two manifests; bounds are relative (0.05 = 5%), None means unbounded."""
    cur, base = totals(current), totals(baseline)
    bounds = {"cost": max_cost_increase, "latency": max_latency_increase}
    rows, regressions = [], []
    for key, label, unit, cls in METRICS:
        b, c = _num(base.get(key)), _num(cur.get(key))
        if b is None and c is None:
            continue
        bound = bounds[cls]
        change = None
        if b is None:
            status = "new"
        elif c is None:
            status = "gone"
        else:
            change = (c - b) / b if b > 0 else (0.0 if c == b else math.inf)
            if bound is not None and change > bound + 1e-12:
                status = "regressed"
                regressions.append(f"{label} rose {_pct(change)} ({_fmt(b, unit)} -> {_fmt(c, unit)}), "
                                   f"more than the allowed {_pct(bound)}")
            elif change < -1e-12:
                status = "improved"
            else:
                status = "ok"
        rows.append(Row(key, label, unit, b, c, change, bound, status))
    return CheckResult(rows, sla_violations(cur, current.get("sla")), regressions)


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "$":
        return f"${value:.6g}"
    if unit == "$/hr":
        return f"${value:.6g}/hr"
    return f"{value:.6g} {unit}"


def _pct(change: float | None) -> str:
    if change is None:
        return "-"
    if math.isinf(change):
        return "+inf%"
    return f"{change * 100:+.2f}%"


def render(result: CheckResult, console) -> None:
    """Print the diff table and the verdict on a rich console."""
    from rich.table import Table

    table = Table("metric", "baseline", "current", "change", "allowed", "status", title="agentc check")
    for r in result.rows:
        table.add_row(r.label, _fmt(r.baseline, r.unit), _fmt(r.current, r.unit), _pct(r.change),
                      "-" if r.bound is None else f"+{r.bound * 100:g}%", r.status)
    console.print(table)
    for v in result.sla_violations:
        console.print(f"error: SLA violated: {v}")
    for r in result.regressions:
        console.print(f"error: regression: {r}")
    console.print("agentc check: FAILED" if result.failed else "agentc check: passed")


def load_manifest(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise UsageError(f"cannot read manifest '{path}': {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"'{path}' is not JSON: {e.msg} at line {e.lineno}") from None
    except UnicodeDecodeError:
        raise UsageError(f"'{path}' is not JSON: it is not UTF-8 text") from None
    if not isinstance(data, dict):
        raise UsageError(f"'{path}' is not a manifest (expected a JSON object)")
    return data


def current_manifest(source: str, options) -> dict:
    """The manifest for `source`: read it if `source` is a manifest (.json or an output
    directory holding manifest.json), else compile up to the `placed` stage and build it."""
    if source.endswith(".json"):
        return load_manifest(source)
    if os.path.isdir(source):
        path = os.path.join(source, "manifest.json")
        if not os.path.isfile(path):
            raise UsageError(f"'{source}' is a directory without manifest.json")
        return load_manifest(path)
    from dataclasses import replace

    from agentc import pipeline

    c = pipeline.compile_file(source, replace(options, emit="placed", targets=()), or_later=True)
    pipeline.placement(c)
    return manifest_of(c)


def manifest_of(c) -> dict:
    """The manifest dict of a compilation that has run the `placed` stage."""
    if "manifest.json" in c.artifacts:
        return json.loads(c.artifacts["manifest.json"])
    from agentc.targets import manifest

    return manifest.build(c)
