"""Code generation: from a placed agent graph to each pool's kernels, host program and
target artifacts.

  kernels.py  linalg-on-tensors builders, one per kernel kind, shared by every target
  emit.py     the MLIR text emitter the builders are written in (model building blocks)
  abi.py      the runtime C ABI as the compiler sees it: runtime ops, host entry point,
              the host program's C header
  jobs.py     each pool's kernels and host program as jobs advanced through their
              target's stages to the pipeline's emit points; artifacts per pool
  jit.py      a CPU kernel compiled in-process and called on numpy arrays (tests,
              benchmarks)

The targets (agentc.targets) turn one kernel module into files; everything here is
the same for every target.
"""

from agentc.codegen.jobs import advance, collect

__all__ = ["advance", "collect"]
