"""The CPU target: linalg-on-tensors kernels -> LLVM IR -> ELF object + C header.

Stages, in order (each a small function over `CompileState`):

- `vectorize` (on tensors), two transform-dialect scripts:
  1. batched contractions written as `linalg.generic` (attention's Q @ K^T and P @ V)
     get a loop over every dim but one m, one n and the k dim (an `scf.forall` shared
     by the threads when `threads > 1` and large), and each iteration is specialised
     to a plain, possibly transposed, `linalg.matmul`;
  2. every static `linalg.matmul` is scheduled (`matmul_schedule` picks the numbers
     per op; measured at 512^3 fp32 on AVX2, Zen 3):
     - with `options.threads > 1` and enough work, `tile_using_forall` gives each
       thread a slice of N (whole B panels) or M;
     - for 32+ rows, B is copied into contiguous panels of 16 columns (zero-padded),
       so each register tile streams its panel instead of striding over B's rows
       (row-major rows a power of two apart fight over a few L1 sets): ~80 GFLOP/s
       against ~60 for blocked row-major B; fewer rows read B in place in K blocks;
     - register tiles (`options.tile`, default [6, 16, 1] for m, n, k), with the loops
       peeled so shapes the tile does not divide get smaller static edge tiles
       instead of masks or scalar loops;
     - each tile is vectorised into `vector.contract`, the accumulator is hoisted out
       of the k loop and the contraction lowered to FMAs.
  6x16 is the AVX2 register budget: 12 accumulator vectors of 8 floats, 2 for the B
  row and 1 for the broadcast A element, out of 16 ymm registers (8x32 needs 32
  accumulators and spills: 28 GFLOP/s). The scripts run before bufferization because
  the accumulator hoisting needs value semantics: on memrefs the function arguments
  may alias and the transfers stay in the loop. Other linalg ops are left to become
  loops, which LLVM vectorises.
- `bufferize`: one-shot bufferization across function boundaries with identity layouts,
  results turned into trailing out-parameters, and deallocation of temporaries. The C
  ABI becomes `void _mlir_ciface_<kernel>(memref *in..., memref *out...)`.
- `llvm`: linalg -> loops, then (threads > 1) `scf.forall` -> `scf.parallel` -> MLIR's
  async runtime calls, then the upstream conversions to the LLVM dialect, then
  translation to LLVM IR (artifacts["ll"]; the LLVM-dialect MLIR stays in
  meta["llvm_mlir"] for the JIT).
- `obj`: llvmlite codegen for `options.triple` (artifacts["o"]); `cpu="native"` uses
  this machine's CPU name and features and is only accepted for the host architecture.
- `header`: a C header with the memref descriptor structs and kernel prototypes.

Threaded kernels (`threads > 1`) call `mlirAsyncRuntime*` functions: link them with
`libmlir_async_runtime.so` from the mlir wheel (`<site-packages>/mlir/lib`); the
header says so. With the default `threads=1` objects need only libc and libm.

`jit(kernel_text)` runs the same stages up to the LLVM dialect and returns a callable
over numpy arrays (MLIR's ExecutionEngine, which compiles for the host CPU and its
features); the tests and benchmarks use it.
"""

from __future__ import annotations

import ctypes
import difflib
import functools
import math
import re
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from agentc.diagnostics import ToolchainError, UsageError

from . import _mlir_util as util
from .base import CompileState, StageFn, check_opt_level, check_options, run_stages

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
    "{async_}"
    "fold-memref-alias-ops,"
    "expand-strided-metadata,"
    "convert-vector-to-scf{{full-unroll=true}},"
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

# Threaded matmuls: each `scf.forall` iteration becomes one async task (min-task-size=1:
# the forall already has one iteration per thread; the default of 1000 would run the
# whole loop on one thread). The caller runs the first slice itself.
ASYNC_PASSES = (
    "scf-forall-to-parallel,"
    "async-parallel-for{{num-workers={threads} min-task-size=1}},"
    "async-to-async-runtime,"
    "async-runtime-ref-counting,"
    "async-runtime-ref-counting-opt,"
    "convert-async-to-llvm,"
)


def llvm_pipeline(threads: int = 1) -> str:
    """The lowering to the LLVM dialect; with threads > 1 it includes the async runtime."""
    return LLVM_PIPELINE.format(async_=ASYNC_PASSES.format(threads=threads) if threads > 1 else "")


_SCRIPT_HEAD = """
module attributes {transform.with_named_sequence} {
  transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {
"""

