"""The batch a decode runs at (planner/queueing.py), against an exhaustive search.

Each generated program (<= 7 ops: loops, branches, a branch in a loop) mixes decode ops,
each offered on two or three device classes at a menu of batches (step time linear in
the batch, some menus without batch 1; two model names, so some decodes share batches),
with compute ops whose first token feeds the next decode (a first-token chain). The
search below enumerates every assignment of options and prices each decode call by the
rule, written here apart from agentc.planner:

- T(b), the call's time at batch b: linear between the op's options on the same device
  and tp (batch <= the option's B), the smallest's below, the last at B;
- the mean in flight m: the least fixed point of m = other + rate*w*T(min(B, 1 + m))/1000,
  found by iterating from 0 (the planner solves it piece by piece); `other`: the same for
  each other decode of the model and kind with an option on that device and tp, at its
  largest batch there; rate: the load, else 1 req/s (the light rate without a load);
- the batch at quantile q of a term: min(B, 1 + the q-quantile of Poisson(m)), by
  summing the Poisson pmf by its recursion (p99 for "all", 1 + m for "mean");
- a call: T(b_e2e), plus one step when b_e2e > 1 (joining at a step boundary); TBT:
  step(b_tbt); a first-token chain ends with step(b_ttft), twice when b_ttft > 1.

Under load the ops run on unlimited metered sites (no pool is named), so there is no
queueing and no replica to pick: what is checked is the batch rule, the replicas being
checked by test_percentile_bruteforce.py. The planner must return the optimum to 1e-9
relative, with the search's latency, TTFT and TBT at their statistics.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest

from agentc.diagnostics import InfeasiblePlanError
from agentc.planner import SLA, Link, Option, PlanEdge, PlanOp, Problem, solve
from test_percentile_bruteforce import _median_term, _program, _stat, _terms, _to_flow, _transfer, traces

REL = 1e-9
CLASSES = {"A": (1.0, 0.25), "B": (1.6, 0.49), "C": (0.5, 0.15)}
LIGHT_RPS = 1.0   # the rate latency terms hold at without a load (docs/planner.md)


def make_case(seed: int) -> tuple[Problem, list]:
    rng = random.Random(7000 + seed)
    items, n = _program(rng, budget=rng.choice([5, 6, 7]))
    tr = traces(items, n)
    expected = [sum(p * c[i] for p, c in tr) for i in range(n)]
    decode = {i for i in range(1, n) if rng.random() < 0.55} or {n - 1}
    ops = []
    for i in range(n):
        opts = []
        for name in sorted(rng.sample(sorted(CLASSES), rng.randint(2, 3))):
            speed, usd_hr = CLASSES[name]
            if i in decode:
                tokens = rng.choice([16, 64])
                base, slope = rng.uniform(2, 20) / speed, rng.uniform(0.02, 0.6) / speed
                menu = [1, 4, 16, 64] if rng.random() < 0.7 else [4, 16]
                for b in menu:
                    step = base + slope * b
                    t = tokens * step
                    opts.append(Option(name, 1, t, t * usd_hr / 3.6e6 / b, t / b, tbt_ms=step, batch=b))
            else:
                t = rng.uniform(5, 80) / speed
                opts.append(Option(name, 1, t, t * usd_hr / 3.6e6, t, ttft_ms=t * 0.4))
        model = rng.choice(["m1", "m2"]) if i in decode else ""
        ops.append(PlanOp(f"op{i}", "llm.decode" if i in decode else "compute", opts, weight=expected[i],
                          model=model))
    edges = []
    for v in range(1, n):
        for u in sorted({v - 1, rng.randrange(v)}):
            w = sum(p * c[v] for p, c in tr if c[u] > 0)
            edges.append(PlanEdge(f"op{u}", f"op{v}", rng.choice([0.0, 1e7]), weight=w))
    chains = [[f"op{i - 1}", f"op{i}"] for i in sorted(decode) if i - 1 not in decode]
    load = rng.choice([2.0, 8.0, 30.0]) if seed % 2 else 0.0
    p = Problem(ops, edges, [], [Link("A", "B", 100.0, 1.0, 0.01)], SLA(None), load_rps=load,
                default_link=Link("*", "*", 50.0, 0.5, 0.0), flow=_to_flow(items), ttft_ops=chains)
    return p, tr


# ------------------------------------------------------------------ the rule, by hand


def _line(points: list[tuple[int, float]], b: float) -> float:
    """Linear through (batch, value), flat outside."""
    xs = [x for x, _ in points]
    if b <= xs[0]:
        return points[0][1]
    if b >= xs[-1]:
        return points[-1][1]
    k = max(j for j, x in enumerate(xs) if x <= b)
    (x0, y0), (x1, y1) = points[k], points[k + 1]
    return y0 if b == x0 else y0 + (y1 - y0) * (b - x0) / (x1 - x0)


def _menu(op: PlanOp, o: Option, what: str) -> list[tuple[int, float]]:
    same = {x.batch: getattr(x, what) for x in op.options if x.device == o.device and x.tp == o.tp
            and x.batch <= o.batch}
    return sorted(same.items())


def _fixed_point(rate: float, times: list[tuple[int, float]], other: float = 0.0) -> float:
    big = times[-1][0]
    m = 0.0
    for _ in range(200000):
        nxt = other + rate / 1000.0 * _line(times, min(big, 1.0 + m))
        if abs(nxt - m) <= 1e-14 * max(1.0, nxt):
            return nxt
        m = nxt
    raise AssertionError("no fixed point")


def _poisson_q(mean: float, q: float) -> int:
    k, term = 0, math.exp(-mean)
    acc = term
    while acc < q - 1e-12:
        k += 1
        term *= mean / k
        acc += term
    return k


def served(p: Problem, i: int, o: Option, stats: dict[str, str]):
    """(call ms, TBT, first-token step) of option o of op i by the rule."""
    op = p.ops[i]
    if o.batch <= 1:
        return o.time_ms, o.tbt_ms, o.tbt_ms
    rate = p.load_rps if p.load_rps > 0 else LIGHT_RPS
    other = 0.0
    for j, x in enumerate(p.ops):
        there = [y for y in x.options if y.device == o.device and y.tp == o.tp]
        if j != i and op.model and x.model == op.model and x.kind == op.kind and there \
                and max(y.batch for y in there) > 1:
            big = max(there, key=lambda y: y.batch)
            other += _fixed_point(rate * x.weight, _menu(x, big, "time_ms"))
    m = _fixed_point(rate * op.weight, _menu(op, o, "time_ms"), other)

    def batch(stat):
        if stat == "mean":
            return min(o.batch, 1.0 + m)
        q = 0.99 if stat == "all" else float(stat[1:]) / 100
        return float(min(o.batch, 1 + _poisson_q(m, q)))

    be, bt, bf = batch(stats["e2e"]), batch(stats["tbt"]), batch(stats["ttft"])
    steps = _menu(op, o, "tbt_ms")
    call = _line(_menu(op, o, "time_ms"), be) + (_line(steps, be) if be > 1 else 0.0)
    return call, _line(steps, bt), _line(steps, bf) * (2 if bf > 1 else 1)


def measure(p: Problem, tr, pick: tuple[Option, ...], stats: dict[str, str], table=None):
    """((latency, TTFT, TBT) at their statistics, cost) of one assignment; `table`:
    `served` of every (op, option), when computed once for all assignments."""
    ids = {op.id: i for i, op in enumerate(p.ops)}
    n = len(p.ops)
    times = [served(p, i, o, stats) if table is None else table[i][id(o)] for i, o in enumerate(pick)]
    tx = [_transfer(p, e, pick[ids[e.src]].device, pick[ids[e.dst]].device) for e in p.edges]
    lat, ttft, tbt = [], [], []
    for prob, c in tr:
        start, finish = [0.0] * n, [0.0] * n
        for i in range(n):
            for e, (ms, _) in zip(p.edges, tx):
                if ids[e.dst] == i:
                    u = ids[e.src]
                    start[i] = max(start[i], finish[u] + (c[i] if c[u] > 0 else 0) * ms)
            finish[i] = start[i] + c[i] * times[i][0]
        lat.append((prob, max(finish)))
        for a, b in p.ttft_ops:
            u, v = ids[a], ids[b]
            if c[u] > 0 and c[v] > 0:
                hop = next(t[0] for e, t in zip(p.edges, tx) if e.src == a and e.dst == b)
                ttft.append((prob, start[u] + pick[u].ttft_ms + hop + times[v][2]))
                break
        ran = [times[i][1] for i in range(n) if c[i] > 0 and times[i][1] is not None]
        if ran:
            tbt.append((prob, max(ran)))
    moved = sum(e.weight * t[1] for e, t in zip(p.edges, tx))
    usd = sum(op.weight * o.usd_per_call for op, o in zip(p.ops, pick)) + moved
    cost = usd * p.load_rps * 3600.0 if p.load_rps > 0 else usd
    return (_stat(lat, stats["e2e"]), _stat(ttft, stats["ttft"]), _stat(tbt, stats["tbt"])), cost


def meets(v, bound) -> bool:
    return bound is None or v is None or v <= bound + REL * max(1.0, bound)


ENUMERATED = 2500   # assignments per case at most, so the search stays quick
CASES = [s for s in range(40) if math.prod(len(op.options) for op in make_case(s)[0].ops) <= ENUMERATED][:16]


@pytest.mark.parametrize("seed", CASES)
def test_decode_batch_matches_exhaustive_search(seed):
    p, tr = make_case(seed)
    stats = _terms(seed)
    table = [{id(o): served(p, i, o, stats) for o in op.options} for i, op in enumerate(p.ops)]
    rows = [measure(p, tr, pick, stats, table) for pick in itertools.product(*(op.options for op in p.ops))]
    ttft = _median_term(rows, 1) if seed % 3 == 1 else None
    tbt = _median_term(rows, 2) if seed % 3 == 2 else None
    lats = sorted({v[0] for v, _ in rows})
    for label, bound in (("loose", lats[-1] * 1.01), ("tight", lats[len(lats) // 4]), ("edge", lats[0]),
                         ("below", lats[0] * (1 - 1e-6))):
        p.sla = SLA(e2e_ms=bound, ttft_ms=ttft, tbt_ms=tbt, e2e_stat=stats["e2e"], ttft_stat=stats["ttft"],
                    tbt_stat=stats["tbt"])
        ok = [(c, v) for v, c in rows if meets(v[0], bound) and meets(v[1], ttft) and meets(v[2], tbt)]
        if not ok:
            with pytest.raises(InfeasiblePlanError):
                solve(p, baselines=False, explain=False)
            continue
        plan = solve(p, baselines=False, explain=False)
        pick = tuple(plan.ops[op.id].option for op in p.ops)
        (e2e, t1, t2), cost = measure(p, tr, pick, stats)
        assert meets(e2e, bound) and meets(t1, ttft) and meets(t2, tbt), f"{label}: an SLA term misses"
        best = min(c for c, _ in ok)
        assert cost == pytest.approx(best, rel=REL), f"{label} ({stats}): plan {cost} vs optimum {best}"
        assert plan.e2e_ms == pytest.approx(e2e, rel=REL)
        assert (plan.ttft_ms, plan.tbt_ms) == (pytest.approx(t1, rel=REL), pytest.approx(t2, rel=REL))
        assert plan.status == "optimal" and not plan.violations


def test_cases_cover_loads_sharing_and_partial_menus():
    """The cases hold decodes with and without a load, two decodes of one model, menus
    without batch 1, and batches filled below their B at some statistic."""
    seen = set()
    for s in CASES:
        p, _ = make_case(s)
        dec = [op for op in p.ops if op.kind == "llm.decode"]
        seen.add("load" if p.load_rps > 0 else "light")
        models = [op.model for op in dec]
        if len(models) > len(set(models)):
            seen.add("shared")
        if any(min(o.batch for o in op.options) > 1 for op in dec):
            seen.add("no batch 1")
        for i, op in enumerate(p.ops):
            for o in op.options:
                if o.batch > 1 and served(p, i, o, _terms(s))[0] < o.time_ms:
                    seen.add("filled below B")
    assert seen == {"load", "light", "shared", "no batch 1", "filled below B"}
