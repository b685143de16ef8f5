"""Stage control: `--emit STAGE` for every stage `agentc stages` lists,
`--dump-phases-to` writes one numbered file per IR stage run, `.mlir` input resumes."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "make")


def agentc(*args, cwd):
    return subprocess.run(["agentc", *args], cwd=cwd, capture_output=True, text=True)


def stages():
    r = subprocess.run(["agentc", "stages"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


@pytest.fixture
def project(tmp_path):
    for name in ("search.agent", "cluster.toml"):
        shutil.copy(os.path.join(EXAMPLE, name), tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("stage", stages())
def test_emit_every_stage(project, stage):
    r = agentc("compile", "search.agent", "--cluster", "cluster.toml", "--targets", "cpu", "--emit", stage,
               "-o", "emitted/", cwd=project)
    assert r.returncode == 0, r.stderr
    written = sorted(os.listdir(project / "emitted"))
    from agentc.pipeline import stage_is_ir

    if stage_is_ir(stage):
        assert written == [f"search.{stage}.mlir"], written
    else:
        # File stages (llvm, objects, manifest, ...) write the artifacts built so far.
        files = [f for _d, _s, fs in os.walk(project / "emitted") for f in fs]
        assert files and ".agentc-output" in written, written
        if stage == "manifest":
            assert "manifest.json" in written
        if stage in ("llvm", "objects"):
            assert any(f.endswith(".ll") for f in files), files
        if stage == "objects":
            assert any(f.endswith(".o") for f in files), files


def test_dump_phases_writes_one_numbered_file_per_stage(project):
    r = agentc("compile", "search.agent", "--cluster", "cluster.toml", "--targets", "cpu", "-o", "out",
               "--dump-phases-to", "phases", "--quiet", cwd=project)
    assert r.returncode == 0, r.stderr
    dumps = sorted(os.listdir(project / "phases"))
    names = [d.split("-", 1)[1].rsplit(".", 1)[0] for d in dumps if d.endswith(".mlir")]
    assert names[:2] == ["agent", "decomposed"]
    assert names == [s for s in stages() if s in names], "dumps are out of pipeline order"
    numbers = [int(d.split("-", 1)[0]) for d in dumps if d.endswith(".mlir")]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    for d in dumps:
        if d.endswith(".mlir"):
            stage = d.split("-", 1)[1].rsplit(".", 1)[0]
            assert f'agentc.stage = "{stage}"' in (project / "phases" / d).read_text()


def test_mlir_input_resumes_from_its_stage(project):
    r = agentc("compile", "search.agent", "--cluster", "cluster.toml", "--emit", "decomposed",
               "-o", "search.decomposed.mlir", cwd=project)
    assert r.returncode == 0, r.stderr
    later = stages()[stages().index("decomposed") + 1]
    r = agentc("compile", "search.decomposed.mlir", "--cluster", "cluster.toml", "--emit", later, cwd=project)
    assert r.returncode == 0, r.stderr
    assert f'agentc.stage = "{later}"' in r.stdout
    direct = agentc("compile", "search.agent", "--cluster", "cluster.toml", "--emit", later, cwd=project)
    assert direct.stdout.count("\n") > 0


def test_mlir_input_cannot_go_back(project):
    agentc("compile", "search.agent", "--emit", "decomposed", "-o", "d.mlir", cwd=project)
    r = agentc("compile", "d.mlir", "--emit", "agent", cwd=project)
    assert r.returncode == 1
    assert "already at stage 'decomposed'" in r.stderr


def test_unknown_stage_lists_the_stages(project):
    r = agentc("compile", "search.agent", "--emit", "nope", cwd=project)
    assert r.returncode == 1          # a usage error is the user's: exit 1, never 2
    assert "unknown stage 'nope'" in r.stderr and "decomposed" in r.stderr
