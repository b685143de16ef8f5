"""GPU targets (nvvm, rocdl): PTX, cubin, host object and AMDGCN object from linalg kernels.

Checks the artifacts with the shipped LLVM tools (llvm-readelf) and ptxas; nothing here
needs a GPU. Each target is compiled once per kernel module and the results shared.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from agentc.codegen import kernels
from agentc.diagnostics import ToolchainError, UsageError
from agentc.targets import _gpu_common as common
from agentc.targets import toolchain
from agentc.targets.base import CompileState, run_stages
from agentc.targets.nvvm import NvvmTarget
from agentc.targets.rocdl import RocdlTarget

MATMUL = """
func.func @matmul(%a: tensor<64x32xf32>, %b: tensor<32x50xf32>) -> tensor<64x50xf32>
    attributes {llvm.emit_c_interface} {
  %zero = arith.constant 0.0 : f32
  %init = tensor.empty() : tensor<64x50xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%init : tensor<64x50xf32>) -> tensor<64x50xf32>
  %c = linalg.matmul ins(%a, %b : tensor<64x32xf32>, tensor<32x50xf32>)
                     outs(%acc : tensor<64x50xf32>) -> tensor<64x50xf32>
  return %c : tensor<64x50xf32>
}
"""

ROW_REDUCE = """
func.func @rowsum_exp(%x: tensor<40x48xf32>) -> tensor<40xf32> attributes {llvm.emit_c_interface} {
  %zero = arith.constant 0.0 : f32
  %init = tensor.empty() : tensor<40xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%init : tensor<40xf32>) -> tensor<40xf32>
  %s = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i)>],
                     iterator_types = ["parallel", "reduction"]}
      ins(%x : tensor<40x48xf32>) outs(%acc : tensor<40xf32>) {
  ^bb0(%v: f32, %o: f32):
    %e = math.exp %v : f32
    %r = arith.addf %e, %o : f32
    linalg.yield %r : f32
  } -> tensor<40xf32>
  return %s : tensor<40xf32>
}
"""

BOTH = f"module {{\n{MATMUL}\n{ROW_REDUCE}\n}}"
KERNELS = ["matmul_kernel", "matmul_kernel_0", "rowsum_exp_kernel", "rowsum_exp_kernel_1"]


@functools.cache
def nvvm(chip: str = "sm_90", text: str = BOTH) -> CompileState:
    target = NvvmTarget()
    return run_stages(target, CompileState("k", text), target.parse_options(chip=chip))


@functools.cache
def rocdl(chip: str = "gfx942", text: str = BOTH) -> CompileState:
    target = RocdlTarget()
    return run_stages(target, CompileState("k", text), target.parse_options(chip=chip))


def readelf(data: bytes, *flags: str) -> str:
    with tempfile.NamedTemporaryFile(suffix=".o") as f:
        f.write(data)
        f.flush()
        return subprocess.run([toolchain.tool_path("llvm-readelf"), *flags, f.name],
                              capture_output=True, text=True, check=True).stdout


def entries(ptx: str) -> list[str]:
    return re.findall(r"^\.visible \.entry (\w+)\(", ptx, re.MULTILINE)


def ptxas_accepts(ptx: bytes, chip: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "wb") as f:
            f.write(ptx)
        proc = subprocess.run(["ptxas", f"-arch={chip}", src, "-o", os.path.join(tmp, "k.cubin")],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


needs_ptxas = pytest.mark.skipif(shutil.which("ptxas") is None, reason="ptxas not on PATH")


# ------------------------------------------------------------------------------ lowering

def test_gpu_stage_outlines_into_one_kernel_module_with_coalesced_mapping():
    text, kernels = common.lower_to_gpu(BOTH, (32, 8))
    assert kernels == KERNELS
    assert text.count("gpu.module @agentc_kernels") == 1
    # 50 columns in tiles of 8 -> 7 blocks along x, 64 rows in tiles of 32 -> 2 along y;
    # the innermost dimension (columns) is thread x.
    assert re.search(r"@agentc_kernels::@matmul_kernel_0 blocks in \(%c7, %c2, %c1\) "
                     r"threads in \(%c8, %c32, %c1\)", text), text


def test_parse_options_is_frozen_and_validated():
    options = NvvmTarget().parse_options(chip="sm_80", ptx_version=80)
    assert hash(options) == hash(NvvmTarget().parse_options(chip="sm_80", ptx_version=80))
    with pytest.raises(Exception):
        options.chip = "sm_90"
    with pytest.raises(UsageError, match="unknown option"):
        NvvmTarget().parse_options(arch="sm_90")
    with pytest.raises(UsageError, match="gfx"):
        RocdlTarget().parse_options(chip="sm_90")


def test_stage_order():
    for target, names in ((NvvmTarget(), ["gpu", "nvvm", "ptx", "cubin", "host"]),
                          (RocdlTarget(), ["gpu", "rocdl", "llvm", "amdgcn", "hsaco", "host"])):
        stages: dict = {}
        target.add_stages(stages, target.parse_options())
        assert list(stages) == names


# ------------------------------------------------------------------------------ nvvm

def test_ptx_targets_chip_with_an_entry_per_kernel():
    ptx = nvvm().artifacts["ptx"].decode()
    assert re.search(r"^\.target sm_90$", ptx, re.MULTILINE)
    assert entries(ptx) == KERNELS
    # math.exp became the native instruction, not a libdevice call
    assert "ex2.approx" in ptx and "__nv_" not in ptx


@pytest.mark.ptxas
@needs_ptxas
@pytest.mark.parametrize("chip", ["sm_80", "sm_90", "sm_100"])
def test_ptxas_accepts_ptx_and_cubin_has_kernels(chip):
    state = nvvm(chip)
    ptx = state.artifacts["ptx"].decode()
    assert f".target {chip}\n" in ptx
    ptxas_accepts(state.artifacts["ptx"], chip)
    cubin = state.artifacts["cubin"]
    assert cubin[:4] == b"\x7fELF"
    symbols = readelf(cubin, "-s")
    assert "NVIDIA CUDA" in readelf(cubin, "-h")
    for kernel in KERNELS:
        assert re.search(rf"\bFUNC\s+GLOBAL\b.*\s{kernel}$", symbols, re.MULTILINE), kernel


def test_ptx_version_option():
    ptx = nvvm_with(ptx_version=86).artifacts["ptx"].decode()
    assert ".version 8.6" in ptx


def nvvm_with(**options) -> CompileState:
    target = NvvmTarget()
    return run_stages(target, CompileState("k", MATMUL), target.parse_options(**options))


def test_cubin_skipped_without_ptxas(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    state = nvvm_with()
    assert "cubin" not in state.artifacts
    assert state.meta["cubin"].startswith("skipped")
    assert state.meta["host_embeds"].startswith("ptx")


def test_host_object_launches_embedded_kernels():
    state = nvvm()
    host_ll = state.artifacts["host.ll"].decode()
    assert "@mgpuLaunchKernel" in host_ll and "@mgpuModuleLoad" in host_ll
    assert "define void @_mlir_ciface_matmul(" in host_ll
    obj = state.artifacts["host.o"]
    header = readelf(obj, "-h")
    assert "Advanced Micro Devices X86-64" in header
    symbols = readelf(obj, "-s")
    for name in ("matmul", "_mlir_ciface_rowsum_exp", "mgpuLaunchKernel"):
        assert re.search(rf"\s{name}$", symbols, re.MULTILINE), name
    expected = "cubin" if "cubin" in state.artifacts else "ptx"
    assert state.meta["host_embeds"].startswith(expected)


def test_toolchain_error_carries_command():
    bad = MATMUL.replace("linalg.matmul", "linalg.matmul_bogus")
    with pytest.raises(ToolchainError) as info:
        nvvm_with_text(bad)
    assert info.value.command and "mlir-opt" in info.value.command


def nvvm_with_text(text: str) -> CompileState:
    target = NvvmTarget()
    return run_stages(target, CompileState("k", text), target.parse_options())


# ------------------------------------------------------------------------------ rocdl

@pytest.mark.parametrize("chip", ["gfx942", "gfx90a"])
def test_amdgcn_object_is_amdgpu_elf_with_kernels(chip):
    state = rocdl(chip)
    assert "amdgpu_kernel void @matmul_kernel_0(" in state.artifacts["amdgpu.ll"].decode()
    obj = state.artifacts["amdgcn.o"]
    header = readelf(obj, "-h")
    assert "EM_AMDGPU" in header and chip in header
    symbols = readelf(obj, "-s")
    for kernel in KERNELS:
        assert re.search(rf"FUNC\s+GLOBAL\s+\w+\s+\S+\s+{kernel}$", symbols, re.MULTILINE), kernel
        assert re.search(rf"OBJECT\s+GLOBAL\s+\w+\s+\S+\s+{kernel}\.kd$", symbols, re.MULTILINE)
    assert "__ocml_" not in state.artifacts["amdgpu.ll"].decode()


def test_hsaco_linked_only_with_lld():
    state = rocdl()
    if shutil.which("ld.lld"):
        assert state.artifacts["hsaco"][:4] == b"\x7fELF"
    else:
        assert "hsaco" not in state.artifacts
        assert "ld.lld" in state.meta["hsaco"]


# ------------------------------------------------------------------------------ determinism

def test_same_input_same_bytes():
    for compile_fn in (NvvmTarget, RocdlTarget):
        target = compile_fn()
        a = run_stages(target, CompileState("k", BOTH), target.parse_options())
        b = run_stages(target, CompileState("k", BOTH), target.parse_options())
        assert a.artifacts == b.artifacts
        assert a.ir == b.ir
        assert "TimeInMs" not in a.ir


# ------------------------------------------------------------------------------ codegen/kernels.py

SMALL_ARGS = {"matmul": (64, 48, 32), "prefill_layer": (16, 64, 4, 2, 128),
              "decode_step": (16, 64, 4, 2, 128), "sample": (64, 256, 4),
              "encoder_layer": (16, 64, 4, 128), "mean_pool_l2": (16, 64),
              "retrieve": (128, 64, 4), "logmel": (16, 65, 20)}


@pytest.mark.parametrize("kind", sorted(SMALL_ARGS))
def test_every_kernel_kind_compiles_for_both_gpus(kind):
    text = kernels.KERNELS[kind](*SMALL_ARGS[kind])
    state = nvvm("sm_90", text)
    ptx = state.artifacts["ptx"].decode()
    assert entries(ptx) == state.meta["kernels"] and entries(ptx)
    assert "__nv_" not in ptx
    if shutil.which("ptxas"):
        assert state.artifacts["cubin"][:4] == b"\x7fELF"
    amd = rocdl("gfx942", text)
    symbols = readelf(amd.artifacts["amdgcn.o"], "-s")
    for kernel in amd.meta["kernels"]:
        assert re.search(rf"\s{kernel}\.kd$", symbols, re.MULTILINE), kernel


def test_registry_covers_every_kind():
    assert sorted(kernels.KERNELS) == sorted(SMALL_ARGS)
