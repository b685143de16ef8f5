"""The discrete-event model of a placed plan under load (SimPy). One module past 400
lines: the SimPy processes (arrivals, requests, ops, batch engines, links) share one
event state, and splitting them would spread that state over files.

What is modelled, and how (docs/simulate.md says the same for users):

- Pools: each pool is a SimPy `Container` of its devices. An op execution takes `tp`
  devices for its busy time and gives them back; requests for devices are served in
  strict FIFO order per pool (SimPy serves the oldest request first and a request for
  more devices than are free blocks those behind it: no backfilling).
- After its busy time an op waits the rest of its planned latency without devices:
  tools and remote stores wait on someone else, as the planner assumes.
- Decode (`--batching continuous`, the default) is iteration-level continuous batching:
  one engine per `tp` devices of the pool for each model placed there (the decode ops
  of every call of that model share its batches); a new sequence joins the fullest
  engine that still has room (at most the planned batch) at the next step boundary,
  else waits in a FIFO backlog; each step takes `tp` devices for the step time of the
  current batch size (the cost model's, tabulated in the manifest; the mean over the
  batch's calls when they differ in context) and gives every sequence one token.
  `--batching planned` runs decode like any op, at the planner's batched time.
- Transfers between pools start when their producer finishes; a link is shared by its
  concurrent transfers (processor sharing: n transfers each get 1/n of the bandwidth),
  and its latency is added after.
- Control flow: a loop draws its trips from the pre-tested truncated geometric law of
  its continue probability (`while p`; `expect E` uses the p with that mean; a fixed
  count has p = 1), a branch draws its arm, a block's ops run as soon as the ops they
  read from are done, so `parallel` joins on its last child.
- Variability: each execution's times are multiplied by a Gamma factor of mean 1 and
  the kind's coefficient of variation (`--cv`; 0 = deterministic; 1 = exponential);
  decode draws one factor per step.

Every random draw comes from numpy Generators spawned from one seed (arrivals, control
flow, service), so a seed fixes every number the simulation reports.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import simpy

from agentc.sim.arrivals import Arrival
from agentc.sim.plan import Edge, Op, Plan, Region

IN_KINDS = ("llm.tokenize", "llm.prefill", "moe.expert_prefill")
OUT_KINDS = ("llm.decode", "moe.expert_decode", "llm.sample", "llm.detokenize")


@dataclass(frozen=True)
class Config:
    seed: int = 0
    cv: tuple[tuple[str, float], ...] = ()   # (kind or "*", coefficient of variation)
    batching: str = "continuous"             # or "planned"
    warmup: int = 0                          # first requests left out of the statistics
    trace_requests: int = 0                  # requests whose ops go into the trace
    timeline: bool = False                   # keep pool occupancy over time (plots)


@dataclass
class RequestStats:
    id: int
    arrival_ms: float
    end_ms: float = 0.0
    ttft_ms: float | None = None
    tbt_ms: float | None = None


@dataclass
class PoolStats:
    name: str
    devices: int
    busy_area: float = 0.0       # device-ms busy
    queue_time: dict = field(default_factory=dict)  # queue length -> ms spent at it
    waits: list = field(default_factory=list)       # ms waited per measured execution
    timeline: list = field(default_factory=list)    # (t_ms, busy devices, queue length)


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


class _Pool:
    """A pool's devices with FIFO allocation and time-weighted occupancy."""

    def __init__(self, env, name: str, devices: int, timeline: bool, ids: bool):
        self.env = env
        self.res = simpy.Container(env, capacity=devices, init=devices)
        self.stats = PoolStats(name, devices)
        self.busy = 0
        self.queue = 0
        self.last = 0.0
        self.timeline = timeline
        self.free_ids = list(range(devices)) if ids else None

    def _advance(self):
        now = self.env.now
        dt = now - self.last
        if dt > 0:
            self.stats.busy_area += self.busy * dt
            qt = self.stats.queue_time
            qt[self.queue] = qt.get(self.queue, 0.0) + dt
            self.last = now

    def _mark(self):
        if self.timeline:
            tl = self.stats.timeline
            if tl and tl[-1][0] == self.env.now:
                tl[-1] = (self.env.now, self.busy, self.queue)
            else:
                tl.append((self.env.now, self.busy, self.queue))

    def acquire(self, tp: int):
        """Take `tp` devices (FIFO); returns the device ids when tracing, else None."""
        self._advance()
        self.queue += 1
        self._mark()
        ev = self.res.get(tp)
        if not ev.triggered:
            yield ev
        self._advance()
        self.queue -= 1
        self.busy += tp
        self._mark()
        if self.free_ids is not None:
            return [heapq.heappop(self.free_ids) for _ in range(tp)]
        return None

    def release(self, tp: int, ids):
        self._advance()
        self.busy -= tp
        self._mark()
        if ids is not None:
            for i in ids:
                heapq.heappush(self.free_ids, i)
        self.res.put(tp)


