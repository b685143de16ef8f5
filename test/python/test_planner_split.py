"""Splitting an op over pools in fractions, and sharding a retrieve over devices
(issue 17 item 3; agentc/planner/split.py).

- The issue's case: at 40 req/s a prefill needs more devices than any one pool has; the
  planner splits it, and the fractions, devices and $/hr are the ones worked out by hand
  in the docstring (M/M/c least stable counts: floor(offered load) + 1).
- An exhaustive search written here (no agentc planner code; queueing from
  references/queueing_ref.py) on generated loaded chains where some op overflows every
  pool: whole placements where an op fits a pool, else every split at multiples of 1/8
  over the fewest pools that can carry it, every option and replica count per part
  (under a hard latency bound, the sizings the planner's menu names), transfers priced
  as each request picks its pools independently by the fractions, a split call timed
  at its slowest part. The planner must find its optimum, with and without the bound.
- Loosening the latency bound of a split plan never makes it dearer.
- The pipeline: the plan table, `explain` and manifest.json show the parts; a placed
  module resumes to the same split; the simulator routes calls by the fractions;
  `agentc deploy` refuses a split op with a located error.
- A retrieve whose index no device holds is offered on the fewest devices that hold it
  (powers of two: ceil(index bytes / device memory) rounded up), with a merge cost.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import subprocess
import sys

import pytest

from agentc.diagnostics import InfeasiblePlanError
from agentc.planner import SLA, Link, Option, PlanEdge, PlanOp, Pool, Problem, solve
from references import queueing_ref

REL = 1e-9


# ----------------------------------------------------------------- the issue's case

def prefill_problem(sla: SLA = SLA(None)) -> Problem:
    """One prefill at 40 req/s. Busy ms per call: B200 250, MI300x 400, H100 330; pools
    of 8 at 2.0 / 1.2 / 1.5 $/hr per device."""
    op = PlanOp("prefill", "llm.prefill", [Option("b200", 1, 250.0, 0.0, 250.0),
                                           Option("mi300x", 1, 400.0, 0.0, 400.0),
                                           Option("h100", 1, 330.0, 0.0, 330.0)])
    pools = [Pool("b200", "B200", 8, 2.0), Pool("mi300x", "MI300x", 8, 1.2), Pool("h100", "H100", 8, 1.5)]
    return Problem([op], [], pools, [], sla, load_rps=40.0)


def test_a_prefill_no_pool_can_carry_is_split_as_worked_by_hand():
    """Whole, the prefill offers 40 x 0.25 = 10 Erlangs on B200 (11 devices), 16 on
    MI300x (17), 13.2 on H100 (14): no pool of 8 carries it. Split in eighths over two
    pools (a part at share f needs floor(40 f busy) + 1 devices, at most 8):
      B200 5/8 (6.25 E -> 7) + H100 3/8 (4.95 E -> 5): 7 x 2.0 + 5 x 1.5 = 21.5 $/hr
      B200 6/8 (7.5 -> 8)    + H100 2/8 (3.3 -> 4):    16 + 6            = 22.0
      B200 4/8 (5 -> 6)      + H100 4/8 (6.6 -> 7):    12 + 10.5         = 22.5
      B200 5/8 (7)           + MI300x 3/8 (6 -> 7):    14 + 8.4          = 22.4
      B200 7/8: 8.75 E -> 9 > 8; H100 >= 5/8: 8.25 E -> 9 > 8; MI300x >= 4/8: 8 E -> 9 > 8
    so H100 with MI300x cannot carry it, and 5/8 on B200 with 3/8 on H100 is cheapest."""
    for busy in (250.0, 400.0, 330.0):
        assert math.floor(40 * busy / 1000) + 1 > 8
    plan = solve(prefill_problem())
    placed = plan.ops["prefill"]
    assert [(s.pool, s.fraction, s.replicas, s.devices) for s in placed.split] == [
        ("b200", 5 / 8, 7, 7), ("h100", 3 / 8, 5, 5)]
    assert plan.devices == {"b200": 7, "h100": 5}
    assert plan.cost == pytest.approx(21.5, rel=REL)
    assert plan.status == "optimal"
    assert (placed.pool, placed.replicas) == ("b200", 7)  # the largest part stands for the op
    # its latency on the path is the slower part's: time plus p99 M/M/c wait
    worst = max(busy + queueing_ref.wait_quantile(n, 40 * f * busy / 1000, busy, 0.99)
                for busy, f, n in ((250.0, 5 / 8, 7), (330.0, 3 / 8, 5)))
    assert plan.e2e_ms == pytest.approx(worst, rel=1e-9)


def test_an_op_that_fits_a_pool_is_never_split():
    """With a pool of 16 B200 the prefill fits whole (11 devices): no split is offered."""
    p = prefill_problem()
    p.pools[0] = Pool("b200", "B200", 16, 2.0)
    plan = solve(p)
    assert plan.ops["prefill"].split == [] and plan.devices == {"b200": 11}


def test_without_load_nothing_is_split_and_an_op_too_big_for_all_pools_is_still_infeasible():
    p = prefill_problem()
    p.load_rps = 0.0
    assert solve(p).ops["prefill"].split == []
    # 3 pools of 8 cannot carry 40 Erlangs of B200-equivalent work in any split
    p = prefill_problem()
    p.load_rps = 100.0
    with pytest.raises(InfeasiblePlanError):
        solve(p)


def test_loosening_the_latency_bound_of_a_split_plan_never_makes_it_dearer():
    """The bound is swept over 20 points from the fastest split plan to past the cheapest:
    the cost never rises as it loosens."""
    cheap = solve(prefill_problem())
    fast = solve(prefill_problem(SLA(None)).__class__(**{**prefill_problem().__dict__, "objective": "latency"}))
    lo, hi = fast.e2e_ms, cheap.e2e_ms * 1.2
    costs = []
    for j in range(20):
        bound = lo + (hi - lo) * j / 19
        try:
            costs.append(solve(prefill_problem(SLA(bound)), baselines=False, explain=False).cost)
        except InfeasiblePlanError:
            costs.append(math.inf)
    assert costs[0] < math.inf and costs[-1] == pytest.approx(cheap.cost, rel=REL)
    assert all(b <= a * (1 + REL) for a, b in zip(costs, costs[1:]))


# ------------------------------------------------------- the independent exhaustive search

STEPS = 8
CLASSES = {"A": (1.0, 0.9), "B": (1.6, 1.4), "C": (0.7, 0.6)}  # speed, $/hr per device


def make_problem(seed: int) -> Problem:
    """A loaded chain of 2-3 ops on 3 pools of 3-8 devices, one op too big for any pool."""
    rng = random.Random(seed)
    n = rng.choice([2, 3])
    big = rng.randrange(n)
    load = rng.choice([10.0, 20.0])
    pools = [Pool(name, name, rng.choice([3, 4, 6, 8]), usd) for name, (_s, usd) in CLASSES.items()]
    ops = []
    for i in range(n):
        # the big op: 1.2 to 2 pools' worth of work; others well inside a pool
        work = (rng.uniform(1.2, 2.0) * 8 if i == big else rng.uniform(0.3, 2.0)) * 1000.0 / load
        opts = []
        for name, (speed, _usd) in CLASSES.items():
            for tp in (1, 2) if rng.random() < 0.5 else (1,):
                t = work / speed / tp ** 0.8 * rng.uniform(0.9, 1.1)
                opts.append(Option(name, tp, t, 0.0, t, fee_usd=rng.choice([0.0, 1e-5])))
        ops.append(PlanOp(f"op{i}", "compute", opts, weight=1.0))
    edges = [PlanEdge(f"op{i}", f"op{i + 1}", rng.choice([1e6, 5e7, 2e8])) for i in range(n - 1)]
    link = Link("*", "*", 100.0, 0.05, usd_per_gb=rng.choice([0.0, 0.02, 0.1]))
    return Problem(ops, edges, pools, [], SLA(None), load_rps=load, default_link=link)


def _transfer_usd(p: Problem, e: PlanEdge, a: str, b: str) -> float:
    return 0.0 if a == b else e.bytes / 1e9 * p.default_link.usd_per_gb


def _menus(p: Problem, op: PlanOp, timed: bool = False) -> list[list[tuple]]:
    """Every way to run `op`: a list of parts (pool, fraction, option, devices, p99 wait).

    Untimed, every sizing of every part (a superset of the planner's menu). Timed (a
    latency bound), a part takes one of the sizings the planner's menu names: the
    cheapest ($/hr of its devices and fees), the one with the fewest devices, the
    fastest (time plus wait)."""
    pools = {pl.name: pl for pl in p.pools}

    def sized(o: Option, share: float) -> list[tuple[int, float]]:
        count = pools[o.device].count
        if o.tp > count:
            return []
        return [(n, w) for _r, n, w in queueing_ref.sizes(p.load_rps * op.weight * share, o.busy_ms, o.tp, 0.99,
                                                          count) if n <= count]

    whole = [[(o.device, 1.0, o, n, w)] for o in op.options for n, w in sized(o, 1.0)]
    if whole:
        return whole

    def part_menu(g: str, f: float) -> list[tuple]:
        all_ = [(g, f, o, n, w) for o in op.options if o.device == g for n, w in sized(o, f)]
        if not timed or not all_:
            return all_
        usd = lambda x: x[3] * pools[g].usd_per_hr + p.load_rps * op.weight * f * 3600.0 * x[2].fee_usd  # noqa: E731
        call = lambda x: x[2].time_ms + x[4]  # noqa: E731
        picks = [min(all_, key=lambda x: (usd(x), call(x))), min(all_, key=lambda x: (x[3], usd(x), call(x))),
                 min(all_, key=lambda x: (call(x), usd(x)))]
        return list({id(x): x for x in picks}.values())

    names = sorted({o.device for o in op.options})
    for k in range(2, 4):
        found = []
        for group in itertools.combinations(names, k):
            for cuts in itertools.combinations(range(1, STEPS), k - 1):
                shares = [(b - a) / STEPS for a, b in zip((0,) + cuts, cuts + (STEPS,))]
                per_part = [part_menu(g, f) for g, f in zip(group, shares)]
                found += [list(x) for x in itertools.product(*per_part)]
        if found:
            return found
    return []


def _transfer_ms(p: Problem, e: PlanEdge, a: str, b: str) -> float:
    link = p.default_link
    return 0.0 if a == b else link.latency_ms + e.bytes * 8.0 / (link.gbps * 1e6)


def exhaustive(p: Problem, timed: bool = False) -> list[tuple[float, float]]:
    """(e2e ms, $/hr) of every combination of the ops' menus that fits the pools. The
    graph is a chain: a call takes its slowest part's time plus wait, a transfer the
    slowest pair of pools a request can meet; money is the expectation over the
    fractions (each call picks its pool independently)."""
    pools = {pl.name: pl for pl in p.pools}
    ids = {op.id: i for i, op in enumerate(p.ops)}
    rows = []
    for pick in itertools.product(*(_menus(p, op, timed) for op in p.ops)):
        held, widest, fees = {}, {}, 0.0
        for op, parts in zip(p.ops, pick):
            for pool, f, o, n, _w in parts:
                held[pool] = held.get(pool, 0) + n
                widest[pool] = max(widest.get(pool, 0), o.tp)
                fees += op.weight * f * o.fee_usd
        devices = {x: max(held[x], widest[x]) for x in held}
        if any(devices[x] > pools[x].count for x in devices):
            continue
        moved = sum(e.weight * u[1] * v[1] * _transfer_usd(p, e, u[0], v[0])
                    for e in p.edges for u in pick[ids[e.src]] for v in pick[ids[e.dst]])
        usd = sum(devices[x] * pools[x].usd_per_hr for x in devices) + p.load_rps * 3600.0 * (fees + moved)
        e2e = sum(op.weight * max(o.time_ms + w for _g, _f, o, _n, w in parts) for op, parts in zip(p.ops, pick))
        e2e += sum(e.weight * max(_transfer_ms(p, e, u[0], v[0]) for u in pick[ids[e.src]] for v in pick[ids[e.dst]])
                   for e in p.edges)
        rows.append((e2e, usd))
    return rows


def exhaustive_cost(p: Problem, bound: float | None = None) -> float:
    rows = exhaustive(p, bound is not None)
    return min((usd for e2e, usd in rows if bound is None or e2e <= bound * (1 + REL)), default=math.inf)


def _kind(seed: int) -> str:
    """"split" (some op's menu is splits), "infeasible" (some op has no menu) or "whole"."""
    menus = [_menus(make_problem(seed), op) for op in make_problem(seed).ops]
    if not all(menus):
        return "infeasible"
    if math.prod(len(m) for m in menus) > 4000:
        return "large"
    return "split" if any(len(m[0]) > 1 for m in menus) else "whole"


KINDS = {s: _kind(s) for s in range(40)}
CASES = ([s for s in KINDS if KINDS[s] == "split"][:12] + [s for s in KINDS if KINDS[s] == "infeasible"][:3]
         + [s for s in KINDS if KINDS[s] == "whole"][:2])


def test_the_generated_cases_split_something():
    assert [KINDS[s] for s in CASES].count("split") == 12
    assert sum(KINDS[s] == "split" for s in TIMED) >= 10


# with a latency bound: the cases that have a plan at all
TIMED = [s for s in CASES if exhaustive(make_problem(s), True)]


@pytest.mark.parametrize("seed,bound", [(s, "none") for s in CASES] + [(s, "mid") for s in TIMED])
def test_planner_matches_exhaustive_search_over_splits(seed, bound):
    """Without a latency bound, and with a hard one halfway between the reference's
    fastest and slowest plans (p99 queueing waits on the path)."""
    p = make_problem(seed)
    if bound == "mid":
        lats = [e2e for e2e, _ in exhaustive(p, True)]
        p.sla = SLA((min(lats) + max(lats)) / 2)
    want = exhaustive_cost(p, p.sla.e2e_ms)
    if want == math.inf:
        with pytest.raises(InfeasiblePlanError):
            solve(p, baselines=False)
        return
    plan = solve(p, baselines=False, explain=False)
    assert plan.status == "optimal"
    assert plan.cost == pytest.approx(want, rel=REL)
    pools = {pl.name: pl.count for pl in p.pools}
    assert all(n <= pools[x] for x, n in plan.devices.items())
    if p.sla.e2e_ms is not None:
        assert plan.e2e_ms <= p.sla.e2e_ms * (1 + REL)
    for placed in plan.ops.values():
        if placed.split:
            assert sum(s.fraction for s in placed.split) == pytest.approx(1.0)
            assert all(s.fraction * STEPS == round(s.fraction * STEPS) for s in placed.split)


# ------------------------------------------------------------------ the pipeline

PROGRAM = """model llama = llama3-70b(dtype=fp8)
agent summarise(doc: text) -> text {
  load 40 rps
  ans = llm(llama, doc, in=4096, out=16)
  return ans
}
"""

CLUSTER = """name = "gpus"
[[pool]]
name = "epyc"
device = "epyc-9654"
count = 8
[[pool]]
name = "b200"
device = "B200"
count = 8
[[pool]]
name = "mi300x"
device = "MI300x"
count = 8
[[pool]]
name = "h100"
device = "H100"
count = 8
"""


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def agentc(*args):
    return subprocess.run([sys.executable, "-m", "agentc", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def split_plan(tmp_path_factory):
    """The program planned once; its manifest (`plan --json` is manifest.json's view)
    written as an output directory's manifest.json."""
    d = tmp_path_factory.mktemp("split")
    (d / "big.agent").write_text(PROGRAM)
    (d / "gpus.toml").write_text(CLUSTER)
    (d / "out").mkdir()
    res = agentc("plan", str(d / "big.agent"), "--cluster", str(d / "gpus.toml"), "--json",
                 "-o", str(d / "out" / "manifest.json"))
    assert res.returncode == 0, res.stderr
    return d, json.loads((d / "out" / "manifest.json").read_text())


def test_the_issue_program_is_split_in_plan_explain_and_manifest(split_plan):
    import jsonschema

    from agentc.planner.split import fraction_text

    d, m = split_plan
    with open(os.path.join(ROOT, "docs", "manifest.schema.json")) as f:
        jsonschema.validate(m, json.load(f))
    prefill = next(o for o in m["ops"] if o["id"] == "ans.prefill")
    parts = prefill["split"]
    assert len(parts) >= 2 and sum(s["fraction"] for s in parts) == pytest.approx(1.0)
    assert (prefill["pool"], prefill["replicas"]) == (parts[0]["pool"], parts[0]["replicas"])
    counts = {p["name"]: p["count"] for p in m["cluster"]["pools"]}
    assert all(n <= counts[x] for x, n in m["totals"]["devices"].items())
    assert all(m["totals"]["devices"][s["pool"]] >= s["devices"] for s in parts)
    assert not any("split" in o for o in m["ops"] if o["id"] != "ans.prefill")
    # whole, the prefill fits no pool of 8 (the issue's "needs 11 B200 of a pool of 8")
    assert m["totals"]["devices"].get("b200", 0) <= 8
    args = ["--cluster", str(d / "gpus.toml")]
    table = agentc("plan", str(d / "big.agent"), *args)
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if "ans.prefill" in line)
    assert " + ".join(f"{s['pool']} {fraction_text(s['fraction'])}" for s in parts) in row
    assert "+".join(str(s["replicas"]) for s in parts) in row
    explain = agentc("explain", str(d / "big.agent"), "--op", "ans.prefill", *args)
    assert explain.returncode == 0, explain.stderr
    for s in parts:
        assert f"split: {fraction_text(s['fraction'])} of its calls on {s['pool']} tp={s['tp']}, " \
               f"{s['replicas']} replica(s)" in explain.stdout
    ex = json.loads(agentc("explain", str(d / "big.agent"), "--json", "--op", "ans.prefill", *args).stdout)
    assert [(r["pool"], r["fraction"], r["replicas"]) for r in ex["ops"][0]["split"]] == \
        [(s["pool"], s["fraction"], s["replicas"]) for s in parts]


def test_a_placed_module_resumes_to_the_same_split(split_plan):
    d, m = split_plan
    args = ["--cluster", str(d / "gpus.toml")]
    placed = d / "placed.mlir"
    res = agentc("compile", str(d / "big.agent"), "--emit", "placed", "-o", str(placed), *args)
    assert res.returncode == 0, res.stderr
    assert 'split = "' in placed.read_text()
    again = agentc("plan", str(placed), "--json", *args)
    assert again.returncode == 0, again.stderr
    pick = lambda doc: next(o for o in doc["ops"] if o["id"] == "ans.prefill")["split"]  # noqa: E731
    assert pick(json.loads(again.stdout)) == pick(m)


def test_the_simulator_routes_calls_of_a_split_op_by_its_fractions(split_plan):
    import numpy as np

    from agentc.sim import arrivals, model, plan as sim_plan

    d, _m = split_plan
    p = sim_plan.load(str(d / "out"))
    parts = p.ops["ans.prefill"].parts
    assert len(parts) >= 2 and sum(f for f, _ in parts) == pytest.approx(1.0)
    arr = arrivals.poisson(40.0, np.random.default_rng(1), requests=1600)
    res = model.simulate(p, arr, model.Config(seed=1, warmup=100, trace_requests=1600))
    ran: dict[str, int] = {}
    for entry in res.trace:
        if entry[0] == "op" and entry[3] == "ans.prefill":
            ran[entry[1]] = ran.get(entry[1], 0) + 1
    total = sum(ran.values())
    assert total >= 1500 and set(ran) == {part.pool for _f, part in parts}
    for f, part in parts:  # binomial: within 5 standard deviations
        assert abs(ran[part.pool] - f * total) <= 5 * math.sqrt(total * f * (1 - f))


def test_replan_moves_a_split_op_whole_when_its_pool_grows(split_plan):
    """With 16 B200 the prefill fits one pool: the diff shows it leaving its split."""
    d, m = split_plan
    (d / "gpus16.toml").write_text(CLUSTER.replace('"B200"\ncount = 8', '"B200"\ncount = 16'))
    res = subprocess.run([sys.executable, "-m", "agentc", "replan", "out", "--cluster", "gpus16.toml",
                          "-o", "out16", "--json"], capture_output=True, text=True, timeout=300, cwd=d)
    assert res.returncode == 0, res.stderr
    change = next(o for o in json.loads(res.stdout)["diff"]["ops"] if o["op"] == "ans.prefill")
    before = next(o for o in m["ops"] if o["id"] == "ans.prefill")["split"]
    assert [(x["pool"], x["fraction"]) for x in change["before"]["split"]] == [(x["pool"], x["fraction"])
                                                                              for x in before]
    assert change["after"]["pool"] == "b200" and "split" not in change["after"]


def test_deploy_refuses_a_split_op_with_a_located_error(split_plan):
    d, _m = split_plan
    res = agentc("deploy", str(d / "out"), "--format", "vllm", "-o", str(d / "dep"))
    assert res.returncode == 1
    assert "manifest.json:" in res.stderr and "is split over pools" in res.stderr
    assert not (d / "dep").exists()


# ------------------------------------------------------------------ sharded retrieve

def test_a_retrieve_over_an_index_no_device_holds_is_sharded_with_a_merge(tmp_path):
    """600M vectors of 384 fp32 = 921.6 GB: on B200 and MI300x (192 GB) the fewest
    devices is ceil(921.6 / 192) = 5, rounded up to an admissible 8; H100 (8 x 80 GB =
    640 GB) and one EPYC cannot hold it. The cost table then offers tp=8 only on B200
    and MI300x and tp=1 elsewhere; a 1M-vector index (1.5 GB) is offered at tp=1 only."""
    from agentc.catalog import load_catalog, load_cluster
    from agentc.costmodel import op_cost

    (tmp_path / "gpus.toml").write_text(CLUSTER)
    cluster = load_cluster(str(tmp_path / "gpus.toml"), load_catalog())
    dev = {p.name: p.device for p in cluster.pools}
    attrs = {"index_size": 600_000_000, "dim": 384, "k": 8}
    one = op_cost("retrieve.search", attrs, None, dev["b200"], 1, cluster)
    eight = op_cost("retrieve.search", attrs, None, dev["b200"], 8, cluster)
    assert not one.fits and eight.fits
    assert eight.memory_bytes == pytest.approx(600e6 * 384 * 4 / 8)
    assert eight.sync_ms > 0  # the merge of the 8 top-k lists
    assert eight.time_ms < one.time_ms
    for size, want in (("600M", {"b200": 8, "mi300x": 8, "h100": 1, "epyc": 1}),
                       ("1M", {"b200": 1, "mi300x": 1, "h100": 1, "epyc": 1})):
        (tmp_path / "idx.agent").write_text(
            "model minilm = minilm-l6\nindex docs(size=%s, dim=384)\n"
            "agent s(q: text) -> documents {\n  e = embed(minilm, q)\n  return retrieve(docs, e, k=8)\n}\n" % size)
        res = agentc("cost", str(tmp_path / "idx.agent"), "--cluster", str(tmp_path / "gpus.toml"), "--json")
        assert res.returncode == 0, res.stderr
        row = next(r for r in json.loads(res.stdout) if r["kind"] == "retrieve.search")
        assert {pool: e["tp"] for pool, e in row["per_pool"].items()} == want


def test_a_split_plan_verifies_at_a_load_that_needs_no_split(tmp_path):
    """At 5 req/s one pool carries the prefill, so the planner's menu no longer offers
    the split the plan recorded at 40: the prediction (planner/predict.py) cannot price
    it, and is left out (null); the simulation still verifies the plan."""
    (tmp_path / "big.agent").write_text(PROGRAM.replace("  load 40 rps", "  sla { latency < 60s }\n  load 40 rps"))
    (tmp_path / "gpus.toml").write_text(CLUSTER)
    args = [str(tmp_path / "big.agent"), "--cluster", str(tmp_path / "gpus.toml"), "--json"]
    plan = json.loads(agentc("plan", *args).stdout)
    assert any(o.get("split") for o in plan["ops"])
    res = agentc("plan", *args, "--verify", "--load", "5")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["holds"] and out["load_rps"] == 5
    assert [(t["term"], t["predicted_ms"]) for t in out["terms"]] == [("latency", None)]
