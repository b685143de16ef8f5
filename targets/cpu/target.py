"""The CPU target class and its stages (see the package docstring for what each does):
`CpuOptions`, `CpuTarget.parse_options` / `add_stages` / `add_host_stages`, the MLIR
pipelines to bufferize and to reach the LLVM dialect, and `compile_kernel`."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, replace
from typing import ClassVar

from agentc.diagnostics import UsageError

from .. import toolchain
from ..base import CompileState, StageFn, check_opt_level, check_options, run_stages
from .expand_exp import expand_exp
from .headers import header_stage, host_header_stage, kernel_signatures
from .schedule import is_threaded, native_tile, tag_contractions, tag_elementwise, tag_matmuls
from .scripts import (batch_script, elementwise_script, strip_transform_script, transform_script,
                      with_transform_script)

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
    "convert-vector-to-llvm{{reassociate-fp-reductions=true}},"
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


@dataclass(frozen=True)
class CpuOptions:
    """triple: LLVM target triple (default: this machine). cpu: "" for the triple's
    baseline, "native" for this machine's CPU and features (host architecture only),
    or an LLVM CPU name. tile: matmul register tile (m, n, k); edges are peeled
    (with cpu="native", default: this CPU's, `schedule.native_tile`).
    threads: how many threads each large matmul is split over (1: no threading; more
    uses MLIR's async runtime, see the package docstring)."""

    triple: str
    cpu: str = ""
    features: str = ""
    opt_level: int = 3
    tile: tuple[int, int, int] = (6, 16, 1)
    threads: int = 1


class CpuTarget:
    name: ClassVar[str] = "cpu"
    EMIT_POINTS: ClassVar[dict[str, str]] = {"llvm": "llvm", "objects": "header"}
    HOST_EMIT_POINTS: ClassVar[dict[str, str]] = {"llvm": "llvm", "objects": "header"}

    def parse_options(self, **overrides) -> CpuOptions:
        check_options("cpu target", CpuOptions, overrides)
        values = dict(overrides)
        values.setdefault("triple", toolchain.host_triple())
        if "tile" in values:
            tile = tuple(int(t) for t in values["tile"])
            if len(tile) != 3 or min(tile) < 1:
                raise UsageError(f"cpu target: tile must be three positive sizes (m, n, k), got {tile}")
            values["tile"] = tile
        values["threads"] = int(values.get("threads", 1))
        if values["threads"] < 1:
            raise UsageError(f"cpu target: threads must be at least 1, got {values['threads']}")
        if values.get("cpu") == "native" and _arch(values["triple"]) != _arch(toolchain.host_triple()):
            raise UsageError(f"cpu target: cpu=native describes this {_arch(toolchain.host_triple())} "
                             f"machine, not triple {values['triple']}; name a CPU for that triple")
        cpu = values.get("cpu")
        if cpu not in (None, "", "native", "generic"):
            if not toolchain.cpu_is_known(values["triple"], cpu):
                close = difflib.get_close_matches(cpu, sorted(toolchain.known_cpus(values["triple"])), n=3)
                raise UsageError(f"cpu target: LLVM knows no CPU '{cpu}' for triple {values['triple']}"
                                 + (f"; did you mean {', '.join(close)}?" if close else ""))
        if values.get("cpu") == "native" and "tile" not in values:
            tile = native_tile(toolchain.host_cpu()[1])
            if tile is not None:
                values["tile"] = tile
        values["opt_level"] = int(values.get("opt_level", 3))
        check_opt_level("cpu target", values["opt_level"])
        return CpuOptions(**values)

    def add_stages(self, stages: dict[str, StageFn], options: CpuOptions) -> None:
        stages["vectorize"] = lambda state: _vectorize(state, options)
        stages["bufferize"] = _bufferize
        stages["llvm"] = lambda state: _to_llvm(state, options)
        stages["obj"] = lambda state: _obj(state, options)
        stages["header"] = lambda state: header_stage(state, options)

    def add_host_stages(self, stages: dict[str, StageFn], options: CpuOptions) -> None:
        """A pool's host program (`lower-host`): already on buffers, one thread."""
        one = replace(options, threads=1)
        stages["llvm"] = lambda state: _to_llvm(state, one, keep_mlir=False)
        stages["obj"] = lambda state: _obj(state, one)
        stages["header"] = host_header_stage


def _arch(triple: str) -> str:
    return triple.split("-", 1)[0]


def _bufferize(state: CompileState) -> CompileState:
    state.ir = toolchain.run_pipeline(state.ir, BUFFERIZE_PIPELINE, stage="bufferize")
    return state


def _run_script(tagged: str, script: str) -> str:
    """Run a transform script over its tagged payload, then drop the script."""
    done = toolchain.run_pipeline(with_transform_script(tagged, script),
                                  "builtin.module(transform-interpreter)", stage="vectorize")
    return toolchain.run_pipeline(strip_transform_script(done), "builtin.module(canonicalize,cse)",
                                  stage="vectorize")


def _vectorize(state: CompileState, options: CpuOptions) -> CompileState:
    state.meta["signatures"] = kernel_signatures(state.ir)
    state.ir = expand_exp(state.ir)
    tagged, batches = tag_contractions(state.ir, options)
    state.meta["batched_contractions"] = batches
    if batches:
        state.ir = _run_script(tagged, batch_script(batches))
    tagged, tilings = tag_elementwise(state.ir)
    if tilings:
        state.ir = _run_script(tagged, elementwise_script(tilings))
    tagged, schedules = tag_matmuls(state.ir, options)
    state.meta["matmul_schedules"] = schedules
    if schedules:
        state.ir = _run_script(tagged, transform_script(schedules))
    return state


def _renumber_assert_messages(text: str) -> str:
    """Number the `@assert_msg_N` globals in order of appearance.

    Upstream's `cf.assert` lowering (the async runtime's error checks) names them from
    a process-wide counter, so a second compile in the same process would otherwise
    give different LLVM IR for the same input.
    """
    names: dict[str, str] = {}
    return re.sub(r"@assert_msg_\d+",
                  lambda m: names.setdefault(m.group(0), f"@assert_msg_{len(names)}"), text)


def _has_assert_messages(module) -> bool:
    return any(op.operation.name == "llvm.mlir.global"
               and op.operation.attributes["sym_name"].value.startswith("assert_msg_")
               for op in module.body.operations)


def _to_llvm(state: CompileState, options: CpuOptions, keep_mlir: bool = True) -> CompileState:
    """Lower to LLVM IR; `keep_mlir` keeps the lowered MLIR text (meta "llvm_mlir", what
    the JIT runs), which a host program does not need."""
    threads = options.threads if is_threaded(state) else 1
    if keep_mlir:
        lowered = toolchain.run_pipeline(state.ir, llvm_pipeline(threads), stage="llvm")
        state.meta["llvm_mlir"] = _renumber_assert_messages(lowered)
        state.ir = toolchain.translate_to_llvmir(state.meta["llvm_mlir"])
    else:
        state.ir = toolchain.lower_to_llvmir(state.ir, llvm_pipeline(threads), stage="llvm",
                                             edit=_renumber_assert_messages, edit_needed=_has_assert_messages)
    state.artifacts["ll"] = state.ir.encode()
    return state


def _obj(state: CompileState, options: CpuOptions) -> CompileState:
    cpu, features = options.cpu, options.features
    if cpu == "native":
        cpu, host_features = toolchain.host_cpu()
        features = features or host_features
    llvm_ir = state.artifacts["ll"].decode()
    state.artifacts["o"] = toolchain.emit_object(llvm_ir, options.triple, cpu=cpu, features=features,
                                                 opt_level=options.opt_level)
    return state


def compile_kernel(text: str, name: str = "kernel", stop_after: str | None = None,
                   **options) -> CompileState:
    """Run the CPU stages over one kernel module (a convenience for tools and tests)."""
    target = CpuTarget()
    return run_stages(target, CompileState(name, text), target.parse_options(**options), stop_after)
