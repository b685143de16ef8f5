"""Reference plans a placement is compared with (arXiv 2507.19635 section 5 compares
heterogeneous against homogeneous fleets): one homogeneous fleet per device class
(plus the CPUs for CPU-only ops), and greedy list scheduling on the whole cluster.
The fleets share one deadline, the problem's time limit from when they start, so a
plan with baselines takes at most about twice its limit; a fleet the time does not
prove optimal says so (its status and gap), as the plan does.
"""

from __future__ import annotations

import time
from typing import Callable

from .formulation import Formulation, MilpResult
from .heuristics import greedy_choice
from .instance import Instance, Metrics
from .problem import Baseline, Problem


def baselines(problem: Problem, inst: Instance, m: Metrics,
              optimise: Callable[[Instance, float], MilpResult], budget_s: float | None = None) -> list[Baseline]:
    """The plan against homogeneous fleets (one device class plus CPUs, each solved to
    optimality within the fleets' one deadline) and against greedy list scheduling on
    the full cluster. `budget_s`: the fleets' time in all (default the problem's limit)."""
    until = time.perf_counter() + (problem.time_limit_s if budget_s is None else budget_s)
    out = []
    cpu_only = [all(inst.sites[inst.choices[k].site].is_cpu for k in ks) for ks in inst.op_choices]
    classes = sorted({inst.sites[c.site].device_class for c in inst.choices
                      if not inst.sites[c.site].is_cpu and not c.parts})  # a split is no class
    for cls in classes:
        name = f"homogeneous {cls}"
        missing = [inst.ops[i].id for i, ks in enumerate(inst.op_choices) if not cpu_only[i]
                   and not any(inst.sites[inst.choices[k].site].device_class == cls for k in ks)]
        if missing:
            out.append(Baseline(name, False, None, None, None, None, f"op '{missing[0]}' has no option on {cls}"))
            continue
        sub = Instance(problem, lambda i, c, cls=cls: cpu_only[i] or inst.sites[c.site].device_class == cls)
        res = optimise(sub, until)
        if res.choice is not None:
            bm = sub.evaluate(res.choice)
            out.append(Baseline(name, True, bm.cost, bm.e2e_ms, bm.usd_per_request, _ratio(m.cost, bm.cost),
                                status=res.status, gap=res.gap))
            continue
        sub.until = until
        relaxed = Formulation(sub, "relax").solve()
        if relaxed.choice is None:
            out.append(Baseline(name, False, None, None, None, None, "no plan even with constraints relaxed"))
            continue
        bm = sub.evaluate(relaxed.choice)
        out.append(Baseline(name, False, bm.cost, bm.e2e_ms, bm.usd_per_request, None, "; ".join(bm.violations)))
    g = greedy_choice(inst)
    if g is None:
        out.append(Baseline("greedy list scheduling", False, None, None, None, None, "an op has no usable option"))
    else:
        gm = inst.evaluate(g)
        ok = inst.feasible(gm)
        out.append(Baseline("greedy list scheduling", ok, gm.objective, gm.e2e_ms, gm.usd_per_request,
                            _ratio(m.objective, gm.objective) if ok else None, "; ".join(gm.violations)))
    return out


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None
