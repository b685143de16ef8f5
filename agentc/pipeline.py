"""THE pipeline: one literal, ordered list of stages, run until `--emit` says stop.

Nothing else decides order. `agentc stages`, `--emit`, resume, `--dump-phases-to` and
`--mlir-print-ir-after-all` all read `STAGES`. The code-generation stages name emit
points (`llvm`, `ptx`, `amdgcn`, `objects`); each target maps them to its own stage
names (`Target.EMIT_POINTS`), so nothing here knows a target's internals.

A `.mlir` input carries the stage it was printed at (module attribute `agentc.stage`)
and resumes after it. The placement lives on the ops as attributes, so a module printed
at `placed` or later rebuilds the same plan (`place.restore`) and yields the same
manifest as a compile from source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from agentc.diagnostics import AgentcError, ParseError, SourceLoc, UsageError
from agentc.state import Compilation, Options

Step = Callable[[Compilation], None]

# A .mlir input nested deeper than this is refused before MLIR's recursive-descent
# parser sees it: deeper nesting overflows the native stack (a SIGSEGV, not an error).
MAX_MLIR_NESTING = 1000


@dataclass(frozen=True)
class Stage:
    """A stage runs its passes (agentc.passes, by name), then its other steps."""

    name: str
    help: str
    passes: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()
    ir: bool = True          # the stage leaves an MLIR module worth printing


# ----------------------------------------------------------------------------- steps

def _frontend(c: Compilation) -> None:
    from agentc.frontend.lower import lower_program
    from agentc.frontend.parser import parse_file

    try:
        program, files = parse_file(c.input_path)
        c.inputs.extend(files)
        if not program.agents:
            raise ParseError(f"'{c.input_path}' defines no agent to compile", SourceLoc(c.input_path, 1, 1),
                             ("declare one, e.g. `agent main(q: text) -> text { return llm(m, q, in=512, out=128) }`",))
        c.module = lower_program(program, c.ctx, c.pass_ctx.catalog)
        from agentc.targets.manifest import record_sources

        record_sources(c)
    except RecursionError:
        raise ParseError(f"'{c.input_path}' nests blocks or lists too deeply to compile",
                         SourceLoc(c.input_path, 1, 1), ("flatten the deepest nesting",)) from None
    run_passes(c, ["verify-agent"])


def run_passes(c: Compilation, names: list[str]) -> None:
    """Run registered passes (agentc.passes) on the module with the pass context."""
    from mlir import ir

    from agentc.passes import run_pipeline

    with c.ctx, ir.Location.unknown():
        run_pipeline(c.module, names, c.pass_ctx, print_ir_after_all=c.options.print_ir_after_all)


def _keep_promise(c: Compilation) -> None:
    from agentc import promise

    promise.keep(c, lambda: run_passes(c, ["place"]))


def _collect(c: Compilation) -> None:
    from agentc import codegen

    codegen.collect(c)


def _new_jobs(c: Compilation) -> None:
    c.jobs = None     # the host stage adds a host-program job per pool


def _emit_point(point: str) -> Step:
    def step(c: Compilation) -> None:
        from agentc import codegen

        codegen.advance(c, point)
    return step


def placement(c: Compilation):
    """The plan of a compile: made by `place`, or, for a module resumed at `placed` or
    later, rebuilt from the decisions recorded on its ops (a located error if none are)."""
    if c.placement is None:
        if c.stage is None or stage_names().index(c.stage) < stage_names().index(PLACED):
            raise UsageError(f"'{c.input_path}' has not been placed (it is at stage '{c.stage}')")
        with c.ctx:
            run_passes(c, ["place{restore=1}"])
    return c.placement


def _manifest(c: Compilation) -> None:
    from agentc.targets import manifest

    placement(c)
    c.artifacts["manifest.json"] = manifest.dumps(manifest.build(c))


STAGES: tuple[Stage, ...] = (
    Stage("agent", "parse and check the .agent source; the agent dialect", steps=(_frontend,)),
    Stage("decomposed", "inline nested agents; granular ops (tokenize, prefill, kv.transfer, decode, "
          "tool.lookup/compute, ...)",
          passes=("inline-agents", "decompose-llm", "decompose-tools", "decompose-ops")),
    Stage("costed", "time, binding resource, memory fit and $ of every op on every pool",
          passes=("annotate-cost",)),
    Stage("placed", "MILP placement: pool, tensor parallelism and replicas per op under the SLA; "
          "under a load, re-solved until the plan's prediction holds it", passes=("place",), steps=(_keep_promise,)),
    Stage("partitioned", "one module per pool: op functions, a schedule, send/recv at cross-pool edges",
          passes=("partition",)),
    Stage("kernels", "ops become linalg kernel calls (shapes from model and plan) or runtime C ABI calls",
          passes=("lower-kernels",), steps=(_collect,)),
    Stage("host", "each pool's schedule and op functions become a host program over buffers "
          "(module @host, C entry agentc_<pool>_run)", passes=("lower-host",), steps=(_new_jobs, _collect)),
    Stage("llvm", "CPU kernels to LLVM IR; GPU kernels outlined and lowered to NVVM/ROCDL",
          steps=(_emit_point("llvm"),), ir=False),
    Stage("ptx", "NVIDIA pools: PTX", steps=(_emit_point("ptx"),), ir=False),
    Stage("amdgcn", "AMD pools: AMDGPU LLVM IR and AMDGCN objects", steps=(_emit_point("amdgcn"),), ir=False),
    Stage("objects", "CPU objects + C headers, cubins + host objects, HSACO (when the tools exist)",
          steps=(_emit_point("objects"),), ir=False),
    Stage("manifest", "manifest.json: placement, transfers, totals, baselines, artifacts", steps=(_manifest,),
          ir=False),
)

EMIT_POINTS: tuple[str, ...] = tuple(s.name for s in STAGES if not s.ir and s.name != "manifest")
PLACED = "placed"


def stage_names() -> list[str]:
    return [s.name for s in STAGES]


def stage_after_passes(current: str | None, names: list[str]) -> str | None:
    """The stage a module reaches when `names` (pass specs, in order) ran on it at stage
    `current`: the stage whose last pass ran last, if that moves it forward (agentc-opt)."""
    from agentc.passes import parse_pass_spec

    order = stage_names()
    reached = current
    if names:
        last = parse_pass_spec(names[-1])[0]
        for stage in STAGES:
            if stage.passes and stage.passes[-1] == last and \
                    (reached is None or order.index(stage.name) > order.index(reached)):
                reached = stage.name
    return reached


def stage_is_ir(name: str) -> bool:
    """Whether --emit NAME yields an MLIR module (else: files, e.g. ptx, objects)."""
    return next(s.ir for s in STAGES if s.name == name)


# ----------------------------------------------------------------------------- .mlir input

def load_mlir(c: Compilation) -> str:
    """Parse a .mlir input into `c.module`; returns the stage it was printed at."""
    from agentc.passes._ir import module_stage

    c.module = parse_mlir(read_mlir(c.input_path), c.input_path, c.ctx)
    c.inputs.append(c.input_path)
    stage = module_stage(c.module) or "agent"
    if stage not in stage_names() or not stage_is_ir(stage):
        raise ParseError(f"'{c.input_path}' was printed at unknown stage '{stage}'; "
                         f"IR stages: {', '.join(s.name for s in STAGES if s.ir)}", SourceLoc(c.input_path, 1, 1))
    return stage


def read_mlir(path: str) -> str:
    """The text of a .mlir input ('-': standard input): a regular file within the input
    size limit (agentc/inputs.py), decoded as UTF-8 with a located error."""
    import sys

    from agentc.inputs import decode_utf8, max_input_bytes, read_source

    if path == "-":
        raw = sys.stdin.buffer.read(max_input_bytes() + 1)
        if len(raw) > max_input_bytes():
            raise UsageError(f"standard input is larger than {max_input_bytes()} bytes")
        return decode_utf8(raw, "<stdin>", ParseError)
    return read_source(path, ".mlir file", error=ParseError)


def _prescan(text: str, path: str) -> None:
    """Refuse, at the first place, what MLIR's parser would not survive: brackets nested
    deeper than MAX_MLIR_NESTING (a native stack overflow), and a generic op of one of
    agentc's dialects that names no op of it (`"agent."(...)` aborts the process)."""
    import re

    from agentc.dialects import op_names

    known = op_names()
    ours = {name.split(".", 1)[0] for name in known}
    depth, line, line_start = 0, 1, 0
    for m in re.finditer(r'"(?:[^"\\\n]|\\.)*"|//[^\n]*|->|\n|[\[{(<]|[\]})>]', text):
        tok = m.group()
        if tok.startswith('"') and re.match(r"\s*\(", text[m.end():m.end() + 64]):
            name = tok[1:-1]
            if name.split(".", 1)[0] in ours and name not in known:
                raise ParseError(f"unregistered operation '{name}' found in dialect ('{name.split('.', 1)[0]}')",
                                 SourceLoc(path, line, m.start() - line_start + 1))
        elif tok == "\n":
            line += 1
            line_start = m.end()
        elif tok in "[{(<":
            depth += 1
            if depth > MAX_MLIR_NESTING:
                raise ParseError(f"'{path}' nests deeper than {MAX_MLIR_NESTING} levels; agentc does not parse it",
                                 SourceLoc(path, line, m.start() - line_start + 1))
        elif tok in "]})>":
            depth = max(0, depth - 1)


