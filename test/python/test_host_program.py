"""The host program (`lower-host`, `{pool}/{pool}.o`): linked with the pool's kernel
objects and a small C runtime, it runs the pool's part of the graph.

The runtime below logs every call (function, name, number of inputs, their sizes), so
the test sees the program order, that runtime calls get every input, that a kernel's
bound arguments come through `agentc_bind`, that a negative code stops the program and
that every buffer it allocates is freed. The retrieve op checks numbers end to end: the
graph's embedding input and the index the runtime binds go through the generated
kernel, and the graph output holds numpy's top-k cosine scores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")

CLUSTER = """name = "cpu-only"
pricing = "given"

[[pool]]
name = "host"
device = "epyc-9654"
count = 4
nodes = 4
"""

AGENT = """index docs(size=64, dim=16)
model tiny = decoder(layers=2, d_model=64, heads=4, kv_heads=2, ffn=128, vocab=512)

agent a(q: text, e: embedding) -> (documents, text) {
  sla { latency < 5000ms }
  d = retrieve(docs, e, k=4)
  hits = tool web(q, latency=10ms, payload=1KB)
  ans = llm(tiny, [q, hits], in=16, out=4)
  return d, ans
}
"""

RUNTIME = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include "host.h"

static long allocs, frees;
static int fail_tool;   /* web_search returns -5 when set */

void *agentc_alloc(int64_t n, int64_t where) { allocs++; if (where != 0) abort(); return calloc(1, (size_t)n); }
void agentc_free(void *p) { frees++; free(p); }

/* The index (op "d", argument 1): row r, column c = sin(r * 16 + c + 1). Weights: small. */
void *agentc_bind(const char *model, const char *op, int64_t arg, int64_t index, int64_t bytes) {
  float *w = calloc(1, (size_t)bytes);
  int64_t n = bytes / 4;
  for (int64_t i = 0; i < n; i++)
    w[i] = strcmp(op, "d") == 0 ? (float)__builtin_sin((double)(i + 1)) : 0.001f * (float)((i * 7) % 13 - 6);
  printf("bind %s %s %lld %lld %lld\n", model, op, (long long)arg, (long long)index, (long long)bytes);
  return w;   /* leaked: a real runtime owns its weights */
}

static int64_t logged(const char *fn, const char *name, const void *const *in, const int64_t *in_bytes,
                      int64_t n_in, void *out, int64_t cap) {
  printf("call %s %s %lld", fn, name, (long long)n_in);
  int64_t total = 0;
  for (int64_t i = 0; i < n_in; i++) { printf(" %lld", (long long)in_bytes[i]); total += in_bytes[i]; }
  printf(" cap %lld\n", (long long)cap);
  /* output: the inputs concatenated, as far as they fit */
  int64_t w = 0;
  for (int64_t i = 0; i < n_in && w < cap; i++) {
    int64_t k = in_bytes[i] < cap - w ? in_bytes[i] : cap - w;
    memcpy((char *)out + w, in[i], (size_t)k);
    w += k;
  }
  return w;
}

#define FN(f) int64_t f(const char *name, const void *const *in, const int64_t *in_bytes, int64_t n_in, \
                        void *out, int64_t cap) { return logged(#f, name, in, in_bytes, n_in, out, cap); }
FN(agentc_tokenize) FN(agentc_detokenize) FN(agentc_kv_transfer)
int64_t agentc_tool_lookup(const char *name, const void *const *in, const int64_t *in_bytes, int64_t n_in,
                           void *out, int64_t cap) {
  int64_t r = logged("agentc_tool_lookup", name, in, in_bytes, n_in, out, cap);
  return fail_tool ? -5 : r;
}
FN(agentc_tool_invoke)
void agentc_trace(const char *op, int64_t begin) { printf("trace %s %lld\n", op, (long long)begin); }
int64_t agentc_send(int64_t ch, const char *peer, const void *p, int64_t n) { return -1; }
int64_t agentc_recv(int64_t ch, const char *peer, void *p, int64_t n) { return -1; }

int main(int argc, char **argv) {
  fail_tool = argc > 1;
  const char q[] = "what is the weather";
  float e[16];
  for (int i = 0; i < 16; i++) e[i] = (float)__builtin_sin((double)(3 * 16 + i + 1));   /* ~ row 3 */
  const void *in[2] = {q, e};
  int64_t in_bytes[2] = {sizeof q - 1, sizeof e};
  static char docs[4096], text[4096];
  void *out[2] = {docs, text};
  int64_t out_bytes[2] = {sizeof docs, sizeof text};
  int64_t rc = agentc_host_run(in, in_bytes, out, out_bytes);
  printf("rc %lld\nout %lld %lld\n", (long long)rc, (long long)out_bytes[0], (long long)out_bytes[1]);
  float *s = (float *)docs;
  printf("scores %.7g %.7g %.7g %.7g\n", s[0], s[1], s[2], s[3]);
  int32_t *ids = (int32_t *)(docs + 4 * sizeof(float));   /* retrieve's second output */
  printf("ids %d %d %d %d\n", ids[0], ids[1], ids[2], ids[3]);
  printf("allocs %ld frees %ld\n", allocs, frees);
  return 0;
}
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("host")
    (tmp / "cpu.toml").write_text(CLUSTER)
    (tmp / "a.agent").write_text(AGENT)
    proc = subprocess.run([sys.executable, "-m", "agentc", "compile", "a.agent", "--cluster", "cpu.toml",
                           "-o", "out", "-q"], cwd=tmp, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    pool = tmp / "out" / "host"
    (pool / "runtime.c").write_text(RUNTIME)
    objects = sorted(p.name for p in pool.glob("*.o"))
    # the kernels' memref copies that are not contiguous call MLIR's runner utils
    from agentc.targets.toolchain import runtime_lib

    utils = runtime_lib("mlir_c_runner_utils")
    subprocess.run(["cc", "-O1", "runtime.c", *objects, utils, f"-Wl,-rpath,{os.path.dirname(utils)}", "-lm",
                    "-o", "prog"], cwd=pool, check=True)
    return pool


def run(program, *args) -> list[str]:
    done = subprocess.run([str(program / "prog"), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def alloc_counts(lines: list[str]) -> tuple[int, int]:
    """(agentc_alloc calls, agentc_free calls) from the runtime's last line."""
    words = next(line for line in lines if line.startswith("allocs")).split()
    return int(words[1]), int(words[3])


