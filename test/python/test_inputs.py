"""Bounded inputs (issue 15, item 2): only regular files are read, never past a size
limit, never blocking, and bad UTF-8 is an error at its own line and column.

`import "/dev/zero"` once grew to gigabytes and importing a FIFO blocked forever; the
FIFO cases run in a thread (or a child process) with a timeout so that a regression
fails the test instead of hanging the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from click.testing import CliRunner

from agentc.catalog import load_catalog, load_cluster
from agentc.cli import cli
from agentc.diagnostics import AgentcError, CatalogError, ParseError, UsageError
from agentc.inputs import DEFAULT_MAX_INPUT_BYTES, read_source

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AGENT = "agent a(q: text) -> text {\n  return q\n}\n"


def within(seconds: float, fn):
    """fn() in a daemon thread; its result, or AssertionError if it blocks."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"blocked for more than {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def plan(args, cwd=None):
    old = os.getcwd()
    if cwd:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, ["plan", *args], prog_name="agentc")
    finally:
        os.chdir(old)


# --------------------------------------------------------------------------- read_source


def test_regular_file_is_read(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("h\u00e9llo\n".encode())
    assert read_source(path, "input") == "h\u00e9llo\n"


@pytest.mark.parametrize("target,kind", [("/dev/zero", "a character device"), ("DIR", "a directory"),
                                         ("FIFO", "a FIFO")])
def test_non_regular_files_are_refused_without_blocking(tmp_path, fifo, target, kind):
    path = {"DIR": str(tmp_path), "FIFO": str(fifo)}.get(target, target)
    with pytest.raises(CatalogError) as e:
        within(10, lambda: read_source(path, "cluster file", error=CatalogError))
    assert e.value.message == f"cluster file '{path}' is {kind}; only regular files are read"


def test_missing_file_is_reported_at_the_given_location(tmp_path):
    from agentc.diagnostics import SourceLoc
    loc = SourceLoc("main.agent", 3, 1)
    with pytest.raises(ParseError) as e:
        read_source(tmp_path / "nope.agent", "import", loc=loc, error=ParseError)
    assert e.value.loc == loc and e.value.message == f"cannot open '{tmp_path / 'nope.agent'}': no such file"


def test_size_limit_argument_and_environment(tmp_path, monkeypatch):
    path = tmp_path / "big.toml"
    path.write_bytes(b"a" * 100)
    assert read_source(path, "x", limit=100) == "a" * 100
    with pytest.raises(AgentcError, match=r"'.*big.toml' is larger than the input limit of 99 bytes"):
        read_source(path, "catalog file", limit=99)
    monkeypatch.setenv("AGENTC_MAX_INPUT_BYTES", "50")
    with pytest.raises(AgentcError, match="larger than the input limit of 50 bytes") as e:
        read_source(path, "catalog file")
    assert e.value.notes == ("set AGENTC_MAX_INPUT_BYTES to a larger number of bytes to read it",)
    monkeypatch.setenv("AGENTC_MAX_INPUT_BYTES", "lots")
    with pytest.raises(UsageError, match="AGENTC_MAX_INPUT_BYTES must be a positive integer"):
        read_source(path, "catalog file")
    monkeypatch.delenv("AGENTC_MAX_INPUT_BYTES")
    assert DEFAULT_MAX_INPUT_BYTES == 16 * 1024 * 1024


def test_bad_utf8_is_located_at_the_first_bad_byte(tmp_path):
    path = tmp_path / "x.toml"
    # line 2, after two characters (three bytes): column 3
    path.write_bytes(b"ok = 1\n\xc3\xa9a\xff = 2\n")
    with pytest.raises(CatalogError) as e:
        read_source(path, "catalog file", error=CatalogError)
    assert (e.value.loc.line, e.value.loc.col) == (2, 3)
    assert e.value.message == f"'{path}' is not UTF-8 text: byte 0xff cannot start or continue a character"


# --------------------------------------------------------------------------- frontend imports


@pytest.mark.parametrize("target,kind", [("/dev/zero", "a character device"), ("pipe", "a FIFO"),
                                         ("sub", "a directory")])
def test_an_import_of_a_non_regular_file_is_located_at_the_import(tmp_path, fifo, target, kind):
    (tmp_path / "sub").mkdir()
    src = tmp_path / "main.agent"
    src.write_text(f'// a program\nimport "{target}"\n' + AGENT)
    result = within(60, lambda: plan([str(src)]))
    assert result.exit_code == 1
    shown = target if target.startswith("/") else str(tmp_path / target)
    assert f"{src}:2:1: error: import '{shown}' is {kind}; only regular files are read" in result.stderr


def test_a_fifo_import_does_not_hang_the_cli_process(tmp_path, fifo):
    src = tmp_path / "main.agent"
    src.write_text('import "pipe"\n' + AGENT)
    proc = subprocess.run([sys.executable, "-m", "agentc", "plan", "main.agent"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "main.agent:1:1: error: import 'pipe' is a FIFO; only regular files are read" in proc.stderr


def test_an_import_over_the_size_limit_is_located_at_the_import(tmp_path, monkeypatch):
    (tmp_path / "lib.agent").write_text("// " + "x" * 200 + "\n")
    src = tmp_path / "main.agent"
    src.write_text('import "lib.agent"\n' + AGENT)
    monkeypatch.setenv("AGENTC_MAX_INPUT_BYTES", "150")
    result = plan([str(src)])
    assert result.exit_code == 1
    assert (f"{src}:1:1: error: import '{tmp_path / 'lib.agent'}' is larger than the input limit of 150 bytes"
            in result.stderr)


def test_crlf_sources_still_parse(tmp_path):
    src = tmp_path / "crlf.agent"
    src.write_bytes(AGENT.replace("\n", "\r\n").encode())
    result = plan([str(src), "--format", "json"])
    assert result.exit_code == 0, result.stderr


# --------------------------------------------------------------------------- catalog and cluster files


def test_cluster_and_catalog_files_are_bounded_too(tmp_path, fifo):
    voice = os.path.join(ROOT, "examples", "voice_agent.agent")
    result = within(60, lambda: plan([voice, "--cluster", "/dev/zero"]))
    assert result.exit_code == 1
    assert "agentc: error: cluster file '/dev/zero' is a character device; only regular files are read" in result.stderr
    result = within(60, lambda: plan([voice, "--catalog", str(fifo)]))
    assert result.exit_code == 1
    assert f"catalog file '{fifo}' is a FIFO" in result.stderr


def test_a_device_file_that_is_a_fifo_is_located_at_device_files(tmp_path, fifo):
    path = tmp_path / "c.toml"
    path.write_text('name = "c"\ndevice_files = ["pipe"]\n[[pool]]\nname = "cpu"\ndevice = "epyc-9654"\ncount = 1\n')
    with pytest.raises(CatalogError) as e:
        within(10, lambda: load_cluster(path, load_catalog()))
    assert (e.value.loc.line, e.value.loc.col) == (2, 1)
    assert e.value.message == f"catalog file '{tmp_path / 'pipe'}' is a FIFO; only regular files are read"


def test_a_non_utf8_cluster_file_is_located_at_the_byte(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b'name = "c"\n# caf\xe9\n')
    result = plan([os.path.join(ROOT, "examples", "voice_agent.agent"), "--cluster", str(path)])
    assert result.exit_code == 1
    assert f"{path}:2:6: error: '{path}' is not UTF-8 text: byte 0xe9" in result.stderr


def test_an_import_path_with_a_nul_is_located(tmp_path):
    src = tmp_path / "main.agent"
    src.write_bytes(b'import "a\x00b"\n' + AGENT.encode())
    result = plan([str(src)])
    assert result.exit_code == 1, result.stderr
    shown = repr(str(tmp_path / "a\x00b"))
    assert f"{src}:1:1: error: import path {shown} contains a NUL character" in result.stderr
