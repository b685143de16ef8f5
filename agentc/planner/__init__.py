"""Placement of agent-graph ops onto heterogeneous device pools by MILP (HiGHS).

Pure Python over an abstract problem (no MLIR): the IR `place` pass builds a
`Problem` from costed ops, `solve` returns a `Plan` with the chosen option per op,
transfers, latency/cost totals, per-op alternatives, binding constraints and baselines.
The model is arXiv 2507.19635 section 3.1 (cost model) and 3.1.2 (placement problem).

Modules: problem (the dataclasses, no MLIR), instance (normalised problem and the exact
evaluator), formulation (the MILP), heuristics (greedy, descent, LP-guided search),
explain (critical path, alternatives, binding constraints), baselines, solve (the
orchestration), replay (a plan rebuilt from recorded decisions), scenarios (the
control-flow scenarios SLA statistics are taken over), chance (the MILP's timing rows
and SLA statistics over those scenarios), split (an op no single pool can carry under
load, served by several pools in fractions).
"""

from agentc.planner.heuristics import greedy_choice
from agentc.planner.instance import DEFAULT_LINK, Instance, Metrics
from agentc.planner.problem import (SLA, Alternative, Baseline, Branch, EdgePlacement, Link, Loop, Option,
                                    OpPlacement, Plan, PlanEdge, PlanOp, Pool, Problem, SplitPart)
from agentc.planner.scenarios import MAX_SCENARIOS, continue_prob, trip_law
from agentc.planner.solve import pareto, solve
from agentc.planner.replay import replay

__all__ = [
    "Alternative", "Baseline", "Branch", "DEFAULT_LINK", "EdgePlacement", "Instance", "Link", "Loop",
    "MAX_SCENARIOS", "Metrics", "OpPlacement", "Option", "Plan", "PlanEdge", "PlanOp", "Pool", "Problem",
    "SLA", "SplitPart", "continue_prob", "greedy_choice", "pareto", "replay", "solve", "trip_law",
]
