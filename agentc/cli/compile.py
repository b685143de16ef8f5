"""`agentc compile` and `agentc stages`: run the pipeline (agentc/pipeline.py) and write
its outputs atomically."""

from __future__ import annotations

import json

import click

from agentc import outputs
from agentc.cli._common import StageChoice, common_plan_options, guarded, make_options
from agentc.cli.plan import REPAIR_HELP, REQUESTS_OPTION
from agentc.diagnostics import UsageError


@click.command("compile")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("-o", "--output", default=None,
              help="Output directory (default: out/); with --emit, a .mlir file or a directory.")
@click.option("--emit", type=StageChoice(), default=None,
              help="Stop after this stage and print (or write) its IR. Run `agentc stages` for the list.")
@common_plan_options
@click.option("--targets", default="cpu,nvvm,rocdl", show_default=True,
              help="Code-generation targets to build, comma separated. Example: --targets cpu")
@click.option("--cpu-triple", default=None, help="Target triple for CPU objects (default: host).")
@click.option("--cpu", "cpu_name", default=None,
              help="LLVM CPU for CPU objects, e.g. znver3, or 'native' for this machine "
                   "(default: the triple's baseline ISA).")
@click.option("--cpu-threads", default=1, show_default=True, type=click.IntRange(min=1),
              help="Threads per CPU matmul; above 1 the objects need libmlir_async_runtime "
                   "(docs/cpu_target.md).")
@click.option("-MD", "make_depfile", is_flag=True, help="Write a Make depfile (name from -MF).")
@click.option("-MF", "depfile", default=None, type=click.Path(dir_okay=False),
              help="Depfile path (implies -MD). Example: -MD -MF out.d")
@click.option("--dump-phases-to", default=None, type=click.Path(file_okay=False),
              help="Write every stage's IR as numbered files in this directory.")
@click.option("--mlir-print-ir-after-all", "print_ir_after_all", is_flag=True,
              help="Print the IR after every pass to stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
@click.option("--verify", is_flag=True,
              help="Simulate the plan before writing anything; an SLA term missed at its percentile fails the "
                   "compile (as `agentc plan --verify`).")
@click.option("--load", "verify_load", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Arrival rate for --verify in req/s (default: the program's load clause, else 1).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seed for --verify.")
@REQUESTS_OPTION
@click.option("--repair", is_flag=True, help=REPAIR_HELP + " The written plan (code and manifest) is the "
              "repaired one; the manifest's `repair` (and --json's) is the report.")
@guarded
def compile_cmd(source, output, emit, cluster, catalogs, objective, sla_mode, lam, pricing, worst_case, time_limit_s,
                targets, cpu_triple, cpu_name, cpu_threads, make_depfile, depfile, dump_phases_to, print_ir_after_all,
                as_json, quiet, verify, verify_load, seed, verify_requests, repair):
    """Compile SOURCE (.agent, or .mlir printed by --emit) to per-device code and a manifest.

    \b
    Examples:
      agentc compile examples/voice_agent.agent -o out/
      agentc compile examples/rag_agent.agent --emit decomposed
      agentc compile voice.agent -o build/voice -MD -MF build/voice.d
    """
    from agentc import pipeline, report
    from agentc.cli.plan import check_verify_flags

    check_verify_flags(verify, repair, verify_load)
    target_list = tuple(t.strip() for t in targets.split(",") if t.strip())
    for t in target_list:
        if t not in ("cpu", "nvvm", "rocdl"):
            raise UsageError(f"unknown target '{t}'; targets: cpu, nvvm, rocdl")
    opts = make_options(emit=emit, cluster=cluster, catalogs=tuple(catalogs), objective=objective,
                    sla_mode=sla_mode, lam=lam, pricing=pricing, worst_case=worst_case, time_limit_s=time_limit_s,
                    targets=target_list,
                    cpu_triple=cpu_triple, cpu=cpu_name, cpu_threads=cpu_threads, dump_phases_to=dump_phases_to,
                    print_ir_after_all=print_ir_after_all)
    with report.progress(quiet or as_json or emit is not None) as step:
        c = pipeline.compile_file(source, opts, progress=step)
    fixed = None
    if verify:
        c, fixed = _verify(c, verify_load, seed, repair, quiet or as_json, verify_requests)
    files, out_desc = outputs.collect_outputs(c, output)
    dest = out_desc[0] if out_desc else None
    dumps = outputs.collect_dumps(c, dump_phases_to)
    dep = outputs.depfile_path(c, depfile, dest) if make_depfile or depfile else None
    # Every destination is probed before anything is written, so an unwritable one
    # fails the compile with nothing new on disk.
    for path in (dest, dump_phases_to, dep):
        if path:
            outputs.check_writable(path)
    if dumps is not None:
        outputs.write_outputs(dumps, dump_phases_to)
    if files is not None:
        payload = out_desc[1]
        if dest.endswith(".mlir") and len(payload) == 1:
            outputs.write_file_atomic(dest, next(iter(payload.values())))
        else:
            outputs.write_outputs(payload, dest)
    if dep:
        outputs.write_depfile(c, dep, dest)
    if files is None and emit is not None and not pipeline.stage_is_ir(emit):
        for path in sorted(c.artifacts):
            click.echo(f"{path} ({len(c.artifacts[path])} bytes)")
        click.echo("note: pass -o DIR to write these files", err=True)
    elif files is None:
        click.echo(c.asm(), nl=False)
    if as_json:
        doc = report.summary(c)
        if fixed is not None:   # the same report as `plan --verify --repair --json` and the manifest's
            doc["repair"] = fixed
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    elif not quiet and files is not None and emit is None:
        report.print_compile_summary(c, out_desc[0])


@click.command("stages")
def stages_cmd():
    """List the pipeline stages in order (the values of --emit).

    \b
    Example:
      agentc stages
      agentc compile examples/voice_agent.agent --emit costed
    """
    from agentc.pipeline import STAGES

    for s in STAGES:
        click.echo(f"{s.name:12s} {s.help}")


def _verify(c, load, seed, repair, quiet, requests: int):
    """Hold the compiled plan to its SLA by simulation before any output is written.
    With `repair`, add capacity first (cli/plan.py `repaired`): the compile returned is
    then the repaired one (compiled again for the re-planned load when the repair
    re-planned; its plan re-evaluated at the grown replicas; its manifest's devices and
    $/hr those the repair settled on, and the repair's report under `repair`), and the
    report is returned with it for --json."""
    from agentc import pipeline
    from agentc.cli.plan import grown_note, print_repair, repaired
    from agentc.passes._ir import source_loc
    from agentc.passes._plan_ctx import entry_graph
    from agentc.sim import verify
    from agentc.targets import manifest

    if "manifest.json" in c.artifacts:
        view = json.loads(c.artifacts["manifest.json"])
    else:
        pipeline.placement(c)
        view = manifest.build(c)
    if not repair:
        verify.check(verify.verify(view, load, requests, seed=seed), source_loc(entry_graph(c.module)))
        return c, None
    c2, _view, fixed = repaired(c, view, load, seed, emit=c.options.emit, requests=requests)
    verify.check(fixed.verdict, source_loc(entry_graph(c.module)), fixed)
    if not quiet:
        print_repair(fixed)
        note = grown_note(fixed)
        if note:
            click.echo(note)
    return c2, verify.report(fixed)
