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
    return _simulate(manifest, load_rps, requests, seed)[0]


def _simulate(manifest: dict, load_rps: float | None, requests: int, seed: int):
    from agentc.sim import arrivals, model, plan, report

    p = plan.from_manifest(manifest)
    rate = load_rps if load_rps is not None else (p.load_rps or LIGHT_LOAD_RPS)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])
    arr = arrivals.poisson(rate, rng, requests=requests)
    result = model.simulate(p, arr, model.Config(seed=seed, warmup=min(200, len(arr) // 10)))
    planned = {"latency": manifest["totals"]["e2e_ms"], "ttft": manifest["totals"]["ttft_ms"],
               "tbt": manifest["totals"]["tbt_ms"]}
    terms = [dict(t, planned_ms=planned[t["term"].split(".")[0]]) for t in report.sla_terms(result)]
    return Verdict(rate, len(arr), terms), result


MAX_REPAIR_STEPS = 16


@dataclass(frozen=True)
class Repair:
    """What `repair` added: devices per pool, their price, and the verdict after."""

    added: dict[str, int]
    before: dict[str, int]
    usd_per_hr: dict[str, float]   # per pool, for the devices added
    verdict: Verdict
    steps: int


def repair(manifest: dict, usd_per_device_hr: dict[str, float], load_rps: float | None = None,
           requests: int = DEFAULT_VERIFY_REQUESTS, seed: int = 0) -> tuple[dict, Repair]:
    """Add devices until the simulation holds every SLA term (`plan --verify --repair`).

    The plan's placement stays; only pool sizes grow. Each step simulates the plan and
    grows the pool where the measured requests waited longest in all (the sum of their
    queueing waits) by one replica of its widest op (its largest tp), within the
    cluster's devices; it stops when every term holds, when no pool had a wait (the
    miss is not for want of devices: service or transfer time), when the pools that
    waited are full, or after MAX_REPAIR_STEPS. A greedy growth can overshoot, so what
    holds is then trimmed: each pool, dearest first, gives back replicas while the
    simulation still holds (same seed and arrivals throughout). Returns the grown manifest (devices and
    $/hr in its totals) and what was added; the verdict says whether it holds."""
    import copy

    m = copy.deepcopy(manifest)
    totals = m["totals"]
    if not (m.get("sla") or {}).get("load_rps"):
        raise InfeasiblePlanError("--repair needs a plan sized for a load: without a `load` clause the plan "
                                  "already runs on every device of its pools",
                                  notes=("add `load R rps` to the program",))
    devices = dict(totals.get("devices") or {})
    before = dict(devices)
    count = {p["name"]: int(p["count"]) for p in m["cluster"]["pools"]}
    widest: dict[str, int] = {}
    for op in m["ops"]:
        widest[op["pool"]] = max(widest.get(op["pool"], 1), int(op["tp"]))
    steps = 0
    while True:
        verdict, result = _simulate(m, load_rps, requests, seed)
        if not verdict.misses or steps >= MAX_REPAIR_STEPS:
            break
        waited = sorted(((sum(st.waits), name) for name, st in result.pools.items()
                         if st.waits and sum(st.waits) > 0 and devices.get(name, 0) + widest.get(name, 1)
                         <= count.get(name, 0)), reverse=True)
        if not waited:
            break
        name = waited[0][1]
        devices[name] = devices.get(name, 0) + widest.get(name, 1)
        totals["devices"] = dict(sorted(devices.items()))
        steps += 1
    if not verdict.misses:
        # the growth was greedy: give back, dearest pool first, what the SLA does not need
        for name in sorted(devices, key=lambda k: (-usd_per_device_hr.get(k, 0.0), k)):
            while devices[name] - widest.get(name, 1) >= before.get(name, 0):
                devices[name] -= widest.get(name, 1)
                totals["devices"] = dict(sorted(devices.items()))
                trial, _ = _simulate(m, load_rps, requests, seed)
                steps += 1
                if trial.misses:
                    devices[name] += widest.get(name, 1)
                    totals["devices"] = dict(sorted(devices.items()))
                    break
                verdict = trial
    added = {k: devices[k] - before.get(k, 0) for k in sorted(devices) if devices[k] != before.get(k, 0)}
    usd = {k: n * usd_per_device_hr.get(k, 0.0) for k, n in added.items()}
    if added and totals.get("usd_per_hr") is not None:
        totals["usd_per_hr"] = totals["usd_per_hr"] + sum(usd.values())
    return m, Repair(added, before, usd, verdict, steps)


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
