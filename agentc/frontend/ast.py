"""Typed AST of the .agent language.

Every node carries the `SourceLoc` of its first token so that lowering can put a real
`file:line:col` location on each MLIR op and every diagnostic can point at the source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agentc.diagnostics import SourceLoc


@dataclass(frozen=True)
class Quantity:
    """A number with an optional unit as written (`150ms`, `20 rps`, `4KB`, `0.3`)."""

    value: float
    unit: str | None
    loc: SourceLoc
    text: str


@dataclass(frozen=True)
class Word:
    """A bare identifier used as a keyword-argument value (`dtype=fp8`)."""

    name: str
    loc: SourceLoc


@dataclass(frozen=True)
class Str:
    value: str
    loc: SourceLoc


Value = Quantity | Word | Str


@dataclass(frozen=True)
class KwArg:
    name: str
    value: Value
    loc: SourceLoc


@dataclass(frozen=True)
class Ref:
    name: str
    loc: SourceLoc


@dataclass(frozen=True)
class ListExpr:
    items: tuple["Expr", ...]
    loc: SourceLoc


@dataclass(frozen=True)
class Call:
    """A call: `kind` is 'builtin' (llm, stt, ...), 'tool', 'compute' or an agent name
    once resolved; `callee` is the name as written (`memory.load`, `web_search`)."""

    kind: str
    callee: str
    args: tuple["Expr", ...]
    kwargs: tuple[KwArg, ...]
    loc: SourceLoc


Expr = Ref | ListExpr | Call


@dataclass(frozen=True)
class SlaTerm:
    metric: str            # "latency.p99", "latency", "ttft", "tbt"
    bound: Quantity
    loc: SourceLoc


@dataclass(frozen=True)
class SlaClause:
    terms: tuple[SlaTerm, ...]
    loc: SourceLoc


@dataclass(frozen=True)
class LoadClause:
    rate: Quantity
    loc: SourceLoc


@dataclass(frozen=True)
class Assign:
    targets: tuple[Ref, ...]
    value: Expr
    loc: SourceLoc


@dataclass(frozen=True)
class CallStmt:
    call: Call
    loc: SourceLoc


@dataclass(frozen=True)
class Return:
    values: tuple[Expr, ...]
    loc: SourceLoc


@dataclass(frozen=True)
class Loop:
    max_trips: Quantity | None
    continue_prob: Quantity | None
    expected_trips: Quantity | None
    body: tuple["Stmt", ...]
    loc: SourceLoc


@dataclass(frozen=True)
class If:
    prob: Quantity
    then_body: tuple["Stmt", ...]
    else_body: tuple["Stmt", ...]
    loc: SourceLoc


@dataclass(frozen=True)
class Parallel:
    body: tuple["Stmt", ...]
    loc: SourceLoc


Stmt = SlaClause | LoadClause | Assign | CallStmt | Return | Loop | If | Parallel


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    loc: SourceLoc
    kind_loc: SourceLoc


@dataclass(frozen=True)
class AgentDecl:
    name: str
    params: tuple[Param, ...]
    outputs: tuple[Word, ...]
    body: tuple[Stmt, ...]
    loc: SourceLoc


@dataclass(frozen=True)
class ModelDecl:
    name: str
    base: Word
    kwargs: tuple[KwArg, ...]
    loc: SourceLoc


@dataclass(frozen=True)
class IndexDecl:
    name: str
    kwargs: tuple[KwArg, ...]
    loc: SourceLoc


@dataclass(frozen=True)
class Import:
    path: str
    loc: SourceLoc


@dataclass
class Program:
    """A parsed file plus, after import resolution, everything it imports."""

    file: str
    imports: list[Import] = field(default_factory=list)
    models: list[ModelDecl] = field(default_factory=list)
    indexes: list[IndexDecl] = field(default_factory=list)
    agents: list[AgentDecl] = field(default_factory=list)
