"""partition, lower-kernels and the per-target codegen stages, end to end.

A hand-placed module (ops spread round-robin over an xeon, an h100, an mi300x and a
gaudi3 pool) checks the stages independently of the planner: one module per pool,
send/recv at every cross-pool edge, ELF objects with the kernel symbols, PTX with
`.entry`, an AMDGPU object, `--targets cpu`, and the Gaudi3 "no code" note.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import replace

import pytest
from mlir import ir

from agentc import pipeline
from agentc.passes._ir import get, top_ops, walk
from agentc.targets.toolchain import tool_path

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOICE = os.path.join(REPO, "examples", "voice_agent.agent")
POOLS = [("xeon", "xeon-8480", "llvm-cpu", "sapphirerapids"), ("h100", "H100", "nvvm", "sm_90"),
         ("mi300x", "MI300x", "rocdl", "gfx942"), ("gaudi3", "Gaudi3", "none", "gaudi3")]
CPU_ONLY = {"llm.tokenize", "llm.detokenize", "tool.lookup", "tool.compute"}


def placed_text(tmp_path) -> str:
    """The voice example decomposed, then placed by hand (round-robin over POOLS)."""
    c = pipeline.compile_file(VOICE, pipeline.Options(emit="decomposed"))
    with c.ctx:
        i = 0
        i64 = ir.IntegerType.get_signless(64)
        for op in walk(c.module.operation):
            if "label" not in op.attributes or op.name.startswith("agent."):
                continue
            pool = POOLS[0] if op.name in CPU_ONLY else POOLS[i % len(POOLS)]
            i += 1
            for key, value in zip(("pool", "device", "target", "chip"), pool):
                op.attributes[key] = ir.StringAttr.get(value)
            op.attributes["tp"] = ir.IntegerAttr.get(i64, 1)
            op.attributes["replicas"] = ir.IntegerAttr.get(i64, 1)
        c.module.operation.attributes["agentc.stage"] = ir.StringAttr.get("placed")
        text = c.asm()
    path = tmp_path / "voice.placed.mlir"
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def placed(tmp_path_factory):
    return placed_text(tmp_path_factory.mktemp("placed"))


def compile_from(path, **kw):
    return pipeline.compile_file(path, replace(pipeline.Options(), **kw))


def pool_modules(module):
    return {get(op, "sym_name"): op for op in top_ops(module) if op.name == "builtin.module"}


def test_partition_one_module_per_pool_with_transfers(placed):
    c = compile_from(placed, emit="partitioned")
    pools = pool_modules(c.module)
    assert sorted(pools) == sorted(p[0] for p in POOLS)
    for name, device, target, chip in POOLS:
        op = pools[name]
        assert (get(op, "agentc.device"), get(op, "agentc.target"), get(op, "agentc.chip")) == (device, target, chip)
        funcs = [get(f, "sym_name") for f in walk(op) if f.name == "func.func"]
        assert funcs[-1] == "schedule"
    sends = [op for op in walk(c.module.operation) if op.name == "agent.send"]
    recvs = [op for op in walk(c.module.operation) if op.name == "agent.recv"]
    assert sends and len(sends) == len(recvs)
    assert sorted(get(s, "channel") for s in sends) == sorted(get(r, "channel") for r in recvs)
    for s in sends:
        assert get(s, "bytes") > 0 and "->" in get(s, "link")
    # every cross-pool edge of the graph has a transfer
    graph = next(op for op in top_ops(c.module) if op.name == "agent.graph")
    crossing = 0
    for op in walk(graph):
        if "pool" not in op.attributes:
            continue
        for operand in op.operands:
            owner = operand.owner
            if isinstance(owner, ir.Block):
                continue
            owner = owner.operation
            if "pool" in owner.attributes and get(owner, "pool") != get(op, "pool"):
                crossing += 1
    assert len(sends) >= crossing > 0
    # printable and parsable (resumable)
    with ir.Context() as ctx:
        from agentc import dialects
        dialects.load_into(ctx)
        ir.Module.parse(c.asm())


def test_kernels_stage_calls_kernels_and_abi(placed):
    c = compile_from(placed, emit="kernels")
    text = c.asm()
    # an llm call's prompt and KV cache rows: a power of two >= in + out (512 + 128), capped at 1024
    assert "func.call @prefill_layer_s1024_d4096_h32_kv8_f14336" in text
    assert "func.func private @agentc_tool_invoke" in text
    assert "scf.for" in text


def _machine(elf: bytes) -> int:
    assert elf[:4] == b"\x7fELF"
    return int.from_bytes(elf[18:20], "little")


EM_X86_64, EM_AMDGPU = 62, 224


@pytest.fixture(scope="module")
def full(placed):
    return compile_from(placed, emit="objects")


def test_all_targets_artifacts(full):
    arts, meta = full.artifacts, full.artifact_meta
    # every pool with a code generator has a host program: an x86-64 object exporting
    # agentc_<pool>_run, with its header
    for pool in ("xeon", "h100", "mi300x"):
        host = arts[f"{pool}/{pool}.o"]
        assert _machine(host) == EM_X86_64 and f"agentc_{pool}_run".encode() in host
        assert f"int64_t agentc_{pool}_run(" in arts[f"{pool}/{pool}.h"].decode()
        assert meta[f"{pool}/{pool}.o"]["note"] == f"host program: agentc_{pool}_run"
    assert "gaudi3/gaudi3.o" not in arts
    xeon_objs = [p for p in arts if p.startswith("xeon/") and p.endswith(".o") and p != "xeon/xeon.o"]
    assert xeon_objs
    for path in xeon_objs:
        kernel = os.path.basename(path)[:-2]
        assert _machine(arts[path]) == EM_X86_64
        assert f"_mlir_ciface_{kernel}".encode() in arts[path]
        assert f"{path[:-2]}.h" in arts and meta[path]["kind"] == "object"
    ptx = [p for p in arts if p.startswith("h100/") and p.endswith(".ptx")]
    assert ptx and all(b".entry" in arts[p] for p in ptx)
    assert all(b".target sm_90" in arts[p] for p in ptx)
    amd = [p for p in arts if p.startswith("mi300x/") and p.endswith(".amdgcn.o")]
    assert amd and all(_machine(arts[p]) == EM_AMDGPU for p in amd)
    assert meta["gaudi3/gaudi3.mlir"]["target"] == "none"
    assert "no code emitted" in meta["gaudi3/gaudi3.mlir"]["note"]
    assert not [p for p in arts if p.startswith("gaudi3/") and not p.endswith(".mlir")]
    for path in arts:
        if "/" in path:
            assert path in meta


def test_targets_cpu_only(placed):
    c = compile_from(placed, emit="objects", targets=("cpu",))
    built = {c.artifact_meta[p]["target"] for p in c.artifacts
             if p in c.artifact_meta and not p.endswith(".mlir")}
    assert built == {"cpu"}


def test_deterministic(placed, full):
    again = compile_from(placed, emit="objects")
    assert again.artifacts.keys() == full.artifacts.keys()
    for path, data in full.artifacts.items():
        assert again.artifacts[path] == data, path
    assert not any(b"/tmp/" in d for p, d in full.artifacts.items() if not p.endswith(".mlir"))


def test_emit_stops_early(placed):
    c = compile_from(placed, emit="ptx")
    assert any(p.endswith(".ptx") for p in c.artifacts)
    assert not any(p.endswith(".o") for p in c.artifacts)


def test_cpu_option_selects_the_instruction_set(placed, tmp_path):
    """`--cpu native` builds for this machine (AVX2 here: ymm registers); the default is
    the triple's baseline (SSE2 on x86-64), which runs on any machine of that triple."""
    if platform.machine() != "x86_64":
        pytest.skip("checks x86-64 vector registers")
    with open("/proc/cpuinfo") as f:
        if " avx2" not in f.read():
            pytest.skip("host has no AVX2")

    def ymm_uses(c):
        count = 0
        for path, data in c.artifacts.items():
            if path.endswith(".o") and c.artifact_meta[path]["target"] == "cpu":
                obj = tmp_path / os.path.basename(path)
                obj.write_bytes(data)
                text = subprocess.run([tool_path("llvm-objdump"), "-d", str(obj)], capture_output=True,
                                      text=True, check=True).stdout
                count += text.count("%ymm")
        return count

    assert ymm_uses(compile_from(placed, emit="objects", targets=("cpu",))) == 0
    assert ymm_uses(compile_from(placed, emit="objects", targets=("cpu",), cpu="native")) > 0


