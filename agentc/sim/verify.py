"""`agentc plan --verify`: hold a plan to its SLA by simulating it (issue 17, item 5).

The planner prices one deterministic path; the simulator draws loop trips and branch
arms from the program, queues requests per pool and batches decode. A plan is verified
when every SLA term holds at its percentile in the simulation; otherwise the miss is an
error that says by how much. `repair` (`--repair`) adds capacity until the simulation
holds; `agreement` is issue 17's simulation-agreement check (planned against simulated
at three loads; benchmarks/bench_agreement.py, test_sim_agreement.py).

A verdict is a confidence statement, not one run's percentile. One run's p99 is noisy
near a bound: rag at 6.6 req/s (`ttft < 500ms`), 2,000 requests, seeds 0-9, gives a
TTFT p99 of 466-579 ms, so one run passed a plan whose p99 at 10,000 requests is
519-524. So `verify` runs independent replications (each its own seed, arrivals and
warm-up) and judges each term by the share of requests meeting its bound, one mean per
replication: a 95% Student t interval over them (the replications are independent
where a run's requests are not). The term holds when the interval's low end reaches the
percentile, misses when its high end is below it (and, for a percentile, the exact
binomial interval of every request measured agrees: replications whose shares do not
spread are no evidence alone), and is undecided otherwise, which
runs more replications (REPLICATIONS: 5, then 10, 20, 40) and, still undecided at
the last, is reported as not verified: the plan sits within the simulation's noise of
its bound. A `.mean` term is judged the same way on the replications' means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from agentc.diagnostics import InfeasiblePlanError
# a program without a `load` clause is checked at the rate its latency terms are planned at
from agentc.planner.queueing import LIGHT_LOAD_RPS
from agentc.sim import DEFAULT_VERIFY_REQUESTS


@dataclass(frozen=True)
class Verdict:
    load_rps: float
    requests: int              # per replication
    terms: list[dict]          # report.sla_terms rows (with `replicated`'s fields), plus the planned value
    replications: int = 1

    @property
    def misses(self) -> list[dict]:
        """The terms not verified: those that miss and those left undecided."""
        return [t for t in self.terms if not t["holds"]]


# replications run before each look at the verdict (each look adds to the last), and
# the two-sided 95% Student t quantile at each count's degrees of freedom
REPLICATIONS = (5, 10, 20, 40)
T_975 = {1: 12.7062047362, 2: 4.3026527297, 3: 3.1824463053, 4: 2.7764451052, 5: 2.5705818356,
         6: 2.4469118511, 7: 2.3646242516, 8: 2.3060041352, 9: 2.2621571628, 10: 2.2281388520,
         11: 2.2009851601, 12: 2.1788128297, 13: 2.1603686565, 14: 2.1447866879, 15: 2.1314495456,
         16: 2.1199052992, 17: 2.1098155778, 18: 2.1009220402, 19: 2.0930240544, 20: 2.0859634473,
         21: 2.0796138447, 22: 2.0738730679, 23: 2.0686576104, 24: 2.0638985616, 25: 2.0595385528,
         26: 2.0555294386, 27: 2.0518305165, 28: 2.0484071418, 29: 2.0452296421, 30: 2.0422724563,
         31: 2.0395134464, 32: 2.0369333435, 33: 2.0345152974, 34: 2.0322445093, 35: 2.0301079283,
         36: 2.0280940010, 37: 2.0261924630, 38: 2.0243941639, 39: 2.0226909200}


def verify(manifest: dict, load_rps: float | None = None, requests: int = DEFAULT_VERIFY_REQUESTS,
           seed: int = 0, batching: str = "continuous") -> Verdict:
    """Simulate the plan of `manifest` at `load_rps` (default: its load clause, else a
    light load) in replications of `requests` requests until every SLA term is decided
    against its bound (module docstring). `batching="planned"` runs decode and prefill
    at the planner's times."""
    return _verified(manifest, load_rps, requests, seed, batching)[0]


def simulated(manifest: dict, load_rps: float | None = None, requests: int = DEFAULT_VERIFY_REQUESTS,
              seed: int = 0, batching: str = "continuous") -> Verdict:
    """One run of `requests` requests (as `agentc simulate` runs by default), each term
    judged by its share in that run alone: what the agreement check compares a
    prediction with (a point, not a verdict).
    `batching="planned"` runs decode and prefill at the planner's times (what the
    agreement benchmark uses to tell the batch a load fills from queueing)."""
    return _simulate(manifest, load_rps, requests, seed, batching)[0]


