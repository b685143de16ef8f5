"""agentc's own CPU kernels, compiled once per process and shape: what the runtime's op
runners call for the heavy math.

Each kernel is built by `agentc.codegen.kernels`, run through the CPU target's stages
(vectorise, bufferise, LLVM) and loaded in-process by `agentc.codegen.jit`, so `agentc
run` executes the same code `agentc compile` emits for a CPU pool. Compiling a kernel
costs seconds, hence the cache: a shape is compiled at its first use and kept.
"""

from __future__ import annotations

import ctypes
import functools
import time

from agentc.codegen import kernels
from agentc.codegen.jit import JitKernel, jit

# (kernel kind, start ns, end ns) of every compile, so a trace can tell compile time
# from the op's own time (agentc.runtime.executor).
COMPILES: list[tuple[str, int, int]] = []


# glibc malloc settings for a process that runs kernels (mallopt parameter numbers).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
KEEP_FREED_BYTES = 256 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc keep freed kernel temporaries for the next call (once per process).

    A kernel mallocs its temporaries (B's packed panels, activations: megabytes) and
    frees them on return. By default glibc serves blocks that large with mmap, or trims
    the heap top once it is free, so every call faulted its temporaries in again: 1,800
    page faults and 4 ms of system time per MiniLM layer call, against 6 ms of compute.
    With the mmap and trim thresholds raised to KEEP_FREED_BYTES the blocks stay in the
    heap and are reused; the price is up to that much freed memory kept by the process.
    False where the C library is not glibc (nothing is changed).
    """
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version"):
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, KEEP_FREED_BYTES)
                and libc.mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES))


@functools.cache
def compiled(kind: str, threads: int = 1, **args) -> JitKernel:
    """The JIT-compiled kernel `kind` built with `args` (keyword arguments of its builder)."""
    keep_freed_memory()
    start = time.perf_counter_ns()
    kernel = jit(kernels.KERNELS[kind](**args), threads=threads)
    COMPILES.append((kind, start, time.perf_counter_ns()))
    return kernel
