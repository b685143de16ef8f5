"""Code generation stages: partition the placed graph per pool, lower ops to kernels,
make each pool's host program, then run each pool's target over its kernels.

Stages added after `placed` (each name is a value of `--emit`):
  partitioned  one nested module per pool, op functions + schedule, send/recv edges
  kernels      op functions call linalg kernels or the runtime C ABI
  host         op functions + schedule become `module @host`: a program over buffers
  llvm         CPU pools to LLVM IR; GPU pools to their LLVM-dialect device code
  ptx          NVIDIA pools to PTX
  amdgcn       AMD pools to AMDGPU LLVM IR and AMDGCN objects
  objects      everything to its final artifacts (.o, .h, cubin, host.o, hsaco)

Artifacts (relative paths in `c.artifacts`): `{pool}/{pool}.mlir` (the pool module:
kernels and the host module) for every pool; `{pool}/{pool}.{ll,o,h}`, the host program
(entry `agentc_<pool>_run`, docs/runtime_abi.md), built by the CPU target for every
pool with a code generator; and per kernel `{pool}/{kernel}.{ext}` with ext from the
target (`ll`, `o`, `h`; `ptx`, `cubin`, `host.o`; `amdgpu.ll`, `amdgcn.o`, `hsaco`).
Each (kernel, target, options) is compiled once per compile and its bytes reused by
every pool that needs it. Pools on target "none" get only the .mlir, with the note "no
code emitted". `--targets` limits which targets run; `c.data["artifact_meta"]`
describes every file.
"""

from __future__ import annotations

from agentc import driver
from agentc.driver import Stage

# Which target stage each driver stage runs up to (inclusive), per target.
_UNTIL = {
    "llvm": {"cpu": "llvm", "nvvm": "nvvm", "rocdl": "rocdl"},
    "ptx": {"nvvm": "ptx"},
    "amdgcn": {"rocdl": "amdgcn"},
    "objects": {"cpu": "header", "nvvm": "host", "rocdl": "hsaco"},
}
# A pool's host program (module @host, built for the CPU) goes as far as `llvm` / `objects`.
_HOST_UNTIL = {"llvm": "llvm", "objects": "header"}
_KIND = {"ll": "llvm-ir", "o": "object", "h": "header", "ptx": "ptx", "cubin": "cubin",
         "host.ll": "llvm-ir", "host.o": "object", "amdgpu.ll": "llvm-ir", "amdgcn.o": "object",
         "hsaco": "hsaco", "mlir": "mlir"}
NO_CODE = "no code emitted (no upstream MLIR backend)"


class _Job:
    """One kernel (or a pool's host program) on one target: its CompileState and the
    target stages already run."""

    def __init__(self, target, options, state, host: bool = False):
        self.target, self.options, self.state = target, options, state
        stages: dict = {}
        (target.add_host_stages if host else target.add_stages)(stages, options)
        self.stages = list(stages.items())
        self.done = 0

    def advance(self, until: str) -> None:
        names = [n for n, _ in self.stages]
        stop = names.index(until) + 1
        while self.done < stop:
            self.state = self.stages[self.done][1](self.state)
            self.done += 1


def _pools(c):
    from agentc.passes._ir import get, top_ops

    return [(get(op, "sym_name"), op) for op in top_ops(c.module) if op.name == "builtin.module"]


def _kernel_module(pool_op, kernel: str) -> str:
    from agentc.passes._ir import get

    for op in pool_op.regions[0].blocks[0].operations:
        if op.operation.name == "func.func" and get(op, "sym_name") == kernel:
            return "module {\n" + str(op.operation) + "\n}\n"
    raise KeyError(kernel)


def _jobs(c) -> list[tuple[str, dict, str, _Job]]:
    """(pool, placement, kernel, job) for every kernel of every pool with a selected target."""
    if "codegen_jobs" in c.data:
        return c.data["codegen_jobs"]
    from agentc import targets
    from agentc.passes._ir import get
    from agentc.targets.base import CompileState

    cache: dict = {}
    out = []
    for pool, op in _pools(c):
        placed = get(op, "agentc.target", "none")
        name = targets.for_placement(placed)
        if name is None or name not in c.options.targets:
            continue
        target = targets.get(name)
        chip = get(op, "agentc.chip", "")
        if name == "cpu":
            cpu = {"triple": c.options.cpu_triple, "cpu": c.options.cpu, "threads": c.options.cpu_threads}
            options = target.parse_options(**{k: v for k, v in cpu.items() if v is not None})
        else:
            options = target.parse_options(chip=chip) if chip else target.parse_options()
        kernels = sorted(get(f, "sym_name") for f in op.regions[0].blocks[0].operations
                         if f.operation.name == "func.func" and "llvm.emit_c_interface" in f.attributes)
        for kernel in kernels:
            text = _kernel_module(op, kernel)
            key = (name, options, text)
            if key not in cache:
                cache[key] = _Job(target, options, CompileState(kernel, text))
            out.append((pool, {"target": name, "chip": chip}, kernel, cache[key]))
        host = _host_module(op)
        if host is not None:
            out.append((pool, {"target": "cpu", "chip": "", "host": True}, pool,
                        _host_job(c, pool, name, options, host, kernels)))
    c.data["codegen_jobs"] = out
    return out