def _simulate(manifest: dict, load_rps: float | None, requests: int, seed: int, batching: str = "continuous"):
    from agentc.sim import report

    rate, result = _run(manifest, load_rps, requests, seed, batching)
    return predicted(Verdict(rate, requests, report.sla_terms(result)), manifest), result


def _run(manifest: dict, load_rps: float | None, requests: int, seed: int, batching: str = "continuous",
         drain: bool = False):
    """(rate simulated, model.Result) of one run of `requests` Poisson arrivals, the
    first tenth (at most 200) left out of the statistics: they met empty queues. With
    `drain`, as many more run after them, left out too: the last measured requests
    finish under load rather than in a draining system (a replication of `verify`)."""
    from agentc.sim import arrivals, model, plan

    p = plan.from_manifest(manifest)
    rate = load_rps if load_rps is not None else (p.load_rps or LIGHT_LOAD_RPS)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])
    edge = min(200, requests // 10)
    arr = arrivals.poisson(rate, rng, requests=requests + (edge if drain else 0))
    return rate, model.simulate(p, arr, model.Config(seed=seed, warmup=edge, cooldown=edge if drain else 0,
                                                     batching=batching))


def replication_seed(seed: int, r: int) -> int:
    """Replication r's seed under `seed`: the first is `seed` itself, the others drawn
    from (seed, r) (the first 32-bit word of numpy's SeedSequence), so no two runs of
    one verdict share a seed."""
    return seed if r == 0 else int(np.random.SeedSequence([seed, r]).generate_state(1, np.uint32)[0])


def _verified(manifest: dict, load_rps: float | None, requests: int, seed: int, batching: str = "continuous"):
    """(Verdict, the first replication's Result, replications run): `verify`, with the
    first run's pools for a repair to read where requests waited."""
    from agentc.sim import report

    runs, first = [], None
    for count in REPLICATIONS:
        while len(runs) < count:
            rate, result = _run(manifest, load_rps, requests, replication_seed(seed, len(runs)), batching, drain=True)
            first = first or result
            runs.append(report.term_values(result))
        terms = replicated(runs)
        if all(t["decided"] for t in terms):
            break
    return predicted(Verdict(rate, requests, terms, len(runs)), manifest), first, len(runs)


def replicated(runs: list[list[tuple]]) -> list[dict]:
    """Each term's verdict over independent replications (`runs`: report.term_values of
    each): the statistic over every request measured (`observed_ms`, `attained`), its
    95% t interval over the replications (`observed_ci_ms`, `attained_ci`), and
    `holds` only where the interval decides it (`decided`; module docstring)."""
    from agentc.sim import report

    terms: dict[str, tuple] = {}      # name -> (statistic, bound, the replications' values)
    for run in runs:
        for name, stat, bound, values in run:
            terms.setdefault(name, (stat, bound, []))[2].append(values)
    out = []
    for name, (stat, bound, reps) in terms.items():
        # a replication none of whose requests reached the term (no first token) gives it
        # no share; one replication alone gives no interval
        r = len(reps)
        t = T_975.get(r - 1, math.inf)
        every = np.concatenate(reps)
        edge = report.within(bound)
        pct = report.term_percentile(stat)
        shares = np.array([float((a <= edge).mean()) for a in reps])
        points = np.array([float(a.mean()) if pct is None else float(np.percentile(a, pct)) for a in reps])
        share_lo, share_hi = _interval(shares, t)
        point_lo, point_hi = _interval(points, t)
        if pct is None:
            holds, misses = point_hi <= edge, point_lo > edge
            observed = float(every.mean())
        else:
            # the replications' spread is no evidence where it vanishes (every request of
            # 5 runs of one met the bound): the count of requests must show the share too,
            # an exact binomial interval over all of them (narrower than the t interval
            # wherever the replications do spread: their requests are not independent)
            target = pct / 100.0 - 1e-12
            met = int((every <= edge).sum())
            exact_lo, exact_hi = binomial_interval(met, len(every))
            holds = share_lo >= target and exact_lo >= target
            misses = share_hi < target and exact_hi < target
            observed = float(np.percentile(every, pct))
        out.append({"term": name, "bound_ms": report._r(bound), "percentile": report._r(pct), "statistic": stat,
                    "observed_ms": report._r(observed), "attained": report._r(float((every <= edge).mean())),
                    "observed_ci_ms": [report._r(point_lo), report._r(point_hi)],
                    "attained_ci": [report._r(max(0.0, share_lo)), report._r(min(1.0, share_hi))],
                    "holds": bool(holds), "decided": bool(holds or misses), "replications": r})
    return out


EXACT_COUNTS = 300   # past this many misses and hits, binomial_interval takes Wilson's


def binomial_interval(met: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson's exact interval of a share from `met` of `n` independent trials
    (the shares at which `met` or more, or fewer, is as unlikely as (1 - level) / 2);
    Wilson's score interval where both counts pass EXACT_COUNTS (within 1e-3 of it at a
    share of one half, 1e-4 near a high percentile)."""
    tail = (1.0 - level) / 2.0

    def at_most(k: int, p: float) -> float:   # P(X <= k), X ~ Binomial(n, p), summed in logs
        if k < 0:
            return 0.0
        if k >= n or p <= 0.0:
            return 1.0
        if p >= 1.0:
            return 0.0
        lp, lq = math.log(p), math.log1p(-p)
        logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
                for i in range(k + 1)]
        top = max(logs)
        return min(1.0, math.exp(top) * sum(math.exp(x - top) for x in logs))

    def solve(f) -> float:   # the p in [0, 1] where the decreasing f(p) crosses 0
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2.0
            lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
        return (lo + hi) / 2.0

    if n <= 0:
        return 0.0, 1.0
    if min(met, n - met) > EXACT_COUNTS:   # Wilson's score interval: the sums grow long
        z, share = 1.959963984540054, met / n
        mid = (share + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return mid - half, mid + half
    # counted by the misses (few, near a high percentile): P(met or more) = P(misses <= n - met)
    low = 0.0 if met == 0 else 1.0 - solve(lambda q: at_most(n - met, q) - tail)
    high = 1.0 if met == n else 1.0 - solve(lambda q: at_most(n - met - 1, q) - (1.0 - tail))
    return low, high


def _interval(x: np.ndarray, t: float) -> tuple[float, float]:
    """The t interval of the mean of replications' values `x` (unbounded for one)."""
    if len(x) < 2:
        return -math.inf, math.inf
    half = t * float(x.std(ddof=1)) / math.sqrt(len(x))
    return float(x.mean()) - half, float(x.mean()) + half


def predicted(verdict: Verdict, manifest: dict) -> Verdict:
    """`verdict` with each term's `planned_ms` the prediction of `manifest`'s plan (its
    totals): after a repair re-evaluated the grown plan, the prediction is that plan's."""
    tot = manifest["totals"]
    planned = {"latency": tot["e2e_ms"], "ttft": tot["ttft_ms"], "tbt": tot["tbt_ms"]}
    return replace(verdict, terms=[dict(t, planned_ms=planned[t["term"].split(".")[0]]) for t in verdict.terms])


def with_prediction(verdict: Verdict, prediction: dict) -> Verdict:
    """`verdict` with each term's `predicted_ms`: `prediction` (totals' keys), what the
    plan does at the load simulated as the planner predicts it (cli/plan.py
    predictor_at), beside `planned_ms`, the plan's own (sizing) figure. None where the
    prediction is unbounded (a pool past its capacity) or missing: JSON has no infinity."""
    keys = {"latency": "e2e_ms", "ttft": "ttft_ms", "tbt": "tbt_ms"}

    def value(term: str):
        x = prediction[keys[term.split(".")[0]]]
        return _r6(x) if x is not None and math.isfinite(x) else None
    return replace(verdict, terms=[dict(t, predicted_ms=value(t["term"])) for t in verdict.terms])


def capacity_rps(manifest: dict) -> float:
    """The arrival rate at which the plan's busiest pool is busy all the time: per pool,
    its devices (those the plan rents under load, else the pool's whole count) over the
    device-ms a request asks of it (weight x busy_ms x tp over its ops; decode at the
    planned batch). The third load of the simulation-agreement check is 90% of this."""
    load = (manifest.get("sla") or {}).get("load_rps")
    rented = (manifest.get("totals") or {}).get("devices") or {}
    demand: dict[str, float] = {}
    for op in manifest["ops"]:
        demand[op["pool"]] = demand.get(op["pool"], 0.0) + float(op["weight"]) * float(op["busy_ms"]) * int(op["tp"])
    pools = {p["name"]: int(p["count"]) for p in manifest["cluster"]["pools"]}
    caps = [(rented.get(name, 0) if load else pools[name]) * 1000.0 / d for name, d in demand.items() if d > 0]
    return min(caps) if caps else math.inf


MAX_REPAIR_STEPS = 16     # growth steps per plan (each one simulation), before the trim
REPLAN_FACTORS = (1.0, 1.25, 1.5625)  # planning loads tried, times the simulated load
# Bound of the whole repair: at most 1 + len(REPLAN_FACTORS) plans (the given one and
# the re-plans), each with at most MAX_REPAIR_STEPS + 1 growth simulations and, to trim,
# one per replica added plus one per grown pool: at most 4 x (17 + 32) simulations and 3
# solves, and one simulation of the given plan for the report when a re-plan held
# before it was tried; in practice a handful (rag at 9 req/s: one solve, 2 simulations).


@dataclass(frozen=True)
class Repair:
    """What `repair` did: devices added per pool (to the plan it ends with), the pool
    sizes and $/hr before and after, the load the plan was re-planned for (None: the
    placement was kept), the verdicts before and after, the op replicas the growth
    stands for, the simulations it ran and what it tried. `report` puts it in JSON."""

    added: dict[str, int]          # devices per pool, after minus before (negative: a re-plan freed some)
    before: dict[str, int]
    usd_per_hr: dict[str, float]   # per pool, for the devices added
    verdict: Verdict
    steps: int                     # simulations run
    usd_per_hr_before: float | None = None
    usd_per_hr_after: float | None = None
    replanned_rps: float | None = None
    tried: tuple[str, ...] = ()
    moved: tuple[dict, ...] = ()   # a re-plan's changed ops: id, pool/tp/replicas before and after
    # the given plan simulated at the load before anything changed (its terms' planned_ms
    # that plan's predictions)
    verdict_before: Verdict | None = None
    # the growth counted as replicas of one op per grown pool (grown_op): op id ->
    # (replicas before, after) in the plan that was grown (the re-plan, if any)
    replicas: dict[str, tuple[int, int]] = field(default_factory=dict)


def repair(manifest: dict, usd_per_device_hr: dict[str, float], load_rps: float | None = None,
           requests: int = DEFAULT_VERIFY_REQUESTS, seed: int = 0, replan=None,
           host_pools: frozenset[str] = frozenset()) -> tuple[dict, Repair]:
    """Add capacity until the simulation holds every SLA term (`plan --verify --repair`).

    Two ways, each bounded. Growing (`_grow`): the placement stays; each step grows the
    pool whose requests waited longest in all by one replica of its widest op, within
    the cluster's devices, then what the SLA does not need is given back. Re-planning
    (when `replan(load)` is given: it returns the manifest of the program planned for
    `load` req/s, or raises AgentcError when there is none): the program is planned for
    the simulated load times each of REPLAN_FACTORS above its load clause (the planner
    then moves ops to pools with room and sizes its queues for that load), and each
    such plan is grown. A plan held to more load than it was sized for is re-planned
    first (the given plan is grown last); one that misses at its own load is grown
    first. The first plan that holds is returned. Devices a pool grows by count as
    replicas of one of its ops (grown_op), except on `host_pools` (CPU pools, whose host
    work the planner sizes by shared demand, not replicas). Deterministic: the same seed and
    arrivals for every simulation. Returns the manifest it ends with (devices and $/hr
    in its totals, the grown op's replicas; the given one is not changed) and what was
    done; its verdict says whether it holds, `verdict_before` how the given plan did,
    its `tried` what each plan gave. The predictions in the manifest's totals stay
    those of the plan grown: re-evaluating them needs the planner (cli/plan.py
    `repaired`; the simulator reads manifests only)."""
    from agentc.diagnostics import AgentcError

    if not (manifest.get("sla") or {}).get("load_rps"):
        raise InfeasiblePlanError("--repair needs a plan sized for a load: without a `load` clause the plan "
                                  "already runs on every device of its pools",
                                  notes=("add `load R rps` to the program",))
    planned_rps = float(manifest["sla"]["load_rps"])
    target = float(load_rps) if load_rps is not None else planned_rps
    rates = [target * f for f in REPLAN_FACTORS if target * f > planned_rps * (1 + 1e-9)] if replan else []
    order = [None] + rates if target <= planned_rps * (1 + 1e-9) else rates + [None]
    tried, steps, first, found = [], 0, None, None
    while order:
        rate = order.pop(0)
        if rate is None:
            plan = manifest
        else:
            try:
                plan = replan(rate)
            except AgentcError as e:
                tried.append(f"re-planned for {rate:g} req/s: no plan ({e.message})")
                # a higher load has no plan either: go on to the given plan, if still to try
                order = [r for r in order if r is None]
                continue
        m, rep = _grow(plan, usd_per_device_hr, target, requests, seed, host_pools)
        steps += rep.steps
        tried.append(_tried(rep, rate))
        if rate is None:
            first = (m, rep)
        if not rep.verdict.misses:
            found = (m, rep, rate)
            break
    if first is not None:
        given = first[1].verdict_before
    else:   # a re-plan held before the given plan was tried: simulate it once, for the report
        given, _, runs = _verified(manifest, target, requests, seed)
        steps += runs
    if found is None:   # nothing holds: report the given plan, grown as far as it went
        m, rep = first if first is not None else _grow(manifest, usd_per_device_hr, target, requests, seed,
                                                       host_pools)
    else:
        m, rep, rate = found
        if rate is not None:
            before = dict(manifest["totals"].get("devices") or {})
            after = m["totals"]["devices"]
            added = {k: after.get(k, 0) - before.get(k, 0) for k in sorted(set(before) | set(after))
                     if after.get(k, 0) != before.get(k, 0)}
            rep = replace(rep, replanned_rps=rate, before=before, added=added,
                          usd_per_hr={k: n * usd_per_device_hr.get(k, 0.0) for k, n in added.items()},
                          moved=_moved(manifest, m))
    return m, replace(rep, steps=steps, usd_per_hr_before=(manifest.get("totals") or {}).get("usd_per_hr"),
                      usd_per_hr_after=m["totals"].get("usd_per_hr"), tried=tuple(tried), verdict_before=given)


def report(rep: Repair) -> dict:
    """What a repair did, as JSON: one account for `plan --verify --repair --json`,
    `compile --verify --repair --json` and the compiled manifest's `repair` (fields in
    docs/planner.md). Per pool the devices before, added and after with the added $/hr;
    $/hr before and after; the ops given replicas; per SLA term the simulated value,
    the share of requests meeting the bound and the prediction, before (the given plan)
    and after (the plan settled on); the re-planned load, the plans tried, the ops
    moved and the simulations run."""
    before = dict(sorted(rep.before.items()))
    after = {k: before.get(k, 0) + rep.added.get(k, 0) for k in sorted(set(before) | set(rep.added))
             if before.get(k, 0) + rep.added.get(k, 0)}

    def side(t: dict | None) -> dict | None:
        if t is None:
            return None
        return {"simulated_ms": t["observed_ms"], "attained": t["attained"], "holds": t["holds"],
                "planned_ms": t["planned_ms"], "decided": t.get("decided", True),
                "replications": t.get("replications", 1),
                "simulated_ci_ms": t.get("observed_ci_ms"), "attained_ci": t.get("attained_ci")}

    was = {t["term"]: t for t in (rep.verdict_before.terms if rep.verdict_before else [])}
    terms = [{"term": t["term"], "statistic": t["statistic"], "percentile": t["percentile"],
              "bound_ms": t["bound_ms"], "before": side(was.get(t["term"])), "after": side(t)}
             for t in rep.verdict.terms]
    return {"holds": not rep.verdict.misses, "load_rps": rep.verdict.load_rps, "requests": rep.verdict.requests,
            "replications": rep.verdict.replications,
            "devices_before": before, "devices_after": after, "added_devices": dict(rep.added),
            "added_usd_per_hr": {k: _r6(v) for k, v in rep.usd_per_hr.items()},
            "usd_per_hr_before": rep.usd_per_hr_before, "usd_per_hr_after": rep.usd_per_hr_after,
            "replicas": {k: {"before": a, "after": b} for k, (a, b) in rep.replicas.items()},
            "replanned_rps": rep.replanned_rps, "tried": list(rep.tried), "steps": rep.steps,
            "moved": list(rep.moved), "terms": terms}


def _moved(old: dict, new: dict) -> tuple[dict, ...]:
    """Ops whose pool, tp, replicas or batch differ between two plans of one program."""
    keys = ("pool", "tp", "replicas", "batch")
    was = {o["id"]: o for o in old["ops"]}
    out = []
    for o in sorted(new["ops"], key=lambda o: o["id"]):
        w = was.get(o["id"])
        if w is None or any(w.get(k, 1) != o.get(k, 1) for k in keys):
            out.append({"op": o["id"], "before": None if w is None else {k: w.get(k, 1) for k in keys},
                        "after": {k: o.get(k, 1) for k in keys}})
    return tuple(out)


def _tried(rep: Repair, rate: float | None) -> str:
    """One line on one plan the repair tried: devices it added, and the outcome."""
    what = "the plan" if rate is None else f"re-planned for {rate:g} req/s"
    grown = ", ".join(f"{k} +{n}" for k, n in rep.added.items()) or "no devices"
    worst = max(rep.verdict.misses, key=lambda t: t["observed_ms"] / t["bound_ms"], default=None)
    if worst is None:
        return f"{what}, {grown} added: holds"
    if worst.get("decided", True):
        return (f"{what}, {grown} added: {worst['term']} still {worst['observed_ms']:g} ms > "
                f"{worst['bound_ms']:g} ms ({rep.tried[0]})")
    return (f"{what}, {grown} added: {worst['term']} {worst['observed_ms']:g} ms undecided against "
            f"{worst['bound_ms']:g} ms ({rep.tried[0]})")


def _grow(manifest: dict, usd_per_device_hr: dict[str, float], load_rps: float | None, requests: int,
          seed: int, host_pools: frozenset[str] = frozenset()) -> tuple[dict, Repair]:
    """Grow the pools requests wait on, placement fixed (see `repair`); then trim: each
    pool, dearest first, gives back replicas while the simulation still holds. Stops
    when every term holds, when no pool had a wait (the miss is not for want of
    devices: service or transfer time), when the pools that waited are full, or after
    MAX_REPAIR_STEPS; `tried[0]` of the result says which."""
    import copy

    m = copy.deepcopy(manifest)
    totals = m["totals"]
    devices = dict(totals.get("devices") or {})
    before = dict(devices)
    count = {p["name"]: int(p["count"]) for p in m["cluster"]["pools"]}
    widest: dict[str, int] = {}
    for op in m["ops"]:
        widest[op["pool"]] = max(widest.get(op["pool"], 1), int(op["tp"]))
    # each pool's growth is simulated as the replicas it is recorded as (grown_op), so
    # the manifest returned simulates exactly as the growth did (a decode's engines are
    # its replicas: sim/engines.py decode_engines)
    grows = {name: (None if name in host_pools else grown_op(m["ops"], name)) for name in widest}
    start = {o["id"]: int(o["replicas"]) for o in m["ops"] if "replicas" in o}

    def resize(name: str, k: int) -> None:
        devices[name] = devices.get(name, 0) + k * widest.get(name, 1)
        totals["devices"] = dict(sorted(devices.items()))
        if grows.get(name) is not None:
            grows[name]["replicas"] = int(grows[name]["replicas"]) + k

    steps, sims = 0, 0
    stop = "held"
    first = None
    while True:
        verdict, result, runs = _verified(m, load_rps, requests, seed)
        first = first or verdict
        sims += runs
        if not verdict.misses:
            break
        if steps >= MAX_REPAIR_STEPS:
            stop = f"stopped after {MAX_REPAIR_STEPS} growth steps"
            break
        waited = [(sum(st.waits), name) for name, st in result.pools.items() if st.waits and sum(st.waits) > 0]
        room = sorted(((w, name) for w, name in waited
                       if devices.get(name, 0) + widest.get(name, 1) <= count.get(name, 0)), reverse=True)
        if not room:
            full = sorted(name for _, name in waited)
            stop = (f"the pools requests wait on are full ({', '.join(full)})" if full
                    else "no request waited for a device: the miss is service or transfer time")
            break
        resize(room[0][1], 1)
        steps += 1
    if not verdict.misses:
        # the growth was greedy: give back, dearest pool first, what the SLA does not need
        for name in sorted(devices, key=lambda k: (-usd_per_device_hr.get(k, 0.0), k)):
            while devices[name] - widest.get(name, 1) >= before.get(name, 0):
                resize(name, -1)
                trial, _, runs = _verified(m, load_rps, requests, seed)
                sims += runs
                if trial.misses:
                    resize(name, 1)
                    break
                verdict = trial
    added = {k: devices[k] - before.get(k, 0) for k in sorted(devices) if devices[k] != before.get(k, 0)}
    usd = {k: n * usd_per_device_hr.get(k, 0.0) for k, n in added.items()}
    if added and totals.get("usd_per_hr") is not None:
        _add_cost(m, sum(usd.values()))
    replicas = {o["id"]: (start[o["id"]], int(o["replicas"])) for o in m["ops"]
                if o["id"] in start and int(o["replicas"]) != start[o["id"]]}
    return m, Repair(added, before, usd, verdict, sims, tried=(stop,), verdict_before=first,
                     replicas=dict(sorted(replicas.items())))


def grown_op(ops: list[dict], pool: str) -> dict | None:
    """The op whose replicas a pool's growth counts as: each growth step adds devices for
    one replica of the pool's widest op, so that op (of several as wide, the one with the
    longest planned wait per request, then the first id). The simulator serves a pool's
    ops from its devices together; the planner dedicates replicas to an op, and this is
    the op it re-evaluates with more. None when the widest is a split op (its parts are
    sized per pool)."""
    mine = [o for o in ops if o["pool"] == pool]
    if not mine:
        return None
    tp = max(int(o["tp"]) for o in mine)
    best = min((o for o in mine if int(o["tp"]) == tp),
               key=lambda o: (-float(o.get("queue_wait_ms") or 0.0) * float(o["weight"]), o["id"]))
    return None if "split" in best else best


def _add_cost(m: dict, usd_per_hr: float) -> None:
    """Put `usd_per_hr` more of rented devices into the manifest's totals: $/hr, and
    per request at the plan's load (devices are paid by the hour under load)."""
    totals = m["totals"]
    old = totals["usd_per_hr"]
    totals["usd_per_hr"] = _r6(old + usd_per_hr)
    per_req = usd_per_hr / (3600.0 * float(m["sla"]["load_rps"]))
    if totals.get("usd_per_request") is not None:
        r = totals["usd_per_request"] + per_req
        tokens = (totals["usd_per_request"] / totals["usd_per_1m_tokens"] * 1e6
                  if totals.get("usd_per_1m_tokens") else None)
        totals["usd_per_request"] = _r6(r)
        totals["usd_per_1m_requests"] = _r6(r * 1e6)
        if tokens:
            totals["usd_per_1m_tokens"] = _r6(r / tokens * 1e6)


def _r6(x: float) -> float:
    return float(f"{x:.6g}")


def check(verdict: Verdict, loc=None, repaired: Repair | None = None) -> None:
    """Raise when a term is not verified: one that misses (the simulated percentile, the
    bound and the gap) or is undecided (the interval straddles the bound); after a
    repair, also what it tried (each plan, the devices added, why it stopped)."""
    if not verdict.misses:
        return
    parts = [missed(t) for t in verdict.misses]
    missing = any(t.get("decided", True) for t in verdict.misses)
    runs = (f"{verdict.replications} replications of {verdict.requests} requests" if verdict.replications > 1
            else f"{verdict.requests} requests")
    noise = () if missing else (f"each term is judged by a 95% interval over independent replications (after "
                                f"{runs}, the most it runs); more requests per replication (--requests) narrow it",)
    what = "does not hold its SLA" if missing else "cannot be verified to hold its SLA"
    if repaired is None:
        raise InfeasiblePlanError(f"the plan {what} in simulation at {verdict.load_rps:g} req/s: "
                                  + "; ".join(parts), loc,
                                  noise + ("the planner meets each term over the program's loop trips and branch "
                                           "arms with an M/G/c wait per op (docs/planner.md); the simulation adds "
                                           "what that model leaves out (batches forming, shared links, queues in "
                                           "series); loosen the bound, lower the load or add capacity",))
    raise InfeasiblePlanError(f"--repair found no capacity that holds the SLA in simulation at "
                              f"{verdict.load_rps:g} req/s: " + "; ".join(parts), loc,
                              tuple(f"tried: {t}" for t in repaired.tried)
                              + (f"{repaired.steps} simulation(s) of {verdict.requests} requests",)
                              + noise + ("loosen the bound, lower the load or give the cluster more devices",))


def missed(t: dict) -> str:
    """What a term that is not verified did: by how much it misses, or the interval that
    leaves it undecided; with the plan's figure and, where the caller added it
    (with_prediction), the planner's prediction at the load simulated."""
    from agentc.sim import report

    figures = (f"planned {t['planned_ms']:g} ms"
               + (f", predicted {t['predicted_ms']:g} ms" if t.get("predicted_ms") is not None else ""))
    ci = t.get("observed_ci_ms")
    span = f" (95% interval {ci[0]:g}-{ci[1]:g} ms)" if ci and None not in ci else ""
    if t.get("decided", True):
        return (f"{t['term']}: simulated {report.judged_at(t)} {t['observed_ms']:g} ms{span} misses the bound "
                f"{t['bound_ms']:g} ms by {t['observed_ms'] - t['bound_ms']:.4g} ms ({100 * t['attained']:.2f}% "
                f"of requests meet it; {figures})")
    lo, hi = t["attained_ci"]
    share = (f"{100 * t['attained']:.2f}% of requests meet it (95% interval {100 * lo:.2f}-{100 * hi:.2f}%, "
             f"{t['percentile']:g}% must)" if t["percentile"] is not None else f"{100 * t['attained']:.2f}% of "
                                                                               f"requests meet it")
    return (f"{t['term']}: simulated {report.judged_at(t)} {t['observed_ms']:g} ms{span} is within the "
            f"simulation's noise of the bound {t['bound_ms']:g} ms after {t['replications']} replications: "
            f"{share}; {figures}")


def agreement_loads(manifest: dict) -> dict[str, float]:
    """The three loads a plan is held to: light (a tenth of its load clause), its load
    clause (without one, LIGHT_LOAD_RPS, as `plan --verify`), and 90% of the capacity
    it buys (capacity_rps)."""
    planned = (manifest.get("sla") or {}).get("load_rps") or LIGHT_LOAD_RPS
    return {"light": planned / 10.0, "planned": planned, "90% capacity": 0.9 * capacity_rps(manifest)}


def agreement(view: dict, prices: dict[str, float], replan=None, requests: int = DEFAULT_VERIFY_REQUESTS,
              seed: int = 0, name: str = "", attribution: bool = True, predict=None) -> list[dict]:
    """The simulation-agreement check of issue 17 on one plan (`name` labels its rows):
    at each of `agreement_loads`, one row per SLA term: the plan's prediction and simulation; the
    simulation with decode and prefill at the planner's batch times (`batching
    planned`: what is left of a gap there is queueing, the rest is the batch the load
    fills); and, where the plan misses, the repaired plan's prediction and simulation.
    `planned_ms`/`simulated_ms` are those of the plan that holds (repaired or not).
    Without `attribution` the batch-time simulation is skipped (its column repeats the
    plan's simulation). A prediction is for a load: `predict(load)` (cli/plan.py
    predictor_at: the same placement evaluated by the planner at `load`, totals' keys)
    gives the given plan's at the load simulated, and `predict(load, manifest)` the
    repaired plan's; without it, the manifests' totals (the sizing model's figures)."""
    out = []
    for label, rate in agreement_loads(view).items():
        given = simulated(view, rate, requests, seed)
        if predict is not None:
            given = predicted(given, {"totals": predict(rate)})
        batched = simulated(view, rate, requests, seed, batching="planned") if attribution else given
        rep = None
        if given.misses and (view.get("sla") or {}).get("load_rps"):
            fixed, rep = repair(view, prices, rate, requests, seed, replan)
            if predict is not None:   # the plan it settled on, predicted at this load
                rep = replace(rep, verdict=predicted(rep.verdict, {"totals": predict(rate, fixed)}))
        verdict = rep.verdict if rep is not None else given
        did = "-"
        if rep is not None:
            did = (f"re-planned for {rep.replanned_rps:.4g} req/s; " if rep.replanned_rps is not None else "") + \
                (", ".join(f"{k} {n:+d}" for k, n in rep.added.items()) or "no devices") + \
                f"; {rep.usd_per_hr_before:.2f} -> {rep.usd_per_hr_after:.2f} $/hr"
        for t0, tb, t in zip(given.terms, batched.terms, verdict.terms):
            out.append({"example": name, "load": label, "rps": rate, "term": t["term"],
                        "judged": "mean" if t["percentile"] is None else f"p{t['percentile']:g}",
                        "bound_ms": t["bound_ms"], "given_planned_ms": t0["planned_ms"],
                        "given_simulated_ms": t0["observed_ms"], "given_attained": t0["attained"],
                        "given_holds": t0["holds"], "batch_times_ms": tb["observed_ms"],
                        "planned_ms": t["planned_ms"], "simulated_ms": t["observed_ms"],
                        "ratio": t["planned_ms"] / t["observed_ms"] if t["observed_ms"] else float("inf"),
                        "attained": t["attained"], "holds": t["holds"], "repair": did})
    return out
