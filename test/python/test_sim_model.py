"""The simulator's semantics against hand-worked values: control flow (loop trips, branch
arms, parallel joins), shared links, continuous batching, determinism, and every
shipped example at load -> 0 against the planner's own deterministic latency."""

from __future__ import annotations

import glob
import math
import os

import numpy as np
import pytest

from agentc.sim import arrivals, model, plan, report

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLOW = """
agent flow(q: text) -> json {
  r = tool first(q, latency=1ms, payload=1KB)
  loop max 3 while 0.3 {
    r = tool again(r, latency=1ms, payload=1KB)
  }
  if 0.4 {
    r = tool left(r, latency=1ms, payload=1KB)
  } else {
    r = tool right(r, latency=2ms, payload=1KB)
  }
  return r
}
"""


def op(op_id, pool, busy, inputs=(), region="", wait=0.0, **extra):
    return dict({"id": op_id, "kind": "compute.cpu", "pool": pool, "tp": 1, "est_latency_ms": busy + wait,
                 "busy_ms": busy, "region": region, "inputs": list(inputs)}, **extra)


def manifest(ops, pools, edges=(), regions=None, returns=None):
    return {"schema_version": "1.2", "agent": "t", "sla": {},
            "cluster": {"pools": [{"name": n, "count": c} for n, c in pools.items()]},
            "ops": ops, "edges": list(edges), "totals": {"e2e_ms": 0.0}, "regions": regions or {},
            "returns": returns or [ops[-1]["id"]]}


def at(*times_ms):
    return [arrivals.Arrival(t) for t in times_ms]


@pytest.fixture(scope="module")
def flow_plan(tmp_path_factory):
    path = tmp_path_factory.mktemp("flow") / "flow.agent"
    path.write_text(FLOW)
    return plan.load(str(path))


def test_loop_trips_follow_the_truncated_geometric_law(flow_plan):
    (loop_id,) = [k for k, r in flow_plan.regions.items() if r.kind == "loop"]
    assert flow_plan.regions[loop_id].continue_prob == pytest.approx(0.3)
    n = 20_000
    res = model.simulate(flow_plan, at(*np.arange(n) * 100.0), model.Config(seed=3))
    counts = np.array(res.loop_trips[loop_id])
    assert counts.sum() == n
    for got, p in zip(counts / n, (0.7, 0.21, 0.063, 0.027)):
        assert abs(got - p) < 4 * math.sqrt(p * (1 - p) / n), (counts / n)
    # the body ran as often as the trips say
    body = [o for o in flow_plan.ops.values() if o.region == loop_id]
    assert all(res.op_counts[o.id] == int((counts * np.arange(4)).sum()) for o in body)


def test_branch_arms_follow_their_probability(flow_plan):
    (branch,) = [k for k, r in flow_plan.regions.items() if r.kind == "branch"]
    n = 20_000
    res = model.simulate(flow_plan, at(*np.arange(n) * 100.0), model.Config(seed=4))
    then, other = res.arm_counts[branch]
    assert then + other == n
    assert abs(then / n - 0.4) < 4 * math.sqrt(0.4 * 0.6 / n)


def test_parallel_block_joins_on_its_last_child():
    m = manifest([op("s", "p", 5.0), op("x", "p", 30.0, ["s"], "parallel1"), op("y", "p", 50.0, ["s"], "parallel1"),
                  op("j", "p", 2.0, ["x", "y"])], {"p": 4}, regions={"parallel1": {"kind": "parallel", "parent": ""}})
    res = model.simulate(plan.from_manifest(m), at(0.0))
    assert res.requests[0].end_ms == pytest.approx(5 + 50 + 2)


def test_tool_waits_without_holding_a_device():
    # two requests at once on one device: the second waits only for the first's busy part
    m = manifest([op("call", "p", 1.0, wait=100.0)], {"p": 1})
    res = model.simulate(plan.from_manifest(m), at(0.0, 0.0))
    assert sorted(r.end_ms for r in res.requests) == pytest.approx([101.0, 102.0])


