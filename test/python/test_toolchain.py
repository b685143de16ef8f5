"""targets/toolchain.py: every failing step raises ToolchainError naming a saved copy of
its input and a command line, and that command, run as printed with the shipped tools,
fails on the saved file the same way (the reproducer really reproduces)."""

from __future__ import annotations

import os
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