def parse_mlir(text: str, path: str, ctx) -> object:
    """Parse MLIR text, turning MLIR's diagnostics into a located ParseError."""
    from mlir import ir

    from agentc.passes._ir import source_loc

    _prescan(text, path)
    with ctx, ir.Location.unknown():
        try:
            return ir.Module.parse(text)
        except ir.MLIRError as e:
            diags = list(getattr(e, "error_diagnostics", []) or [])
            if diags:
                loc = source_loc(diags[0].location)
                if loc is None or loc.file == "-":
                    loc = SourceLoc(path, loc.line, loc.col) if loc else SourceLoc(path, 1, 1)
                raise ParseError(diags[0].message, loc) from None
            raise ParseError(str(e).splitlines()[0], SourceLoc(path, 1, 1)) from None


# ----------------------------------------------------------------------------- running

def compile_file(path: str, options: Options, progress=None, *, or_later: bool = False) -> Compilation:
    """Run the stages on `path` up to `options.emit` (or all of them). With `or_later`, a
    .mlir input already past `emit` is taken as it is (what the planning commands want)."""
    names = stage_names()
    if options.emit is not None and options.emit not in names:
        raise UsageError(f"unknown stage '{options.emit}'; stages: {', '.join(names)}")
    c = Compilation.new(path, options)
    start = 0
    try:
        if path.endswith(".mlir"):
            resumed = load_mlir(c)
            run_passes(c, ["verify-agent"])
            c.stage = resumed
            if not or_later and options.emit is not None and names.index(options.emit) < names.index(resumed):
                raise UsageError(f"'{path}' is already at stage '{resumed}'; cannot emit the earlier "
                                 f"stage '{options.emit}'")
            if options.emit == resumed or (or_later and options.emit is not None
                                           and names.index(options.emit) < names.index(resumed)):
                return c
            start = names.index(resumed) + 1
        elif not os.path.exists(path):
            raise UsageError(f"no such file: '{path}'")
        _run_stages(c, start, progress)
    except AgentcError as e:
        raise relocate(e, path) from None
    return c


