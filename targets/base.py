"""The one small interface every code-generation target implements.

A target turns a kernel module (MLIR text: `func.func`s over `linalg` on tensors, all
marked `llvm.emit_c_interface`) into artifacts. It has exactly two methods, like
Triton's backends: `parse_options` returns a frozen, hashable options dataclass, and
`add_stages` fills an ordered dict of stage name -> function. The driver runs the
stages in order and stops after the one `--emit` names. Adding a target means adding
one file and one line in `targets/__init__.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Protocol


@dataclass
class CompileState:
    """What flows between a target's stages.

    `ir` is the current textual form (MLIR, then LLVM IR, ...); each stage may record
    files in `artifacts` as extension -> bytes (e.g. "ll", "o", "ptx", "cubin", "h").
    """

    name: str
    ir: str
    artifacts: dict[str, bytes] = field(default_factory=dict)
    meta: dict[str, object] = field(default_factory=dict)


StageFn = Callable[[CompileState], CompileState]


class Target(Protocol):
    name: ClassVar[str]
    # The pipeline's emit points (agentc/pipeline.py: llvm, ptx, amdgcn, objects) -> the
    # last of this target's stages to run for each; a point it lacks leaves it as it is.
    EMIT_POINTS: ClassVar[dict[str, str]]

    def parse_options(self, **overrides) -> object:
        """Return a frozen dataclass of this target's options (chip, triple, opt level)."""

    def add_stages(self, stages: dict[str, StageFn], options: object) -> None:
        """Append this target's stages, in order, to `stages`."""


def check_options(who: str, options_type: type, overrides: dict) -> None:
    """Reject option names `options_type` (a dataclass) does not have, naming the known ones."""
    from agentc.diagnostics import UsageError

    known = set(options_type.__dataclass_fields__)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UsageError(f"{who}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def check_opt_level(who: str, level: int) -> None:
    from agentc.diagnostics import UsageError

    if level not in (0, 1, 2, 3):
        raise UsageError(f"{who}: opt_level must be 0-3, got {level}")


def run_stages(target: Target, state: CompileState, options: object,
               stop_after: str | None = None) -> CompileState:
    """Run a target's stages in order; stop after `stop_after` when given."""
    stages: dict[str, StageFn] = {}
    target.add_stages(stages, options)
    if stop_after is not None and stop_after not in stages:
        from agentc.diagnostics import UsageError
        raise UsageError(f"target '{target.name}' has no stage '{stop_after}'; "
                         f"stages: {', '.join(stages)}")
    for stage_name, fn in stages.items():
        state = fn(state)
        if stage_name == stop_after:
            break
    return state
