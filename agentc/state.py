"""The typed state of one compile, and the smaller context that passes see.

A stage reads and writes a `Compilation`; a pass gets only a `PassContext` (options,
catalog, cluster, and the placement it may leave behind), so passes cannot grow hidden
dependencies on each other through an untyped bag of keys.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported for annotations only: MLIR and HiGHS load lazily
    from mlir import ir

    from agentc.catalog import Catalog, Cluster
    from agentc.planner import Plan, Problem


@dataclass
class Options:
    """Everything a compile depends on besides the input file (CLI flags map 1:1)."""

    emit: str | None = None
    cluster: str | None = None
    catalogs: tuple[str, ...] = ()
    targets: tuple[str, ...] = ("cpu", "nvvm", "rocdl")
    objective: str = "cost"
    sla_mode: str = "hard"
    lam: float = 1e3
    time_limit_s: float = 10.0  # the MILP's wall-clock limit per solve
    pricing: str | None = None
    worst_case: bool = False
    cpu_triple: str | None = None
    cpu: str | None = None  # LLVM CPU name for CPU objects; "native": this machine
    cpu_threads: int = 1
    dump_phases_to: str | None = None
    print_ir_after_all: bool = False


@dataclass
class Placement:
    """What `place` decided: the planner's problem, its plan, and op id -> placed op."""

    problem: Problem
    plan: Plan
    labels: dict[str, Any]
    # the plan's prediction by load (agentc/promise.py): the promise step and `plan`'s
    # printout ask for the same one, and a placement solved again is a new Placement
    predictions: dict[float, dict] = field(default_factory=dict)


@dataclass
class PassContext:
    """What a pass may use. The catalog and cluster load once, on first use, and every
    file they read is recorded (depfiles and the manifest list them)."""

    options: Options = field(default_factory=Options)
    files: list[str] = field(default_factory=list)
    placement: Placement | None = None
    # what `place` solves with (None: agentc.planner.solve); `agentc replan` puts its
    # movement-penalised solve here (agentc/planner/replan.py)
    solver: Any = None
    _catalog: Catalog | None = None
    _cluster: Cluster | None = None

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            from agentc.catalog import load_catalog

            self._catalog = load_catalog(self.options.catalogs)
            self._record(self.options.catalogs)
        return self._catalog

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            from agentc.catalog import load_cluster

            cluster = load_cluster(self.options.cluster, self.catalog)
            if self.options.pricing:
                cluster = dataclasses.replace(cluster, pricing=self.options.pricing)
            self._cluster = cluster
            self._record(getattr(cluster, "files", ()))
            self._record(getattr(self.catalog, "files", ()))
        return self._cluster

    def _record(self, paths) -> None:
        self.files.extend(str(p) for p in paths if str(p) not in self.files)


@dataclass
class Compilation:
    """State that flows through the pipeline's stages."""

    input_path: str
    options: Options
    ctx: ir.Context
    pass_ctx: PassContext
    module: ir.Module | None = None
    stage: str | None = None                 # the last IR stage reached
    inputs: list[str] = field(default_factory=list)       # the source and its imports
    artifacts: dict[str, bytes] = field(default_factory=dict)
    artifact_meta: dict[str, dict] = field(default_factory=dict)
    dumps: dict[str, bytes] = field(default_factory=dict)  # --dump-phases-to
    jobs: list | None = None                 # code-generation jobs (agentc.codegen)

    @classmethod
    def new(cls, input_path: str, options: Options) -> Compilation:
        from agentc import dialects

        return cls(input_path, options, dialects.make_context(), PassContext(options))

    @property
    def stem(self) -> str:
        return os.path.splitext(os.path.basename(self.input_path))[0]

    @property
    def placement(self) -> Placement | None:
        return self.pass_ctx.placement

    @property
    def plan(self) -> Plan | None:
        return self.pass_ctx.placement.plan if self.pass_ctx.placement else None

    @property
    def problem(self) -> Problem | None:
        return self.pass_ctx.placement.problem if self.pass_ctx.placement else None

    def all_inputs(self) -> list[str]:
        """Every file the compile read, in first-read order (depfile, manifest)."""
        return list(dict.fromkeys(self.inputs + self.pass_ctx.files))

    def asm(self) -> str:
        return self.module.operation.get_asm(enable_debug_info=True)
