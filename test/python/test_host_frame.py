"""The host program's shape at scale (lower-host): its entry point calls step functions
over a frame of value slots, frees each buffer after the last op that reads it, and
hands a fan-in's inputs to the runtime as arrays. Linked with a small C runtime that
tracks every live buffer, a long chain keeps a fixed number of buffers alive, a
long-lived value survives until its last reader, a fan-in gets every input in order,
and an error mid-chain still frees everything. The LLVM IR of a longer chain has no
larger function than a shorter one's (one function over the whole schedule made LLVM's
time grow faster than the graph)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
from test_host_program import CLUSTER, run   # one CPU pool; the linked program's output lines

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")

CHAIN = 30      # tools in the chain; t0's result is read again by the final fan-in


def program(n: int) -> str:
    """q -> t0 -> t1 -> ... -> t{n-1}, then one tool `tj` over (x{n-1}, x0, x{n-1})."""
    body = ["  x0 = tool t0(q, latency=5ms, payload=1KB)"]
    body += [f"  x{i} = tool t{i}(x{i - 1}, latency=5ms, payload=1KB)" for i in range(1, n)]
    body += [f"  y = tool tj(x{n - 1}, x0, x{n - 1}, latency=5ms, payload=1KB)", "  return y"]
    return "\n".join(["agent main(q: text) -> json {", *body, "}", ""])


# Tool calls write "<L|I><tool>(<inputs joined by ,>)", cut to the buffer's capacity.
# Every buffer agentc_alloc hands out is tracked: freeing one that is not live aborts.
RUNTIME = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include "host.h"

#define MAXLIVE 4096
static void *live[MAXLIVE];
static long nlive, maxlive, allocs, frees;
static const char *fail_tool;   /* its lookup returns -7 */

void *agentc_alloc(int64_t n, int64_t where) {
  void *p = calloc(1, (size_t)n);
  live[nlive++] = p; allocs++;
  if (nlive > maxlive) maxlive = nlive;
  return p;
}
void agentc_free(void *p) {
  for (long i = 0; i < nlive; i++)
    if (live[i] == p) { live[i] = live[--nlive]; frees++; free(p); return; }
  fprintf(stderr, "free of a pointer that is not live\n");
  abort();
}
void *agentc_bind(const char *m, const char *op, int64_t arg, int64_t index, int64_t bytes) { abort(); }
int64_t agentc_send(int64_t ch, const char *peer, const void *p, int64_t n) { return -1; }
int64_t agentc_recv(int64_t ch, const char *peer, void *p, int64_t n) { return -1; }
void agentc_trace(const char *op, int64_t begin) {}

static int64_t tool(char kind, const char *name, const void *const *in, const int64_t *in_bytes,
                    int64_t n_in, void *out, int64_t cap) {
  static char buf[1 << 16];
  int w = snprintf(buf, sizeof buf, "%c%s(", kind, name);
  for (int64_t i = 0; i < n_in; i++) {
    if (i) buf[w++] = ',';
    memcpy(buf + w, in[i], (size_t)in_bytes[i]);
    w += (int)in_bytes[i];
  }
  buf[w++] = ')';
  printf("call %c %s %lld live %ld\n", kind, name, (long long)n_in, nlive);
  int64_t k = w < cap ? w : cap;
  memcpy(out, buf, (size_t)k);
  return k;
}
int64_t agentc_tool_lookup(const char *name, const void *const *in, const int64_t *in_bytes, int64_t n_in,
                           void *out, int64_t cap) {
  if (fail_tool && strcmp(name, fail_tool) == 0) return -7;
  return tool('L', name, in, in_bytes, n_in, out, cap);
}
int64_t agentc_tool_invoke(const char *name, const void *const *in, const int64_t *in_bytes, int64_t n_in,
                           void *out, int64_t cap) {
  return tool('I', name, in, in_bytes, n_in, out, cap);
}

int main(int argc, char **argv) {
  fail_tool = argc > 1 ? argv[1] : NULL;
  const void *in[1] = {"q"};
  int64_t in_bytes[1] = {1};
  static char y[1 << 16];
  void *out[1] = {y};
  int64_t out_bytes[1] = {sizeof y};
  int64_t rc = agentc_host_run(in, in_bytes, out, out_bytes);
  printf("rc %lld\n", (long long)rc);
  if (rc == 0) printf("out %.*s\n", (int)out_bytes[0], y);
  printf("allocs %ld frees %ld maxlive %ld\n", allocs, frees, maxlive);
  return 0;
}
"""


