"""Control-flow scenarios: what one request executes, and with which probability.

A scenario is a vector of execution counts, one per op (a loop body's ops run once per
trip, an arm's ops run only when it is taken), with its probability. The program's
laws are exact: a branch takes `then` with its `prob`; a pre-tested loop of at most N
trips that continues with probability p runs k < N trips with p^k (1 - p) and N trips
with p^N (the law the simulator draws from). Independent parts combine by adding
counts and multiplying probabilities; a loop adds up its body's scenarios trip by trip.

Latency, TTFT and TBT only grow with every count, so merging a group of scenarios into
one with their element-wise largest counts and their summed probability gives a plan
that covers the group whenever it covers the merged one: a sound bound. Past
MAX_SCENARIOS (partial results past MAX_PARTIAL) scenarios are merged that way,
neighbours by size, into groups of about equal probability, and the plan says so.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .problem import Branch, Loop

MAX_SCENARIOS = 128    # scenarios the MILP gets (each holds a copy of the timing rows)
MAX_PARTIAL = 256      # while enumerating (a product of two parts is formed before merging)
PROB_EPS = 1e-15       # a loop's trips past P(trips >= k) <= this go into one bound
MAX_TRIPS = 64         # trips enumerated one by one; the rest go into one bound
VECTOR_MIN = 1 << 16   # pair products (times ops) from which two parts add in numpy
VECTOR_CHUNK = 1 << 22  # counts summed at once there (32 MiB of float64)


def trip_law(max_trips: int, continue_prob: float) -> list[float]:
    """P(k trips), k = 0..max_trips, of a pre-tested loop (a list: for small loops)."""
    p = continue_prob
    if p >= 1.0:
        return [0.0] * max_trips + [1.0]
    return [p ** k * (1.0 - p) for k in range(max_trips)] + [p ** max_trips]


def continue_prob(max_trips: int, expected: float) -> float:
    """The p whose pre-tested loop (p + p^2 + ... + p^N expected trips) has this mean;
    for `while p` it is p itself, for `expect E` the law chosen for it, for a fixed
    count (E = N) it is 1."""
    if expected >= max_trips - 1e-12:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        # p + p^2 + ... + p^N in closed form (N may be huge: loop bounds multiply)
        if mid * (1 - mid ** max_trips) / (1 - mid) < expected:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


Dist = dict[tuple[float, ...], float]


class Enumerator:
    """Scenarios of a flow over ops `index` (op id -> position); `size[i]` orders
    scenarios for merging (e.g. the op's fastest time)."""

    def __init__(self, index: dict[str, int], size: Sequence[float]):
        self.index, self.op_size = index, list(size)
        self.merged = False
        self.total = 1  # the most scenarios seen before a merge (a lower bound on the true count)

    def run(self, flow: tuple) -> list[tuple[float, tuple[float, ...]]]:
        """Scenarios over ops, enumerated over blocks: the plain ops of one block run
        equally often in every scenario, so a count per block is exact, and nests of
        loops cost their depth, not their depth times the ops (issue 15)."""
        self.col: dict[str, int] = {}
        self.n = 0
        self._columns(flow)
        self.size = [0.0] * self.n
        for op, c in self.col.items():   # a block's ops in program order, as a sum over them
            self.size[c] += self.op_size[self.index[op]]
        d = self._block(flow)
        raw = len(d)
        d = self._cap(d, MAX_SCENARIOS)
        self.total = max(self.total, raw)
        found = sorted(((p, c) for c, p in d.items()), key=lambda e: (self._size(e[1]), e[1]))
        return [(p, self._ops(c)) for p, c in found]

    def _columns(self, items: tuple) -> None:
        """One column per block that holds plain ops; each op in exactly one block."""
        col = None
        for item in items:
            if isinstance(item, str):
                if item in self.col:
                    raise ValueError(f"op '{item}' appears twice in the control flow")
                if col is None:
                    col, self.n = self.n, self.n + 1
                self.col[item] = col
            elif isinstance(item, Branch):
                self._columns(item.then)
                self._columns(item.orelse)
            elif isinstance(item, Loop):
                self._columns(item.body)

    def _ops(self, c: tuple[float, ...]) -> tuple[float, ...]:
        """A block-count vector as op counts (ops outside the flow run 0 times)."""
        out = [0.0] * len(self.index)
        for op, j in self.col.items():
            out[self.index[op]] = c[j]
        return tuple(out)

    # -- structure ---------------------------------------------------------------------

    def _block(self, items: tuple) -> Dist:
        ran = [0.0] * self.n  # the block's plain ops: one run of their column
        d: Dist = {(0.0,) * self.n: 1.0}
        for item in items:
            if isinstance(item, str):
                ran[self.col[item]] = 1.0
            else:
                d = self._add(d, self._item(item))
        return self._add(d, {tuple(ran): 1.0})

    def _item(self, item) -> Dist:
        if isinstance(item, Branch):
            out: Dist = {}
            for arm, p in ((item.then, item.prob), (item.orelse, 1.0 - item.prob)):
                if p > PROB_EPS:
                    for c, q in self._block(arm).items():
                        out[c] = out.get(c, 0.0) + p * q
            return self._cap(out, MAX_PARTIAL)
        if isinstance(item, Loop):
            return self._loop(item)
        raise TypeError(f"unknown flow item {item!r}")

    def _loop(self, item: Loop) -> Dist:
        """Trip by trip while trips are likely (P(trips >= k) = p^k above PROB_EPS) and
        few (MAX_TRIPS); the rest of the law becomes one scenario running all max_trips
        trips of the body's element-wise largest counts (a sound bound)."""
        body = self._block(item.body)
        n, p = item.max_trips, item.continue_prob
        fixed = len(body) == 1
        zero = (0.0,) * self.n
        out: Dist = {}
        acc: Dist = {zero: 1.0}   # k trips, when the body is random
        k = 0
        while k < n and k < MAX_TRIPS and p < 1.0 and p ** k > PROB_EPS:
            pk = p ** k * (1.0 - p)
            for c, q in ({self._times(body, k): 1.0} if fixed else acc).items():
                out[c] = out.get(c, 0.0) + pk * q
            k += 1
            if not fixed:
                acc = self._add(acc, body)
        rest = 1.0 if p >= 1.0 else p ** k   # P(trips >= k)
        if fixed:
            top = {self._times(body, n): 1.0}          # exact: k trips cost k times one
        elif k == n:
            top = acc                                  # exactly n trips, p^n
        elif p >= 1.0 and n <= MAX_TRIPS:
            top = acc
            for _ in range(n - k):
                top = self._add(top, body)
        else:
            top = {self._times(body, n): 1.0}
            self.merged = True
        if not fixed and k < n and p < 1.0:
            self.merged = True  # trips k..n-1 are bounded by n trips
        elif fixed and k < n and p < 1.0:
            self.merged = True
        for c, q in top.items():
            out[c] = out.get(c, 0.0) + rest * q
        return self._cap(out, MAX_PARTIAL)

    def _times(self, body: Dist, k: int) -> tuple[float, ...]:
        """k trips of the body's element-wise largest counts (exact for a fixed body)."""
        top = [max(col) for col in zip(*body)] if len(body) > 1 else next(iter(body))
        return tuple(k * x for x in top)

    def _add(self, a: Dist, b: Dist) -> Dist:
        """Two independent parts run one after the other: counts add."""
        if len(b) == 1 and len(a) == 1:
            (ca, pa), (cb, pb) = next(iter(a.items())), next(iter(b.items()))
            return {tuple(x + y for x, y in zip(ca, cb)): pa * pb}
        if len(a) * len(b) * self.n >= VECTOR_MIN:
            return self._cap(_product(a, b, self.n), MAX_PARTIAL)
        out: Dist = {}
        for ca, pa in a.items():
            for cb, pb in b.items():
                c = tuple(x + y for x, y in zip(ca, cb))
                out[c] = out.get(c, 0.0) + pa * pb
        return self._cap(out, MAX_PARTIAL)

    # -- the sound bound ---------------------------------------------------------------

    def _size(self, c: tuple[float, ...]) -> float:
        return sum(x * s for x, s in zip(c, self.size))

    def _cap(self, d: Dist, cap: int) -> Dist:
        """At most `cap` scenarios: neighbours by size merged into groups of about equal
        probability, each to its element-wise largest counts (an upper bound)."""
        if len(d) <= cap:
            return d
        self.total = max(self.total, len(d))
        self.merged = True
        keys = list(d)
        counts = np.array(keys, dtype=float)
        sizes = np.zeros(len(keys))
        for j, s in enumerate(self.size):  # left to right, as sum() over one scenario would
            sizes = sizes + counts[:, j] * s
        order = sorted(range(len(keys)), key=lambda i: (float(sizes[i]), keys[i]))
        total = sum(d.values())
        cut, mass, before = [], [], 0.0
        for at, i in enumerate(order):
            g = min(cap - 1, int(before / total * cap))
            before += d[keys[i]]
            if not cut or g != cut[-1][0]:  # a group is a run of neighbours: it starts here
                cut.append((g, at))
                mass.append(0.0)
            mass[-1] += d[keys[i]]
        tops = np.maximum.reduceat(counts[order], [start for _g, start in cut], axis=0)
        out: Dist = {}
        for top, m in zip(map(tuple, tops.tolist()), mass):
            out[top] = out.get(top, 0.0) + m
        return out


def _product(a: Dist, b: Dist, n: int) -> Dist:
    """`Enumerator._add`'s sum over every pair, the counts added in numpy: the same keys
    in the same order and the same probabilities to the bit (each pair's product added
    in a-major order). Rows are told apart by their bytes (counts are sums of
    non-negative numbers: no -0.0 or NaN, so equal bytes are equal counts)."""
    ca, pa = np.array(list(a), dtype=float), np.array(list(a.values()))
    cb, pb = np.array(list(b), dtype=float), np.array(list(b.values()))
    acc: dict[bytes, float] = {}
    width = 8 * n
    step = max(1, VECTOR_CHUNK // max(1, len(b) * n))
    for lo in range(0, len(a), step):
        raw = np.ascontiguousarray((ca[lo:lo + step, None, :] + cb[None, :, :]).reshape(-1, n)).tobytes()
        p = (pa[lo:lo + step, None] * pb[None, :]).reshape(-1).tolist()
        for i, q in enumerate(p):
            k = raw[i * width:(i + 1) * width]
            acc[k] = acc.get(k, 0.0) + q
    return {tuple(np.frombuffer(k).tolist()): q for k, q in acc.items()}
