"""Batch engines: iteration-level continuous batching for decode (multi-step runs cut
at step boundaries when a sequence joins or another op waits for the pool, admission
limited by KV memory) and prefill batched up to a token budget. model.py says what
they model; these classes are how."""

from __future__ import annotations

import heapq
from heapq import heapify, heappop, heappush
import math
import operator
from bisect import bisect_right
from math import floor
from collections import deque

import numpy as np

from agentc.sim.plan import Op
from agentc.sim.resources import At

INF = math.inf


class Seq:
    """A sequence in a decode engine: it has all its tokens when the engine's step count
    reaches `end`; `adm` orders it among the engine's sequences (admission order). It
    is also the SimPy event its request waits on, triggered when it leaves (an event
    carries `callbacks`, `_ok` and `_value`, resources.At): one object, not two."""

    __slots__ = ("req", "op", "tokens", "end", "adm", "first", "last", "joined", "started", "kv",
                 "kv_wait", "callbacks", "_value")
    _ok = True

    def __init__(self, req, op, tokens, joined, kv):
        self.req = req
        self.op = op
        self.tokens = tokens
        self.joined = joined
        self.kv = kv
        self.callbacks = []
        self._value = None
        self.end = self.adm = 0
        self.first = self.last = self.started = None
        self.kv_wait = False


class Factors:
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


