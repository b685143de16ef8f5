"""Placement of agent-graph ops onto heterogeneous device pools by MILP (HiGHS).

Pure Python over an abstract problem (no MLIR): the IR `place` pass builds a
`Problem` from costed ops, `solve` returns a `Plan` with the chosen option per op,
transfers, latency/cost totals, per-op alternatives, binding constraints and baselines.
See PAPER.md sections 2-3 for the model; `milp.py` for the formulation.
"""

from agentc.planner.greedy import greedy_choice
from agentc.planner.instance import DEFAULT_LINK, Instance, Metrics
from agentc.planner.problem import (SLA, Alternative, Baseline, EdgePlacement, Link, Option,
                                    OpPlacement, Plan, PlanEdge, PlanOp, Pool, Problem)
from agentc.planner.solve import pareto, solve

__all__ = [
    "Alternative", "Baseline", "DEFAULT_LINK", "EdgePlacement", "Instance", "Link", "Metrics",
    "OpPlacement", "Option", "Plan", "PlanEdge", "PlanOp", "Pool", "Problem", "SLA",
    "greedy_choice", "pareto", "solve",
]