# One block per distinct schedule, run on each op tagged with it by `_tag_matmuls`
# (packing rewrites one op at a time); `{id}` keeps the blocks' names apart.
_SCRIPT_MATCH = """
    %mm_{id} = transform.structured.match ops{{["linalg.matmul"]}}
      attributes {{agentc.schedule = "{key}"}} in %root : (!transform.any_op) -> !transform.any_op
    transform.foreach %mm_{id} : !transform.any_op {{
    ^bb0(%one_{id}: !transform.any_op):
"""
_SCRIPT_END_MATCH = """
    }
"""
_SCRIPT_FORALL = """
    %par_{id}, %forall_{id} = transform.structured.tile_using_forall %{cur}_{id} num_threads {threads}
      : (!transform.any_op) -> (!transform.any_op, !transform.any_op)
"""
# B packed into column panels: B[k, n] -> Bp[n / nr, k, nr] (zero-padded), so a register
# tile streams its panel contiguously (row-major B rows are a power-of-two stride
# apart at the usual sizes and fight over a few L1 sets). The packed op is a generic
# over (m, panel, k, j); each panel (and K block) is peeled off as a loop, its unit
# dims folded away, and what is left is a plain matmul again (A @ panel -> C columns).
_SCRIPT_PACK_B = """
    %gen_{id} = transform.structured.pack %{cur}_{id} packed_sizes = [0, {n}, 0]
      : (!transform.any_op) -> (!transform.op<"linalg.generic">)
    %bpack_{id} = transform.get_producer_of_operand %gen_{id}[1]
      : (!transform.op<"linalg.generic">) -> (!transform.op<"linalg.pack">)
"""
# B[k, n] packs to [k, n / nr, nr] by default; make it panel-major. (A transposed B,
# [n, k], packs to [n / nr, k, nr] as it is.)
_SCRIPT_PANEL_MAJOR = """
    %packed_{id}, %bpanels_{id}, %unpack_{id} = transform.structured.pack_transpose %bpack_{id}
      with_compute_op(%gen_{id}) outer_perm = [1, 0]
      : (!transform.op<"linalg.pack">, !transform.op<"linalg.generic">)
      -> (!transform.op<"linalg.generic">, !transform.op<"linalg.pack">, !transform.any_op)
"""
_SCRIPT_LOWER_PACK_B = """
    %bpad_{id}, %bexpand_{id}, %btranspose_{id} = transform.structured.lower_pack %{bpanels}_{id}
      : (!transform.op<"linalg.pack">)
      -> (!transform.op<"tensor.pad">, !transform.op<"tensor.expand_shape">, !transform.op<"linalg.transpose">)
"""
# Threads share out the panels (or rows of A and C); each thread copies the B panels it
# uses inside its share, so a matmul is one dispatch to the thread pool, not two.
_SCRIPT_PACK_B_FORALL = """
    %ppar_{id}, %forall_{id} = transform.structured.tile_using_forall %{packed}_{id} num_threads {counts}
      : (!transform.op<"linalg.generic">) -> (!transform.any_op, !transform.any_op)
    %bpart_{id}, %fforall_{id} = transform.structured.fuse_into_containing_op %btranspose_{id}
      into %forall_{id} : (!transform.op<"linalg.transpose">, !transform.any_op) -> (!transform.any_op, !transform.any_op)
"""
_SCRIPT_PANELS = """
    %panel_{id}, %lnb_{id}, %lkb_{id} = transform.structured.tile_using_for %{cur}_{id}
      tile_sizes [0, 1, {k_block}, 0] interchange = [1, 2, 0, 3]
      : ({cur_type}) -> (!transform.any_op, !transform.any_op, !transform.any_op)
    transform.apply_patterns to %lnb_{id} {{
      transform.apply_patterns.linalg.fold_unit_extent_dims_via_slices
      transform.apply_patterns.canonicalization
    }} : !transform.any_op
    %pgen_{id} = transform.structured.match ops{{["linalg.generic"]}} in %lnb_{id}
      : (!transform.any_op) -> !transform.op<"linalg.generic">
    %pmkn_{id} = transform.structured.interchange %pgen_{id} iterator_interchange = [0, 2, 1]
      : (!transform.op<"linalg.generic">) -> !transform.any_op
    %pmm_{id} = transform.structured.specialize %pmkn_{id} : (!transform.any_op) -> !transform.any_op
    %reg_{id}, %lm_{id}, %lk_{id} = transform.structured.tile_using_for %pmm_{id}
      tile_sizes [{m}, 0, {k}]
      : (!transform.any_op) -> (!transform.any_op, !transform.any_op, !transform.any_op)
"""
_SCRIPT_K_BLOCK = """
    %kb_{id}, %kloop_{id} = transform.structured.tile_using_for %{cur}_{id} tile_sizes [0, 0, {k_block}]
      : (!transform.any_op) -> (!transform.any_op, !transform.any_op)
"""
_SCRIPT_REGISTER = """
    %reg_{id}, %lm_{id}, %ln_{id}, %lk_{id} = transform.structured.tile_using_for %{cur}_{id}
      tile_sizes [{m}, {n}, {k}]
      : (!transform.any_op) -> (!transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op)
"""
# Marks the register tiles for `_SCRIPT_VECTORIZE`; peeling copies the mark.
_SCRIPT_MARK = """
    transform.annotate %reg_{id} "agentc.vectorize" : !transform.any_op
"""
# Peel n (inside m) before m: the m peel then clones both n loops into its remainder.
_SCRIPT_PEEL = """
    %l{dim}f_{id} = transform.cast %l{dim}_{id} : !transform.any_op to !transform.op<"scf.for">
    %{dim}main_{id}, %{dim}rest_{id} = transform.loop.peel %l{dim}f_{id}
      : (!transform.op<"scf.for">) -> (!transform.any_op, !transform.any_op)
"""
# C comes back from the panel layout (a reshape, plus a slice when N was padded); a C
# that was not a fresh fill (a slice of one, in a batch loop) goes in the same way. Then
# canonicalization turns the peeled edge tiles' sizes into constants, so every tile
# (full or edge) has a static shape and vectorises without masks.
_SCRIPT_VECTORIZE = """
    %cpacks = transform.structured.match ops{["linalg.pack"]} in %root
      : (!transform.any_op) -> !transform.op<"linalg.pack">
    %cpad, %cexpand, %ctranspose_in = transform.structured.lower_pack %cpacks
      : (!transform.op<"linalg.pack">)
      -> (!transform.op<"tensor.pad">, !transform.op<"tensor.expand_shape">, !transform.op<"linalg.transpose">)
    %unpacks = transform.structured.match ops{["linalg.unpack"]} in %root
      : (!transform.any_op) -> !transform.op<"linalg.unpack">
    %cempty, %ctranspose, %ccollapse, %cslice = transform.structured.lower_unpack %unpacks
      : (!transform.op<"linalg.unpack">) -> (!transform.op<"tensor.empty">,
         !transform.op<"linalg.transpose">, !transform.op<"tensor.collapse_shape">,
         !transform.op<"tensor.extract_slice">)
    %funcs0 = transform.structured.match ops{["func.func"]} in %root
      : (!transform.any_op) -> !transform.any_op
    transform.apply_patterns to %funcs0 {
      transform.apply_patterns.canonicalization
    } : !transform.any_op
    %tiles = transform.structured.match ops{["linalg.matmul"]}
      attributes {agentc.vectorize} in %root : (!transform.any_op) -> !transform.any_op
    transform.structured.vectorize %tiles {create_named_contraction} : !transform.any_op
"""