def resume(c: Compilation, progress=None) -> Compilation:
    """Run the stages after the one `c` stopped at, up to `c.options.emit` (None: all):
    how `agentc replan` finishes a compile it stopped at `costed` to adjust the module
    (load, measured costs) and the solver."""
    try:
        _run_stages(c, stage_names().index(c.stage) + 1, progress)
    except AgentcError as e:
        raise relocate(e, c.input_path) from None
    return c


def relocate(err: AgentcError, path: str) -> AgentcError:
    """Ops parsed from .mlir text without explicit locations sit at `"-":line:col`;
    point such errors at the file they came from."""
    if err.loc is not None and err.loc.file == "-":
        err.loc = SourceLoc(path, err.loc.line, err.loc.col)
    return err


def _run_stages(c: Compilation, start: int, progress) -> None:
    from agentc.passes._ir import set_module_stage

    with c.ctx:
        for number, stage in enumerate(STAGES[start:], start=start):
            if progress is not None:
                progress(stage.name)
            if stage.passes:
                run_passes(c, list(stage.passes))
            for step in stage.steps:
                step(c)
            if stage.ir:
                c.stage = stage.name
                set_module_stage(c.module, stage.name)
                if c.options.dump_phases_to:
                    c.dumps[f"{number:02d}-{stage.name}.mlir"] = c.asm().encode()
            if stage.name == c.options.emit:
                break


__all__ = ["Compilation", "Options", "STAGES", "Stage", "compile_file", "placement", "resume", "stage_is_ir",
           "stage_names"]
