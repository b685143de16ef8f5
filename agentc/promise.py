"""The plan keeps its promise by its own prediction (a step of the `placed` stage).

The MILP sizes a plan under a load with a model it can keep linear: each op's M/G/c
wait on its own replicas, no host queue, prompts not batched. That model is what buys
capacity, but it is not a bound: rag at 5 req/s is sized to a TTFT of 386 ms, while
its prediction (planner/predict.py: one queue per pool, host calls in runs, prefill
batches) is 495 ms and its simulation 466 ms. With `ttft < 450ms` the plan would be
returned as meeting a bound its requests miss.

So, under a `load` clause with a hard SLA, the plan is predicted at its load, and while
a term is predicted over its bound the walk moves on, cheapest first, in two ways:
- within a cost: the plan that missed is excluded (a no-good cut on its decisions, per
  op its option, pool, replicas and split; planner Problem.exclude) and the MILP solved
  again at the same bounds. Cost counts whole devices, so plans of equal cost are
  common, and their figures do not order their predictions: rag's `ttft < 480ms` has
  two plans of 8.565 $/hr, figure 386 ms predicted 495 ms, figure 449 ms predicted
  456 ms. Each plan of the cost is met before any dearer one, so the first that holds
  is found whichever of them the MILP returns first.
- past a cost, once every plan of it missed: the plan dearer than them must come in
  under their figures, so each missed term's sizing bound goes just below the least
  figure a plan of the cost missed it with, and the MILP is solved again. A dearer plan
  whose figures are no better is presumed to miss as they did; this pruning is what
  keeps the walk short (rag `ttft < 356ms`: 3 plans, where excluding plans one by one
  meets 9 of 8.99-9.45 $/hr, predicted 359-364 ms, and runs out of steps).
The plan kept is the cheapest the MILP's model and the prediction both hold among the
plans the pruning leaves. Loosening one bound never makes it dearer: a plan predicted
to hold the tighter bound holds the looser, plans of one cost are searched exhaustively,
and a plan only the looser bound admits has a figure over the tighter bound, so pruning
by it cuts nothing the tighter walk kept. Where it does not hold: a plan only the looser
walk meets may miss another term, and prune by that term's figure; a plan labelled
feasible (a gap left open, --time-limit) is not the cheapest of its cost; and the step
limit, as a looser bound's walk can be longer and end in the error where a tighter
bound's found a plan. The bounds and excluded plans are recorded on the graph
(`sized_*_ms`, `excluded_plans`), so a module printed at `placed` rebuilds the same
problem, and in the manifest (`sla.sized_ms`, `sla.excluded_plans`). Without a load
clause the latency terms are those of an isolated request (README), so nothing is
predicted here.
"""

from __future__ import annotations

from agentc.diagnostics import InfeasiblePlanError

# plans predicted to miss before the planner gives up; a new sizing bound goes just below
# a missed figure (NEXT_PLAN_REL under it: well past the MILP's tolerance on a bound,
# SLA_REL_TOL); plans within SAME_COST_REL of each other's cost are of one cost
MAX_SIZING_STEPS = 8
NEXT_PLAN_REL = 1e-6
SAME_COST_REL = 1e-9
TERMS = (("e2e", "latency"), ("ttft", "ttft"), ("tbt", "tbt"))   # prediction key stem, SLA attribute stem


def prediction(c, load: float, view: dict | None = None) -> dict:
    """`{"e2e_ms", "ttft_ms", "tbt_ms"}` of `c`'s own placement at `load` req/s as the
    simulator runs it (planner/replay.py at_load), on the plan's devices under a load
    clause, else its pools' whole counts; prompts batched as the manifest's prefill
    tables say (`view`: `c`'s manifest where the caller has built it). Computed once
    per placement and load (Placement.predictions)."""
    import dataclasses
    import json

    from agentc.planner.replay import at_load
    from agentc.targets import manifest

    problem, plan = c.placement.problem, c.placement.plan
    known = c.placement.predictions.get(float(load))
    if known is not None:
        return dict(known)
    if view is None:
        view = json.loads(manifest.dumps(manifest.build(c)))
    options = {op.id: op.options for op in problem.ops}
    chosen = {i: (options[i].index(p.option), p.pool, p.replicas, p.split_key) for i, p in plan.ops.items()}
    devices = dict(plan.devices) if problem.load_rps else {p.name: p.count for p in problem.pools}
    m = at_load(dataclasses.replace(problem, load_rps=float(load)), chosen, devices, batches(view),
                replica_engines=bool(problem.load_rps))
    c.placement.predictions[float(load)] = {"e2e_ms": m.e2e_ms, "ttft_ms": m.ttft_ms, "tbt_ms": m.tbt_ms}
    return dict(c.placement.predictions[float(load)])


def batches(view: dict):
    """How the simulator batches the prompts of the plan in manifest `view`: its prefill
    ops' batch tables (manifest `prefill`) and the default token budget."""
    from agentc.planner.predict import PREFILL_BUDGET_TOKENS, Prefill

    return Prefill({o["id"]: tuple(sorted((float(n), float(t)) for n, t in o["prefill"]["step_ms"]))
                    for o in view["ops"] if o.get("prefill")}, PREFILL_BUDGET_TOKENS)


