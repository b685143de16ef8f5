"""The simulator's shared resources: a pool's devices (strict FIFO, holds of known
length returned lazily, statistics accumulated within the measured window) and a link
shared by processor sharing, whose transfers' landings are projected at each send.
The request walk may act a little ahead of the clock (model.py says when), so the
calls it makes take the time they act at."""

from __future__ import annotations

import heapq
from heapq import heappop, heappush, heapreplace
import math
import operator
from collections import deque
from dataclasses import dataclass, field

INF = math.inf


class At:
    """A SimPy event due at an exact time (`at`). SimPy's `step` and its processes read
    only an event's `callbacks`, `_ok` and `_value`, so this carries just those: a
    timer costs an object and a heap push, where `env.timeout` costs two calls."""

    __slots__ = ("callbacks", "_value")
    _ok = True


def at(env, t: float, value=None) -> At:
    """An event that SimPy processes at exactly `t` (>= its clock), in the order a
    timeout scheduled now would take (the same priority and event counter)."""
    ev = At()
    ev.callbacks = []
    ev._value = value
    heapq.heappush(env._queue, (t, 1, next(env._eid), ev))
    return ev


@dataclass
class PoolStats:
    name: str
    devices: int
    busy_area: float = 0.0       # device-ms busy
    queue_time: dict = field(default_factory=dict)  # queue length -> ms spent at it
    waits: list = field(default_factory=list)       # ms waited per measured execution
    timeline: list = field(default_factory=list)    # (t_ms, busy devices, queue length)
    lost: list = field(default_factory=list)        # (t_ms, devices lost)


class Transfer:
    """One transfer's arrival at `at`. `fire` is when a timer set at `sent` for it
    would fire (the clock's sum `sent + (at - sent)`). A link moves `at` (and `fire`)
    later when a transfer joins it; a consumer that must wait on the clock sets its
    own timer at `fire` and waits again if the landing moved meanwhile (model.py), so
    a transfer whose consumer runs past its landing costs no event at all."""

    __slots__ = ("at", "fire", "trace")

    def __init__(self, sent: float, at: float):
        self.at = at
        self.fire = sent + (at - sent)
        self.trace = None


