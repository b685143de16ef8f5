"""The compiler driver: one ordered list of stages, run until `--emit` says stop.

Nothing else decides order. Each stage transforms the `Compilation` (its MLIR module,
plan, artifacts). A `.mlir` input carries the stage it was printed at (module attribute
`agentc.stage`) and resumes after it. Outputs are collected in memory and written by
`agentc.outputs.write_outputs` atomically: into a temporary directory beside the
destination, renamed into place only when everything succeeded.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Callable

from mlir import ir

from agentc import dialects
from agentc.diagnostics import AgentcError, ParseError, SourceLoc, UsageError
from agentc.outputs import MARKER, MARKER_TEXT, check_replaceable, write_file_atomic


@dataclass
class Options:
    """Everything a compile depends on besides the input file (CLI flags map 1:1)."""

    emit: str | None = None
    cluster: str | None = None
    catalogs: tuple[str, ...] = ()
    targets: tuple[str, ...] = ("cpu", "nvvm", "rocdl")
    objective: str = "cost"
    sla_mode: str = "hard"
    lam: float = 1e3
    pricing: str | None = None
    worst_case: bool = False
    cpu_triple: str | None = None
    cpu: str | None = None  # LLVM CPU name for CPU objects; "native": this machine
    cpu_threads: int = 1
    dump_phases_to: str | None = None
    print_ir_after_all: bool = False


@dataclass
class Stage:
    name: str
    help: str
    run: Callable[["Compilation"], None]
    ir: bool = True          # the stage leaves an MLIR module worth printing


@dataclass
class Compilation:
    """State that flows through the stages."""

    input_path: str
    options: Options
    ctx: ir.Context = field(default_factory=dialects.make_context)
    module: ir.Module | None = None
    inputs: list[str] = field(default_factory=list)     # every file read (depfiles)
    artifacts: dict[str, bytes] = field(default_factory=dict)
    data: dict[str, object] = field(default_factory=dict)
    stage: str | None = None

    @property
    def stem(self) -> str:
        return os.path.splitext(os.path.basename(self.input_path))[0]

    def asm(self) -> str:
        return self.module.operation.get_asm(enable_debug_info=True)


# ----------------------------------------------------------------------------- stages

def _stage_agent(c: Compilation) -> None:
    from agentc.frontend.lower import lower_program
    from agentc.frontend.parser import parse_file

    try:
        program, files = parse_file(c.input_path)
        c.inputs.extend(files)
        if not program.agents:
            raise ParseError(f"'{c.input_path}' defines no agent to compile", SourceLoc(c.input_path, 1, 1),
                             ("declare one, e.g. `agent main(q: text) -> text { return llm(m, q, in=512, out=128) }`",))
        c.module = lower_program(program, c.ctx, catalog(c))
    except RecursionError:
        raise ParseError(f"'{c.input_path}' nests blocks or lists too deeply to compile",
                         SourceLoc(c.input_path, 1, 1), ("flatten the deepest nesting",)) from None
    _passes(c, ["verify-agent"])


def catalog(c: Compilation):
    """The device/model catalog for this compile (built-in plus --catalog files)."""
    if "catalog" not in c.data:
        from agentc.catalog import load_catalog

        cat = load_catalog(c.options.catalogs)
        c.data["catalog"] = cat
        c.inputs.extend(c.options.catalogs)
    return c.data["catalog"]


def _passes(c: Compilation, names: list[str]) -> None:
    from agentc.passes import run_pipeline

    with c.ctx, ir.Location.unknown():
        run_pipeline(c.module, names, c, print_ir_after_all=c.options.print_ir_after_all)


def pass_stage(*names: str) -> Callable[[Compilation], None]:
    return lambda c: _passes(c, list(names))


STAGES: list[Stage] = [
    Stage("agent", "parse and check the .agent source; the agent dialect", _stage_agent),
    Stage("decomposed", "inline nested agents; granular ops (tokenize, prefill, kv.transfer, decode, "
          "tool.lookup/compute, ...)", pass_stage("inline-agents", "decompose-llm", "decompose-tools",
                                                  "decompose-ops")),
    Stage("costed", "time, binding resource, memory fit and $ of every op on every pool",
          pass_stage("annotate-cost")),
    Stage("placed", "MILP placement: pool, tensor parallelism and replicas per op under the SLA",
          pass_stage("place")),
]


def _stage_manifest(c: Compilation) -> None:
    from agentc.targets import manifest

    if "plan" not in c.data:
        raise UsageError("the manifest needs the placement made in this compile; resume from a .mlir "
                         "printed at or before 'costed', or compile the .agent file")
    c.artifacts["manifest.json"] = manifest.dumps(manifest.build(c))


MANIFEST_STAGE = Stage("manifest", "manifest.json: placement, transfers, totals, baselines, artifacts",
                       _stage_manifest, ir=False)


def stage_is_ir(name: str) -> bool:
    """Whether --emit NAME yields an MLIR module (else: files, e.g. ptx, objects)."""
    return next(s.ir for s in STAGES if s.name == name)


def stage_names() -> list[str]:
    return [s.name for s in STAGES]


def register_stage(stage: Stage, after: str | None = None) -> None:
    """Used by later pipeline parts to add their stages in order."""
    if after is None:
        STAGES.append(stage)
    else:
        STAGES.insert(stage_names().index(after) + 1, stage)


# ----------------------------------------------------------------------------- .mlir input

def load_mlir(c: Compilation) -> str:
    """Parse a .mlir input; returns the stage it was printed at."""
    try:
        with open(c.input_path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ParseError(f"cannot read '{c.input_path}': {e.strerror}") from None
    c.inputs.append(c.input_path)
    c.module = parse_mlir(text, c.input_path, c.ctx)
    from agentc.passes._ir import module_stage

    stage = module_stage(c.module) or "agent"
    if stage not in stage_names():
        raise UsageError(f"'{c.input_path}' was printed at unknown stage '{stage}'")
    return stage


def parse_mlir(text: str, path: str, ctx: ir.Context) -> ir.Module:
    """Parse MLIR text, turning MLIR's diagnostics into a located ParseError."""
    with ctx, ir.Location.unknown():
        try:
            return ir.Module.parse(text)
        except ir.MLIRError as e:
            diags = list(getattr(e, "error_diagnostics", []) or [])
            if diags:
                d = diags[0]
                from agentc.passes._ir import source_loc

                loc = source_loc(d.location)
                if loc is not None and loc.file == "-":
                    loc = SourceLoc(path, loc.line, loc.col)
                raise ParseError(d.message, loc) from None
            raise ParseError(str(e).splitlines()[0], SourceLoc(path, 1, 1)) from None


