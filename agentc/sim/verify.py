"""`agentc plan --verify`: hold a plan to its SLA by simulating it (issue 17, item 5).

The planner prices one deterministic path; the simulator draws loop trips and branch
arms from the program, queues requests per pool and batches decode. A plan is verified
when every SLA term holds at its percentile in the simulation; otherwise the miss is an
error that says by how much.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agentc.diagnostics import InfeasiblePlanError

DEFAULT_VERIFY_REQUESTS = 2000
LIGHT_LOAD_RPS = 1.0      # a program without a `load` clause is checked at this rate


@dataclass(frozen=True)
class Verdict:
    load_rps: float
    requests: int
    terms: list[dict]          # report.sla_terms rows, plus the planned value

    @property
    def misses(self) -> list[dict]:
        return [t for t in self.terms if not t["holds"]]


def verify(manifest: dict, load_rps: float | None = None, requests: int = DEFAULT_VERIFY_REQUESTS,
           seed: int = 0) -> Verdict:
    """Simulate the plan of `manifest` at `load_rps` (default: its load clause, else a
    light load) and compare every SLA term with its bound."""
    from agentc.sim import arrivals, model, plan, report

    p = plan.from_manifest(manifest)
    rate = load_rps if load_rps is not None else (p.load_rps or LIGHT_LOAD_RPS)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])
    arr = arrivals.poisson(rate, rng, requests=requests)
    result = model.simulate(p, arr, model.Config(seed=seed, warmup=min(200, len(arr) // 10)))
    planned = {"latency": manifest["totals"]["e2e_ms"], "ttft": manifest["totals"]["ttft_ms"],
               "tbt": manifest["totals"]["tbt_ms"]}
    terms = [dict(t, planned_ms=planned[t["term"].split(".")[0]]) for t in report.sla_terms(result)]
    return Verdict(rate, len(arr), terms)


def check(verdict: Verdict, loc=None) -> None:
    """Raise when a term misses: the simulated percentile, the bound and the gap."""
    if not verdict.misses:
        return
    from agentc.sim import report

    parts = [f"{t['term']}: simulated {report.judged_at(t)} {t['observed_ms']:g} ms misses the bound "
             f"{t['bound_ms']:g} ms by {t['observed_ms'] - t['bound_ms']:.4g} ms ({100 * t['attained']:.2f}% of "
             f"requests meet it; the plan predicted {t['planned_ms']:g} ms)" for t in verdict.misses]
    raise InfeasiblePlanError(f"the plan does not hold its SLA in simulation at {verdict.load_rps:g} req/s: "
                              + "; ".join(parts), loc,
                              ("the planner meets each term over the program's loop trips and branch arms "
                               "with an M/G/c wait per op (docs/planner.md); the simulation adds what that "
                               "model leaves out (batches forming, shared links, queues in series); loosen "
                               "the bound, lower the load or add capacity",))
