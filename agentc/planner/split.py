"""Splitting: one op's traffic served by several pools in fractions (arXiv 2507.19635
section 3.1.2 allows fractional x_ij; README, "Splitting").

Under load an op whose least stable sizing needs more devices than every pool it may
use has (the issue's prefill needing 11 B200 of 8) can still be served: a fraction f
of its executions goes to one pool, the rest to others. Each part is an M/G/c queue of
its own at rate f x lambda x weight, sized by queueing.py exactly as a whole op is, and
holds its own replicas on its own pool.

What the MILP sees: each split is one more choice of the op, on a *split site* of its
own that names the parts' pools and fractions. The choice stays one-hot, so the model
stays exact over the menu it is given:
- its devices land on the parts' pools (Instance.holds; the capacity rows and the
  evaluator read that);
- a transfer to or from a split site is priced by the parts: the $ is the expected one
  over the fractions (each request picks a pool for the op independently), the ms is
  the slowest pair any request can meet;
- its time on the path is the slowest part's: one call takes the largest over the
  parts of their time plus queueing wait (likewise its time to first token), and a
  decode step the largest part's step. A request goes to one pool, so every path a
  request can take is covered: sound for every statistic, never optimistic (a
  percentile over the pools a request may meet could be lower; the bound is what a
  request routed to the slowest part sees). One looseness: a split decode that ends a
  first-token chain adds the largest wait plus the largest step, which may come from
  two different parts.

The menu is kept small on purpose, so an op that fits a pool gets no split choices and
plans without overflow are unchanged:
- splits are offered only to an op that no single pool can carry under the load (every
  usable choice needs more devices than its pool has), never to an op that must share a
  pool with another (colocated), or without load; parts go to accelerator pools only
  (host work on a CPU pool shares it, and an op that fits one runs there whole);
- fractions are multiples of 1/FRACTION_STEPS; a split uses the fewest pools, 2 up to
  MAX_PARTS, with which some split carries the op;
- per part, of the sizings that fit its pool, the cheapest (devices x price, plus the
  calls' fees), the one with the fewest devices (room for the pool's other ops) and,
  where a wait can matter, the fastest (least time plus wait).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from fractions import Fraction

from . import queueing
from .problem import Option

FRACTION_STEPS = 8   # fractions are multiples of 1/8
MAX_PARTS = 3        # a split uses at most this many pools


@dataclass(frozen=True)
class Part:
    """One pool's share of a split op: `fraction` of its executions, on `site`, with the
    op's option `rank` at `replicas` replicas of `option.tp` devices."""

    site: int
    fraction: float
    rank: int
    option: Option
    replicas: int
    devices: int
    wait_ms: float


def fraction_text(f: float) -> str:
    """A fraction as it is written in names and tables: 5/8, 1/2."""
    return str(Fraction(f).limit_denominator(FRACTION_STEPS * 8))


def needs_split(inst, i: int) -> bool:
    """Op i runs under load, off the CPU pools, alone (no colocation), and every usable
    choice of it needs more devices than its pool has."""
    if inst.load <= 0:
        return False
    op_id = inst.ops[i].id
    if any(op_id in pair for pair in inst.problem.colocate):
        return False
    usable = [inst.choices[k] for k in inst.op_choices[i] if inst.choices[k].excluded is None]
    if not usable:
        return False
    weight = inst.ops[i].weight
    for c in usable:
        site = inst.sites[c.site]
        if site.count is None or site.metered:
            return False
        # host work on a CPU pool shares its devices (Instance._build_choices)
        held = (math.ceil(inst.load * weight * c.option.busy_ms / 1000.0 * c.option.tp
                          / queueing.HOST_UTILISATION_CAP - 1e-9) if site.is_cpu else c.devices)
        if max(held, c.option.tp) <= site.count:
            return False
    return True


def _splittable(site) -> bool:
    """A pool a part may go to: a dedicated accelerator pool of known size, paid by the hour."""
    return not (site.is_cpu or site.count is None or site.metered or site.parts)


