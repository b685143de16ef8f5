"""One transfer-time formula (agentc/units.py), used by the catalog's links and the
planner alike: checked by hand."""

from agentc.catalog.specs import Link
from agentc.planner import Instance, Link as PlanLink, Option, PlanEdge, PlanOp, Pool, Problem, SLA
from agentc.units import transfer_ms


def test_transfer_time_by_hand():
    # 1 GB over 400 Gb/s: 8e9 bits / 4e11 bit/s = 20 ms, plus 0.01 ms of latency
    assert transfer_ms(1e9, 400, 0.01) == 20.01
    assert transfer_ms(0, 400, 0.5) == 0.5


def test_catalog_link_and_planner_agree():
    link = Link("a", "b", gbps=200.0, latency_ms=0.05)
    nbytes = 123_456_789.0
    ops = [PlanOp("p", "llm.prefill", [Option("a", 1, 1.0, 0.0, 1.0)]),
           PlanOp("d", "llm.decode", [Option("b", 1, 1.0, 0.0, 1.0)])]
    problem = Problem(ops=ops, edges=[PlanEdge("p", "d", nbytes)],
                      pools=[Pool("a", "X", 1, 1.0), Pool("b", "Y", 1, 1.0)],
                      links=[PlanLink("a", "b", 200.0, 0.05)], sla=SLA())
    inst = Instance(problem)
    ms, _usd = inst.transfer(0, inst.site_index["a"], inst.site_index["b"])
    assert ms == link.transfer_ms(nbytes) == 0.05 + nbytes * 8 / 200e6
