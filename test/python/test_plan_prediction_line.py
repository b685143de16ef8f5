"""`agentc plan`'s table ends with the plan's prediction (planner/predict.py) at the
rate its latency terms are stated for: the same figures `plan --verify --json` reports
as `predicted_ms` beside the simulation, and a term the prediction puts over its bound
is named with what to run."""

from __future__ import annotations

import json
import os

from helpers import cli_ok

from agentc.report import num

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.startswith("predicted at ")]
    assert len(lines) == 1, text
    return lines[0]


def test_the_plans_prediction_is_the_one_verify_reports():
    src = os.path.join(ROOT, "examples/voice_agent.agent")
    line = _line(cli_ok("plan", src))
    doc = json.loads(cli_ok("plan", src, "--verify", "--json"))
    assert doc["load_rps"] == 1.0   # no load clause: latency terms are stated at the light rate
    assert line.startswith("predicted at 1 req/s as the simulator runs the plan: ")
    names = {"latency.p99": "latency.p99", "ttft": "ttft", "tbt": "tbt"}
    for term in doc["terms"]:
        assert f"{names[term['term']]} {num(term['predicted_ms'])} ms" in line, (term, line)
        assert term["predicted_ms"] <= term["bound_ms"]
    assert "over the bound" not in line


def test_a_term_predicted_over_its_bound_is_named(monkeypatch):
    """The words for a prediction over a bound (a TTFT predicted at 520 ms against 500)
    and for an unbounded one (an overloaded pool), at the plan's stated rate."""
    from agentc.cli import plan as plan_cli

    view = {"sla": {"latency_rps": 5.0, "e2e_ms": 4000.0, "ttft_ms": 500.0, "tbt_ms": None,
                    "stats": {"e2e": "p95", "ttft": "all", "tbt": "all"}}}
    monkeypatch.setattr(plan_cli, "predictor_at",
                        lambda c, own_view=None: lambda rps: {"e2e_ms": 3900.0, "ttft_ms": 520.0, "tbt_ms": float("inf")})
    assert plan_cli.prediction_line(None, view) == (
        "predicted at 5 req/s as the simulator runs the plan: latency.p95 3900 ms, ttft 520 ms, tbt unbounded; "
        "over the bound: ttft (check with --verify, add capacity with --verify --repair)")
    view["sla"]["latency_rps"] = None   # no rate stated: nothing to predict at
    assert plan_cli.prediction_line(None, view) is None


def test_a_bound_on_a_term_the_program_has_no_figure_for(tmp_path):
    """A ttft and tbt bound on a program without an LLM call: the prediction has no
    figure for them (None), which is neither over its bound nor an internal error."""
    src = tmp_path / "tools.agent"
    src.write_text("agent t(query: text) -> json {\n"
                   "  sla { latency < 4000ms; ttft < 300ms; tbt < 40ms }\n"
                   "  past = memory.load(query, store=episodic, bytes=16KB, latency=2ms)\n"
                   "  results = tool search(past, latency=200ms, payload=32KB)\n"
                   "  return results\n"
                   "}\n")
    line = _line(cli_ok("plan", str(src)))
    assert "over the bound" not in line and "latency 202 ms" in line


def test_the_kept_plan_is_predicted_once(monkeypatch):
    """rag at its load: the promise step predicts the plan it keeps, and the table's
    last line prints that same prediction instead of computing it again. A plan grown
    by --repair is a new placement and is predicted anew (cli/plan.py)."""
    import importlib

    replay = importlib.import_module("agentc.planner.replay")   # (the package's `replay` is a function)
    calls = []
    at_load = replay.at_load

    def counted(*args, **kwargs):
        calls.append(args[0].load_rps)
        return at_load(*args, **kwargs)

    monkeypatch.setattr(replay, "at_load", counted)
    line = _line(cli_ok("plan", os.path.join(ROOT, "examples/rag_agent.agent")))
    assert line.startswith("predicted at 5 req/s as the simulator runs the plan: ")
    assert calls == [5.0]


def test_a_baseline_not_proven_optimal_says_its_gap(monkeypatch, capsys):
    """`plan`'s baseline lines: a fleet whose solve stopped at a gap (manifest status
    `feasible`) is printed with it; a proven one only with its ratio."""
    from agentc.cli import plan as plan_cli

    view = json.loads(cli_ok("plan", os.path.join(ROOT, "examples/rag_agent.agent"), "--json"))
    proven = next(b for b in view["baselines"] if b["feasible"])
    assert proven["status"] == "optimal"
    view["baselines"] = [proven, dict(proven, name="homogeneous X", status="feasible", gap=0.125)]
    plan_cli._print_plan(view)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("baseline ")]
    assert lines[0] == f"baseline {proven['name']}: cost {num(proven['cost'])} (ratio {num(proven['ratio'])})"
    assert lines[1].endswith(f"(ratio {num(proven['ratio'])}; not proven optimal: feasible (gap 12.5%))")
