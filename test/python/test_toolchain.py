"""targets/toolchain.py: every failing step raises ToolchainError naming a saved copy of
its input and a command line, and that command, run as printed with the shipped tools,
fails on the saved file the same way (the reproducer really reproduces)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import pytest

from agentc.diagnostics import ToolchainError
from agentc.targets import toolchain

# Parses, but transform-interpreter finds no @__transform_main in it.
NO_SCRIPT = "func.func @f() {\n  return\n}\n"
# Parses, but arith/func are not the LLVM dialect: translation to LLVM IR fails.
NOT_LLVM = "func.func @f(%a: i32) -> i32 {\n  %b = arith.addi %a, %a : i32\n  return %b : i32\n}\n"
BAD_LL = "define i32 @f() {\n  ret i64 0\n}\n"      # a return of the wrong type: rejected


def _saved(err: ToolchainError) -> str:
    """The saved input the error's note names, checked to be in the command too."""
    notes = [n for n in err.notes if n.startswith("failing input saved to ")]
    assert len(notes) == 1, err.notes
    path = notes[0].removeprefix("failing input saved to ")
    assert os.path.isfile(path)
    assert path in shlex.split(err.command)
    return path


def _reproduces(err: ToolchainError) -> subprocess.CompletedProcess:
    argv = shlex.split(err.command)
    assert os.path.isabs(argv[0]) and os.access(argv[0], os.X_OK), argv[0]   # the shipped tool
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_failed_pass_pipeline_saves_input_and_prints_mlir_opt_command():
    pipeline = "builtin.module(transform-interpreter)"
    with pytest.raises(ToolchainError) as info:
        toolchain.run_pipeline(NO_SCRIPT, pipeline, stage="demo")
    err = info.value
    assert err.message.startswith("demo: pass pipeline failed:")
    path = _saved(err)
    assert open(path).read() == NO_SCRIPT and path.endswith(".mlir")
    assert shlex.split(err.command)[1:] == [f"--pass-pipeline={pipeline}", path]
    shown = err.render()          # what the CLI prints
    assert f"note: failing input saved to {path}" in shown
    assert f"note: reproduce with: {err.command}" in shown
    proc = _reproduces(err)
    assert proc.returncode != 0 and "__transform_main" in proc.stderr


def test_input_that_does_not_parse_is_saved_too():
    with pytest.raises(ToolchainError) as info:
        toolchain.run_pipeline("func.func @f( {", "builtin.module(canonicalize)", stage="demo")
    assert "does not parse" in info.value.message
    assert open(_saved(info.value)).read() == "func.func @f( {"
    assert _reproduces(info.value).returncode != 0


def test_bad_pipeline_text_names_the_command():
    with pytest.raises(ToolchainError) as info:
        toolchain.run_pipeline(NO_SCRIPT, "builtin.module(no-such-pass)", stage="demo")
    assert "bad pass pipeline" in info.value.message
    _saved(info.value)
    proc = _reproduces(info.value)
    assert proc.returncode != 0 and "no-such-pass" in proc.stderr


def test_failed_translation_prints_mlir_translate_command():
    with pytest.raises(ToolchainError) as info:
        toolchain.translate_to_llvmir(NOT_LLVM, stage="llvm")
    err = info.value
    path = _saved(err)
    assert shlex.split(err.command)[1:] == ["--mlir-to-llvmir", path]
    assert os.path.basename(shlex.split(err.command)[0]) == "mlir-translate"
    assert _reproduces(err).returncode != 0


def test_rejected_llvm_ir_prints_llc_command():
    with pytest.raises(ToolchainError) as info:
        toolchain.emit_object(BAD_LL, "x86_64-unknown-linux-gnu", cpu="x86-64", opt_level=2, stage="obj")
    err = info.value
    path = _saved(err)
    assert path.endswith(".ll") and open(path).read() == BAD_LL
    argv = shlex.split(err.command)
    assert os.path.basename(argv[0]) == "llc"
    assert {"-O2", "-mtriple=x86_64-unknown-linux-gnu", "-mcpu=x86-64", "-filetype=obj"} <= set(argv)
    assert argv[argv.index("-o") + 1] == path + ".out"        # never over the saved input
    proc = _reproduces(err)
    assert proc.returncode != 0 and "ret" in proc.stderr


def test_failing_external_tool_keeps_its_input():
    """run_tool runs in a scratch directory; on failure the input outlives it."""
    llc = toolchain.tool_path("llc")
    with pytest.raises(ToolchainError) as info:
        toolchain.run_tool([llc, "-filetype=obj", toolchain.IN, "-o", toolchain.OUT], "demo",
                           BAD_LL.encode(), ".ll")
    err = info.value
    assert err.message.startswith("demo: llc failed:")
    assert open(_saved(err), "rb").read() == BAD_LL.encode()
    assert _reproduces(err).returncode != 0


def test_a_successful_pipeline_returns_the_module():
    out = toolchain.run_pipeline("func.func @f() {\n  %c = arith.constant 1 : i32\n  return\n}\n",
                                 "builtin.module(canonicalize)", stage="demo")
    assert "arith.constant" not in out and "func.func @f()" in out


SMALL_AGENT = """model tiny = decoder(layers=1, d_model=32, heads=2, kv_heads=1, ffn=64, vocab=64)

agent a(q: text) -> text {
  sla { latency < 5000ms }
  ans = llm(tiny, [q], in=8, out=2)
  return ans
}
"""
CPU_CLUSTER = """name = "cpu-only"
pricing = "given"

[[pool]]
name = "host"
device = "epyc-9654"
count = 1
nodes = 1
"""


def test_compile_prints_the_reproducer_of_a_failing_step(tmp_path, monkeypatch):
    """End to end: a step that fails inside `agentc compile` exits 1 and prints the
    saved input and the command (here bufferize is made to run a pass that fails)."""
    from click.testing import CliRunner

    from agentc.cli import cli
    from agentc.targets.cpu import target

    monkeypatch.setattr(target, "BUFFERIZE_PIPELINE", "builtin.module(transform-interpreter)")
    (tmp_path / "a.agent").write_text(SMALL_AGENT)
    (tmp_path / "cpu.toml").write_text(CPU_CLUSTER)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["compile", "a.agent", "--cluster", "cpu.toml", "--targets", "cpu",
                                      "-o", "out", "-q"], prog_name="agentc")
    assert result.exit_code == 1, result.output
    err = result.stderr
    assert "error: bufferize: pass pipeline failed" in err and "Traceback" not in err
    saved = re.search(r"note: failing input saved to (\S+)", err).group(1)
    command = re.search(r"note: reproduce with: (.+)", err).group(1)
    assert saved in shlex.split(command) and "--pass-pipeline=builtin.module(transform-interpreter)" in command
    assert "linalg" in open(saved).read()        # a kernel on its way to the bufferize stage
    assert not (tmp_path / "out").exists()       # nothing half-written
