"""A `Problem` normalised for solving, and the exact evaluator of a placement.

Options name a pool or a device class; here each is expanded into one `Choice` per
pool it can run on, so every choice sits on exactly one pool ("site"). A device named
by no pool becomes an implicit, unlimited, metered site. Choices that cannot be used
(memory, tp larger than the pool, TTFT/TBT over a hard SLA) are kept with the reason, so
explanations can cite them.

`Instance.evaluate` is the single definition of what a placement costs and how long it
takes; the MILP is checked against it, and baselines and alternatives are priced by it.
"""

from __future__ import annotations

import graphlib
import math
from dataclasses import dataclass, field
from typing import Callable

from agentc.diagnostics import InfeasiblePlanError, VerifyError
from agentc.units import transfer_ms

from . import queueing
from .problem import Link, Option, Problem

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

    @property
    def metered(self) -> bool:
        return self.usd_per_hr == 0.0

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
    # (replicas * tp), and the wait at the SLA's percentile an execution then sees
    replicas: int = 1
    devices: int = 0
    wait_ms: float = 0.0


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
    latency_excess_ms: float = 0.0  # TTFT + TBT excess summed over ops
    pool_over: dict[int, int] = field(default_factory=dict)
    penalty: float = 0.0

    @property
    def objective(self) -> float:
        return self.cost + self.penalty