# ----------------------------------------------------------------------------- running

def compile_file(path: str, options: Options, progress=None) -> Compilation:
    """Run the stages on `path` up to `options.emit` (or all of them)."""
    ensure_pipeline()
    names = stage_names()
    if options.emit is not None and options.emit not in names:
        raise UsageError(f"unknown stage '{options.emit}'; stages: {', '.join(names)}")
    c = Compilation(path, options)
    start = 0
    if path.endswith(".mlir"):
        resumed = load_mlir(c)
        with c.ctx:
            try:
                _passes(c, ["verify-agent"])
            except AgentcError as e:
                raise relocate(e, path) from None
        start = names.index(resumed) + 1
        c.stage = resumed
        if options.emit == resumed:
            return c
        if options.emit is not None and names.index(options.emit) < names.index(resumed):
            raise UsageError(f"'{path}' is already at stage '{resumed}'; cannot emit the earlier "
                             f"stage '{options.emit}'")
    elif not os.path.exists(path):
        raise UsageError(f"no such file: '{path}'")
    try:
        _run_stages(c, start, options, progress)
    except AgentcError as e:
        raise relocate(e, path) from None
    return c


def relocate(err: AgentcError, path: str) -> AgentcError:
    """Ops parsed from .mlir text without explicit locations sit at `"-":line:col`;
    point such errors at the file they came from."""
    if err.loc is not None and err.loc.file == "-":
        err.loc = SourceLoc(path, err.loc.line, err.loc.col)
    return err


