"""Runtime cost feedback: measured op times from a Chrome trace (trace-event JSON), as
`agentc simulate -o DIR` writes it (trace.json) and `agentc run --trace` is to write it.

How slices map to ops (the contract a trace writer keeps):
- a pool is a process whose `process_name` metadata event says `pool NAME`;
- a complete event (`ph: "X"`) of category `op`, named by the op's id (the manifest's
  `ops[].id`), is the time an execution holds its devices; a tensor-parallel op has
  one identical slice per device thread, counted once (same pool, op, request, start);
- an async slice (`ph: "b"`/`"e"`, matched by `id`) of category `wait`, named by the op
  id, is time the op waited without a device (a tool, a remote store); it belongs to the
  execution of that op and request whose device slice ends where it starts, else it
  is an execution of its own (an op that holds no device);
- an async slice of category `decode` is one request's whole decode sequence under
  continuous batching (its per-batch `step` slices are not per-op and are skipped);
- transfers (`links` process, category `transfer`) and flow events are skipped: links
  are not re-priced from a trace.

Durations are in microseconds in the file, milliseconds here. An op executed several
times per request (a loop) gives one sample per execution, which is what the cost
model prices (the planner multiplies by the expected executions). The measured time
of an op on a pool is the median of its samples (robust to the queueing tails and
warm-up outliers that a mean would carry).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass

from agentc.diagnostics import SourceLoc, UsageError

POOL_PREFIX = "pool "
SAME_US = 1e-3 * 1.5  # two instants this close (us) are one: the file rounds to 1 ns


@dataclass(frozen=True)
class Measured:
    """The median time of one execution of `op` on `pool`, over `samples` executions."""

    op: str
    pool: str
    median_ms: float
    samples: int


def _loc(path: str, text: str, offset: int) -> SourceLoc:
    line = text.count("\n", 0, offset) + 1
    return SourceLoc(path, line, offset - (text.rfind("\n", 0, offset) + 1) + 1)


def _events(path: str, text: str) -> list[tuple[int, object]]:
    """The trace's events with their offsets in the text (for located errors): the
    array itself, or the `traceEvents` array of an object (the two forms of the format)."""
    dec = json.JSONDecoder()

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    def array(i: int) -> list[tuple[int, object]]:
        out = []
        i = skip(i + 1)
        if i < len(text) and text[i] == "]":
            return out
        while True:
            i = skip(i)
            value, end = dec.raw_decode(text, i)
            out.append((i, value))
            i = skip(end)
            if i < len(text) and text[i] == ",":
                i += 1
                continue
            if i < len(text) and text[i] == "]":
                return out
            raise json.JSONDecodeError("expected ',' or ']'", text, i)

    try:
        json.loads(text)
        i = skip(0)
        if text[i] == "[":
            return array(i)
        if text[i] != "{":
            raise UsageError(f"'{path}' is not a Chrome trace (an array of events or an object with "
                             "'traceEvents')", _loc(path, text, i))
        i = skip(i + 1)
        while i < len(text) and text[i] != "}":
            key, i = dec.raw_decode(text, i)
            i = skip(skip(i) + 1)  # the colon
            if key == "traceEvents" and text[i] == "[":
                return array(i)
            _, i = dec.raw_decode(text, i)
            i = skip(i)
            if text[i] == ",":
                i = skip(i + 1)
        raise UsageError(f"'{path}' has no 'traceEvents' array", SourceLoc(path, 1, 1))
    except json.JSONDecodeError as e:
        raise UsageError(f"'{path}' is not JSON: {e.msg}", SourceLoc(path, e.lineno, e.colno)) from None


def read_trace(path: str) -> list[Measured]:
    """Median measured time per (op, pool) in the trace at `path`, sorted."""
    from agentc.inputs import read_source

    text = read_source(path, "trace file", error=UsageError)
    events = _events(path, text)
    pools: dict[int, str] = {}
    for off, ev in events:
        if not isinstance(ev, dict):
            raise UsageError("a trace event must be an object", _loc(path, text, off))
        for key in ("pid", "id"):
            if not isinstance(ev.get(key), (int, str, type(None))) or isinstance(ev.get(key), bool):
                raise UsageError(f"a trace event's '{key}' must be a number or a string", _loc(path, text, off))
        args = ev.get("args")
        if args is not None and not isinstance(args, dict):
            raise UsageError("a trace event's 'args' must be an object", _loc(path, text, off))
        if not isinstance((args or {}).get("request"), (int, str, type(None))):
            raise UsageError("a trace event's 'args.request' must be a number or a string", _loc(path, text, off))
        if ev.get("ph") == "M" and ev.get("name") == "process_name":
            name = (ev.get("args") or {}).get("name")
            if isinstance(name, str) and name.startswith(POOL_PREFIX):
                pools[ev.get("pid")] = name[len(POOL_PREFIX):]

    def field(off, ev, key, kind):
        value = ev.get(key)
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if not ok or (kind != str and not (value == value and abs(value) != float("inf"))):
            raise UsageError(f"a trace event's '{key}' must be a {'string' if kind is str else 'number'}",
                             _loc(path, text, off))
        return value

    busy: dict[tuple, float] = {}       # (pool, op, request, start_us) -> end_us
    opened: dict[tuple, tuple] = {}     # async (cat, pid, id) -> (offset, op, request, start_us)
    waits: list[tuple] = []             # (pool, op, request, start_us, end_us)
    decodes: list[tuple] = []
    for off, ev in events:
        ph, cat = ev.get("ph"), ev.get("cat")
        if ev.get("pid") not in pools or ph not in ("X", "b", "e") or cat not in ("op", "wait", "decode"):
            continue
        pool = pools[ev["pid"]]
        req = (ev.get("args") or {}).get("request")
        if ph == "X" and cat == "op":
            name, ts, dur = field(off, ev, "name", str), field(off, ev, "ts", (int, float)), \
                field(off, ev, "dur", (int, float))
            if dur < 0:
                raise UsageError("a trace slice has a negative 'dur'", _loc(path, text, off))
            busy[(pool, name, req, ts)] = ts + dur
        elif ph == "b" and cat in ("wait", "decode"):
            opened[(cat, ev["pid"], ev.get("id"))] = (off, field(off, ev, "name", str), req,
                                                     field(off, ev, "ts", (int, float)))
        elif ph == "e" and cat in ("wait", "decode"):
            start = opened.pop((cat, ev["pid"], ev.get("id")), None)
            if start is None:
                raise UsageError(f"an async '{cat}' slice ends that never began (no 'b' event with its id)",
                                 _loc(path, text, off))
            end = field(off, ev, "ts", (int, float))
            if end < start[3]:
                raise UsageError(f"an async '{cat}' slice ends before it begins", _loc(path, text, off))
            (waits if cat == "wait" else decodes).append((pool, start[1], start[2], start[3], end))
    if opened:
        off = min(v[0] for v in opened.values())
        raise UsageError("an async slice begins and never ends (no 'e' event with its id)", _loc(path, text, off))

    samples: dict[tuple[str, str], list[float]] = {}
    ends: dict[tuple, list[tuple[float, float]]] = {}  # (pool, op, request) -> [(end, start)]
    for (pool, op, req, start), end in busy.items():
        ends.setdefault((pool, op, req), []).append((end, start))
    executions = {key: end - key[3] for key, end in busy.items()}
    for pool, op, req, start, end in waits:
        # times are rounded to 1 ns in the file: a wait that begins within 1 ns of a
        # device slice's end continues that execution
        owner = next((s for e, s in ends.get((pool, op, req), ()) if abs(e - start) <= SAME_US), None)
        if owner is not None:
            executions[(pool, op, req, owner)] += end - start
        else:
            executions[(pool, op, req, start)] = end - start
    for pool, op, req, start, end in decodes:
        executions[(pool, op, req, start)] = end - start
    for (pool, op, _req, _start), us in executions.items():
        samples.setdefault((op, pool), []).append(us / 1e3)
    if not samples:
        raise UsageError(f"'{path}' holds no op slices on pools (process names 'pool NAME', events of "
                         "category op, wait or decode)", SourceLoc(path, 1, 1))
    return [Measured(op, pool, statistics.median(v), len(v)) for (op, pool), v in sorted(samples.items())]