def test_host_program_runs_the_schedule_in_order_with_every_input(program):
    lines = run(program)
    calls = [line.split() for line in lines if line.startswith("call ")]
    q = len("what is the weather")
    # lookup and invoke get the one input they have; tokenize gets the question and the
    # search results (lookup's 1 KiB-capped echo of q, passed on by invoke).
    assert calls[0] == ["call", "agentc_tool_lookup", "web", "1", str(q), "cap", "1000"]
    assert calls[1] == ["call", "agentc_tool_invoke", "web", "1", str(q), "cap", "1000"]
    assert calls[2][:6] == ["call", "agentc_tokenize", "tiny", "2", str(q), str(q)]
    assert [c[1] for c in calls[3:]] == ["agentc_kv_transfer", "agentc_detokenize"]
    assert "rc 0" in lines
    allocs, frees = alloc_counts(lines)
    assert allocs == frees and allocs > 0      # every buffer the program allocated was freed


def test_host_program_brackets_each_op_with_the_trace_hook(program):
    lines = [line.split() for line in run(program) if line.startswith("trace ")]
    ops = [t[1] for t in lines[::2]]
    assert [t[2] for t in lines] == ["1", "0"] * len(ops)
    assert [t[1] for t in lines[1::2]] == ops
    assert ops == ["d", "hits.lookup", "hits.compute", "ans.tokenize", "ans.prefill", "ans.kv_transfer", "ans.decode",
                   "ans.sample", "ans.detokenize"]


