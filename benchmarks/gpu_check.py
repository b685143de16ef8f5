"""Run the nvvm target's kernels on a real NVIDIA GPU and compare them with numpy.

Compiles a matmul and a row reduction (sum of exp) with `NvvmTarget`, loads the cubin
(or the PTX, JIT-compiled by the driver, when ptxas is missing) through the CUDA driver
API via ctypes, launches the kernels in the order the host code would (the target's
meta["launches"] table: grid, block, which buffer each kernel argument is), and prints
the max abs error against numpy and the GPU time per call (CUDA events).

Never a test dependency; nothing in test/ imports it. On a machine with a GPU:

    python benchmarks/gpu_check.py [--chip sm_90] [--size 1024] [--repeat 20]

Needs libcuda.so (the driver) and, for cubins, ptxas on PATH. Exit 1 when an error
exceeds its tolerance.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

try:
    from agentc.targets.base import CompileState, run_stages
    from agentc.targets.nvvm import NvvmTarget
except ImportError:
    from targets.base import CompileState, run_stages
    from targets.nvvm import NvvmTarget


def matmul_module(n: int) -> str:
    t = f"tensor<{n}x{n}xf32>"
    return f"""
func.func @matmul(%a: {t}, %b: {t}) -> {t} attributes {{llvm.emit_c_interface}} {{
  %zero = arith.constant 0.0 : f32
  %init = tensor.empty() : {t}
  %acc = linalg.fill ins(%zero : f32) outs(%init : {t}) -> {t}
  %c = linalg.matmul ins(%a, %b : {t}, {t}) outs(%acc : {t}) -> {t}
  return %c : {t}
}}"""


def rowsum_exp_module(rows: int, cols: int) -> str:
    t, r = f"tensor<{rows}x{cols}xf32>", f"tensor<{rows}xf32>"
    return f"""
