"""GPU launchers (`{pool}/{kernel}.host.o` of nvvm and rocdl): memory, launch dims, ROCDL.

No GPU is needed. The launchers are checked three ways, none of them through the code
that built them:
- structure: in the `gpu` stage IR, every path from a launcher's entry to a return frees,
  once and after allocating it, every buffer `agentc_alloc` returned on that path;
- running them on the CPU: the host LLVM IR is loaded with llvmlite's MCJIT, the
  `mgpu*` wrappers and the runtime ABI are stubs that record what they are asked
  (launches, allocations, frees), and buffers start filled with a sentinel, so a
  DEVICE buffer the host code wrote shows up;
- the compiler's output: the manifest's launch dims against the `mgpuLaunchKernel`
  calls in the written `host.ll`, the objects against llvm-objdump.
"""

from __future__ import annotations

import ctypes
import functools
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from mlir import ir

from agentc.codegen import kernels
from agentc.targets import toolchain
from agentc.targets.base import CompileState, run_stages
from agentc.targets.nvvm import NvvmTarget
from agentc.targets.rocdl import RocdlTarget

# Kernels whose launchers have temporaries: attention softmax/norm scratch (decode,
# encoder), 0-d reduction seeds and top-k results the host code writes (decode, sample),
# a reduction loop left on the host (mean_pool_l2).
KINDS = {"decode_step": (16, 64, 4, 2, 128), "sample": (256, 4),
         "encoder_layer": (16, 64, 4, 128), "mean_pool_l2": (16, 64)}
TARGETS = {"nvvm": NvvmTarget, "rocdl": RocdlTarget}
DEVICE, SHARED = 1, 2       # AGENTC_ALLOC_DEVICE / _SHARED, as runtime_abi.h spells them


@functools.cache
def compiled(target: str, kind: str, stop_after: str | None = None) -> CompileState:
    t = TARGETS[target]()
    text = kernels.KERNELS[kind](*KINDS[kind])
    return run_stages(t, CompileState(kind, text), t.parse_options(), stop_after=stop_after)


# ------------------------------------------------------------------ structure (gpu stage)

def _callee(op) -> str | None:
    if op.name == "func.call":
        return ir.FlatSymbolRefAttr(op.attributes["callee"]).value
    return None


def _allocated_by(pointer: ir.Value) -> ir.Value:
    """The `agentc_alloc` result a freed pointer is: inttoptr(index_cast(aligned pointer
    of a memref)) where the memref is a descriptor whose aligned field (index 1) is it."""
    op = pointer.owner
    assert op.name == "llvm.inttoptr", op
    op = op.operands[0].owner
    assert op.name == "arith.index_cast", op
    op = op.operands[0].owner
    assert op.name == "memref.extract_aligned_pointer_as_index", op
    op = op.operands[0].owner
    assert op.name == "builtin.unrealized_conversion_cast", op
    desc = op.operands[0].owner
    while desc.name == "llvm.insertvalue":
        if list(ir.DenseI64ArrayAttr(desc.attributes["position"])) == [1]:
            return desc.operands[1]
        desc = desc.operands[0].owner
    raise AssertionError("no aligned pointer in the descriptor")


