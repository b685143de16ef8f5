"""The discrete-event model of a placed plan under load (SimPy). One module past 400
lines: the SimPy processes (arrivals, requests, ops, batch engines, links) share one
event state, and splitting them would spread that state over files.

What is modelled, and how (docs/simulate.md says the same for users):

- Pools: each pool's devices are handed out in strict FIFO order (a request for more
  devices than are free blocks those behind it: no backfilling). An op execution takes
  `tp` devices for its busy time. A hold of known length is returned lazily (the pool
  reaps it when next asked, or wakes itself only when someone waits), so an op that
  finds its devices free costs one SimPy event, not four.
- After its busy time an op waits the rest of its planned latency without devices:
  tools and remote stores wait on someone else, as the planner assumes.
- Decode (`--batching continuous`, the default) is iteration-level continuous batching:
  one engine per `tp` devices of the pool for each model placed there (the decode ops
  of every call of that model share its batches); a new sequence joins the fullest
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
  requests then walk (the seam for re-planning; nothing here re-plans).

Every random draw comes from numpy Generators spawned from one seed (arrivals, control
flow, service, one per batch engine), so a seed fixes every number the simulation reports.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import simpy

from agentc.sim.arrivals import Arrival
from agentc.sim.plan import Op, Plan, Region

IN_KINDS = ("llm.tokenize", "llm.prefill", "moe.expert_prefill")
OUT_KINDS = ("llm.decode", "moe.expert_decode", "llm.sample", "llm.detokenize")
PREFILL_KINDS = IN_KINDS[1:]
DEFAULT_PREFILL_BUDGET = 8192   # tokens per prefill batch (docs/simulate.md)
INF = math.inf


@dataclass(frozen=True)
class Config:
    seed: int = 0
    cv: tuple[tuple[str, float], ...] = ()   # (kind or "*", coefficient of variation)
    batching: str = "continuous"             # or "planned"
    warmup: int = 0                          # first requests left out of the statistics
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
    lost: list = field(default_factory=list)        # (t_ms, devices lost)


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


class _Transfer:
    """One transfer's arrival: `timer` fires at `at`, the time it lands. A link moves
    `at` later (with a new timer) when a transfer joins it; a consumer waits until the
    timer it woke on is still the transfer's current one."""

    __slots__ = ("at", "timer", "trace")

    def __init__(self, env, at: float):
        self.at = at
        self.timer = env.timeout(at - env.now)
        self.trace = None


