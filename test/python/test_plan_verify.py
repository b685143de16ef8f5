"""`agentc plan --verify`: the plan held to its SLA by simulation (issue 17, item 5)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
    assert "misses the bound 120 ms by" in r.stderr and "the plan predicted 120 ms" in r.stderr


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
    """rag is planned for 5 req/s; at 9 req/s its TTFT p99 misses. The repair grows the
    pools requests wait on until every term holds, then gives back what is not needed:
    removing one more replica from any pool it grew misses again (same seed)."""
    from agentc.sim import verify

    view = json.loads(_plan(*RAG, "--json").stdout)
    assert verify.verify(view, 9.0, requests=1000).misses
    prices = {p["name"]: 1.0 for p in view["cluster"]["pools"]}
    fixed_view, rep = verify.repair(view, prices, 9.0, requests=1000)
    assert rep.added and not rep.verdict.misses
    assert all(fixed_view["totals"]["devices"][k] == rep.before.get(k, 0) + n for k, n in rep.added.items())
    assert view["totals"]["devices"] == rep.before  # the input is not changed
    assert not verify.verify(fixed_view, 9.0, requests=1000).misses
    widest = {}
    for op in view["ops"]:
        widest[op["pool"]] = max(widest.get(op["pool"], 1), op["tp"])
    for pool in rep.added:
        less = json.loads(json.dumps(fixed_view))
        less["totals"]["devices"][pool] -= widest[pool]
        assert verify.verify(less, 9.0, requests=1000).misses, f"{pool} was grown more than needed"


def test_repair_on_the_command_line_reports_what_it_added_and_holds():
    r = _plan(*RAG, "--verify", "--repair", "--load", "9", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["holds"] and out["repair"]["added_devices"]
    assert set(out["repair"]["added_usd_per_hr"]) == set(out["repair"]["added_devices"])
    assert all(v > 0 for v in out["repair"]["added_usd_per_hr"].values())


def test_repair_needs_a_load_clause_and_verify():
    r = _plan(*TABLE3, "--verify", "--repair", "--load", "1")
    assert r.returncode == 1 and "--repair needs a plan sized for a load" in r.stderr
    r = _plan(*RAG, "--repair")
    assert r.returncode == 1 and "--repair goes with --verify" in r.stderr
