"""Every kernel kind JIT-compiled through the CPU stages and compared with numpy; the
object file is ELF for x86-64 and AArch64, exports the kernels, and is reproducible."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest

from agentc.codegen import kernels
from agentc.codegen.jit import jit
from agentc.diagnostics import ToolchainError, UsageError
from agentc.targets import cpu, toolchain
from agentc.targets.cpu import schedule
from agentc.targets.cpu.headers import KernelSignature
from references.kernels_ref import REFERENCES

# kind -> (builder args, reference keyword args); shapes small enough to JIT quickly,
# chosen so matmuls take both the vectorised path and the plain-loop path.
CASES = {
    "matmul": ((16, 64, 8), {}),
    "prefill_layer": ((8, 32, 4, 2, 48), {"heads": 4, "kv_heads": 2}),
    "decode_step": ((6, 32, 4, 2, 48), {"heads": 4, "kv_heads": 2}),
    "sample": ((16, 50, 4), {"k": 4}),
    "encoder_layer": ((8, 32, 4, 64), {"heads": 4}),
    "mean_pool_l2": ((7, 24), {}),
    "retrieve": ((40, 16, 3), {"k": 3}),
    "logmel": ((6, 33, 10), {}),
}


def _inputs(sig: KernelSignature, rng) -> list[np.ndarray]:
    arrays = []
    for _name, _elem, shape in sig.args[: sig.n_inputs]:
        scale = 1.0 / np.sqrt(shape[0]) if len(shape) == 2 else 1.0
        arrays.append((rng.standard_normal(shape) * scale).astype(np.float32))
    return arrays


def test_registry_covers_every_kind():
    assert set(kernels.KERNELS) == set(REFERENCES) == set(CASES)


def _check_against_numpy(kind, args, ref_kwargs, seed=7):
    """JIT the kernel, run it on seeded inputs and compare with the numpy reference."""
    kernel = jit(kernels.KERNELS[kind](*args))
    rng = np.random.default_rng(seed)
    inputs = _inputs(kernel.signature, rng)
    if kind == "logmel":  # power spectra and filterbanks are non-negative
        inputs = [np.abs(x) for x in inputs]
    if kind == "decode_step":  # the cache rows written so far: all but the last two
        inputs[-1] = (np.arange(args[0]) < args[0] - 2).astype(np.float32)
    if kind == "sample":  # (1/temperature, u)
        inputs[-1] = np.array([1.25, 0.6], np.float32)
    got = kernel(*inputs)
    want = REFERENCES[kind](*[x.astype(np.float64) for x in inputs], **ref_kwargs)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == np.shape(w)
        if g.dtype == np.int32:
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_kernel_check_against_numpy(kind):
    _check_against_numpy(kind, *CASES[kind])


@pytest.mark.parametrize("shape", [(5, 7, 3), (7, 33, 9), (13, 40, 300), (1, 48, 16), (64, 200, 64),
                                   (127, 512, 600)])
def test_matmul_edge_tiles_are_correct(shape):
    """Shapes the 6x16 register tile does not divide: edge tiles are peeled (or B's panels
    zero-padded), not dropped."""
    m, n, k = shape
    kernel = jit(kernels.matmul(m, n, k))
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
    out = kernel(a, b)[0]
    assert out.shape == (m, n) and out.dtype == np.float32
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


def test_matmul_schedule_clips_peels_packs_and_blocks():
    options = cpu.CpuTarget().parse_options()
    assert options.tile == (6, 16, 1) and options.threads == 1
    assert schedule.matmul_schedule((5, 7, 3), options) == schedule.MatmulSchedule((5, 7, 1))
    assert schedule.matmul_schedule((12, 48, 5), options) == schedule.MatmulSchedule((6, 16, 1))
    # few rows: B is read in place, in K blocks of about 128
    assert schedule.matmul_schedule((16, 512, 512), options) == schedule.MatmulSchedule(
        (6, 16, 1), k_block=128, peel="m")
    big = schedule.matmul_schedule((512, 512, 512), options)
    assert big == schedule.MatmulSchedule((6, 16, 1), k_block=512, pack_b=True, peel="m")
    assert big.key == "6x16x1_k512_packb_peelm"
    assert schedule.matmul_schedule((128, 512, 1376), options).k_block == 172  # divides K


def test_matmul_schedule_splits_large_matmuls_over_threads():
    two = cpu.CpuTarget().parse_options(threads=2)
    assert schedule.matmul_schedule((512, 512, 512), two) == schedule.MatmulSchedule(
        (6, 16, 1), k_block=512, split="n", threads=2, pack_b=True, peel="m")  # by B panels
    assert schedule.matmul_schedule((130, 400, 400), two).split == "m"  # 25 panels
    assert schedule.matmul_schedule((16, 1024, 1024), two).split == "m"
    assert schedule.matmul_schedule((15, 1024, 2048), two).split == "n"  # M odd
    assert schedule.matmul_schedule((128, 128, 512), two).split == ""  # too small to share


@pytest.fixture
def thread_small_ops(monkeypatch):
    """Thread matmuls from 2^20 multiply-adds, so threaded paths test at small sizes."""
    monkeypatch.setattr(schedule, "MIN_THREADED_MACS", 1 << 20)


@pytest.mark.parametrize("shape", [(512, 512, 512), (130, 200, 300), (15, 512, 512), (128, 96, 1376)])
def test_threaded_matmul_check_against_numpy(shape, thread_small_ops):
    m, n, k = shape
    kernel = jit(kernels.matmul(m, n, k), threads=2)
    assert "mlirAsyncRuntimeExecute" in kernel.llvm_mlir  # really dispatched to threads
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
    for _ in range(3):  # the runtime's workers are reused across calls
        np.testing.assert_allclose(kernel(a, b)[0], a.astype(np.float64) @ b, rtol=1e-4, atol=2e-3)


def test_threaded_kernels_outlive_each_other():
    """Dropping one threaded engine must not take the async runtime down with it."""
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((256, 256), np.float32), rng.standard_normal((256, 256), np.float32)
    first = jit(kernels.matmul(256, 256, 256), threads=2)
    before = first(a, b)[0].copy()
    del first
    second = jit(kernels.matmul(256, 256, 256), threads=2)
    after = second(a, b)[0]
    assert after.shape == (256, 256) and np.array_equal(after, before)  # same code, same bits
    np.testing.assert_allclose(after, a.astype(np.float64) @ b, rtol=1e-4, atol=2e-3)


@pytest.mark.parametrize("args,threads", [((64, 128, 4, 2, 192), 1), ((128, 256, 4, 2, 384), 2)])
def test_prefill_layer_with_packed_attention_check_against_numpy(args, threads, thread_small_ops):
    """Large enough that attention's Q @ K^T (B transposed) and P @ V take packed panels,
    and (threads=2) that the projections and heads are shared out."""
    ref_kwargs = {"heads": 4, "kv_heads": 2}
    kernel = jit(kernels.prefill_layer(*args), threads=threads)
    assert ("mlirAsyncRuntimeExecute" in kernel.llvm_mlir) == (threads > 1)
    inputs = _inputs(kernel.signature, np.random.default_rng(8))
    want = REFERENCES["prefill_layer"](*[x.astype(np.float64) for x in inputs], **ref_kwargs)
    for got, expected in zip(kernel(*inputs), want):   # y, then the rotated K and V
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-5)


def test_causal_mask_ignores_future_tokens():
    seq, d = 6, 16
    kernel = jit(kernels.prefill_layer(seq, d, 2, 1, 24))
    inputs = _inputs(kernel.signature, np.random.default_rng(1))
    first = kernel(*inputs)[0]
    inputs[0] = inputs[0].copy()
    inputs[0][-1] += 5.0  # change only the last token
    second = kernel(*inputs)[0]
    np.testing.assert_allclose(first[:-1], second[:-1], rtol=1e-6)
    assert not np.allclose(first[-1], second[-1])


def test_register_tiles_need_no_stack_buffers():
    """2-D transfers are unrolled: a stack buffer per tile would grow the stack on every
    loop iteration (no stacksave in loops) until large shapes crash."""
    state = cpu.compile_kernel(kernels.matmul(64, 512, 64), tile=(6, 16, 2), stop_after="llvm")
    assert "alloca" not in state.artifacts["ll"].decode()
    kernel = jit(kernels.matmul(256, 512, 128), tile=(6, 16, 2))
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((256, 128), np.float32), rng.standard_normal((128, 512), np.float32)
    np.testing.assert_allclose(kernel(a, b)[0], a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)


def test_attention_contractions_become_matmuls(thread_small_ops):
    state = cpu.compile_kernel(kernels.prefill_layer(64, 128, 4, 2, 192), stop_after="vectorize")
    # Q @ K^T and P @ V: one matmul per (kv head, query head in the group)
    assert sorted(state.meta["batched_contractions"]) == [((0, 1, 1, 0, 0), False),
                                                          ((1, 1, 0, 0, 0), False)]
    keys = [s.key for s in state.meta["matmul_schedules"]]
    assert "6x16x1_k32_packb_bt_peelm" in keys  # Q @ K^T reads K as packed panels
    assert "agentc.batch" not in state.ir and "linalg.generic" in state.ir  # norms etc. stay
    threaded = cpu.compile_kernel(kernels.prefill_layer(128, 256, 4, 2, 384), threads=2,
                                  stop_after="vectorize")
    # the heads are shared out between the threads; each head's matmuls get one thread
    assert all(forall for _, forall in threaded.meta["batched_contractions"])
    assert "6x16x1_k64_packb_bt_peelm" in [s.key for s in threaded.meta["matmul_schedules"]]


def test_vectorize_stage_emits_fma_loops():
    state = cpu.compile_kernel(kernels.matmul(64, 64, 64), stop_after="vectorize")
    assert "vector.fma" in state.ir and "linalg.matmul" not in state.ir
    assert [s.key for s in state.meta["matmul_schedules"]] == ["6x16x1_k64_packb_peelm"]
    assert "vector<6x16xf32>" in state.ir and "vector<4x16xf32>" in state.ir  # 10 tiles + edge
    assert "tensor<4x64x16xf32>" in state.ir  # B as 4 contiguous panels of 16 columns


@pytest.mark.parametrize("triple,machine", [("x86_64-unknown-linux-gnu", "X86-64"),
                                            ("aarch64-unknown-linux-gnu", "AArch64")])
def test_object_is_elf_for_triple_with_kernel_symbols(tmp_path, triple, machine):
    state = cpu.compile_kernel(kernels.sample(16, 32, 2), name="sample", triple=triple)
    obj = state.artifacts["o"]
    assert obj[:4] == b"\x7fELF"
    path = tmp_path / "k.o"
    path.write_bytes(obj)
    header = subprocess.run([toolchain.tool_path("llvm-readelf"), "-h", str(path)],
                            capture_output=True, text=True, check=True).stdout
    assert machine in header and "REL (Relocatable file)" in header
    symbols = subprocess.run([toolchain.tool_path("llvm-readelf"), "-s", str(path)],
                             capture_output=True, text=True, check=True).stdout
    assert "_mlir_ciface_sample" in symbols
    # the packed, peeled, threaded matmul schedule lowers for either architecture too
    threaded = cpu.compile_kernel(kernels.matmul(256, 256, 256), name="mm", triple=triple, threads=2)
    assert threaded.artifacts["o"][:4] == b"\x7fELF" and b"mlirAsyncRuntimeExecute" in threaded.artifacts["o"]


def test_header_declares_ciface_with_out_params():
    state = cpu.compile_kernel(kernels.retrieve(40, 16, 3), name="retrieve")
    header = state.artifacts["h"].decode()
    assert "void _mlir_ciface_retrieve(" in header
    assert "agentc_memref_f32_2d *index /* 40x16 f32 */" in header
    assert "agentc_memref_i32_1d *out1 /* 3 i32 */" in header
    assert "int64_t sizes[2];" in header and "#ifndef AGENTC_RETRIEVE_H" in header


@pytest.mark.parametrize("args,threads", [((8, 32, 4, 2, 48), 1), ((128, 256, 4, 2, 384), 2)])
def test_compile_is_deterministic(args, threads, thread_small_ops):
    text = kernels.prefill_layer(*args)
    first = cpu.compile_kernel(text, name="layer", triple="x86_64-unknown-linux-gnu", threads=threads)
    second = cpu.compile_kernel(text, name="layer", triple="x86_64-unknown-linux-gnu", threads=threads)
    for ext in ("ll", "o", "h"):
        assert first.artifacts[ext] == second.artifacts[ext]


def test_pipeline_failure_carries_mlir_opt_command():
    with pytest.raises(ToolchainError) as info:
        # no @__transform_main in the module: the interpreter reports an error
        toolchain.run_pipeline("func.func @f() { return }", "builtin.module(transform-interpreter)",
                          stage="demo")
    assert "mlir-opt" in info.value.command and "--pass-pipeline=" in info.value.command
    saved = info.value.command.rsplit(" ", 1)[-1].strip("'")
    assert os.path.isfile(saved)


def test_unknown_option_is_a_usage_error():
    with pytest.raises(UsageError):
        cpu.CpuTarget().parse_options(chip="sm_90")
    with pytest.raises(UsageError):
        cpu.CpuTarget().parse_options(threads=0)
    assert cpu.CpuTarget().parse_options(tile=[4, 16, 1]).tile == (4, 16, 1)


def test_native_cpu_is_only_for_the_host_architecture():
    foreign = ("aarch64-unknown-linux-gnu" if toolchain.host_triple().startswith("x86_64")
               else "x86_64-unknown-linux-gnu")
    with pytest.raises(UsageError, match="native"):
        cpu.CpuTarget().parse_options(triple=foreign, cpu="native")
    state = cpu.compile_kernel(kernels.matmul(16, 32, 8), cpu="native")
    assert state.artifacts["o"][:4] == b"\x7fELF"


_LINK_MAIN = r"""
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "mm.h"
#define N 256
int main(void) {
  float *a = malloc(N * N * 4), *b = malloc(N * N * 4), *c = malloc(N * N * 4);
  for (int i = 0; i < N * N; i++) { a[i] = (float)(i % 7) - 3; b[i] = (float)(i % 5) - 2; }
  agentc_memref_f32_2d da = {a, a, 0, {N, N}, {N, 1}}, db = {b, b, 0, {N, N}, {N, 1}},
                       dc = {c, c, 0, {N, N}, {N, 1}};
  for (int rep = 0; rep < 3; rep++) _mlir_ciface_matmul(&da, &db, &dc);
  double worst = 0;
  for (int i = 0; i < N; i += 17)
    for (int j = 0; j < N; j += 13) {
      double s = 0;
      for (int k = 0; k < N; k++) s += (double)a[i * N + k] * b[k * N + j];
      worst = fmax(worst, fabs(s - c[i * N + j]));
    }
  printf("max err %g\n", worst);
  return worst > 1e-3;
}
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")
def test_threaded_object_links_with_the_async_runtime_and_runs(tmp_path):
    """What the header tells a C user: link libmlir_async_runtime.so and call the kernel."""
    state = cpu.compile_kernel(kernels.matmul(256, 256, 256), name="mm", threads=2)
    (tmp_path / "mm.o").write_bytes(state.artifacts["o"])
    (tmp_path / "mm.h").write_bytes(state.artifacts["h"])
    (tmp_path / "main.c").write_text(_LINK_MAIN)
    lib_dir = os.path.dirname(toolchain.runtime_lib("mlir_async_runtime"))
    subprocess.run(["cc", "-O1", "main.c", "mm.o", f"-L{lib_dir}", "-lmlir_async_runtime",
                    f"-Wl,-rpath,{lib_dir}", "-lm", "-o", "main"], cwd=tmp_path, check=True)
    run = subprocess.run([str(tmp_path / "main")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_threaded_object_and_header_name_the_async_runtime():
    state = cpu.compile_kernel(kernels.matmul(256, 256, 256), name="mm", threads=2,
                               triple="x86_64-unknown-linux-gnu")
    assert b"mlirAsyncRuntimeExecute" in state.artifacts["o"]
    assert "libmlir_async_runtime.so" in state.artifacts["h"].decode()
    single = cpu.compile_kernel(kernels.matmul(256, 256, 256), name="mm",
                                triple="x86_64-unknown-linux-gnu")
    assert b"mlirAsyncRuntime" not in single.artifacts["o"]
    assert "async" not in single.artifacts["h"].decode()


@pytest.mark.parametrize("kind, args", [("decode_step", (6, 32, 4, 4, 48)), ("prefill_layer", (8, 32, 4, 4, 48)),
                                        ("decode_step", (6, 8, 4, 4, 8))])   # 2-wide heads (RoPE's least)
def test_multi_head_attention_compiles_and_matches(kind, args):
    """kv_heads == heads (plain multi-head attention: whisper, piper, most encoders'
    decoders): the decode step's per-head products are matrix-vector products, which
    once failed the CPU schedule (`transform.structured.specialize failed to apply`)."""
    _check_against_numpy(kind, args, {"heads": 4, "kv_heads": 4}, seed=11)


def test_exp_is_a_vector_polynomial_within_two_ulp():
    """The CPU target's exp (targets/cpu/expand_exp.py) against numpy's exp in f64: a
    [16, 256] softmax-style map is vectorised (no libm expf call is left) and every
    normal result is within 2 ulp (1.2e-7 relative); below the normal floats it is 0,
    past the largest float +inf."""
    from agentc.codegen.emit import Func

    f = Func("f32")
    out = f.elementwise(["%x"], [16, 256], lambda s, v: s.exp(v))
    kernel = jit(f.module("exp", [("%x", [16, 256])], [(out, f.t([16, 256]))]))
    assert "expf" not in kernel.llvm_mlir and "vector<" in kernel.llvm_mlir
    x = np.linspace(-87.0, 88.3, 16 * 256 - 6)
    x = np.concatenate([x, [0.0, -np.inf, -90.0, -87.4, 89.0, np.inf]]).astype(np.float32)
    got = kernel(x.reshape(16, 256))[0].ravel()
    want = np.exp(x.astype(np.float64))
    normal = slice(0, x.size - 5)
    assert np.max(np.abs(got[normal] / want[normal] - 1)) < 1.2e-7
    assert got[-5:].tolist() == [0.0, 0.0, 0.0, np.inf, np.inf]


def test_register_tile_follows_the_vector_width():
    """AVX-512 gets the 6x64 tile (24 zmm accumulators); AVX2 (or AVX-512 switched off)
    keeps the target's 6x16 default."""
    assert schedule.native_tile("+avx2,+fma,+avx512f,+avx512vl") == schedule.AVX512_TILE == (6, 64, 1)
    assert schedule.native_tile("+avx2,+fma,-avx512f") is None
    assert schedule.native_tile("+neon") is None


@pytest.mark.parametrize("threads", [1, 2])
def test_encoder_layer_with_weights_packed_once_check_against_numpy(threads, thread_small_ops):
    """`panel=`: the layer takes its four weights as column panels, packed by the caller
    once; the projections then copy nothing per call and still compute x @ w."""
    seq, d, heads, ffn, panel = 68, 128, 4, 256, 16   # 68 rows: a peeled edge tile
    text = kernels.encoder_layer(seq, d, heads, ffn, panel=panel)
    state = cpu.compile_kernel(text, threads=threads, stop_after="vectorize")
    keys = [s.key for s in state.meta["matmul_schedules"]]
    assert sum("_pre" in key for key in keys) == 6   # q, k, v, o, w1, w2
    assert all("_n2_" in key for key in keys if "_pre" in key) == (threads > 1)   # panels shared out
    assert "linalg.transpose" not in state.ir                       # no copy of B into panels
    kernel = jit(text, threads=threads)
    plain = _inputs(jit(kernels.encoder_layer(seq, d, heads, ffn)).signature, np.random.default_rng(9))

    def panels(w):   # written here apart from pack_panels: panel p is columns [p*16, p*16+16)
        return np.stack([w[:, p * panel:(p + 1) * panel] for p in range(w.shape[1] // panel)])
    got = kernel(*[panels(x) if x.ndim == 2 and i else x for i, x in enumerate(plain)])[0]
    want = REFERENCES["encoder_layer"](*[x.astype(np.float64) for x in plain], heads=heads)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)
    assert np.array_equal(kernels.pack_panels(plain[1], panel), panels(plain[1]))


def test_decode_step_reads_its_cache_in_place():
    """The new K/V row joins the softmax beside the cache; no [context + 1] copy of the
    cache is built (test_kernel_check_against_numpy checks the values)."""
    text = kernels.decode_step(6, 32, 4, 2, 48)
    assert "tensor<7x" not in text and "tensor.insert_slice" not in text
