"""Code-generation jobs: every kernel of every pool (and each pool's host program) on its
target, advanced stage by stage as the pipeline reaches each emit point.

The pipeline (agentc/pipeline.py) names the emit points `llvm`, `ptx`, `amdgcn` and
`objects`; each target maps them to its own stages (`Target.EMIT_POINTS`), so this
module knows no target's stage names. Artifacts (relative paths in `c.artifacts`):
`{pool}/{pool}.mlir` (the pool module: kernels and the host module) for every pool;
`{pool}/{pool}.{ll,o,h}`, the host program (entry `agentc_<pool>_run`,
docs/runtime_abi.md), built by the CPU target for every pool with a code generator; and
per kernel `{pool}/{kernel}.{ext}` with ext from the target (`ll`, `o`, `h`; `ptx`,
`cubin`, `host.o`; `amdgpu.ll`, `amdgcn.o`, `hsaco`). Each (kernel, target, options) is
compiled once per compile and its bytes reused by every pool that needs it. Pools on
target "none" get only the .mlir, with the note "no code emitted". `--targets` limits
which targets run; `c.artifact_meta` describes every file.
"""

from __future__ import annotations

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




def _jobs(c) -> list[tuple[str, dict, str, _Job]]:
    """(pool, placement, kernel, job) for every kernel of every pool with a selected target."""
    if c.jobs is not None:
        return c.jobs
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
        # One pass over the pool's ops (not one per kernel): a pool may hold many kernels.
        funcs = {get(f, "sym_name"): f.operation for f in op.regions[0].blocks[0].operations
                 if f.operation.name == "func.func" and "llvm.emit_c_interface" in f.attributes}
        kernels = sorted(funcs)
        for kernel in kernels:
            text = "module {\n" + str(funcs[kernel]) + "\n}\n"
            key = (name, options, text)
            if key not in cache:
                cache[key] = _Job(target, options, CompileState(kernel, text))
            out.append((pool, {"target": name, "chip": chip}, kernel, cache[key]))
        host = _host_module(op)
        if host is not None:
            out.append((pool, {"target": "cpu", "chip": "", "host": True}, pool,
                        _host_job(c, pool, name, options, host, kernels)))
    c.jobs = out
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
    # What defines the kernel symbols the host program calls: the CPU objects, the GPU
    # targets' host launchers.
    objects = {"cpu": [f"{k}.o" for k in kernels], "nvvm": [f"{k}.host.o" for k in kernels],
               "rocdl": [f"{k}.host.o" for k in kernels]}
    state = CompileState(pool, str(host) + "\n")
    state.meta.update(entry=get(host, "agentc.entry_point"), pool=pool,
                      inputs=list(attr_value(host.attributes["agentc.inputs"])),
                      outputs=list(attr_value(host.attributes["agentc.outputs"])),
                      kernels=objects.get(target_name, []),
                      runtime_kernels=[] if target_name in objects else kernels)
    return _Job(cpu, options, state, host=True)


def advance(c, point: str) -> None:
    """Run every job up to the target stage its target maps emit point `point` to
    (`Target.EMIT_POINTS`; a pool's host program: `Target.HOST_EMIT_POINTS`)."""
    for _pool, placement, _kernel, job in _jobs(c):
        points = job.target.HOST_EMIT_POINTS if placement.get("host") else job.target.EMIT_POINTS
        if point in points:
            job.advance(points[point])
    # The emit points change no pool module (the jobs work on their own copies), so a
    # pool's .mlir printed after the last passes stands; printing a 1000-node pool again
    # at every emit point cost more than its kernels. A compile resumed past `host` has
    # not printed them yet.
    _collect_modules(c, only_missing=True)
    _collect_jobs(c)


def collect(c) -> None:
    """(Re)write artifacts and their meta from the pool modules and the jobs' states."""
    _collect_modules(c)
    _collect_jobs(c)


def _collect_modules(c, only_missing: bool = False) -> None:
    from agentc import targets
    from agentc.passes._ir import get

    meta = c.artifact_meta
    for pool, op in _pools(c):
        path = f"{pool}/{pool}.mlir"
        if only_missing and path in c.artifacts:
            continue
        c.artifacts[path] = (str(op.operation) + "\n").encode()
        placed = get(op, "agentc.target", "none")
        # The code generator's name ("cpu", not the catalog's "llvm-cpu"), as for every
        # other artifact of the pool.
        entry = {"pool": pool, "target": targets.for_placement(placed) or "none", "kind": "mlir"}
        if placed == "none":
            entry["note"] = NO_CODE
        meta[path] = entry


def _collect_jobs(c) -> None:
    meta = c.artifact_meta
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
            if ext == "host.o" and "launches" in job.state.meta:
                entry["launches"] = launch_dims(job.state.meta["launches"])
            meta[path] = entry


def launch_dims(launches: list[dict]) -> list[dict]:
    """A GPU launcher's kernel launches in call order: kernel, grid and block (x, y, z)."""
    return [{"kernel": l["kernel"], "grid": list(l["grid"]), "block": list(l["block"])}
            for l in launches]