func.func @rowsum_exp(%x: {t}) -> {r} attributes {{llvm.emit_c_interface}} {{
  %zero = arith.constant 0.0 : f32
  %init = tensor.empty() : {r}
  %acc = linalg.fill ins(%zero : f32) outs(%init : {r}) -> {r}
  %s = linalg.generic {{indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i)>],
                       iterator_types = ["parallel", "reduction"]}}
      ins(%x : {t}) outs(%acc : {r}) {{
  ^bb0(%v: f32, %o: f32):
    %e = math.exp %v : f32
    %y = arith.addf %e, %o : f32
    linalg.yield %y : f32
  }} -> {r}
  return %s : {r}
}}"""


class Cuda:
    """The few driver API calls needed, through ctypes."""

    def __init__(self):
        self.lib = ctypes.CDLL("libcuda.so.1")
        self.check(self.lib.cuInit(0), "cuInit")
        device = ctypes.c_int()
        self.check(self.lib.cuDeviceGet(ctypes.byref(device), 0), "cuDeviceGet")
        self.ctx = ctypes.c_void_p()
        self.check(self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(self.ctx), device), "ctx")
        self.check(self.lib.cuCtxSetCurrent(self.ctx), "cuCtxSetCurrent")
        name = ctypes.create_string_buffer(128)
        self.lib.cuDeviceGetName(name, 128, device)
        self.name = name.value.decode()

    def check(self, status: int, what: str) -> None:
        if status != 0:
            text = ctypes.c_char_p()
            self.lib.cuGetErrorString(status, ctypes.byref(text))
            raise RuntimeError(f"{what}: CUDA error {status}: {text.value and text.value.decode()}")

    def load(self, image: bytes) -> ctypes.c_void_p:
        module = ctypes.c_void_p()
        buf = ctypes.create_string_buffer(image + (b"\0" if not image.endswith(b"\0") else b""))
        self.check(self.lib.cuModuleLoadData(ctypes.byref(module), buf), "cuModuleLoadData")
        return module

    def function(self, module, name: str) -> ctypes.c_void_p:
        fn = ctypes.c_void_p()
        self.check(self.lib.cuModuleGetFunction(ctypes.byref(fn), module, name.encode()), name)
        return fn

    def alloc(self, nbytes: int) -> ctypes.c_uint64:
        ptr = ctypes.c_uint64()
        self.check(self.lib.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(nbytes)), "alloc")
        return ptr

    def to_device(self, array: np.ndarray) -> ctypes.c_uint64:
        ptr = self.alloc(array.nbytes)
        self.check(self.lib.cuMemcpyHtoD_v2(ptr, array.ctypes.data_as(ctypes.c_void_p),
                                            ctypes.c_size_t(array.nbytes)), "HtoD")
        return ptr

    def to_host(self, ptr, array: np.ndarray) -> np.ndarray:
        self.check(self.lib.cuMemcpyDtoH_v2(array.ctypes.data_as(ctypes.c_void_p), ptr,
                                            ctypes.c_size_t(array.nbytes)), "DtoH")
        return array

    def launch(self, fn, grid, block, pointers) -> None:
        values = [ctypes.c_uint64(p.value) for p in pointers]
        params = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
        self.check(self.lib.cuLaunchKernel(fn, *grid, *block, 0, None, params, None), "launch")

    def timed(self, run, repeat: int) -> float:
        start, stop = ctypes.c_void_p(), ctypes.c_void_p()
        self.lib.cuEventCreate(ctypes.byref(start), 0)
        self.lib.cuEventCreate(ctypes.byref(stop), 0)
        run()  # warm-up
        self.lib.cuEventRecord(start, None)
        for _ in range(repeat):
            run()
        self.lib.cuEventRecord(stop, None)
        self.check(self.lib.cuEventSynchronize(stop), "sync")
        ms = ctypes.c_float()
        self.lib.cuEventElapsedTime(ctypes.byref(ms), start, stop)
        return ms.value / repeat


def check(cuda: Cuda, chip: str, text: str, inputs: list[np.ndarray], outputs: list[np.ndarray],
          expected: list[np.ndarray], repeat: int, flops: float) -> float:
    target = NvvmTarget()
    state = run_stages(target, CompileState("check", text), target.parse_options(chip=chip))
    image = state.artifacts.get("cubin") or state.artifacts["ptx"]
    module = cuda.load(image)
    buffers = [cuda.to_device(a) for a in inputs] + [cuda.to_device(o) for o in outputs]
    steps = [(cuda.function(module, l["kernel"]), l["grid"], l["block"],
              [buffers[i] for i in l["args"]]) for l in state.meta["launches"]]

    def run():
        for fn, grid, block, args in steps:
            cuda.launch(fn, grid, block, args)

    ms = cuda.timed(run, repeat)
    error = 0.0
    for ptr, out, ref in zip(buffers[len(inputs):], outputs, expected):
        got = cuda.to_host(ptr, out)
        error = max(error, float(np.max(np.abs(got - ref) / np.maximum(1.0, np.abs(ref)))))
    kind = "cubin" if "cubin" in state.artifacts else "ptx (driver JIT)"
    print(f"  {len(steps)} launches, {kind}, max rel error {error:.2e}, "
          f"{ms:.3f} ms/call, {flops / ms / 1e6:.1f} GFLOP/s")
    return error


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chip", default="sm_90")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    cuda = Cuda()
    print(f"device: {cuda.name}, chip {args.chip}")
    rng = np.random.default_rng(0)
    n = args.size
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    print(f"matmul {n}x{n}x{n}:")
    err_mm = check(cuda, args.chip, matmul_module(n), [a, b], [np.zeros((n, n), np.float32)],
                   [a.astype(np.float64) @ b], args.repeat, 2.0 * n ** 3)
    x = rng.standard_normal((4 * n, n), dtype=np.float32)
    print(f"row sum of exp {4 * n}x{n}:")
    err_rs = check(cuda, args.chip, rowsum_exp_module(4 * n, n), [x],
                   [np.zeros(4 * n, np.float32)], [np.exp(x.astype(np.float64)).sum(axis=1)],
                   args.repeat, 2.0 * x.size)
    ok = err_mm < 1e-3 and err_rs < 1e-3
    print("ok" if ok else "ERROR: tolerance 1e-3 exceeded")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