# Batched contractions (attention's Q @ K^T and P @ V as linalg.generic): every dim but
# one m, one n and the k dim is walked by a loop (a forall with threads), the unit dims
# are folded away and the rest specialised to a (possibly transposed) linalg.matmul,
# which the matmul schedules above then take up.
_SCRIPT_BATCH_FOR = """
    %bc_{id} = transform.structured.match ops{{["linalg.generic"]}}
      attributes {{agentc.batch = "{key}"}} in %root : (!transform.any_op) -> !transform.any_op
    transform.foreach %bc_{id} : !transform.any_op {{
    ^bb0(%bone_{id}: !transform.any_op):
      %btile_{id}, %bloop_{id}{more_loops} = transform.structured.tile_using_for %bone_{id}
        tile_sizes {sizes} : (!transform.any_op) -> ({types})
"""
_SCRIPT_BATCH_FORALL = """
    %bc_{id} = transform.structured.match ops{{["linalg.generic"]}}
      attributes {{agentc.batch = "{key}"}} in %root : (!transform.any_op) -> !transform.any_op
    transform.foreach %bc_{id} : !transform.any_op {{
    ^bb0(%bone_{id}: !transform.any_op):
      %btile_{id}, %bloop_{id} = transform.structured.tile_using_forall %bone_{id}
        tile_sizes {sizes} : (!transform.any_op) -> (!transform.any_op, !transform.any_op)
"""
_SCRIPT_BATCH_SPECIALIZE = """
      transform.apply_patterns to %bloop_{id} {
        transform.apply_patterns.linalg.fold_unit_extent_dims_via_slices
        transform.apply_patterns.canonicalization
      } : !transform.any_op
      %bgen_{id} = transform.structured.match ops{["linalg.generic"]} in %bloop_{id}
        : (!transform.any_op) -> !transform.any_op
      %bmm_{id} = transform.structured.specialize %bgen_{id} : (!transform.any_op) -> !transform.any_op
    }
"""
_SCRIPT_BATCH_END = """
    transform.yield
  }
}
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
    baseline, "native" for this machine's CPU and features (host architecture only),
    or an LLVM CPU name. tile: matmul register tile (m, n, k); edges are peeled.
    threads: how many threads each large matmul is split over (1: no threading; more
    uses MLIR's async runtime, see the module docstring)."""

    triple: str
    cpu: str = ""
    features: str = ""
    opt_level: int = 3
    tile: tuple[int, int, int] = (6, 16, 1)
    threads: int = 1


@dataclass(frozen=True)
class MatmulSchedule:
    """How one static `linalg.matmul` is tiled (see the module docstring).

    tile: register tile (m, n, k), clipped to the op's shape. k_block: cache block over
    K (0: none). split: "m" or "n", the dimension shared out over `threads` threads
    ("" with threads == 1). pack_b: B is copied into contiguous column panels of
    `tile[1]` columns first (N padded with zeros to a whole panel). peel: the
    dimensions ("m", "n") the register tile does not divide, whose last partial tile
    is peeled off into its own loop. b_transposed: B is stored [n, k] (a matmul with
    `indexing_maps`, e.g. attention's Q @ K^T); its panels then need no transpose.
    """

    tile: tuple[int, int, int]
    k_block: int = 0
    split: str = ""
    threads: int = 1
    pack_b: bool = False
    peel: str = ""
    b_transposed: bool = False

    @property
    def key(self) -> str:
        """The `agentc.schedule` tag; also names the script's handles."""
        key = "x".join(map(str, self.tile))
        if self.k_block:
            key += f"_k{self.k_block}"
        if self.split:
            key += f"_{self.split}{self.threads}"
        if self.pack_b:
            key += "_packb"
        if self.b_transposed:
            key += "_bt"
        if self.peel:
            key += f"_peel{self.peel}"
        return key