def _paths(fn) -> list[list]:
    """Every path of blocks from the entry to a block ending in func.return (acyclic CFG)."""
    out = []

    def walk(block, path):
        term = block.operations[len(block.operations) - 1]
        if term.operation.name == "func.return":
            out.append(path + [block])
        for succ in term.operation.successors:
            assert succ not in path, "a loop in a launcher"
            walk(succ, path + [block])

    walk(fn.regions[0].blocks[0], [])
    return out


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_temporary_is_freed_once_on_every_path(kind):
    state = compiled("nvvm", kind, "gpu")
    with ir.Context():
        module = ir.Module.parse(state.ir)
        launchers = [op.operation for op in module.body.operations
                     if op.operation.name == "func.func" and op.operation.regions[0].blocks]
        assert launchers
        total = 0
        for fn in launchers:
            names = set()
            fn.walk(lambda op: names.add(op.name) or ir.WalkResult.ADVANCE)
            assert not names & {"memref.alloc", "memref.alloca", "memref.dealloc"}
            for path in _paths(fn):
                live, freed = [], []
                for block in path:
                    for op in block.operations:
                        op = op.operation
                        if _callee(op) == "agentc_alloc":
                            live.append(op.results[0])
                        elif _callee(op) == "agentc_free":
                            p = _allocated_by(op.operands[0])
                            assert p in live, "freed before it was allocated, or twice"
                            live.remove(p)
                            freed.append(p)
                assert live == [], f"{len(live)} buffers not freed on a path of {kind}"
                total += len(freed)
        assert total > 0


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_host_ir_allocates_only_through_agentc_alloc_with_a_flag(target):
    for kind in ("decode_step", "sample"):
        host = compiled(target, kind).artifacts["host.ll"].decode()
        declared = set(re.findall(r"^declare .*? @(\w+)\(", host, re.MULTILINE))
        assert {"agentc_alloc", "agentc_free"} <= declared
        assert not declared & {"malloc", "free", "aligned_alloc", "calloc", "realloc"}
        flags = re.findall(r"call ptr @agentc_alloc\(i64 (\d+), i64 (\d+)\)", host)
        assert flags and {int(w) for _, w in flags} <= {DEVICE, SHARED}
        assert host.count("call void @agentc_free(") == len(flags)
        # reduction seeds are written by the host code: shared; the scratch is device-only
        assert {int(w) for _, w in flags} == {DEVICE, SHARED}


# ------------------------------------------------------------------ running the launchers

_REGISTERED: list = []


class Stubs:
    """The mgpu* wrappers and the runtime ABI as recording stubs, for one MCJIT engine."""

    SENTINEL = 0xA5

    def __init__(self):
        import llvmlite.binding as llvm

        self.llvm = llvm
        self.allocs: dict[int, tuple[int, int]] = {}
        self.frees: list[int] = []
        self.launches: list[dict] = []
        self._keep: list = []
        c = ctypes
        self._define("agentc_alloc", self.alloc, c.c_void_p, c.c_int64, c.c_int64)
        self._define("agentc_free", self.frees.append, None, c.c_void_p)
        self._define("mgpuModuleLoad", lambda data, n: 0x1000, c.c_void_p, c.c_void_p, c.c_size_t)
        self._define("mgpuModuleUnload", lambda m: None, None, c.c_void_p)
        self._define("mgpuModuleGetFunction", self.function, c.c_void_p, c.c_void_p, c.c_char_p)
        self._define("mgpuStreamCreate", lambda: 0x2000, c.c_void_p)
        self._define("mgpuStreamSynchronize", lambda s: None, None, c.c_void_p)
        self._define("mgpuStreamDestroy", lambda s: None, None, c.c_void_p)
        self._define("mgpuLaunchKernel", self.launch, None, c.c_void_p, *[c.c_int64] * 6, c.c_int32,
                     c.c_void_p, c.c_void_p, c.c_void_p, c.c_size_t)

    def _define(self, name, fn, restype, *argtypes):
        callback = ctypes.CFUNCTYPE(restype, *argtypes)(fn)
        _REGISTERED.append(callback)    # the symbol stays registered in the process: so does its callback
        self.llvm.add_symbol(name, ctypes.cast(callback, ctypes.c_void_p).value)

    def alloc(self, nbytes, where):
        buf = ctypes.create_string_buffer(bytes([self.SENTINEL]) * (nbytes + 64))
        self._keep.append(buf)
        address = (ctypes.addressof(buf) + 63) // 64 * 64
        self.allocs[address] = (nbytes, where)
        return address

    def function(self, module, name):
        buf = ctypes.create_string_buffer(name)
        self._keep.append(buf)
        return ctypes.addressof(buf)

    def launch(self, fn, gx, gy, gz, bx, by, bz, smem, stream, params, extra, n):
        self.launches.append({"kernel": ctypes.string_at(fn).decode(), "grid": [gx, gy, gz],
                              "block": [bx, by, bz]})

    def untouched(self, address: int) -> bool:
        nbytes, _ = self.allocs[address]
        return ctypes.string_at(address, nbytes) == bytes([self.SENTINEL]) * nbytes


