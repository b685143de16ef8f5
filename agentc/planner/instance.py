"""A `Problem` normalised for solving, and the exact evaluator of a placement.

Options name a pool or a device class; here each is expanded into one `Choice` per
pool it can run on, so every choice sits on exactly one pool ("site"). A device named
by no pool becomes an implicit, unlimited, metered site. Choices that cannot be used
(memory, tp larger than the pool, TTFT/TBT over a hard SLA) are kept with the reason, so
explanations can cite them.

`Instance.evaluate` is the single definition of what a placement costs and how long it
takes; the MILP is checked against it, and baselines and alternatives are priced by it.

Times are judged over the program's control-flow scenarios (scenarios.py): in each one
an op's duration is its count there times one call's time, the latency is the longest
path, TTFT is the start of the first first-token op the scenario runs plus that one
call's time to first token (and, after a prefill, the KV transfer and one decode step),
and TBT is the slowest step of any decode it runs (a decode's call and step at the
batch its traffic fills, `served`). An SLA term holds at its statistic
(SLA.e2e_stat etc.): every scenario, the NN% quantile over scenarios, or their mean.
Cost stays the expectation: ops priced at `weight` executions per request.
"""

from __future__ import annotations

import collections
import functools
import graphlib
import math
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from agentc.diagnostics import InfeasiblePlanError, VerifyError
from agentc.units import transfer_ms

from . import queueing, split
from .problem import Link, Option, Problem, stat_name, stat_quantile
from .scenarios import Enumerator

SCENARIO_VECTOR_MIN = 4096   # scenarios x ops from which all scenarios' schedules are one numpy pass

# arXiv 2507.19635 section 4: RoCE links of 200-400 Gb/s between chassis; take the low end.
DEFAULT_LINK = Link("*", "*", gbps=200.0, latency_ms=0.0)
# A time over a hard bound by at most this fraction of the bound is float noise from
# summing a path in another order, not a miss; anything more is a violation. The same
# test decides what the planner returns and what the brute-force tests accept.
SLA_REL_TOL = 1e-9


def exceeds(value: float, bound: float) -> bool:
    """`value` is over `bound` by more than float noise (SLA_REL_TOL)."""
    return value > bound + SLA_REL_TOL * max(1.0, abs(bound))


def denoise(x: float, scale: float) -> float:
    """`x` with float noise relative to `scale` snapped to 0 (a slack of 2.3e-13 ms on a
    120 ms path is 0; a cost delta of 2e-10 on a 5e-6 $ plan is not noise)."""
    return 0.0 if abs(x) <= SLA_REL_TOL * abs(scale) else x


@dataclass(frozen=True)
class Site:
    name: str
    device_class: str
    count: int | None  # None: unlimited
    usd_per_hr: float
    implicit: bool
    cpu: bool = False
    # a split (split.py): the pools an op's traffic is shared over, as (site, fraction);
    # empty for a real pool. A split site has no devices of its own (count None).
    parts: tuple[tuple[int, float], ...] = ()

    @property
    def metered(self) -> bool:
        return self.usd_per_hr == 0.0 and not self.parts

    @property
    def is_cpu(self) -> bool:
        return self.cpu or "cpu" in self.device_class.lower()


@dataclass(frozen=True)
class Choice:
    op: int
    rank: int  # position of the option in PlanOp.options
    site: int
    option: Option
    excluded: str | None  # why a hard plan may not use it
    ttft_excess_ms: float
    tbt_excess_ms: float
    memory_ok: bool
    tp_excess: int  # devices missing in the pool for this tp
    # under load (queueing.py): replicas dedicated to the op, the devices they hold
    # (replicas * tp), and the wait per call an execution then sees
    replicas: int = 1
    devices: int = 0
    wait_ms: float = 0.0
    # a split choice (split.py): its fractions, one per pool; `option`, `replicas` and
    # `wait_ms` are then the slowest part's and the largest's (see split.py)
    parts: tuple = ()
    # the same replicas' wait at the TTFT term's quantile (ttft_part); None: `wait_ms`
    # (no load, the same quantile, or a split choice)
    ttft_wait_ms: float | None = None
    # a decode (queueing.py, the batch a decode runs at): one call's time at the batch
    # its load fills at the e2e term's quantile (`run_batch`), its step at the TBT
    # term's, and the step a first-token chain ends with at the TTFT term's; None: the
    # option's own (a full batch), as for every other op
    run_ms: float | None = None
    run_tbt_ms: float | None = None
    first_step_ms: float | None = None
    run_batch: float | None = None

    @property
    def ms(self) -> float:
        """One call's time on the path, before its queueing wait."""
        return self.option.time_ms if self.run_ms is None else self.run_ms

    @property
    def tbt(self) -> float | None:
        """Its time between tokens (None: it streams none)."""
        return self.option.tbt_ms if self.run_tbt_ms is None else self.run_tbt_ms


@dataclass(frozen=True)
class Edge:
    u: int
    v: int
    weight: float
    bytes: float
    profiled: dict | None


@dataclass
class Metrics:
    """Everything about one placement (`choice[i]` = index into Instance.choices)."""

    choice: tuple[int, ...]
    start: list[float]
    finish: list[float]
    e2e_ms: float
    transfers: list[tuple[float, float]]  # per edge: (ms, usd) per transfer
    usd_per_request: float
    usd_per_hr: float | None
    devices: dict[int, int]
    demand: dict[int, float]
    cost: float
    violations: list[str] = field(default_factory=list)
    split: list[tuple[int, int]] = field(default_factory=list)  # colocated ops on two pools
    e2e_over_ms: float = 0.0
    latency_excess_ms: float = 0.0  # TTFT (statistic) + TBT (per op) excess, soft mode's measure
    ttft_ms: float | None = None    # at SLA.ttft_stat over the scenarios (None: no first token)
    tbt_ms: float | None = None     # at SLA.tbt_stat
    ttft_over_ms: float = 0.0
    tbt_over_ms: float = 0.0
    path_ms: float = 0.0            # length of the schedule start/finish (expected counts)
    pool_over: dict[int, int] = field(default_factory=dict)
    penalty: float = 0.0

    @property
    def objective(self) -> float:
        return self.cost + self.penalty


