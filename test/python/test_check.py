"""`agentc check`, the CI gate: regressions beyond the bounds and SLA violations fail
(exit 1), everything else passes (exit 0)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from agentc import check
from agentc.diagnostics import UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "make")


def manifest(e2e=100.0, usd=0.01, hr=2.0, ttft=None, tbt=None, sla_e2e=150.0):
    return {"totals": {"e2e_ms": e2e, "usd_per_request": usd, "usd_per_hr": hr, "ttft_ms": ttft,
                       "tbt_ms": tbt},
            "sla": {"e2e_ms": sla_e2e, "ttft_ms": None, "tbt_ms": None, "mode": "hard"}}


def test_parse_bound():
    assert check.parse_bound("5%") == pytest.approx(0.05)
    assert check.parse_bound("12.5") == pytest.approx(0.125)
    assert check.parse_bound(None) is None
    with pytest.raises(UsageError, match="percentage"):
        check.parse_bound("five")
    with pytest.raises(UsageError, match=">= 0"):
        check.parse_bound("-1%")


def test_equal_plans_pass():
    r = check.compare(manifest(), manifest())
    assert not r.failed
    assert [row.status for row in r.rows] == ["ok", "ok", "ok"]  # ttft/tbt absent on both sides


def test_cost_regression_beyond_bound_fails_and_within_passes():
    r = check.compare(manifest(usd=0.0106), manifest(usd=0.01), max_cost_increase=0.05)
    assert r.failed and r.regressions == [
        "cost per request rose +6.00% ($0.01 -> $0.0106), more than the allowed +5.00%"]
    assert not check.compare(manifest(usd=0.0104), manifest(usd=0.01), max_cost_increase=0.05).failed


def test_latency_bound_is_separate_from_cost_bound():
    cur, base = manifest(e2e=108.0), manifest(e2e=100.0)
    assert check.compare(cur, base, max_latency_increase=0.05, max_cost_increase=0.5).failed
    assert not check.compare(cur, base, max_latency_increase=0.10, max_cost_increase=0.0).failed


def test_improvement_passes_and_is_marked():
    r = check.compare(manifest(e2e=80.0, usd=0.005), manifest())
    assert not r.failed
    assert {row.key: row.status for row in r.rows}["e2e_ms"] == "improved"


def test_sla_violation_fails_even_without_regression():
    r = check.compare(manifest(e2e=200.0), manifest(e2e=200.0))
    assert r.failed and not r.regressions
    assert r.sla_violations == ["e2e_ms 200 ms exceeds the SLA of 150 ms"]


def test_metric_missing_in_baseline_is_shown_but_does_not_fail():
    cur = manifest(ttft=50.0)
    r = check.compare(cur, manifest())
    assert not r.failed
    assert {row.key: row.status for row in r.rows}["ttft_ms"] == "new"


def test_manifest_without_totals_is_a_usage_error():
    with pytest.raises(UsageError, match="no 'totals'"):
        check.compare({}, manifest())


@pytest.mark.parametrize("baseline, message", [
    ({"schema_version": "9.9", "totals": {"e2e_ms": 1.0, "usd_per_request": 1.0}}, "schema version '9.9'"),
    ({"totals": {}}, "lack e2e_ms or usd_per_request"),
    ({"totals": {"e2e_ms": "fast", "usd_per_request": 0.01}}, "totals.e2e_ms is 'fast', not a number"),
])
def test_a_baseline_that_cannot_be_compared_fails_the_gate(baseline, message):
    """Not every metric "new" and a green gate: a usage error."""
    with pytest.raises(UsageError, match=message):
        check.compare(manifest(), baseline)


def test_non_utf8_baseline_is_a_usage_error(tmp_path):
    path = tmp_path / "b.json"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(UsageError, match="not UTF-8"):
        check.load_manifest(str(path))


def _agentc(*args, cwd):
    return subprocess.run(["agentc", *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """search.agent compiled once; each test writes files of its own names beside it."""
    tmp_path = tmp_path_factory.mktemp("check")
    for name in ("search.agent", "cluster.toml"):
        shutil.copy(os.path.join(EXAMPLE, name), tmp_path / name)
    r = _agentc("compile", "search.agent", "--cluster", "cluster.toml", "--targets", "cpu", "-o", "out",
                "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    if not (tmp_path / "out" / "manifest.json").is_file():
        pytest.skip("the manifest stage (targets/manifest.py) does not write manifest.json yet")
    return tmp_path


def test_cli_passes_against_its_own_manifest(project):
    r = _agentc("check", "search.agent", "--cluster", "cluster.toml", "--baseline", "out/manifest.json",
                cwd=project)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "agentc check: passed" in r.stdout
    assert "cost per request" in r.stdout and "e2e latency" in r.stdout


def test_cli_fails_on_cost_regression_with_table(project):
    base = json.loads((project / "out" / "manifest.json").read_text())
    base["totals"]["usd_per_request"] /= 1.5
    (project / "base.json").write_text(json.dumps(base))
    r = _agentc("check", "search.agent", "--cluster", "cluster.toml", "--baseline", "base.json", cwd=project)
    assert r.returncode == 1
    assert "regressed" in r.stdout and "+50.00%" in r.stdout
    assert "agentc check: FAILED" in r.stdout
    loose = _agentc("check", "out", "--baseline", "base.json", "--max-cost-increase", "60%", cwd=project)
    assert loose.returncode == 0, loose.stdout


def test_cli_fails_on_sla_violation_in_soft_mode(project):
    src = (project / "search.agent").read_text().replace("latency.p95 < 500ms", "latency.p95 < 1ms")
    (project / "tight.agent").write_text(src)
    r = _agentc("check", "tight.agent", "--cluster", "cluster.toml", "--sla-mode", "soft",
                "--baseline", "out/manifest.json", "--max-latency-increase", "1000%", cwd=project)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "SLA violated: e2e_ms" in r.stdout


def test_cli_json_output(project):
    r = _agentc("check", "out/manifest.json", "--baseline", "out/manifest.json", "--json", cwd=project)
    assert r.returncode == 0
    data = json.loads(r.stdout)
    assert data["passed"] is True and data["regressions"] == [] and data["rows"]


def test_cli_bad_baseline_is_a_usage_error(project):
    (project / "bad.json").write_text("{not json")
    r = _agentc("check", "out", "--baseline", "bad.json", cwd=project)
    assert r.returncode == 1
    assert "is not JSON" in r.stderr
