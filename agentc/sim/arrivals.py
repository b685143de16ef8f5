"""Request arrivals: a Poisson stream at a given rate, or a trace file.

A trace is a CSV file with a header naming at least `arrival_s` (seconds from the
start, non-negative, non-decreasing), `input_tokens` and `output_tokens` (positive),
one request per row. Bad rows are errors at their `file:line`.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass

import numpy as np

from agentc.diagnostics import SimulationInputError, SourceLoc

TRACE_COLUMNS = ("arrival_s", "input_tokens", "output_tokens")


@dataclass(frozen=True)
class Arrival:
    t_ms: float
    input_tokens: float | None = None   # None: the program's own in=/out=
    output_tokens: float | None = None


def poisson(rate_rps: float, rng: np.random.Generator, requests: int | None = None,
            duration_s: float | None = None) -> list[Arrival]:
    """Arrivals of a Poisson process: `requests` of them, or all within `duration_s`."""
    if not rate_rps > 0 or not math.isfinite(rate_rps):
        raise SimulationInputError(f"the load must be a positive rate, got {rate_rps:g} req/s")
    mean_gap_ms = 1e3 / rate_rps
    if requests is not None:
        gaps = rng.exponential(mean_gap_ms, size=requests)
        return [Arrival(float(t)) for t in np.cumsum(gaps)]
    out, t = [], 0.0
    end = duration_s * 1e3
    while True:
        t += float(rng.exponential(mean_gap_ms))
        if t > end:
            return out
        out.append(Arrival(t))


def read_trace(path: str) -> list[Arrival]:
    """The requests of a trace CSV (see the module docstring)."""
    try:
        f = open(path, newline="", encoding="utf-8")
    except OSError as e:
        raise SimulationInputError(f"cannot read trace '{path}': {e.strerror}") from None
    with f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise SimulationInputError("the trace is empty; it needs a header "
                                       f"'{','.join(TRACE_COLUMNS)}'", SourceLoc(path, 1, 1))
        names = [h.strip() for h in header]
        missing = [c for c in TRACE_COLUMNS if c not in names]
        if missing:
            raise SimulationInputError(f"the trace lacks the column(s) {', '.join(missing)}; "
                                       f"its header must name {', '.join(TRACE_COLUMNS)}",
                                       SourceLoc(path, 1, 1), (f"found: {', '.join(names) or 'nothing'}",))
        col = {c: names.index(c) for c in TRACE_COLUMNS}
        out: list[Arrival] = []
        last = 0.0
        for row in reader:
            line = reader.line_num
            if not any(x.strip() for x in row):
                continue
            values = {}
            for c, i in col.items():
                text = row[i].strip() if i < len(row) else ""
                try:
                    values[c] = float(text)
                except ValueError:
                    raise SimulationInputError(f"{c} must be a number, got '{text}'", SourceLoc(path, line, 1)) \
                        from None
                if not math.isfinite(values[c]):
                    raise SimulationInputError(f"{c} must be finite, got '{text}'", SourceLoc(path, line, 1))
            t = values["arrival_s"]
            if t < 0:
                raise SimulationInputError(f"arrival time {t:g} s is negative", SourceLoc(path, line, 1))
            if t < last:
                raise SimulationInputError(f"arrival times must not decrease: {t:g} s comes after {last:g} s",
                                           SourceLoc(path, line, 1))
            for c in ("input_tokens", "output_tokens"):
                if values[c] <= 0:
                    raise SimulationInputError(f"{c} must be positive, got {values[c]:g}", SourceLoc(path, line, 1))
            last = t
            out.append(Arrival(t * 1e3, values["input_tokens"], values["output_tokens"]))
    if not out:
        raise SimulationInputError("the trace has a header but no requests", SourceLoc(path, 1, 1))
    return out