class Instance:
    """A validated problem with sites, choices, topological order and transfer costs."""

    def __init__(self, problem: Problem, restrict: Callable[[int, Choice], bool] | None = None,
                 merge_identical: bool = True, given: dict[str, tuple[int, int]] | None = None):
        self.problem = p = problem
        self.merge_identical = merge_identical
        # op id -> (option rank, replicas) of a placement made at another load (replay's
        # `at_load`): that option is offered at exactly those replicas, even where this
        # load would not offer them (a batch it cannot fill, more replicas than remove
        # its wait), so the placement can be evaluated here. None when planning.
        self.given = given or {}
        self._wide_twins = False
        # the perf_counter time by which the running optimisation returns (`solve.optimise`
        # sets it): every LP and MILP is cut to it, and each phase of `search` checks it
        self.until = math.inf
        self.hard = p.sla_mode == "hard"
        self.load = float(p.load_rps or 0.0)
        # the rate latency terms are judged at: the load, else the program's light traffic
        self.rate = self.load if self.load > 0 else queueing.LIGHT_LOAD_RPS
        if p.sla_mode not in ("hard", "soft"):
            raise VerifyError(f"unknown sla_mode '{p.sla_mode}' (hard, soft)")
        if p.objective not in ("cost", "latency", "tokens-per-dollar"):
            raise VerifyError(f"unknown objective '{p.objective}' (cost, latency, tokens-per-dollar)")
        self.ops = list(p.ops)
        self.index = {}
        for i, op in enumerate(self.ops):
            if op.id in self.index:
                raise VerifyError(f"duplicate op id '{op.id}'")
            if op.weight < 0:
                raise VerifyError(f"op '{op.id}' has negative weight {op.weight}")
            self.index[op.id] = i
        self._check_sla()
        self._build_sites()
        self._build_edges()
        self._build_scenarios()
        self._build_choices(restrict)
        if self.dropped and any(split.needs_split(self, i) for i in range(len(self.ops))):
            # a split op may use several twins: keep as many as splits can use, and redo
            self._wide_twins = True
            self._build_sites()
            self._tr_cache.clear()
            self._build_choices(restrict)
        self.colocate: list[tuple[int, int]] = []
        for a, b in p.colocate:
            if a not in self.index or b not in self.index:
                raise VerifyError(f"colocated op '{a if a not in self.index else b}' is not in the graph")
            self.colocate.append((self.index[a], self.index[b]))
        self.partner: dict[int, int] = {}
        for a, b in self.colocate:
            self.partner.setdefault(b, a)
            self.partner.setdefault(a, b)
        self.excluded = [x for x in map(self._choices_of, p.exclude) if x is not None]

    # -- construction -------------------------------------------------------------

    def _check_sla(self) -> None:
        sla = self.problem.sla
        for name in ("e2e_stat", "ttft_stat", "tbt_stat"):
            try:
                stat_quantile(getattr(sla, name))
            except ValueError as err:
                raise VerifyError(str(err)) from None
        self.q_e2e, self.q_ttft, self.q_tbt = (stat_quantile(sla.e2e_stat), stat_quantile(sla.ttft_stat),
                                               stat_quantile(sla.tbt_stat))

    def _build_scenarios(self) -> None:
        """`scen`: (probability, op counts, edge counts) per scenario; `ttft_ops`: op
        indices that can give the first token, in program order, with their KV edge."""
        p = self.problem
        n = len(self.ops)
        if p.flow is None:
            self.scen = [(1.0, tuple(op.weight for op in self.ops), tuple(e.weight for e in self.edges))]
            self.scen_exact, self.scen_total = True, 1
        else:
            seen: list[str] = []
            _flow_ops(p.flow, seen)
            missing = sorted(set(self.index) - set(seen))
            unknown = sorted(set(seen) - set(self.index))
            twice = sorted(x for x, n in collections.Counter(seen).items() if n > 1)
            for what, ids in (("is not in the control flow", missing), ("is not an op", unknown),
                              ("appears twice in the control flow", twice)):
                if ids:
                    raise VerifyError(f"op '{ids[0]}' {what}")
            fastest = [min((o.time_ms for o in op.options), default=0.0) for op in self.ops]
            found, merged, total = scenarios(p.flow, tuple(self.index.items()), tuple(fastest))
            self.scen = []
            for prob, counts in found:
                ec = tuple(counts[e.v] if counts[e.u] > 0 else 0.0 for e in self.edges)
                self.scen.append((prob, counts, ec))
            self.scen_exact, self.scen_total = not merged, total
        # ops that stream tokens (an option reports a TBT); a scenario running none has no TBT
        self.tbt_ops = [i for i, op in enumerate(self.ops) if any(o.tbt_ms is not None for o in op.options)]
        self._streams = set(self.tbt_ops)
        # the decode ops the simulator runs as engines, which the jobs on their pool crowd
        # (queueing.crowding); a streaming op of another kind holds its devices per call
        self.engine_ops = [i for i in self.tbt_ops if self.ops[i].kind in queueing.ENGINE_KINDS]
        self._scen_arrays = None   # the scenarios' counts as arrays (`_longest_all`), made on first use
        self.executed = [any(c[i] > 0 for pr, c, _ in self.scen if pr > 0) for i in range(n)]
        chains = p.ttft_ops
        if chains is None:
            chains = [[op.id] for op in self.ops if any(o.ttft_ms is not None for o in op.options)]
        self.ttft_chains: list[tuple[list[int], list[int]]] = []  # (ops, edges between them)
        for chain in chains:
            chain = [chain] if isinstance(chain, str) else list(chain)
            for x in chain:
                if x not in self.index:
                    raise VerifyError(f"first-token op '{x}' is not in the graph")
            ops = [self.index[x] for x in chain]
            links = []
            for u, v in zip(ops, ops[1:]):
                k = next((k for k in self.succ[u] if self.edges[k].v == v), None)
                if k is None:
                    raise VerifyError(f"first-token chain: no edge {self.ops[u].id} -> {self.ops[v].id}")
                links.append(k)
            self.ttft_chains.append((ops, links))
        self.ttft_chains.sort(key=lambda c: c[0][0])
        # the chain timed for TTFT in each scenario: the first (program order) it runs;
        # when first-token calls run in parallel this is an upper bound
        self.first = [next((ch for ch in self.ttft_chains if all(c[i] > 0 for i in ch[0])), None)
                      for _, c, _ in self.scen]

    def _build_sites(self) -> None:
        p = self.problem
        pools = sorted(p.pools, key=lambda pl: pl.name)
        self.twins: dict[str, list[str]] = {}  # a kept pool -> the identical pools it stands for
        self.dropped: set[str] = set()
        if self.merge_identical:
            pools = self._merge_twins(pools)
        self.sites: list[Site] = [
            Site(pl.name, pl.device_class, pl.count, pl.usd_per_hr, False, pl.cpu)
            for pl in pools
        ]
        known = {s.name for s in self.sites} | {s.device_class for s in self.sites}
        implicit = sorted({o.device for op in self.ops for o in op.options} - known - self.dropped)
        self.sites += [Site(d, d, None, 0.0, True) for d in implicit]
        self.site_index = {s.name: j for j, s in enumerate(self.sites)}

    def _merge_twins(self, pools: list) -> list:
        """`pools` with identical pools kept only as often as a plan can use them.

        Pools of one class, size and price that no link, option or profiled transfer
        names are interchangeable: any plan stays a plan, at the same cost and times,
        when they swap names. A plan puts each op on one pool, and the twins that host
        only ops keeping no device busy can be merged into one, so it needs at most one
        twin per op that keeps devices busy, and one more: the first that many are kept
        (by name) and the rest cannot improve on the optimum. Without load there is no capacity at all,
        and moving every op on such pools onto the first one only removes transfers
        between them (their links to the rest are the same), so one is kept. A cluster
        of 1,000 identical CPU pools is then the size of one (the placement model grows
        with pools squared: every edge prices its pairs of sites)."""
        p = self.problem
        named = {x for ln in p.links for x in (ln.a, ln.b)}
        named |= {x for e in p.edges if e.profiled for pair in e.profiled for x in pair}
        alike = collections.Counter((pl.device_class, pl.count, pl.usd_per_hr, pl.cpu)
                                    for pl in pools if pl.name not in named)
        if all(n == 1 for n in alike.values()):
            return pools   # no two pools could be twins: skip comparing their offers
        # what each pool offers every op, its own name left out: twins offer the same
        offers: dict[str, list] = {pl.name: [[] for _ in self.ops] for pl in pools}
        for i, op in enumerate(self.ops):
            for rank, o in enumerate(op.options):
                if o.device in offers:
                    offers[o.device][i].append((rank, replace(o, device="")))
        # under load, pools that only host ops keeping no device busy can all be merged
        # into one (each costs at least a device; links to the rest are alike), so a
        # plan needs at most one twin per op that keeps devices busy, and one more
        busy = sum(1 for op in self.ops if any(o.busy_ms > 0 for o in op.options))
        # (where an op is split, split.py, it may use up to MAX_PARTS pools: that many each)
        per_op = split.MAX_PARTS if self._wide_twins else 1
        keep = 1 if self.load <= 0 else max(1, min(len(self.ops) * per_op, busy * per_op + 1))
        groups: dict[tuple, list] = {}
        out = []
        for pl in pools:
            if pl.name in named:
                out.append(pl)
                continue
            sig = (pl.device_class, pl.count, pl.usd_per_hr, pl.cpu,
                   tuple(tuple(o for _, o in per_op) for per_op in offers[pl.name]))
            twins = groups.setdefault(sig, [])
            twins.append(pl)
            if len(twins) <= keep:
                out.append(pl)
        for twins in groups.values():
            if len(twins) > keep:
                self.twins[twins[keep - 1].name] = [pl.name for pl in twins[keep:]]
                self.dropped.update(pl.name for pl in twins[keep:])
        return out

    def sites_for(self, device: str) -> list[int]:
        """Sites an option on `device` may use: the pool of that name, else every pool of
        that device class, else the implicit site."""
        j = self.site_index.get(device)
        if j is not None and not self.sites[j].implicit:
            return [j]
        by_class = [j for j, s in enumerate(self.sites) if not s.implicit and s.device_class == device]
        return by_class or [self.site_index[device]]

    def _build_choices(self, restrict) -> None:
        sla = self.problem.sla
        self._served_cache: dict[tuple, tuple] = {}
        self.choices: list[Choice] = []
        self.op_choices: list[list[int]] = []
        for i, op in enumerate(self.ops):
            if not op.options:
                raise InfeasiblePlanError(f"op '{op.id}' has no options to run on")
            mine = []
            for rank, o in enumerate(op.options):
                if o.tp < 1 or o.batch < 1:
                    raise VerifyError(f"op '{op.id}': option on {o.device} has tp={o.tp}, batch={o.batch}")
                if o.device in self.dropped:  # a twin of a kept pool (_merge_twins)
                    continue
                run = self.served(i, o)   # a decode's times at the batch its load fills
                ms, tbt = (o.time_ms, o.tbt_ms) if run is None else run[:2]
                for j in self.sites_for(o.device):
                    site = self.sites[j]
                    ttft_x = 0.0  # TTFT is a path's time (evaluate), not one option's
                    tbt_x = max(0.0, tbt - sla.tbt_ms) if (sla.tbt_ms is not None and tbt is not None) else 0.0
                    tp_x = max(0, o.tp - site.count) if site.count is not None else 0
                    reason = None
                    if not o.memory_ok:
                        reason = f"does not fit device memory on {site.name}"
                    elif tp_x:
                        reason = f"tp={o.tp} needs more devices than pool {site.name} has ({site.count})"
                    elif self.hard and tbt_x > 0 and self.q_tbt == 1.0 and self.executed[i]:
                        reason = f"TBT {tbt:g} ms exceeds the SLA of {sla.tbt_ms:g} ms"
                    for size in self._sizes(op, rank, o, site, ms):  # one per replica count under load
                        c = Choice(i, rank, j, o, reason, ttft_x, tbt_x, o.memory_ok, tp_x,
                                   size.replicas, size.devices, size.wait_ms,
                                   ttft_wait_ms=self._ttft_wait(op, o, site, size),
                                   **({} if run is None else dict(zip(
                                       ("run_ms", "run_tbt_ms", "first_step_ms", "run_batch"), run))))
                        if restrict is not None and not restrict(i, c):
                            continue
                        mine.append(len(self.choices))
                        self.choices.append(c)
            self.op_choices.append(mine)
        self._add_splits(restrict)
        self.allowed = [[k for k in ks if self.choices[k].excluded is None] for ks in self.op_choices]
        # Per-choice terms that evaluate() sums for every candidate plan, computed once.
        w = [self.ops[c.op].weight for c in self.choices]
        # one call's time on the path: its own and its queueing wait (queueing.py)
        self._call = [c.ms + c.wait_ms for c in self.choices]
        self._dur = [w[k] * self._call[k] for k in range(len(self.choices))]
        # Devices held under load: the op's own replicas x tp. Host work on a CPU pool
        # shares its devices (one queue per pool, as the simulator serves it): the pool
        # holds their summed busy demand over queueing.HOST_UTILISATION_CAP, so that the
        # shared queue, which the path does not charge, stays short.
        self._demand = [0.0 if self.load <= 0 else
                        self.load * w[k] * c.option.busy_ms / 1000.0 * c.option.tp / queueing.HOST_UTILISATION_CAP
                        if self.sites[c.site].is_cpu else float(c.devices) for k, c in enumerate(self.choices)]
        for k, c in enumerate(self.choices):
            if c.parts:  # in devices at the split site's price, so demand x price is its $/hr
                self._demand[k] = sum(p.devices * self.sites[p.site].usd_per_hr
                                      for p in c.parts) / self.sites[c.site].usd_per_hr
        # $ per request that choice k pays call by call: its whole price without load or
        # on a metered pool; under load on an hourly pool only its fee (an API charge),
        # the devices being paid by the hour through their demand. Every objective (MILP,
        # greedy, descent, evaluate) prices calls from this one list.
        self.per_call_usd = [w[k] * (c.option.usd_per_call if self.load <= 0 or self.sites[c.site].metered
                                     else c.option.fee_usd) for k, c in enumerate(self.choices)]
        # how each job crowds the decode engines on its pool out of their devices
        # (queueing.crowding): a decode call there stretches by it (crowded)
        self.crowd = [self._crowding(c) for c in self.choices]
        self._crowded: dict[tuple[int, float], int] = {}   # (decode choice, loss) -> its stretched copy
        self._crowd_memo: dict[tuple[int, int], float] = {}   # (decode choice, job choice) -> crowd_ms
        self.money_scale = self._money_scale()
        self.useful = self._undominated()

    def _crowding(self, c: Choice) -> tuple[float, float, float] | None:
        """How choice c's calls crowd a decode engine on their pool (queueing.crowding):
        for a job (not a decode, not host work, not split) on an accelerator pool under
        load, (devices it keeps busy, its replicas' devices: its room, its service);
        None for others, and for every choice of a problem without decode engines."""
        site, o = self.sites[c.site], c.option
        if (self.load <= 0 or not self.engine_ops or site.is_cpu or site.implicit or c.parts
                or c.op in self._streams or o.busy_ms <= 0 or c.devices <= 0):
            return None
        service = o.busy_ms * o.batch
        return queueing.in_flight(self.load * self.ops[c.op].weight, service), float(c.replicas * o.batch), service

    def _crowd_key(self, k: int) -> tuple[float, float, float]:
        """Choice k's crowding as counts a dominating choice is no worse on: the
        devices its jobs keep busy, their service, and its room (negated)."""
        job = self.crowd[k]
        return (0.0, 0.0, 0.0) if job is None else (job[0], job[2], -job[1])

    def crowd_ms(self, d: int, k: int) -> float:
        """What a call of decode choice d loses to job choice k on its pool (queueing.
        crowding, its mean): the job's overflow past its own replicas takes the
        decode's devices."""
        job = self.crowd[k]
        if job is None or self.choices[d].site != self.choices[k].site:
            return 0.0
        lost = self._crowd_memo.get((d, k))
        if lost is None:
            c = self.choices[d]
            count, pw, theta = queueing.crowding(*job, c.tbt or 0.0, c.ms)
            lost = count * pw * theta
            lost = self._crowd_memo[(d, k)] = lost if lost > queueing.NEGLIGIBLE_WAIT_MS else 0.0   # (HiGHS drops tinier terms)
        return lost

    def crowded(self, choice) -> tuple[int, ...]:
        """`choice` with each decode call stretched by the jobs chosen on its pool
        (crowd_ms, a wait of its own on the path): the choices whose times evaluate()
        and the MILP's rows (Formulation._crowd_rows) use."""
        if not self.engine_ops:
            return tuple(choice)
        jobs: dict[int, list[int]] = {}   # site -> the job choices there
        for k in choice:
            if self.crowd[k] is not None:
                jobs.setdefault(self.choices[k].site, []).append(k)
        if not jobs:
            return tuple(choice)
        out = list(choice)
        for i in self.engine_ops:
            d = choice[i]
            lost = sum(self.crowd_ms(d, k) for k in jobs.get(self.choices[d].site, ()))
            if lost > 0:
                key = (d, lost)
                if key not in self._crowded:
                    c = self.choices[d]
                    self._crowded[key] = self.add_choice(replace(c, wait_ms=c.wait_ms + lost), d)
                out[i] = self._crowded[key]
        return tuple(out)

    def _add_splits(self, restrict) -> None:
        """Split choices (split.py) for the ops no single pool can carry under the load,
        each on a split site of its own per op, pools and fractions."""
        if self.load <= 0:
            return
        sla = self.problem.sla
        made: dict[tuple, int] = {}
        for i in range(len(self.ops)):
            for parts in split.split_menu(self, i):
                shares = tuple((pt.site, pt.fraction) for pt in parts)
                first = max(parts, key=lambda pt: (pt.fraction, -pt.site))   # the largest part
                if restrict is not None and not all(
                        restrict(i, Choice(i, pt.rank, pt.site, pt.option, None, 0.0, 0.0, True, 0,
                                           pt.replicas, pt.devices, pt.wait_ms)) for pt in parts):
                    continue
                j = made.get((i, shares))
                if j is None:
                    self.sites.append(Site(split.site_name(self, shares), "split", None,
                                           self.sites[first.site].usd_per_hr, False, False, shares))
                    j = made[(i, shares)] = len(self.sites) - 1
                o, wait = split.composite(parts)
                tbt_x = max(0.0, o.tbt_ms - sla.tbt_ms) if (sla.tbt_ms is not None and o.tbt_ms is not None) else 0.0
                self.op_choices[i].append(len(self.choices))
                self.choices.append(Choice(i, first.rank, j, o, None, 0.0, tbt_x, True, 0, first.replicas,
                                           sum(pt.devices for pt in parts), wait, parts))

    def _choices_of(self, rows) -> list[frozenset[int]] | None:
        """Per op, the choices that make the placement `rows` (Problem.exclude); None
        when an op is missing or no choice matches (a plan this instance cannot form)."""
        by_op = {r[0]: r[1:] for r in rows}
        out = []
        for i, op in enumerate(self.ops):
            if op.id not in by_op:
                return None
            rank, pool, replicas, parts = by_op[op.id]
            if not 0 <= rank < len(op.options):
                return None
            ks = frozenset(k for k in self.op_choices[i] if (
                split.key(self, self.choices[k]) == parts if self.choices[k].parts else
                not parts and self.sites[self.choices[k].site].name == pool and self.choices[k].replicas == replicas
                and op.options[self.choices[k].rank] == op.options[rank]))
            if not ks:
                return None
            out.append(ks)
        return out

    def is_excluded(self, choice) -> bool:
        """`choice` is a placement of Problem.exclude."""
        return any(all(k in ks for k, ks in zip(choice, x)) for x in self.excluded)

    def holds(self, k: int) -> list[tuple[int, float, int]]:
        """What choice k holds under load, per pool: (site, busy-device demand, tp of a
        replica); a split's parts each on their own pool."""
        c = self.choices[k]
        if c.parts:
            return [(pt.site, float(pt.devices), pt.option.tp) for pt in c.parts]
        return [(c.site, self._demand[k], c.option.tp)]

    def _undominated(self) -> list[list[int]]:
        """`allowed` less the choices another choice of the same op on the same pool
        beats or equals on every count: a path time (its call, and its part of a TTFT
        chain in each position), its devices (busy demand and tp), its price per call
        and its TBT. Swapping a plan's dominated choice for its dominator moves no
        transfer and can only shorten every path and lower every pool and price, so
        the optimum survives; under load the replica counts of several tp degrees are
        mostly dominated, and the MILP the planner hands HiGHS is that much smaller
        (the 500-op graph at 10 req/s: 21,894 choices before). Ties keep the first.
        Also gone, under a hard bound every path must meet: a choice whose op, with
        every other op at its fastest and no transfer, already runs a path over it."""
        out = []
        late = self._too_slow()
        for ks in self.allowed:
            ks = [k for k in ks if k not in late]
            groups: dict[int, list[int]] = {}
            for k in ks:
                groups.setdefault(self.choices[k].site, []).append(k)
            keep = set()
            for g in groups.values():
                if len(g) == 1:
                    keep.update(g)
                    continue
                cs = [self.choices[k] for k in g]
                a = np.array([[self._call[k], self._demand[k], self.per_call_usd[k], float(c.option.tp),
                               c.tbt or 0.0, float(c.tbt is not None),
                               ttft_part(c, True, False), ttft_part(c, False, True), ttft_part(c, True, True),
                               float(self._demand[k] <= 0), *self._crowd_key(k)]
                              for k, c in zip(g, cs)])
                le = (a[:, None, :] <= a[None, :, :]).all(axis=2)   # le[x, y]: x no worse than y
                lt = (a[:, None, :] < a[None, :, :]).any(axis=2)
                first = np.arange(len(g))[:, None] < np.arange(len(g))[None, :]
                beaten = (le & (lt | first)).any(axis=0)
                keep.update(k for k, b in zip(g, beaten) if not b)
            out.append([k for k in ks if k in keep])
        return out

    def _too_slow(self) -> set[int]:
        """Choices that break a hard every-path e2e bound on their own: in some scenario
        the op runs, its calls plus the fastest path to it and from it exceed the bound."""
        bound = self.problem.sla.e2e_ms
        if not self.hard or bound is None or self.q_e2e != 1.0:
            return set()
        n = len(self.ops)
        fastest = [min((self._call[k] for k in ks), default=0.0) for ks in self.allowed]
        out: set[int] = set()
        for pr, counts, _ in self.scen:
            if pr <= 0:
                continue
            head, tail = [0.0] * n, [0.0] * n
            for i in self.topo:
                for k in self.succ[i]:
                    v = self.edges[k].v
                    head[v] = max(head[v], head[i] + counts[i] * fastest[i])
            for i in reversed(self.topo):
                for k in self.succ[i]:
                    v = self.edges[k].v
                    tail[i] = max(tail[i], tail[v] + counts[v] * fastest[v])
            for i, ks in enumerate(self.allowed):
                if counts[i] > 0:
                    out.update(k for k in ks if exceeds(head[i] + counts[i] * self._call[k] + tail[i], bound))
        return out

    # -- queueing under load (queueing.py): one choice per replica count -------------

    def _sizes(self, op, rank: int, o: Option, site: Site, ms: float) -> list[queueing.Candidate]:
        """How option `o` of `op` may be sized on `site`: without load, or for host work
        on a CPU pool (shared, see _build_choices), one unsized entry; under load the
        replica counts queueing.candidates offers (more than the least only where a wait
        can matter: an e2e or TTFT bound or the latency objective), none for a decode
        batch the load cannot fill, and on an unlimited implicit site the least, without
        wait (it scales out). `ms`: one call's time on the path (`served`). An option
        `given` (a placement evaluated at another load): its replicas alone, at this
        load's wait."""
        if self.load <= 0 or site.is_cpu:
            return [queueing.Candidate(1, 0, 0.0)]
        p = self.problem
        q, cs2 = queueing.wait_level(self.q_e2e), p.service_cv ** 2
        rate = self.load * op.weight
        if self.given.get(op.id, (None,))[0] == rank and not site.implicit and o.busy_ms > 0:
            r = self.given[op.id][1]
            service = o.busy_ms * o.batch
            return [queueing.Candidate(r, r * o.tp, queueing.wait_ms(r * o.batch, queueing.in_flight(rate, service),
                                                                     service, q, cs2))]
        if o.batch > 1 and not site.metered and o.busy_ms > 0:
            smaller = [s for s in op.options if s.device == o.device and s.tp == o.tp and s.batch < o.batch]
            if smaller:
                prev = max(smaller, key=lambda s: s.batch)
                if queueing.fits_smaller_batch(rate, prev.busy_ms, prev.batch, q, cs2):
                    return []
        timed = p.sla.e2e_ms is not None or p.sla.ttft_ms is not None or p.objective == "latency"
        sizes = queueing.candidates(rate, o.busy_ms, o.tp, o.batch, q, cs2, site.count,
                                    all_counts=timed and not site.implicit)
        if site.implicit:
            return [queueing.Candidate(sizes[0].replicas, sizes[0].devices, 0.0)]
        bound, i = p.sla.e2e_ms, self.index[op.id]
        if self.hard and bound is not None and self.q_e2e == 1.0 and self.executed[i]:
            # the op's calls alone over a bound every path must meet (in the scenario
            # where it runs least) can never be used: such counts (near-unstable
            # queues, waits of many service times) only make the model bigger
            least = min(c[i] for pr, c, _ in self.scen if pr > 0 and c[i] > 0)
            sizes = [s for s in sizes if not exceeds(least * (ms + s.wait_ms), bound)] or sizes[-1:]
        return sizes

    def batch_points(self, i: int, o: Option, field: str = "time_ms") -> list[tuple[float, float]]:
        """(batch, `field`) of op i's options on o's device and tp up to o's batch, o's
        own last: the law of a decode's call time (or TBT) in its batch (queueing.py)."""
        same = [x for x in self.ops[i].options if x.device == o.device and x.tp == o.tp and x.batch <= o.batch]
        return sorted(({x.batch: getattr(x, field) for x in same if getattr(x, field) is not None}
                       | {o.batch: getattr(o, field)}).items())

    def served(self, i: int, o: Option, other: float | None = None) -> tuple[float, float | None, float | None,
                                                                            float] | None:
        """A decode option's (call ms at the e2e term's quantile, TBT at the TBT term's,
        first-token step at the TTFT term's, the e2e batch) at the batch its traffic fills
        (queueing.py: the batch a decode runs at; `rate`: the load, else LIGHT_LOAD_RPS),
        with `other` sequences of other decodes in flight beside it (None: every
        same-model decode that could share its devices, `_sibling_flight`; a placed
        plan's prediction passes those actually on its pool, planner/predict.py).
        None for an option of batch 1, which runs as priced."""
        if o.batch <= 1:
            return None
        key = (i, o.device, o.tp, o.batch, other)
        hit = self._served_cache.get(key)
        if hit is not None:
            return hit
        op = self.ops[i]
        ms_pts = self.batch_points(i, o)
        tbt_pts = self.batch_points(i, o, "tbt_ms") if o.tbt_ms is not None else None
        m = queueing.filled_mean(self.rate * op.weight, ms_pts, self._sibling_flight(i, o) if other is None else other)
        b_e, b_t, b_f = (queueing.filled_batch(m, o.batch, queueing.wait_level(q))
                         for q in (self.q_e2e, self.q_tbt, self.q_ttft))
        ms, tbt, step = queueing.interpolate(ms_pts, b_e), None, None
        if tbt_pts is not None:
            tbt = queueing.interpolate(tbt_pts, b_t)
            # with others in flight a sequence joins at their next step boundary
            ms += queueing.interpolate(tbt_pts, b_e) if b_e > 1 else 0.0
            step = queueing.interpolate(tbt_pts, b_f) * (2.0 if b_f > 1 else 1.0)
        out = self._served_cache[key] = (ms, tbt, step, b_e)
        return out

    def _sibling_flight(self, i: int, o: Option) -> float:
        """Mean sequences in flight of the other decode ops of op i's model and kind that
        can run on o's device at o's tp (each at its largest batch there, alone): the
        simulator batches them with op i's wherever they share a pool."""
        op, total = self.ops[i], 0.0
        if not op.model:
            return 0.0
        for j, other in enumerate(self.ops):
            if j == i or other.model != op.model or other.kind != op.kind:
                continue
            there = [x for x in other.options if x.device == o.device and x.tp == o.tp]
            if not there or max(x.batch for x in there) <= 1:
                continue
            pts = sorted({x.batch: x.time_ms for x in there}.items())
            total += queueing.filled_mean(self.rate * other.weight, pts)
        return total

    def _ttft_wait(self, op, o: Option, site: Site, size: queueing.Candidate) -> float:
        """The wait of `size`'s replicas at the TTFT term's quantile, for the first-token
        chain (ttft_part): TTFT holds at its own statistic (every path: p99), not the e2e
        term's. With rag's p95 wait (68.8 ms where p99 is 236 ms) the plan predicted a
        TTFT p99 of 373 ms that simulated at 586 ms (20,000 requests), over its bound."""
        if self.load <= 0 or site.is_cpu or site.implicit or size.devices == 0 or o.busy_ms <= 0:
            return size.wait_ms   # unsized (see _sizes): no wait at any quantile
        q = queueing.wait_level(self.q_ttft)
        if q == queueing.wait_level(self.q_e2e):
            return size.wait_ms
        service = o.busy_ms * o.batch
        a = queueing.in_flight(self.load * op.weight, service)
        return queueing.wait_ms(size.replicas * o.batch, a, service, q, self.problem.service_cv ** 2)

    def add_choice(self, c: Choice, like: int) -> int:
        """Append choice `c`, priced and holding as choice `like` (a placed op re-timed,
        planner/predict.py: only its times differ); its index."""
        self.choices.append(c)
        self._call.append(c.ms + c.wait_ms)
        self._dur.append(self.ops[c.op].weight * self._call[-1])
        self._demand.append(self._demand[like])
        self.per_call_usd.append(self.per_call_usd[like])
        if hasattr(self, "crowd"):   # a re-timed choice crowds nothing: its times are final
            self.crowd.append(None)
        return len(self.choices) - 1

    def call_ms(self, k: int) -> float:
        """One call of choice k on the request path: its time and its queueing wait."""
        return self._call[k]

    def duration(self, k: int) -> float:
        """Choice k's expected time on the path: weight x call_ms."""
        return self._dur[k]

    def _money_scale(self) -> float:
        """A magnitude of the cost objective (its unit: $/request, or $/hr under load): the
        sum over ops of their cheapest usable option's own price, a lower bound on the
        optimum's call part. The MILP divides money by it, so its objective is O(1):
        solver tolerances (absolute gap 1e-9, dual feasibility 1e-7) would otherwise be
        larger than whole plans priced at ~1e-6 $/request and accept a worse plan."""
        per_hr = self.load * 3600.0 if self.load > 0 else 1.0

        def money(k: int) -> float:
            site = self.sites[self.choices[k].site]
            own = self.per_call_usd[k] * per_hr
            return own + (self._demand[k] * site.usd_per_hr if self.load > 0 and not site.metered else 0.0)

        cheapest = sum(min((money(k) for k in ks), default=0.0) for ks in self.allowed)
        if cheapest > 0:
            return cheapest
        return max((money(k) for k in range(len(self.choices))), default=0.0) or 1.0

    def _build_edges(self) -> None:
        p = self.problem
        self.edges: list[Edge] = []
        for e in p.edges:
            for end in (e.src, e.dst):
                if end not in self.index:
                    raise VerifyError(f"edge {e.src} -> {e.dst} names unknown op '{end}'")
            self.edges.append(Edge(self.index[e.src], self.index[e.dst], e.weight, e.bytes, e.profiled))
        n = len(self.ops)
        self.succ: list[list[int]] = [[] for _ in range(n)]
        self.pred: list[list[int]] = [[] for _ in range(n)]
        for k, e in enumerate(self.edges):
            self.succ[e.u].append(k)
            self.pred[e.v].append(k)
        graph = {v: {self.edges[k].u for k in self.pred[v]} for v in range(n)}
        try:
            self.topo: list[int] = list(graphlib.TopologicalSorter(graph).static_order())
        except graphlib.CycleError as err:
            cycle = sorted({self.ops[i].id for i in err.args[1]})
            raise VerifyError("the plan graph has a cycle through " + ", ".join(cycle)
                              + "; fold bounded loops into op weights before placement") from None
        links = {}
        for ln in p.links:
            links[(ln.a, ln.b)] = ln
            links[(ln.b, ln.a)] = ln
        self._links = links
        self._tr_cache: dict[tuple[int, int, int], tuple[float, float]] = {}

    # -- transfer costs --------------------------------------------------------------

    def link(self, a: int, b: int) -> Link:
        sa, sb = self.sites[a], self.sites[b]
        for key in ((sa.name, sb.name), (sa.device_class, sb.device_class)):
            if key in self._links:
                return self._links[key]
        return self.problem.default_link or DEFAULT_LINK

    def transfer(self, k: int, a: int, b: int) -> tuple[float, float]:
        """(ms, usd) of one transfer on edge k from site a to site b; free within a pool.

        A profiled value is looked up by pool name then device class, in the edge's
        direction first; the reverse direction is assumed symmetric when only it is given.
        """
        if a == b and not self.sites[a].parts:
            return (0.0, 0.0)
        key = (k, a, b)
        hit = self._tr_cache.get(key)
        if hit is not None:
            return hit
        e = self.edges[k]
        sa, sb = self.sites[a], self.sites[b]
        if sa.parts or sb.parts:
            # a split end (split.py): each request picks its pools by the fractions, so
            # the $ is the expectation and the ms the slowest pair a request can meet
            pairs = [(fa * fb, self.transfer(k, x, y)) for x, fa in (sa.parts or ((a, 1.0),))
                     for y, fb in (sb.parts or ((b, 1.0),))]
            val = (max(ms for _, (ms, _) in pairs), sum(f * usd for f, (_, usd) in pairs))
            self._tr_cache[key] = val
            return val
        val = None
        if e.profiled:
            for pair in ((sa.name, sb.name), (sa.device_class, sb.device_class),
                         (sb.name, sa.name), (sb.device_class, sa.device_class)):
                if pair in e.profiled:
                    ms, usd = e.profiled[pair]
                    val = (float(ms), float(usd))
                    break
        if val is None:
            ln = self.link(a, b)
            ms = transfer_ms(e.bytes, ln.gbps, ln.latency_ms)
            val = (ms, e.bytes / 1e9 * ln.usd_per_gb)
        self._tr_cache[key] = val
        return val

    # -- evaluation -------------------------------------------------------------------

    def demand(self, k: int) -> float:
        """Devices kept busy by choice k at the problem's load."""
        return self._demand[k]

    def longest(self, choice, transfers, counts, ecounts) -> tuple[list[float], list[float]]:
        """Start and finish of every op when op i runs counts[i] calls back to back."""
        n = len(self.ops)
        start, finish = [0.0] * n, [0.0] * n
        for i in self.topo:
            s = 0.0
            for k in self.pred[i]:
                s = max(s, finish[self.edges[k].u] + ecounts[k] * transfers[k][0])
            start[i] = s
            finish[i] = s + counts[i] * self._call[choice[i]]
        return start, finish

    def first_token_ms(self, choice, transfers, start, chain) -> float:
        """When a first-token chain gives its first token: its first op's start, one call
        of each op but the last (the first at its TTFT), the transfers between, and one
        step of the last (its TBT; its TTFT or time when it streams nothing)."""
        ops, links = chain
        t = start[ops[0]]
        for j, i in enumerate(ops):
            t += ttft_part(self.choices[choice[i]], j == 0, j == len(ops) - 1)
        return t + sum(transfers[k][0] for k in links)

    def scenario_times(self, choice, transfers=None) -> list[tuple[float, float, float | None, float | None]]:
        """(probability, latency, TTFT, TBT) of the placement in every scenario."""
        if transfers is None:
            ch = [self.choices[k] for k in choice]
            transfers = [self.transfer(k, ch[e.u].site, ch[e.v].site) for k, e in enumerate(self.edges)]
        vector = len(self.scen) * len(self.ops) >= SCENARIO_VECTOR_MIN
        if vector:
            starts, ends = self._longest_all(choice, transfers)
        out = []
        for s, (prob, counts, ecounts) in enumerate(self.scen):
            if vector:
                start, end = starts[:, s].tolist(), float(ends[s])
            else:
                start, finish = self.longest(choice, transfers, counts, ecounts)
                end = max(finish, default=0.0)
            chain = self.first[s]
            ttft = None if chain is None else self.first_token_ms(choice, transfers, start, chain)
            tbts = [self.choices[choice[j]].tbt or 0.0 for j in self.tbt_ops if counts[j] > 0]
            out.append((prob, end, ttft, max(tbts) if tbts else None))
        return out

    def _longest_all(self, choice, transfers) -> tuple[np.ndarray, np.ndarray]:
        """`longest` for every scenario at once (an op's row over the scenarios): the same
        sums and maxima in the same order, so the same floats, in one numpy pass over the
        graph instead of one Python pass per scenario (nests of loops keep 128). Returns
        the starts (ops x scenarios) and each scenario's last finish."""
        if self._scen_arrays is None:
            self._scen_arrays = (np.array([c for _, c, _ in self.scen], dtype=float).T.copy(),
                                 np.array([e for _, _, e in self.scen], dtype=float).T.reshape(len(self.edges),
                                                                                             len(self.scen)).copy())
        counts, ecounts = self._scen_arrays
        width = len(self.scen)
        start = np.zeros((len(self.ops), width))
        finish = np.zeros((len(self.ops), width))
        for i in self.topo:
            row = start[i]
            for k in self.pred[i]:
                np.maximum(row, finish[self.edges[k].u] + ecounts[k] * transfers[k][0], out=row)
            np.add(row, counts[i] * self._call[choice[i]], out=finish[i])
        return start, finish.max(axis=0, initial=0.0)

    def evaluate(self, choice: tuple[int, ...] | list[int]) -> Metrics:
        p, sla = self.problem, self.problem.sla
        ch = [self.choices[k] for k in choice]
        transfers = []
        for k, e in enumerate(self.edges):
            transfers.append(self.transfer(k, ch[e.u].site, ch[e.v].site))
        timed = self.crowded(choice)   # decode calls stretched by the jobs on their pools
        # the schedule shown (start/finish, slack, critical path): expected counts
        start, finish = self.longest(timed, transfers, [op.weight for op in self.ops],
                                      [e.weight for e in self.edges])
        times = self.scenario_times(timed, transfers)
        e2e = statistic([(pr, t) for pr, t, _, _ in times], self.q_e2e)
        ttft = statistic([(pr, t) for pr, _, t, _ in times if t is not None], self.q_ttft)
        tbt = statistic([(pr, t) for pr, _, _, t in times if t is not None], self.q_tbt)
        transfer_usd = sum(e.weight * transfers[k][1] for k, e in enumerate(self.edges))
        call_usd = sum(self.per_call_usd[k] for k in choice)
        demand: dict[int, float] = {}
        devices: dict[int, int] = {}
        for k in choice:
            for j, d, tp in self.holds(k):
                demand[j] = demand.get(j, 0.0) + d
                devices[j] = max(devices.get(j, 0), tp)
        if self.load > 0:
            # A tensor-parallel replica needs all tp devices at once: at least max tp.
            devices = {j: max(devices[j], math.ceil(d - 1e-9)) for j, d in demand.items()}
            usd_hr = sum(devices[j] * self.sites[j].usd_per_hr for j in devices) \
                + self.load * 3600.0 * (call_usd + transfer_usd)
            usd_req = usd_hr / (self.load * 3600.0)
            cost = usd_hr
        else:
            usd_hr = None
            usd_req = cost = call_usd + transfer_usd
        m = Metrics(tuple(choice), start, finish, e2e, transfers, usd_req, usd_hr,
                    dict(sorted(devices.items())), demand, cost, ttft_ms=ttft, tbt_ms=tbt,
                    path_ms=max(finish, default=0.0))
        if sla.e2e_ms is not None and exceeds(e2e, sla.e2e_ms):
            m.e2e_over_ms = e2e - sla.e2e_ms
            m.violations.append(f"latency{stat_name(sla.e2e_stat)} {e2e:g} ms exceeds the SLA of "
                                f"{sla.e2e_ms:g} ms by {m.e2e_over_ms:g} ms")
        if sla.ttft_ms is not None and ttft is not None and exceeds(ttft, sla.ttft_ms):
            m.ttft_over_ms = ttft - sla.ttft_ms
            m.latency_excess_ms += m.ttft_over_ms
            m.violations.append(f"ttft{stat_name(sla.ttft_stat)} {ttft:g} ms exceeds the SLA of "
                                f"{sla.ttft_ms:g} ms by {m.ttft_over_ms:g} ms")
        if sla.tbt_ms is not None and tbt is not None and exceeds(tbt, sla.tbt_ms):
            m.tbt_over_ms = tbt - sla.tbt_ms
            m.violations.append(f"tbt{stat_name(sla.tbt_stat)} {tbt:g} ms exceeds the SLA of "
                                f"{sla.tbt_ms:g} ms by {m.tbt_over_ms:g} ms")
        for i, c in enumerate(ch):
            op_id = self.ops[i].id
            if c.tbt_excess_ms > 0:
                m.latency_excess_ms += c.tbt_excess_ms
            if not c.memory_ok:
                m.violations.append(f"op '{op_id}' does not fit device memory on {self.sites[c.site].name}")
            if c.tp_excess:
                m.violations.append(f"op '{op_id}': tp={c.option.tp} exceeds pool {self.sites[c.site].name}")
        for a, b in self.colocate:
            if ch[a].site != ch[b].site:
                m.split.append((a, b))
                m.violations.append(f"op '{self.ops[b].id}' must share a pool with op '{self.ops[a].id}'")
        if self.load > 0:
            for j, nd in m.devices.items():
                cnt = self.sites[j].count
                if cnt is not None and nd > cnt:
                    m.pool_over[j] = nd - cnt
                    m.violations.append(f"pool {self.sites[j].name}: the load needs {nd} devices, it has {cnt}")
        if self.is_excluded(m.choice):
            m.violations.append("the placement is predicted to miss the SLA at its load (agentc/promise.py)")
        if not self.hard:
            # soft mode prices the e2e and TTFT statistics' excess and each op's TBT excess
            m.penalty = p.lam * (m.e2e_over_ms + m.latency_excess_ms)
        return m

    def feasible(self, m: Metrics) -> bool:
        """Hard mode: no violation at all; soft mode: only capacity and memory count."""
        if self.hard:
            return not m.violations
        return not self.is_excluded(m.choice) and not m.pool_over and not m.split and all(self.choices[k].memory_ok and not self.choices[k].tp_excess
                                       for k in m.choice)