class _Link:
    """Processor sharing: n concurrent transfers each progress at 1/n of the bandwidth."""

    def __init__(self, env):
        self.env = env
        self.active: dict[int, list] = {}   # key -> [remaining wire ms, done event]
        self.last = 0.0
        self.gen = 0
        self.next_key = 0
        self.busy_ms = 0.0

    def _advance(self):
        now = self.env.now
        n = len(self.active)
        if n:
            dt = now - self.last
            self.busy_ms += dt
            for item in self.active.values():
                item[0] -= dt / n
        self.last = now

    def _reschedule(self):
        self.gen += 1
        if self.active:
            n = len(self.active)
            soonest = min(item[0] for item in self.active.values())
            gen = self.gen
            self.env.timeout(max(0.0, soonest) * n).callbacks.append(lambda _ev: self._fire(gen, soonest))

    def _fire(self, gen, soonest):
        """The transfer that was soonest is done now (and any as close): decided by
        the schedule, not by comparing a float with zero, which rounding can defeat
        late in a long run."""
        if gen != self.gen:
            return
        n = len(self.active)
        self._advance()
        cut = max(1e-9, 1e-9 * soonest)
        for key in [k for k, item in self.active.items() if item[0] <= cut]:
            self.active.pop(key)[1].succeed()
        if len(self.active) == n:  # rounding kept it: finish the smallest anyway
            key = min(self.active, key=lambda k: (self.active[k][0], k))
            self.active.pop(key)[1].succeed()
        self._reschedule()

    def send(self, wire_ms: float):
        self._advance()
        done = self.env.event()
        self.active[self.next_key] = [wire_ms, done]
        self.next_key += 1
        self._reschedule()
        return done


@dataclass
class _Req:
    id: int
    arrival_ms: float
    measured: bool
    traced: bool
    s_in: float = 1.0
    s_out: float = 1.0
    arrive: dict = field(default_factory=dict)
    first_token: float | None = None
    tbt: float | None = None


class _Seq:
    __slots__ = ("req", "op", "tokens", "produced", "first", "last", "done", "joined", "started", "factor")

    def __init__(self, req, op, tokens, done, joined):
        self.req, self.op, self.tokens, self.done, self.joined = req, op, tokens, done, joined
        self.produced = 0
        self.first = self.last = self.started = None


