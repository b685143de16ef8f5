"""`agentc plan --verify`: the plan held to its SLA by simulation (issue 17, item 5)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TABLE3 = ["examples/table3.agent", "--cluster", "examples/clusters/table3.toml"]


def _plan(*args):
    return subprocess.run([sys.executable, "-m", "agentc", "plan", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_light_load_simulation_agrees_with_the_plan():
    """Table 3 has no loops or branches: at a load where requests never meet, every one
    takes exactly the planned 120 ms, and the p99 SLA of 120 ms holds (99%+ meet it)."""
    r = _plan(*TABLE3, "--verify", "--load", "0.01", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    (term,) = out["terms"]
    assert term["planned_ms"] == 120 and abs(term["observed_ms"] - 120) < 1e-6
    assert out["holds"] and term["attained"] >= 0.99


def test_queueing_that_breaks_the_sla_is_an_error_that_says_by_how_much():
    """At 1 req/s the single HP and CO devices queue: the simulated p99 exceeds 120 ms."""
    r = _plan(*TABLE3, "--verify", "--load", "1")
    assert r.returncode == 1
    assert "examples/table3.agent:8:1: error: the plan does not hold its SLA in simulation at 1 req/s" in r.stderr
    assert "misses the bound 120 ms by" in r.stderr and "planned 120 ms, predicted " in r.stderr


def test_verify_is_deterministic_for_a_seed():
    a = _plan(*TABLE3, "--verify", "--load", "1", "--json", "--seed", "3")
    b = _plan(*TABLE3, "--verify", "--load", "1", "--json", "--seed", "3")
    assert a.stdout == b.stdout and a.stdout


def test_compile_verify_writes_nothing_when_the_plan_misses(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "agentc", "compile", *TABLE3, "--targets", "cpu", "--verify",
                        "--load", "1", "-o", str(out), "-q"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and "does not hold its SLA in simulation" in r.stderr
    assert not out.exists()
    r = subprocess.run([sys.executable, "-m", "agentc", "compile", *TABLE3, "--targets", "cpu", "--verify",
                        "--load", "0.01", "-o", str(out), "-q"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert (out / "manifest.json").is_file()


RAG = ["examples/rag_agent.agent"]


def test_repair_adds_devices_until_the_simulation_holds_and_no_more():
    """rag is planned for 5 req/s; at 7 req/s its TTFT p99 misses. The repair grows the
    pools requests wait on until every term holds, then gives back what is not needed:
    removing one more replica from any pool it grew misses again (same seed)."""
    from agentc.sim import verify

    view = json.loads(_plan(*RAG, "--json").stdout)
    assert verify.verify(view, 7.0, requests=1000).misses
    prices = {p["name"]: 1.0 for p in view["cluster"]["pools"]}
    fixed_view, rep = verify.repair(view, prices, 7.0, requests=1000)
    assert rep.added and not rep.verdict.misses
    assert all(fixed_view["totals"]["devices"][k] == rep.before.get(k, 0) + n for k, n in rep.added.items())
    assert view["totals"]["devices"] == rep.before  # the input is not changed
    # the grown devices are paid by the hour: $/hr and $ per request at the plan's 5 req/s
    added_hr = sum(rep.added.values())   # 1 $/hr per device here
    assert fixed_view["totals"]["usd_per_hr"] == pytest.approx(view["totals"]["usd_per_hr"] + added_hr, rel=1e-5)
    assert fixed_view["totals"]["usd_per_request"] == pytest.approx(
        view["totals"]["usd_per_request"] + added_hr / (3600 * 5.0), rel=1e-5)
    assert rep.usd_per_hr_before == view["totals"]["usd_per_hr"]
    assert rep.usd_per_hr_after == fixed_view["totals"]["usd_per_hr"]
    assert not verify.verify(fixed_view, 7.0, requests=1000).misses
    widest = {}
    for op in view["ops"]:
        widest[op["pool"]] = max(widest.get(op["pool"], 1), op["tp"])
    for pool in rep.added:
        less = json.loads(json.dumps(fixed_view))
        less["totals"]["devices"][pool] -= widest[pool]
        assert verify.verify(less, 7.0, requests=1000).misses, f"{pool} was grown more than needed"


def test_repair_on_the_command_line_re_plans_for_the_load_and_is_deterministic(tmp_path):
    """rag is planned for 5 req/s; held to 9 it is planned again for 9 (a load past the
    one a plan was sized for is re-planned before pools grow), which holds. The JSON says
    what moved, the devices per pool before and after and $/hr before and after, the
    same bytes for the same seed; `compile --verify --repair` writes that plan."""
    a = _plan(*RAG, "--verify", "--repair", "--load", "9", "--json")
    assert a.returncode == 0, a.stderr
    out = json.loads(a.stdout)
    rep = out["repair"]
    assert out["holds"] and rep["replanned_rps"] == 9.0 and rep["moved"]
    assert set(rep["added_usd_per_hr"]) == set(rep["added_devices"])
    assert all((v > 0) == (rep["added_devices"][k] > 0) for k, v in rep["added_usd_per_hr"].items())
    assert rep["usd_per_hr_after"] == pytest.approx(rep["usd_per_hr_before"] + sum(rep["added_usd_per_hr"].values()),
                                                    rel=1e-5)
    # the re-plan for 9 req/s is one the planner's own prediction holds (agentc/promise.py:
    # the first plan for 9 req/s put the retrieve on the shared EPYC, whose queue the
    # sizing model caps at 70% busy without charging its wait), so nothing is grown
    assert rep["tried"] == ["re-planned for 9 req/s, no devices added: holds"]
    b = _plan(*RAG, "--verify", "--repair", "--load", "9", "--json")
    assert a.stdout == b.stdout
    dest = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "agentc", "compile", *RAG, "--targets", "cpu", "--verify", "--repair",
                        "--load", "9", "-o", str(dest), "-q"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    m = json.loads((dest / "manifest.json").read_text())
    assert m["sla"]["load_rps"] == 9.0
    after = {k: rep["devices_before"].get(k, 0) + rep["added_devices"].get(k, 0)
             for k in set(rep["devices_before"]) | set(rep["added_devices"])}
    assert m["totals"]["devices"] == {k: n for k, n in sorted(after.items()) if n} == rep["devices_after"]
    assert m["totals"]["usd_per_hr"] == pytest.approx(rep["usd_per_hr_after"], rel=1e-5)


def test_a_repair_that_cannot_hold_says_what_it_tried():
    """rag at 40 req/s (growth only, no re-planner given): 16 growth steps (b200 +4 and
    mi300x +7 fill those pools, epyc +5) and the simulation still misses; the error gives
    the miss, each plan tried and why it stopped."""
    from agentc.diagnostics import InfeasiblePlanError
    from agentc.sim import verify

    view = json.loads(_plan(*RAG, "--json").stdout)
    prices = {p["name"]: 1.0 for p in view["cluster"]["pools"]}
    fixed_view, rep = verify.repair(view, prices, 40.0, requests=300)
    assert rep.verdict.misses and rep.replanned_rps is None
    count = {p["name"]: p["count"] for p in view["cluster"]["pools"]}
    assert len(rep.tried) == 1 and "stopped after 16 growth steps" in rep.tried[0]
    assert any(fixed_view["totals"]["devices"][k] == count[k] for k in rep.added)
    with pytest.raises(InfeasiblePlanError) as e:
        verify.check(rep.verdict, None, rep)
    text = str(e.value.message) + " ".join(e.value.notes)
    assert "--repair found no capacity that holds the SLA in simulation at 40 req/s" in text
    assert "misses the bound" in text and "tried: the plan, " in text and "simulation(s) of 300 requests" in text


def test_repair_needs_a_load_clause_and_verify():
    r = _plan(*TABLE3, "--verify", "--repair", "--load", "1")
    assert r.returncode == 1 and "--repair needs a plan sized for a load" in r.stderr
    r = _plan(*RAG, "--repair")
    assert r.returncode == 1 and "--repair goes with --verify" in r.stderr


def test_an_overloaded_prediction_is_valid_json():
    """At 100 req/s Table 3's single HP and CO devices are past their capacity: the
    prediction is unbounded, which --json writes as null (JSON has no Infinity; Python
    would write the non-standard token and other parsers reject the document)."""
    r = _plan(*TABLE3, "--verify", "--load", "100", "--json")
    assert r.returncode == 1
    out = json.loads(r.stdout, parse_constant=lambda name: pytest.fail(f"non-JSON constant {name}"))
    (term,) = out["terms"]
    assert term["predicted_ms"] is None and term["observed_ms"] > 1000


@pytest.mark.slow
def test_a_plan_within_the_noise_of_its_bound_is_not_verified(tmp_path):
    """rag with `load 6.6 rps` and `tbt < 16ms` (review 6) keeps a plan whose TTFT p99
    is 480.9 ms in one run of 2,000 requests (seed 0: the old --verify passed it),
    466-579 over seeds 0-9, and 519-524 in 10,000. --verify now judges replications:
    at 2,000 requests each, 40 replications leave the share meeting 500 ms at
    98.8-99.0%, astride 99% (not verified, exit 1, the interval said); at 10,000 each,
    5 decide it under 99% (a miss, by how much); --repair at 10,000 adds an epyc and
    that plan is verified there."""
    text = open(os.path.join(ROOT, "examples", "rag_agent.agent"), encoding="utf-8").read()
    src = tmp_path / "rag66.agent"
    src.write_text(text.replace("tbt < 30ms", "tbt < 16ms").replace("load 5 rps", "load 6.6 rps"))
    short = _plan(str(src), "--verify", "--json")
    assert short.returncode == 1
    doc = json.loads(short.stdout)
    ttft = doc["terms"][1]
    assert (doc["requests"], doc["replications"], doc["holds"]) == (2000, 40, False)
    assert ttft["term"] == "ttft" and not ttft["decided"] and not ttft["holds"]
    lo, hi = ttft["attained_ci"]
    assert lo < 0.99 <= hi and lo <= ttft["attained"] <= hi
    assert "error: the plan cannot be verified to hold its SLA in simulation at 6.6 req/s: ttft: simulated p99" \
        in short.stderr and "is within the simulation's noise of the bound 500 ms after 40 replications" \
        in short.stderr, short.stderr
    long = _plan(str(src), "--verify", "--requests", "10000")
    assert long.returncode == 1
    assert ("ttft: simulated p99 521.321 ms (95% interval 506.958-536.567 ms) misses the bound 500 ms by 21.32 ms "
            "(98.86% of requests meet it; planned 496.993 ms, predicted 453.344 ms)") in long.stderr, long.stderr
    fixed = _plan(str(src), "--verify", "--repair", "--requests", "10000", "--json")
    assert fixed.returncode == 0, fixed.stderr
    doc = json.loads(fixed.stdout)
    assert doc["requests"] == 10000 and doc["holds"] and doc["repair"]["added_devices"] == {"epyc": 1}, doc["repair"]
    assert all(t["decided"] and t["attained_ci"][0] >= t["percentile"] / 100 for t in doc["terms"]), doc["terms"]