@functools.lru_cache(maxsize=8)
def scenarios(flow: tuple, index: tuple, fastest: tuple) -> tuple[list, bool, int]:
    """The flow's scenarios (scenarios.Enumerator), once per program: the baselines,
    the latency objective's two solves and `explain` build further Instances of the same
    problem, and nested loops take seconds to enumerate."""
    en = Enumerator(dict(index), fastest)
    found = en.run(flow)
    return found, en.merged, en.total


def ttft_part(c: Choice, first: bool, last: bool) -> float:
    """What one op of a first-token chain adds (see Instance.first_token_ms), after the
    queueing wait of its call at the TTFT term's quantile (queueing.py; 0 without load)."""
    o = c.option
    wait = c.wait_ms if c.ttft_wait_ms is None else c.ttft_wait_ms
    if last and not first and o.tbt_ms is not None:
        return wait + (o.tbt_ms if c.first_step_ms is None else c.first_step_ms)
    if first or last:
        return wait + (o.ttft_ms if o.ttft_ms is not None else c.ms)
    return wait + c.ms


def statistic(values: list[tuple[float, float]], q: float | None) -> float | None:
    """The statistic of a discrete law given as (probability, value) pairs: the mean
    (q None), else the least v with P(value <= v) >= q (q = 1: the largest value that
    has a positive probability). None for an empty law."""
    values = [(pr, v) for pr, v in values if pr > 0]
    if not values:
        return None
    total = sum(pr for pr, _ in values)
    if q is None:
        return sum(pr * v for pr, v in values) / total
    if q >= 1.0:
        return max(v for _, v in values)
    acc = 0.0
    ordered = sorted(values, key=lambda e: e[1])
    for pr, v in ordered:
        acc += pr
        if acc >= q * total - QUANTILE_TOL:
            return v
    return ordered[-1][1]


# Probabilities summed over scenarios carry float error: covering 0.99 of the mass is
# judged up to this much (the MILP's chance row uses the same).
QUANTILE_TOL = 1e-12


def _flow_ops(items, out: list[str]) -> None:
    from .problem import Branch, Loop

    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, Loop):
            _flow_ops(item.body, out)
        elif isinstance(item, Branch):
            _flow_ops(item.then, out)
            _flow_ops(item.orelse, out)
        else:
            raise VerifyError(f"unknown control-flow item {item!r}")