class Pool:
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
        self.holds: list = []    # heap of (until_ms, n, tp, ids) not yet returned, of several devices or ids
        self.ones: list = []     # heap of until_ms of one-device holds without ids not yet returned (the
                                 # common kind, apart: floats are pushed and compared fastest)
        self.n = 0
        self.waiters: deque = deque()  # (tp, hold_ms, event, t_ask)
        self.alarm = INF
        self.busy_iv: list = []  # (start, end, tp), when kept
        self.wait_iv: list = []  # (t_ask, t_start) of asks that waited, when kept
        self.free_ids = list(range(devices)) if ids else None
        self.active, self.next_id = devices, devices   # devices in service; the next new device's id
        self.engines: list = []  # decode engines in a multi-step run on this pool

    def ask(self, tp: int, hold_ms: float | None):
        """(None, ids) when FIFO gives `tp` devices now, else (event, None): the event's
        value is the ids once granted. `hold_ms` None: held until `release`."""
        now = self.env._now
        if self._ended(now):
            self._reap(now)
        if not self.waiters and self.free >= tp:
            return None, self._grant(tp, hold_ms, now, now)
        ev = self.env.event()
        self.waiters.append((tp, hold_ms, ev, now))
        self._queue(1)
        self._arm()
        for e in list(self.engines):
            e.yield_soon()
        return ev, None

    def hold_now(self, tp: int, hold_ms: float, now: float):
        """The ids (None when not tracked) of `tp` devices held for `hold_ms` from `now`
        when strict FIFO grants them at once, else False. `now` may run ahead of the
        clock when no event comes before it (model.py), so holds end by it, not by the
        clock. Ended holds are returned only when the free devices fall short (or ids
        are tracked: the lowest free id goes first), since nothing else reads `free`."""
        if self.waiters:
            return False
        end = now + hold_ms
        if tp == 1 and not self.retire and self.free_ids is None:
            ones = self.ones
            if self.free > 0:
                self.free -= 1
                heappush(ones, end)
            elif ones and ones[0] <= now:
                # an ended hold's device goes straight to this one (Kiefer-Wolfowitz: the
                # earliest free device); other ended holds stay till free falls short again
                heapreplace(ones, end)
            else:
                holds = self.holds
                if not holds or holds[0][0] > now:
                    return False
                self._reap(now)
                self.free -= 1
                heappush(ones, end)
        else:
            if self.free < tp or self.retire or self.free_ids is not None:
                if self._ended(now):
                    self._reap(now)
                if self.free < tp:
                    return False
                if self.free_ids is not None:
                    return self._grant(tp, hold_ms, now, now)
            self.free -= tp
            self._push(end, tp, None)
        if self.t0 <= now and end <= self.t1:   # _busy, inline
            self.busy_area += tp * hold_ms
        else:
            self._busy(now, end, tp)
            return None
        if self.keep:
            self.busy_iv.append((now, end, tp))
        return None

    def release(self, tp: int, ids, start: float):
        now = self.env._now
        self.held(tp, start, now)
        if ids is None and not self.retire and not self.waiters:   # _put and _serve's common case, inline
            self.free += tp
            if self._ended(now):
                self._reap(now)
            return
        self._put(tp, ids)
        self._serve()

    def held(self, tp: int, start: float, now: float):
        """`tp` devices held from `start` to `now`: their busy time (kept on by an engine
        that runs on, or released)."""
        a = start if start > self.t0 else self.t0   # _busy, inline
        b = now if now < self.t1 else self.t1
        if b > a:
            self.busy_area += tp * (b - a)
        if self.keep:
            self.busy_iv.append((start, now, tp))

    def lose(self, k: int):
        self._reap(self.env._now)
        self.stats.lost.append((self.env._now, k))
        self._retire(min(k, self.active))   # a re-plan may have left fewer in service

    def resize(self, n: int):
        """A new plan's device count: added devices are free at once (a retiring one
        stays instead); surplus ones retire as lost ones do, running work finishing."""
        self._reap(self.env._now)
        if n < self.active:
            self._retire(self.active - n)
        elif n > self.active:
            extra = n - self.active
            kept = min(extra, self.retire)
            self.retire -= kept
            add = extra - kept
            if self.free_ids is not None:
                for i in range(self.next_id, self.next_id + add):
                    heapq.heappush(self.free_ids, i)
            self.next_id += add
            self.free += add
            self.active = n
            self.stats.devices = max(self.stats.devices, n)
            self._serve()

    def _retire(self, k: int):
        self.active -= k
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
            self._push(end, tp, ids)
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
        now = self.env._now
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

    def _push(self, end: float, tp: int, ids):
        if tp == 1 and ids is None:
            heappush(self.ones, end)
        else:
            heappush(self.holds, (end, self.n, tp, ids))
            self.n += 1

    def _ended(self, now: float) -> bool:
        """Whether a timed hold has ended by `now` (one to reap)."""
        holds, ones = self.holds, self.ones
        return bool((holds and holds[0][0] <= now) or (ones and ones[0] <= now))

    def _reap(self, now):
        holds, ones = self.holds, self.ones
        if self.retire or self.free_ids is not None:   # (ids tracked: no one-device holds apart)
            while holds and holds[0][0] <= now:
                _, _, tp, ids = heappop(holds)
                self._put(tp, ids)
            while ones and ones[0] <= now:
                heappop(ones)
                self._put(1, None)
        else:
            free = self.free
            while holds and holds[0][0] <= now:
                free += heappop(holds)[2]
            while ones and ones[0] <= now:
                heappop(ones)
                free += 1
            self.free = free

    def _serve(self):
        now = self.env._now
        self._reap(now)
        w = self.waiters
        while w and w[0][0] <= self.free:
            tp, hold_ms, ev, t_ask = w.popleft()
            self._queue(-1)
            ev.succeed(self._grant(tp, hold_ms, t_ask, now))
        self._arm()

    def _arm(self):
        """Wake when the next timed hold ends, while someone waits."""
        if self.waiters and (self.holds or self.ones):
            t = min(self.holds[0][0] if self.holds else INF, self.ones[0] if self.ones else INF)
            if t < self.alarm:
                self.alarm = t
                now = self.env._now
                at(self.env, now + (t - now)).callbacks.append(self._wake)

    def _wake(self, _ev):
        if self.env._now >= self.alarm:
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


