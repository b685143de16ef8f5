"""Parse .agent source into the typed AST (Lark LALR with positions).

Syntax errors become `ParseError`s located at the offending token, phrased like
"unexpected 'x'; expected one of: ...". Imports are resolved here, relative to the
importing file, so the rest of the compiler sees one merged `Program`.
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from agentc.diagnostics import AgentcError, ParseError, SourceLoc
from agentc.frontend import ast
from agentc.inputs import read_source

MAX_NUMBER = 1e18

# Friendlier names for terminals in "expected one of" lists.
_TERMINAL_NAMES = {
    "NAME": "identifier", "NUMBER": "number", "STRING": "string", "UNIT": "unit",
    "LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['",
    "RSQB": "']'", "COMMA": "','", "SEMICOLON": "';'", "EQUAL": "'='", "COLON": "':'",
    "DOT": "'.'", "_LESS": "'<'", "$END": "end of file", "__ANON_0": "'->'",
}


@lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = resources.files("agentc.frontend").joinpath("grammar.lark").read_text()
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def _describe_expected(names) -> str:
    shown = []
    for n in sorted(names):
        if n.startswith("__ANON") and n != "__ANON_0":
            continue
        shown.append(_TERMINAL_NAMES.get(n, f"'{n.lower()}'" if n.isupper() else n))
    return ", ".join(sorted(set(shown)))


class _Build(Transformer):
    """Bottom-up construction of AST nodes; every node gets its first token's location."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _loc(self, meta_or_tok) -> SourceLoc:
        if isinstance(meta_or_tok, Token):
            return SourceLoc(self.file, meta_or_tok.line, meta_or_tok.column)
        return SourceLoc(self.file, getattr(meta_or_tok, "line", 1), getattr(meta_or_tok, "column", 1))

    # values -------------------------------------------------------------
    @v_args(meta=True)
    def quantity(self, meta, children):
        num, unit = children
        text = str(num).replace("_", "")
        try:
            value = float(text)
        except ValueError:
            raise ParseError(f"malformed number '{num}'", self._loc(num))
        self._check_magnitude(value, num)
        return ast.Quantity(value, str(unit) if unit is not None else None, self._loc(num),
                            str(num) + (str(unit) if unit is not None else ""))

    def word(self, children):
        (tok,) = children
        return ast.Word(str(tok), self._loc(tok))

    def string(self, children):
        (tok,) = children
        return ast.Str(str(tok)[1:-1], self._loc(tok))

    @v_args(meta=True)
    def kwarg(self, meta, children):
        name, value = children
        return ast.KwArg(str(name), value, self._loc(name))

    def kwargs(self, children):
        return tuple(children)

    def args(self, children):
        return tuple(children)

    def dotted(self, children):
        return (".".join(str(c) for c in children), self._loc(children[0]))

    # expressions ----------------------------------------------------------
    def ref(self, children):
        (tok,) = children
        return ast.Ref(str(tok), self._loc(tok))

    @v_args(meta=True)
    def list(self, meta, children):
        items = tuple(c for c in children if c is not None)
        return ast.ListExpr(items, self._loc(meta))

    def _call(self, kind, callee, loc, args):
        args = args or ()
        positional = tuple(a for a in args if not isinstance(a, ast.KwArg))
        kwargs = tuple(a for a in args if isinstance(a, ast.KwArg))
        return ast.Call(kind, callee, positional, kwargs, loc)

    @v_args(meta=True)
    def builtin_call(self, meta, children):
        (name, loc), args = children
        return self._call("builtin", name, loc, args)

    @v_args(meta=True)
    def tool_call(self, meta, children):
        name, args = children
        return self._call("tool", str(name), self._loc(meta), args)

    @v_args(meta=True)
    def compute_call(self, meta, children):
        name, args = children
        return self._call("compute", str(name), self._loc(meta), args)

    # statements -----------------------------------------------------------
    @v_args(meta=True)
    def sla_term(self, meta, children):
        (metric, loc), bound = children
        return ast.SlaTerm(metric, bound, loc)

    @v_args(meta=True)
    def sla_clause(self, meta, children):
        return ast.SlaClause(tuple(c for c in children if c is not None), self._loc(meta))

    @v_args(meta=True)
    def load_clause(self, meta, children):
        return ast.LoadClause(children[0], self._loc(meta))

    @v_args(meta=True)
    def assign(self, meta, children):
        *names, value = children
        return ast.Assign(tuple(ast.Ref(str(n), self._loc(n)) for n in names), value, self._loc(meta))

    @v_args(meta=True)
    def call_stmt(self, meta, children):
        return ast.CallStmt(children[0], self._loc(meta))

    @v_args(meta=True)
    def return_stmt(self, meta, children):
        return ast.Return(tuple(children), self._loc(meta))

    def block(self, children):
        return tuple(c for c in children if c is not None and not isinstance(c, Token))

    def _check_magnitude(self, value: float, tok) -> None:
        """No quantity of an agent program comes near 1e18; beyond it the solver's
        arithmetic (HiGHS takes 1e20 as infinity) would fail far from the source."""
        if not value <= MAX_NUMBER:
            raise ParseError(f"number '{tok}' is too large (at most {MAX_NUMBER:g})", self._loc(tok))

    def _bound(self, tok):
        value = float(str(tok).replace("_", ""))
        self._check_magnitude(value, tok)
        return ast.Quantity(value, None, self._loc(tok), str(tok))

    def loop_max(self, children):
        return ("max", self._bound(children[0]))

    def loop_while(self, children):
        return ("while", self._bound(children[0]))

    def loop_expect(self, children):
        return ("expect", self._bound(children[0]))

    @v_args(meta=True)
    def loop_stmt(self, meta, children):
        *bounds, body = children
        seen: dict[str, ast.Quantity] = {}
        for key, q in bounds:
            if key in seen:
                raise ParseError(f"loop bound '{key}' given twice", q.loc)
            seen[key] = q
        return ast.Loop(seen.get("max"), seen.get("while"), seen.get("expect"), body, self._loc(meta))

    @v_args(meta=True)
    def if_stmt(self, meta, children):
        prob, then_body, else_body = children
        return ast.If(self._bound(prob), then_body, else_body or (), self._loc(meta))

    @v_args(meta=True)
    def parallel_stmt(self, meta, children):
        return ast.Parallel(children[0], self._loc(meta))

    # declarations -----------------------------------------------------------
    @v_args(meta=True)
    def param(self, meta, children):
        name, kind = children
        return ast.Param(str(name), str(kind), self._loc(name), self._loc(kind))

    def params(self, children):
        return tuple(children)

    def one_output(self, children):
        return (ast.Word(str(children[0]), self._loc(children[0])),)

    def many_outputs(self, children):
        return tuple(ast.Word(str(c), self._loc(c)) for c in children)

    @v_args(meta=True)
    def agent_decl(self, meta, children):
        name, params, outputs, body = children
        return ast.AgentDecl(str(name), params or (), outputs, body, self._loc(meta))

    @v_args(meta=True)
    def model_decl(self, meta, children):
        name, base, kwargs = children
        return ast.ModelDecl(str(name), ast.Word(str(base), self._loc(base)), kwargs or (), self._loc(meta))

    @v_args(meta=True)
    def index_decl(self, meta, children):
        name, kwargs = children
        return ast.IndexDecl(str(name), kwargs or (), self._loc(meta))

    @v_args(meta=True)
    def import_decl(self, meta, children):
        return ast.Import(str(children[0])[1:-1], self._loc(meta))

    def start(self, children):
        prog = ast.Program(self.file)
        for item in children:
            if isinstance(item, ast.Import):
                prog.imports.append(item)
            elif isinstance(item, ast.ModelDecl):
                prog.models.append(item)
            elif isinstance(item, ast.IndexDecl):
                prog.indexes.append(item)
            elif isinstance(item, ast.AgentDecl):
                prog.agents.append(item)
        return prog


