"""The paper's Table 3 through the whole compiler: .agent -> decomposed -> costed with
profiled costs -> MILP placement. Hand-worked figures from PAPER.md section 3."""

import os

import pytest

from agentc import pipeline
from agentc.diagnostics import InfeasiblePlanError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLUSTER = os.path.join(ROOT, "examples", "clusters", "table3.toml")


def _plan(tmp_path, sla_ms):
    src = open(os.path.join(ROOT, "examples", "table3.agent")).read().replace("latency < 120ms",
                                                                              f"latency < {sla_ms}ms")
    path = tmp_path / "t3.agent"
    path.write_text(src)
    c = pipeline.compile_file(str(path), pipeline.Options(emit="placed", cluster=CLUSTER))
    plan = c.plan
    where = {op_id.split(".")[-1]: p.pool for op_id, p in plan.ops.items()}
    return plan, where


def test_optimum_is_prefill_hp_decode_co(tmp_path):
    plan, where = _plan(tmp_path, 120)
    assert (where["prefill"], where["decode"]) == ("hp", "co")
    assert plan.e2e_ms == pytest.approx(80 + 10 + 30)
    assert plan.usd_per_request == pytest.approx(0.08 + 0.01 + 0.005)


def test_runner_up_is_all_hp_and_all_co_violates(tmp_path):
    plan, _ = _plan(tmp_path, 120)
    by_name = {b.name: b for b in plan.baselines}
    assert by_name["homogeneous HP"].cost == pytest.approx(0.11)
    assert by_name["homogeneous HP"].e2e_ms == pytest.approx(105)
    assert not by_name["homogeneous CO"].feasible
    assert by_name["homogeneous CO"].e2e_ms == pytest.approx(160)


@pytest.mark.parametrize("sla, prefill, decode, ms, usd", [
    (110, "hp", "hp", 105, 0.11),     # B no longer fits: A
    (160, "co", "co", 160, 0.06),     # everything on CO fits: 1000*5e-5 + 500*2e-5
])
def test_changing_the_sla_changes_the_answer(tmp_path, sla, prefill, decode, ms, usd):
    plan, where = _plan(tmp_path, sla)
    assert (where["prefill"], where["decode"]) == (prefill, decode)
    assert plan.e2e_ms == pytest.approx(ms)
    assert plan.usd_per_request == pytest.approx(usd)


def test_too_tight_sla_names_the_e2e_term(tmp_path):
    with pytest.raises(InfeasiblePlanError) as err:
        _plan(tmp_path, 100)
    text = err.value.render()
    assert "e2e" in text and "5 ms" in text
    assert err.value.loc is not None and err.value.loc.line == 8