def keep(c, place) -> None:
    """Re-solve `c`'s placement (`place()`: the place pass again, reading the sized
    bounds and the excluded plans off the graph) until its prediction holds every SLA
    term (module docstring); an InfeasiblePlanError at the graph when no plan left does."""
    from mlir import ir

    from agentc.frontend.lower import attrs
    from agentc.passes._ir import get
    from agentc.passes._plan_ctx import EXCLUDED_PLANS, entry_graph, excluded_plans, sized_bounds
    from agentc.planner.instance import exceeds

    problem = c.placement.problem if c.placement else None
    if problem is None or not problem.load_rps or c.options.sla_mode != "hard":
        return
    graph = entry_graph(c.module)
    bounds = {t: get(graph, f"sla_{a}_ms") for t, a in TERMS}
    if all(b is None for b in bounds.values()) or sized_bounds(graph) or excluded_plans(graph):
        return   # no bound to keep, or a module that already went through this step (restored)
    names = _names(graph)
    sized = dict(bounds)
    tried, missed = [], []   # missed: (figures, terms over) of each plan whose prediction missed

    def solve_again(why: str) -> None:
        try:
            place()
        except InfeasiblePlanError as e:
            raise _failed(graph, bounds, tried, names, f"{why}: {e.message}") from None

    for step in range(MAX_SIZING_STEPS + 1):
        pred = prediction(c, problem.load_rps)
        over = {t for t, b in bounds.items()
                if b is not None and pred[f"{t}_ms"] is not None and exceeds(pred[f"{t}_ms"], b)}
        tried.append(_said(c.placement.plan, sized, bounds, pred, over, names))
        if not over:
            break
        if step == MAX_SIZING_STEPS:
            raise _failed(graph, bounds, tried, names, f"after {MAX_SIZING_STEPS + 1} plans")
        plan = c.placement.plan
        missed.append(({"e2e": plan.e2e_ms, "ttft": plan.ttft_ms, "tbt": plan.tbt_ms}, over))
        with c.ctx, ir.Location.unknown():
            graph.attributes[EXCLUDED_PLANS] = attrs(plans=excluded_plans(graph) + (decisions(problem, plan),))["plans"]
        solve_again(f"{len(missed)} plan(s) excluded")
        if c.placement.plan.cost <= plan.cost * (1.0 + SAME_COST_REL):
            problem = c.placement.problem
            continue   # another plan of this cost (or cheaper, past an open gap): predict it
        # every plan of this cost missed: a dearer one must come in under the figures
        # they missed with (those of cheaper costs are already in `sized`)
        for figure, terms in missed:
            for t in terms:
                sized[t] = min(sized[t], figure[t] * (1.0 - NEXT_PLAN_REL))
        with c.ctx, ir.Location.unknown():
            for t, a in TERMS:
                if sized[t] is not None and sized[t] != bounds[t]:
                    graph.attributes[f"sized_{a}_ms"] = ir.FloatAttr.get(ir.F64Type.get(), float(sized[t]))
        solve_again(f"sized to {_bounds_text(sized, bounds, names)}")
        problem = c.placement.problem


def decisions(problem, plan) -> tuple:
    """`plan`'s decisions as a Problem.exclude entry: per op (id order) its id, option
    rank, pool, replicas and split key."""
    options = {op.id: op.options for op in problem.ops}
    return tuple((i, options[i].index(p.option), p.pool, int(p.replicas), p.split_key)
                 for i, p in sorted(plan.ops.items()))


def excluded_count(c) -> int:
    """How many plans this step excluded as their prediction missed (0: none)."""
    from agentc.passes._plan_ctx import entry_graph, excluded_plans

    return len(excluded_plans(entry_graph(c.module)))


def sized_bounds(c) -> dict[str, tuple[float, float]]:
    """term name ('latency', 'ttft', 'tbt') -> (sized bound, program's bound) for each
    term this step sized below the program's bound (empty: none)."""
    from agentc.passes._ir import get
    from agentc.passes._plan_ctx import entry_graph, sized_bounds

    graph = entry_graph(c.module)
    return {t: (b, get(graph, f"sla_{t}_ms")) for t, b in sized_bounds(graph).items()}


def _names(graph) -> dict[str, str]:
    """Each term as the program writes it, with its statistic ("latency.p95", "ttft")."""
    from agentc.passes.place import sla_stats
    from agentc.planner.problem import stat_name

    stats = sla_stats(graph)
    return {t: a + stat_name(stats.get(f"{t}_stat", "all")) for t, a in TERMS}


def _bounds_text(sized: dict, bounds: dict, names: dict) -> str:
    return ", ".join(f"{names[t]} {sized[t]:.4g} ms" for t, _a in TERMS
                     if sized[t] is not None and sized[t] != bounds[t])


def _said(plan, sized: dict, bounds: dict, pred: dict, over: set, names: dict) -> str:
    """One line on one plan: its price (under a load: $/hr), the bounds it was sized to
    and what its prediction missed."""
    what = f"sized to {_bounds_text(sized, bounds, names)}" if any(
        sized[t] != bounds[t] for t in sized) else "sized to the program's bounds"
    what = f"{plan.cost:.6g} $/hr, {what}"
    miss = "; ".join(f"{names[t]} predicted {pred[f'{t}_ms']:.4g} ms, over {bounds[t]:.4g} ms" for t, _a in TERMS
                     if t in over)
    return what + (f": {miss}" if miss else ": the prediction holds")


def _failed(graph, bounds: dict, tried: list[str], names: dict, why: str) -> InfeasiblePlanError:
    from agentc.passes._ir import source_loc

    terms = ", ".join(f"{names[t]} < {bounds[t]:.4g} ms" for t, _a in TERMS if bounds[t] is not None)
    return InfeasiblePlanError(
        f"no plan is predicted to hold the SLA ({terms}) at its load: {why}", source_loc(graph),
        tuple(f"tried: {t}" for t in tried)
        + ("the prediction is how the simulator runs the plan (planner/predict.py); loosen the bound, "
           "lower the load or give the cluster more devices",))
