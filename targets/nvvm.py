"""NVIDIA GPU target: kernel modules -> PTX, cubin and an x86-64 host object.

Stages, in order:
  gpu    bufferize, map linalg loops to blocks/threads, outline (`_gpu_common`)
  nvvm   attach `#nvvm.target`, `convert-gpu-to-nvvm` (bare-pointer kernel ABI)
  ptx    `gpu-module-to-binary{format=isa}`; the PTX text -> artifacts["ptx"]; the IR
         is now the host module holding a `gpu.binary`
  cubin  `ptxas` on that PTX -> artifacts["cubin"]; skipped (meta note) without ptxas
  host   host funcs -> LLVM dialect (`gpu-to-llvm`) with the cubin (or, without it, the
         PTX for driver JIT) embedded -> LLVM IR -> x86-64 object via llvmlite
         -> artifacts["host.ll"], artifacts["host.o"]

Kernels take one bare pointer per buffer plus index scalars, so a launcher can call
them without building memref descriptors. The launcher (`host.o`) has the kernel's
CPU signature, takes its temporaries from the runtime (`agentc_alloc`, freed before it
returns) and launches through MLIR's `mgpu*` wrappers (docs/runtime_abi.md);
meta["launches"] (and the manifest) list its launches with their grid and block.
`benchmarks/gpu_check.py` runs launchers on a GPU against the CPU kernels.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import ClassVar

from mlir import ir

from . import _gpu_common as common
from . import toolchain
from .base import CompileState, StageFn

CHIPS = ("sm_80", "sm_86", "sm_89", "sm_90", "sm_90a", "sm_100", "sm_100a", "sm_120")


@dataclass(frozen=True)
class NvvmOptions:
    chip: str = "sm_90"
    opt_level: int = 3
    ptx_version: int | None = None      # e.g. 86 -> PTX ISA 8.6; None: LLVM's minimum
    tile_sizes: tuple[int, ...] = (32, 8)


class NvvmTarget:
    name: ClassVar[str] = "nvvm"
    EMIT_POINTS: ClassVar[dict[str, str]] = {"llvm": "nvvm", "ptx": "ptx", "objects": "host"}

    def parse_options(self, **overrides) -> NvvmOptions:
        return common.parse_gpu_options("nvvm", NvvmOptions, overrides, "sm_", "an sm_XX name",
                                        ", ".join(CHIPS))

    def add_stages(self, stages: dict[str, StageFn], options: NvvmOptions) -> None:
        stages["gpu"] = lambda s: common.gpu_stage(s, options)
        stages["nvvm"] = lambda s: _nvvm(s, options)
        stages["ptx"] = lambda s: _ptx(s, options)
        stages["cubin"] = lambda s: _cubin(s, options)
        stages["host"] = lambda s: _host(s, options)


def _attach_options(options: NvvmOptions) -> str:
    parts = [f"chip={options.chip}", f"O={options.opt_level}"]
    if options.ptx_version is not None:
        parts.append(f"features=+ptx{options.ptx_version}")
    return " ".join(parts)


_LOG2_E = 1.4426950408889634
_LN_2 = 0.6931471805599453


def lower_math_to_intrinsics(text: str) -> str:
    """Rewrite f32 math ops in kernels to LLVM/NVVM intrinsics that PTX has instructions for.

    `convert-gpu-to-nvvm` turns math ops into libdevice calls (`__nv_expf`, ...) and
    rejects `llvm.intr.exp`/`log`/`sqrt`; the NVPTX backend itself has no libcalls for
    exp and log. Going through `llvm.call_intrinsic` keeps kernels free of libdevice:
    exp(x) = ex2.approx(x * log2 e), log(x) = lg2.approx(x) * ln 2, sqrt -> sqrt.rn,
    rsqrt -> 1 / sqrt.rn, absf -> abs.
    """
    from mlir.dialects import arith, llvm

    with ir.Context(), ir.Location.unknown():
        module = ir.Module.parse(text)
        f32 = ir.F32Type.get()
        found: list[ir.Operation] = []

        def collect(op: ir.Operation) -> ir.WalkResult:
            if op.name in ("math.exp", "math.log", "math.sqrt", "math.rsqrt", "math.absf") \
                    and op.results[0].type == f32:
                found.append(op)
            return ir.WalkResult.ADVANCE

        for top in module.body.operations:
            if top.operation.name == "gpu.module":
                top.operation.walk(collect)

        def call(name: str, x: ir.Value) -> ir.Value:
            return llvm.call_intrinsic(f32, name, [x], [], [])

        def const(value: float) -> ir.Value:
            return arith.constant(f32, value)

        for op in found:
            x = op.operands[0]
            with ir.InsertionPoint(op):
                if op.name == "math.exp":
                    new = call("llvm.exp2.f32", arith.mulf(x, const(_LOG2_E)))
                elif op.name == "math.log":
                    new = arith.mulf(call("llvm.nvvm.lg2.approx.f", x), const(_LN_2))
                elif op.name == "math.sqrt":
                    new = call("llvm.sqrt.f32", x)
                elif op.name == "math.rsqrt":
                    new = arith.divf(const(1.0), call("llvm.sqrt.f32", x))
                else:
                    new = call("llvm.fabs.f32", x)
            op.results[0].replace_all_uses_with(new)
            op.erase()
        return str(module)


def _nvvm(state: CompileState, options: NvvmOptions) -> CompileState:
    state.ir = toolchain.run_pipeline(
        lower_math_to_intrinsics(state.ir),
        f"builtin.module(nvvm-attach-target{{{_attach_options(options)}}},"
        "gpu.module(convert-gpu-to-nvvm{use-bare-ptr-memref-call-conv=true}),"
        "reconcile-unrealized-casts)",
        stage="nvvm")
    return state


def _ptx(state: CompileState, options: NvvmOptions) -> CompileState:
    pipeline = "builtin.module(gpu-module-to-binary{format=isa})"
    binary = toolchain.run_pipeline(state.ir, pipeline, stage="ptx")
    payloads = common.gpu_binary_objects(binary)
    if len(payloads) != 1:
        raise toolchain.failure("ptx", f"expected one gpu.binary object, got {len(payloads)}",
                                ["mlir-opt", f"--pass-pipeline={pipeline}", toolchain.IN], state.ir)
    state.artifacts["ptx"] = payloads[0]
    state.ir = common.strip_binary_properties(binary)
    return state


def _cubin(state: CompileState, options: NvvmOptions) -> CompileState:
    ptxas = shutil.which("ptxas")
    if ptxas is None:
        state.meta["cubin"] = "skipped: ptxas not on PATH"
        return state
    state.artifacts["cubin"] = toolchain.run_tool(
        [ptxas, f"-arch={options.chip}", f"-O{options.opt_level}", toolchain.IN, "-o", toolchain.OUT],
        "cubin", state.artifacts["ptx"], ".ptx")
    state.meta["cubin"] = f"ptxas -arch={options.chip} -O{options.opt_level}"
    return state


def _embed_cubin(binary_mlir: str, cubin: bytes) -> str:
    """Replace the PTX payload of the gpu.binary by the cubin (loaded without JIT)."""
    from mlir.dialects import gpu
    with ir.Context():
        module = ir.Module.parse(binary_mlir)
        for op in module.body.operations:
            if op.operation.name == "gpu.binary":
                objects = [gpu.ObjectAttr.get(gpu.ObjectAttr(a).target,
                                              int(gpu.CompilationTarget.Binary), cubin)
                           for a in ir.ArrayAttr(op.operation.attributes["objects"])]
                op.operation.attributes["objects"] = ir.ArrayAttr.get(objects)
        return str(module)


def _host(state: CompileState, options: NvvmOptions) -> CompileState:
    binary_mlir = state.ir
    if "cubin" in state.artifacts:
        binary_mlir = _embed_cubin(binary_mlir, state.artifacts["cubin"])
        state.meta["host_embeds"] = "cubin"
    else:
        state.meta["host_embeds"] = "ptx (JIT-compiled by the driver at load)"
    return common.host_object(state, binary_mlir, options.opt_level)