def test_concurrent_transfers_share_a_link():
    # a on pool p feeds b and c on pool q over one link: 10 ms on the wire each, shared
    edges = [{"src": "a", "dst": d, "src_pool": "p", "dst_pool": "q", "bytes": 1.0, "link": "p<->q", "ms": 11.0,
              "latency_ms": 1.0, "wire_ms": 10.0} for d in ("b", "c")]
    m = manifest([op("a", "p", 5.0), op("b", "q", 1.0, ["a"]), op("c", "q", 1.0, ["a"])], {"p": 1, "q": 2},
                 edges, returns=["b", "c"])
    res = model.simulate(plan.from_manifest(m), at(0.0))
    assert res.requests[0].end_ms == pytest.approx(5 + 20 + 1 + 1)
    # one transfer alone gets the whole link
    m = manifest([op("a", "p", 5.0), op("b", "q", 1.0, ["a"])], {"p": 1, "q": 2}, edges[:1])
    assert model.simulate(plan.from_manifest(m), at(0.0)).requests[0].end_ms == pytest.approx(5 + 10 + 1 + 1)


def test_a_landing_moved_while_its_consumer_waits_is_waited_for_again():
    """Request 1's transfer leaves at 5 alone (10 ms on the wire + 1: lands at 16, its
    consumer waits for that); request 2's joins the link at 8, when 7 ms of the first
    remain: both at half speed, the first's wire ends at 22 (lands 23, b ends 24), the
    second's 3 ms left alone end at 25 (lands 26, b ends 27)."""
    edges = [{"src": "a", "dst": "b", "src_pool": "p", "dst_pool": "q", "bytes": 1.0, "link": "p<->q", "ms": 11.0,
              "latency_ms": 1.0, "wire_ms": 10.0}]
    m = manifest([op("a", "p", 5.0), op("b", "q", 1.0, ["a"])], {"p": 2, "q": 2}, edges)
    res = model.simulate(plan.from_manifest(m), at(0.0, 3.0))
    assert [r.end_ms for r in res.requests] == pytest.approx([24.0, 27.0])


def test_continuous_batching_steps_and_tbt_by_hand():
    """Decode of 4 tokens, at most 2 sequences a step, 10 ms alone and 16 ms for two.
    A and B arrive at 0 and run together: tokens at 16, 32, 48, 64. C (at 0) and D
    (at 20) wait for the full batch to leave and run together from 64: 80 ... 128."""
    dec = op("dec", "gpu", 0.0, kind="llm.decode")
    dec.update(est_latency_ms=64.0, busy_ms=32.0, decode={"tokens": 4, "max_batch": 2, "step_ms": [[1, 10.0], [2, 16.0]]})
    res = model.simulate(plan.from_manifest(manifest([dec], {"gpu": 1})), at(0.0, 0.0, 0.0, 20.0))
    e2e = [r.end_ms - r.arrival_ms for r in res.requests]
    assert e2e == pytest.approx([64, 64, 128, 108])
    assert [r.ttft_ms for r in res.requests] == pytest.approx([16, 16, 80, 60])
    assert [r.tbt_ms for r in res.requests] == pytest.approx([16, 16, 16, 16])
    assert res.decode_batches["dec"] == [0, 8]
    # a lone sequence steps at the batch-1 time
    res = model.simulate(plan.from_manifest(manifest([dec], {"gpu": 1})), at(0.0))
    assert res.requests[0].end_ms == pytest.approx(40) and res.requests[0].tbt_ms == pytest.approx(10)


def test_calls_of_one_model_share_decode_batches():
    """Two decode ops of model m in parallel on one device share one engine: 4 steps at
    batch 2 (16 ms) = 64 ms. Of two different models they take turns on the device:
    each step alone (10 ms), interleaved, so the later finishes at 8 x 10 = 80 ms."""
    def dec(op_id, model_name):
        d = op(op_id, "gpu", 0.0, region="parallel1", kind="llm.decode", model=model_name)
        d.update(est_latency_ms=64.0, busy_ms=32.0,
                 decode={"tokens": 4, "max_batch": 2, "step_ms": [[1, 10.0], [2, 16.0]]})
        return d

    regions = {"parallel1": {"kind": "parallel", "parent": ""}}
    shared = manifest([dec("a", "m"), dec("b", "m")], {"gpu": 1}, regions=regions, returns=["a", "b"])
    assert model.simulate(plan.from_manifest(shared), at(0.0)).requests[0].end_ms == pytest.approx(64)
    apart = manifest([dec("a", "m"), dec("b", "n")], {"gpu": 1}, regions=regions, returns=["a", "b"])
    assert model.simulate(plan.from_manifest(apart), at(0.0)).requests[0].end_ms == pytest.approx(80)