# A matmul below this many multiply-adds is not worth a thread dispatch: waking the
# async runtime's worker and waiting for it costs about 0.1 ms on the 2-core VM this
# was tuned on (a 128x128x512 matmul got slower on two threads, 128x512x512 broke even).
MIN_THREADED_MACS = 1 << 24
# Packing B costs a pass over B; it pays once enough rows of A reuse each panel.
MIN_PACKED_ROWS = 32


def _k_block(k: int, tile_k: int, target: int, lo: int, hi: int) -> int:
    """The divisor of K in [lo, hi] closest to `target` (0 when K <= hi or none divides)."""
    if k <= hi:
        return 0
    divisors = [d for d in range(lo, hi + 1) if k % d == 0 and d % tile_k == 0]
    return min(divisors, key=lambda d: (abs(d - target), -d), default=0)


def matmul_schedule(shape_mnk, options: CpuOptions, b_transposed: bool = False) -> MatmulSchedule:
    """The schedule for a static matmul of shape (m, n, k) under `options`.

    Measured on AVX2 (Zen 3) at 512^3: row-major B with K blocks of 128 reaches about
    60 GFLOP/s, packed B panels with the whole K (32 KiB panels, streamed) about 80.
    """
    m, n, k = shape_mnk
    pm, pn, pk = options.tile
    tile = (min(pm, m), min(pn, n), next(t for t in (pk, 4, 2, 1) if t <= pk and k % t == 0))
    # A transposed B is read a column at a time unless packed: pack it whenever N allows.
    pack_b = n >= 2 * tile[1] and (m >= MIN_PACKED_ROWS or b_transposed)
    split, threads = "", 1
    if options.threads > 1 and m * n * k >= MIN_THREADED_MACS:
        t = options.threads
        # With packed B, threads share out whole panels: N is split in panel units.
        n_units = -(-n // tile[1]) if pack_b else n
        n_unit = 1 if pack_b else tile[1]
        for dim, size, unit in (("m", m, tile[0]), ("n", n_units, n_unit))[:: -1 if pack_b else 1]:
            if size % t == 0 and size // t >= unit:
                split, threads = dim, t
                break
    m_part = m // threads if split == "m" else m
    n_part = n // threads if split == "n" else n
    if pack_b:
        k_block = _k_block(k, tile[2], 256, 128, 512) or k
        peel = "m" if m_part % tile[0] else ""
    else:
        k_block = _k_block(k, tile[2], 128, 64, 256)
        peel = ("m" if m_part % tile[0] else "") + ("n" if n_part % tile[1] else "")
    return MatmulSchedule(tile, k_block, split, threads, pack_b, peel, b_transposed)


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


def c_header(sigs: list[KernelSignature], guard: str = "AGENTC_KERNELS_H", threads: int = 1) -> str:
    """C declarations of `_mlir_ciface_*` entry points and their memref descriptors.

    threads > 1 adds the note that the object needs MLIR's async runtime at link time.
    """
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
             " * caller allocates with the shapes shown; the kernel fills them. */"]
    if threads > 1:
        lines += [f"/* Matmuls run on {threads} threads through MLIR's async runtime: link with",
                  " * libmlir_async_runtime.so (in the mlir Python wheel, <site-packages>/mlir/lib). */"]
    return _c_file(lines, guard, ["stdbool.h", "stdint.h"], [structs[k] for k in sorted(structs)] + protos)


def _c_file(comment: list[str], guard: str, includes: list[str], body: list[str]) -> str:
    """A C header: comment, include guard, includes, and `body` inside extern "C"."""
    return "\n".join(comment + [f"#ifndef {guard}", f"#define {guard}"]
                     + [f"#include <{h}>" for h in includes]
                     + ["#ifdef __cplusplus", 'extern "C" {', "#endif", ""] + body
                     + ["#ifdef __cplusplus", "}", "#endif", f"#endif /* {guard} */", ""])