class DecodeEngine:
    """One continuous-batching decode engine: a tp group of the pool serving one model.
    It is driven by its events' callbacks rather than a process, so that cutting a
    run short moves its timer (its entry in the event heap) instead of interrupting a
    process, which costs an interrupt event and a second resume. A run's work is in
    the sequences that change (join, start, leave), not in every active one: each
    sequence ends at a step count (a heap), and the engine counts the calls in its batch.

    A run holds the devices from its start to the next sequence leaving, in segments
    of one batch size: a sequence joining mid-run ends the segment at the next step
    boundary and starts the next one there with itself admitted, at once (no event at
    the boundary, where a step-by-step engine would only have changed its batch). The
    next segment is thus known before its start; an op asking for the pool before
    then stops the run at that boundary instead (zero steps into it), as the step-by-
    step engine would have given way there."""

    fuse = True

    def __init__(self, sim, decoder, index, factors):
        self.sim, self.decoder, self.index, self.factors = sim, decoder, index, factors
        self.env = sim.env
        self.pool = sim.pools[decoder.pool]
        self.active: dict[Seq, None] = {}   # in admission order
        self.ends: list = []     # heap of (end step, admission, Seq) of the active ones
        self.fresh: list[Seq] = []   # admitted, not yet in a segment
        self.run_fresh: list[Seq] = []   # in their first segment (the current one)
        self.calls: dict[str, int] = {}   # op id -> active sequences of that call
        self.steps = 0           # steps run so far (to the current segment's start)
        self.admitted = 0
        self.pending: list[Seq] = []
        self.kv = 0.0            # KV bytes of active and pending sequences
        self.wake = None
        self.held = 0.0          # when the current run took the devices
        self.start = 0.0         # the current segment: start, steps, step time or step ends
        self.m = 0
        self.dt = 0.0
        self.step_ends = None
        self.stop = 0            # steps the current segment stops after (m, or fewer when cut)
        self.cut = False         # stopped early: to give way (the pool) or let sequences join
        self.cont = False        # the segment continues the run at a boundary set by a join
        self.running = False
        self.timer = None        # the current segment's end, while pending
        self.entry = None        # its entry in SimPy's heap
        self.run_ids = None      # the devices and batch size of the current segment
        self.run_n = 0
        self.on_done = self._done   # the timer's callback (one bound method for every timer)
        # the common cases' fused paths (take's, _leave, _done's close) for an engine
        # without factors; `fuse` off runs the general methods they inline (the tests)
        # (and without ids to hand out or intervals to keep on its pool: both fixed for a run)
        self.plain = factors is None and self.fuse and self.pool.free_ids is None and not self.pool.keep
        sim.env.process(self._begin())   # starts when a Process would (its Initialize event)

    def _begin(self):
        self._loop()
        return
        yield

    def kick(self):
        if self.wake is not None and not self.wake.triggered:
            self.wake.succeed()

    def _end(self, j: int) -> float:
        if j == 0:
            return self.start
        return self.start + j * self.dt if self.step_ends is None else float(self.step_ends[j - 1])

    def _boundary(self, now: float) -> int:
        """The first step boundary after `now` in the current segment (a step ending
        exactly now counts as ended: a step-by-step engine's step end was scheduled
        when the step began, so SimPy ran it before whatever happens at this instant)."""
        if self.step_ends is None:   # step j ends at start + j * dt (_end)
            start, dt = self.start, self.dt
            j = floor((now - start) / dt) + 1 if dt > 0 else 1
            if j < 1:
                j = 1
            while j > 1 and start + (j - 1) * dt > now:
                j -= 1
            while start + j * dt <= now:
                j += 1
            return j
        return bisect_right(self.step_ends, now) + 1

    def _retime(self, j: int):
        """End the current segment after `j` steps: its timer moves there."""
        self.stop = j
        now = self.env._now
        self._move(now + (self._end(j) - now))

    def _move(self, t: float):
        """The pending timer moves to `t`: its entry in SimPy's heap is replaced by one
        at `t` with a new event number, as a timer set now would have, and the heap is
        restored (it holds a few dozen events). The old entry would have fired with no
        one listening: an event fewer, and one fewer that the walks' running ahead
        (model.py) must stop at."""
        env = self.env
        q = env._queue
        entry = (t, 1, next(env._eid), self.timer)
        i = q.index(self.entry)   # (the entry itself: list.index compares identity first)
        q[i] = entry
        self.entry = entry
        heapify(q)

    def yield_soon(self, now: float | None = None):
        """Stop the current run at the first step boundary after `now` (the clock, or a
        walk's time ahead of it), for an op waiting for the pool or sequences waiting to
        join: at the current segment's start when it continues the run there and has
        not begun."""
        if not self.running:
            return
        if now is None:
            now = self.env._now
        if self.cont and now <= self.start:
            if self.stop:
                self.cut = True
                self._retime(0)
            return
        if self.cut:
            return
        j = self._boundary(now)
        if j < self.m:
            self.cut = True
            self._retime(j)

    def take(self, s: Seq, now: float):
        """A sequence joining this running engine at `now` (the clock, or a walk's time
        ahead of it before which the run goes on unchanged): it starts the next segment
        at the next step boundary, or joins the next run when the run stops first."""
        if not (self.cut or self.pending or self.decoder.backlog):
            if self.cont and now <= self.start:   # the next segment has not begun: it joins it
                self._add(s)
                self.run_fresh += self.fresh
                self.fresh = []
                self._segment(self.start)
                return
            start = self.start
            if self.step_ends is None:   # _boundary, inline
                dt = self.dt
                j = floor((now - start) / dt) + 1 if dt > 0 else 1
                if j < 1:
                    j = 1
                while j > 1 and start + (j - 1) * dt > now:
                    j -= 1
                while start + j * dt <= now:
                    j += 1
            else:
                j = bisect_right(self.step_ends, now) + 1
            if j < self.m:
                if self.plain:
                    # the common case, its calls inline (an engine without factors or
                    # ids: `_close(j)`, `_add(s)` and `_segment` at step `j`'s end), the
                    # same operations in the same order, on the path every join takes
                    dec, n, start, dt = self.decoder, self.run_n, self.start, self.dt
                    # _close(j)
                    calls = self.calls
                    batches = dec.batches
                    for op_id in calls:
                        batches[op_id][n] += j
                    fresh = self.run_fresh
                    if fresh:
                        first_step = start + dt
                        waits = self.pool.stats.waits
                        for f in fresh:
                            f.started, f.first = start, first_step
                            if f.req.measured:
                                waits.append(start - f.joined)
                                if f.kv_wait:
                                    dec.kv_blocked.append(start - f.joined)
                    steps = self.steps = self.steps + j
                    # _add(s)
                    s.adm = adm = self.admitted
                    self.admitted = adm + 1
                    s.end = end = steps + s.tokens
                    active = self.active
                    active[s] = None
                    ends = self.ends
                    heappush(ends, (end, adm, s))
                    op_id = s.op.id
                    calls[op_id] = calls.get(op_id, 0) + 1
                    fresh = self.run_fresh = self.fresh
                    fresh.append(s)
                    self.fresh = []
                    # _segment(start + j * dt)
                    start = start + j * dt
                    n = len(active)
                    if len(calls) == 1:
                        step = dec.own[op_id][n]
                    elif len(calls) == 2:
                        (a, ca), (b, cb) = calls.items()
                        latest = dec.latest
                        step = (ca * latest[a][n] + cb * latest[b][n]) / n
                    else:
                        self._segment(start)
                        return
                    m = ends[0][0] - steps
                    self.start = start
                    self.m = m
                    self.run_n = n
                    self.cont = True
                    self.dt = step
                    if m > 1 and self.pool.waiters:   # (none pending, no backlog: take's condition)
                        self.cut = True
                        j = self.stop = 1
                    else:
                        self.cut = False
                        j = self.stop = m
                    env = self.env
                    now = env._now
                    end = start + j * step
                    # _move(now + (end - now))
                    q = env._queue
                    entry = (now + (end - now), 1, next(env._eid), self.timer)
                    q[q.index(self.entry)] = entry
                    self.entry = entry
                    heapify(q)
                    return
                self._close(j)
                # _add, inline
                s.adm = adm = self.admitted
                self.admitted = adm + 1
                s.end = end = self.steps + s.tokens
                self.active[s] = None
                heappush(self.ends, (end, adm, s))
                calls, op_id = self.calls, s.op.id
                calls[op_id] = calls.get(op_id, 0) + 1
                self.run_fresh = self.fresh
                self.run_fresh.append(s)
                self.fresh = []
                # _end(j), inline (j >= 1)
                self._segment(self.start + j * self.dt if self.step_ends is None else float(self.step_ends[j - 1]))
                return
        self.pending.append(s)
        self.yield_soon(now)

    def _add(self, s: Seq):
        s.adm = self.admitted
        self.admitted += 1
        s.end = self.steps + s.tokens
        self.active[s] = None
        heapq.heappush(self.ends, (s.end, s.adm, s))
        self.fresh.append(s)
        calls, op_id = self.calls, s.op.id
        calls[op_id] = calls.get(op_id, 0) + 1

    def _admit(self):
        dec = self.decoder
        if self.pending:
            for s in self.pending:
                self._add(s)
            self.pending = []
        backlog = dec.backlog
        active = self.active
        while backlog and len(active) < dec.max_batch:
            s = backlog[0]
            if active and self.kv + s.kv > dec.kv_budget:
                s.kv_wait = True
                break
            backlog.popleft()
            self._add(s)
            dec.loads[self.index] += 1
            self.kv += s.kv
            dec.kv_total += s.kv

    def _loop(self, _event=None):
        """Admit sequences and ask for the devices; idle (until kicked) with none."""
        self.wake = None
        dec = self.decoder
        while True:
            if not self.active and not self.pending and not dec.backlog:
                self.wake = self.env.event()
                self.wake.callbacks.append(self._loop)
                return
            self._admit()
            if self.active:
                break
        ev, ids = self.pool.ask(dec.tp, None)
        if ev is None:
            self._run(ids)
        else:
            ev.callbacks.append(self._granted)

    def _next(self, now: float):
        """After a run, the next: at once on the devices it holds when nothing else could
        take them (no one waits, none retire, no ids to hand out), as giving them back
        and asking again would (`release` then `ask` return them straight away); else
        give them back and start over (_loop)."""
        pool, dec = self.pool, self.decoder
        if pool.waiters or pool.retire or pool.free_ids is not None or not (
                self.active or self.pending or dec.backlog):
            pool.engines.remove(self)
            pool.release(dec.tp, self.run_ids, self.held)
            self._loop()
            return
        held = self.held   # pool.held(dec.tp, held, now), inline
        a = held if held > pool.t0 else pool.t0
        b = now if now < pool.t1 else pool.t1
        if b > a:
            pool.busy_area += dec.tp * (b - a)
        if pool.keep:
            pool.busy_iv.append((held, now, dec.tp))
        if self.pending or dec.backlog:   # (else none to admit)
            self._admit()
        engines = pool.engines
        if engines[-1] is not self:   # where a new run's ask puts it
            engines.remove(self)
            engines.append(self)
        self.held, self.running = now, True
        self.run_fresh, self.fresh = self.fresh, []
        self.cont = False
        self._segment(now)
        self.cont = False

    def _granted(self, event):
        self._run(event._value)

    def _run(self, ids):
        """A run on the held devices up to the next sequence leaving."""
        start = self.env._now
        self.held, self.run_ids, self.running = start, ids, True
        self.run_fresh, self.fresh = self.fresh, []
        self.pool.engines.append(self)
        self.timer = None
        self.cont = False
        self._segment(start)
        self.cont = False

    def _segment(self, start: float):
        """The current batch's segment from `start` to the next sequence leaving (or one
        step when someone waits to join or for the pool): its step time and timer."""
        dec, pool = self.decoder, self.pool
        n = len(self.active)
        # calls of one model share the batch; each sequence's op prices the step at
        # this batch size for its own context, and the step takes their mean
        calls = self.calls
        if len(calls) == 1:
            step = dec.own[next(iter(calls))][n]
        elif len(calls) == 2:   # (a sum of two in either order)
            (a, ca), (b, cb) = calls.items()
            latest = dec.latest
            step = (ca * latest[a][n] + cb * latest[b][n]) / n
        else:   # the sum in the order the calls first come in the batch
            calls = {}
            for s in self.active:
                calls[s.op.id] = calls.get(s.op.id, 0) + 1
            latest = dec.latest
            step = sum(c * latest[op_id][n] for op_id, c in calls.items()) / n
        m = self.ends[0][0] - self.steps
        self.start = start
        self.m = m
        self.run_n = n
        self.cont = True
        if self.factors is None:
            self.dt = step
            self.step_ends = None
        else:
            self.step_ends = start + np.cumsum(step * self.factors.take(m))
        if m > 1 and (pool.waiters or self.pending or (
                dec.backlog and n < dec.max_batch and self.kv + dec.backlog[0].kv <= dec.kv_budget)):
            self.cut = True
            j = self.stop = 1
        else:
            self.cut = False
            j = self.stop = m
        env = self.env
        now = env._now
        end = start + j * step if self.step_ends is None else float(self.step_ends[j - 1])   # _end(j)
        if self.timer is not None:   # the run's timer, pending: it moves (_move)
            self._move(now + (end - now))
            return
        self.timer = timer = At()   # resources.at, inline
        timer.callbacks, timer._value = [self.on_done], None
        self.entry = entry = (now + (end - now), 1, next(env._eid), timer)
        heappush(env._queue, entry)

    def _close(self, j: int):
        """The current segment's first `j` (>= 1) steps are run: count them."""
        dec, n, start = self.decoder, self.run_n, self.start
        if self.factors is not None:
            self.factors.pos += j
        batches = dec.batches
        for op_id in self.calls:
            batches[op_id][n] += j
        ids = self.run_ids
        if ids is not None and any(s.req.traced for s in self.active):
            self.sim.trace.append(("step", dec.pool, tuple(ids), f"{dec.name} x{n}" + (f" ({j} steps)" if j > 1 else ""),
                                   start, self._end(j), None))
        if self.run_fresh:
            first_step = start + self.dt if self.step_ends is None else float(self.step_ends[0])   # _end(1)
            waits = self.pool.stats.waits
            for s in self.run_fresh:
                s.started, s.first = start, first_step
                if s.req.measured:
                    waits.append(start - s.joined)
                    if s.kv_wait:
                        dec.kv_blocked.append(start - s.joined)
            self.run_fresh = []
        self.steps += j

    def _done(self, _event):
        dec = self.decoder
        j = self.stop
        if j and self.plain:
            # _close(j), inline (no factors, no ids): every segment's end runs this
            n, start, batches = self.run_n, self.start, dec.batches
            for op_id in self.calls:
                batches[op_id][n] += j
            fresh = self.run_fresh
            if fresh:
                first_step = start + self.dt
                waits = self.pool.stats.waits
                for s in fresh:
                    s.started, s.first = start, first_step
                    if s.req.measured:
                        waits.append(start - s.joined)
                        if s.kv_wait:
                            dec.kv_blocked.append(start - s.joined)
                self.run_fresh = []
            self.steps += j
        elif j:
            self._close(j)
        else:   # stopped before it began: its new sequences start with the next run
            self.fresh = self.run_fresh + self.fresh
            self.run_fresh = []
        self.running = False
        self.timer = None
        now = self.env._now
        steps = self.steps
        ends = self.ends
        if ends[0][0] > steps:
            self._next(now)
            return
        first = heappop(ends)[2]
        if self.plain and not (ends and ends[0][0] <= steps):
            self._leave(first, now)   # one sequence leaves (the common case)
            return
        out = [first]
        while ends and ends[0][0] <= steps:
            out.append(heapq.heappop(ends)[2])
        if len(out) > 1:
            out.sort(key=_admission)
        active, calls = self.active, self.calls
        dec.loads[self.index] -= len(out)
        for s in out:
            s.last = now
            self.kv -= s.kv
            dec.kv_total -= s.kv
            del active[s]
            op_id = s.op.id
            if calls[op_id] == 1:
                del calls[op_id]
            else:
                calls[op_id] -= 1
        due = self.sim.due
        if len(out) > 1 or (due and due[0][0] <= now):
            eid = self.env._eid
            for s in out:   # each triggered now, as Event.succeed schedules it
                heapq.heappush(self.env._queue, (now, 1, next(eid), s))
            self._next(now)
            return
        # One sequence leaves and no event is due now: its event would be the next one
        # processed (what _next schedules comes later), so its request carries on at
        # once instead, after _next, as SimPy's step would run it (an event fewer).
        self._next(now)
        done = out[0]
        callbacks, done.callbacks = done.callbacks, None
        for callback in callbacks:
            callback(done)

    def _leave(self, s: Seq, now: float):
        """`_done`'s common case: one sequence `s` leaves at `now` and the engine (without
        factors) goes on; `_done`'s, `_next`'s and `_segment`'s steps for it inline,
        the same operations in the same order."""
        dec = self.decoder
        active, calls = self.active, self.calls
        dec.loads[self.index] -= 1
        s.last = now
        self.kv -= s.kv
        dec.kv_total -= s.kv
        del active[s]
        op_id = s.op.id
        if calls[op_id] == 1:
            del calls[op_id]
        else:
            calls[op_id] -= 1
        env = self.env
        due = self.sim.due
        direct = not (due and due[0][0] <= now)
        if not direct:   # its event, triggered now (Event.succeed)
            heappush(env._queue, (now, 1, next(env._eid), s))
        pool = self.pool
        if pool.waiters or pool.retire or not active or self.pending or dec.backlog:
            self._next(now)
        else:   # _next's common case: the run goes on, nothing to admit (no ids: plain)
            held = self.held   # pool.held(dec.tp, held, now) (no intervals kept: plain)
            a = held if held > pool.t0 else pool.t0
            b = now if now < pool.t1 else pool.t1
            if b > a:
                pool.busy_area += dec.tp * (b - a)
            engines = pool.engines
            if engines[-1] is not self:
                engines.remove(self)
                engines.append(self)
            self.held, self.running = now, True
            self.run_fresh, self.fresh = self.fresh, []
            # _segment(now) without factors
            n = len(active)
            if len(calls) == 1:
                for op_id in calls:
                    step = dec.own[op_id][n]
            elif len(calls) == 2:
                (a, ca), (b, cb) = calls.items()
                latest = dec.latest
                step = (ca * latest[a][n] + cb * latest[b][n]) / n
            else:
                self._segment(now)
                step = None
            if step is not None:
                m = self.ends[0][0] - self.steps
                self.start = now
                self.m = m
                self.run_n = n
                self.dt = step
                self.step_ends = None
                if m > 1 and pool.waiters:   # (none pending, no backlog)
                    self.cut = True
                    j = self.stop = 1
                else:
                    self.cut = False
                    j = self.stop = m
                self.timer = timer = At()
                timer.callbacks, timer._value = [self.on_done], None
                end = now + j * step
                self.entry = entry = (now + (end - now), 1, next(env._eid), timer)
                heappush(env._queue, entry)
            self.cont = False
        if direct:
            # no event is due now: its event would be the next one processed (what
            # the run schedules comes later), so its request carries on at once
            # instead, as SimPy's step would run it (an event fewer)
            callbacks, s.callbacks = s.callbacks, None
            for callback in callbacks:
                callback(s)


