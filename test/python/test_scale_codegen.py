"""Code generation without repeated work (issue 15, scale): a pool's host program is
lowered and translated in one MLIR context (`toolchain.lower_to_llvmir`, no print and
re-parse between), and each pool module is printed once after the last passes. Both must
give what the shipped tools and a fresh print give."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from agentc.diagnostics import ToolchainError
from agentc.targets import toolchain
from agentc.targets.cpu.target import _has_assert_messages, _renumber_assert_messages, llvm_pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Buffers, a loop and an external call: every conversion of the host pipeline has work.
HOST = """func.func private @ext(memref<?xi8>) -> i64
func.func @run(%n: index) -> i64 {
  %buf = memref.alloc(%n) : memref<?xi8>
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0 : i64
  %s = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %z) -> (i64) {
    %r = func.call @ext(%buf) : (memref<?xi8>) -> i64
    %a = arith.addi %acc, %r : i64
    scf.yield %a : i64
  }
  memref.dealloc %buf : memref<?xi8>
  return %s : i64
}
"""
NOT_LLVM = "func.func @f(%a: i32) -> i32 {\n  %b = arith.addi %a, %a : i32\n  return %b : i32\n}\n"
# What the async runtime's cf.assert lowering leaves: a message global from a process-wide counter.
ASSERT_MSG = """llvm.mlir.global internal constant @assert_msg_7("boom\\00") {addr_space = 0 : i32}
llvm.func @f() -> !llvm.ptr {
  %p = llvm.mlir.addressof @assert_msg_7 : !llvm.ptr
  llvm.return %p : !llvm.ptr
}
"""


def _tool(name: str, *args: str, stdin: str) -> str:
    return subprocess.run([toolchain.tool_path(name), *args], input=stdin, capture_output=True, text=True,
                          check=True, timeout=120).stdout


def test_lowering_and_translating_in_one_context_matches_mlir_opt_then_mlir_translate():
    pipeline = llvm_pipeline(1)
    expected = _tool("mlir-translate", "--mlir-to-llvmir",
                     stdin=_tool("mlir-opt", f"--pass-pipeline={pipeline}", stdin=HOST))
    assert toolchain.lower_to_llvmir(HOST, pipeline) == expected
    assert "@malloc" in expected and "@ext" in expected      # the pipeline really lowered it


def test_the_edit_path_rewrites_the_lowered_text_before_translating():
    got = toolchain.lower_to_llvmir(ASSERT_MSG, "builtin.module()", edit=_renumber_assert_messages,
                                    edit_needed=_has_assert_messages)
    assert "@assert_msg_0" in got and "@assert_msg_7" not in got
    # Without the marker the edit is skipped and the module translated as it is.
    untouched = toolchain.lower_to_llvmir(ASSERT_MSG, "builtin.module()", edit=_renumber_assert_messages,
                                          edit_needed=lambda module: False)
    assert "@assert_msg_7" in untouched


def test_a_failed_translation_saves_the_lowered_module_and_names_mlir_translate():
    with pytest.raises(ToolchainError) as info:
        toolchain.lower_to_llvmir(NOT_LLVM, "builtin.module(canonicalize)", stage="llvm")
    err = info.value
    argv = shlex.split(err.command)
    assert os.path.basename(argv[0]) == "mlir-translate" and argv[1] == "--mlir-to-llvmir"
    saved = argv[2]
    assert os.path.isfile(saved) and any(saved in note for note in err.notes)
    assert "arith.addi" in open(saved).read()
    assert subprocess.run(argv, capture_output=True, timeout=120, stdin=subprocess.DEVNULL).returncode != 0


def test_pool_modules_are_the_final_ones_also_when_resumed_past_host(tmp_path):
    from agentc.passes._ir import get, top_ops
    from agentc.pipeline import compile_file
    from agentc.state import Options

    src = os.path.join(ROOT, "examples", "react_tools.agent")
    c = compile_file(src, Options(targets=("cpu",)))
    assert c.stage == "host"
    pools = {get(op, "sym_name"): op for op in top_ops(c.module) if op.name == "builtin.module"}
    assert pools
    for pool, op in pools.items():
        assert c.artifacts[f"{pool}/{pool}.mlir"] == (str(op) + "\n").encode()
    printed = tmp_path / "react_tools.host.mlir"
    printed.write_text(c.asm())
    resumed = compile_file(str(printed), Options(targets=("cpu",)))
    for pool in pools:
        path = f"{pool}/{pool}.mlir"
        assert resumed.artifacts[path] == c.artifacts[path]
        assert resumed.artifact_meta[path] == c.artifact_meta[path]
    assert sorted(resumed.artifacts) == sorted(c.artifacts)
