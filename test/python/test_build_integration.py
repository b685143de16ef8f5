"""Make and CMake integration: depfiles drive rebuilds, `agentc --cmake-dir` finds the
CMake package, and a C program links the CPU kernels agentc generates."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")


def run(cmd, cwd, **kw):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, **kw)


def _touch_later(path):
    """Bump mtime past the outputs' even on coarse-timestamp filesystems."""
    later = time.time() + 2
    os.utime(path, (later, later))


@pytest.fixture
def make_example(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dest = tmp_path / "make"
    shutil.copytree(os.path.join(EXAMPLES, "make"), dest)
    return dest


def test_make_builds_then_is_up_to_date_then_rebuilds_on_cluster_change(make_example):
    first = run(["make"], make_example)
    assert first.returncode == 0, first.stderr
    assert (make_example / "build" / "search" / ".agentc-output").is_file()
    depfile = (make_example / "build" / "search.d").read_text()
    assert depfile.startswith("build/search: search.agent")

    second = run(["make"], make_example)
    assert second.returncode == 0
    assert "Nothing to be done" in second.stdout or "is up to date" in second.stdout
    assert run(["make", "-q"], make_example).returncode == 0

    # The Makefile names only the source; the cluster reaches Make through the depfile.
    _touch_later(make_example / "cluster.toml")
    assert run(["make", "-q"], make_example).returncode == 1
    third = run(["make"], make_example)
    assert third.returncode == 0, third.stderr
    assert "agentc compile" in third.stdout


def test_depfile_lists_source_imports_cluster_and_catalogs(tmp_path):
    # `costed` is the first stage that reads the cluster and the built-in catalogs.
    r = run(["agentc", "compile", os.path.join(EXAMPLES, "supervisor.agent"), "--cluster",
             os.path.join(EXAMPLES, "make", "cluster.toml"), "--emit", "costed",
             "-o", str(tmp_path / "sup.mlir"), "-MD", "-MF", str(tmp_path / "sup.d")], tmp_path)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "sup.d").read_text()
    assert text.startswith(f"{tmp_path / 'sup.mlir'}: ")
    for needle in ("supervisor.agent", "lib/researchers.agent", "make/cluster.toml", "devices.toml",
                   "models.toml"):
        assert needle in text, f"{needle} missing from depfile:\n{text}"


def test_cmake_dir_holds_the_package():
    r = run(["agentc", "--cmake-dir"], ROOT)
    assert r.returncode == 0
    d = r.stdout.strip()
    assert os.path.isfile(os.path.join(d, "agentcConfig.cmake"))
    assert os.path.isfile(os.path.join(d, "agentcConfigVersion.cmake"))


@pytest.fixture
def cmake_project(tmp_path):
    if shutil.which("cmake") is None or shutil.which("cc") is None:
        pytest.skip("cmake or cc is not installed")
    src = tmp_path / "src"
    shutil.copytree(os.path.join(EXAMPLES, "cmake"), src)
    return src


def _configure(src, build, generator):
    cmake_dir = run(["agentc", "--cmake-dir"], src).stdout.strip()
    r = run(["cmake", "-S", str(src), "-B", str(build), "-G", generator, f"-Dagentc_DIR={cmake_dir}"], src)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("generator", ["Unix Makefiles", "Ninja"])
def test_cmake_graph_target_uses_depfile(cmake_project, tmp_path, generator):
    if generator == "Ninja" and shutil.which("ninja") is None:
        pytest.skip("ninja is not installed")
    build = tmp_path / "build"
    _configure(cmake_project, build, generator)
    r = run(["cmake", "--build", str(build), "--target", "search"], cmake_project)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "agentc: compiling search.agent" in r.stdout
    outdir = build / "agentc" / "search"
    assert (outdir / ".agentc-output").is_file()
    assert (build / "libsearch_agentc.a").is_file()
    depfile = (build / "agentc" / "search.d").read_text()
    assert "cluster.toml" in depfile and "models.toml" in depfile

    again = run(["cmake", "--build", str(build), "--target", "search"], cmake_project)
    assert "agentc: compiling" not in again.stdout

    _touch_later(cmake_project / "search.agent")
    third = run(["cmake", "--build", str(build), "--target", "search"], cmake_project)
    assert "agentc: compiling search.agent" in third.stdout


def test_cmake_links_and_runs_a_cpu_kernel(cmake_project, tmp_path):
    build = tmp_path / "build"
    _configure(cmake_project, build, "Unix Makefiles")
    r = run(["cmake", "--build", str(build), "--target", "search"], cmake_project)
    assert r.returncode == 0, r.stdout + r.stderr
    objects = glob.glob(str(build / "agentc" / "search" / "*" / "*.o"))
    if not objects:
        pytest.skip("the CPU code generation stage does not write <pool>/<module>.o yet; "
                    "agentc compile --targets cpu produced no objects")
    headers = sorted(os.path.relpath(h, build / "agentc" / "search")
                     for h in glob.glob(str(build / "agentc" / "search" / "*" / "*.h")))
    header = next((h for h in headers if "mean_pool_l2" in open(build / "agentc" / "search" / h).read()), None)
    assert header is not None, f"no generated header declares mean_pool_l2: {headers}"
    r = run(["cmake", f"-DSEARCH_KERNEL_HEADER={header}", str(build)], cmake_project)
    assert r.returncode == 0, r.stderr
    r = run(["cmake", "--build", str(build)], cmake_project)
    assert r.returncode == 0, r.stdout + r.stderr
    demo = run([str(build / "search_demo")], cmake_project)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert demo.stdout.strip().endswith("ok")