class Link:
    """Processor sharing: n concurrent transfers each progress at 1/n of the bandwidth.

    Between sends the future is known: with remaining wire times r1 <= r2 <= ... the
    k-th finishes after n r1 + (n-1)(r2-r1) + ..., so each send projects every active
    transfer's landing (their consumers wait for it, model.py). A send only delays
    the others."""

    def __init__(self, env, window: tuple[float, float]):
        self.env = env
        self.active: list[list] = []   # [remaining wire ms, Transfer, latency ms]
        self.last = 0.0
        self.t0, self.t1 = window
        self.busy_ms = 0.0             # within the window, busy periods before the current one
        self.p0 = self.p1 = None       # start and end (as projected) of the current busy period

    def _advance(self, now: float):
        """Progress the active transfers from `last` to `now`, dropping finished ones."""
        t, act = self.last, self.active
        while act and t < now:
            n = len(act)
            m = min(act, key=_remaining)[0]
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

    def send(self, wire_ms: float, latency_ms: float, now: float) -> Transfer:
        """A transfer sent at `now` (at or ahead of the clock, see Pool.hold_now)."""
        act = self.active
        if act:
            if self.p1 <= now:   # the busy period is over: the link is free
                act.clear()
            elif now > self.last:   # (sent at the last change: nothing has moved)
                self._advance(now)
                act = self.active
        if not act:   # alone on the link: it lands after its wire time and the latency
            self.last = now
            x = Transfer(now, now + wire_ms + latency_ms)
            act.append([wire_ms, x, latency_ms])
            p0 = self.p0   # a new busy period: count the finished one within the window
            if p0 is not None:
                p1 = self.p1
                b = (p1 if p1 < self.t1 else self.t1) - (p0 if p0 > self.t0 else self.t0)
                if b > 0:
                    self.busy_ms += b
            self.p0, self.p1 = now, now + wire_ms
            return x
        new = [wire_ms, None, latency_ms]
        act.append(new)
        act = sorted(act, key=_remaining)
        n, t, prev = len(act), now, 0.0
        for k, x in enumerate(act):
            t += (n - k) * (x[0] - prev)
            prev = x[0]
            at = t + x[2]
            if x is new:
                x[1] = Transfer(now, at)
            elif at != x[1].at:
                x[1].at = at
                x[1].fire = now + (at - now)
                if x[1].trace is not None:
                    x[1].trace[5] = at
        self.p1 = t
        return new[1]

    def alone(self, wire_ms: float, now: float) -> None:
        """A transfer sent at `now` on the idle link whose landing its consumer has
        already passed (model.py: nothing due before it, so no send can share the link
        with it): only the busy period is kept."""
        if self.active:
            self.active.clear()
        p0 = self.p0   # a new busy period: count the finished one within the window
        if p0 is not None:
            p1 = self.p1
            if p0 >= self.t0 and p1 <= self.t1:
                self.busy_ms += p1 - p0
            else:
                b = (p1 if p1 < self.t1 else self.t1) - (p0 if p0 > self.t0 else self.t0)
                if b > 0:
                    self.busy_ms += b
        self.p0 = now
        self.p1 = now + wire_ms

    def busy_within(self) -> float:
        """Busy ms of the current period within the window."""
        if self.p0 is None:
            return 0.0
        return max(0.0, min(self.p1, self.t1) - max(self.p0, self.t0))


_remaining = operator.itemgetter(0)   # of a link's [remaining wire ms, Transfer, latency ms]