def _run_stages(c: Compilation, start: int, options: Options, progress) -> None:
    with c.ctx:
        for number, stage in enumerate(STAGES[start:], start=start):
            if progress is not None:
                progress(stage.name)
            stage.run(c)
            if stage.ir:
                c.stage = stage.name
            if stage.ir and c.module is not None:
                from agentc.passes._ir import set_module_stage

                set_module_stage(c.module, stage.name)
                if options.dump_phases_to:
                    c.data.setdefault("dumps", {})[f"{number:02d}-{stage.name}.mlir"] = c.asm().encode()
            if stage.name == options.emit:
                break


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


__all__ = ["AgentcError", "Compilation", "Options", "STAGES", "Stage", "compile_file"]


# ----------------------------------------------------------------------------- outputs

def ensure_pipeline() -> None:
    """Import the modules whose stages extend STAGES (kept lazy: MLIR/HiGHS load time);
    the manifest stage always comes last."""
    import agentc.codegen  # noqa: F401  (registers partitioned, kernels, llvm, ptx, amdgcn, objects)
    for hook in _PIPELINE_HOOKS:
        hook()
    _PIPELINE_HOOKS.clear()
    if MANIFEST_STAGE in STAGES:
        STAGES.remove(MANIFEST_STAGE)
    STAGES.append(MANIFEST_STAGE)


_PIPELINE_HOOKS: list[Callable[[], None]] = []



def collect_outputs(c: Compilation, output: str | None):
    """What a compile writes: (None, None) to print IR on stdout, else
    (files, (destination, files))."""
    if c.options.emit is not None and output is None:
        return None, None
    if c.options.emit is not None and stage_is_ir(c.options.emit):
        name = f"{c.stem}.{c.stage}.mlir"
        dest = output if output.endswith(".mlir") else os.path.join(output, name)
        payload = {os.path.basename(dest): c.asm().encode()}
        return payload, (dest, payload)
    # A whole output directory: a full compile, or --emit at a file stage (llvm, ptx,
    # ...), whose result is the artifacts built so far.
    dest = output or "out"
    payload = dict(c.artifacts)
    if c.options.emit is None and c.module is not None:
        payload[f"{c.stem}.{c.stage}.mlir"] = c.asm().encode()
    check_replaceable(dest, "-o")
    payload[MARKER] = MARKER_TEXT
    return payload, (dest, payload)


def collect_dumps(c: Compilation, dest: str | None) -> dict[str, bytes] | None:
    """The --dump-phases-to directory's files (it too is replaced whole), or None."""
    if not dest:
        return None
    check_replaceable(dest, "--dump-phases-to")
    return {**c.data.get("dumps", {}), MARKER: MARKER_TEXT}


def _make_escape(path: str) -> str:
    return path.replace("\\", "\\\\").replace(" ", "\\ ").replace("#", "\\#").replace("$", "$$")


def depfile_path(c: Compilation, depfile: str | None, target: str | None) -> str:
    """Where -MD writes the depfile: -MF, else next to the output as OUTPUT.d."""
    return depfile or ((target or f"{c.stem}.out").rstrip("/") + ".d")


def write_depfile(c: Compilation, depfile: str | None, target: str | None) -> None:
    """Make-style depfile: the output depends on the source, its imports, the cluster
    and catalog files."""
    depfile = depfile_path(c, depfile, target)
    target = target or f"{c.stem}.out"
    deps = list(dict.fromkeys(c.inputs + list(c.data.get("extra_inputs", []))))
    lines = [f"{_make_escape(target)}: " + " \\\n  ".join(_make_escape(d) for d in deps)]
    lines += [f"{_make_escape(d)}:" for d in deps]
    write_file_atomic(depfile, ("\n".join(lines) + "\n").encode())


def summary(c: Compilation) -> dict:
    """A machine-readable account of the compile (the `--json` output)."""
    from agentc.passes._ir import walk

    ops: dict[str, int] = {}
    if c.module is not None:
        for op in walk(c.module.operation):
            ops[op.name] = ops.get(op.name, 0) + 1
    out = {"input": c.input_path, "stage": c.stage, "ops": dict(sorted(ops.items())),
           "artifacts": sorted(c.artifacts)}
    out.update(c.data.get("summary", {}))
    return out


def print_summary(c: Compilation, dest: str) -> None:
    from agentc import report

    report.print_compile_summary(c, dest)