def test_fifo_pool_serves_a_wide_request_before_later_narrow_ones():
    # one request needs both devices (tp 2); a narrow request arriving after it must not
    # overtake it even though a device is free (strict FIFO, no backfilling)
    m = manifest([op("n1", "p", 10.0, region="parallel1"), op("w", "p", 10.0, region="parallel1", tp=2)],
                 {"p": 2}, regions={"parallel1": {"kind": "parallel", "parent": ""}}, returns=["n1", "w"])
    res = model.simulate(plan.from_manifest(m), at(0.0, 1.0))
    # request 0: n1 at 0-10, w waits for both devices: 10-20; request 1: n1 queues
    # behind request 0's w (FIFO), so it runs 20-30, then its w 30-40
    assert [r.end_ms for r in res.requests] == pytest.approx([20.0, 40.0])


def test_same_seed_gives_identical_results_and_another_seed_does_not(flow_plan):
    arr = arrivals.poisson(50.0, np.random.default_rng(0), requests=500)
    cfg = model.Config(seed=7, cv=(("*", 0.5),), trace_requests=50, timeline=True)
    from agentc.sim import perfetto

    a, b = model.simulate(flow_plan, arr, cfg), model.simulate(flow_plan, arr, cfg)
    assert report.dumps(report.summarize(a)) == report.dumps(report.summarize(b))
    assert perfetto.dumps(a) == perfetto.dumps(b)
    c = model.simulate(flow_plan, arr, model.Config(seed=8, cv=(("*", 0.5),)))
    assert report.dumps(report.summarize(a)) != report.dumps(report.summarize(c))


def _examples():
    out = []
    for path in sorted(glob.glob(os.path.join(REPO, "examples", "*.agent"))):
        cluster = os.path.join(REPO, "examples", "clusters", os.path.basename(path).replace(".agent", ".toml"))
        out.append((path, cluster if os.path.isfile(cluster) else None))
    return out


@pytest.mark.parametrize("source,cluster", _examples(), ids=lambda x: os.path.basename(x) if x else "-")
def test_every_example_at_load_zero_matches_the_planner(source, cluster):
    """With deterministic service, requests far apart (no queueing) and decode at the
    planner's batched time, each request takes the planner's path latency; programs
    with loops or branches draw their control flow, so only a bound is checked. The
    manifest (with the simulation fields) validates against docs/manifest.schema.json."""
    import json

    import jsonschema

    m = plan.compile_manifest(source, cluster, ())
    with open(os.path.join(REPO, "docs", "manifest.schema.json")) as f:
        jsonschema.validate(m, json.load(f))
    p = plan.from_manifest(m, source)
    arr = at(*np.arange(40) * 1e6)
    res = model.simulate(p, arr, model.Config(seed=0, batching="planned"))
    e2e = np.array([r.end_ms - r.arrival_ms for r in res.requests])
    # the planner's e2e includes its queueing wait per op under the program's load; far
    # apart there is none (the programs without control flow here are chains, so every
    # waiting op is on the path)
    planned = p.planned["e2e_ms"] - sum(o.get("queue_wait_ms", 0.0) for o in m["ops"])
    if not p.has_control_flow:
        assert e2e == pytest.approx(np.full(len(e2e), planned), rel=1e-4)
    else:
        assert e2e.min() > 0
    # the default (continuous batching under load) runs end to end as well
    rate = p.load_rps or 1.0
    res = model.simulate(p, arrivals.poisson(rate, np.random.default_rng(0), requests=200))
    assert len(res.requests) == 200