class _Pool:
    """A pool's devices: strict FIFO, timed holds returned lazily, open holds (batch
    engines) returned explicitly; busy and waiting intervals kept for the statistics."""

    def __init__(self, env, name: str, devices: int, ids: bool, window: tuple[float, float], keep: bool):
        self.env = env
        self.stats = PoolStats(name, devices)
        self.t0, self.t1 = window  # busy and queue time count within the measured window
        self.busy_area = 0.0
        self.qlen, self.qlast = 0, 0.0
        self.queue_time: dict[int, float] = {}
        self.keep = keep           # keep every interval for the plots' timelines
        self.free = devices
        self.retire = 0          # lost devices still busy: dropped as they come back
        self.holds: list = []    # heap of (until_ms, n, tp, ids) not yet returned
        self.n = 0
        self.waiters: deque = deque()  # (tp, hold_ms, event, t_ask)
        self.alarm = INF
        self.busy_iv: list = []  # (start, end, tp), when kept
        self.wait_iv: list = []  # (t_ask, t_start) of asks that waited, when kept
        self.free_ids = list(range(devices)) if ids else None
        self.engines: list = []  # decode engines in a multi-step run on this pool

    def ask(self, tp: int, hold_ms: float | None):
        """(None, ids) when FIFO gives `tp` devices now, else (event, None): the event's
        value is the ids once granted. `hold_ms` None: held until `release`."""
        now = self.env.now
        holds = self.holds
        if holds and holds[0][0] <= now:
            self._reap(now)
        if not self.waiters and self.free >= tp:
            if hold_ms is not None and self.free_ids is None:   # the common case, inline
                self.free -= tp
                end = now + hold_ms
                heapq.heappush(holds, (end, self.n, tp, None))
                self.n += 1
                self._busy(now, end, tp)
                return None, None
            return None, self._grant(tp, hold_ms, now, now)
        ev = self.env.event()
        self.waiters.append((tp, hold_ms, ev, now))
        self._queue(1)
        self._arm()
        for e in list(self.engines):
            e.yield_soon()
        return ev, None

    def release(self, tp: int, ids, start: float):
        self._busy(start, self.env.now, tp)
        self._put(tp, ids)
        self._serve()

    def lose(self, k: int):
        self._reap(self.env.now)
        self.stats.lost.append((self.env.now, k))
        now_free = min(k, self.free)
        self.free -= now_free
        if self.free_ids is not None:
            for _ in range(now_free):
                self.free_ids.remove(max(self.free_ids))
        self.retire += k - now_free

    def _grant(self, tp, hold_ms, t_ask, now):
        self.free -= tp
        ids = tuple(heapq.heappop(self.free_ids) for _ in range(tp)) if self.free_ids is not None else None
        if hold_ms is not None:
            end = now + hold_ms
            heapq.heappush(self.holds, (end, self.n, tp, ids))
            self.n += 1
            self._busy(now, end, tp)
        if now > t_ask and self.keep:
            self.wait_iv.append((t_ask, now))
        return ids

    def _busy(self, start: float, end: float, tp: int):
        a = start if start > self.t0 else self.t0
        b = end if end < self.t1 else self.t1
        if b > a:
            self.busy_area += tp * (b - a)
        if self.keep:
            self.busy_iv.append((start, end, tp))

    def _queue(self, change: int):
        """Time at each queue length within the window, up to now; then the change."""
        now = self.env.now
        a = self.qlast if self.qlast > self.t0 else self.t0
        b = now if now < self.t1 else self.t1
        if b > a:
            self.queue_time[self.qlen] = self.queue_time.get(self.qlen, 0.0) + (b - a)
        self.qlast = now
        self.qlen += change

    def _put(self, tp, ids):
        if self.retire:
            k = min(self.retire, tp)
            self.retire -= k
            tp -= k
            ids = ids[k:] if ids else ids
        self.free += tp
        if ids:
            for i in ids:
                heapq.heappush(self.free_ids, i)

    def _reap(self, now):
        holds = self.holds
        while holds and holds[0][0] <= now:
            _, _, tp, ids = heapq.heappop(holds)
            self._put(tp, ids)

    def _serve(self):
        now = self.env.now
        self._reap(now)
        w = self.waiters
        while w and w[0][0] <= self.free:
            tp, hold_ms, ev, t_ask = w.popleft()
            self._queue(-1)
            ev.succeed(self._grant(tp, hold_ms, t_ask, now))
        self._arm()

    def _arm(self):
        """Wake when the next timed hold ends, while someone waits."""
        if self.waiters and self.holds:
            t = self.holds[0][0]
            if t < self.alarm:
                self.alarm = t
                self.env.timeout(t - self.env.now).callbacks.append(self._wake)

    def _wake(self, _ev):
        if self.env.now >= self.alarm:
            self.alarm = INF
        self._serve()

    def settle(self):
        """Busy device-ms and time at each queue length within the window; the
        occupancy timeline when the intervals were kept."""
        st = self.stats
        st.busy_area = self.busy_area
        self._queue(0)
        if self.t1 > self.qlast:   # the rest of the window, after the last change
            a = max(self.qlast, self.t0)
            self.queue_time[self.qlen] = self.queue_time.get(self.qlen, 0.0) + (self.t1 - a)
        st.queue_time = {k: v for k, v in sorted(self.queue_time.items()) if v > 0}
        timeline = self.keep
        if timeline:
            ch = [(s, tp, 0) for s, _e, tp in self.busy_iv] + [(e, -tp, 0) for _s, e, tp in self.busy_iv]
            ch += [(a, 0, 1) for a, _b in self.wait_iv] + [(b, 0, -1) for _a, b in self.wait_iv]
            ch.sort(key=lambda c: c[0])
            busy = queue = 0
            tl = []
            for t, db, dq in ch:
                busy += db
                queue += dq
                if tl and tl[-1][0] == t:
                    tl[-1] = (t, busy, queue)
                else:
                    tl.append((t, busy, queue))
            st.timeline = tl


