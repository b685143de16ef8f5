"""The simulation as a Chrome/Perfetto trace (trace-event JSON; open it in
ui.perfetto.dev or chrome://tracing).

One process per pool with one thread per device: an op that holds devices is a slice
on each of them, a decode run a slice named `op xN (K steps)` (N sequences in the
batch for K steps), a prefill batch `op prefill xN`. Time waited without a device
(tools, remote stores) and each request's decode sequence are async slices of the pool; transfers are async slices of a `links` process, and a flow
arrow joins a producer's slice to its consumer's. Only the first `--trace-requests`
measured requests are recorded, so the file stays small. Times are microseconds.
"""

from __future__ import annotations

import json

from agentc.sim.model import Result


def _us(ms: float) -> float:
    return round(ms * 1e3, 3)


def events(result: Result) -> list[dict]:
    plan = result.plan
    pids = {name: i + 1 for i, name in enumerate(plan.pools)}
    link_pid = len(pids) + 1
    link_tids = {name: i + 1 for i, name in enumerate(sorted(set(plan.links) | {"profiled"}))}
    out: list[dict] = []
    for name, pid in pids.items():
        out.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": f"pool {name}"}})
        out.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": pid}})
        for d in range(plan.pools[name]):
            out.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": d + 1,
                        "args": {"name": f"{name}[{d}]"}})
    out.append({"ph": "M", "name": "process_name", "pid": link_pid, "tid": 0, "args": {"name": "links"}})
    slices: dict[tuple[int, str], list[tuple[float, float, int, int]]] = {}
    for kind, where, ids, name, start, end, req in result.trace:
        if kind == "op" and ids:
            slices.setdefault((req, name), []).append((start, end, pids[where], ids[0] + 1))
    async_id = 0
    for kind, where, ids, name, start, end, req in result.trace:
        args = {} if req is None else {"request": req}
        if kind in ("op", "step") and ids:
            for d in ids:
                out.append({"ph": "X", "name": name, "cat": kind, "pid": pids[where], "tid": d + 1,
                            "ts": _us(start), "dur": _us(end - start), "args": args})
        elif kind in ("wait", "decode"):
            async_id += 1
            common = {"name": name, "cat": kind, "pid": pids[where], "tid": 0, "id": async_id, "args": args}
            out.append(dict(common, ph="b", ts=_us(start)))
            out.append(dict(common, ph="e", ts=_us(end)))
        elif kind == "transfer":
            async_id += 1
            common = {"name": name, "cat": "transfer", "pid": link_pid, "tid": link_tids.get(where, 0),
                      "id": async_id, "args": dict(args, link=where)}
            out.append(dict(common, ph="b", ts=_us(start)))
            out.append(dict(common, ph="e", ts=_us(end)))
            src, dst = name.split(" -> ")
            before = [s for s in slices.get((req, src), ()) if s[1] <= start + 1e-9]
            after = [s for s in slices.get((req, dst), ()) if s[0] >= end - 1e-9]
            if before and after:
                a, b = before[-1], after[0]
                out.append({"ph": "s", "name": "transfer", "cat": "flow", "id": async_id, "pid": a[2],
                            "tid": a[3], "ts": _us(a[0])})
                out.append({"ph": "f", "bp": "e", "name": "transfer", "cat": "flow", "id": async_id,
                            "pid": b[2], "tid": b[3], "ts": _us(b[0])})
    return out


def dumps(result: Result) -> bytes:
    doc = {"displayTimeUnit": "ms", "traceEvents": events(result),
           "otherData": {"agent": result.plan.agent, "seed": result.config.seed}}
    return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()
