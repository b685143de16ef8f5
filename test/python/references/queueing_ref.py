"""Reference M/M/c formulas written apart from agentc.planner.queueing (which uses the
Erlang B recursion): Erlang C by its direct sum over Poisson terms, and the waiting-time
tail P(W > t) = C exp(-(c mu - lambda) t) inverted at a quantile."""

from __future__ import annotations

import math


def erlang_c(c: int, a: float) -> float:
    """P(wait) in M/M/c, offered load a Erlangs: the textbook sum, each term a^k/k! e^-a."""
    if a <= 0:
        return 0.0
    if a >= c:
        return 1.0
    terms = [math.exp(-a)]
    for k in range(1, c + 1):
        terms.append(terms[-1] * a / k)
    top = terms[c] * c / (c - a)
    return top / (sum(terms[:c]) + top)


def wait_quantile(c: int, a: float, service_ms: float, q: float) -> float:
    """Smallest t with P(W <= t) >= q in M/M/c."""
    if a <= 0 or service_ms <= 0:
        return 0.0
    if a >= c:
        return math.inf
    p = erlang_c(c, a)
    if 1.0 - p >= q:
        return 0.0
    rate = (c - a) / service_ms          # c mu - lambda, per ms
    return math.log(p / (1.0 - q)) / rate


def mean_wait(c: int, a: float, service_ms: float) -> float:
    """E[W] in M/M/c: P(wait) times the mean of the exponential wait, 1 / (c mu - lambda)."""
    if a <= 0 or service_ms <= 0:
        return 0.0
    return math.inf if a >= c else erlang_c(c, a) * service_ms / (c - a)


# the planner's convention (docs/planner.md): mean waits below a microsecond buy no replica
NEGLIGIBLE_MS = 1e-3


def sizes(rate_per_s: float, busy_ms: float, tp: int, q: float | None, count: int | None):
    """(replicas, devices, wait) for every replica count worth buying, batch 1: from the
    least stable count to the first without wait at quantile q (None: mean waits, to the
    first below NEGLIGIBLE_MS), within `count` devices (the least is always listed). An
    op that keeps nothing busy takes no devices and never waits."""
    a = rate_per_s * busy_ms / 1000.0
    if busy_ms <= 0:
        return [(1, 0, 0.0)]

    def wait(c):
        return mean_wait(c, a, busy_ms) if q is None else wait_quantile(c, a, busy_ms, q)

    r = int(a) + 1
    out = [(r, r * tp, wait(r))]
    while out[-1][2] > (0.0 if q is not None else NEGLIGIBLE_MS) and (count is None or (r + 1) * tp <= count):
        r += 1
        out.append((r, r * tp, wait(r)))
    return out
