"""The CPU target: linalg-on-tensors kernels -> LLVM IR -> ELF object + C header.

Stages, in order (each a small function over `CompileState`):

- `vectorize` (on tensors): a transform-dialect script tiles every `linalg.matmul` into
  register tiles (`options.tile`, default [8, 32, 1] for m, n, k, shrunk per op to
  divide its shape), vectorises the tiles into `vector.contract`, hoists the
  accumulator out of the k loop and lowers the contraction to FMAs. It runs before
  bufferization because the accumulator hoisting needs value semantics: on memrefs
  the function arguments may alias and the transfers stay in the loop (4 GFLOP/s
  instead of 30+). Other linalg ops are left to become loops, which LLVM vectorises.
- `bufferize`: one-shot bufferization across function boundaries with identity layouts,
  results turned into trailing out-parameters, and deallocation of temporaries. The C
  ABI becomes `void _mlir_ciface_<kernel>(memref *in..., memref *out...)`.
- `llvm`: linalg -> loops, then the upstream conversions to the LLVM dialect, then
  translation to LLVM IR (artifacts["ll"]; the LLVM-dialect MLIR stays in
  meta["llvm_mlir"] for the JIT).
- `obj`: llvmlite codegen for `options.triple` (artifacts["o"]).
- `header`: a C header with the memref descriptor structs and kernel prototypes.

`jit(kernel_text)` runs the same stages up to the LLVM dialect and returns a callable
over numpy arrays (MLIR's ExecutionEngine); the tests and benchmarks use it.
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from agentc.diagnostics import ToolchainError, UsageError

from . import _mlir_util as util
from .base import CompileState, StageFn, run_stages

BUFFERIZE_PIPELINE = (
    "builtin.module("
    "one-shot-bufferize{bufferize-function-boundaries "
    "function-boundary-type-conversion=identity-layout-map},"
    "buffer-results-to-out-params{hoist-static-allocs modify-public-functions},"
    "canonicalize,cse,"
    "buffer-deallocation-pipeline,"
    "convert-bufferization-to-memref,"
    "canonicalize)"
)

LLVM_PIPELINE = (
    "builtin.module("
    "func.func(convert-linalg-to-loops),"
    "fold-memref-alias-ops,"
    "expand-strided-metadata,"
    "convert-vector-to-scf,"
    "lower-affine,"
    "convert-scf-to-cf,"
    "convert-vector-to-llvm,"
    "finalize-memref-to-llvm,"
    "convert-math-to-llvm,"
    "convert-arith-to-llvm,"
    "convert-index-to-llvm,"
    "convert-func-to-llvm,"
    "convert-cf-to-llvm,"
    "convert-ub-to-llvm,"
    "reconcile-unrealized-casts)"
)

_SCRIPT_HEAD = """
module attributes {transform.with_named_sequence} {
  transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {
"""

# One block per distinct tile; `{m}x{n}x{k}` names the ops tagged by `_tag_matmuls`.
_SCRIPT_TILE = """
    %mm_{m}x{n}x{k} = transform.structured.match ops{{["linalg.matmul"]}}
      attributes {{agentc.tile = "{m}x{n}x{k}"}} in %root : (!transform.any_op) -> !transform.any_op
    %t_{m}x{n}x{k}, %l0_{m}x{n}x{k}, %l1_{m}x{n}x{k}, %l2_{m}x{n}x{k} =
      transform.structured.tile_using_for %mm_{m}x{n}x{k} tile_sizes [{m}, {n}, {k}]
      : (!transform.any_op) -> (!transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op)
    transform.structured.vectorize %t_{m}x{n}x{k} vector_sizes [{m}, {n}, {k}] {{create_named_contraction}}
      : !transform.any_op
"""

_SCRIPT_TAIL = """
    %funcs = transform.structured.match ops{["func.func"]} in %root
      : (!transform.any_op) -> !transform.any_op
    transform.apply_patterns to %funcs {
      transform.apply_patterns.canonicalization
      transform.apply_patterns.tensor.fold_tensor_subset_ops_into_vector_transfers
    } : !transform.any_op
    transform.apply_cse to %funcs : !transform.any_op
    %loops = transform.structured.match ops{["scf.for"]} in %root
      : (!transform.any_op) -> !transform.any_op
    transform.loop.hoist_loop_invariant_subsets %loops : !transform.any_op
    transform.apply_patterns to %funcs {
      transform.apply_patterns.vector.lower_contraction lowering_strategy = "outerproduct"
      transform.apply_patterns.vector.lower_outerproduct
      transform.apply_patterns.vector.transfer_permutation_patterns
      transform.apply_patterns.vector.lower_transfer max_transfer_rank = 1
      transform.apply_patterns.vector.lower_broadcast
      transform.apply_patterns.vector.lower_shape_cast
      transform.apply_patterns.vector.lower_transpose
    } : !transform.any_op
    transform.yield
  }
}
"""

_C_TYPES = {"f32": "float", "f64": "double", "f16": "uint16_t", "bf16": "uint16_t",
            "i32": "int32_t", "i64": "int64_t", "i8": "int8_t", "i1": "bool"}
_NP_TYPES = {"f32": np.float32, "f64": np.float64, "f16": np.float16, "i32": np.int32,
             "i64": np.int64, "i8": np.int8}


@dataclass(frozen=True)
class CpuOptions:
    """triple: LLVM target triple (default: this machine). cpu: "" for the triple's
    baseline, "native" for this machine's CPU and features, or an LLVM CPU name.
    tile: matmul register tile (m, n, k)."""

    triple: str
    cpu: str = ""
    features: str = ""
    opt_level: int = 3
    tile: tuple[int, int, int] = (8, 32, 1)


@dataclass(frozen=True)
class KernelSignature:
    """A public kernel function: C-ABI arguments (inputs then out-params) as
    (name, element type, shape), and how many of them are inputs."""

    name: str
    args: tuple[tuple[str, str, tuple[int, ...]], ...]
    n_inputs: int


def _shape_and_type(ty) -> tuple[tuple[int, ...], str]:
    from mlir import ir

    shaped = ir.ShapedType(ty)
    return tuple(shaped.shape), str(shaped.element_type)


def kernel_signatures(text: str) -> list[KernelSignature]:
    """Signatures of the public functions of a tensor-level kernel module, in order.

    Results become out-parameters named out0, out1, ... after bufferization.
    """
    from mlir import ir

    sigs = []
    with ir.Context():
        module = ir.Module.parse(text)
        for op in module.body.operations:
            if op.operation.name != "func.func" or "sym_visibility" in op.attributes:
                continue
            name = ir.StringAttr(op.attributes["sym_name"]).value
            ftype = ir.FunctionType(ir.TypeAttr(op.attributes["function_type"]).value)
            header = re.search(rf"func\.func @{re.escape(name)}\((.*?)\)\s*->", text)
            arg_names = re.findall(r"%([A-Za-z_][\w]*)\s*:", header.group(1)) if header else []
            if len(arg_names) != len(ftype.inputs):
                arg_names = [f"arg{i}" for i in range(len(ftype.inputs))]
            args = []
            for arg_name, ty in zip(arg_names, ftype.inputs):
                shape, elem = _shape_and_type(ty)
                args.append((arg_name, elem, shape))
            for i, ty in enumerate(ftype.results):
                shape, elem = _shape_and_type(ty)
                args.append((f"out{i}", elem, shape))
            sigs.append(KernelSignature(name, tuple(args), len(ftype.inputs)))
    return sigs


def c_header(sigs: list[KernelSignature], guard: str = "AGENTC_KERNELS_H") -> str:
    """C declarations of `_mlir_ciface_*` entry points and their memref descriptors."""
    structs: dict[str, str] = {}
    protos = []
    for sig in sigs:
        params = []
        for arg_name, elem, shape in sig.args:
            struct = f"agentc_memref_{elem}_{len(shape)}d"
            if struct not in structs:
                ctype = _C_TYPES.get(elem, "void")
                dims = (f"\n  int64_t sizes[{len(shape)}];\n  int64_t strides[{len(shape)}];"
                        if shape else "")
                structs[struct] = (f"typedef struct {{\n  {ctype} *allocated;\n  {ctype} *aligned;\n"
                                   f"  int64_t offset;{dims}\n}} {struct};\n")
            dims_txt = "x".join(str(d) for d in shape) or "scalar"
            params.append(f"{struct} *{arg_name} /* {dims_txt} {elem} */")
        joined = ",\n    ".join(params)
        protos.append(f"void _mlir_ciface_{sig.name}(\n    {joined});\n")
    lines = [f"/* Generated by agentc (cpu target). Inputs first, then out-parameters the",
             " * caller allocates with the shapes shown; the kernel fills them. */",
             f"#ifndef {guard}", f"#define {guard}", "#include <stdbool.h>", "#include <stdint.h>",
             "#ifdef __cplusplus", 'extern "C" {', "#endif", ""]
    lines += [structs[k] for k in sorted(structs)]
    lines += protos
    lines += ["#ifdef __cplusplus", "}", "#endif", f"#endif /* {guard} */", ""]
    return "\n".join(lines)


def transform_script(tiles) -> str:
    """The schedule for the given distinct (m, n, k) matmul tiles."""
    blocks = [_SCRIPT_TILE.format(m=m, n=n, k=k) for m, n, k in sorted(set(tiles))]
    return _SCRIPT_HEAD + "".join(blocks) + _SCRIPT_TAIL


def _fitting_tile(shape_mnk, preferred) -> tuple[int, int, int] | None:
    """The largest tile no bigger than `preferred` that divides the matmul exactly.

    Exact tiles keep the vector code unmasked; when even a 1x8 tile does not fit the
    op stays as loops for LLVM's own vectoriser.
    """
    m, n, k = shape_mnk
    pm, pn, pk = preferred
    tm = next(t for t in (pm, 8, 4, 2, 1) if t <= pm and m % t == 0)
    tn = next((t for t in (pn, 64, 32, 16, 8) if t <= pn and n % t == 0), None)
    tk = next(t for t in (pk, 4, 2, 1) if t <= pk and k % t == 0)
    return None if tn is None else (tm, tn, tk)


def _tag_matmuls(text: str, preferred) -> tuple[str, list[tuple[int, int, int]]]:
    """Mark each static linalg.matmul with the tile it gets (`agentc.tile`)."""
    from mlir import ir

    tiles = []
    with ir.Context():
        module = ir.Module.parse(text)

        def visit(op):
            if op.name == "linalg.matmul":
                a, b = (ir.ShapedType(v.type) for v in list(op.operands)[:2])
                if a.has_static_shape and b.has_static_shape:
                    tile = _fitting_tile((a.shape[0], b.shape[1], a.shape[1]), preferred)
                    if tile is not None:
                        op.attributes["agentc.tile"] = ir.StringAttr.get("x".join(map(str, tile)))
                        tiles.append(tile)
            return ir.WalkResult.ADVANCE
        module.operation.walk(visit)
        return str(module), tiles


class CpuTarget:
    name: ClassVar[str] = "cpu"

    def parse_options(self, **overrides) -> CpuOptions:
        known = set(CpuOptions.__dataclass_fields__)
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise UsageError(f"cpu target: unknown option(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
        values = dict(overrides)
        values.setdefault("triple", util.host_triple())
        if "tile" in values:
            tile = tuple(int(t) for t in values["tile"])
            if len(tile) != 3 or min(tile) < 1:
                raise UsageError(f"cpu target: tile must be three positive sizes (m, n, k), got {tile}")
            values["tile"] = tile
        values["opt_level"] = int(values.get("opt_level", 3))
        if values["opt_level"] not in (0, 1, 2, 3):
            raise UsageError(f"cpu target: opt_level must be 0-3, got {values['opt_level']}")
        return CpuOptions(**values)

    def add_stages(self, stages: dict[str, StageFn], options: CpuOptions) -> None:
        stages["vectorize"] = lambda state: _vectorize(state, options)
        stages["bufferize"] = _bufferize
        stages["llvm"] = _to_llvm
        stages["obj"] = lambda state: _obj(state, options)
        stages["header"] = _header


def _bufferize(state: CompileState) -> CompileState:
    state.ir = util.run_pipeline(state.ir, BUFFERIZE_PIPELINE, stage="bufferize")
    return state


def _vectorize(state: CompileState, options: CpuOptions) -> CompileState:
    state.meta["signatures"] = kernel_signatures(state.ir)
    tagged, tiles = _tag_matmuls(state.ir, options.tile)
    state.meta["matmul_tiles"] = tiles
    if not tiles:
        return state
    scheduled = util.with_transform_script(tagged, transform_script(tiles))
    done = util.run_pipeline(scheduled, "builtin.module(transform-interpreter)", stage="vectorize")
    state.ir = util.run_pipeline(util.strip_transform_script(done), "builtin.module(canonicalize,cse)",
                                 stage="vectorize")
    return state


def _to_llvm(state: CompileState) -> CompileState:
    state.meta["llvm_mlir"] = util.run_pipeline(state.ir, LLVM_PIPELINE, stage="llvm")
    state.ir = util.translate_to_llvmir(state.meta["llvm_mlir"])
    state.artifacts["ll"] = state.ir.encode()
    return state


def _obj(state: CompileState, options: CpuOptions) -> CompileState:
    cpu, features = options.cpu, options.features
    if cpu == "native":
        cpu, host_features = util.host_cpu()
        features = features or host_features
    llvm_ir = state.artifacts["ll"].decode()
    state.artifacts["o"] = util.emit_object(llvm_ir, options.triple, cpu=cpu, features=features,
                                            opt_level=options.opt_level)
    return state


def _header(state: CompileState) -> CompileState:
    guard = re.sub(r"\W", "_", f"AGENTC_{state.name}_H").upper()
    state.artifacts["h"] = c_header(state.meta["signatures"], guard).encode()
    return state


def compile_kernel(text: str, name: str = "kernel", stop_after: str | None = None,
                   **options) -> CompileState:
    """Run the CPU stages over one kernel module (a convenience for tools and tests)."""
    target = CpuTarget()
    return run_stages(target, CompileState(name, text), target.parse_options(**options), stop_after)


class JitKernel:
    """A compiled kernel callable on numpy arrays: inputs in, tuple of outputs back."""

    def __init__(self, engine, signature: KernelSignature, llvm_mlir: str):
        self.engine, self.signature, self.llvm_mlir = engine, signature, llvm_mlir

    def __call__(self, *inputs: np.ndarray, outputs: list[np.ndarray] | None = None):
        from mlir import runtime

        sig = self.signature
        if len(inputs) != sig.n_inputs:
            raise TypeError(f"{sig.name} takes {sig.n_inputs} arrays, got {len(inputs)}")
        arrays = []
        for given, (arg_name, elem, shape) in zip(inputs, sig.args):
            arr = np.ascontiguousarray(given, dtype=_NP_TYPES[elem])
            if arr.shape != shape:
                raise ValueError(f"{sig.name}: argument {arg_name} has shape {arr.shape}, wants {shape}")
            arrays.append(arr)
        outs = outputs or [np.zeros(shape, dtype=_NP_TYPES[elem])
                           for _, elem, shape in sig.args[sig.n_inputs:]]
        arrays += outs
        descriptors = [runtime.get_ranked_memref_descriptor(a) for a in arrays]
        self.engine.invoke(sig.name, *[ctypes.pointer(ctypes.pointer(d)) for d in descriptors])
        return tuple(outs)


def jit(text: str, *, opt_level: int = 3, tile: tuple[int, int, int] = (8, 32, 1),
        function: str | None = None) -> JitKernel:
    """Compile a kernel module through bufferize/vectorize/llvm and load it in-process."""
    from mlir import execution_engine, ir

    state = compile_kernel(text, stop_after="llvm", tile=tile, opt_level=opt_level)
    sigs = state.meta["signatures"]
    sig = next((s for s in sigs if function in (None, s.name)), None)
    if sig is None:
        raise UsageError(f"no public function '{function}' in the kernel module")
    ctx = ir.Context()
    with ctx:
        module = ir.Module.parse(state.meta["llvm_mlir"])
        try:
            engine = execution_engine.ExecutionEngine(
                module, opt_level=opt_level, shared_libs=[util.runtime_lib("mlir_c_runner_utils")])
        except RuntimeError as err:
            raise ToolchainError(f"jit: ExecutionEngine failed: {err}") from None
    kernel = JitKernel(engine, sig, state.meta["llvm_mlir"])
    kernel._context = ctx  # the engine must not outlive its context
    return kernel
