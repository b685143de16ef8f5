"""`agentc simulate` on the command line: the table, --json, -o outputs (byte-identical
for one seed), traces, and bad input as `file:line:col: error:` with exit 1."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from agentc.cli import cli
from helpers import tree_bytes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RAG = os.path.join(REPO, "examples", "rag_agent.agent")


def invoke(*args):
    return CliRunner().invoke(cli, ["simulate", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory):
    """A manifest of the RAG example, compiled once through the simulator's own path."""
    from agentc.sim import plan

    path = tmp_path_factory.mktemp("m") / "manifest.json"
    path.write_text(json.dumps(plan.compile_manifest(RAG, None, ()), indent=2, sort_keys=True))
    return path


def test_table_and_json(manifest_path):
    r = invoke(str(manifest_path), "--requests", "300")
    assert r.exit_code == 0, r.output
    assert "end-to-end" in r.output and "SLA" in r.output and "goodput" in r.output
    r = invoke(str(manifest_path), "--requests", "300", "--json")
    d = json.loads(r.output)
    assert d["requests"] == 270 and d["warmup"] == 30
    assert set(d["latency_ms"]["e2e"]) == {"mean", "max", "p50", "p90", "p99", "p99.9"}
    assert all({"term", "bound_ms", "attained", "holds"} <= set(t) for t in d["sla"])


def test_output_directory_is_byte_identical_for_one_seed(manifest_path, tmp_path):
    for name in ("a", "b"):
        r = invoke(str(manifest_path), "--requests", "200", "--cv", "0.3", "-o", str(tmp_path / name))
        assert r.exit_code == 0, r.output
    a, b = tree_bytes(str(tmp_path / "a")), tree_bytes(str(tmp_path / "b"))
    assert a == b
    assert {"trace.json", "simulation.json", "latency_cdf.svg", "latency_cdf.png", "utilisation.svg",
            "queue.png"} <= set(a)
    trace = json.loads(a["trace.json"])
    phases = {e["ph"] for e in trace["traceEvents"]}
    assert {"M", "X"} <= phases
    assert any(e["ph"] == "X" and e["dur"] >= 0 for e in trace["traceEvents"])


def test_trace_file_drives_arrivals_and_tokens(manifest_path, tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("arrival_s,input_tokens,output_tokens\n" + "".join(f"{i * 0.5},{256},{64}\n" for i in range(40)))
    r = invoke(str(manifest_path), "--trace", str(csv), "--json", "--warmup", "0")
    assert r.exit_code == 0, r.output
    short = json.loads(r.output)["latency_ms"]["e2e"]["mean"]
    csv.write_text("arrival_s,input_tokens,output_tokens\n" + "".join(f"{i * 0.5},{256},{512}\n" for i in range(40)))
    longer = json.loads(invoke(str(manifest_path), "--trace", str(csv), "--json", "--warmup", "0").output)
    assert longer["requests"] == 40 and longer["latency_ms"]["e2e"]["mean"] > short


@pytest.mark.parametrize("text,line,message", [
    ("arrival_s,input_tokens\n0,1\n", 1, "lacks the column(s) output_tokens"),
    ("arrival_s,input_tokens,output_tokens\n0,1,1\n-1,1,1\n", 3, "negative"),
    ("arrival_s,input_tokens,output_tokens\n2,1,1\n1,1,1\n", 3, "must not decrease"),
    ("arrival_s,input_tokens,output_tokens\n0,x,1\n", 2, "must be a number"),
])
def test_bad_trace_is_a_located_error(manifest_path, tmp_path, text, line, message):
    csv = tmp_path / "bad.csv"
    csv.write_text(text)
    r = CliRunner().invoke(cli, ["simulate", str(manifest_path), "--trace", str(csv)])
    assert r.exit_code == 1
    assert f"{csv}:{line}:1: error:" in r.output and message in r.output
    assert "Traceback" not in r.output


def test_manifest_of_another_version_or_without_placement_is_an_error(manifest_path, tmp_path):
    m = json.loads(manifest_path.read_text())
    old = tmp_path / "old.json"
    old.write_text(json.dumps(dict(m, schema_version="1.1"), indent=2))
    r = CliRunner().invoke(cli, ["simulate", str(old)])
    assert r.exit_code == 1 and "schema version '1.1'" in r.output
    line = next(i for i, t in enumerate(old.read_text().splitlines(), 1) if '"schema_version"' in t)
    assert f"{old}:{line}:" in r.output
    unplaced = tmp_path / "unplaced.json"
    unplaced.write_text(json.dumps(dict(m, ops=[]), indent=2))
    r = CliRunner().invoke(cli, ["simulate", str(unplaced)])
    assert r.exit_code == 1 and "no placement" in r.output and f"{unplaced}:" in r.output


def test_usage_errors(manifest_path, monkeypatch, capsys):
    r = CliRunner().invoke(cli, ["simulate", str(manifest_path), "--cv", "decode=-1"])
    assert r.exit_code == 1 and "bad --cv" in r.output
    r = CliRunner().invoke(cli, ["simulate", str(manifest_path), "--requests", "10", "--duration", "1"])
    assert r.exit_code == 1 and "not both" in r.output
    r = CliRunner().invoke(cli, ["simulate", str(manifest_path), "--requests", "10", "--warmup", "5", "--cooldown", "5"])
    assert r.exit_code == 1 and "--warmup 5 and --cooldown 5 leave none of the 10 requests to measure" in r.output
    # a misspelt kind is an error, not a silently deterministic run
    r = CliRunner().invoke(cli, ["simulate", str(manifest_path), "--requests", "10", "--cv", "llm.decod=0.3"])
    assert r.exit_code == 1 and "--cv names the kind 'llm.decod', which no op of the plan has" in r.output
    assert "llm.decode" in r.output and r.output.count("\n") == 1, r.output
    # a negative seed is refused by the option, not by numpy (it was an internal error, exit 2)
    from agentc.cli import main

    monkeypatch.setattr("sys.argv", ["agentc", "simulate", str(manifest_path), "--requests", "10", "--seed", "-1"])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 1 and "Invalid value for '--seed'" in capsys.readouterr().err


def test_cooldown_leaves_the_last_requests_out_and_keeps_the_rest(manifest_path):
    """--cooldown 30 of 100 (warmup 10): the 30 last run but are left out, so 60 are
    measured, as many as in a run of 70 without a cooldown; the JSON says both edges."""
    cool = json.loads(invoke(str(manifest_path), "--requests", "100", "--warmup", "10", "--cooldown", "30",
                             "--load", "50", "--json").output)
    bare = json.loads(invoke(str(manifest_path), "--requests", "70", "--warmup", "10", "--load", "50",
                             "--json").output)
    assert cool["requests"] == bare["requests"] == 60
    assert (cool["warmup"], cool["cooldown"], bare["cooldown"]) == (10, 30, 0)
