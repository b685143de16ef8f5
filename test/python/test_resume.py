"""Every printed IR stage resumes: a module printed at any stage compiles on to the same
manifest (same bytes) as the compile from source, and the planning commands accept it."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from agentc import pipeline
from agentc.outputs import MARKER

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = {"voice_agent": None, "rag_agent": None, "react_tools": None, "supervisor": None,
            "table3": "examples/clusters/table3.toml"}
IR_STAGES = [s.name for s in pipeline.STAGES if s.ir]


def _compile(path, cluster, **kw):
    # far beyond any example's solve: a loaded machine once stopped supervisor's resumed
    # solve at its 10 s wall-clock limit, the same plan reported `feasible (gap 0.86%)`
    return pipeline.compile_file(path, pipeline.Options(cluster=cluster, targets=(), time_limit_s=600.0, **kw))


@pytest.fixture(scope="module", params=sorted(EXAMPLES))
def example(request, tmp_path_factory):
    """(name, cluster, manifest bytes of the compile from source, printed IR per stage)."""
    name, cluster = request.param, EXAMPLES[request.param]
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        # one compile prints every IR stage (what --dump-phases-to writes)
        full = _compile(f"examples/{name}.agent", cluster, dump_phases_to="unused")
        printed = {}
        out = tmp_path_factory.mktemp(name)
        for dump, text in full.dumps.items():
            stage = dump.split("-", 1)[1][:-len(".mlir")]
            path = out / f"{name}.{stage}.mlir"
            path.write_bytes(text)
            printed[stage] = str(path)
        assert sorted(printed) == sorted(IR_STAGES)
    finally:
        os.chdir(cwd)
    return name, cluster, full.artifacts["manifest.json"], printed


@pytest.mark.parametrize("stage", IR_STAGES)
def test_resume_gives_the_same_manifest(example, stage, monkeypatch):
    name, cluster, manifest, printed = example
    monkeypatch.chdir(ROOT)
    resumed = _compile(printed[stage], cluster)
    assert resumed.stage == IR_STAGES[-1]
    assert resumed.artifacts["manifest.json"] == manifest, f"{name} resumed from {stage}"


def test_placed_module_carries_its_decisions(example):
    name, _cluster, _manifest, printed = example
    text = open(printed["placed"]).read()
    assert "plan_status" in text and "option = " in text and "agentc.sources" in text


def _cli(*args, cwd=ROOT):
    return subprocess.run(["agentc", *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize("command", ["plan", "explain", "check", "cost"])
def test_planning_commands_accept_a_placed_module(tmp_path, command):
    src = "examples/table3.agent"
    cluster = ["--cluster", "examples/clusters/table3.toml"]
    placed = tmp_path / "t.placed.mlir"
    r = _cli("compile", src, *cluster, "--emit", "placed", "-o", str(placed))
    assert r.returncode == 0, r.stderr
    extra = []
    if command == "check":
        out = tmp_path / "out"
        assert _cli("compile", src, *cluster, "--targets", "cpu", "-o", str(out), "-q").returncode == 0
        extra = ["--baseline", str(out / "manifest.json")]
    json_flag = [] if command == "check" else ["--json"]
    from_ir = _cli(command, str(placed), *cluster, *extra, *json_flag)
    from_src = _cli(command, src, *cluster, *extra, *json_flag)
    assert from_ir.returncode == 0, from_ir.stderr
    assert "internal compiler error" not in from_ir.stderr
    if command in ("plan", "explain"):
        a, b = json.loads(from_ir.stdout), json.loads(from_src.stdout)
        a.pop("inputs", None), b.pop("inputs", None)
        assert a == b
    if command == "plan":
        assert json.loads(from_ir.stdout)["totals"]["usd_per_request"] == pytest.approx(0.095)


def test_module_without_a_placement_is_a_located_error(tmp_path):
    """A `placed` module whose decisions were stripped cannot be resumed: exit 1, located."""
    placed = tmp_path / "t.placed.mlir"
    r = _cli("compile", "examples/table3.agent", "--cluster", "examples/clusters/table3.toml", "--emit", "placed",
             "-o", str(placed))
    assert r.returncode == 0
    placed.write_text(placed.read_text().replace("plan_status", "plan_state"))
    r = _cli("compile", str(placed), "--cluster", "examples/clusters/table3.toml", "-o", str(tmp_path / "o"))
    assert r.returncode == 1
    assert "carries no placement to resume from" in r.stderr
    assert "examples/table3.agent:8:1: error:" in r.stderr     # the graph's own location
    assert not (tmp_path / "o").exists()


def test_agentc_opt_output_resumes(tmp_path):
    """`agentc-opt -p ...,place` records that it reached `placed`, so compile resumes it."""
    costed = tmp_path / "t.costed.mlir"
    cluster = ["--cluster", "examples/clusters/table3.toml"]
    assert _cli("compile", "examples/table3.agent", *cluster, "--emit", "costed", "-o", str(costed)).returncode == 0
    placed = tmp_path / "t.placed.mlir"
    r = subprocess.run(["agentc-opt", str(costed), "-p", "place", *cluster, "-o", str(placed)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'agentc.stage = "placed"' in placed.read_text()
    out = tmp_path / "out"
    r = _cli("compile", str(placed), *cluster, "--targets", "cpu", "-o", str(out), "-q")
    assert r.returncode == 0, r.stderr
    assert (out / "manifest.json").is_file() and (out / MARKER).is_file()