def _sizings(inst, i: int, site_index: int, share: float, timed: bool) -> list[Part]:
    """The parts op i may run on a pool at `share` of its load: per usable option, the
    replica counts that fit the pool; of those the cheapest and (timed) the fastest."""
    op, site = inst.ops[i], inst.sites[site_index]
    q, cs2 = queueing.wait_level(inst.q_e2e), inst.problem.service_cv ** 2
    rate = inst.load * op.weight * share
    found = []
    ranks = sorted({inst.choices[k].rank for k in inst.op_choices[i]
                    if inst.choices[k].site == site_index and inst.choices[k].excluded is None})
    for rank in ranks:
        o = op.options[rank]
        for cand in queueing.candidates(rate, o.busy_ms, o.tp, o.batch, q, cs2, site.count, all_counts=timed):
            if cand.devices <= site.count:
                found.append(Part(site_index, share, rank, o, cand.replicas, cand.devices, cand.wait_ms))
    if not found:
        return []
    # $/hr of a part: its devices, and the per-call fees of its calls (paid under load)
    usd = {id(p): p.devices * site.usd_per_hr + rate * 3600.0 * p.option.fee_usd for p in found}
    cheapest = min(found, key=lambda p: (usd[id(p)], p.option.time_ms + p.wait_ms, p.rank))
    fastest = min(found, key=lambda p: (p.option.time_ms + p.wait_ms, usd[id(p)], p.rank))
    # the fewest devices too: where the pool is shared, fewer may leave room a cheaper needs
    fewest = min(found, key=lambda p: (p.devices, usd[id(p)], p.option.time_ms + p.wait_ms, p.rank))
    return list(dict.fromkeys([cheapest, fewest] + ([fastest] if timed else [])))


def _compositions(total: int, k: int):
    """Every way to write `total` as k positive integers, in lexicographic order."""
    for cuts in itertools.combinations(range(1, total), k - 1):
        bounds = (0,) + cuts + (total,)
        yield tuple(b - a for a, b in zip(bounds, bounds[1:]))


def split_menu(inst, i: int) -> list[tuple[Part, ...]]:
    """The splits offered to op i (see the module docstring), each as its parts in site
    order; empty when the op needs none or none carries it."""
    if not needs_split(inst, i):
        return []
    p = inst.problem
    timed = p.sla.e2e_ms is not None or p.sla.ttft_ms is not None or p.objective == "latency"
    sites = sorted({inst.choices[k].site for k in inst.op_choices[i]
                    if inst.choices[k].excluded is None and _splittable(inst.sites[inst.choices[k].site])})
    cache: dict[tuple[int, int], list[Part]] = {}

    def menu(j: int, steps: int) -> list[Part]:
        if (j, steps) not in cache:
            cache[(j, steps)] = _sizings(inst, i, j, steps / FRACTION_STEPS, timed)
        return cache[(j, steps)]

    for k in range(2, MAX_PARTS + 1):
        out = []
        for group in itertools.combinations(sites, k):
            for steps in _compositions(FRACTION_STEPS, k):
                per_part = [menu(j, s) for j, s in zip(group, steps)]
                if all(per_part):
                    out += itertools.product(*per_part)
        if out:
            return out
    return []


def composite(parts: tuple[Part, ...]) -> tuple[Option, float]:
    """The option a split stands for, and its wait: in price the fraction-weighted
    mean; on the path the slowest part, so that wait + time_ms is the largest of the
    parts' wait + time (and likewise for TTFT), exactly; tbt_ms is the largest step."""
    first = max(parts, key=lambda p: (p.fraction, -p.site))
    wait = max(p.wait_ms for p in parts)
    ttft = [p.wait_ms + p.option.ttft_ms for p in parts if p.option.ttft_ms is not None]
    tbt = [p.option.tbt_ms for p in parts if p.option.tbt_ms is not None]
    return replace(first.option, tp=max(p.option.tp for p in parts),
                   time_ms=max(p.wait_ms + p.option.time_ms for p in parts) - wait,
                   usd_per_call=sum(p.fraction * p.option.usd_per_call for p in parts),
                   busy_ms=sum(p.fraction * p.option.busy_ms for p in parts),
                   ttft_ms=max(ttft) - wait if ttft else None, tbt_ms=max(tbt) if tbt else None,
                   fee_usd=sum(p.fraction * p.option.fee_usd for p in parts),
                   note=first.option.note), wait


def site_name(inst, parts) -> str:
    """The split site's name: its pools and fractions, "b200:5/8+mi300x:3/8"."""
    return "+".join(f"{inst.sites[j].name}:{fraction_text(f)}" for j, f in parts)


def key(inst, c) -> str:
    """A split choice as the IR records it (`split` attribute; replay matches it):
    per part its pool, fraction, option rank and replicas."""
    return ",".join(f"{inst.sites[p.site].name}:{fraction_text(p.fraction)}:{p.rank}:{p.replicas}"
                    for p in c.parts)
