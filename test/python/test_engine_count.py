"""The prediction and the simulator count the same decode engines (issue 17, review 5):
under a load clause a model's decodes on a pool run on the engines their replicas make
(the servers `agentc deploy` starts), plus one per tp of devices no replicas hold. Each
side writes that rule on its own (predict._engines, sim/engines.py decode_engines);
here both are read off every example's plan, and the count is held to the manifest's
replicas, summed by hand."""

from __future__ import annotations

import json
import os

import pytest

from agentc import pipeline, promise
from agentc.cli._common import make_options
from agentc.planner import predict
from agentc.sim import model, plan as sim_plan
from agentc.targets import manifest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = ("voice_agent", "rag_agent", "react_tools", "supervisor")


def _predicted_engines(c, view: dict, load: float) -> dict[frozenset, int]:
    """The engines the prediction gives each group of decodes (their op ids)."""
    seen: dict[frozenset, int] = {}
    real = predict._engines

    def spy(ch, j, ops, group, n):
        k = real(ch, j, ops, group, n)
        seen[frozenset(c.placement.problem.ops[i].id for i in group)] = k
        return k

    predict._engines = spy
    try:
        c.placement.predictions.clear()
        promise.prediction(c, load, view)
    finally:
        predict._engines = real
    return seen


@pytest.mark.parametrize("name", EXAMPLES)
def test_prediction_and_simulator_run_the_engines_the_replicas_make(name):
    c = pipeline.compile_file(os.path.join(ROOT, "examples", f"{name}.agent"), make_options(emit="placed"),
                              or_later=True)
    pipeline.placement(c)
    view = json.loads(manifest.dumps(manifest.build(c)))
    load = view["sla"].get("load_rps")
    sim = model.Simulation(sim_plan.from_manifest(view), [])
    simulated = {frozenset(op_id for op_id, d in sim.decoders.items() if d is dec): len(dec.engines)
                 for dec in sim.all_decoders}
    assert simulated, "every example decodes"
    ops = {o["id"]: o for o in view["ops"]}
    whole = {p["name"]: p["count"] for p in view["cluster"]["pools"]}
    devices = view["totals"]["devices"] if load else whole
    for group, k in simulated.items():
        pool = ops[next(iter(group))]["pool"]
        tp = ops[next(iter(group))]["tp"]
        held = sum(o["replicas"] * o["tp"] for o in view["ops"] if o["pool"] == pool and not o.get("split"))
        by_hand = sum(ops[i]["replicas"] for i in group) + max(0, devices[pool] - held) // tp
        assert k == max(1, min(by_hand, devices[pool] // tp) if load else devices[pool] // tp), (group, k, by_hand)
    predicted = _predicted_engines(c, view, float(load or 1.0))
    if not load:   # no load clause: one engine per tp devices of the whole pool, not the replicas' count
        assert predicted == {}
        return
    # the prediction groups only the decodes it batches (batch > 1); each is one of the simulator's groups
    assert predicted and all(predicted[g] == simulated[g] for g in predicted), (predicted, simulated)