def test_host_program_binds_each_layers_weights(program):
    binds = [line.split() for line in run(program) if line.startswith("bind ")]
    prefill = [b for b in binds if b[2] == "ans.prefill"]
    # prefill: the token embeddings (0) once, the RoPE tables (1, 2) and 9 weight
    # arguments (3..11) for each of the 2 layers
    assert sorted({(int(b[3]), int(b[4])) for b in prefill}) == \
        [(0, 0)] + [(a, l) for a in range(1, 12) for l in (0, 1)]
    # decode, 4 new tokens: each drawn by the sample kernel (norm 1, head 2 once; the
    # token's params 3 on repetition t); the first 3 run through both layers (weights
    # 3..11 per layer) at positions n, n+1, n+2 (RoPE rows 1, 2 bound by position)
    sample = [(int(b[3]), int(b[4])) for b in binds if b[2] == "ans.decode.sample"]
    assert sample == [(1, 0), (2, 0), (3, 0), (3, 1), (3, 2), (3, 3)]
    decode = [(int(b[3]), int(b[4])) for b in binds if b[2] == "ans.decode"]
    assert decode[0] == (0, 0)
    positions = [i for a, i in decode if a == 1]
    assert positions == [positions[0] + t for t in range(3)] and [i for a, i in decode if a == 2] == positions
    assert sorted(i for a, i in decode if a >= 3) == sorted([0, 1] * 3 * 9)
    index = [b for b in binds if b[2] == "d"]
    assert index == [["bind", "docs", "d", "1", "0", str(64 * 16 * 4)]]


def test_host_program_retrieve_matches_numpy(program):
    lines = run(program)
    out = next(line for line in lines if line.startswith("out ")).split()
    assert int(out[1]) == 4 * 4 + 4 * 4    # four f32 scores, then their four i32 ids
    got = np.array([float(v) for v in next(line for line in lines if line.startswith("scores")).split()[1:]])
    index = np.sin(np.arange(1, 64 * 16 + 1, dtype=np.float64)).astype(np.float32).reshape(64, 16)
    query = np.sin(np.arange(3 * 16 + 1, 3 * 16 + 17, dtype=np.float64)).astype(np.float32)
    cos = index @ query / (np.linalg.norm(index, axis=1) * np.linalg.norm(query))
    np.testing.assert_allclose(got, np.sort(cos)[::-1][:4], rtol=1e-4)
    assert got[0] == pytest.approx(1.0, abs=1e-5)    # the query is row 3
    ids = [int(v) for v in next(line for line in lines if line.startswith("ids")).split()[1:]]
    assert ids == list(np.argsort(-cos, kind="stable")[:4])


def test_host_program_stops_at_a_negative_code_and_frees_everything(program):
    lines = run(program, "fail")
    calls = [line.split()[1] for line in lines if line.startswith("call ")]
    assert calls == ["agentc_tool_lookup"]
    assert "rc -5" in lines
    allocs, frees = alloc_counts(lines)
    assert allocs == frees


def test_host_header_declares_the_entry_point(program):
    header = (program / "host.h").read_text()
    assert "int64_t agentc_host_run(const void *const *in, const int64_t *in_bytes, void *const *out," in header
    assert "(0: text, 1: embedding)" in header and "(0: documents, 1: text)" in header
    for obj in sorted(p.name for p in program.glob("*.o") if p.name != "host.o"):
        assert obj in header


CONTROL = """agent a(q: text) -> json {
  r = tool web(q, latency=10ms, payload=1KB)
  loop max 5 while 0.5 {
    r = tool web(r, latency=10ms, payload=1KB)
  }
  if 0.25 {
    r = tool calc(r, latency=10ms, payload=1KB)
  }
  return r
}
"""

CONTROL_RUNTIME = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include "host.h"

static long allocs, frees;
static int trips, arm, fail;   /* argv: the trips the loop runs, the branch's arm, fail */

