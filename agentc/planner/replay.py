"""Rebuild a plan from decisions already made (a placed module resumed from .mlir).

The MILP's decisions (per op: the option rank and the pool) are enough to recompute
everything a plan reports, because every number is evaluated from the choice and never
read from the solver; the solver's status and gap are restored as recorded.
"""

from __future__ import annotations

from agentc.diagnostics import VerifyError

import math

from . import split
from .baselines import baselines as baseline_plans
from .explain import build_plan
from .formulation import MilpResult
from .instance import Instance, Metrics
from .problem import Plan, Problem
from .solve import optimise


def replay(problem: Problem, chosen: dict[str, tuple], status: str, gap: float | None,
           *, baselines: bool = True, explain: bool = True, exact: bool = False) -> Plan:
    """The plan that picks, for each op id, option `rank` on pool `pool` (and, under load,
    `replicas` when given as a third element, and a split op's parts as split.key writes
    them as a fourth, "" for none); `status` and
    `gap` as the solve reported them (the plan's label; None: no bound was proven).
    `exact`: each op at exactly its recorded replicas even where the planner would not
    offer that count (a --repair growth), as `at_load` does."""
    inst, choice = _placed(problem, chosen, _given(chosen) if exact else None)
    m = inst.evaluate(tuple(choice))
    res = MilpResult("optimal" if status == "optimal" else "feasible", tuple(choice), m.objective,
                     math.inf if gap is None else gap, 0.0)
    plan = build_plan(inst, m, res, explain)
    if baselines:
        plan.baselines = baseline_plans(problem, inst, m, optimise)
    return plan


def at_load(problem: Problem, chosen: dict[str, tuple]) -> Metrics:
    """What a placement made at another load (`chosen` as `replay` takes it, with its
    replicas) predicts at `problem.load_rps`: the simulation-agreement check asks the
    planner about the load it simulates. Each op's option is offered at its recorded
    replicas whether or not this load would offer them (Instance.given), so every op
    is evaluated as placed; at the load it was planned for, this is the plan's own
    evaluation. Metrics, not a Plan: an overloaded placement's path is infinite. A split
    op is priced as this load's split menu prices it: at a load where one pool carries
    the op, no split is offered and its recorded split is a VerifyError."""
    inst, choice = _placed(problem, chosen, _given(chosen))
    return inst.evaluate(tuple(choice))


def _given(chosen: dict[str, tuple]) -> dict[str, tuple[int, int]]:
    """Instance.given for `chosen`: each unsplit op's option at its recorded replicas. A
    split op is left to the split menu (pinning its largest part's option would make
    that option fit its pool alone, and then no split is offered)."""
    return {i: (c[0], c[2]) for i, c in chosen.items()
            if len(c) > 2 and c[2] is not None and not (len(c) > 3 and c[3])}


def _placed(problem: Problem, chosen: dict[str, tuple],
            given: dict[str, tuple[int, int]] | None = None) -> tuple[Instance, list[int]]:
    """The Instance and the choice index per op that `chosen` names (see `replay`)."""
    inst = Instance(problem, merge_identical=False, given=given)  # the placement names its pools
    choice = []
    for i, op in enumerate(inst.ops):
        if op.id not in chosen:
            raise VerifyError(f"op '{op.id}' carries no placement to resume from")
        rank, pool, *sized = chosen[op.id]
        parts = sized[1] if len(sized) > 1 else ""
        sized = [x for x in sized[:1] if x is not None]
        if parts:  # a split op (split.py): the choice with exactly the recorded parts
            ks = [k for k in inst.op_choices[i] if inst.choices[k].parts and split.key(inst, inst.choices[k]) == parts]
            if not ks:
                raise VerifyError(f"op '{op.id}': its recorded split '{parts}' is not among the splits it "
                                  "is offered")
            choice.append(ks[0])
            continue
        ks = [k for k in inst.op_choices[i] if not inst.choices[k].parts
              and inst.choices[k].rank == rank and inst.sites[inst.choices[k].site].name == pool]
        # under load one option is priced at several replica counts: the recorded one, or,
        # past the most it offers (a --repair growth), that most: more are offered only
        # while they shorten a wait that a term or the objective counts
        if sized:
            ks = ([k for k in ks if inst.choices[k].replicas == sized[0]]
                  or sorted((k for k in ks if inst.choices[k].replicas < sized[0]),
                            key=lambda k: -inst.choices[k].replicas) or ks)
        if not ks:
            raise VerifyError(f"op '{op.id}': its placement (option {rank} on pool '{pool}') is not "
                              "among its costed options")
        choice.append(ks[0])
    return inst, choice