def transform_script(schedules) -> str:
    """The transform-dialect schedule for the given matmul schedules (any order)."""
    blocks = []
    for i, sched in enumerate(sorted(set(schedules), key=lambda sched: sched.key)):
        blocks.append(_SCRIPT_MATCH.format(id=i, key=sched.key))
        cur = "one"
        m, n, k = sched.tile
        if sched.pack_b:
            blocks.append(_SCRIPT_PACK_B.format(id=i, cur=cur, n=n))
            packed, bpanels = ("gen", "bpack") if sched.b_transposed else ("packed", "bpanels")
            if not sched.b_transposed:
                blocks.append(_SCRIPT_PANEL_MAJOR.format(id=i))
            blocks.append(_SCRIPT_LOWER_PACK_B.format(id=i, bpanels=bpanels))
            cur, cur_type = packed, '!transform.op<"linalg.generic">'
            if sched.split:
                # The packed op's loops: (m, panel, k, j).
                counts = [sched.threads, 0, 0, 0] if sched.split == "m" else [0, sched.threads, 0, 0]
                blocks.append(_SCRIPT_PACK_B_FORALL.format(id=i, threads=sched.threads, counts=counts,
                                                           packed=packed))
                cur, cur_type = "ppar", "!transform.any_op"
            blocks.append(_SCRIPT_PANELS.format(id=i, cur=cur, cur_type=cur_type, m=m, k=k,
                                                k_block=sched.k_block))
        else:
            if sched.split:
                counts = [sched.threads, 0] if sched.split == "m" else [0, sched.threads]
                blocks.append(_SCRIPT_FORALL.format(id=i, cur=cur, threads=counts))
                cur = "par"
            if sched.k_block:
                blocks.append(_SCRIPT_K_BLOCK.format(id=i, cur=cur, k_block=sched.k_block))
                cur = "kb"
            blocks.append(_SCRIPT_REGISTER.format(id=i, cur=cur, m=m, n=n, k=k))
        blocks.append(_SCRIPT_MARK.format(id=i))
        blocks += [_SCRIPT_PEEL.format(id=i, dim=dim) for dim in "nm" if dim in sched.peel]
        blocks.append(_SCRIPT_END_MATCH)
    return _SCRIPT_HEAD + "".join(blocks) + _SCRIPT_VECTORIZE + _SCRIPT_TAIL


def batch_script(batches) -> str:
    """The transform script turning tagged batched contractions into matmuls."""
    blocks = []
    for i, (sizes, forall) in enumerate(sorted(set(batches))):
        key = _batch_key(sizes, forall)
        if forall:
            blocks.append(_SCRIPT_BATCH_FORALL.format(id=i, key=key, sizes=list(sizes)))
        else:
            loops = sum(1 for size in sizes if size)
            blocks.append(_SCRIPT_BATCH_FOR.format(
                id=i, key=key, sizes=list(sizes), more_loops="".join(f", %bl{j}_{i}" for j in range(1, loops)),
                types=", ".join(["!transform.any_op"] * (loops + 1))))
        blocks.append(_SCRIPT_BATCH_SPECIALIZE.replace("{id}", str(i)))
    return _SCRIPT_HEAD + "".join(blocks) + _SCRIPT_BATCH_END


def _batch_key(sizes, forall: bool) -> str:
    return ("forall_" if forall else "for_") + "x".join(map(str, sizes))


def _contraction_roles(op) -> tuple[int, int, int] | None:
    """(m, n, k) dims of a linalg.generic computing out += in0 * in1 with one reduction
    dim, where the result's last dim is an n dim (B's, so rows stay contiguous), m is
    the largest A dim and m < n < k (so that folding the other dims leaves a matmul's
    loop order); None otherwise."""
    from mlir import ir

    operands = list(op.operands)
    if len(operands) != 3 or len(op.results) != 1:
        return None
    shapes = [ir.ShapedType(v.type) for v in operands]
    if not all(t.has_static_shape for t in shapes):
        return None
    if not _is_multiply_accumulate(op.regions[0].blocks[0]):
        return None
    iterators = [str(t) for t in ir.ArrayAttr(op.attributes["iterator_types"])]
    reductions = [i for i, t in enumerate(iterators) if "reduction" in t]
    maps = [_dims(m) for m in ir.ArrayAttr(op.attributes["indexing_maps"])]
    if len(reductions) != 1 or any(dims is None for dims in maps):
        return None
    a, b, c = (set(dims) for dims in maps)
    k = reductions[0]
    if k not in a or k not in b or k in c or not maps[2] or maps[2][-1] not in b - a:
        return None
    n = maps[2][-1]
    extents = _loop_extents(op)
    m_dims = sorted(c & a - b, key=lambda d: -extents[d])
    if not m_dims or not m_dims[0] < n < k or len(a | b | c) == 3:  # no batch: nothing to do
        return None
    return m_dims[0], n, k


def _is_multiply_accumulate(block) -> bool:
    """Whether a linalg body is `yield out + in0 * in1` (in any operand order)."""
    ops = list(block.operations)
    if [o.name for o in ops] != ["arith.mulf", "arith.addf", "linalg.yield"]:
        return False
    mul, add, yield_ = ops
    ins0, ins1, out = block.arguments

    def same(operands, values) -> bool:
        a, b = operands
        return (a == values[0] and b == values[1]) or (a == values[1] and b == values[0])

    return (same(list(mul.operands), (ins0, ins1)) and same(list(add.operands), (out, mul.result))
            and yield_.operands[0] == add.result)


def _loop_extents(op) -> list[int]:
    """The static trip count of each loop of a linalg op with plain-dim indexing maps."""
    from mlir import ir

    extents = {}
    for value, map_attr in zip(op.operands, ir.ArrayAttr(op.attributes["indexing_maps"])):
        for size, dim in zip(ir.ShapedType(value.type).shape, _dims(map_attr)):
            extents[dim] = size
    return [extents[d] for d in range(len(extents))]