def _compile(tmp, n: int, emit: str | None = None):
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "cpu.toml").write_text(CLUSTER)
    (tmp / "p.agent").write_text(program(n))
    argv = [sys.executable, "-m", "agentc", "compile", "p.agent", "--cluster", "cpu.toml", "-o", "out", "-q"]
    proc = subprocess.run(argv + (["--emit", emit] if emit else []), cwd=tmp, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return tmp / "out" / "host"


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    pool = _compile(tmp_path_factory.mktemp("frame"), CHAIN)
    (pool / "runtime.c").write_text(RUNTIME)
    subprocess.run(["cc", "-O1", "runtime.c", "host.o", "-o", "prog"], cwd=pool, check=True)
    return pool


def counts(lines: list[str]) -> dict[str, int]:
    words = next(line for line in lines if line.startswith("allocs")).split()
    return dict(zip(words[::2], map(int, words[1::2])))


def expected_output(n: int) -> str:
    """The graph output, by the runtime's rule: lookup then invoke on each tool."""
    def tool(name, *inputs):
        return f"I{name}(L{name}({','.join(inputs)}))"
    x = [tool("t0", "q")]
    for i in range(1, n):
        x.append(tool(f"t{i}", x[-1]))
    out = tool("tj", x[-1], x[0], x[-1])
    assert len(out) < 1000      # no result cut to its 1 KB buffer
    return out


def test_the_chain_runs_in_order_and_the_fan_in_gets_every_input(chain):
    lines = run(chain)
    calls = [line.split()[1:4] for line in lines if line.startswith("call ")]
    order = [name for i in range(CHAIN) for name in (f"t{i}",) * 2] + ["tj", "tj"]
    assert [c[1] for c in calls] == order
    assert [c[0] for c in calls] == ["L", "I"] * (CHAIN + 1)
    assert calls[-2] == ["L", "tj", "3"]          # the fan-in: x29, x0 and x29 again
    assert "rc 0" in lines
    assert f"out {expected_output(CHAIN)}" in lines


def test_buffers_are_freed_after_their_last_reader(chain):
    lines = run(chain)
    c = counts(lines)
    assert c["allocs"] == c["frees"]
    # At most: the frame, x0 (read again by the fan-in), the op's input and its result.
    # With every buffer live to the end it was one per op: 2 * 31.
    assert c["maxlive"] == 4
    lives = [int(line.split()[-1]) for line in lines if line.startswith("call ")]
    assert max(lives) == 4 and lives[0] == 2     # t0's lookup: the frame and its result


def test_an_error_mid_chain_stops_there_and_frees_everything(chain):
    lines = run(chain, "t7")
    calls = [line.split()[2] for line in lines if line.startswith("call ")]
    assert calls == [f"t{i}" for i in range(7) for _ in (0, 1)]
    assert "rc -7" in lines
    c = counts(lines)
    assert c["allocs"] == c["frees"]


def _largest_function(ll: str) -> tuple[int, str]:
    """(lines, name) of the longest function definition in LLVM IR text."""
    sizes = [(body.count("\n"), name) for name, body in
             re.findall(r"^define [^@]*@([\w.$]+)\(.*?\{\n(.*?)^\}", ll, re.S | re.M)]
    return max(sizes)


def test_no_function_grows_with_the_chain(tmp_path):
    short = _compile(tmp_path / "short", 20, emit="llvm")
    long = _compile(tmp_path / "long", 80, emit="llvm")
    small, _ = _largest_function((short / "host.ll").read_text())
    big, name = _largest_function((long / "host.ll").read_text())
    assert big <= small * 1.2, f"@{name}: {big} lines for 4x the chain ({small})"
