"""The request walk runs ahead of SimPy's clock while no event is due before its next
wait, and starts a request without a Process when nothing else is due (model.py). Both
must leave every result unchanged: checked against the same simulation made to stop at
every wait and start every request as a Process (its environment reports an event due
at once, always), field by field and float by float, on the voice agent (transfers,
a loop, prefill and decode batching), deterministic (ties everywhere) and variable,
with tracing, timelines, a prefill budget and a device loss."""

from __future__ import annotations

import os

import numpy as np
import pytest
import simpy

from agentc.sim import arrivals, model, plan
from agentc.sim.resources import at

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def voice():
    return plan.load(os.path.join(REPO, "examples", "voice_agent.agent"))


def _outcome(sim: model.Simulation) -> tuple:
    r = sim.run()
    return (r.requests, r.pools, r.links, r.loop_trips, r.arm_counts, r.op_counts, r.decode_batches,
            r.prefill_batches, r.kv, r.trace, r.end_ms, r.unfinished, r.window_ms)


CASES = {
    "deterministic": dict(config=model.Config(seed=1), load=40.0, losses=()),
    "variable-traced": dict(config=model.Config(seed=2, cv=(("*", 0.5),), trace_requests=150, timeline=True,
                                                warmup=50), load=25.0, losses=()),
    "budget-and-loss": dict(config=model.Config(seed=3, cv=(("llm.decode", 0.3),), prefill_budget=600),
                            load=60.0, losses=(model.Loss(15_000.0, "b200", 4),)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_running_ahead_changes_no_result(voice, case):
    c = CASES[case]
    arr = arrivals.poisson(c["load"], np.random.default_rng(5), requests=1500)
    fast = model.Simulation(voice, arr, c["config"], c["losses"])
    stepwise = model.Simulation(voice, arr, c["config"], c["losses"])
    stepwise.stop_at_every_wait()
    a, b = _outcome(fast), _outcome(stepwise)
    assert len(a[0]) > 1000
    for x, y in zip(a, b):
        assert x == y


def test_a_timer_no_delay_reaches_fires_exactly_then():
    """A walk ahead of the clock sets a timer for t > 2 x the clock, where clock + delay
    skips t for every delay (ties to even; seen as a hang at 1.5x rag_agent's load, when
    timers were SimPy timeouts set by a delay): the timer goes on SimPy's heap at t itself."""
    m = {"schema_version": "1.2", "agent": "t", "sla": {}, "cluster": {"pools": [{"name": "p", "count": 1}]},
         "ops": [{"id": "a", "kind": "compute.cpu", "pool": "p", "tp": 1, "est_latency_ms": 1.0, "busy_ms": 1.0,
                  "region": "", "inputs": []}], "edges": [], "totals": {}, "regions": {}, "returns": ["a"]}
    sim = model.Simulation(plan.from_manifest(m), [])
    clock, t = 94.33723410558954, 356.2460086355896
    sim.env.run(until=clock)
    assert sim.env.now == clock and clock + (t - clock) != t
    fired = []
    sim._timeout_at(t).callbacks.append(lambda _e: fired.append(sim.env.now))
    sim.env.run()
    assert fired == [t]


def test_a_timer_on_the_heap_runs_where_simpys_timeout_would():
    """resources.at pushes a timer as SimPy's own schedule pushes a timeout: events due
    at one time run in the order they were made, SimPy's and ours mixed, and a process
    that waits on one is resumed with its value (checked against SimPy's Timeout)."""
    env = simpy.Environment()
    order = []
    env.timeout(1.0).callbacks.append(lambda _e: order.append(("timeout", env.now)))
    at(env, 1.0).callbacks.append(lambda _e: order.append(("at", env.now)))
    env.timeout(1.0).callbacks.append(lambda _e: order.append(("timeout 2", env.now)))
    at(env, 0.5).callbacks.append(lambda _e: order.append(("at 0.5", env.now)))

    def waits():
        got = yield at(env, 2.0, "value")
        order.append((got, env.now))
        got = yield env.timeout(1.0, "value 2")
        order.append((got, env.now))

    env.process(waits())
    env.run()
    assert order == [("at 0.5", 0.5), ("timeout", 1.0), ("at", 1.0), ("timeout 2", 1.0), ("value", 2.0),
                     ("value 2", 3.0)]
