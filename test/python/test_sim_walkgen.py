"""A plan's specialised walk (walkgen.py: Python generated from the plan) must give the
general walk's results (model.py `_walk`) field by field and float by float: every
request walks the specialised one from the first (`specialise_after = 0`) against
every request walking the general one, on the examples (transfers, a loop, a branch,
a parallel block, prefill and decode batching, planned decode), deterministic and
variable, under queueing, with per-request token counts, tracing, a device loss, and
on a small plan of the shapes the examples lack (a split op, a profiled edge, a tp-2
op, an empty branch arm, a loop around a parallel block)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from agentc.sim import arrivals, engines, model, plan, walkgen

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def plans():
    return {name: plan.load(os.path.join(REPO, "examples", f"{name}.agent"))
            for name in ("voice_agent", "react_tools", "supervisor")}


def _op(id, pool, ms, region="", inputs=(), tp=1, busy=None, **extra):
    return {"id": id, "kind": "compute.cpu", "pool": pool, "tp": tp, "est_latency_ms": ms,
            "busy_ms": ms if busy is None else busy, "region": region, "inputs": list(inputs), **extra}


def shapes() -> plan.Plan:
    """A split op, a profiled edge, a tp-2 op, a branch with an empty arm, a loop
    around a parallel block, an op that waits past its busy time."""
    ops = [_op("a", "x", 2.0),
           _op("s", "x", 3.0, inputs=["a"], split=[
               {"fraction": 0.6, "pool": "x", "tp": 1, "est_latency_ms": 3.0, "busy_ms": 3.0},
               {"fraction": 0.4, "pool": "y", "tp": 2, "est_latency_ms": 1.5, "busy_ms": 1.5}]),
           _op("b", "y", 4.0, region="branch1.then", inputs=["s"], tp=2),
           _op("p1", "x", 1.0, region="parallel1", inputs=["s"]),
           _op("p2", "y", 5.0, region="parallel1", inputs=["s"], busy=0.5),
           _op("z", "x", 1.0, inputs=["p1", "p2", "b"])]
    regions = {"branch1": {"kind": "branch", "parent": ""},
               "branch1.then": {"kind": "arm", "parent": "branch1", "prob": 0.7, "index": 0},
               "branch1.else": {"kind": "arm", "parent": "branch1", "prob": 0.3, "index": 1},
               "loop1": {"kind": "loop", "parent": "", "max_trips": 3, "continue_prob": 0.5},
               "parallel1": {"kind": "parallel", "parent": "loop1"}}
    edges = [{"src": "a", "dst": "s", "link": "x<->y", "latency_ms": 0.2, "wire_ms": 0.3, "ms": 0.5},
             {"src": "s", "dst": "p2", "link": None, "profiled": True, "latency_ms": 0.4, "ms": 0.4},
             {"src": "p2", "dst": "z", "link": "x<->y", "latency_ms": 0.1, "wire_ms": 0.2, "ms": 0.3}]
    return plan.from_manifest({"schema_version": "1.2", "agent": "shapes", "sla": {},
                               "cluster": {"pools": [{"name": "x", "count": 2}, {"name": "y", "count": 4}]},
                               "links": {"x<->y": {"gbps": 100}}, "ops": ops, "edges": edges, "totals": {},
                               "regions": regions, "returns": ["z"]})


def _outcome(p, arr, config, losses=(), general=False) -> tuple:
    sim = model.Simulation(p, arr, config, losses)
    sim.specialise_after = 0
    if general:
        sim.walk_in_general()
    r = sim.run()
    return (r.requests, r.pools, r.links, r.loop_trips, r.arm_counts, r.op_counts, r.decode_batches,
            r.prefill_batches, r.kv, r.trace, r.end_ms, r.unfinished, r.window_ms)


CASES = {
    "deterministic-queueing": dict(config=model.Config(seed=1), scale=3.0),
    "variable": dict(config=model.Config(seed=2, cv=(("*", 0.5),)), scale=1.0),
    "planned": dict(config=model.Config(seed=3, batching="planned", cv=(("llm.decode", 0.3),)), scale=2.0),
    "traced-budget-loss": dict(config=model.Config(seed=4, trace_requests=100, timeline=True, warmup=50,
                                                   prefill_budget=600), scale=2.0, loss=True),
    "token-counts": dict(config=model.Config(seed=5), scale=1.5, tokens=True),
}


def _arrivals(load: float, n: int, tokens: bool):
    arr = arrivals.poisson(load, np.random.default_rng(7), requests=n)
    if tokens:   # per-request prompt and output tokens around the plan's
        rng = np.random.default_rng(8)
        arr = [arrivals.Arrival(a.t_ms, int(rng.integers(100, 3000)), int(rng.integers(10, 300))) for a in arr]
    return arr


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", ["voice_agent", "react_tools", "supervisor"])
def test_specialised_walk_changes_no_result(plans, name, case):
    c, p = CASES[case], plans[name]
    load = (p.load_rps or 20.0) * c["scale"]
    arr = _arrivals(load, 300 if name == "supervisor" else 600, c.get("tokens", False))
    pool = max(p.pools, key=lambda k: sum(op.pool == k for op in p.ops.values()))
    losses = (model.Loss(arr[len(arr) // 2].t_ms, pool, p.pools[pool] // 2),) if c.get("loss") else ()
    a = _outcome(p, arr, c["config"], losses)
    b = _outcome(p, arr, c["config"], losses, general=True)
    assert len(a[0]) > 200
    for x, y in zip(a, b):
        assert x == y


@pytest.mark.parametrize("seed", [0, 1])
def test_shapes_the_examples_lack(seed):
    p = shapes()
    arr = arrivals.poisson(300.0, np.random.default_rng(seed), requests=2000)
    for config in (model.Config(seed=seed), model.Config(seed=seed, cv=(("*", 1.0),), trace_requests=20)):
        a, b = _outcome(p, arr, config), _outcome(p, arr, config, general=True)
        assert a[4]["branch1"][1] > 0 and a[3]["loop1"][0] > 0 and sum(a[1]["x"].waits) > 0
        for x, y in zip(a, b):
            assert x == y


def test_the_same_plan_gives_the_same_text(plans):
    p = plans["voice_agent"]
    arr = arrivals.poisson(20.0, np.random.default_rng(0), requests=10)
    texts = [walkgen.build(model.Simulation(p, arr), p)[1] for _ in range(2)]
    assert texts[0] == texts[1] and "yield" in texts[0]


def fanout() -> plan.Plan:
    """A chain whose ops send two transfers at once on one link, to the next op and
    the one after (the second shares the link from the start: walkgen's inline
    two-transfer case), the larger first and the smaller first."""
    ops = [_op("a", "x", 1.0),
           _op("b1", "y", 2.0, inputs=["a"]), _op("b2", "y", 0.5, inputs=["a", "b1"]),
           _op("c", "x", 1.5, inputs=["b2"]),
           _op("d1", "y", 0.7, inputs=["c"]), _op("d2", "y", 1.1, inputs=["c", "d1"]),
           _op("e", "x", 0.3, inputs=["d2"])]
    edges = [{"src": "a", "dst": "b1", "link": "x<->y", "latency_ms": 0.2, "wire_ms": 0.9, "ms": 1.1},
             {"src": "a", "dst": "b2", "link": "x<->y", "latency_ms": 0.1, "wire_ms": 0.3, "ms": 0.4},
             {"src": "b2", "dst": "c", "link": "x<->y", "latency_ms": 0.1, "wire_ms": 0.2, "ms": 0.3},
             {"src": "c", "dst": "d1", "link": "x<->y", "latency_ms": 0.3, "wire_ms": 0.25, "ms": 0.55},
             {"src": "c", "dst": "d2", "link": "x<->y", "latency_ms": 0.05, "wire_ms": 0.6, "ms": 0.65},
             {"src": "d2", "dst": "e", "link": "x<->y", "latency_ms": 0.1, "wire_ms": 0.1, "ms": 0.2}]
    return plan.from_manifest({"schema_version": "1.2", "agent": "fanout", "sla": {},
                               "cluster": {"pools": [{"name": "x", "count": 1}, {"name": "y", "count": 3}]},
                               "links": {"x<->y": {"gbps": 100}}, "ops": ops, "edges": edges, "totals": {},
                               "regions": {}, "returns": ["e"]})


@pytest.mark.parametrize("load", [50.0, 400.0])
def test_two_transfers_on_one_link(load):
    """The inline two-transfer send (both orders of wire time) against Link.send."""
    p = fanout()
    arr = arrivals.poisson(load, np.random.default_rng(3), requests=1500)
    config = model.Config(seed=3, cv=(("*", 0.5),))
    a, b = _outcome(p, arr, config), _outcome(p, arr, config, general=True)
    assert a[2]["x<->y"] > 0 and len(a[0]) == 1500
    assert "solo_" in walkgen.build(model.Simulation(p, arr, config), p)[1]
    for x, y in zip(a, b):
        assert x == y


@pytest.mark.parametrize("case", ["load", "queueing", "budget"])
def test_fused_decode_engine_paths_change_no_result(plans, case, monkeypatch):
    """The decode engine's fused paths (a join mid-run, a segment's end, one sequence
    leaving: engines.py `take`, `_leave`, `_done`) give what the general methods they inline
    give, on the voice agent at its load, under queueing and with a KV budget low
    enough to hold sequences back, every request on the specialised walk."""
    p = plans["voice_agent"]
    load = {"load": 20.0, "queueing": 150.0, "budget": 60.0}[case]
    arr = arrivals.poisson(load, np.random.default_rng(11), requests=1200)
    if case == "budget":   # a KV budget that holds sequences back, and a device loss
        p = _with_kv_budget(p, 2e9)
    a = _outcome(p, arr, model.Config(seed=11))
    monkeypatch.setattr(engines.DecodeEngine, "fuse", False)
    b = _outcome(p, arr, model.Config(seed=11))
    assert sum(sum(v) for v in a[6].values()) > 0
    for x, y in zip(a, b):
        assert x == y
    if case == "budget":
        assert any(v["blocked"] for v in a[8].values())


def _with_kv_budget(p: plan.Plan, budget: float) -> plan.Plan:
    import dataclasses
    ops = {k: dataclasses.replace(op, decode=dataclasses.replace(op.decode, kv_budget_bytes=budget))
           if op.decode is not None else op for k, op in p.ops.items()}
    return dataclasses.replace(p, ops=ops)
