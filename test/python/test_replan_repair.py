"""Re-planning under load starts from the running plan as it is (agentc/planner/replan.py,
`_repair`): an option comes in one choice per replica count, and the running count is
the one kept; a lost device that binds is repaired by stopping one replica where the SLA
allows, without a MILP and without moving an op.

The graph, worked by hand: op1 -> op2, each 100 ms on pool a ($1/hr per device) only, at
15 req/s: 1.5 busy devices each. The planner offers 4, 5 or 6 replicas per op; their
queueing waits (agentc/planner/queueing.py) are checked below to fall as replicas grow,
with 6 replicas waiting nothing. e2e SLA 225 ms: 200 ms of work leaves 25 ms of waiting.
The running plan holds 6 + 6 replicas on 12 devices (made when the SLA was tighter)."""

from __future__ import annotations

import pytest

from agentc.planner import SLA, Instance, Option, PlanEdge, PlanOp, Pool, Problem
from agentc.planner import replan

RUNNING = replan.Previous({"op1": replan.Placed("a", 1, 6), "op2": replan.Placed("a", 1, 6)})


def chain(count: int, sla_ms: float = 225.0) -> Problem:
    ops = [PlanOp(op, "compute", [Option("a", 1, 100.0, 0.0, 100.0)]) for op in ("op1", "op2")]
    return Problem(ops, [PlanEdge("op1", "op2", 0.0)], [Pool("a", "X", count, 1.0)], [], SLA(sla_ms), load_rps=15.0)


class NoMilp:
    def __init__(self, *a, **k):
        raise AssertionError("the repair should not need a MILP here")


def _waits(inst):
    return {(inst.ops[c.op].id, c.replicas): c.wait_ms for c in inst.choices}


def test_the_offered_replica_counts_wait_as_the_docstring_says():
    w = _waits(Instance(chain(12)))
    assert sorted({r for _, r in w}) == [4, 5, 6]
    assert w[("op1", 4)] > 25.0 >= w[("op1", 5)] > w[("op1", 6)] == 0.0
    assert 2 * w[("op1", 5)] > 25.0   # two ops at 5 replicas break the SLA


def test_the_running_replica_count_is_kept(monkeypatch):
    """Unchanged inventory: the running 6 + 6 is the repaired plan as it stands (the
    first choice per option, 4 replicas, waits past the SLA)."""
    monkeypatch.setattr(replan, "Formulation", NoMilp)
    inst = Instance(chain(12), merge_identical=False)
    m = replan._repair(inst, RUNNING, {})
    assert sorted(inst.choices[k].replicas for k in m.choice) == [6, 6]
    assert inst.feasible(m)


def test_a_binding_device_loss_stops_one_replica_and_moves_nothing(monkeypatch):
    """11 devices: one op must drop to 5 replicas (e2e 200 + one 5-replica wait <= 225);
    two at 5 would break the SLA, so exactly one replica goes, and no op moves."""
    monkeypatch.setattr(replan, "Formulation", NoMilp)
    inst = Instance(chain(11), merge_identical=False)
    m = replan._repair(inst, RUNNING, {})
    assert m is not None and inst.feasible(m)
    assert sorted(inst.choices[k].replicas for k in m.choice) == [5, 6]
    assert all(inst.sites[inst.choices[k].site].name == "a" for k in m.choice)
    assert m.devices == {0: 11} and m.e2e_ms <= 225.0


def test_the_re_plan_reports_that_plan_honestly():
    """Through `replan.solve`: the same plan; 'optimal' only with a proven gap."""
    r = replan.solve(chain(11), RUNNING)
    assert sorted(x.replicas for x in r.plan.ops.values()) == [5, 6]
    assert r.movement_usd == pytest.approx(replan.Movement().usd_per_replica_stopped)
    assert r.plan.status in ("optimal", "feasible")
    if r.plan.status == "optimal":
        assert r.plan.gap is not None and r.plan.gap <= chain(11).mip_rel_gap + 1e-12


def test_too_few_devices_for_any_single_stop_falls_back_to_the_search():
    """10 devices need two replicas gone, which the SLA forbids: no plan, said as such."""
    from agentc.diagnostics import InfeasiblePlanError

    with pytest.raises(InfeasiblePlanError):
        replan.solve(chain(10), RUNNING)


def with_side_op(count_a: int) -> Problem:
    """The chain at SLA 205 ms (both ops need 6 replicas: one at 5 waits 20 ms) plus op3,
    off the chain: 10 ms on pool a, or 30 ms on pool b at $2/hr per device."""
    ops = [PlanOp(op, "compute", [Option("a", 1, 100.0, 0.0, 100.0)]) for op in ("op1", "op2")]
    ops.append(PlanOp("op3", "compute", [Option("a", 1, 10.0, 0.0, 10.0), Option("b", 1, 30.0, 0.0, 30.0)]))
    return Problem(ops, [PlanEdge("op1", "op2", 0.0)], [Pool("a", "X", count_a, 1.0), Pool("b", "Y", 4, 2.0)],
                   [], SLA(205.0), load_rps=15.0)


def test_when_no_replica_can_stop_the_op_with_slack_moves(monkeypatch):
    """Running: op1, op2 at 6 replicas and op3 at its fewest (1) on a's 13 devices. With 12,
    no replica can stop (the chain has 5 ms of slack; op3 has one), so op3, off the
    chain, moves to b, at its fewest replicas there (2: the cheapest, $4/hr)."""
    monkeypatch.setattr(replan, "Formulation", NoMilp)
    running = replan.Previous({**RUNNING.ops, "op3": replan.Placed("a", 1, 1)})
    inst = Instance(with_side_op(12), merge_identical=False)
    w = _waits(inst)
    assert min(r for (op, r) in w if op == "op3") == 1 and w[("op1", 5)] > 5.0
    m = replan._repair(inst, running, {})
    assert m is not None and inst.feasible(m)
    got = {inst.ops[i].id: (inst.sites[inst.choices[k].site].name, inst.choices[k].replicas)
           for i, k in enumerate(m.choice)}
    assert got == {"op1": ("a", 6), "op2": ("a", 6), "op3": ("b", 2)}
