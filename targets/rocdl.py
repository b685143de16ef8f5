"""AMD GPU target: kernel modules -> AMDGPU LLVM IR, an AMDGCN object and (with ld.lld) a HSACO.

Stages, in order:
  gpu     bufferize, map linalg loops to blocks/threads, outline (`_gpu_common`)
  rocdl   attach `#rocdl.target`, `convert-gpu-to-rocdl{chipset=...}` (bare pointers)
  llvm    the kernel gpu.module alone -> LLVM IR (as `mlir-translate`) -> artifacts["amdgpu.ll"]
  amdgcn  llvmlite, triple amdgcn-amd-amdhsa, cpu = chip -> artifacts["amdgcn.o"]
  hsaco   `ld.lld -shared` -> artifacts["hsaco"]; skipped (meta note) without ld.lld
  host    host funcs -> LLVM dialect (`gpu-to-llvm`) with the code object embedded in a
          `gpu.binary` -> LLVM IR -> x86-64 object -> artifacts["host.ll"], ["host.o"]

This MLIR build has no AMDGPU serializer, so `gpu-module-to-binary` cannot be used:
the device code is translated and assembled by hand (`toolchain`) and the `gpu.binary`
built here. The launchers are NVVM's: they load the embedded object with
`mgpuModuleLoad` and launch with `mgpuLaunchKernel` (MLIR's runtime wrappers; the ROCm
build of them calls hipModuleLoadData / hipModuleLaunchKernel), and take their
temporaries from `agentc_alloc`. The embedded object is the HSACO when ld.lld made one;
otherwise the relocatable AMDGCN object, which a runtime must link (ld.lld -shared)
before HIP loads it: meta["host_embeds"] says which.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import ClassVar

from mlir import ir

from agentc.diagnostics import ToolchainError

from . import _gpu_common as common
from . import toolchain
from .base import CompileState, StageFn

DEVICE_TRIPLE = "amdgcn-amd-amdhsa"


@dataclass(frozen=True)
class RocdlOptions:
    chip: str = "gfx942"
    opt_level: int = 3
    tile_sizes: tuple[int, ...] = (32, 8)


class RocdlTarget:
    name: ClassVar[str] = "rocdl"
    EMIT_POINTS: ClassVar[dict[str, str]] = {"llvm": "rocdl", "amdgcn": "amdgcn", "objects": "host"}

    def parse_options(self, **overrides) -> RocdlOptions:
        return common.parse_gpu_options("rocdl", RocdlOptions, overrides, "gfx", "a gfxNNN name",
                                        "gfx90a, gfx942, gfx1100")

    def add_stages(self, stages: dict[str, StageFn], options: RocdlOptions) -> None:
        stages["gpu"] = lambda s: common.gpu_stage(s, options)
        stages["rocdl"] = lambda s: _rocdl(s, options)
        stages["llvm"] = lambda s: _llvm(s, options)
        stages["amdgcn"] = lambda s: _amdgcn(s, options)
        stages["hsaco"] = lambda s: _hsaco(s, options)
        stages["host"] = lambda s: _host(s, options)


def _rocdl(state: CompileState, options: RocdlOptions) -> CompileState:
    state.ir = toolchain.run_pipeline(
        state.ir,
        f"builtin.module(rocdl-attach-target{{chip={options.chip} O={options.opt_level}}},"
        # AMDGPU selects exp/log/sqrt natively; without this they become ocml calls.
        "gpu.module(convert-math-to-llvm),"
        f"gpu.module(convert-gpu-to-rocdl{{chipset={options.chip} "
        "use-bare-ptr-memref-call-conv=true}),"
        "reconcile-unrealized-casts)",
        stage="rocdl")
    return state


def device_module_text(text: str) -> str:
    """The kernel gpu.module's contents as a plain builtin.module for translation."""
    with ir.Context():
        module = ir.Module.parse(text)
        gpu_modules = [op.operation for op in module.body.operations
                       if op.operation.name == "gpu.module"]
        if len(gpu_modules) != 1:
            raise ToolchainError(f"llvm: expected one gpu.module, found {len(gpu_modules)}")
        device = ir.Module.create(ir.Location.unknown())
        for attr in ("llvm.data_layout", "llvm.target_triple"):
            if attr in gpu_modules[0].attributes:
                device.operation.attributes[attr] = gpu_modules[0].attributes[attr]
        for op in list(gpu_modules[0].regions[0].blocks[0].operations):
            op.operation.detach_from_parent()
            device.body.append(op.operation)
        return str(device)


def _llvm(state: CompileState, options: RocdlOptions) -> CompileState:
    # state.ir stays the MLIR module (host funcs + gpu.module) for the host stage.
    llvm_ir = toolchain.translate_to_llvmir(device_module_text(state.ir), stage="llvm")
    state.artifacts["amdgpu.ll"] = llvm_ir.encode()
    return state


def _amdgcn(state: CompileState, options: RocdlOptions) -> CompileState:
    state.artifacts["amdgcn.o"] = toolchain.emit_object(
        state.artifacts["amdgpu.ll"].decode(), DEVICE_TRIPLE, cpu=options.chip,
        opt_level=options.opt_level, stage="amdgcn")
    return state


def _hsaco(state: CompileState, options: RocdlOptions) -> CompileState:
    lld = shutil.which("ld.lld")
    if lld is None:
        state.meta["hsaco"] = "skipped: ld.lld not on PATH (Debian package lld)"
        return state
    state.artifacts["hsaco"] = toolchain.run_tool(
        [lld, "-shared", toolchain.IN, "-o", toolchain.OUT], "hsaco", state.artifacts["amdgcn.o"], ".o")
    state.meta["hsaco"] = "ld.lld -shared"
    return state


def binary_module(text: str, code_object: bytes) -> str:
    """The module with its kernel gpu.module replaced by a `gpu.binary` of the same name
    holding `code_object` (what `gpu-module-to-binary` would make with a serializer)."""
    from mlir.dialects import gpu

    with ir.Context():
        module = ir.Module.parse(text)
        for op in list(module.body.operations):
            op = op.operation
            if op.name != "gpu.module":
                continue
            targets = ir.ArrayAttr(op.attributes["targets"])
            objects = [gpu.ObjectAttr.get(t, int(gpu.CompilationTarget.Binary), code_object)
                       for t in targets]
            name = ir.StringAttr(op.attributes["sym_name"]).value
            binary = ir.Operation.parse(f"gpu.binary @{name} {ir.ArrayAttr.get(objects)}")
            ir.InsertionPoint(op).insert(binary)
            op.erase()
        return str(module)


def _host(state: CompileState, options: RocdlOptions) -> CompileState:
    if "hsaco" in state.artifacts:
        code_object = state.artifacts["hsaco"]
        state.meta["host_embeds"] = "hsaco"
    else:
        code_object = state.artifacts["amdgcn.o"]
        state.meta["host_embeds"] = ("amdgcn.o (relocatable: link it with ld.lld -shared before "
                                     "hipModuleLoadData)")
    return common.host_object(state, binary_module(state.ir, code_object), options.opt_level)