class Instance:
    """A validated problem with sites, choices, topological order and transfer costs."""

    def __init__(self, problem: Problem, restrict: Callable[[int, Choice], bool] | None = None):
        self.problem = p = problem
        self.hard = p.sla_mode == "hard"
        self.load = float(p.load_rps or 0.0)
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
        self._build_sites()
        self.wait_q = queueing.wait_quantile_of(p.sla)
        self._build_choices(restrict)
        self._build_edges()
        self.colocate: list[tuple[int, int]] = []
        for a, b in p.colocate:
            if a not in self.index or b not in self.index:
                raise VerifyError(f"colocated op '{a if a not in self.index else b}' is not in the graph")
            self.colocate.append((self.index[a], self.index[b]))
        self.partner: dict[int, int] = {}
        for a, b in self.colocate:
            self.partner.setdefault(b, a)
            self.partner.setdefault(a, b)

    # -- construction -------------------------------------------------------------

    def _build_sites(self) -> None:
        p = self.problem
        self.sites: list[Site] = [
            Site(pl.name, pl.device_class, pl.count, pl.usd_per_hr, False, pl.cpu)
            for pl in sorted(p.pools, key=lambda pl: pl.name)
        ]
        known = {s.name for s in self.sites} | {s.device_class for s in self.sites}
        implicit = sorted({o.device for op in self.ops for o in op.options} - known)
        self.sites += [Site(d, d, None, 0.0, True) for d in implicit]
        self.site_index = {s.name: j for j, s in enumerate(self.sites)}

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
        self.choices: list[Choice] = []
        self.op_choices: list[list[int]] = []
        for i, op in enumerate(self.ops):
            if not op.options:
                raise InfeasiblePlanError(f"op '{op.id}' has no options to run on")
            mine = []
            for rank, o in enumerate(op.options):
                if o.tp < 1 or o.batch < 1:
                    raise VerifyError(f"op '{op.id}': option on {o.device} has tp={o.tp}, batch={o.batch}")
                for j in self.sites_for(o.device):
                    site = self.sites[j]
                    for size in self._sizes(op, o, site):
                        ttft = None if o.ttft_ms is None else o.ttft_ms + size.wait_ms
                        ttft_x = max(0.0, ttft - sla.ttft_ms) if (sla.ttft_ms is not None and ttft is not None) else 0.0
                        tbt_x = max(0.0, o.tbt_ms - sla.tbt_ms) if (sla.tbt_ms is not None and o.tbt_ms is not None) else 0.0
                        tp_x = max(0, o.tp - site.count) if site.count is not None else 0
                        reason = None
                        if not o.memory_ok:
                            reason = f"does not fit device memory on {site.name}"
                        elif tp_x:
                            reason = f"tp={o.tp} needs more devices than pool {site.name} has ({site.count})"
                        elif self.hard and ttft_x > 0:
                            reason = f"TTFT {ttft:g} ms exceeds the SLA of {sla.ttft_ms:g} ms"
                        elif self.hard and tbt_x > 0:
                            reason = f"TBT {o.tbt_ms:g} ms exceeds the SLA of {sla.tbt_ms:g} ms"
                        c = Choice(i, rank, j, o, reason, ttft_x, tbt_x, o.memory_ok, tp_x,
                                   size.replicas, size.devices, size.wait_ms)
                        if restrict is not None and not restrict(i, c):
                            continue
                        mine.append(len(self.choices))
                        self.choices.append(c)
            self.op_choices.append(mine)
        self.allowed = [[k for k in ks if self.choices[k].excluded is None] for ks in self.op_choices]
        # Per-choice terms that evaluate() sums for every candidate plan, computed once:
        # the time on the path (the op's own and its queueing wait) and the devices held.
        w = [self.ops[c.op].weight for c in self.choices]
        self._dur = [w[k] * (c.option.time_ms + c.wait_ms) for k, c in enumerate(self.choices)]
        # Host work on a CPU pool shares its devices (a CPU server runs many short host
        # calls at once on its cores): the pool holds their summed busy demand, as a
        # fraction, not whole replicas per op.
        self._demand = [0.0 if self.load <= 0 else
                        self.load * w[k] * c.option.busy_ms / 1000.0 * c.option.tp if self.sites[c.site].is_cpu
                        else float(c.devices) for k, c in enumerate(self.choices)]
        # $ per request that choice k pays call by call: its whole price without load or
        # on a metered pool; under load on an hourly pool only its fee (an API charge),
        # the devices being paid by the hour through their demand. Every objective (MILP,
        # greedy, descent, evaluate) prices calls from this one list.
        self.per_call_usd = [w[k] * (c.option.usd_per_call if self.load <= 0 or self.sites[c.site].metered
                                     else c.option.fee_usd) for k, c in enumerate(self.choices)]
        self.money_scale = self._money_scale()

    # -- queueing under load (queueing.py): one choice per replica count -------------

    def _sizes(self, op, o: Option, site: Site) -> list[queueing.Candidate]:
        """How option `o` of `op` may be sized on `site`: without load one unsized entry;
        under load the replica counts queueing.candidates offers (more than the least only
        where a wait can matter: an e2e or TTFT bound or the latency objective; only the
        ones whose time fits a hard e2e bound), none for a decode batch the load cannot
        fill, and on an unlimited implicit site the least, without wait (it scales out).
        Host work on CPU pools is not sized per op (one entry: it shares the pool)."""
        if self.load <= 0 or site.is_cpu:  # CPU pools: shared, see _build_choices
            return [queueing.Candidate(1, 0, 0.0)]
        p = self.problem
        q, cs2 = self.wait_q, p.service_cv ** 2
        rate = self.load * op.weight
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
        bound = p.sla.e2e_ms
        if self.hard and bound is not None:
            fits = [s for s in sizes if not exceeds(op.weight * (o.time_ms + s.wait_ms), bound)]
            sizes = fits or sizes[-1:]
        return sizes

    def duration(self, k: int) -> float:
        """Choice k's time on the request path: weight x (own time + queueing wait)."""
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
        if a == b:
            return (0.0, 0.0)
        key = (k, a, b)
        hit = self._tr_cache.get(key)
        if hit is not None:
            return hit
        e = self.edges[k]
        sa, sb = self.sites[a], self.sites[b]
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

    def evaluate(self, choice: tuple[int, ...] | list[int]) -> Metrics:
        p, sla = self.problem, self.problem.sla
        ch = [self.choices[k] for k in choice]
        n = len(self.ops)
        dur = [self._dur[k] for k in choice]
        start = [0.0] * n
        finish = [0.0] * n
        transfers = []
        for k, e in enumerate(self.edges):
            transfers.append(self.transfer(k, ch[e.u].site, ch[e.v].site))
        for i in self.topo:
            s = 0.0
            for k in self.pred[i]:
                e = self.edges[k]
                s = max(s, finish[e.u] + e.weight * transfers[k][0])
            start[i] = s
            finish[i] = s + dur[i]
        e2e = max(finish, default=0.0)
        transfer_usd = sum(e.weight * transfers[k][1] for k, e in enumerate(self.edges))
        call_usd = sum(self.per_call_usd[k] for k in choice)
        demand: dict[int, float] = {}
        devices: dict[int, int] = {}
        for i, k in enumerate(choice):
            j = ch[i].site
            demand[j] = demand.get(j, 0.0) + self._demand[k]
            devices[j] = max(devices.get(j, 0), ch[i].option.tp)
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
                    dict(sorted(devices.items())), demand, cost)
        if sla.e2e_ms is not None and exceeds(e2e, sla.e2e_ms):
            m.e2e_over_ms = e2e - sla.e2e_ms
            m.violations.append(f"e2e {e2e:g} ms exceeds the SLA of {sla.e2e_ms:g} ms by {m.e2e_over_ms:g} ms")
        for i, c in enumerate(ch):
            op_id = self.ops[i].id
            if c.ttft_excess_ms > 0:
                m.latency_excess_ms += c.ttft_excess_ms
                m.violations.append(f"op '{op_id}': TTFT {c.option.ttft_ms:g} ms exceeds the SLA of {sla.ttft_ms:g} ms")
            if c.tbt_excess_ms > 0:
                m.latency_excess_ms += c.tbt_excess_ms
                m.violations.append(f"op '{op_id}': TBT {c.option.tbt_ms:g} ms exceeds the SLA of {sla.tbt_ms:g} ms")
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
        if not self.hard:
            m.penalty = p.lam * (m.e2e_over_ms + m.latency_excess_ms)
        return m

    def feasible(self, m: Metrics) -> bool:
        """Hard mode: no violation at all; soft mode: only capacity and memory count."""
        if self.hard:
            return not m.violations
        return not m.pool_over and not m.split and all(self.choices[k].memory_ok and not self.choices[k].tp_excess
                                       for k in m.choice)
