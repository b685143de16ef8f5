"""Regenerate agent.irdl.mlir from the op table below and the granular ops' contracts in
ops.py (run by hand after editing either; a test checks the file is up to date).

IRDL constraint variables unify: every use of one SSA constraint must match the same
type, and a variadic slot must hold one type. Heterogeneous operand lists (an LLM's
context of text + json, a loop's carried values) are therefore split into one variadic
group per value kind, with `operandSegmentSizes`/`resultSegmentSizes`; the helpers in
`agentc.dialects` compute those. A side effect we want: a group that omits `audio`
makes IRDL itself reject audio into an LLM.
"""

import pathlib

try:
    from agentc.dialects.ops import OPS
except ImportError:  # run as a script from the source tree
    from ops import OPS

KINDS = ("audio", "text", "tokens", "embedding", "documents", "json", "kv", "tensor")
USER_KINDS = KINDS[:6]
NOT_AUDIO = tuple(k for k in KINDS if k != "audio")
S, I, F, A = '"#builtin.string"', '"#builtin.integer"', '"#builtin.float"', '"#builtin.array"'

# (dialect, op, doc, attrs, operands, results, regions)
# operands/results: list of (name, spec); spec is a kind ("audio"), "any", or a tuple of
# kinds meaning one variadic group per kind; a leading "?" on a kind means optional.
GRAPH = [
    ("agent", "model", "A model declaration with its resolved architecture.",
     {"sym_name": S, "kind": S}, [], [], 0),
    ("agent", "index", "A vector index declaration (documents, dimension).",
     {"sym_name": S, "size": I, "dim": I}, [], [], 0),
    ("agent", "graph", "One agent; its body ends in gpu.yield of the outputs.",
     {"sym_name": S}, [], [], 1),
    ("agent", "input", "The agent's input number `index`.", {"name": S, "index": I}, [], [("value", "any")], 0),
    ("agent", "stt", "Speech to text.", {"model": S}, [("speech", "audio")], [("text", "text")], 0),
    ("agent", "tts", "Text to speech.", {"model": S}, [("text", "text")], [("speech", "audio")], 0),
    ("agent", "embed", "Embed text or documents with an encoder model.", {"model": S},
     [("value", ("text", "documents", "json"))], [("embedding", "embedding")], 0),
    ("agent", "retrieve", "Top-k search of a vector index.", {"index": S, "index_size": I, "dim": I, "k": I},
     [("query", "embedding")], [("docs", "documents")], 0),
    ("agent", "observe", "Append to the observation store.", {"bytes": I}, [("values", USER_KINDS)], [], 0),
    ("agent", "compute", "General compute: a named CPU function with a cost hint.", {"fn": S},
     [("args", USER_KINDS)], [("result", "json")], 0),
    ("agent", "call", "Call another agent (nesting).", {"callee": S}, [("args", USER_KINDS)],
     [("results", USER_KINDS)], 0),
    ("agent", "loop", "Bounded loop; carried values are block arguments.",
     {"max_trips": I, "expected_trips": F}, [("init", USER_KINDS)], [("final", USER_KINDS)], 1),
    ("agent", "branch", "Two-way branch; `prob` is the probability of the first region.",
     {"prob": F}, [], [("merged", USER_KINDS)], 2),
    ("agent", "parallel", "Fan-out and join.", {}, [], [("joined", USER_KINDS)], 1),
    ("agent", "send", "Send a value to another pool at a cross-pool edge (inserted by partition).",
     {"peer": S, "channel": I, "bytes": I, "link": S}, [("value", "any")], [], 0),
    ("agent", "recv", "Receive a value another pool sent on `channel` (inserted by partition).",
     {"peer": S, "channel": I, "bytes": I, "link": S}, [], [("value", "any")], 0),
    ("llm", "call", "One LLM request.", {"model": S, "input_tokens": I, "output_tokens": I},
     [("context", ("text", "tokens", "documents", "json"))], [("answer", "text")], 0),
    ("tool", "invoke", "A tool call.", {"tool": S, "latency_ms": F, "payload_bytes": I},
     [("args", NOT_AUDIO[:5])], [("result", "json")], 0),
    ("memory", "load", "Read from agent memory.", {"store": S, "latency_ms": F, "bytes": I},
     [("key", NOT_AUDIO[:5])], [("values", "documents")], 0),
    ("memory", "store", "Write to agent memory.", {"store": S, "latency_ms": F, "bytes": I},
     [("values", NOT_AUDIO[:5])], [], 0),
]

# Granular ops (made by the decompose-* passes) come from their contracts in ops.py:
# any inputs (grouped), at most one result, and their required, typed attributes.
_BASE = {"string": S, "integer": I, "float": F}


def _granular():
    for name, c in sorted(OPS.items()):
        dialect, op = name.split(".", 1)
        yield dialect, op, {k: _BASE[t] for k, t in c.attrs.items()}


def _op(dialect, name, doc, attrs, operands, results, regions):
    defs, lines, n = [], [], [0]

    def var(rhs):
        n[0] += 1
        defs.append(f"    %v{n[0]} = {rhs}")
        return f"%v{n[0]}"

    def kind_constraint(kind):
        return var("irdl.any") if kind == "any" else var(f"irdl.base @agent::@{kind}")

    def slots(spec_list):
        out = []
        for slot, spec in spec_list:
            if isinstance(spec, tuple):
                out += [f"{slot}_{k}: variadic {kind_constraint(k)}" for k in spec]
            elif spec.startswith("?"):
                out.append(f"{slot}: optional {kind_constraint(spec[1:])}")
            else:
                out.append(f"{slot}: {kind_constraint(spec)}")
        return out

    if attrs:
        lines.append("    irdl.attributes { " + ", ".join(f'"{k}" = {var(f"irdl.base {v}")}' for k, v in attrs.items()) + " }")
    if operands:
        lines.append("    irdl.operands(" + ", ".join(slots(operands)) + ")")
    if results:
        lines.append("    irdl.results(" + ", ".join(slots(results)) + ")")
    if regions:
        names = ["body"] if regions == 1 else ["then_region", "else_region"]
        lines.append("    irdl.regions(" + ", ".join(f"{r}: {var('irdl.region')}" for r in names) + ")")
    return [f"  // {doc}", f"  irdl.operation @{name} {{"] + defs + lines + ["  }"]


def generate() -> str:
    by_dialect: dict[str, list[str]] = {}
    for spec in GRAPH:
        by_dialect.setdefault(spec[0], []).extend(_op(*spec))
    for dialect, name, attrs in _granular():
        by_dialect.setdefault(dialect, []).extend(
            _op(dialect, name, "Granular op (its contract: dialects/ops.py).", attrs,
                [("in", KINDS)], [("out", "?any")], 0))
    out = ["// GENERATED by dialects/gen_irdl.py from its op table; edit the table, rerun.",
           "// agentc's dialects in IRDL (graph level and granular ops). Region bodies end",
           "// with upstream gpu.yield: IRDL cannot declare a terminator, and gpu.yield is the",
           "// generic value-yielding terminator with no parent constraint.", ""]
    for dialect, body in by_dialect.items():
        out.append(f"irdl.dialect @{dialect} {{")
        if dialect == "agent":
            out += [f"  irdl.type @{k}" for k in KINDS]
        out += body
        out.append("}")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    path = pathlib.Path(__file__).with_name("agent.irdl.mlir")
    path.write_text(generate())
    print(f"wrote {path}")