def _tag_contractions(text: str, options: CpuOptions) -> tuple[str, list[tuple[tuple[int, ...], bool]]]:
    """Mark batched contraction generics (`agentc.batch`) with the loop tiling that leaves
    one matmul per batch element; the batch loop is the threads' share when large."""
    from mlir import ir

    batches = []
    with ir.Context():
        module = ir.Module.parse(text)

        def visit(op):
            roles = _contraction_roles(op.operation) if op.name == "linalg.generic" else None
            if roles is not None:
                extents = _loop_extents(op.operation)
                sizes = tuple(0 if d in roles else 1 for d in range(len(extents)))
                forall = options.threads > 1 and math.prod(extents) >= MIN_THREADED_MACS
                op.attributes["agentc.batch"] = ir.StringAttr.get(_batch_key(sizes, forall))
                batches.append((sizes, forall))
            return ir.WalkResult.ADVANCE
        module.operation.walk(visit)
        return str(module), batches


def _dims(map_attr) -> list[int] | None:
    """The dimension positions an indexing map's results name (None if not all plain dims)."""
    from mlir import ir

    dims = []
    for expr in ir.AffineMapAttr(map_attr).value.results:
        expr = expr.maybe_downcast()
        if not isinstance(expr, ir.AffineDimExpr):
            return None
        dims.append(expr.position)
    return dims


def _matmul_layout(op) -> tuple[int, int, int, bool] | None:
    """(m, n, k, b_transposed) of a static linalg.matmul; None for layouts left as loops
    (dynamic shapes, broadcasts, a transposed C)."""
    from mlir import ir

    a, b, c = (ir.ShapedType(v.type) for v in list(op.operands)[:3])
    if not (a.has_static_shape and b.has_static_shape and c.has_static_shape):
        return None
    maps = [_dims(m) for m in ir.ArrayAttr(op.attributes["indexing_maps"])]
    if any(dims is None or len(dims) != 2 for dims in maps):
        return None
    (a0, a1), (b0, b1), (c0, c1) = maps
    dim_k = ({a0, a1} - {c0, c1}).pop() if len({a0, a1} - {c0, c1}) == 1 else None
    if dim_k is None or {b0, b1} != {dim_k, c1}:
        return None
    return c.shape[0], c.shape[1], a.shape[[a0, a1].index(dim_k)], b0 == c1


def _inside_forall(op) -> bool:
    parent = op.parent
    while parent is not None and parent.name != "builtin.module":
        if parent.name == "scf.forall":
            return True
        parent = parent.parent
    return False


def _tag_matmuls(text: str, options: CpuOptions) -> tuple[str, list[MatmulSchedule]]:
    """Mark each static linalg.matmul with its schedule (`agentc.schedule`).

    Matmuls already inside a thread's share of work (`scf.forall`) get one thread.
    """
    from mlir import ir

    schedules = []
    single = replace(options, threads=1)
    with ir.Context():
        module = ir.Module.parse(text)

        def visit(op):
            if op.name == "linalg.matmul":
                layout = _matmul_layout(op.operation)
                if layout is not None:
                    m, n, k, b_transposed = layout
                    sched = matmul_schedule((m, n, k), single if _inside_forall(op.operation) else options,
                                            b_transposed)
                    op.attributes["agentc.schedule"] = ir.StringAttr.get(sched.key)
                    schedules.append(sched)
            return ir.WalkResult.ADVANCE
        module.operation.walk(visit)
        return str(module), schedules


class CpuTarget:
    name: ClassVar[str] = "cpu"
    EMIT_POINTS: ClassVar[dict[str, str]] = {"llvm": "llvm", "objects": "header"}
    HOST_EMIT_POINTS: ClassVar[dict[str, str]] = {"llvm": "llvm", "objects": "header"}

    def parse_options(self, **overrides) -> CpuOptions:
        check_options("cpu target", CpuOptions, overrides)
        values = dict(overrides)
        values.setdefault("triple", util.host_triple())
        if "tile" in values:
            tile = tuple(int(t) for t in values["tile"])
            if len(tile) != 3 or min(tile) < 1:
                raise UsageError(f"cpu target: tile must be three positive sizes (m, n, k), got {tile}")
            values["tile"] = tile
        values["threads"] = int(values.get("threads", 1))
        if values["threads"] < 1:
            raise UsageError(f"cpu target: threads must be at least 1, got {values['threads']}")
        if values.get("cpu") == "native" and _arch(values["triple"]) != _arch(util.host_triple()):
            raise UsageError(f"cpu target: cpu=native describes this {_arch(util.host_triple())} "
                             f"machine, not triple {values['triple']}; name a CPU for that triple")
        cpu = values.get("cpu")
        if cpu not in (None, "", "native", "generic"):
            if not util.cpu_is_known(values["triple"], cpu):
                close = difflib.get_close_matches(cpu, sorted(util.known_cpus(values["triple"])), n=3)
                raise UsageError(f"cpu target: LLVM knows no CPU '{cpu}' for triple {values['triple']}"
                                 + (f"; did you mean {', '.join(close)}?" if close else ""))
        values["opt_level"] = int(values.get("opt_level", 3))
        check_opt_level("cpu target", values["opt_level"])
        return CpuOptions(**values)

    def add_stages(self, stages: dict[str, StageFn], options: CpuOptions) -> None:
        stages["vectorize"] = lambda state: _vectorize(state, options)
        stages["bufferize"] = _bufferize
        stages["llvm"] = lambda state: _to_llvm(state, options)
        stages["obj"] = lambda state: _obj(state, options)
        stages["header"] = lambda state: _header(state, options)

    def add_host_stages(self, stages: dict[str, StageFn], options: CpuOptions) -> None:
        """A pool's host program (`lower-host`): already on buffers, one thread."""
        one = replace(options, threads=1)
        stages["llvm"] = lambda state: _to_llvm(state, one)
        stages["obj"] = lambda state: _obj(state, one)
        stages["header"] = _host_header


