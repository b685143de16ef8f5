"""`solve` and `pareto`: the orchestration of the planner.

A placement is found in three steps, each in its own module: a warm start by greedy
list scheduling and an LP-guided search (heuristics.py), the MILP that proves it
optimal (formulation.py), then the report: timings, slack, alternatives and binding
constraints (explain.py) and the reference plans (baselines.py). The model is the
placement problem of arXiv 2507.19635 section 3.1.2, with the SLA on the end-to-end
critical path.

Objectives: "cost" minimises $/request (or $/hr under load); "latency" minimises the
e2e time, then cost at that time (two solves, exact lexicographic order);
"tokens-per-dollar" maximises tokens_per_request / cost, and since tokens per request
are fixed by the program this is the same plan as "cost" (batch-size choices show up as
different options' busy_ms and usd_per_call, which the cost already weighs); the plan
reports `tokens_per_usd`.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

from agentc.diagnostics import InfeasiblePlanError

from . import baselines as _baselines
from .explain import build_plan, infeasible
from .formulation import MilpResult
from .heuristics import greedy_choice, search
from .instance import Instance
from .problem import Plan, Problem


def solve(problem: Problem, *, baselines: bool = True, explain: bool = True) -> Plan:
    """The best placement of `problem`; raises InfeasiblePlanError naming what binds."""
    until = time.perf_counter() + problem.time_limit_s  # one deadline for every phase
    inst = Instance(problem)
    # An agent that only passes its input through has nothing to place: the empty plan.
    res = MilpResult("optimal", (), 0.0, 0.0, 0.0) if not inst.ops else optimise(inst, until)
    if res.choice is None:
        raise infeasible(inst, res)
    m = inst.evaluate(res.choice)
    plan = build_plan(inst, m, res, explain)
    if baselines:
        plan.baselines = _baselines.baselines(problem, inst, m, optimise)
    return plan


def optimise(inst: Instance, until: float | None = None) -> MilpResult:
    """Greedy warm start, then the search and the MILP (two stages for latency), all
    by `until` (perf_counter; default the problem's time limit from now): a planner
    asked for 10 s returns in about 10 s, whatever phase the time runs out in."""
    inst.until = time.perf_counter() + inst.problem.time_limit_s if until is None else until
    try:
        return _optimise(inst)
    finally:
        inst.until = math.inf  # what runs after (explain, baselines) is not cut short


def _optimise(inst: Instance) -> MilpResult:
    g = greedy_choice(inst)
    gm = inst.evaluate(g) if g is not None else None
    if inst.problem.objective != "latency":
        return search(inst, "cost", None, gm)
    first = search(inst, "latency", None, gm)
    if first.choice is None:
        return first
    m1 = inst.evaluate(first.choice)
    cap = m1.e2e_ms * (1 + 1e-9) + 1e-6
    second = search(inst, "cost", cap, m1)
    if second.choice is None:
        return first
    second.solve_time_s += first.solve_time_s
    second.gap = max(first.gap, second.gap)
    if first.status != "optimal":
        second.status = first.status
    return second


def pareto(problem: Problem, points: int = 8) -> list[tuple[float, float]]:
    """(e2e ms, cost) points from the fastest plan to the cheapest, dominated ones dropped.

    Sweeps a hard e2e SLA evenly between the min-latency plan's e2e and the min-cost
    plan's e2e (TTFT/TBT and capacity limits stay as given).
    """
    base = replace(problem, sla_mode="hard")
    fast = solve(replace(base, objective="latency"), baselines=False, explain=False)
    cheap = solve(replace(base, objective="cost", sla=replace(base.sla, e2e_ms=None)),
                  baselines=False, explain=False)
    found = [(fast.e2e_ms, fast.cost), (cheap.e2e_ms, cheap.cost)]
    lo, hi = fast.e2e_ms, cheap.e2e_ms
    for j in range(1, max(points, 2) - 1):
        bound = lo + (hi - lo) * j / (points - 1)
        try:
            pl = solve(replace(base, objective="cost", sla=replace(base.sla, e2e_ms=bound)),
                       baselines=False, explain=False)
        except InfeasiblePlanError:
            continue
        found.append((pl.e2e_ms, pl.cost))
    frontier: list[tuple[float, float]] = []
    for lat, cost in sorted(set(found)):
        if not frontier or cost < frontier[-1][1] * (1 - 1e-9):
            frontier.append((lat, cost))
    return frontier
