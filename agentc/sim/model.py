"""The discrete-event model of a placed plan under load (SimPy): the simulation, its
processes (arrivals, requests walking the plan, scenario events) and its results. The
batch engines are in engines.py, the pools and links in resources.py; this module is
past 400 lines because the request walk and the Simulation share one state.

What is modelled, and how (docs/simulate.md says the same for users):

- Pools: each pool's devices are handed out in strict FIFO order (a request for more
  devices than are free blocks those behind it: no backfilling). An op execution takes
  `tp` devices for its busy time. A hold of known length is returned lazily (the pool
  reaps it when next asked, or wakes itself only when someone waits), so an op that
  finds its devices free costs one SimPy event, not four.
- After its busy time an op waits the rest of its planned latency without devices:
  tools and remote stores wait on someone else, as the planner assumes.
- Decode (`--batching continuous`, the default) is iteration-level continuous batching:
  under load, the engines the plan's replicas of each model's decodes on the pool make
  (what a deployment starts; devices no replicas hold add one per `tp`: engines.
  decode_engines), else one per `tp` devices of the pool (the decode ops of every
  call of that model share its batches); a new sequence joins the fullest
  engine that still has room (batch below the planned one and, when the manifest gives
  the memory, its KV cache fits what the weights leave) at the next step boundary,
  else waits in a FIFO backlog; each step holds `tp` devices for the step time of the
  current batch size (the cost model's, tabulated in the manifest; the mean over the
  batch's calls when they differ in context) and gives every sequence one token. An
  engine runs the steps up to the next change (a sequence leaving) as one SimPy event
  and is cut at the next step boundary when a sequence joins or someone else waits for
  its pool, which is when a step-by-step engine would have changed course.
- Prefill (continuous batching) is batched up to a token budget: one engine per `tp`
  devices for each model, which, once it holds its devices, takes the queued prompts
  in FIFO order while their tokens fit the budget (at least one) and runs them as one
  batch, its time the cost model's for the batch's total tokens (manifest table).
  `--batching planned` runs decode and prefill like any op, at the planner's times.
- Transfers between pools start when their producer finishes; a link is shared by its
  concurrent transfers (processor sharing: n transfers each get 1/n of the bandwidth),
  and its latency is added after.
- Control flow: a loop draws its trips from the pre-tested truncated geometric law of
  its continue probability (`while p`; `expect E` uses the p with that mean; a fixed
  count has p = 1), a branch draws its arm, a block's ops run as soon as the ops they
  read from are done, so `parallel` joins on its last child.
- Variability: each execution's times are multiplied by a Gamma factor of mean 1 and
  the kind's coefficient of variation (`--cv`; 0 = deterministic; 1 = exponential);
  decode and prefill engines draw one factor per step or batch from their own stream.
- Scenarios (events.py): device losses at given times (running work finishes; the
  lost devices take no new work); the arrivals carry load steps and ramps. A
  `Controller` hook is called every `every_ms` and may return a new plan, which later
  requests then walk (the seam for re-planning, replanning.py; `switch` applies a plan
  after a delay).

Every random draw comes from numpy Generators spawned from one seed (arrivals, control
flow, service, one per batch engine), so a seed fixes every number the simulation reports.

Events: a request's walk carries on past a wait (an op's time, a transfer landing, a
prompt's lone prefill batch) without a timeout whenever the next event due is later
than the wait's end, since nothing can then happen before it (`_walk`); it joins a
running decode engine there too. Requests and batch engines run from their events'
callbacks rather than as Processes; transfers have no timers (a consumer that must
wait sets one); a decode join mid-run starts the next segment at the step boundary
at once. Running ahead only drops events no one acts on, so a seed gives the same
results as a timeout per op and a process per request (test_sim_runahead.py). Which
request gets which of the iid draws (control flow, service factors) follows the order
the walks run in, which these savings changed in places: the same law as before,
other sample paths. A decode sequence that leaves alone, with nothing else due then,
resumes its request directly, which is where SimPy would have run its event next. The
walk reads SimPy's clock and event heap (`env._now`, `env._queue`) directly: it asks
them for every op. Its timers (and the engines', the arrivals') are pushed onto that
heap as SimPy's own schedule would push a timeout (resources.at: the same time, priority
and event counter), and a decode sequence is itself the event its request waits on:
SimPy still orders and runs every event, without a Timeout's calls per timer.

The walk is specialised per plan (walkgen.py): after a plan's first requests, its
chain regions, loops and branches are written out as one Python generator with every
op's pool, times, scale and transfers as constants and the common cases of a pool's
hold, a link's send and a lone prefill batch inline, which does what `_walk` does
with a fraction of its Python operations (a request's cost was spread thin over
asking each op what it is). `_walk` stays the reference and walks traced requests,
split ops and non-chain regions; test_sim_walkgen.py holds the two equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import simpy

from agentc.planner.predict import PREFILL_BUDGET_TOKENS
from agentc.sim.arrivals import Arrival
from agentc.sim.engines import Decoder, Factors, Prefiller, Seq, decode_engines
from agentc.sim.plan import Op, Plan, Region
from agentc.sim.resources import Link, Pool, PoolStats, Transfer, at
from agentc.sim import walkgen

IN_KINDS = ("llm.tokenize", "llm.prefill", "moe.expert_prefill")
OUT_KINDS = ("llm.decode", "moe.expert_decode", "llm.sample", "llm.detokenize")
PREFILL_KINDS = IN_KINDS[1:]
DEFAULT_PREFILL_BUDGET = PREFILL_BUDGET_TOKENS   # tokens per prefill batch (docs/simulate.md)
INF = math.inf


@dataclass(frozen=True)
class Config:
    seed: int = 0
    cv: tuple[tuple[str, float], ...] = ()   # (kind or "*", coefficient of variation)
    batching: str = "continuous"             # or "planned"
    warmup: int = 0                          # first requests left out of the statistics
    cooldown: int = 0                        # last requests left out: run as load on the measured ones
    trace_requests: int = 0                  # requests whose ops go into the trace
    timeline: bool = False                   # keep pool occupancy over time (plots)
    prefill_budget: int = DEFAULT_PREFILL_BUDGET  # tokens per prefill batch; 0 = one prompt a batch


@dataclass(frozen=True)
class Loss:
    """`devices` of `pool` stop taking work at `t_ms` (what they run finishes)."""

    t_ms: float
    pool: str
    devices: int


@dataclass
class Controller:
    """Called every `every_ms` of simulated time with the simulation; a Plan it returns
    replaces the current one for requests arriving from then on (the re-planning seam)."""

    every_ms: float
    decide: Callable[["Simulation"], Plan | None]


@dataclass(slots=True)   # (one per request: no __dict__ each)
class RequestStats:
    id: int
    arrival_ms: float
    end_ms: float = 0.0
    ttft_ms: float | None = None
    tbt_ms: float | None = None


@dataclass
class Result:
    plan: Plan
    config: Config
    requests: list[RequestStats]         # measured ones (after warmup), in arrival order
    window_ms: tuple[float, float]       # when the measured requests arrived
    pools: dict[str, PoolStats]
    links: dict[str, float]              # busy fraction over the window
    loop_trips: dict[str, list[int]]     # loop id -> count of requests... by trips (0..max)
    arm_counts: dict[str, list[int]]     # branch id -> executions per arm
    op_counts: dict[str, int]            # executions per op over all requests
    decode_batches: dict[str, list[int]]  # decode op -> steps run at each batch size
    trace: list = field(default_factory=list)
    end_ms: float = 0.0
    prefill_batches: dict = field(default_factory=dict)  # prefill op -> {batch size: batches}
    kv: dict = field(default_factory=dict)     # decoder -> KV budget and blocked sequences
    unfinished: int = 0                  # measured requests still running when events ran out
    engines: dict = field(default_factory=dict)  # decode op -> engines of its decoder (its latest plan's)


class _Req:
    """A request walking its plan. `scales`: its times' factors by an op's scale (none,
    prompt, output: a trace's token counts over the plan's)."""

    __slots__ = ("id", "arrival_ms", "measured", "traced", "plan", "s_in", "s_out", "arrive",
                 "first_token", "tbt")

    def __init__(self, id: int, arrival_ms: float, measured: bool, traced: bool, plan: Plan,
                 s_in: float = 1.0, s_out: float = 1.0):
        self.id = id
        self.arrival_ms = arrival_ms
        self.measured = measured
        self.traced = traced
        self.plan = plan
        self.s_in = s_in
        self.s_out = s_out
        self.arrive: dict = {}
        self.first_token: float | None = None
        self.tbt: float | None = None

    @property
    def scales(self) -> tuple[float, float, float]:   # (the general walk's; walkgen's has them apart)
        return (1.0, self.s_in, self.s_out)


class _OpRun:
    """What executing an op needs, looked up once per plan rather than per execution."""

    __slots__ = ("op", "pool", "tp", "busy", "total", "cv", "scale", "decoder", "prefiller", "inputs", "outs", "direct",
                 "plain", "waits", "count", "batched", "kind", "ahead", "parts")

    def __init__(self, sim, op: Op, plan: Plan, sent: set):
        # a split op (planner/split.py): a run per part, with the cumulative fractions
        # each call's draw picks one by; the parts run as planned, without batch engines
        self.parts, acc = [], 0.0
        for fraction, part in op.parts:
            acc += fraction
            self.parts.append((acc, _OpRun(sim, part, plan, sent)))
        self.op, self.pool, self.tp, self.kind = op, sim.pools[op.pool], op.tp, op.kind
        self.waits, self.count = self.pool.stats.waits, 0
        self.busy, self.total = op.busy_ms, op.latency_ms
        self.cv = sim.cv.get(op.kind, 0.0)
        # which of the request's scales (_Req.scales) its times take: 0 none, 1 prompt, 2 output
        self.scale = 1 if op.kind in IN_KINDS else 2 if op.kind in OUT_KINDS else 0
        self.decoder = None if op.parts or plan.ops[op.id] is not op else sim.decoders.get(op.id)
        self.prefiller = None if op.parts or plan.ops[op.id] is not op else sim.prefillers.get(op.id)
        self.batched = self.decoder is not None or self.prefiller is not None or op.decode is not None
        self.ahead = not self.batched or self.prefiller is not None   # may start ahead of the clock
        self.plain = not self.batched
        # the inputs that come by a transfer (`sent`: the edges that make one)
        self.inputs = tuple(k for k in (f"{s}>{op.id}" for s in op.inputs) if k in sent)
        outs = []
        for e in plan.out_edges.get(op.id, ()):
            link = sim.links[e.link] if e.link is not None and e.wire_ms > 0 else None
            if link is not None or e.latency_ms > 0:
                # a KV cache grows with the prompt; other payloads are taken as planned
                outs.append((f"{e.src}>{e.dst}", link, e.wire_ms, e.latency_ms, self.scale == 1, e))
        self.outs = tuple(outs)
        # (link, wire ms, latency ms, grows) of its one transfer when the op read next in
        # its chain consumes it (set by Simulation._use): the walk may fold it in (_walk)
        self.direct = None


def _uniforms(rng):
    """`rng.random()`'s numbers, drawn in blocks (the same stream, with less overhead per number)."""
    while True:
        yield from rng.random(1024).tolist()


