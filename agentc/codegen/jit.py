"""A CPU kernel compiled in-process and called on numpy arrays: what the tests and the
benchmarks run kernels with.

`jit(kernel_text)` runs the CPU target's stages up to the LLVM dialect and loads the
result with MLIR's ExecutionEngine, which compiles for this machine's CPU and its
features; the returned `JitKernel` takes numpy arrays (inputs) and returns the
outputs. Threaded kernels (`threads > 1`) load MLIR's async runtime into the process.
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np

from agentc.diagnostics import UsageError
from agentc.targets import toolchain
from agentc.targets.cpu import compile_kernel
from agentc.targets.cpu.headers import KernelSignature
from agentc.targets.cpu.schedule import is_threaded, native_tile

_NP_TYPES = {"f32": np.float32, "f64": np.float64, "f16": np.float16, "i32": np.int32,
             "i64": np.int64, "i8": np.int8}


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
        # Shapes are static, so all of a call's descriptors are one int64 buffer built
        # once ([allocated, aligned, offset, sizes..., strides...] per argument) and a
        # call only writes the pointers: a descriptor built field by field in ctypes
        # cost about 8 us, 0.15 ms for an encoder layer's 19 arrays.
        words, starts = [], []
        for _, _, shape in signature.args:
            starts.append(len(words))
            strides = [1] * len(shape)
            for i in range(len(shape) - 2, -1, -1):
                strides[i] = strides[i + 1] * shape[i + 1]
            words += [0, 0, 0, *shape, *strides]
        self._template = np.array(words, np.int64)
        self._starts = np.array(starts, np.int64)

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
        if len(outs) != len(out_args):   # a missing descriptor would be read past the end
            raise TypeError(f"{sig.name} has {len(out_args)} outputs, got {len(outs)} arrays")
        for out, (arg_name, elem, shape) in zip(outs, out_args):
            if out.shape != shape or out.dtype != _NP_TYPES[elem] or not out.flags.c_contiguous:
                raise ValueError(f"{sig.name}: output {arg_name} must be a C-contiguous {elem} "
                                 f"array of shape {shape}")
        arrays += outs
        descriptors = self._template.copy()
        pointers = [a.__array_interface__["data"][0] for a in arrays]
        descriptors[self._starts] = pointers        # allocated
        descriptors[self._starts + 1] = pointers    # aligned
        # The packed entry point takes one pointer per argument to the argument's value,
        # and each `_mlir_ciface` argument is a pointer to a descriptor.
        values = _address(descriptors) + 8 * self._starts
        packed = _address(values) + 8 * np.arange(len(arrays), dtype=np.int64)
        self._entry(ctypes.c_void_p(_address(packed)))
        return tuple(outs)


def _address(arr: np.ndarray) -> int:
    return arr.__array_interface__["data"][0]


@functools.cache
def _load_async_runtime() -> None:
    """Load MLIR's async runtime into the process once, for good.

    Not through the engine's `shared_libs`: an engine tears the runtime's one global
    instance down when it is destroyed (`__mlir_execution_engine_destroy`), and the
    next threaded kernel in the process would then crash. Loaded globally, the
    `mlirAsyncRuntime*` symbols resolve from the process and the runtime lives on.
    """
    ctypes.CDLL(toolchain.runtime_lib("mlir_async_runtime"), mode=ctypes.RTLD_GLOBAL)


@functools.cache
def host_tile() -> tuple[int, int, int]:
    """The matmul register tile `jit` compiles with by default: this CPU's (`native_tile`),
    else the CPU target's default. Its n is the panel width of prepacked weights."""
    from agentc.targets.cpu.target import CpuOptions

    return native_tile(toolchain.host_cpu()[1]) or CpuOptions.tile


def jit(text: str, *, opt_level: int = 3, tile: tuple[int, int, int] | None = None,
        threads: int = 1, function: str | None = None) -> JitKernel:
    """Compile a kernel module through vectorize/bufferize/llvm and load it in-process.

    tile: the matmul register tile (default: this CPU's, `native_tile`, else
    `CpuOptions.tile`). threads > 1 splits large matmuls over that many threads
    (MLIR's async runtime, loaded into the engine).
    """
    from mlir import execution_engine, ir

    options = {"opt_level": opt_level, "threads": threads}
    # The engine compiles for this machine's CPU, so the register tile is this CPU's.
    options["tile"] = tile or host_tile()
    state = compile_kernel(text, stop_after="llvm", **options)
    sigs = state.meta["signatures"]
    sig = next((s for s in sigs if function in (None, s.name)), None)
    if sig is None:
        raise UsageError(f"no public function '{function}' in the kernel module")
    if is_threaded(state):
        _load_async_runtime()
    ctx = ir.Context()
    with ctx:
        module = ir.Module.parse(state.meta["llvm_mlir"])
        try:
            engine = execution_engine.ExecutionEngine(
                module, opt_level=opt_level, shared_libs=[toolchain.runtime_lib("mlir_c_runner_utils")])
        except RuntimeError as err:
            # The engine translates to LLVM IR and compiles it for this machine.
            raise toolchain.failure("jit", f"ExecutionEngine failed: {err}",
                                    ["mlir-translate", "--mlir-to-llvmir", toolchain.IN],
                                    state.meta["llvm_mlir"]) from None
    kernel = JitKernel(engine, sig, state.meta["llvm_mlir"])
    kernel._context = ctx  # the engine must not outlive its context
    return kernel