class _Link:
    """Processor sharing: n concurrent transfers each progress at 1/n of the bandwidth.

    Between sends the future is known: with remaining wire times r1 <= r2 <= ... the
    k-th finishes after n r1 + (n-1)(r2-r1) + ..., so each send projects every active
    transfer's landing and schedules one timer per transfer it moved. A send only
    delays the others, so a transfer alone on its link costs one event."""

    def __init__(self, env, window: tuple[float, float]):
        self.env = env
        self.active: list[list] = []   # [remaining wire ms, _Transfer, latency ms]
        self.last = 0.0
        self.t0, self.t1 = window
        self.busy_ms = 0.0             # within the window, busy periods before the current one
        self.period = None             # [start, end (as projected)] of the current busy period

    def _advance(self, now: float):
        """Progress the active transfers from `last` to `now`, dropping finished ones."""
        t, act = self.last, self.active
        while act and t < now:
            n = len(act)
            m = min(x[0] for x in act)
            if t + m * n <= now:
                for x in act:
                    x[0] -= m
                tol = 1e-12 * max(1.0, m)
                act = [x for x in act if x[0] > tol]
                t += m * n
            else:
                d = (now - t) / n
                for x in act:
                    x[0] -= d
                t = now
        self.active = act
        self.last = now

    def send(self, wire_ms: float, latency_ms: float) -> _Transfer:
        env = self.env
        now = env.now
        act = self.active
        if len(act) == 1 and self.last + act[0][0] <= now:   # the one before is done: the link is free
            act.clear()
        elif act:
            self._advance(now)
        if not self.active:   # alone on the link: it lands after its wire time and the latency
            self.last = now
            x = _Transfer(env, now + wire_ms + latency_ms)
            self.active.append([wire_ms, x, latency_ms])
            self._period(now, now + wire_ms)
            return x
        new = [wire_ms, None, latency_ms]
        self.active.append(new)
        act = sorted(self.active, key=lambda x: x[0])
        n, t, prev = len(act), now, 0.0
        for k, x in enumerate(act):
            t += (n - k) * (x[0] - prev)
            prev = x[0]
            at = t + x[2]
            if x is new:
                x[1] = _Transfer(env, at)
            elif at != x[1].at:
                x[1].at = at
                x[1].timer = env.timeout(at - now)
                if x[1].trace is not None:
                    x[1].trace[5] = at
        self.period[1] = t
        return new[1]

    def _period(self, start: float, end: float):
        """A new busy period: count the finished one within the window."""
        self.busy_ms += self.busy_within()
        self.period = [start, end]

    def busy_within(self) -> float:
        """Busy ms of the current period within the window."""
        if self.period is None:
            return 0.0
        return max(0.0, min(self.period[1], self.t1) - max(self.period[0], self.t0))


@dataclass
class _Req:
    id: int
    arrival_ms: float
    measured: bool
    traced: bool
    plan: Plan
    s_in: float = 1.0
    s_out: float = 1.0
    arrive: dict = field(default_factory=dict)
    first_token: float | None = None
    tbt: float | None = None


class _Seq:
    __slots__ = ("req", "op", "tokens", "left", "first", "last", "done", "joined", "started", "kv", "kv_wait")

    def __init__(self, req, op, tokens, done, joined, kv):
        self.req, self.op, self.tokens, self.done, self.joined, self.kv = req, op, tokens, done, joined, kv
        self.left = tokens
        self.first = self.last = self.started = None
        self.kv_wait = False


class _Factors:
    """An engine's own stream of service-time factors (one per step or batch), so
    cutting a run short never changes which factor a later step gets."""

    def __init__(self, rng, cv: float):
        self.rng, self.cv = rng, cv
        self.buf = np.ones(0)
        self.pos = 0

    def take(self, m: int) -> np.ndarray:
        if len(self.buf) - self.pos < m:
            k = 1.0 / (self.cv * self.cv)
            self.buf = np.concatenate([self.buf[self.pos:], self.rng.gamma(k, 1.0 / k, size=max(m, 256))])
            self.pos = 0
        return self.buf[self.pos:self.pos + m]