class _Driver:
    """Runs a request's walk from the callbacks of the events it waits on, as a SimPy
    Process would, without the Process's own start and end events (two of the few
    events a request costs). The walk never waits on a failing event."""

    __slots__ = ("gen", "sim", "req", "on_event")

    def __init__(self, sim, req):
        self.sim, self.req = sim, req
        self.gen = sim._start(req)
        self.on_event = self.resume   # (one bound method for every event it waits on)
        self.resume(None)

    def resume(self, event) -> None:
        gen = self.gen
        try:
            ev = gen.send(None if event is None else event._value)
            while ev.callbacks is None:   # already processed: carry on
                ev = gen.send(ev._value)
        except StopIteration as stop:
            self.sim._finish(self.req, stop.value)
            # (`on_event` is a bound method of this driver, a cycle: broken, the request's
            # driver, walk and state are freed now rather than by the cyclic collector)
            self.on_event = None
            return
        ev.callbacks.append(self.on_event)


class Simulation:
    """One run of a plan against a list of arrivals."""

    def __init__(self, plan: Plan, arrivals: list[Arrival], config: Config = Config(),
                 losses: tuple[Loss, ...] = (), controller: Controller | None = None):
        self.plan, self.arrivals, self.config = plan, arrivals, config
        self.losses, self.controller = losses, controller
        self.env = simpy.Environment()
        seq = np.random.SeedSequence(config.seed)
        r_flow, r_service, r_engines = seq.spawn(3)
        self.rng_flow = np.random.default_rng(r_flow)
        self.flow = _uniforms(self.rng_flow)   # its draws, in order
        self.rng_service = np.random.default_rng(r_service)
        self._engine_seeds = r_engines
        self.cv_table = dict(config.cv)
        self.cv: dict[str, float] = {}
        self.pools: dict[str, Pool] = {}
        self.links: dict[str, Link] = {}
        self.decode_batches: dict[str, list[int]] = {}   # decode op -> steps run at each batch size
        self.prefill_batches: dict[str, dict] = {}
        self.decoders: dict[str, Decoder] = {}
        self.all_decoders: list[Decoder] = []   # every plan's
        self.prefillers: dict[str, Prefiller] = {}
        self.loop_trips: dict[str, list[int]] = {}
        self.arm_counts: dict[str, list[int]] = {}
        self.op_counts: dict[str, int] = {}
        self.trace: list = []
        self.done: list[RequestStats] = []
        self.horizon = 0.0   # the latest time the walk ran to ahead of the clock (a request's end)
        warm = min(config.warmup, max(0, len(arrivals) - 1))
        self.measured_end = max(warm + 1, len(arrivals) - config.cooldown)
        # the measured window: from the first measured arrival to the last measured one
        self.window = (arrivals[warm].t_ms, arrivals[self.measured_end - 1].t_ms) if arrivals else (0.0, 0.0)
        self.runs: dict[int, dict[str, _OpRun]] = {}
        self.all_runs: list[_OpRun] = []
        self.chains: dict[int, dict[str, tuple]] = {}
        # a plan's specialised walk (walkgen.py), or how many requests walked it in
        # general so far: it is built once `specialise_after` have (compiling costs
        # what about that many requests save), so a short run never pays for it
        self.walks: dict[int, Callable | int | None] = {}
        self.plan_ops: dict[str, Op] = {}
        self.widest: dict[str, int] = {}     # pool -> widest tp any plan placed there
        self.due = self.env._queue   # SimPy's event heap: due[0][0] is when the next event is
        self._use(plan)

    def stop_at_every_wait(self) -> None:
        """Never run ahead of the clock (an event seems due at once, always): the walk
        SimPy would make with a timeout per wait, which the tests compare with."""
        self.due = [(-INF,)]

    def walk_in_general(self) -> None:
        """Walk every request with the general walk (`_walk`), not the plan's specialised
        one (walkgen.py), which the tests compare it with."""
        self.specialise_after = INF

    # -------------------------------------------------------------------- plans
    def _kind_cv(self, kind: str) -> float:
        return self.cv_table.get(kind, self.cv_table.get("*", 0.0))

    def _factors(self, kind: str):
        cv = self._kind_cv(kind)
        if cv <= 0:
            return lambda _i: None
        return lambda _i: Factors(np.random.default_rng(self._engine_seeds.spawn(1)[0]), cv)

    def _use(self, plan: Plan) -> None:
        """Make `plan` the one new requests walk: its pools (resized to its device counts),
        links, batch engines and per-op lookups."""
        config, tracing = self.config, self.config.trace_requests > 0
        self.plan = plan
        self.plan_ops.update(plan.ops)
        for dec in self.all_decoders:
            dec.retable(self.plan_ops)
        placed = [x for op in plan.ops.values() for x in (op,) + tuple(part for _f, part in op.parts)]
        used = {op.pool for op in placed}
        for op in placed:
            self.widest[op.pool] = max(self.widest.get(op.pool, 1), op.tp)
        for name, n in plan.pools.items():
            if name not in self.pools:
                self.pools[name] = Pool(self.env, name, n, tracing, self.window, config.timeline)
            elif name in used:
                # a pool the new plan uses gets its device count (never below an op's tp
                # still to run there); others keep theirs for the requests on older plans
                self.pools[name].resize(max(n, self.widest[name]))
        for op in plan.ops.values():
            self.cv.setdefault(op.kind, self._kind_cv(op.kind))
            self.op_counts.setdefault(op.id, 0)
            if op.decode is not None:
                self.decode_batches.setdefault(op.id, [])
            if op.prefill is not None:
                self.prefill_batches.setdefault(op.id, {})
        for e in (e for es in plan.out_edges.values() for e in es if e.link):
            self.links.setdefault(e.link, Link(self.env, self.window))
        for rid, r in plan.regions.items():
            if r.kind == "loop":
                self.loop_trips.setdefault(rid, [0] * (r.max_trips + 1))
            elif r.kind == "branch":
                self.arm_counts.setdefault(rid, [0, 0])
        if config.batching == "continuous":
            groups: dict[tuple, list[Op]] = {}
            pre: dict[tuple, list[Op]] = {}
            for op in plan.ops.values():
                if op.parts:   # a split op's parts run as planned (_OpRun)
                    continue
                if op.decode is not None:
                    groups.setdefault((op.model or op.id, op.pool, op.tp, op.kind), []).append(op)
                elif op.prefill is not None and config.prefill_budget > 0:
                    pre.setdefault((op.model or op.id, op.pool, op.tp, op.kind), []).append(op)
            for (name, pool, tp, _kind), ops in sorted(groups.items()):
                decoder = Decoder(self, f"{name}@{pool}" + (f"/tp{tp}" if tp > 1 else ""), ops,
                                   plan.pools[pool], self._factors(ops[0].kind), decode_engines(plan, ops))
                for op in ops:
                    self.decoders[op.id] = decoder
                self.all_decoders.append(decoder)
            for (name, pool, tp, kind), ops in sorted(pre.items()):
                prefiller = Prefiller(self, f"{name}@{pool}" + (f"/tp{tp}" if tp > 1 else ""), ops,
                                       plan.pools[pool], config.prefill_budget, self._factors(kind)(0))
                for op in ops:
                    self.prefillers[op.id] = prefiller
        sent = {f"{e.src}>{e.dst}" for es in plan.out_edges.values() for e in es
                if (e.link is not None and e.wire_ms > 0) or e.latency_ms > 0}
        runs = {op.id: _OpRun(self, op, plan, sent) for op in plan.ops.values()}
        self.runs[id(plan)] = runs
        self.all_runs += [x for r in runs.values() for x in [r] + [part for _acc, part in r.parts]]
        # a chain region's items, each an _OpRun or a child region's id
        self.chains[id(plan)] = chains = {rid: tuple(runs.get(item, item) for item in r.items)
                                          for rid, r in plan.regions.items() if r.chain}
        for items in chains.values():
            for a, b in zip(items, items[1:]):
                if a.__class__ is _OpRun and b.__class__ is _OpRun and len(a.outs) == 1 and b.ahead:
                    key, link, wire, latency, grows, _e = a.outs[0]
                    if key == f"{a.op.id}>{b.op.id}":
                        a.direct = (link, wire, latency, grows)
        self.walks[id(plan)] = 0
        prefills = sorted((op.start_ms, op.id) for op in plan.ops.values() if op.kind in PREFILL_KINDS and op.tokens)
        decodes = sorted((op.start_ms, op.id) for op in plan.ops.values() if op.decode is not None)
        self.ref_in = plan.ops[prefills[0][1]].tokens if prefills else None
        self.ref_out = plan.ops[decodes[0][1]].decode.tokens if decodes else None
        self.tbt_ops = plan.ttft_ops or frozenset(op_id for _t, op_id in decodes)

    def switch(self, plan: Plan, delay_ms: float) -> None:
        """Make `plan` the one new requests walk `delay_ms` from now (a re-plan's
        switch takes time: draining, starting replicas, loading weights)."""
        def later():
            yield self.env.timeout(delay_ms)
            self._use(plan)
        self.env.process(later())

    # -------------------------------------------------------------------- randomness
    def factor(self, kind: str) -> float:
        cv = self.cv.get(kind, 0.0)
        if cv <= 0:
            return 1.0
        k = 1.0 / (cv * cv)
        return float(self.rng_service.gamma(k, 1.0 / k))

    def _trips(self, region: Region) -> int:
        p, n = region.continue_prob, region.max_trips
        if p >= 1.0:
            return n
        k = 0
        flow = self.flow
        while k < n and next(flow) < p:
            k += 1
        return k

    # -------------------------------------------------------------------- the clock
    def _timeout_at(self, t: float, value=None):
        """An event firing exactly at `t` (>= the clock; resources.at), so a timer set
        at the clock equals one set at a later walk time."""
        return at(self.env, t, value)

    def _sync(self, now: float):
        """Bring the clock to the walk's `now` before something that schedules events."""
        if now > self.env._now:
            yield at(self.env, now)

    # -------------------------------------------------------------------- processes
    def run(self) -> Result:
        env = self.env
        warm = min(self.config.warmup, max(0, len(self.arrivals) - 1))
        t0, t1 = self.window   # the measured requests' arrivals

        def source():
            last = 0.0
            trace_end = warm + self.config.trace_requests
            arr = self.arrivals
            due = self.due
            i, n = 0, len(arr)
            ts = [a.t_ms for a in arr]
            tokens = any(a.input_tokens is not None or a.output_tokens is not None for a in arr)
            while i < n:
                if ts[i] > last:
                    yield at(env, env._now + (ts[i] - last))   # (a timeout of that delay)
                    last = ts[i]
                j = i + 1
                while j < n and ts[j] <= last:
                    j += 1
                # a request arriving alone with nothing else due now starts at once (a
                # Process would start it next anyway); else they start as Processes
                quiet = j == i + 1 and (due[0][0] if due else INF) > last
                later = at(env, env._now + (ts[j] - last)) if j < n and ts[j] > last else None
                for k in range(i, j):
                    s_in = s_out = 1.0
                    if tokens:
                        a = arr[k]
                        s_in = a.input_tokens / self.ref_in if a.input_tokens is not None and self.ref_in else 1.0
                        s_out = a.output_tokens / self.ref_out if a.output_tokens is not None and self.ref_out else 1.0
                    req = _Req(k, ts[k], warm <= k < self.measured_end, warm <= k < trace_end, self.plan, s_in, s_out)
                    if quiet:
                        _Driver(self, req)
                    else:
                        env.process(self._request(req))
                i = j
                if later is not None:
                    yield later
                    last = ts[j]

        def lose(loss: Loss):
            yield env.timeout(loss.t_ms)
            self.pools[loss.pool].lose(loss.devices)

        def control():
            ctl = self.controller
            while env._now + ctl.every_ms <= t1:
                yield env.timeout(ctl.every_ms)
                new = ctl.decide(self)
                if new is not None:
                    self._use(new)

        env.process(source())
        for loss in self.losses:
            env.process(lose(loss))
        if self.controller is not None and self.controller.every_ms > 0:
            env.process(control())
        env.run()
        for r in self.all_runs:
            self.op_counts[r.op.id] += r.count
        for p in self.pools.values():
            p.settle()
        links = {n: (link.busy_ms + link.busy_within()) / (t1 - t0) if t1 > t0 else 0.0
                 for n, link in sorted(self.links.items())}
        done = sorted(self.done, key=lambda r: r.id)
        kv = {}
        for dec in sorted({id(d): d for d in self.decoders.values()}.values(), key=lambda d: d.name):
            if dec.kv_budget < INF:
                kv[dec.name] = {"budget_bytes": dec.kv_budget, "blocked": list(dec.kv_blocked)}
        measured = [r for r in done if warm <= r.id < self.measured_end]
        return Result(self.plan, self.config, measured, (t0, t1),
                      {n: p.stats for n, p in sorted(self.pools.items())}, links, self.loop_trips, self.arm_counts,
                      self.op_counts, {k: v[1:max((b for b, c in enumerate(v) if c), default=0) + 1]
                                       for k, v in sorted(self.decode_batches.items())},
                      self.trace, max(env._now, self.horizon),
                      {k: dict(sorted(v.items())) for k, v in sorted(self.prefill_batches.items())},
                      kv, max(0, self.measured_end - warm - len(measured)),
                      {op_id: len(dec.engines) for op_id, dec in sorted(self.decoders.items())})

    specialise_after = 200   # requests of a plan walked in general before its walk is built

    def _start(self, req: _Req):
        """A request's walk from now: its plan's specialised one, the general one for a
        traced request (or with `walk_in_general`)."""
        if not req.traced:
            walk = self.walks[id(req.plan)]
            if walk.__class__ is not int:
                return walk(req, self.env._now)
            if walk < self.specialise_after:
                self.walks[id(req.plan)] = walk + 1
            else:
                walk = self.walks[id(req.plan)] = walkgen.build(self, req.plan)[0]
                return walk(req, self.env._now)
        return self._walk(req, ("",), self.env._now)   # the top region

    def _request(self, req: _Req):
        """A request's walk as a SimPy Process (a _Driver runs it without one)."""
        now = yield from self._start(req)
        self._finish(req, now)

    def _finish(self, req: _Req, now: float):
        """A request's walk ended at `now`: its statistics."""
        if now > self.horizon:
            self.horizon = now
        first = req.first_token
        self.done.append(RequestStats(req.id, req.arrival_ms, now,
                                      None if first is None else first - req.arrival_ms, req.tbt))

    def _block(self, req: _Req, region: Region, now: float):
        """A region, from the walk's `now` to the time it returns: a chain runs in this
        process; otherwise each item is a process that starts when the items it reads
        from are done (`parallel` joins on all)."""
        chain = self.chains[id(req.plan)].get(region.id)
        if chain is not None:
            return (yield from self._walk(req, chain, now))
        yield from self._sync(now)
        runs = self.runs[id(req.plan)]
        events = {}
        for item in region.items:
            deps = [events[d] for d in region.deps.get(item, ())]
            events[item] = self.env.process(self._after(req, runs.get(item, item), deps))
        yield self.env.all_of(list(events.values()))
        return self.env._now

    def _after(self, req, item, deps):
        if deps:
            yield self.env.all_of(deps)
        now = yield from self._walk(req, (item,), self.env._now)
        yield from self._sync(now)   # the block joins on this process's end

    def _walk(self, req: _Req, items: tuple, now: float):
        """Run `items` (op runs and region ids) in order from the walk's `now`, entering
        chain regions in place, and return the time they end: one generator per request
        rather than one per op, since each op costs a resume of every generator above it.

        The walk runs ahead of the clock: when the next event due is later than the end
        of a wait (an op's time, a transfer landing), nothing can happen before it, so
        the walk carries on at that time without a timeout; it stops (a timeout firing
        exactly then) at a wait something may come before, and brings the clock along
        before whatever schedules events (a pool ask that queues, a batch engine, a
        process). The pools and links see the same calls at the same times in the same
        order, so the results are the same as waiting out every step."""
        env, plan = self.env, req.plan
        chains = self.chains[id(plan)]
        arrive = req.arrive
        due = self.due   # due[0][0]: when the next event is (SimPy's queue, a heap)
        scales, measured, traced = req.scales, req.measured, req.traced
        stack = [iter(items)]
        while stack:
            for r in stack[-1]:
                if r.__class__ is not _OpRun:
                    region = plan.regions[r]
                    if region.kind == "loop":
                        trips = self._trips(region)
                        self.loop_trips[r][trips] += 1
                        body = chains.get(r)
                        if body is not None:
                            stack.append(iter(body * trips))
                            break
                        for _ in range(trips):
                            now = yield from self._block(req, region, now)
                        continue
                    if region.kind == "branch":
                        arms = sorted(region.items, key=lambda a: plan.regions[a].index)
                        arm = 0 if next(self.flow) < plan.regions[arms[0]].prob else 1
                        self.arm_counts[r][arm] += 1
                        region = plan.regions[arms[arm]]
                    body = chains.get(region.id)
                    if body is not None:
                        stack.append(iter(body))
                        break
                    now = yield from self._block(req, region, now)
                    continue
                if r.parts:   # a split op: this call's part
                    u = next(self.flow)
                    r = next((run for acc, run in r.parts if u < acc), r.parts[-1][1])
                for key in (r.inputs if arrive else ()):   # (no transfer pending: none to read)
                    x = arrive.pop(key, None)
                    if x is None:
                        continue
                    if x.fire > now:   # not landed by the walk's time
                        # (a batched op starts on the clock but a prefill may: it would stop there)
                        if r.ahead and (due[0][0] if due else INF) > x.fire:
                            now = x.fire
                            continue
                        while x.fire > now:   # on the clock; a send may move the landing meanwhile
                            yield at(env, x.fire)
                            now = env._now
                r.count += 1
                if r.plain:   # an op: its devices held for its busy time, then its wait
                    f = scales[r.scale]
                    if r.cv > 0:
                        f = self.factor(r.kind) * f
                    busy = r.busy * f
                    start = now
                    ids = r.pool.hold_now(r.tp, busy, now)
                    if ids is False:   # it queues: on the clock
                        if now > env._now:
                            yield at(env, now)
                        ev, ids = r.pool.ask(r.tp, busy)
                        if ev is not None:
                            ids = yield ev
                        now = env._now
                    if measured:
                        r.waits.append(now - start)
                    start = now
                    end = start + r.total * f
                    if end > start:
                        if (due[0][0] if due else INF) > end:
                            now = end
                        else:
                            yield at(env, end)
                            now = env._now
                    if traced:
                        op = r.op
                        self.trace.append(("op", op.pool, tuple(ids) if ids else None, op.id, start, start + busy,
                                           req.id))
                        if end > start + busy:
                            self.trace.append(("wait", op.pool, None, op.id, start + busy, now, req.id))
                elif r.decoder is not None:   # joins a decode engine (on the clock to wake an idle one)
                    seq = r.decoder.join(req, r.op, now)
                    if seq is None:
                        yield at(env, now)
                        seq = r.decoder.join(req, r.op, now)
                    yield seq   # the event of its leaving
                    now = self._decoded(req, r.op, seq)
                elif r.prefiller is not None:   # a prefill batch: alone at once, else queued on the clock
                    scale = scales[r.scale]
                    tokens = r.op.tokens * scale
                    lone = r.prefiller.alone(r.op, tokens, req, now)
                    if lone is not None:
                        start, busy_end, ids, f = lone
                        if (due[0][0] if due else INF) > busy_end:
                            now = busy_end
                        else:
                            yield at(env, busy_end)
                            now = env._now
                    else:
                        if now > env._now:
                            yield at(env, now)
                        start, busy_end, ids, f = yield r.prefiller.submit(r.op, tokens, req)
                        now = env._now
                    rest = (r.total - r.busy) * f * scale
                    if rest > 0:
                        now = yield from self._wait(now, rest)
                    if traced:
                        op = r.op
                        self.trace.append(("op", op.pool, tuple(ids) if ids else None, op.id, start, busy_end, req.id))
                elif r.batched:
                    now = yield from self._planned(req, r, now)
                if r.outs:
                    direct = r.direct
                    if direct is not None and not traced:
                        # one transfer, read by the next op: alone on its link and landing
                        # before the next event due, nothing can move it, so the walk
                        # carries on at its landing without a Transfer (nor a timer)
                        link, wire, latency, grows = direct
                        if link is None:
                            land = now + latency
                        elif link.p1 is None or link.p1 <= now:
                            if grows:
                                wire = wire * scales[1]
                            land = now + wire + latency
                        else:
                            land = None
                        if land is not None:
                            land = now + (land - now)   # when a timer set now fires (Transfer.fire)
                            if (due[0][0] if due else INF) > land:
                                if link is not None:
                                    link.alone(wire, now)
                                now = land
                                continue
                    for key, link, wire, latency, grows, e in r.outs:
                        if link is not None:
                            x = link.send(wire * scales[1] if grows else wire, latency, now)
                        else:
                            x = Transfer(now, now + latency)
                        arrive[key] = x
                        if traced:
                            x.trace = ["transfer", e.link or "profiled", None, f"{e.src} -> {e.dst}", now, x.at,
                                       req.id]
                            self.trace.append(x.trace)
            else:
                stack.pop()
        return now

    def _decoded(self, req: _Req, op: Op, seq: Seq) -> float:
        """A decode sequence is done: its tokens' times; the time it ends."""
        now = self.env._now
        self._tokens(req, op, seq.first, seq.last, seq.tokens)
        if req.traced:
            self.trace.append(("decode", op.pool, None, op.id, seq.joined, now, req.id))
        return now

    def _planned(self, req: _Req, r: _OpRun, now: float):
        """A decode op under `--batching planned`: an op whose tokens come evenly over
        its planned time. Returns the time it ends."""
        env, op = self.env, r.op
        scale = req.scales[r.scale]
        if now > env._now:
            yield at(env, now)
        f = (self.factor(op.kind) if r.cv > 0 else 1.0) * scale
        t_ask = env._now
        busy = r.busy * f
        ev, ids = r.pool.ask(r.tp, busy)
        if ev is not None:
            ids = yield ev
        start = env._now
        if req.measured:
            r.waits.append(start - t_ask)
        now = yield from self._wait(start, r.total * f)
        tokens = max(1, round(op.decode.tokens * req.s_out))
        step = (now - start) / tokens
        self._tokens(req, op, start + step, now, tokens)
        if req.traced:
            self.trace.append(("op", op.pool, tuple(ids) if ids else None, op.id, start, start + busy, req.id))
            if r.total > r.busy:
                self.trace.append(("wait", op.pool, None, op.id, start + busy, now, req.id))
        return now

    def _wait(self, now: float, ms: float):
        """Wait `ms` from the walk's `now` (on the clock or ahead of it, see _walk)."""
        end = now + ms
        due = self.due
        if (due[0][0] if due else INF) > end:
            return end
        yield at(self.env, end)
        return end

    def _tokens(self, req: _Req, op: Op, first: float, last: float, tokens: int):
        if op.id in req.plan.ttft_ops and (req.first_token is None or first < req.first_token):
            req.first_token = first
        if op.id in self.tbt_ops and tokens > 1:
            gap = (last - first) / (tokens - 1)
            req.tbt = gap if req.tbt is None else max(req.tbt, gap)


def simulate(plan: Plan, arrivals: list[Arrival], config: Config = Config(), losses: tuple[Loss, ...] = (),
             controller: Controller | None = None) -> Result:
    """Run `arrivals` through `plan` and return the raw statistics (see report.py)."""
    return Simulation(plan, arrivals, config, losses, controller).run()