def host_header(entry: str, pool: str, inputs: list[str], outputs: list[str], kernels: list[str],
                runtime_kernels: list[str] = ()) -> str:
    """The C prototype of a pool's host program, with what it needs at link time."""
    guard = re.sub(r"\W", "_", f"AGENTC_{pool}_HOST_H").upper()
    ins = ", ".join(f"{i}: {k}" for i, k in enumerate(inputs)) or "none"
    outs = ", ".join(f"{i}: {k}" for i, k in enumerate(outputs)) or "none"
    link = (" * Link with this pool's kernel objects (" + ", ".join(kernels) + ")\n * and"
            if kernels else " * Link with")
    if runtime_kernels:
        link = (" * The runtime must define the kernel entry points (" + ", ".join(runtime_kernels)
                + ",\n * memref descriptors, inputs then outputs) around their AMDGCN code objects.\n" + link)
    comment = [
        f"/* Generated by agentc: the host program of pool \"{pool}\".",
        " * Runs the pool's part of the graph once, in program order. in[i] / in_bytes[i]:",
        f" * the graph inputs ({ins}). out[i]: caller buffers for the graph outputs this",
        f" * pool makes ({outs}); out_bytes[i]: their capacity on entry, the bytes written",
        " * on return. Returns 0, or the first negative code a runtime call returned.",
        link + " a runtime providing agentc/runtime_abi.h (docs/runtime_abi.md). */"]
    return _c_file(comment, guard, ["stdint.h"], [
        f"int64_t {entry}(const void *const *in, const int64_t *in_bytes, void *const *out,",
        f"    {' ' * len(entry)}int64_t *out_bytes);", ""])


def _host_header(state: CompileState) -> CompileState:
    m = state.meta
    state.artifacts["h"] = host_header(m["entry"], m["pool"], m["inputs"], m["outputs"], m["kernels"],
                                       m.get("runtime_kernels", [])).encode()
    return state


def _arch(triple: str) -> str:
    return triple.split("-", 1)[0]


def _bufferize(state: CompileState) -> CompileState:
    state.ir = util.run_pipeline(state.ir, BUFFERIZE_PIPELINE, stage="bufferize")
    return state


def _vectorize(state: CompileState, options: CpuOptions) -> CompileState:
    state.meta["signatures"] = kernel_signatures(state.ir)
    tagged, batches = _tag_contractions(state.ir, options)
    state.meta["batched_contractions"] = batches
    if batches:
        done = util.run_pipeline(util.with_transform_script(tagged, batch_script(batches)),
                                 "builtin.module(transform-interpreter)", stage="vectorize")
        state.ir = util.run_pipeline(util.strip_transform_script(done), "builtin.module(canonicalize,cse)",
                                     stage="vectorize")
    tagged, schedules = _tag_matmuls(state.ir, options)
    state.meta["matmul_schedules"] = schedules
    if not schedules:
        return state
    scheduled = util.with_transform_script(tagged, transform_script(schedules))
    done = util.run_pipeline(scheduled, "builtin.module(transform-interpreter)", stage="vectorize")
    state.ir = util.run_pipeline(util.strip_transform_script(done), "builtin.module(canonicalize,cse)",
                                 stage="vectorize")
    return state


def _threaded(state: CompileState) -> bool:
    return (any(sched.split for sched in state.meta.get("matmul_schedules", ()))
            or any(forall for _, forall in state.meta.get("batched_contractions", ())))


def _renumber_assert_messages(text: str) -> str:
    """Number the `@assert_msg_N` globals in order of appearance.

    Upstream's `cf.assert` lowering (the async runtime's error checks) names them from
    a process-wide counter, so a second compile in the same process would otherwise
    give different LLVM IR for the same input.
    """
    names: dict[str, str] = {}
    return re.sub(r"@assert_msg_\d+",
                  lambda m: names.setdefault(m.group(0), f"@assert_msg_{len(names)}"), text)


def _to_llvm(state: CompileState, options: CpuOptions) -> CompileState:
    threads = options.threads if _threaded(state) else 1
    lowered = util.run_pipeline(state.ir, llvm_pipeline(threads), stage="llvm")
    state.meta["llvm_mlir"] = _renumber_assert_messages(lowered)
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


def _header(state: CompileState, options: CpuOptions) -> CompileState:
    guard = re.sub(r"\W", "_", f"AGENTC_{state.name}_H").upper()
    threads = options.threads if _threaded(state) else 1
    state.artifacts["h"] = c_header(state.meta["signatures"], guard, threads).encode()
    return state