def decode_engines(plan, ops: list[Op]) -> int | None:
    """How many engines serve one model's decode ops at one tp on one pool: under load,
    the replicas the plan gives those ops (the servers `agentc deploy` starts), and one
    more for each `tp` devices the pool has beyond every op's replicas (devices a
    repair or the cluster adds, which any engine may then use); None without a load
    clause, where the plan runs on the pool's whole count (one engine per `tp`
    devices). Capped by the pool's devices // tp in Decoder."""
    if not plan.load_rps:
        return None
    pool, tp = ops[0].pool, ops[0].tp
    held = sum(x.replicas * x.tp for op in plan.ops.values()
               for x in (op.parts and [part for _f, part in op.parts] or [op]) if x.pool == pool)
    return sum(op.replicas for op in ops) + max(0, plan.pools[pool] - held) // tp


def _admission(s: Seq) -> int:
    return s.adm


_kv = operator.attrgetter("kv")


class Decoder:
    """The decode engines of one model on one pool at one tp: every decode op of that
    model placed there joins the same batches, as one serving instance would run them."""

    def __init__(self, sim, name: str, ops: list[Op], devices: int, factors, engines: int | None = None):
        self.name = name
        self.pool, self.tp, self.kind = ops[0].pool, ops[0].tp, ops[0].kind
        self.max_batch = min(op.decode.max_batch for op in ops)
        budgets = [op.decode.kv_budget_bytes for op in ops if op.decode.kv_budget_bytes]
        self.kv_budget = min(budgets) if budgets else INF
        self.kv_total = 0.0   # KV bytes of every engine's sequences (a bound on the fullest's)
        self.backlog: deque = deque()
        self.kv_blocked: list[float] = []   # waits of measured sequences held back by KV memory
        self.env = sim.env
        self.tables: dict[int, tuple] = {}   # id(Decode) -> (it, its step time by batch size)
        # each call's step time by batch size (the latest plan's, see retable), and its
        # batch-size counts (Simulation.decode_batches)
        self.own = {op.id: self.step_table(op.decode) for op in ops}
        self.batches = {op.id: sim.decode_batches[op.id] for op in ops}
        for counts in self.batches.values():   # steps by batch size, 0..max_batch (a list: no lookups)
            counts += [0] * (self.max_batch + 1 - len(counts))
        self.retable(sim.plan_ops)
        k = max(1, devices // self.tp if engines is None else min(engines, devices // self.tp))
        self.loads = [0] * k   # each engine's active and pending sequences, by index
        self.engines = [DecodeEngine(sim, self, i, factors(i)) for i in range(k)]

    def retable(self, plan_ops: dict):
        """A batch of several calls is priced by each call's op in the latest plan
        (`plan_ops`, as the simulation knows them): their step tables."""
        latest = {}
        for op_id, own in self.own.items():
            decode = plan_ops[op_id].decode
            latest[op_id] = self.step_table(decode) if decode is not None else own
        self.latest = latest

    def step_table(self, decode) -> list:
        """`decode.step(n)` by n, tabulated once per Decode (n never passes max_batch)."""
        entry = self.tables.get(id(decode))
        if entry is None:
            entry = self.tables[id(decode)] = (decode, [decode.step(b) for b in range(self.max_batch + 1)])
        return entry[1]

    def join(self, req, op: Op, now: float) -> Seq | None:
        """A new sequence of `op` for `req`, joining at `now`: the fullest engine with
        room takes it at its next step boundary, else the backlog. `now` may run ahead
        of the clock when no event comes before it (model.py), as a running engine's
        run then goes on unchanged till `now`; a sequence that would wake an idle engine
        joins on the clock: None then, and nothing changed."""
        d = op.decode
        tokens = max(1, round(d.tokens * req.s_out))
        kv = d.kv_bytes_per_token * (d.context * req.s_in + tokens)
        best, best_load = None, -1
        cap = self.max_batch
        kv_wait = False
        if not self.backlog:
            # when every engine has room for its KV cache, the first of the fullest (if it has room)
            loads = self.loads
            top = max(loads)
            best = self.engines[loads.index(top)]
            if top >= cap or (self.kv_total + kv > self.kv_budget * (1 - 1e-9)
                                    and max(self.engines, key=_kv).kv + kv > self.kv_budget):
                best = None
        if best is None and not self.backlog:
            for e in self.engines:
                load = self.loads[e.index]
                if load < cap and load > best_load:
                    if load and e.kv + kv > self.kv_budget:
                        kv_wait = True
                        continue
                    best, best_load = e, load
        if now > self.env._now and (best is None or not best.running):
            return None
        seq = Seq(req, op, tokens, now, kv)
        seq.kv_wait = kv_wait
        if best is None:
            self.backlog.append(seq)
            for e in self.engines:   # an idle engine takes it from the backlog
                if e.wake is not None:
                    e.kick()
                    break
        else:
            self.loads[best.index] += 1
            best.kv += seq.kv
            self.kv_total += seq.kv
            if best.running:
                best.take(seq, now)
            else:
                best.pending.append(seq)
                best.kick()
        return seq


class Prefiller:
    """The prefill engines of one model on one pool at one tp: prompts queue in FIFO
    order; an engine holding its devices runs the queued prompts whose tokens fit the
    budget (at least one) as one batch. A prompt that finds no queue, an idle engine
    and its devices free runs alone at once: a batch of known length, so the engine
    is busy until then as a timed hold of the pool is (returned lazily, an alarm set
    only when a prompt queues meanwhile) and the request's walk carries on without an
    event. Other batches are driven by their timers' callbacks rather than processes."""

    def __init__(self, sim, name: str, ops: list[Op], devices: int, budget: int, factors):
        self.sim, self.name, self.budget = sim, name, budget
        self.pool, self.tp, self.kind = ops[0].pool, ops[0].tp, ops[0].kind
        self.devices = sim.pools[self.pool]
        self.queue: deque = deque()     # [op, tokens, event or None, t_ask, req]
        self.idle = list(range(max(1, devices // self.tp)))  # a heap: the lowest index first
        self.busy: list = []            # heap of (until, engine) of lone batches not yet reaped
        self.alarm = INF
        self.factors = factors

    def alone(self, op: Op, tokens: float, req, now: float):
        """A prompt at the walk's `now` (on the clock or ahead of it, model.py) that runs
        alone at once: (start, end, ids, factor) of its batch; else None (it must
        `submit` on the clock)."""
        if self.queue:
            return None
        busy, idle = self.busy, self.idle
        while busy and busy[0][0] <= now:
            heapq.heappush(idle, heapq.heappop(busy)[1])
        if not idle:
            return None
        f = 1.0 if self.factors is None else float(self.factors.take(1)[0])
        t = op.prefill.at(tokens) * f
        ids = self.devices.hold_now(self.tp, t, now)
        if ids is False:
            return None
        if self.factors is not None:
            self.factors.pos += 1
        end = now + t   # as the pool's hold ends
        heapq.heappush(busy, (end, heapq.heappop(idle)))
        sim = self.sim
        c = sim.prefill_batches[op.id]
        c[1] = c.get(1, 0) + 1
        if req.measured:
            self.devices.stats.waits.append(0.0)
        if ids is not None and req.traced:
            sim.trace.append(("step", self.pool, tuple(ids), f"{self.name} prefill x1", now, end, None))
        return now, end, ids, f

    def submit(self, op: Op, tokens: float, req):
        """The event the prompt's request waits on; its value is (start, end, ids, factor)."""
        item = [op, tokens, None, self.sim.env._now, req]
        self.queue.append(item)
        self._reap()
        if self.idle:
            self._start(heapq.heappop(self.idle))
        else:
            self._arm()
        if item[2] is None:
            item[2] = self.sim.env.event()
        return item[2]

    def _reap(self):
        now, busy = self.sim.env._now, self.busy
        while busy and busy[0][0] <= now:
            heapq.heappush(self.idle, heapq.heappop(busy)[1])

    def _arm(self):
        """Wake when the first lone batch ends, while prompts queue and no engine is idle."""
        if self.queue and self.busy and not self.idle and self.busy[0][0] < self.alarm:
            self.alarm = self.busy[0][0]
            self.sim._timeout_at(self.alarm).callbacks.append(self._wake)

    def _wake(self, _event):
        if self.sim.env._now >= self.alarm:
            self.alarm = INF
        self._reap()
        while self.queue and self.idle:
            self._start(heapq.heappop(self.idle))
        self._arm()

    def _start(self, engine: int):
        ev, ids = self.devices.ask(self.tp, None)
        if ev is None:
            self._run(engine, ids)
        else:
            ev.callbacks.append(lambda e: self._run(engine, e._value))

    def _run(self, engine: int, ids):
        sim, pool = self.sim, self.devices
        start = sim.env._now
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
        timer = sim._timeout_at(start + t * f, (start, start + t * f, ids, f))
        timer.callbacks.append(lambda _e: self._finish(engine, batch, ids, start, timer))
        for item in batch:
            if item[2] is None:   # the prompt submitting now waits on the timer itself
                item[2] = timer

    def _finish(self, engine: int, batch: list, ids, start: float, timer):
        sim = self.sim
        pool = self.devices
        pool.release(self.tp, ids, start)
        k = len(batch)
        for op_id in {item[0].id for item in batch} if k > 1 else (batch[0][0].id,):
            c = sim.prefill_batches[op_id]
            c[k] = c.get(k, 0) + 1
        for _op, _tokens, ev, t_ask, req in batch:
            if req.measured:
                pool.stats.waits.append(start - t_ask)
            if ev is not timer:
                ev.succeed(timer._value)
        if ids is not None and any(item[4].traced for item in batch):
            sim.trace.append(("step", self.pool, tuple(ids), f"{self.name} prefill x{k}", start, sim.env._now, None))
        if self.queue:
            self._start(engine)
        else:
            heapq.heappush(self.idle, engine)
