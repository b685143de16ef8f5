"""The frontend's Python API: parse_text / parse_file build the AST, lower_program checks
it and builds agent-dialect IR in which every op carries its .agent source location; the
printed IR parses back to the same text; errors are AgentcErrors with a line and column."""

from __future__ import annotations

import glob
import os

import pytest
from mlir import ir

from agentc import dialects
from agentc.diagnostics import AgentcError, ParseError, VerifyError
from agentc.frontend import ast
from agentc.frontend.lower import lower_program
from agentc.frontend.parser import parse_file, parse_text
from agentc.passes._ir import walk

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = sorted(glob.glob(os.path.join(REPO, "examples", "*.agent")))

SMALL = """\
model m = llama3-8b
agent a(x: text) -> text {
  y = llm(m, x, in=16, out=4)
  loop max 2 while 0.5 {
    y = llm(m, [x, y], in=32, out=4)
  }
  return y
}
"""


def _lower_file(path):
    program, files = parse_file(path)
    ctx = dialects.make_context()
    return lower_program(program, ctx), files


def _asm(module) -> str:
    return module.operation.get_asm(enable_debug_info=True)


def test_examples_exist():
    names = {os.path.basename(p) for p in EXAMPLES}
    assert {"voice_agent.agent", "rag_agent.agent", "react_tools.agent", "supervisor.agent"} <= names


def test_parse_text_builds_typed_ast():
    prog = parse_text(SMALL, "small.agent")
    assert [m.name for m in prog.models] == ["m"]
    (agent,) = prog.agents
    assert agent.name == "a"
    assert [(p.name, p.kind) for p in agent.params] == [("x", "text")]
    assert [o.name for o in agent.outputs] == ["text"]
    loop = next(s for s in agent.body if isinstance(s, ast.Loop))
    assert (loop.max_trips.value, loop.continue_prob.value, loop.expected_trips) == (2.0, 0.5, None)
    assert (loop.loc.file, loop.loc.line, loop.loc.col) == ("small.agent", 4, 3)


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_every_op_has_a_source_location(path):
    module, files = _lower_file(path)
    assert module.operation.verify()
    ops = list(walk(module.operation))
    assert any(op.name == "agent.graph" for op in ops)
    for op in ops:
        loc = str(op.location)
        assert '.agent":' in loc, f"{op.name} has location {loc}"
        # The file named is one the compile read (the example or one of its imports).
        assert any(f'"{f}":' in loc for f in files), f"{op.name}: {loc} not in {files}"


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_printed_ir_round_trips(path):
    module, _ = _lower_file(path)
    text = _asm(module)
    ctx = dialects.make_context()
    with ctx:
        again = ir.Module.parse(text)
    assert _asm(again) == text


def test_lowering_is_deterministic():
    texts = set()
    for _ in range(2):
        ctx = dialects.make_context()
        texts.add(_asm(lower_program(parse_text(SMALL, "small.agent"), ctx)))
    assert len(texts) == 1


def test_loop_expected_trips_follow_the_continue_probability():
    ctx = dialects.make_context()
    module = lower_program(parse_text(SMALL, "small.agent"), ctx)
    (loop,) = [op for op in walk(module.operation) if op.name == "agent.loop"]
    assert loop.attributes["max_trips"].value == 2
    assert loop.attributes["expected_trips"].value == pytest.approx(0.5 + 0.25)


def test_parse_error_carries_line_and_column():
    with pytest.raises(ParseError) as info:
        parse_text("agent a(x: text) -> text {\n  return x )\n}\n", "bad.agent")
    err = info.value
    assert isinstance(err, AgentcError)
    assert (err.loc.file, err.loc.line, err.loc.col) == ("bad.agent", 2, 12)
    assert err.message.startswith("unexpected ')'")


def test_verify_error_carries_line_and_column():
    src = "agent a(q: audio) -> text {\n  y = llm(llama3-8b, q, in=8, out=8)\n  return y\n}\n"
    ctx = dialects.make_context()
    with pytest.raises(VerifyError) as info:
        lower_program(parse_text(src, "kinds.agent"), ctx)
    err = info.value
    assert (err.loc.line, err.loc.col) == (2, 22)
    assert err.message.startswith("llm cannot take audio")
    rendered = err.render(src)
    assert rendered.splitlines() == [
        "kinds.agent:2:22: error: llm cannot take audio; it accepts text, tokens, documents, json",
        "  y = llm(llama3-8b, q, in=8, out=8)",
        "                     ^",
    ]


def test_import_is_resolved_relative_to_the_importing_file(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "sub.agent").write_text("agent sub(x: text) -> text {\n  return x\n}\n")
    (tmp_path / "main.agent").write_text(
        'import "lib/sub.agent"\nagent main(x: text) -> text {\n  return sub(x)\n}\n')
    program, files = parse_file(str(tmp_path / "main.agent"))
    assert [a.name for a in program.agents] == ["sub", "main"]
    assert [os.path.basename(f) for f in files] == ["main.agent", "sub.agent"]