class _Engine:
    """One continuous-batching decode engine: a tp group of the pool serving one model."""

    def __init__(self, sim, decoder, index):
        self.sim, self.decoder, self.index = sim, decoder, index
        self.active: list[_Seq] = []
        self.pending: list[_Seq] = []
        self.wake = None
        sim.env.process(self.run())

    def kick(self):
        if self.wake is not None and not self.wake.triggered:
            self.wake.succeed()

    def run(self):
        sim, dec = self.sim, self.decoder
        env, pool, tp = sim.env, sim.pools[dec.pool], dec.tp
        while True:
            if not self.active and not self.pending and not dec.backlog:
                self.wake = env.event()
                yield self.wake
                self.wake = None
            self.active += self.pending
            self.pending = []
            while len(self.active) < dec.max_batch and dec.backlog:
                self.active.append(dec.backlog.popleft())
            if not self.active:
                continue
            ids = yield from pool.acquire(tp)
            start = env.now
            n = len(self.active)
            for s in self.active:
                if s.started is None:
                    s.started = start
                    if s.req.measured:
                        pool.stats.waits.append(start - s.joined)
            # calls of one model share the batch; each sequence's op prices the step at
            # this batch size for its own context, and the step takes their mean
            ops = {s.op.id: s.op for s in self.active}
            if len(ops) == 1:
                (op,) = ops.values()
                step = op.decode.step(n)
            else:
                step = sum(s.op.decode.step(n) for s in self.active) / n
            dt = step * sim.factor(dec.kind)
            for op_id in ops:
                counts = sim.decode_batches[op_id]
                counts[n] = counts.get(n, 0) + 1
            yield env.timeout(dt)
            pool.release(tp, ids)
            now = env.now
            if ids is not None and any(s.req.traced for s in self.active):
                sim.trace.append(("step", dec.pool, tuple(ids), f"{dec.name} x{n}", start, now, None))
            keep = []
            for s in self.active:
                s.produced += 1
                if s.first is None:
                    s.first = now
                s.last = now
                if s.produced >= s.tokens:
                    s.done.succeed()
                else:
                    keep.append(s)
            self.active = keep


