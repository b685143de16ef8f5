"""The target registry: name -> Target (one small class per file, see base.py).

`get("cpu")` returns a fresh target object; `TARGETS` lists the names `--targets`
accepts. A pool's placed `target` attribute ("llvm-cpu", "nvvm", "rocdl", "none") maps
to a registry name with `for_placement`; "none" has no code generator.
"""

from __future__ import annotations

from .base import CompileState, Target, run_stages
from .cpu import CpuTarget
from .nvvm import NvvmTarget
from .rocdl import RocdlTarget

_REGISTRY: dict[str, type] = {"cpu": CpuTarget, "nvvm": NvvmTarget, "rocdl": RocdlTarget}
TARGETS: tuple[str, ...] = tuple(_REGISTRY)

# Placement vocabulary (devices.toml `target`) -> registry name.
_PLACED = {"llvm-cpu": "cpu", "cpu": "cpu", "nvvm": "nvvm", "rocdl": "rocdl"}


def get(name: str) -> Target:
    """A target by registry name ("cpu", "nvvm", "rocdl")."""
    from agentc.diagnostics import UsageError

    if name not in _REGISTRY:
        raise UsageError(f"unknown target '{name}'; targets: {', '.join(TARGETS)}")
    return _REGISTRY[name]()


def for_placement(placed_target: str) -> str | None:
    """The registry name for a placed pool's `target` attribute; None for "none"."""
    return _PLACED.get(placed_target)


__all__ = ["CompileState", "TARGETS", "Target", "for_placement", "get", "run_stages"]