def _syntax_error(err: UnexpectedInput, file: str, text: str) -> ParseError:
    loc = SourceLoc(file, getattr(err, "line", 1) or 1, getattr(err, "column", 1) or 1)
    if isinstance(err, UnexpectedToken):
        tok = err.token
        if tok.type == "$END":
            lines = text.splitlines() or [""]
            loc = SourceLoc(file, len(lines), len(lines[-1]) + 1)
            what = "unexpected end of file"
        else:
            what = f"unexpected '{tok}'"
        return ParseError(f"{what}; expected one of: {_describe_expected(err.expected)}", loc)
    if isinstance(err, UnexpectedCharacters):
        ch = text[err.pos_in_stream] if err.pos_in_stream < len(text) else "?"
        return ParseError(f"unexpected character '{ch}'", loc)
    if isinstance(err, UnexpectedEOF):
        lines = text.splitlines() or [""]
        return ParseError("unexpected end of file", SourceLoc(file, len(lines), len(lines[-1]) + 1))
    return ParseError(str(err).splitlines()[0], loc)


def parse_text(text: str, file: str = "<input>") -> ast.Program:
    """Parse one file's text (no import resolution)."""
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as err:
        raise _syntax_error(err, file, text) from None
    try:
        return _Build(file).transform(tree)
    except VisitError as err:
        if isinstance(err.orig_exc, (AgentcError, RecursionError)):
            raise err.orig_exc from None
        raise


def _read(path: str, loc: SourceLoc | None) -> str:
    """A source or import through the one bounded reader; newlines normalised as text
    mode would (a CRLF file parses like an LF one)."""
    text = read_source(path, "source file" if loc is None else "import", loc=loc, error=ParseError)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_file(path: str, display_name: str | None = None) -> tuple[ast.Program, list[str]]:
    """Parse `path` and everything it imports; returns the merged program and the list of
    files read (for depfiles). Import cycles and missing files are located errors."""
    files: list[str] = []
    merged = ast.Program(display_name or path)

    def visit(p: str, shown: str, stack: tuple[str, ...], loc: SourceLoc | None):
        if "\0" in p:  # no file system call takes it; realpath would raise ValueError
            raise ParseError(f"import path {shown!r} contains a NUL character", loc)
        real = os.path.realpath(p)
        if real in stack:
            raise ParseError(f"import cycle: '{shown}' imports itself", loc)
        if real in seen:
            return
        seen.add(real)
        text = _read(p, loc)
        files.append(p)
        prog = parse_text(text, shown)
        for imp in prog.imports:
            target = os.path.join(os.path.dirname(p), imp.path)
            shown_target = os.path.normpath(os.path.join(os.path.dirname(shown), imp.path))
            visit(target, shown_target, stack + (real,), imp.loc)
        merged.models.extend(prog.models)
        merged.indexes.extend(prog.indexes)
        merged.agents.extend(prog.agents)
        if not stack:
            merged.imports.extend(prog.imports)

    seen: set[str] = set()
    visit(path, display_name or path, (), None)
    return merged, files
