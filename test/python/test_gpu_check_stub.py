"""benchmarks/gpu_check.py without a GPU: against a stand-in driver (a stub libcuda.so.1
built here), the whole chain runs: the nvvm launcher under llvmlite's MCJIT, MLIR's own
CUDA runtime wrappers, the runtime ABI on the driver, the CPU reference. The stub runs
no kernel, so the outputs differ and the check must say so (exit 1); what is checked is
that every launch reaches the driver with a valid shape and every allocation is freed.
A driver that sees no device gives the one-line message and exit 0.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

STUB = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
static long launches, live;
static int token;

static void report(void) { fprintf(stderr, "stub: %ld launches, %ld live\n", launches, live); }
CUresult cuInit(unsigned f) { static int once; (void)f; if (!once++) atexit(report); return 0; }
CUresult cuDriverGetVersion(int *v) { *v = 12040; return 0; }
CUresult cuDeviceGetCount(int *n) { *n = DEVICES; return 0; }
CUresult cuDeviceGet(int *d, int i) { *d = i; return 0; }
CUresult cuDeviceGetName(char *s, int n, int d) { (void)d; snprintf(s, (size_t)n, "agentc stub"); return 0; }
CUresult cuDeviceGetAttribute(int *v, int a, int d) { (void)d; *v = a == 75 ? 9 : 0; return 0; }
CUresult cuDevicePrimaryCtxRetain(void **c, int d) { (void)d; *c = &token; return 0; }
CUresult cuCtxSetCurrent(void *c) { (void)c; return 0; }
CUresult cuCtxPushCurrent_v2(void *c) { (void)c; return 0; }
CUresult cuCtxPopCurrent_v2(void **c) { if (c) *c = &token; return 0; }
CUresult cuCtxSynchronize(void) { return 0; }
CUresult cuGetErrorString(CUresult e, const char **s) { (void)e; *s = "stub"; return 0; }
CUresult cuGetErrorName(CUresult e, const char **s) { (void)e; *s = "STUB"; return 0; }
CUresult cuMemAlloc_v2(uint64_t *p, size_t n) {
  *p = (uint64_t)aligned_alloc(256, (n + 255) / 256 * 256); live++; return 0; }
CUresult cuMemAllocManaged(uint64_t *p, size_t n, unsigned f) { (void)f; return cuMemAlloc_v2(p, n); }
CUresult cuMemsetD8_v2(uint64_t p, unsigned char v, size_t n) { memset((void *)p, v, n); return 0; }
CUresult cuMemFree_v2(uint64_t p) { free((void *)p); live--; return 0; }
CUresult cuModuleLoadData(void **m, const void *image) { (void)image; *m = &token; return 0; }
CUresult cuModuleLoadDataEx(void **m, const void *i, unsigned n, void *o, void **v) {
  (void)n; (void)o; (void)v; return cuModuleLoadData(m, i); }
CUresult cuModuleUnload(void *m) { (void)m; return 0; }
CUresult cuModuleGetFunction(void **f, void *m, const char *n) { (void)m; (void)n; *f = &token; return 0; }
CUresult cuStreamCreate(void **s, unsigned f) { (void)f; *s = &token; return 0; }
CUresult cuStreamSynchronize(void *s) { (void)s; return 0; }
CUresult cuStreamDestroy_v2(void *s) { (void)s; return 0; }
CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                        unsigned bz, unsigned smem, void *s, void **params, void **extra) {
  (void)f; (void)s; (void)extra; (void)smem;
  if (!gx || !gy || !gz || !bx || !by || !bz || bx * by * bz > 1024 || !params) abort();
  launches++;
  return 0;
}
"""


def stub_driver(tmp_path, devices: int) -> str:
    (tmp_path / "stub.c").write_text(STUB)
    subprocess.run(["cc", "-shared", "-fPIC", f"-DDEVICES={devices}", "stub.c", "-o", "libcuda.so.1"],
                   cwd=tmp_path, check=True)
    return str(tmp_path)


def gpu_check(lib_dir: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, LD_LIBRARY_PATH=lib_dir)
    return subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "gpu_check.py"), *args],
                          capture_output=True, text=True, timeout=600, env=env)


def test_gpu_check_runs_the_launcher_through_the_driver_and_frees_everything(tmp_path):
    proc = gpu_check(stub_driver(tmp_path, 1), "--kernel", "decode_step", "--context", "32",
                     "--decoder", "64,4,2,128", "--repeat", "1")
    out = proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "device: agentc stub (sm_90)" in out
    per_call = int(re.search(r"(\d+) launches per call", out).group(1))
    assert re.search(r"temporaries per call: \d+ allocs, .*; all freed", out), out
    # first call, warm-up, one timed repeat: every launch reached the driver, nothing left
    assert f"stub: {3 * per_call} launches, 0 live" in proc.stderr
    # the stub computes nothing, and the check notices
    assert proc.returncode == 1 and "max rel error 1.00e+00" in out


def test_gpu_check_without_a_device_says_so_and_exits_0(tmp_path):
    proc = gpu_check(stub_driver(tmp_path, 0))
    assert proc.returncode == 0
    assert proc.stdout.startswith("gpu_check: no NVIDIA GPU here, nothing run:")
    assert "no device" in proc.stdout