class _Engine:
    """One continuous-batching decode engine: a tp group of the pool serving one model."""

    def __init__(self, sim, decoder, index, factors):
        self.sim, self.decoder, self.index, self.factors = sim, decoder, index, factors
        self.active: list[_Seq] = []
        self.pending: list[_Seq] = []
        self.kv = 0.0            # KV bytes of active and pending sequences
        self.wake = None
        self.start = 0.0         # the current run: start, steps, step time or step ends
        self.m = 0
        self.dt = 0.0
        self.ends = None
        self.cut = 0             # steps the current run stops after (0: its natural end)
        self.running = False
        self.proc = sim.env.process(self.run())

    def kick(self):
        if self.wake is not None and not self.wake.triggered:
            self.wake.succeed()
        elif self.running:
            self.yield_soon()

    def _end(self, j: int) -> float:
        return self.start + j * self.dt if self.ends is None else float(self.ends[j - 1])

    def yield_soon(self):
        """Stop the current run at the first step boundary after now. A step ending
        exactly now counts as ended: a step-by-step engine's step end was scheduled
        when the step began, so SimPy ran it before whatever happens at this instant."""
        if not self.running or self.cut:
            return
        now = self.sim.env.now
        if self.ends is None:
            j = max(1, math.floor((now - self.start) / self.dt) + 1) if self.dt > 0 else 1
            while j > 1 and self._end(j - 1) > now:
                j -= 1
            while self._end(j) <= now:
                j += 1
        else:
            j = bisect_right(self.ends, now) + 1
        if j < self.m:
            self.cut = j
            self.proc.interrupt()

    def _admit(self):
        dec = self.decoder
        if self.pending:
            self.active += self.pending
            self.pending = []
        backlog = dec.backlog
        while backlog and len(self.active) < dec.max_batch:
            s = backlog[0]
            if self.active and self.kv + s.kv > dec.kv_budget:
                s.kv_wait = True
                break
            backlog.popleft()
            self.active.append(s)
            self.kv += s.kv

    def run(self):
        sim, dec = self.sim, self.decoder
        env, pool, tp = sim.env, sim.pools[dec.pool], dec.tp
        while True:
            if not self.active and not self.pending and not dec.backlog:
                self.wake = env.event()
                yield self.wake
                self.wake = None
            self._admit()
            if not self.active:
                continue
            ev, ids = pool.ask(tp, None)
            if ev is not None:
                ids = yield ev
            start = env.now
            active = self.active
            n = len(active)
            counts: dict = {}
            for s in active:
                counts[s.op.id] = counts.get(s.op.id, 0) + 1
                if s.started is None:
                    s.started = start
                    if s.req.measured:
                        pool.stats.waits.append(start - s.joined)
                        if s.kv_wait:
                            dec.kv_blocked.append(start - s.joined)
            # calls of one model share the batch; each sequence's op prices the step at
            # this batch size for its own context, and the step takes their mean
            if len(counts) == 1:
                step = active[0].op.decode.step(n)
            else:
                ops = sim.plan_ops
                step = sum(c * ops[op_id].decode.step(n) for op_id, c in counts.items()) / n
            m = min(s.left for s in active)
            self.start, self.m, self.cut = start, m, 0
            if self.factors is None:
                self.dt, self.ends = step, None
            else:
                self.ends = start + np.cumsum(step * self.factors.take(m))
            self.running = True
            pool.engines.append(self)
            if pool.waiters or self.pending or (dec.backlog and n < dec.max_batch
                                                and self.kv + dec.backlog[0].kv <= dec.kv_budget):
                self.cut = 1 if m > 1 else 0
            try:
                yield env.timeout(self._end(self.cut or m) - start)
            except simpy.Interrupt:
                rest = self._end(self.cut) - env.now
                if rest > 0:
                    yield env.timeout(rest)
            j = self.cut or m
            self.running = False
            pool.engines.remove(self)
            if self.factors is not None:
                self.factors.pos += j
            first_step = self._end(1)
            pool.release(tp, ids, start)
            now = env.now
            for op_id in counts:
                c = sim.decode_batches[op_id]
                c[n] = c.get(n, 0) + j
            if ids is not None and any(s.req.traced for s in active):
                sim.trace.append(("step", dec.pool, tuple(ids), f"{dec.name} x{n}" + (f" ({j} steps)" if j > 1 else ""),
                                  start, now, None))
            keep = []
            for s in active:
                if s.first is None:
                    s.first = first_step
                s.left -= j
                if s.left <= 0:
                    s.last = now
                    self.kv -= s.kv
                    s.done.succeed()
                else:
                    keep.append(s)
            self.active = keep


