"""A failing compile leaves the previous `-o` directory byte-identical and nothing
beside it: no partial outputs, no temporary directories."""

from __future__ import annotations

import os
import shutil

import pytest
from click.testing import CliRunner

from agentc import pipeline
from agentc.cli import cli
from agentc.diagnostics import ToolchainError
from helpers import tree_bytes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "make")


def _snapshot(parent: str) -> dict[str, bytes]:
    return tree_bytes(parent, dirs=True)


@pytest.fixture(scope="module")
def first_build(tmp_path_factory):
    """The project compiled once per module into build/out (each test gets a copy)."""
    src = tmp_path_factory.mktemp("atomic")
    for name in ("search.agent", "cluster.toml"):
        shutil.copy(os.path.join(EXAMPLE, name), src / name)
    here = os.getcwd()
    os.chdir(src)
    try:
        r = CliRunner().invoke(cli, ["compile", "search.agent", "--cluster", "cluster.toml", "--targets", "cpu",
                                     "-o", "build/out", "--quiet"])
    finally:
        os.chdir(here)
    assert r.exit_code == 0, r.output
    return src


@pytest.fixture
def built(first_build, tmp_path, monkeypatch):
    """A project with a compile's output in build/out; returns (project dir, snapshot of build/)."""
    project = tmp_path / "project"
    shutil.copytree(first_build, project, symlinks=True)
    monkeypatch.chdir(project)
    return project, _snapshot(str(project / "build"))


def _compile(*extra):
    return CliRunner().invoke(cli, ["compile", *extra, "--cluster", "cluster.toml", "--targets", "cpu",
                                    "-o", "build/out", "--quiet"])


def test_parse_error_keeps_previous_output(built):
    project, before = built
    (project / "bad.agent").write_text("agent broken( {\n")
    r = _compile("bad.agent")
    assert r.exit_code == 1
    assert "error:" in r.output
    assert _snapshot(str(project / "build")) == before


def test_infeasible_plan_keeps_previous_output(built):
    project, before = built
    src = (project / "search.agent").read_text().replace("latency.p95 < 500ms", "latency.p95 < 1ms")
    (project / "search.agent").write_text(src)
    r = _compile("search.agent")
    assert r.exit_code == 1, r.output
    assert "no placement meets" in r.output
    assert _snapshot(str(project / "build")) == before


def test_toolchain_failure_in_the_last_stage_keeps_previous_output(built, monkeypatch):
    project, before = built
    last = pipeline.STAGES[-1]

    def fail(c):
        c.artifacts["partial.o"] = b"half-written"
        raise ToolchainError("llc crashed", command="llc -filetype=obj kernel.ll")

    failing = pipeline.Stage(last.name, last.help, steps=(fail,), ir=last.ir)
    monkeypatch.setattr(pipeline, "STAGES", pipeline.STAGES[:-1] + (failing,))
    r = _compile("search.agent")
    assert r.exit_code == 1
    assert "llc crashed" in r.output and "reproduce with: llc -filetype=obj kernel.ll" in r.output
    assert _snapshot(str(project / "build")) == before


def test_failure_while_writing_leaves_no_temp_directory(built, monkeypatch):
    project, before = built
    real_open = open

    def flaky_open(path, mode="r", *a, **kw):
        if "w" in mode and ".tmp-" in str(path) and str(path).endswith(".mlir"):
            raise OSError(28, "No space left on device")
        return real_open(path, mode, *a, **kw)

    monkeypatch.setattr("builtins.open", flaky_open)
    r = _compile("search.agent")
    monkeypatch.undo()
    assert r.exit_code == 1, r.output
    assert "error: cannot write 'build/out': No space left on device" in r.output
    assert _snapshot(str(project / "build")) == before


def _compile_to(*args):
    return CliRunner().invoke(cli, ["compile", "search.agent", "--cluster", "cluster.toml", "--targets", "cpu",
                                    "--quiet", *args])


def test_output_path_that_is_a_file_is_refused(built):
    project, _ = built
    (project / "notes.txt").write_text("keep me")
    r = _compile_to("-o", "notes.txt")
    assert r.exit_code == 1
    assert "output path 'notes.txt' exists and is not a directory" in r.output
    assert (project / "notes.txt").read_text() == "keep me"
    assert sorted(os.listdir(project)) == ["build", "cluster.toml", "notes.txt", "search.agent"]


def test_unwritable_output_is_a_user_error(built):
    project, before = built
    r = _compile_to("-o", "search.agent/out")  # a path under a regular file
    assert r.exit_code == 1 and "error: cannot write 'search.agent/out'" in r.output
    assert "internal compiler error" not in r.output


def test_an_unwritable_side_output_writes_nothing(built):
    """Every destination is probed before any is written."""
    project, before = built
    r = _compile_to("-o", "build/out2", "-MF", "search.agent/out.d")
    assert r.exit_code == 1 and "error: cannot write 'search.agent/out.d'" in r.output
    r = _compile_to("-o", "search.agent/out", "-MF", "build/out.d", "--dump-phases-to", "build/phases")
    assert r.exit_code == 1
    assert _snapshot(str(project / "build")) == before


def test_a_depfile_inside_the_output_directory_survives(built):
    project, _ = built
    r = _compile_to("-o", "build/out2", "-MD", "-MF", "build/out2/search.d")
    assert r.exit_code == 0, r.output
    assert (project / "build" / "out2" / "search.d").read_text().startswith("build/out2:")


def test_dump_directory_not_written_by_agentc_is_refused(built):
    project, before = built
    (project / "build" / "notes").mkdir()
    (project / "build" / "notes" / "thesis.txt").write_text("mine")
    r = _compile_to("-o", "build/out", "--dump-phases-to", "build/notes")
    assert r.exit_code == 1 and "output directory 'build/notes' exists and was not written by agentc" in r.output
    assert (project / "build" / "notes" / "thesis.txt").read_text() == "mine"
