"""Run the lit/FileCheck suite (test/lit) from pytest, so `pytest` alone runs every test,
and check that the CMake `check-agentc` target drives the same suite."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# lit 17+ has no `python -m lit`; this is what its console script does.
LIT = [sys.executable, "-c", "import sys, lit.main; sys.exit(lit.main.main())"]


@pytest.mark.slow
def test_lit_suite_passes(tmp_path):
    proc = subprocess.run(LIT + ["-q", "--param", f"agentc_exec_root={tmp_path}", "test/lit"],
                          cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"lit failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_cmake_check_target_runs_lit(tmp_path):
    build = tmp_path / "build"
    configure = subprocess.run(["cmake", "-S", REPO, "-B", str(build), f"-DPython3_EXECUTABLE={sys.executable}"],
                               capture_output=True, text=True, timeout=300)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    # The whole suite already ran above; one test is enough to show the target works.
    env = dict(os.environ, LIT_FILTER="frontend/roundtrip.test")
    check = subprocess.run(["cmake", "--build", str(build), "--target", "check-agentc"],
                           capture_output=True, text=True, timeout=600, env=env)
    out = check.stdout + check.stderr
    assert check.returncode == 0, out
    assert re.search(r"Passed\s*:\s*1\b", out), out
    assert (build / "lit").is_dir(), "lit outputs belong in the build directory"