class _Decoder:
    """The decode engines of one model on one pool at one tp: every decode op of that
    model placed there joins the same batches, as one serving instance would run them."""

    def __init__(self, sim, name: str, ops: list[Op], devices: int, factors):
        self.name = name
        self.pool, self.tp, self.kind = ops[0].pool, ops[0].tp, ops[0].kind
        self.max_batch = min(op.decode.max_batch for op in ops)
        budgets = [op.decode.kv_budget_bytes for op in ops if op.decode.kv_budget_bytes]
        self.kv_budget = min(budgets) if budgets else INF
        self.backlog: deque = deque()
        self.kv_blocked: list[float] = []   # waits of measured sequences held back by KV memory
        self.engines = [_Engine(sim, self, i, factors(i)) for i in range(max(1, devices // self.tp))]

    def join(self, seq: _Seq):
        best, best_load = None, -1
        cap = self.max_batch
        if not self.backlog:
            for e in self.engines:
                load = len(e.active) + len(e.pending)
                if load < cap and load > best_load:
                    if load and e.kv + seq.kv > self.kv_budget:
                        seq.kv_wait = True
                        continue
                    best, best_load = e, load
        if best is None:
            self.backlog.append(seq)
            for e in self.engines:   # an idle engine takes it from the backlog
                if e.wake is not None:
                    e.kick()
                    break
        else:
            best.pending.append(seq)
            best.kv += seq.kv
            best.kick()


class _Prefiller:
    """The prefill engines of one model on one pool at one tp: prompts queue in FIFO
    order; an engine holding its devices runs the queued prompts whose tokens fit the
    budget (at least one) as one batch. The engines are driven by their events'
    callbacks rather than processes, so a prompt that finds an engine idle and its
    devices free costs one event, as an op does."""

    def __init__(self, sim, name: str, ops: list[Op], devices: int, budget: int, factors):
        self.sim, self.name, self.budget = sim, name, budget
        self.pool, self.tp, self.kind = ops[0].pool, ops[0].tp, ops[0].kind
        self.queue: deque = deque()     # [op, tokens, event or None, t_ask, req]
        self.idle = list(range(max(1, devices // self.tp)))  # a heap: the lowest index first
        self.factors = factors

    def submit(self, op: Op, tokens: float, req):
        """The event the prompt's request waits on; its value is (start, end, ids, factor)."""
        item = [op, tokens, None, self.sim.env.now, req]
        self.queue.append(item)
        if self.idle:
            self._start(heapq.heappop(self.idle))
        if item[2] is None:
            item[2] = self.sim.env.event()
        return item[2]

    def _start(self, engine: int):
        ev, ids = self.sim.pools[self.pool].ask(self.tp, None)
        if ev is None:
            self._run(engine, ids)
        else:
            ev.callbacks.append(lambda e: self._run(engine, e._value))

    def _run(self, engine: int, ids):
        env, pool = self.sim.env, self.sim.pools[self.pool]
        start = env.now
        batch, total, q = [], 0.0, self.queue
        while q and (not batch or total + q[0][1] <= self.budget):
            item = q.popleft()
            batch.append(item)
            total += item[1]
        if not batch:
            pool.release(self.tp, ids, start)
            heapq.heappush(self.idle, engine)
            return
        # each prompt's op prices the batch at its total tokens; weighted by tokens
        if len(batch) == 1:
            t = batch[0][0].prefill.at(total)
        else:
            t = sum(item[1] * item[0].prefill.at(total) for item in batch) / total
        f = 1.0
        if self.factors is not None:
            f = float(self.factors.take(1)[0])
            self.factors.pos += 1
        timer = env.timeout(t * f, (start, start + t * f, ids, f))
        timer.callbacks.append(lambda _e: self._finish(engine, batch, ids, start, timer))
        for item in batch:
            if item[2] is None:   # the prompt submitting now waits on the timer itself
                item[2] = timer

    def _finish(self, engine: int, batch: list, ids, start: float, timer):
        sim = self.sim
        pool = sim.pools[self.pool]
        pool.release(self.tp, ids, start)
        k = len(batch)
        for op_id in {item[0].id for item in batch}:
            c = sim.prefill_batches[op_id]
            c[k] = c.get(k, 0) + 1
        for _op, _tokens, ev, t_ask, req in batch:
            if req.measured:
                pool.stats.waits.append(start - t_ask)
            if ev is not timer:
                ev.succeed(timer._value)
        if ids is not None and any(item[4].traced for item in batch):
            sim.trace.append(("step", self.pool, tuple(ids), f"{self.name} prefill x{k}", start, sim.env.now, None))
        if self.queue:
            self._start(engine)
        else:
            heapq.heappush(self.idle, engine)


class _OpRun:
    """What executing an op needs, looked up once per plan rather than per execution."""

    __slots__ = ("op", "pool", "tp", "busy", "total", "cv", "scale", "decoder", "prefiller", "inputs", "outs",
                 "waits", "count")

    def __init__(self, sim, op: Op, plan: Plan):
        self.op, self.pool, self.tp = op, sim.pools[op.pool], op.tp
        self.waits, self.count = self.pool.stats.waits, 0
        self.busy, self.total = op.busy_ms, op.latency_ms
        self.cv = sim.cv.get(op.kind, 0.0)
        self.scale = 1 if op.kind in IN_KINDS else 2 if op.kind in OUT_KINDS else 0
        self.decoder = sim.decoders.get(op.id)
        self.prefiller = sim.prefillers.get(op.id)
        self.inputs = tuple(f"{s}>{op.id}" for s in op.inputs)
        self.outs = tuple((f"{e.src}>{e.dst}", e, sim.links[e.link] if e.link is not None and e.wire_ms > 0 else None)
                          for e in plan.out_edges.get(op.id, ()))


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
        self.rng_service = np.random.default_rng(r_service)
        self._engine_seeds = r_engines
        self.cv_table = dict(config.cv)
        self.cv: dict[str, float] = {}
        self.pools: dict[str, _Pool] = {}
        self.links: dict[str, _Link] = {}
        self.decode_batches: dict[str, dict] = {}
        self.prefill_batches: dict[str, dict] = {}
        self.decoders: dict[str, _Decoder] = {}
        self.prefillers: dict[str, _Prefiller] = {}
        self.loop_trips: dict[str, list[int]] = {}
        self.arm_counts: dict[str, list[int]] = {}
        self.op_counts: dict[str, int] = {}
        self.trace: list = []
        self.done: list[RequestStats] = []
        warm = min(config.warmup, max(0, len(arrivals) - 1))
        # the measured window: from the first measured arrival to the last arrival
        self.window = (arrivals[warm].t_ms, arrivals[-1].t_ms) if arrivals else (0.0, 0.0)
        self.runs: dict[int, dict[str, _OpRun]] = {}
        self.all_runs: list[_OpRun] = []
        self.chains: dict[int, dict[str, tuple]] = {}
        self.plan_ops: dict[str, Op] = {}
        self._use(plan)

    # -------------------------------------------------------------------- plans
    def _kind_cv(self, kind: str) -> float:
        return self.cv_table.get(kind, self.cv_table.get("*", 0.0))

    def _factors(self, kind: str):
        cv = self._kind_cv(kind)
        if cv <= 0:
            return lambda _i: None
        return lambda _i: _Factors(np.random.default_rng(self._engine_seeds.spawn(1)[0]), cv)

    def _use(self, plan: Plan) -> None:
        """Make `plan` the one new requests walk: its pools (grown to its device counts),
        links, batch engines and per-op lookups."""
        config, tracing = self.config, self.config.trace_requests > 0
        self.plan = plan
        self.plan_ops.update(plan.ops)
        for name, n in plan.pools.items():
            if name not in self.pools:
                self.pools[name] = _Pool(self.env, name, n, tracing, self.window, config.timeline)
            elif n > self.pools[name].stats.devices:
                pool = self.pools[name]
                extra = n - pool.stats.devices
                pool.stats.devices = n
                if pool.free_ids is not None:
                    for i in range(n - extra, n):
                        heapq.heappush(pool.free_ids, i)
                pool.free += extra
                pool._serve()
        for op in plan.ops.values():
            self.cv.setdefault(op.kind, self._kind_cv(op.kind))
            self.op_counts.setdefault(op.id, 0)
            if op.decode is not None:
                self.decode_batches.setdefault(op.id, {})
            if op.prefill is not None:
                self.prefill_batches.setdefault(op.id, {})
        for e in (e for es in plan.out_edges.values() for e in es if e.link):
            self.links.setdefault(e.link, _Link(self.env, self.window))
        for rid, r in plan.regions.items():
            if r.kind == "loop":
                self.loop_trips.setdefault(rid, [0] * (r.max_trips + 1))
            elif r.kind == "branch":
                self.arm_counts.setdefault(rid, [0, 0])
        if config.batching == "continuous":
            groups: dict[tuple, list[Op]] = {}
            pre: dict[tuple, list[Op]] = {}
            for op in plan.ops.values():
                if op.decode is not None:
                    groups.setdefault((op.model or op.id, op.pool, op.tp, op.kind), []).append(op)
                elif op.prefill is not None and config.prefill_budget > 0:
                    pre.setdefault((op.model or op.id, op.pool, op.tp, op.kind), []).append(op)
            for (name, pool, tp, _kind), ops in sorted(groups.items()):
                decoder = _Decoder(self, f"{name}@{pool}" + (f"/tp{tp}" if tp > 1 else ""), ops,
                                   plan.pools[pool], self._factors(ops[0].kind))
                for op in ops:
                    self.decoders[op.id] = decoder
            for (name, pool, tp, kind), ops in sorted(pre.items()):
                prefiller = _Prefiller(self, f"{name}@{pool}" + (f"/tp{tp}" if tp > 1 else ""), ops,
                                       plan.pools[pool], config.prefill_budget, self._factors(kind)(0))
                for op in ops:
                    self.prefillers[op.id] = prefiller
        runs = {op.id: _OpRun(self, op, plan) for op in plan.ops.values()}
        self.runs[id(plan)] = runs
        self.all_runs += runs.values()
        # a chain region's items, each an _OpRun or a child region's id
        self.chains[id(plan)] = {rid: tuple(runs.get(item, item) for item in r.items)
                                 for rid, r in plan.regions.items() if r.chain}
        prefills = sorted((op.start_ms, op.id) for op in plan.ops.values() if op.kind in PREFILL_KINDS and op.tokens)
        decodes = sorted((op.start_ms, op.id) for op in plan.ops.values() if op.decode is not None)
        self.ref_in = plan.ops[prefills[0][1]].tokens if prefills else None
        self.ref_out = plan.ops[decodes[0][1]].decode.tokens if decodes else None
        self.tbt_ops = plan.ttft_ops or frozenset(op_id for _t, op_id in decodes)

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

        def source():
            last = 0.0
            trace_end = warm + self.config.trace_requests
            for i, a in enumerate(self.arrivals):
                if a.t_ms > last:
                    yield env.timeout(a.t_ms - last)
                    last = a.t_ms
                req = _Req(i, a.t_ms, i >= warm, warm <= i < trace_end, self.plan)
                if a.input_tokens is not None and self.ref_in:
                    req.s_in = a.input_tokens / self.ref_in
                if a.output_tokens is not None and self.ref_out:
                    req.s_out = a.output_tokens / self.ref_out
                env.process(self._request(req))

        def lose(loss: Loss):
            yield env.timeout(loss.t_ms)
            self.pools[loss.pool].lose(loss.devices)

        def control():
            ctl = self.controller
            while env.now + ctl.every_ms <= t1:
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
        measured = [r for r in done if r.id >= warm]
        return Result(self.plan, self.config, measured, (t0, t1),
                      {n: p.stats for n, p in sorted(self.pools.items())}, links, self.loop_trips, self.arm_counts,
                      self.op_counts, {k: [v.get(b, 0) for b in range(1, max(v, default=0) + 1)]
                                       for k, v in sorted(self.decode_batches.items())},
                      self.trace, env.now,
                      {k: dict(sorted(v.items())) for k, v in sorted(self.prefill_batches.items())},
                      kv, max(0, len(self.arrivals) - warm - len(measured)))

    def _request(self, req: _Req):
        yield from self._block(req, req.plan.regions[""])
        stats = RequestStats(req.id, req.arrival_ms, self.env.now)
        if req.first_token is not None:
            stats.ttft_ms = req.first_token - req.arrival_ms
        stats.tbt_ms = req.tbt
        self.done.append(stats)

    def _block(self, req: _Req, region: Region):
        """A region: a chain runs in this process; otherwise each item is a process
        that starts when the items it reads from are done (`parallel` joins on all)."""
        chain = self.chains[id(req.plan)].get(region.id)
        if chain is not None:
            yield from self._walk(req, chain)
            return
        runs = self.runs[id(req.plan)]
        events = {}
        for item in region.items:
            deps = [events[d] for d in region.deps.get(item, ())]
            events[item] = self.env.process(self._after(req, runs.get(item, item), deps))
        yield self.env.all_of(list(events.values()))

    def _after(self, req, item, deps):
        if deps:
            yield self.env.all_of(deps)
        yield from self._walk(req, (item,))

    def _walk(self, req: _Req, items: tuple):
        """Run `items` (op runs and region ids) in order, entering chain regions in
        place: one generator per request rather than one per op, since each op costs
        a resume of every generator above it."""
        env, plan = self.env, req.plan
        chains = self.chains[id(plan)]
        arrive = req.arrive
        stack = [iter(items)]
        while stack:
            r = next(stack[-1], None)
            if r is None:
                stack.pop()
                continue
            if r.__class__ is not _OpRun:
                region = plan.regions[r]
                if region.kind == "loop":
                    trips = self._trips(region)
                    self.loop_trips[r][trips] += 1
                    body = chains.get(r)
                    if body is not None:
                        stack.append(iter(body * trips))
                    else:
                        for _ in range(trips):
                            yield from self._block(req, region)
                    continue
                if region.kind == "branch":
                    arms = sorted(region.items, key=lambda a: plan.regions[a].index)
                    arm = 0 if self.rng_flow.random() < plan.regions[arms[0]].prob else 1
                    self.arm_counts[r][arm] += 1
                    region = plan.regions[arms[arm]]
                body = chains.get(region.id)
                if body is not None:
                    stack.append(iter(body))
                else:
                    yield from self._block(req, region)
                continue
            for key in r.inputs:
                x = arrive.pop(key, None)
                if x is not None:
                    while True:
                        timer = x.timer
                        yield timer
                        if x.timer is timer:
                            break
            r.count += 1
            if r.decoder is not None or r.prefiller is not None or r.op.decode is not None:
                yield from self._batched(req, r)
            else:
                f = (self.factor(r.op.kind) if r.cv > 0 else 1.0) * \
                    (req.s_in if r.scale == 1 else req.s_out if r.scale == 2 else 1.0)
                pool = r.pool
                t_ask = env.now
                busy = r.busy * f
                ev, ids = pool.ask(r.tp, busy)
                if ev is not None:
                    ids = yield ev
                start = env.now
                if req.measured:
                    r.waits.append(start - t_ask)
                end = start + r.total * f
                if end > start:
                    yield env.timeout(end - start)
                if req.traced:
                    op = r.op
                    self.trace.append(("op", op.pool, tuple(ids) if ids else None, op.id, start, start + busy, req.id))
                    if end > start + busy:
                        self.trace.append(("wait", op.pool, None, op.id, start + busy, env.now, req.id))
            if r.outs:
                self._send(req, r)

    def _batched(self, req: _Req, r: _OpRun):
        """A decode or prefill op: through its batch engine, or (planned batching) as
        an op whose tokens come evenly over its planned time."""
        env, op = self.env, r.op
        scale = req.s_in if r.scale == 1 else req.s_out if r.scale == 2 else 1.0
        if r.decoder is not None:
            tokens = max(1, round(op.decode.tokens * req.s_out))
            kv = op.decode.kv_bytes_per_token * (op.decode.context * req.s_in + tokens)
            seq = _Seq(req, op, tokens, env.event(), env.now, kv)
            r.decoder.join(seq)
            yield seq.done
            self._tokens(req, op, seq.first, seq.last, tokens)
            if req.traced:
                self.trace.append(("decode", op.pool, None, op.id, seq.joined, env.now, req.id))
        elif r.prefiller is not None:
            start, busy_end, ids, f = yield r.prefiller.submit(op, op.tokens * scale, req)
            rest = (r.total - r.busy) * f * scale
            if rest > 0:
                yield env.timeout(rest)
            if req.traced:
                self.trace.append(("op", op.pool, tuple(ids) if ids else None, op.id, start, busy_end, req.id))
        else:
            f = (self.factor(op.kind) if r.cv > 0 else 1.0) * scale
            t_ask = env.now
            busy = r.busy * f
            ev, ids = r.pool.ask(r.tp, busy)
            if ev is not None:
                ids = yield ev
            start = env.now
            if req.measured:
                r.waits.append(start - t_ask)
            yield env.timeout(r.total * f)
            tokens = max(1, round(op.decode.tokens * req.s_out))
            step = (env.now - start) / tokens
            self._tokens(req, op, start + step, env.now, tokens)
            if req.traced:
                self.trace.append(("op", op.pool, tuple(ids) if ids else None, op.id, start, start + busy, req.id))
                if r.total > r.busy:
                    self.trace.append(("wait", op.pool, None, op.id, start + busy, env.now, req.id))

    def _send(self, req: _Req, r: _OpRun):
        env, arrive = self.env, req.arrive
        for key, e, link in r.outs:
            # a KV cache grows with the prompt; other payloads are taken as planned
            if link is not None:
                x = link.send(e.wire_ms * (req.s_in if r.scale == 1 else 1.0), e.latency_ms)
            elif e.latency_ms > 0:
                x = _Transfer(env, env.now + e.latency_ms)
            else:
                continue
            arrive[key] = x
            if req.traced:
                x.trace = ["transfer", e.link or "profiled", None, f"{e.src} -> {e.dst}", env.now, x.at, req.id]
                self.trace.append(x.trace)

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
