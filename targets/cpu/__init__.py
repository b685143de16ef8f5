"""The CPU target: linalg-on-tensors kernels -> LLVM IR -> ELF object + C header.

  target.py    CpuOptions, CpuTarget (parse_options, add_stages), the stages below
  schedule.py  the schedule of each matmul, batched contraction and vectorised
               elementwise op (tags the ops)
  scripts.py   the transform-dialect scripts, filled in from matmul.mlir, batch.mlir
               and elementwise.mlir
  expand_exp.py  f32 exp as a vectorisable polynomial (no libm call per element)
  headers.py   kernel signatures and the C headers of kernels and host programs

Stages, in order (each a small function over `CompileState`):

- `vectorize` (on tensors): f32 `math.exp` expanded to arithmetic (expand_exp.py),
  then three transform-dialect scripts:
  1. batched contractions written as `linalg.generic` (attention's Q @ K^T and P @ V)
     get a loop over every dim but one m, one n and the k dim (an `scf.forall` shared
     by the threads when `threads > 1` and large), and each iteration is specialised
     to a plain, possibly transposed, `linalg.matmul` (batch.mlir);
  2. elementwise generics and row reductions (bias adds, GELU, softmax, norms) are
     tiled to one vector each (a 64-lane slice of the last dim, or the whole row
     reduced) and vectorised (elementwise.mlir; reductions tree-summed);
  3. every static `linalg.matmul` is scheduled (`matmul_schedule` picks the numbers
     per op; measured at 512^3 fp32 on AVX2, Zen 3; matmul.mlir):
     - with `options.threads > 1` and enough work, `tile_using_forall` gives each
       thread a slice of N (whole B panels) or M;
     - for 32+ rows, B is copied into contiguous panels of tile-n columns (zero-padded),
       so each register tile streams its panel instead of striding over B's rows
       (row-major rows a power of two apart fight over a few L1 sets): ~80 GFLOP/s
       against ~60 for blocked row-major B; fewer rows read B in place in K blocks.
       The copy into panels is vectorised, a panel row per vector;
     - register tiles (`options.tile`, default [6, 16, 1] for m, n, k; [6, 64, 1] on
       AVX-512 for the JIT and cpu="native", `schedule.native_tile`), with the loops
       peeled so shapes the tile does not divide get smaller static edge tiles
       instead of masks or scalar loops;
     - each tile is vectorised into `vector.contract`, the accumulator is hoisted out
       of the k loop and the contraction lowered to FMAs.
  6x16 is the AVX2 register budget: 12 accumulator vectors of 8 floats, 2 for the B
  row and 1 for the broadcast A element, out of 16 ymm registers (8x32 needs 32
  accumulators and spills: 28 GFLOP/s). The scripts run before bufferization because
  the accumulator hoisting needs value semantics: on memrefs the function arguments
  may alias and the transfers stay in the loop. Other linalg ops (index-dependent
  bodies such as RoPE and masks, rank-1 ops) are left to become loops.
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

`agentc.codegen.jit.jit(kernel_text)` runs the same stages up to the LLVM dialect and
returns a callable over numpy arrays; the tests and benchmarks use it.
"""

from .target import CpuOptions, CpuTarget, compile_kernel

__all__ = ["CpuOptions", "CpuTarget", "compile_kernel"]