def compile_kernel(text: str, name: str = "kernel", stop_after: str | None = None,
                   **options) -> CompileState:
    """Run the CPU stages over one kernel module (a convenience for tools and tests)."""
    target = CpuTarget()
    return run_stages(target, CompileState(name, text), target.parse_options(**options), stop_after)


@functools.cache
def _descriptor_type(rank: int) -> type:
    """The ctypes struct of a rank-`rank` memref descriptor (the element pointer as void*)."""
    fields = [("allocated", ctypes.c_void_p), ("aligned", ctypes.c_void_p), ("offset", ctypes.c_int64)]
    if rank:
        fields += [("sizes", ctypes.c_int64 * rank), ("strides", ctypes.c_int64 * rank)]
    return type(f"MemRef{rank}D", (ctypes.Structure,), {"_fields_": fields})


def _descriptor(arr: np.ndarray):
    """The descriptor of a C-contiguous array: identity layout, strides in elements."""
    rank, ptr = arr.ndim, arr.ctypes.data
    if not rank:
        return _descriptor_type(0)(ptr, ptr, 0)
    strides = [1] * rank
    for i in range(rank - 2, -1, -1):
        strides[i] = strides[i + 1] * arr.shape[i + 1]
    return _descriptor_type(rank)(ptr, ptr, 0, (ctypes.c_int64 * rank)(*arr.shape),
                                  (ctypes.c_int64 * rank)(*strides))


class JitKernel:
    """A compiled kernel callable on numpy arrays: inputs in, tuple of outputs back.

    The entry point is looked up once and the memref descriptors are filled directly:
    `ExecutionEngine.invoke` with `mlir.runtime` descriptors costs about 0.3 ms a call,
    as much as a 128x128x128 matmul.
    """

    def __init__(self, engine, signature: KernelSignature, llvm_mlir: str):
        self.engine, self.signature, self.llvm_mlir = engine, signature, llvm_mlir
        self._entry = engine.lookup(signature.name)

    def __call__(self, *inputs: np.ndarray, outputs: list[np.ndarray] | None = None):
        sig = self.signature
        if len(inputs) != sig.n_inputs:
            raise TypeError(f"{sig.name} takes {sig.n_inputs} arrays, got {len(inputs)}")
        arrays = []
        for given, (arg_name, elem, shape) in zip(inputs, sig.args):
            arr = np.ascontiguousarray(given, dtype=_NP_TYPES[elem])
            if arr.shape != shape:
                raise ValueError(f"{sig.name}: argument {arg_name} has shape {arr.shape}, wants {shape}")
            arrays.append(arr)
        out_args = sig.args[sig.n_inputs:]
        outs = outputs or [np.zeros(shape, dtype=_NP_TYPES[elem]) for _, elem, shape in out_args]
        for out, (arg_name, elem, shape) in zip(outs, out_args):
            if out.shape != shape or out.dtype != _NP_TYPES[elem] or not out.flags.c_contiguous:
                raise ValueError(f"{sig.name}: output {arg_name} must be a C-contiguous {elem} "
                                 f"array of shape {shape}")
        arrays += outs
        descriptors = [_descriptor(a) for a in arrays]
        # The packed entry point takes one pointer per argument to the argument's value,
        # and each `_mlir_ciface` argument is a pointer to a descriptor.
        values = (ctypes.c_void_p * len(descriptors))(*[ctypes.addressof(d) for d in descriptors])
        slot = ctypes.sizeof(ctypes.c_void_p)
        packed = (ctypes.c_void_p * len(descriptors))(
            *[ctypes.addressof(values) + i * slot for i in range(len(descriptors))])
        self._entry(packed)
        return tuple(outs)


@functools.cache
def _load_async_runtime() -> None:
    """Load MLIR's async runtime into the process once, for good.

    Not through the engine's `shared_libs`: an engine tears the runtime's one global
    instance down when it is destroyed (`__mlir_execution_engine_destroy`), and the
    next threaded kernel in the process would then crash. Loaded globally, the
    `mlirAsyncRuntime*` symbols resolve from the process and the runtime lives on.
    """
    ctypes.CDLL(util.runtime_lib("mlir_async_runtime"), mode=ctypes.RTLD_GLOBAL)


def jit(text: str, *, opt_level: int = 3, tile: tuple[int, int, int] | None = None,
        threads: int = 1, function: str | None = None) -> JitKernel:
    """Compile a kernel module through vectorize/bufferize/llvm and load it in-process.

    tile: the matmul register tile (default `CpuOptions.tile`). threads > 1 splits large
    matmuls over that many threads (MLIR's async runtime, loaded into the engine).
    """
    from mlir import execution_engine, ir

    options = {"opt_level": opt_level, "threads": threads}
    if tile is not None:
        options["tile"] = tile
    state = compile_kernel(text, stop_after="llvm", **options)
    sigs = state.meta["signatures"]
    sig = next((s for s in sigs if function in (None, s.name)), None)
    if sig is None:
        raise UsageError(f"no public function '{function}' in the kernel module")
    if _threaded(state):
        _load_async_runtime()
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
