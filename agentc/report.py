"""What `agentc` prints for people: a rich table on a terminal, plain lines otherwise.

NO_COLOR is respected; when stdout is not a terminal (CI logs, pipes) the output is
plain text with no escape codes.
"""

from __future__ import annotations

import contextlib
import os
import sys

from rich.console import Console
from rich.table import Table


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    return Console(file=stream, no_color=bool(os.environ.get("NO_COLOR")) or not tty,
                   force_terminal=tty, highlight=False, width=None if tty else 200)


@contextlib.contextmanager
def progress(silent: bool):
    """A spinner naming the running stage on a terminal (stderr); nothing otherwise.
    Yields the callback the driver calls with each stage name."""
    err = console(stderr=True)
    if silent or not err.is_terminal:
        yield None
        return
    with err.status("agentc: starting") as status:
        yield lambda stage: status.update(f"agentc: {stage}")


def num(x, digits: int = 4) -> str:
    """A number for people: `digits` significant digits, '-' for a missing value."""
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def print_compile_summary(c, dest: str) -> None:
    """Ops per pool, SLA terms with their slack, and cost against the baselines."""
    out = console()
    out.print(f"agentc: compiled {c.input_path} to {dest}/")
    plan = c.plan
    if plan is None:
        return
    per_pool: dict[str, list[str]] = {}
    for op_id, p in sorted(plan.ops.items()):
        per_pool.setdefault(p.pool, []).append(op_id)
    t = Table("pool", "devices", "ops", title="placement")
    for pool in sorted(per_pool):
        t.add_row(pool, str(plan.devices.get(pool, "-")), str(len(per_pool[pool])))
    out.print(t)
    problem = c.problem
    t = Table("SLA term", "bound ms", "plan ms", "slack ms", title="SLA")
    for name, bound, got in (("e2e latency", problem.sla.e2e_ms, plan.e2e_ms),
                             ("TTFT", problem.sla.ttft_ms, plan.ttft_ms),
                             ("TBT", problem.sla.tbt_ms, plan.tbt_ms)):
        if bound is not None:
            t.add_row(name, num(bound), num(got), num(None if got is None else bound - got))
    out.print(t)
    unit = "$/hr" if plan.usd_per_hr is not None else "$/request"
    t = Table("plan", unit, "plan / baseline", title="cost")
    t.add_row("agentc (MILP)", num(plan.cost), "1")
    for b in plan.baselines:
        ratio = num(b.ratio) if b.feasible else "-"
        if b.feasible and b.status == "feasible":   # not proven optimal in the baselines' time
            ratio += f" (gap {100 * b.gap:.3g}%)"
        t.add_row(b.name, num(b.cost) if b.feasible else "infeasible", ratio)
    out.print(t)


def summary(c) -> dict:
    """A machine-readable account of the compile (the `--json` output)."""
    from agentc.passes._ir import walk

    ops: dict[str, int] = {}
    if c.module is not None:
        for op in walk(c.module.operation):
            ops[op.name] = ops.get(op.name, 0) + 1
    return {"input": c.input_path, "stage": c.stage, "ops": dict(sorted(ops.items())),
            "artifacts": sorted(c.artifacts)}
