"""The one error hierarchy of agentc and how errors are shown to users.

Every user-facing failure is an `AgentcError` carrying a source location when one
exists. The CLI renders it as ``file:line:col: error: message`` followed by the source
line and a caret, and exits 1. Any other exception is a compiler bug: exit 2 with a
reproduction hint (see `agentc.cli`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class SourceLoc:
    """A position in a user file; line and col are 1-based."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class AgentcError(Exception):
    """A problem in the user's input or environment, reported without a traceback."""

    kind = "error"

    def __init__(self, message: str, loc: SourceLoc | None = None, notes: tuple[str, ...] | list[str] = ()):
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.notes = tuple(notes)

    def render(self, source_text: str | None = None) -> str:
        return render(self, source_text)


class ParseError(AgentcError):
    """Syntax error in a .agent or .mlir file."""


class VerifyError(AgentcError):
    """Well-formed input that breaks a semantic rule (names, kinds, units, SLA)."""


class CatalogError(AgentcError):
    """Bad device/model catalog or cluster inventory data."""


class InfeasiblePlanError(AgentcError):
    """No placement meets the SLA and capacity; notes name the binding constraints."""


class ToolchainError(AgentcError):
    """An external tool or MLIR pipeline failed; carries the command that reproduces it."""

    def __init__(self, message: str, command: str | None = None, loc: SourceLoc | None = None,
                 notes: tuple[str, ...] | list[str] = ()):
        extra = (f"reproduce with: {command}",) if command else ()
        super().__init__(message, loc, tuple(notes) + extra)
        self.command = command


class UsageError(AgentcError):
    """Bad command-line usage (unknown stage, missing file)."""


class SimulationInputError(AgentcError):
    """Input `agentc simulate` cannot use: a bad trace, a manifest of another schema
    version or without a placement, an impossible scenario."""


class OutputError(AgentcError):
    """An output path cannot be written (no such directory, read-only, a file in the way)."""


def _read_line(path: str, line: int) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            for i, text in enumerate(f, start=1):
                if i == line:
                    return text.rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return None
    return None


def render(err: AgentcError, source_text: str | None = None) -> str:
    """Format an error like clang: location, message, source line, caret, notes."""
    lines = []
    if err.loc is not None:
        lines.append(f"{err.loc}: {err.kind}: {err.message}")
        src = None
        if source_text is not None:
            all_lines = source_text.splitlines()
            if 1 <= err.loc.line <= len(all_lines):
                src = all_lines[err.loc.line - 1]
        elif os.path.isfile(err.loc.file):
            src = _read_line(err.loc.file, err.loc.line)
        if src is not None:
            lines.append(src)
            caret_col = max(err.loc.col, 1)
            prefix = "".join(c if c == "\t" else " " for c in src[: caret_col - 1])
            lines.append(prefix + "^")
    else:
        lines.append(f"agentc: {err.kind}: {err.message}")
    for note in err.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def locate_in_file(path: str, needle: str) -> SourceLoc:
    """Best-effort location of `needle` in a text file (TOML has no positions after parse)."""
    try:
        with open(path, encoding="utf-8") as f:
            for i, text in enumerate(f, start=1):
                col = text.find(needle)
                if col >= 0:
                    return SourceLoc(path, i, col + 1)
    except OSError:
        pass
    return SourceLoc(path, 1, 1)


class WeightsError(AgentcError):
    """A checkpoint `agentc run` cannot use: missing, unreadable, or a tensor that is
    absent or of the wrong shape or dtype (the message names it)."""