def _host_module(pool_op):
    for op in pool_op.regions[0].blocks[0].operations:
        if op.operation.name == "builtin.module" and "agentc.host" in op.attributes:
            return op.operation
    return None


def _host_job(c, pool, target_name, options, host, kernels) -> _Job:
    """The pool's host program, built by the CPU target: for the pool's own CPU options
    on a CPU pool, for the default host triple on a GPU pool's host."""
    from agentc import targets
    from agentc.passes._ir import attr_value, get
    from agentc.targets.base import CompileState

    cpu = targets.get("cpu")
    if target_name != "cpu":
        options = cpu.parse_options(**({"triple": c.options.cpu_triple} if c.options.cpu_triple else {}))
    # What defines the kernel symbols the host program calls: the CPU objects, the NVVM
    # host launchers; for ROCDL (no launcher is built) the runtime, around the code objects.
    objects = {"cpu": [f"{k}.o" for k in kernels], "nvvm": [f"{k}.host.o" for k in kernels]}
    state = CompileState(pool, str(host) + "\n")
    state.meta.update(entry=get(host, "agentc.entry_point"), pool=pool,
                      inputs=list(attr_value(host.attributes["agentc.inputs"])),
                      outputs=list(attr_value(host.attributes["agentc.outputs"])),
                      kernels=objects.get(target_name, []),
                      runtime_kernels=[] if target_name in objects else kernels)
    return _Job(cpu, options, state, host=True)


def _advance(c, stage: str) -> None:
    until = _UNTIL[stage]
    for _pool, placement, _kernel, job in _jobs(c):
        if placement.get("host"):
            if stage in _HOST_UNTIL:
                job.advance(_HOST_UNTIL[stage])
        elif placement["target"] in until:
            job.advance(until[placement["target"]])
    _collect(c)


def _collect(c) -> None:
    """(Re)write artifacts and their meta from the pool modules and the jobs' states."""
    from agentc import targets
    from agentc.passes._ir import get

    meta = c.data.setdefault("artifact_meta", {})
    for pool, op in _pools(c):
        path = f"{pool}/{pool}.mlir"
        c.artifacts[path] = (str(op.operation) + "\n").encode()
        placed = get(op, "agentc.target", "none")
        # The code generator's name ("cpu", not the catalog's "llvm-cpu"), as for every
        # other artifact of the pool.
        entry = {"pool": pool, "target": targets.for_placement(placed) or "none", "kind": "mlir"}
        if placed == "none":
            entry["note"] = NO_CODE
        meta[path] = entry
    for pool, placement, kernel, job in _jobs(c):
        for ext, data in sorted(job.state.artifacts.items()):
            path = f"{pool}/{kernel}.{ext}"
            c.artifacts[path] = data
            entry = {"pool": pool, "target": placement["target"], "chip": placement["chip"],
                     "kind": _KIND.get(ext, ext)}
            if placement.get("host"):
                entry["note"] = "host program: " + job.state.meta["entry"]
            else:
                entry["kernel"] = kernel
            meta[path] = entry


def _stage_partitioned(c) -> None:
    driver._passes(c, ["partition"])


def _stage_kernels(c) -> None:
    driver._passes(c, ["lower-kernels"])
    _collect(c)


def _stage_host(c) -> None:
    driver._passes(c, ["lower-host"])
    c.data.pop("codegen_jobs", None)     # now with a host job per pool
    _collect(c)


STAGES = [
    Stage("partitioned", "one module per pool: op functions, a schedule, send/recv at cross-pool edges",
          _stage_partitioned),
    Stage("kernels", "ops become linalg kernel calls (shapes from model and plan) or runtime C ABI calls",
          _stage_kernels),
    Stage("host", "each pool's schedule and op functions become a host program over buffers "
          "(module @host, C entry agentc_<pool>_run)", _stage_host),
    Stage("llvm", "CPU kernels to LLVM IR; GPU kernels outlined and lowered to NVVM/ROCDL",
          lambda c: _advance(c, "llvm"), ir=False),
    Stage("ptx", "NVIDIA pools: PTX", lambda c: _advance(c, "ptx"), ir=False),
    Stage("amdgcn", "AMD pools: AMDGPU LLVM IR and AMDGCN objects", lambda c: _advance(c, "amdgcn"), ir=False),
    Stage("objects", "CPU objects + C headers, cubins + host objects, HSACO (when the tools exist)",
          lambda c: _advance(c, "objects"), ir=False),
]


def register() -> None:
    after = "placed"
    for stage in STAGES:
        if stage.name not in driver.stage_names():
            driver.register_stage(stage, after=after)
        after = stage.name


driver._PIPELINE_HOOKS.append(register)