def _descriptor(arr: np.ndarray):
    """A memref descriptor (allocated, aligned, offset, sizes, strides) for a C array."""
    rank = arr.ndim
    fields = [("a", ctypes.c_void_p), ("b", ctypes.c_void_p), ("o", ctypes.c_int64)]
    if rank:
        fields += [("s", ctypes.c_int64 * rank), ("t", ctypes.c_int64 * rank)]
    struct = type("D", (ctypes.Structure,), {"_fields_": fields})
    if not rank:
        return struct(arr.ctypes.data, arr.ctypes.data, 0)
    strides = [s // arr.itemsize for s in arr.strides]
    return struct(arr.ctypes.data, arr.ctypes.data, 0, (ctypes.c_int64 * rank)(*arr.shape),
                  (ctypes.c_int64 * rank)(*strides))


def _arguments(kind: str) -> list[np.ndarray]:
    """Zero arrays for the launcher's memref arguments (inputs, then the outputs)."""
    state = compiled("nvvm", kind, "gpu")
    dtypes = {"f32": np.float32, "i32": np.int32, "i64": np.int64}
    with ir.Context():
        module = ir.Module.parse(state.ir)
        fn = next(op.operation for op in module.body.operations
                  if op.operation.name == "func.func" and op.operation.regions[0].blocks)
        types = [ir.MemRefType(t) for t in ir.FunctionType(
            ir.TypeAttr(fn.attributes["function_type"]).value).inputs]
        return [np.zeros(t.shape, dtypes[str(t.element_type)]) for t in types]


def run_launcher(target: str, kind: str) -> Stubs:
    stubs = Stubs()
    llvm = stubs.llvm
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    module = llvm.parse_assembly(compiled(target, kind).artifacts["host.ll"].decode())
    engine = llvm.create_mcjit_compiler(module, llvm.Target.from_default_triple().create_target_machine())
    engine.finalize_object()
    engine.run_static_constructors()
    arrays = _arguments(kind)
    descriptors = [_descriptor(a) for a in arrays]
    entry = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * len(arrays))(
        engine.get_function_address(f"_mlir_ciface_{kind}"))
    entry(*[ctypes.addressof(d) for d in descriptors])
    stubs._keep += [engine, module, arrays, descriptors]
    return stubs


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("kind", ["decode_step", "sample"])
def test_a_launcher_call_frees_all_it_allocates_and_launches_as_listed(target, kind):
    stubs = run_launcher(target, kind)
    assert stubs.allocs and sorted(stubs.frees) == sorted(stubs.allocs)   # each freed once
    assert {w for _, w in stubs.allocs.values()} <= {DEVICE, SHARED}
    # Kernels do not run here, so a DEVICE buffer that changed was written by host code.
    device = [p for p, (_, w) in stubs.allocs.items() if w == DEVICE]
    assert device and all(stubs.untouched(p) for p in device)
    # The host code writes the shared ones (reduction seeds, top-k), or they would be DEVICE.
    assert any(not stubs.untouched(p) for p, (_, w) in stubs.allocs.items() if w == SHARED)
    meta = compiled(target, kind).meta["launches"]
    assert stubs.launches == [{"kernel": m["kernel"], "grid": m["grid"], "block": m["block"]}
                              for m in meta]


# ------------------------------------------------------------------ the compiler's output

CLUSTER = """name = "one-{device}"
pricing = "given"

[[pool]]
name = "gpu"
device = "{device}"
count = 1
nodes = 1
"""

AGENT = """index docs(size=64, dim=16)

agent a(e: embedding) -> documents {
  sla { latency < 5000ms }
  d = retrieve(docs, e, k=4)
  return d
}
"""


def launches_in(host_ll: str) -> list[dict]:
    """The mgpuLaunchKernel calls of a host.ll in order, the kernel named through the
    mgpuModuleGetFunction call that produced the function pointer."""
    names = dict(re.findall(r'^@(\w+) = .*?c"(\w+)\\00"', host_ll, re.MULTILINE))
    functions = {ssa: names[sym] for ssa, sym in re.findall(
        r"(%\d+) = call ptr @mgpuModuleGetFunction\(ptr %\d+, ptr @(\w+)\)", host_ll)}
    out = []
    for fn, dims in re.findall(r"call void @mgpuLaunchKernel\(ptr (%\d+), ((?:i64 \d+, ){6})", host_ll):
        sizes = [int(x) for x in re.findall(r"i64 (\d+)", dims)]
        out.append({"kernel": functions[fn], "grid": sizes[:3], "block": sizes[3:]})
    return out