def test_native_cpu_for_another_architecture_is_a_usage_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "agentc", "compile", VOICE, "-o", str(tmp_path / "out"),
                        "--targets", "cpu", "--cpu-triple", "aarch64-unknown-linux-gnu", "--cpu", "native"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "cpu=native describes this" in r.stderr and "aarch64" in r.stderr
    assert not (tmp_path / "out").exists()


def test_voice_example_on_the_default_cluster_emits_every_backend(tmp_path):
    """The quick-start command: the planner's own placement of the voice example on the
    built-in cluster yields a CPU object and, for each accelerator target the plan uses,
    PTX (cubin with ptxas), AMDGCN objects or a note for the Gaudi3 module, each listed in
    the manifest with the sha256 of the file written (every backend on a pinned placement:
    test_all_targets_artifacts above)."""
    import hashlib
    import json
    import shutil

    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "agentc", "compile", VOICE, "-o", str(out), "-q"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {a["path"]: a for a in manifest["artifacts"]}
    for path, entry in listed.items():
        data = (out / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]

    def kind(k, target):
        return [p for p, a in listed.items() if a["kind"] == k and a["target"] == target]

    used = {o["pool"] for o in manifest["ops"]}
    targets = {p["target"] for p in manifest["cluster"]["pools"] if p["name"] in used}
    assert "nvvm" in targets  # the voice plan's LLM phases run on NVIDIA parts
    cpu = kind("object", "cpu")
    assert cpu and all(_machine((out / p).read_bytes()) == EM_X86_64 for p in cpu)
    assert all(os.path.exists(out / (p[:-2] + ".h")) for p in cpu)
    ptx = kind("ptx", "nvvm")
    assert ptx and all(b".visible .entry" in (out / p).read_bytes() for p in ptx)
    if shutil.which("ptxas"):
        assert {p[:-len(".cubin")] for p in kind("cubin", "nvvm")} == {p[:-len(".ptx")] for p in ptx}
    amd = [p for p in listed if p.endswith(".amdgcn.o")]
    assert bool(amd) == ("rocdl" in targets) and all(_machine((out / p).read_bytes()) == EM_AMDGPU for p in amd)
    none = [a for a in listed.values() if a["target"] == "none"]
    assert bool(none) == ("none" in targets) and all("no code emitted" in a["note"] for a in none)
