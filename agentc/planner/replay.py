"""Rebuild a plan from decisions already made (a placed module resumed from .mlir).

The MILP's decisions (per op: the option rank and the pool) are enough to recompute
everything a plan reports, because every number is evaluated from the choice and never
read from the solver; the solver's status and gap are restored as recorded.
"""

from __future__ import annotations

from agentc.diagnostics import VerifyError

import math

from . import predict, split
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


def at_load(problem: Problem, chosen: dict[str, tuple], devices: dict[str, int] | None = None,
            prefill: predict.Prefill | None = None, replica_engines: bool = True) -> Metrics:
    """What a placement (`chosen` as `replay` takes it, with its replicas) does at
    `problem.load_rps`, as the simulator runs it (predict.py: each pool one queue over
    its `devices`, the plan's, default those the placement holds at this load; host
    waits on the path; decode batches filled by the decodes on their own pool): the
    planner's prediction, which the simulation-agreement check holds to the simulation.
    Each op keeps its option and recorded replicas whether or not this load would offer
    them (Instance.given). Not the plan's own figures, which are the sizing model's
    sound bound (replay). Metrics, not a Plan: an overloaded placement's path is
    infinite. A split op keeps its sizing times, priced as this load's split menu prices
    it: at a load where one pool carries the op, its recorded split is a VerifyError.
    `prefill`: how the simulator batches its prompts (predict.Prefill; None: unbatched).
    `replica_engines`: the placement was made under a load clause, so its decodes run on
    the engines their replicas make (False: one per tp devices of the whole pool)."""
    inst, choice = _placed(problem, chosen, _given(chosen))
    return predict.predicted(inst, choice, predict.pool_devices(devices, inst, choice), prefill=prefill,
                             replica_engines=replica_engines)


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
