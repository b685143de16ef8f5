"""Fuzz the frontend: mutate valid programs (the examples and small generated ones) by
deleting, duplicating and swapping tokens, inserting characters and keywords, and
changing numbers and units. Whatever comes out, parse_text + lower_program either
succeed or raise an AgentcError located inside the file; any other exception (or an
error without a usable location) is a compiler bug."""

from __future__ import annotations

import functools
import glob
import os
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentc import dialects
from agentc.catalog import load_catalog
from agentc.diagnostics import AgentcError
from agentc.frontend.lower import lower_program
from agentc.frontend.parser import parse_text

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILE = "fuzz.agent"
# Words, numbers with units, two-character operators, single characters, whitespace runs.
TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*|[0-9][0-9_.eE]*[A-Za-z]*|->|<=|\s+|.", re.S)
KEYWORDS = ["agent", "model", "index", "import", "loop", "max", "while", "expect", "if", "else",
            "parallel", "return", "sla", "load", "tool", "compute", "llm", "stt", "tts", "embed",
            "retrieve", "memory.load", "memory.store", "observe", "text", "audio", "json",
            "latency", "ttft", "tbt", "latency.p99", "in=", "out=", "k=", "bytes=", "cost=",
            "{", "}", "(", ")", "[", "]", ",", ";", "=", "->", "<", ":", ".", '"x"', "//", "#"]
NUMBERS = ["0", "1", "2", "3", "0.5", "1.5", "-1", "1e9", "1e400", "999999999999999999999", "1_000",
           "0.0", "00", "1__0", "3.", ".5", "nan", "inf"]
UNITS = ["", "ms", "s", "us", "rps", "B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "k", "M", "G", "x"]
CHARS = list("{}()[],;:=<>.-+*/\\\"'#@$%^&|~`!?\t\n ") + ["\u00e9", "\u03bb", "\x00", "\ufeff"]


def _examples() -> list[str]:
    out = []
    lib = {os.path.relpath(p, os.path.join(REPO, "examples")): open(p).read()
           for p in glob.glob(os.path.join(REPO, "examples", "lib", "*.agent"))}
    for path in sorted(glob.glob(os.path.join(REPO, "examples", "*.agent"))):
        text = open(path).read()
        # parse_text does not follow imports: paste the imported file in its place.
        text = re.sub(r'import "([^"]+)"', lambda m: lib.get(m.group(1), ""), text)
        out.append(text)
    return out


SMALL = [
    "agent a(x: text) -> text {\n  return x\n}\n",
    "model m = llama3-8b\nagent a(x: text) -> text {\n  y = llm(m, x, in=8, out=8)\n  return y\n}\n",
    "agent a(q: audio) -> audio {\n  sla { latency < 100ms; ttft < 10ms }\n  load 2 rps\n"
    "  t = stt(whisper-small, q)\n  loop max 2 while 0.5 {\n    t = llm(llama3-8b, [t], in=4, out=4)\n  }\n"
    "  return tts(piper-medium, t)\n}\n",
    "index d(size=10, dim=4)\nagent a(x: text) -> (text, json) {\n  e = embed(minilm-l6, x)\n"
    "  h = retrieve(d, e, k=2)\n  if 0.3 {\n    j = tool t(h, latency=1ms)\n  } else {\n"
    "    j = compute f(h, cost=1ms)\n  }\n  parallel {\n    y = llm(llama3-8b, x, in=1, out=1)\n  }\n"
    "  memory.store(x, bytes=1KB)\n  return y, j\n}\n",
    "agent b(x: text) -> text {\n  return x\n}\nagent a(x: text) -> text {\n"
    "  loop max 3 expect 1 {\n    x = b(x)\n  }\n  observe(x)\n  return x\n}\n",
]
SEEDS = _examples() + SMALL


def _tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


@st.composite
def mutated_programs(draw):
    toks = _tokens(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "char", "keyword", "number", "unit"]))
        i = draw(st.integers(0, max(len(toks) - 1, 0)))
        if op == "delete" and toks:
            del toks[i]
        elif op == "duplicate" and toks:
            toks.insert(i, toks[i])
        elif op == "swap" and len(toks) > 1:
            j = draw(st.integers(0, len(toks) - 1))
            toks[i], toks[j] = toks[j], toks[i]
        elif op == "char":
            toks.insert(i, draw(st.sampled_from(CHARS)))
        elif op == "keyword":
            toks.insert(i, " " + draw(st.sampled_from(KEYWORDS)) + " ")
        elif op in ("number", "unit"):
            numeric = [k for k, t in enumerate(toks) if t[:1].isdigit()]
            if numeric:
                k = draw(st.sampled_from(numeric))
                num = re.match(r"[0-9][0-9_.eE]*", toks[k]).group(0)
                unit = toks[k][len(num):]
                if op == "number":
                    num = draw(st.sampled_from(NUMBERS))
                else:
                    unit = draw(st.sampled_from(UNITS))
                toks[k] = num + unit
    return "".join(toks)


@functools.lru_cache(maxsize=1)
def _catalog():
    return load_catalog()


@functools.lru_cache(maxsize=1)
def _context():
    # One context for all examples: building the IRDL dialects per example would cost
    # more than the lowering itself.
    return dialects.make_context()


def check_frontend(text: str) -> None:
    try:
        lower_program(parse_text(text, FILE), _context(), _catalog())
    except AgentcError as err:
        lines = text.splitlines() or [""]
        assert err.loc is not None, f"error without a location: {err.message!r}\n--- input:\n{text}"
        assert err.loc.file == FILE, (err.loc, text)
        assert 1 <= err.loc.line <= len(lines), (err.loc, err.message, text)
        assert 1 <= err.loc.col <= len(lines[err.loc.line - 1]) + 1, (err.loc, err.message, text)
        assert err.message and "\n" not in err.message, repr(err.message)


def test_seeds_are_valid():
    for text in SEEDS:
        check_frontend(text)
        lower_program(parse_text(text, FILE), _context(), _catalog())


@settings(max_examples=2000, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated_programs())
def test_mutated_programs_fail_cleanly(text):
    check_frontend(text)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.lists(st.sampled_from(CHARS + KEYWORDS + NUMBERS + ["a", "x", "ms"]), max_size=40).map("".join))
def test_random_text_fails_cleanly(text):
    check_frontend(text)
