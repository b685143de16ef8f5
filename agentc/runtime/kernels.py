"""agentc's own CPU kernels, compiled once per process and shape: what the runtime's op
runners call for the heavy math.

Each kernel is built by `agentc.codegen.kernels`, run through the CPU target's stages
(vectorise, bufferise, LLVM) and loaded in-process by `agentc.codegen.jit`, so `agentc
run` executes the same code `agentc compile` emits for a CPU pool. Compiling a kernel
costs seconds, hence the cache: a shape is compiled at its first use and kept.
"""

from __future__ import annotations

import functools
import time

from agentc.codegen import kernels
from agentc.codegen.jit import JitKernel, jit

# (kernel kind, start ns, end ns) of every compile, so a trace can tell compile time
# from the op's own time (agentc.runtime.executor).
COMPILES: list[tuple[str, int, int]] = []


@functools.cache
def compiled(kind: str, threads: int = 1, **args) -> JitKernel:
    """The JIT-compiled kernel `kind` built with `args` (keyword arguments of its builder)."""
    start = time.perf_counter_ns()
    kernel = jit(kernels.KERNELS[kind](**args), threads=threads)
    COMPILES.append((kind, start, time.perf_counter_ns()))
    return kernel