@pytest.mark.parametrize("device,target", [("H100", "nvvm"), ("MI300x", "rocdl")])
def test_manifest_carries_the_launch_dims_of_the_launcher_ir(tmp_path, device, target):
    import jsonschema

    (tmp_path / "c.toml").write_text(CLUSTER.format(device=device))
    (tmp_path / "a.agent").write_text(AGENT)
    proc = subprocess.run([sys.executable, "-m", "agentc", "compile", "a.agent", "--cluster", "c.toml",
                           "--targets", target, "-o", "out", "-q"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    schema = json.loads((toolchain_repo() / "docs" / "manifest.schema.json").read_text())
    jsonschema.validate(manifest, schema)
    launchers = [a for a in manifest["artifacts"] if a["path"].endswith(".host.o")]
    assert launchers and all(a["target"] == target for a in launchers)
    for entry in launchers:
        host_ll = (out / entry["path"].replace(".host.o", ".host.ll")).read_text()
        assert entry["launches"] and entry["launches"] == launches_in(host_ll)
    assert all("launches" not in a for a in manifest["artifacts"] if not a["path"].endswith(".host.o"))
    # The pool's host program links the launchers (no runtime-defined kernels on AMD either).
    header = (out / "gpu" / "gpu.h").read_text()
    assert all(a["path"].split("/")[1] in header for a in launchers)


def toolchain_repo():
    from pathlib import Path
    return Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ objects

def objdump(data: bytes, *flags: str, tool: str | None = None) -> str:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".o") as f:
        f.write(data)
        f.flush()
        return subprocess.run([tool or toolchain.tool_path("llvm-objdump"), *flags, f.name],
                              capture_output=True, text=True, check=True).stdout


@functools.cache
def amdgpu_objdump() -> str | None:
    """An llvm-objdump built with the AMDGPU target (the wheel's may lack it; a distro's has it)."""
    import shutil

    for tool in (toolchain.tool_path("llvm-objdump"), shutil.which("llvm-objdump")):
        if tool and "amdgcn" in subprocess.run([tool, "--version"], capture_output=True, text=True).stdout:
            return tool
    return None


def test_rocdl_launcher_object_links_the_runtime_and_embeds_the_device_code():
    state = compiled("rocdl", "decode_step")
    host = objdump(state.artifacts["host.o"], "-d", "-r")
    assert "file format elf64-x86-64" in host
    for symbol in ("mgpuModuleLoad", "mgpuModuleGetFunction", "mgpuLaunchKernel", "agentc_alloc",
                   "agentc_free"):
        assert re.search(rf"R_X86_64_\w+\s+{symbol}\b", host), symbol
    assert re.search(r"^[0-9a-f]+ <_mlir_ciface_decode_step>:", host, re.MULTILINE)
    embedded = state.artifacts.get("hsaco") or state.artifacts["amdgcn.o"]
    assert embedded in state.artifacts["host.o"]


@pytest.mark.skipif(amdgpu_objdump() is None, reason="no llvm-objdump with the AMDGPU target")
def test_rocdl_device_code_disassembles():
    # gfx90a: a chip every AMDGPU-enabled llvm-objdump (LLVM >= 13) decodes
    t = RocdlTarget()
    state = run_stages(t, CompileState("d", kernels.KERNELS["decode_step"](*KINDS["decode_step"])),
                       t.parse_options(chip="gfx90a"))
    device = objdump(state.artifacts["amdgcn.o"], "-d", "--triple=amdgcn-amd-amdhsa", "--mcpu=gfx90a",
                     tool=amdgpu_objdump())
    assert "file format elf64-amdgpu" in device
    for kernel in state.meta["kernels"]:
        assert re.search(rf"^[0-9a-f]+ <{kernel}>:", device, re.MULTILINE), kernel
    assert device.count("s_endpgm") >= len(state.meta["kernels"])
    assert "<unknown>" not in device
    assert state.artifacts["amdgcn.o"] in state.artifacts["host.o"] or "hsaco" in state.artifacts


def test_nvvm_launcher_embeds_the_cubin_or_the_ptx():
    state = compiled("nvvm", "decode_step")
    embedded = state.artifacts.get("cubin") or state.artifacts["ptx"]
    assert embedded.rstrip(b"\0") in state.artifacts["host.o"]
    host = objdump(state.artifacts["host.o"], "-d", "-r")
    assert re.search(r"R_X86_64_\w+\s+agentc_alloc\b", host)
