"""Review of agentc/promise.py (the `placed` stage's walk down to a plan whose
prediction holds the SLA). Each defect found is a strict xfail naming it, so the fix
turns it into a pass; the rest pins what the review checked and found to hold.

References are independent of the walk: the simulator (agentc/sim, no code shared with
the planner's prediction or the MILP), the plans the MILP returns for other bounds, and
the module printed at `placed` planned again."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from helpers import cli_ok

from agentc.cli import cli
from agentc.sim import verify

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RAG = os.path.join(ROOT, "examples", "rag_agent.agent")


def _variant(tmp_path, name: str, *edits: tuple[str, str], base: str = RAG) -> str:
    text = open(base, encoding="utf-8").read()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    src = tmp_path / f"{name}.agent"
    src.write_text(text)
    return str(src)


def _plan(path: str, *args) -> dict:
    return json.loads(cli_ok("plan", path, "--json", *args))


def test_loosening_ttft_from_470_to_480_does_not_make_the_plan_dearer(tmp_path):
    """ttft < 470: the MILP's plan (TTFT figure 449 ms, $8.565/hr) is predicted at 456 ms
    and kept. ttft < 480: the MILP returns another plan of the same $8.565/hr (figure
    386 ms, predicted 495 ms); the walk stepped below 386 ms, past the 449 ms plan that
    holds 480 too, and kept a $8.993/hr plan (the MILP's optimum is not unique: cost
    counts whole devices). Now the missed plan is excluded and the MILP's other plan of
    that cost is met before any dearer one."""
    tight = _plan(_variant(tmp_path, "t470", ("ttft < 500ms", "ttft < 470ms")))
    loose = _plan(_variant(tmp_path, "t480", ("ttft < 500ms", "ttft < 480ms")))
    assert "sized_ms" not in tight["sla"] and tight["totals"]["usd_per_hr"] == pytest.approx(8.56526, rel=1e-4)
    assert loose["totals"]["usd_per_hr"] <= tight["totals"]["usd_per_hr"] * (1 + 1e-9), \
        (tight["totals"], loose["totals"], loose["sla"].get("sized_ms"))
    assert loose["sla"]["excluded_plans"] == 1 and "sized_ms" not in loose["sla"]


def test_the_kept_plan_holds_in_simulation_at_6_rps(tmp_path):
    """rag with ttft < 450 ms at 6 req/s (D2): the walk kept a $9.58/hr plan predicted at
    395.6 ms and simulated at 498-513 ms (4,000-20,000 requests, seeds 0-1): the p99 is
    a prompt batched with one more (1.4% of prompts, +200 ms), which the prediction's
    batch, its mean given the wait, missed. With the batch a discrete count
    (queueing.BatchLaw) that plan is predicted at 511.5 ms, over 450: the walk goes on
    (the 5-B200 plan it then meets, $9.33/hr, prefill and decode on the B200s, is
    predicted at 443.5 ms) and keeps it. Simulated at the steady state, 20,000 requests:
    443.0 and 446.2 ms (seeds 0-1), so it holds, by 1%; 4,000 requests read 454-456
    (2,000: 424-447), the p99 of a short run spreading 2-3% over seeds."""
    m = _plan(_variant(tmp_path, "l6", ("ttft < 500ms", "ttft < 450ms"), ("load 5 rps", "load 6 rps")))
    assert m["sla"]["sized_ms"]["ttft_ms"] < 450.0
    for seed in (0, 1):
        held = {t["term"]: t for t in verify.verify(m, requests=20000, seed=seed).terms}
        assert held["ttft"]["holds"], (seed, held["ttft"])


def test_replan_reports_the_move_of_the_plan_it_writes(tmp_path):
    """replan of rag's running plan (ttft figure 386 ms) onto a program with ttft < 450:
    the first solve keeps the running plan (nothing moves, $0), its prediction 495 ms
    misses, the walk excludes it and solves again, and the plan written moves;
    replan's Replanned (replan.json's movement_usd, its notes) is that last solve's
    (it was the first solve's: cli/replan.py took result[0])."""
    from agentc.cli.replan import replan_compile

    running = tmp_path / "manifest.json"
    running.write_text(cli_ok("plan", RAG, "--json"))
    src = _variant(tmp_path, "rp450", ("ttft < 500ms", "ttft < 450ms"))
    cwd = os.getcwd()
    os.chdir(ROOT)   # the manifest names its source relative to the repository
    try:
        _c, _old, new, replanned, _ = replan_compile(str(running), "agentc/catalog/default_cluster.toml",
                                                     source=src, plan_only=True)
    finally:
        os.chdir(cwd)
    assert new["sla"]["excluded_plans"] >= 1 and new["totals"]["ttft_ms"] <= 450.0
    assert replanned.plan.usd_per_hr == pytest.approx(new["totals"]["usd_per_hr"], rel=1e-5)


def test_two_terms_over_at_once_are_both_sized_and_both_held(tmp_path):
    """ttft < 450 and latency.p95 < 3800: the MILP's plan is predicted over both (495 ms,
    3877 ms); both sizing bounds go below its figures at once, and the plan kept holds
    both in simulation. A placed module and a costed one plan to the same plan."""
    src = _variant(tmp_path, "two", ("ttft < 500ms", "ttft < 450ms"), ("latency.p95 < 4000ms", "latency.p95 < 3800ms"))
    m = _plan(src)
    sized = m["sla"]["sized_ms"]
    assert set(sized) == {"e2e_ms", "ttft_ms"} and sized["e2e_ms"] < 3800 and sized["ttft_ms"] < 450
    assert m["totals"]["e2e_ms"] <= sized["e2e_ms"] and m["totals"]["ttft_ms"] <= sized["ttft_ms"]
    held = {t["term"].split(".")[0]: t for t in verify.verify(m, requests=4000).terms}
    assert held["latency"]["holds"] and held["ttft"]["holds"], held
    for stage in ("placed", "costed"):
        mod = tmp_path / f"two.{stage}.mlir"
        cli_ok("compile", src, "--emit", stage, "-o", str(mod))
        again = _plan(str(mod))
        for key in ("sla", "ops", "totals"):
            assert again[key] == m[key], (stage, key)


def test_a_program_without_llm_calls_sizes_its_latency_only(tmp_path):
    """No LLM call: TTFT and TBT have no figure and no prediction (None); a latency
    bound the prediction misses (19.0 ms predicted, < 16 ms asked) is still walked. The
    plan kept is predicted at 14.7 ms and simulated at 15.4-16.1 ms (2,000-12,000
    requests, seeds 0-1): it holds at 12,000, with a thin margin (the 4,000-request
    run at seed 0 reads 16.13 ms)."""
    src = tmp_path / "nollm.agent"
    src.write_text("model minilm = minilm-l6\nindex docs(size=10M, dim=384)\n\n"
                   "agent nollm(question: text) -> json {\n  sla { latency < 16ms; ttft < 5ms }\n  load 50 rps\n"
                   "  e    = embed(minilm, question)\n  hits = retrieve(docs, e, k=8)\n"
                   "  out  = tool fmt(hits, latency=5ms, payload=1KB)\n  return out\n}\n")
    m = _plan(str(src))
    assert m["totals"]["ttft_ms"] is None and set(m["sla"]["sized_ms"]) == {"e2e_ms"}
    held = {t["term"].split(".")[0]: t for t in verify.verify(m, requests=12000).terms}
    assert held["latency"]["holds"], held


def test_an_infinite_prediction_is_walked_and_then_a_located_error(tmp_path, monkeypatch):
    """A pool the prediction sees overloaded (an infinite TTFT) is a miss like any
    other: the walk goes on and, when no plan is predicted to hold, the error is located,
    exit 1, no traceback."""
    from agentc import promise

    monkeypatch.setattr(promise, "prediction", lambda c, load, view=None: {
        "e2e_ms": 100.0, "ttft_ms": float("inf"), "tbt_ms": 1.0})
    src = _variant(tmp_path, "inf", ("ttft < 500ms", "ttft < 450ms"))
    res = CliRunner().invoke(cli, ["plan", src], prog_name="agentc")
    assert res.exit_code == 1, res.output
    assert res.output.startswith(f"{src}:8:1: error: no plan is predicted to hold the SLA"), res.output
    assert "ttft predicted inf ms, over 450 ms" in res.output and "Traceback" not in res.output


def test_loosening_the_latency_bound_never_makes_the_kept_plan_dearer(tmp_path):
    """The e2e term walked (3800: 2 plans excluded, then sized), against the plans other
    latency bounds keep: $/hr never rises as the bound loosens (measured: 9.762, 9.534,
    9.534, 9.153, 8.993, 8.565; with the sparser decode batch menu the walk ran at 2600
    too, 3 plans, to the same 9.534)."""
    costs = []
    for b in (2400, 2600, 3000, 3200, 3800, 4000):
        m = _plan(_variant(tmp_path, f"lat{b}", ("latency.p95 < 4000ms", f"latency.p95 < {b}ms")))
        costs.append((b, m["totals"]["usd_per_hr"], m["sla"].get("excluded_plans")))
    assert costs[4][2], costs   # the walk ran at 3800
    for (_, c0, _), (_, c1, _) in zip(costs, costs[1:]):
        assert c1 <= c0 * (1 + 1e-9), costs


def test_the_walk_is_deterministic_across_hash_seeds(tmp_path):
    src = _variant(tmp_path, "det", ("ttft < 500ms", "ttft < 450ms"), ("latency.p95 < 4000ms", "latency.p95 < 3800ms"))
    outs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        outs.append(subprocess.run([os.path.join(os.path.dirname(sys.executable), "agentc"), "plan", src, "--json"], env=env,
                                   capture_output=True, check=True, cwd=str(tmp_path)).stdout)
    assert outs[0] == outs[1] and b"sized_ms" in outs[0]


def test_a_walk_that_never_reaches_the_bound_ends_in_the_step_limits_located_error(tmp_path):
    """voice at 20 req/s with ttft < 100 ms (a loop, an every-path TTFT): each plan of
    the walk, at the program's bounds or sized to 72-75 ms, is predicted at 136-175 ms
    (simulated ~158 ms for the example's plan), so no plan left makes the prediction
    hold; after 9 plans the error is located at the agent with each plan tried, exit
    1, no traceback."""
    src = _variant(tmp_path, "v20", ("sla {", "load 20 rps\n  sla {"), ("ttft < 250ms", "ttft < 100ms"),
                   base=os.path.join(ROOT, "examples", "voice_agent.agent"))
    res = CliRunner().invoke(cli, ["plan", src], prog_name="agentc")
    assert res.exit_code == 1, res.output
    assert res.output.startswith(f"{src}:13:1: error: no plan is predicted to hold the SLA"), res.output
    assert "after 9 plans" in res.output and res.output.count("note: tried: ") == 9, res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize("term, old, bounds", [
    ("ttft", "ttft < 500ms", range(348, 501, 8)),
    ("latency", "latency.p95 < 4000ms", range(2480, 4001, 80)),
], ids=["ttft", "latency"])
def test_cost_never_rises_as_a_bound_loosens_over_a_sweep(tmp_path, monkeypatch, term, old, bounds):
    """rag, one bound swept over 20 points, the others as written: each kept plan meets
    the bound in the MILP's model and in its prediction (the last plan the walk
    predicted), and $/hr never rises from one point to the next. Measured, ttft
    348-500: 9.534 (348-356), 8.993 (364-444, sized below 386 ms from 388), 8.565
    (452-500; the walk kept 8.993 at 452-484 before it searched plans of equal cost);
    latency 2480-4000: 9.762 to 8.565 in five steps."""
    from agentc import promise

    seen = []
    real = promise.prediction
    monkeypatch.setattr(promise, "prediction", lambda c, load, view=None: seen.append(real(c, load, view)) or seen[-1])
    key = {"ttft": "ttft_ms", "latency": "e2e_ms"}[term]
    costs = []
    for b in bounds:
        m = _plan(_variant(tmp_path, f"{term}{b}", (old, old.split("<")[0] + f"< {b}ms")))
        assert m["totals"][key] <= b and seen[-1][key] <= b, (b, m["totals"], seen[-1])
        assert all(seen[-1][k] <= m["sla"][k] for k in ("e2e_ms", "ttft_ms", "tbt_ms")), (b, seen[-1])
        costs.append((b, m["totals"]["usd_per_hr"]))
    assert len(costs) == 20
    for (_, c0), (_, c1) in zip(costs, costs[1:]):
        assert c1 <= c0 * (1 + 1e-9), costs
    assert costs[-1][1] < costs[0][1], costs   # the sweep crosses plans of several costs


@pytest.mark.parametrize("edit", [("ttft < 500ms", "ttft < 356ms"), ("ttft < 500ms", "ttft < 480ms"),
                                  ("latency.p95 < 4000ms", "latency.p95 < 2560ms")], ids=["ttft356", "ttft480", "e2e2560"])
def test_plans_the_walk_keeps_hold_in_simulation(tmp_path, edit):
    """Points of the sweep where the walk ran (356: two plans excluded, then sized;
    480: one plan excluded, the other of its cost kept; 2560: one excluded within its
    cost, then sized): the simulator (4,000 requests, seed 0) holds every term. Not at
    every point is simulated here: the plans of 8.565 $/hr kept from 460 ms on have a
    TTFT predicted at 456 ms and simulated at 397-462 ms over seeds 0-2 (4,000 requests)
    and 439 ms over 12,000; at 450 the walk now excludes that plan too (test_promise.py)."""
    m = _plan(_variant(tmp_path, "sim", edit))
    assert m["sla"]["excluded_plans"] >= 1
    held = {t["term"]: t for t in verify.verify(m, requests=4000).terms}
    assert all(t["holds"] for t in held.values()), held