void *agentc_alloc(int64_t n, int64_t where) { allocs++; return calloc(1, (size_t)n); }
void agentc_free(void *p) { frees++; free(p); }
void *agentc_bind(const char *model, const char *op, int64_t arg, int64_t index, int64_t bytes) { abort(); }
void agentc_trace(const char *op, int64_t begin) {}
int64_t agentc_send(int64_t ch, const char *peer, const void *p, int64_t n) { return -1; }
int64_t agentc_recv(int64_t ch, const char *peer, void *p, int64_t n) { return -1; }
int64_t agentc_decide(const char *region, int64_t kind, double prob, int64_t trip) {
  printf("decide %lld %.4f %lld\n", (long long)kind, prob, (long long)trip);
  if (fail && kind == 1) return -7;
  return kind == 0 ? trip < trips : arm;
}
/* lookup: its input; invoke: its input, then "+" and the tool's name */
static int64_t echo(const char *suffix, const void *const *in, const int64_t *in_bytes, void *out, int64_t cap) {
  int64_t n = in_bytes[0];
  if (n + (int64_t)strlen(suffix) > cap) return -3;
  memcpy(out, in[0], (size_t)n);
  memcpy((char *)out + n, suffix, strlen(suffix));
  return n + (int64_t)strlen(suffix);
}
int64_t agentc_tool_lookup(const char *name, const void *const *in, const int64_t *in_bytes, int64_t n_in,
                           void *out, int64_t cap) { return echo("", in, in_bytes, out, cap); }
int64_t agentc_tool_invoke(const char *name, const void *const *in, const int64_t *in_bytes, int64_t n_in,
                           void *out, int64_t cap) {
  char suffix[64];
  snprintf(suffix, sizeof suffix, "+%s", name);
  return echo(suffix, in, in_bytes, out, cap);
}

int main(int argc, char **argv) {
  trips = atoi(argv[1]);
  arm = atoi(argv[2]);
  fail = argc > 3;
  const char q[] = "q";
  const void *in[1] = {q};
  int64_t in_bytes[1] = {1};
  static char text[4096];
  void *out[1] = {text};
  int64_t out_bytes[1] = {sizeof text};
  int64_t rc = agentc_host_run(in, in_bytes, out, out_bytes);
  printf("rc %lld\nout %.*s\n", (long long)rc, (int)out_bytes[0], text);
  printf("allocs %ld frees %ld\n", allocs, frees);
  return 0;
}
"""


def test_host_program_runs_loops_and_branches_as_agentc_decide_says(tmp_path):
    """A one-pool program with a loop and a branch, linked with a C runtime whose
    `agentc_decide` runs a given number of trips and a given arm: each trip's tool gets
    the previous trip's answer (the carried value), the branch's result is its arm's,
    every trip asks first (at most `max` times), a negative decision stops the program,
    and every buffer is freed."""
    (tmp_path / "cpu.toml").write_text(CLUSTER)
    (tmp_path / "a.agent").write_text(CONTROL)
    proc = subprocess.run([sys.executable, "-m", "agentc", "compile", "a.agent", "--cluster", "cpu.toml",
                           "--targets", "cpu", "-o", "out", "-q"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    pool = tmp_path / "out" / "host"
    (pool / "runtime.c").write_text(CONTROL_RUNTIME)
    subprocess.run(["cc", "-O1", "runtime.c", *sorted(p.name for p in pool.glob("*.o")), "-o", "prog"],
                   cwd=pool, check=True)
    for trips, arm in ((0, 0), (2, 1), (3, 0), (5, 0), (7, 1)):
        lines = run(pool, str(trips), str(arm))
        ran = min(trips, 5)
        assert f"out q+web{'+web' * ran}{'+calc' if arm == 0 else ''}" in lines, lines
        asked = [line.split()[1:] for line in lines if line.startswith("decide ")]
        loop = [["0", "0.5000", str(t)] for t in range(min(trips + 1, 5))]
        assert asked == loop + [["1", "0.2500", "0"]]
        assert "rc 0" in lines
        allocs, frees = alloc_counts(lines)
        assert allocs == frees and allocs > 0
    lines = run(pool, "1", "0", "fail")
    assert "rc -7" in lines
    allocs, frees = alloc_counts(lines)
    assert allocs == frees
