"""Code generation: from a placed agent graph to each pool's kernels, host program and
target artifacts.

  kernels.py  linalg-on-tensors builders, one per kernel kind, shared by every target
  emit.py     the MLIR text emitter the builders are written in (model building blocks)
  abi.py      the runtime C ABI as the compiler sees it: runtime ops, host entry point,
              the host program's C header
  jobs.py     the codegen stages: each pool's kernels and host program as jobs run
              through their target's stages, artifacts collected per pool
  jit.py      a CPU kernel compiled in-process and called on numpy arrays (tests,
              benchmarks)

The targets (agentc.targets) turn one kernel module into files; everything here is
the same for every target.
"""

# `driver.ensure_pipeline` imports this package so that `jobs` registers its stages.
from agentc.codegen import jobs  # noqa: F401