class _Decoder:
    """The decode engines of one model on one pool at one tp: every decode op of that
    model placed there joins the same batches, as one serving instance would run them."""

    def __init__(self, sim, name: str, ops: list[Op], devices: int):
        self.name = name
        self.pool, self.tp, self.kind = ops[0].pool, ops[0].tp, ops[0].kind
        self.max_batch = min(op.decode.max_batch for op in ops)
        self.backlog: deque = deque()
        self.engines = [_Engine(sim, self, i) for i in range(max(1, devices // self.tp))]

    def join(self, seq: _Seq):
        best, best_load = None, -1
        cap = self.max_batch
        for e in self.engines:
            load = len(e.active) + len(e.pending)
            if load < cap and load > best_load:
                best, best_load = e, load
        if best is None:
            self.backlog.append(seq)
        else:
            best.pending.append(seq)
            best.kick()


class Simulation:
    """One run of a plan against a list of arrivals."""

    def __init__(self, plan: Plan, arrivals: list[Arrival], config: Config = Config()):
        self.plan, self.arrivals, self.config = plan, arrivals, config
        self.env = simpy.Environment()
        seq = np.random.SeedSequence(config.seed)
        r_flow, r_service = seq.spawn(2)
        self.rng_flow = np.random.default_rng(r_flow)
        self.rng_service = np.random.default_rng(r_service)
        cv = dict(config.cv)
        self.cv = {op.kind: cv.get(op.kind, cv.get("*", 0.0)) for op in plan.ops.values()}
        tracing = config.trace_requests > 0
        self.pools = {name: _Pool(self.env, name, n, config.timeline, tracing) for name, n in plan.pools.items()}
        self.links = {name: _Link(self.env) for name in
                      sorted({e.link for es in plan.out_edges.values() for e in es if e.link})}
        self.decode_batches = {op.id: {} for op in plan.ops.values() if op.decode is not None}
        self.decoders = {}
        if config.batching == "continuous":
            groups: dict[tuple, list[Op]] = {}
            for op in plan.ops.values():
                if op.decode is not None:
                    groups.setdefault((op.model or op.id, op.pool, op.tp, op.kind), []).append(op)
            for (name, pool, tp, _kind), ops in sorted(groups.items()):
                decoder = _Decoder(self, f"{name}@{pool}" + (f"/tp{tp}" if tp > 1 else ""), ops, plan.pools[pool])
                for op in ops:
                    self.decoders[op.id] = decoder
        self.loop_trips = {rid: [0] * (r.max_trips + 1) for rid, r in plan.regions.items() if r.kind == "loop"}
        self.arm_counts = {rid: [0, 0] for rid, r in plan.regions.items() if r.kind == "branch"}
        self.op_counts = {op_id: 0 for op_id in plan.ops}
        self.trace: list = []
        self.done: list[RequestStats] = []
        prefills = sorted((op.start_ms, op.id) for op in plan.ops.values() if op.kind in IN_KINDS[1:] and op.tokens)
        decodes = sorted((op.start_ms, op.id) for op in plan.ops.values() if op.decode is not None)
        self.ref_in = plan.ops[prefills[0][1]].tokens if prefills else None
        self.ref_out = plan.ops[decodes[0][1]].decode.tokens if decodes else None
        self.tbt_ops = plan.ttft_ops or frozenset(op_id for _t, op_id in decodes)
        self.window = (0.0, 0.0)

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
        while k < n and self.rng_flow.random() < p:
            k += 1
        return k

    # -------------------------------------------------------------------- processes
    def run(self) -> Result:
        env = self.env
        warm = min(self.config.warmup, max(0, len(self.arrivals) - 1))
        t0 = self.arrivals[warm].t_ms if self.arrivals else 0.0
        t1 = self.arrivals[-1].t_ms if self.arrivals else 0.0
        snapshots = {}

        def snapshot(tag):
            for p in self.pools.values():
                p._advance()
            for link in self.links.values():
                link._advance()
            snapshots[tag] = ({n: (p.stats.busy_area, dict(p.stats.queue_time)) for n, p in self.pools.items()},
                              {n: link.busy_ms for n, link in self.links.items()})

        def source():
            last = 0.0
            for i, a in enumerate(self.arrivals):
                if a.t_ms > last:
                    yield env.timeout(a.t_ms - last)
                    last = a.t_ms
                if i == warm:
                    snapshot("start")
                traced = warm <= i < warm + self.config.trace_requests
                req = _Req(i, a.t_ms, i >= warm, traced)
                if a.input_tokens is not None and self.ref_in:
                    req.s_in = a.input_tokens / self.ref_in
                if a.output_tokens is not None and self.ref_out:
                    req.s_out = a.output_tokens / self.ref_out
                env.process(self._request(req))
            snapshot("end")

        env.process(source())
        env.run()
        if "start" not in snapshots:
            snapshot("start")
        if "end" not in snapshots:
            snapshot("end")
        span = max(t1 - t0, 1e-9)
        (p0, l0), (p1, l1) = snapshots["start"], snapshots["end"]
        for name, p in self.pools.items():
            busy0, q0 = p0[name]
            busy1, q1 = p1[name]
            p.stats.busy_area = busy1 - busy0
            p.stats.queue_time = {k: v - q0.get(k, 0.0) for k, v in sorted(q1.items()) if v - q0.get(k, 0.0) > 0}
        links = {n: (l1[n] - l0[n]) / span if t1 > t0 else 0.0 for n in self.links}
        done = sorted(self.done, key=lambda r: r.id)
        return Result(self.plan, self.config, [r for r in done if r.id >= warm], (t0, t1),
                      {n: p.stats for n, p in self.pools.items()}, links, self.loop_trips, self.arm_counts,
                      self.op_counts, {k: [v.get(b, 0) for b in range(1, max(v, default=0) + 1)]
                                       for k, v in self.decode_batches.items()},
                      self.trace, env.now)

    def _request(self, req: _Req):
        yield from self._region(req, self.plan.regions[""])
        stats = RequestStats(req.id, req.arrival_ms, self.env.now)
        if req.first_token is not None:
            stats.ttft_ms = req.first_token - req.arrival_ms
        stats.tbt_ms = req.tbt
        self.done.append(stats)

    def _region(self, req: _Req, region: Region):
        if region.chain:
            for item in region.items:
                yield from self._item(req, item)
            return
        events = {}
        for item in region.items:
            deps = [events[d] for d in region.deps.get(item, ())]
            events[item] = self.env.process(self._after(req, item, deps))
        yield self.env.all_of(list(events.values()))

    def _after(self, req, item, deps):
        if deps:
            yield self.env.all_of(deps)
        yield from self._item(req, item)

    def _item(self, req: _Req, item: str):
        op = self.plan.ops.get(item)
        if op is not None:
            yield from self._op(req, op)
            return
        region = self.plan.regions[item]
        if region.kind == "loop":
            trips = self._trips(region)
            self.loop_trips[item][trips] += 1
            for _ in range(trips):
                yield from self._region(req, region)
        elif region.kind == "branch":
            arms = sorted(region.items, key=lambda a: self.plan.regions[a].index)
            arm = 0 if self.rng_flow.random() < self.plan.regions[arms[0]].prob else 1
            self.arm_counts[item][arm] += 1
            yield from self._region(req, self.plan.regions[arms[arm]])
        else:
            yield from self._region(req, region)

    def _op(self, req: _Req, op: Op):
        env = self.env
        for s in op.inputs:
            ev = req.arrive.get((s, op.id))
            if ev is not None and not ev.processed:
                yield ev
        self.op_counts[op.id] += 1
        scale = req.s_in if op.kind in IN_KINDS else req.s_out if op.kind in OUT_KINDS else 1.0
        decoder = self.decoders.get(op.id)
        if decoder is not None:
            tokens = max(1, round(op.decode.tokens * req.s_out))
            seq = _Seq(req, op, tokens, env.event(), env.now)
            decoder.join(seq)
            yield seq.done
            self._tokens(req, op, seq.first, seq.last, tokens)
            if req.traced:
                self.trace.append(("decode", op.pool, None, op.id, seq.joined, env.now, req.id))
        else:
            pool = self.pools[op.pool]
            f = self.factor(op.kind) * scale
            t_ask = env.now
            ids = yield from pool.acquire(op.tp)
            start = env.now
            if req.measured:
                pool.stats.waits.append(start - t_ask)
            yield env.timeout(op.busy_ms * f)
            pool.release(op.tp, ids)
            busy_end = env.now
            rest = (op.latency_ms - op.busy_ms) * f
            if rest > 0:
                yield env.timeout(rest)
            if op.decode is not None:  # planned batching: tokens evenly over the planned time
                tokens = max(1, round(op.decode.tokens * req.s_out))
                step = (env.now - start) / tokens
                self._tokens(req, op, start + step, env.now, tokens)
            if req.traced:
                self.trace.append(("op", op.pool, tuple(ids) if ids else None, op.id, start, busy_end, req.id))
                if rest > 0:
                    self.trace.append(("wait", op.pool, None, op.id, busy_end, env.now, req.id))
        for e in self.plan.out_edges.get(op.id, ()):
            # a KV cache grows with the prompt; other payloads are taken as planned
            req.arrive[(e.src, e.dst)] = env.process(self._transfer(req, e, req.s_in if op.kind in IN_KINDS else 1.0))

    def _tokens(self, req: _Req, op: Op, first: float, last: float, tokens: int):
        if op.id in self.plan.ttft_ops and (req.first_token is None or first < req.first_token):
            req.first_token = first
        if op.id in self.tbt_ops and tokens > 1:
            gap = (last - first) / (tokens - 1)
            req.tbt = gap if req.tbt is None else max(req.tbt, gap)

    def _transfer(self, req: _Req, e: Edge, scale: float):
        start = self.env.now
        if e.link is not None and e.wire_ms > 0:
            yield self.links[e.link].send(e.wire_ms * scale)
        if e.latency_ms > 0:
            yield self.env.timeout(e.latency_ms)
        if req.traced:
            self.trace.append(("transfer", e.link or "profiled", None, f"{e.src} -> {e.dst}", start,
                               self.env.now, req.id))


def simulate(plan: Plan, arrivals: list[Arrival], config: Config = Config()) -> Result:
    """Run `arrivals` through `plan` and return the raw statistics (see report.py)."""
    return Simulation(plan, arrivals, config).run()
