"""Command-line interface: `agentc` (compile, plan, explain, cost, devices, calibrate,
check) and `agentc-opt` (run named passes on .mlir, like mlir-opt).

User errors (`AgentcError`) print `file:line:col: error: ...` with the source line and a
caret, and exit 1. Anything else is a compiler bug: exit 2 with a reproduction hint;
the Python traceback is shown only with AGENTC_TRACEBACK=1.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import sys
import traceback

import click

from agentc import __version__, outputs
from agentc.diagnostics import AgentcError, UsageError


def _fail_internal(exc: BaseException) -> None:
    cmd = " ".join(shlex.quote(a) for a in [os.path.basename(sys.argv[0])] + sys.argv[1:])
    click.echo(f"agentc: internal compiler error: {type(exc).__name__}: {exc}", err=True)
    click.echo(f"note: this is a bug in agentc, not in your input; reproduce with: {cmd}", err=True)
    click.echo("note: set AGENTC_TRACEBACK=1 to see the Python traceback", err=True)
    if os.environ.get("AGENTC_TRACEBACK"):
        traceback.print_exception(exc)
    sys.exit(2)


def guarded(fn):
    """Map AgentcError -> exit 1 with a rendered diagnostic; other errors -> exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AgentcError as e:
            click.echo(e.render(), err=True)
            sys.exit(1)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("agentc: interrupted", err=True)
            sys.exit(130)
        except Exception as e:  # noqa: BLE001 - the one place that catches everything
            _fail_internal(e)

    return wrapper


def _stage_help() -> str:
    from agentc.driver import STAGES, ensure_pipeline

    ensure_pipeline()
    return "; ".join(f"{s.name}: {s.help}" for s in STAGES)


class _StageChoice(click.ParamType):
    name = "STAGE"

    def convert(self, value, param, ctx):
        from agentc.driver import ensure_pipeline, stage_names

        ensure_pipeline()
        if value not in stage_names():
            self.fail(f"unknown stage '{value}'; stages: {', '.join(stage_names())}", param, ctx)
        return value


def _finite(ctx, param, value):
    if value is not None and value != value:  # NaN passes every range check
        raise click.BadParameter("must be a number", ctx=ctx, param=param)
    return value


def common_plan_options(fn):
    """Options shared by every command that builds a plan."""
    opts = [
        click.option("--cluster", type=click.Path(dir_okay=False), default=None,
                     help="Cluster inventory TOML (default: the built-in mixed fleet). "
                          "Example: --cluster examples/clusters/table3.toml"),
        click.option("--catalog", "catalogs", multiple=True, type=click.Path(dir_okay=False),
                     help="Extra device/model catalog TOML; repeatable. Example: --catalog my_devices.toml"),
        click.option("--objective", type=click.Choice(["cost", "latency", "tokens-per-dollar"]), default="cost",
                     show_default=True, help="What the placement minimises. Example: --objective latency"),
        click.option("--sla-mode", type=click.Choice(["hard", "soft"]), default="hard", show_default=True,
                     help="hard: SLA is a constraint; soft: violations cost --lambda per ms."),
        click.option("--lambda", "lam", type=click.FloatRange(min=0.0, max=1e12), default=1e3, show_default=True,
                     callback=_finite,
                     help="Penalty per ms of SLA violation in soft mode. Example: --lambda 50"),
        click.option("--pricing", type=click.Choice(["tco", "capex", "given"]), default=None,
                     help="Price devices by the TCO rule, its capex part alone (no power), or the catalog's given $/hr "
                          "(default: cluster file)."),
        click.option("--worst-case", is_flag=True,
                     help="Price loops at their maximum trips and branches at their costlier arm."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def _options(**kw):
    from agentc.driver import Options

    return Options(**{k: v for k, v in kw.items() if k in Options.__dataclass_fields__ and v is not None})


def _print_cmake_dir(ctx, param, value):
    if not value or ctx.resilient_parsing:
        return
    click.echo(os.path.join(os.path.dirname(os.path.abspath(__file__)), "cmake"))
    ctx.exit(0)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agentc")
@click.option("--cmake-dir", is_flag=True, expose_value=False, is_eager=True, callback=_print_cmake_dir,
              help="Print the directory holding agentcConfig.cmake and exit. "
                   "Example: cmake -Dagentc_DIR=$(agentc --cmake-dir) ..")
def cli():
    """agentc: compile agent graphs (.agent) onto heterogeneous clusters.

    \b
    Examples:
      agentc compile examples/voice_agent.agent -o out/
      agentc compile examples/voice_agent.agent --emit agent
      agentc devices
    """


@cli.command("compile")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("-o", "--output", default=None,
              help="Output directory (default: out/); with --emit, a .mlir file or a directory.")
@click.option("--emit", type=_StageChoice(), default=None,
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
@guarded
def compile_cmd(source, output, emit, cluster, catalogs, objective, sla_mode, lam, pricing, worst_case,
                targets, cpu_triple, cpu_name, cpu_threads, make_depfile, depfile, dump_phases_to, print_ir_after_all,
                as_json, quiet):
    """Compile SOURCE (.agent, or .mlir printed by --emit) to per-device code and a manifest.

    \b
    Examples:
      agentc compile examples/voice_agent.agent -o out/
      agentc compile examples/rag_agent.agent --emit decomposed
      agentc compile voice.agent -o build/voice -MD -MF build/voice.d
    """
    from agentc import driver

    driver.ensure_pipeline()
    target_list = tuple(t.strip() for t in targets.split(",") if t.strip())
    for t in target_list:
        if t not in ("cpu", "nvvm", "rocdl"):
            raise UsageError(f"unknown target '{t}'; targets: cpu, nvvm, rocdl")
    opts = _options(emit=emit, cluster=cluster, catalogs=tuple(catalogs), objective=objective,
                    sla_mode=sla_mode, lam=lam, pricing=pricing, worst_case=worst_case, targets=target_list,
                    cpu_triple=cpu_triple, cpu=cpu_name, cpu_threads=cpu_threads, dump_phases_to=dump_phases_to,
                    print_ir_after_all=print_ir_after_all)
    from agentc import report

    with report.progress(quiet or as_json or emit is not None) as step:
        c = driver.compile_file(source, opts, progress=step)
    files, out_desc = driver.collect_outputs(c, output)
    dest = out_desc[0] if out_desc else None
    dumps = driver.collect_dumps(c, dump_phases_to)
    dep = driver.depfile_path(c, depfile, dest) if make_depfile or depfile else None
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
        driver.write_depfile(c, dep, dest)
    if files is None and emit is not None and not driver.stage_is_ir(emit):
        for path in sorted(c.artifacts):
            click.echo(f"{path} ({len(c.artifacts[path])} bytes)")
        click.echo("note: pass -o DIR to write these files", err=True)
    elif files is None:
        click.echo(c.asm(), nl=False)
    if as_json:
        click.echo(json.dumps(driver.summary(c), indent=2, sort_keys=True))
    elif not quiet and files is not None and emit is None:
        driver.print_summary(c, out_desc[0])


@cli.command("stages")
def stages_cmd():
    """List the pipeline stages in order (the values of --emit).

    \b
    Example:
      agentc stages
      agentc compile examples/voice_agent.agent --emit costed
    """
    from agentc.driver import STAGES, ensure_pipeline

    ensure_pipeline()
    for s in STAGES:
        click.echo(f"{s.name:12s} {s.help}")


def main():
    import agentc.cli_plan  # noqa: F401 - registers plan, explain, cost, devices, calibrate

    cli(prog_name="agentc")


# ----------------------------------------------------------------------------- agentc-opt

_EXPECT = re.compile(r"//\s*expected-(error|note|warning)\s*(@([+-]?\d+|below|above))?\s*\{\{(.*?)\}\}")


def _expectations(text: str) -> list[tuple[int, str]]:
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        for m in _EXPECT.finditer(line):
            if m.group(1) != "error":
                continue
            where = m.group(3)
            target = lineno
            if where == "below":
                target = lineno + 1
            elif where == "above":
                target = lineno - 1
            elif where is not None:
                target = lineno + int(where)
            out.append((target, m.group(4)))
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("source", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-p", "--passes", default="", help="Comma-separated pass names. Example: -p decompose-llm,annotate-cost")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False), help="Write IR here instead of stdout.")
@click.option("--cluster", default=None, type=click.Path(dir_okay=False), help="Cluster TOML for cost/placement passes.")
@click.option("--verify-diagnostics", is_flag=True,
              help="Check errors against `// expected-error {{...}}` comments (for lit tests).")
@click.option("--list-passes", is_flag=True, help="List the registered passes and exit.")
@click.option("--mlir-print-ir-after-all", "print_ir_after_all", is_flag=True, help="Print IR after every pass.")
@click.version_option(__version__, prog_name="agentc-opt")
@guarded
def opt_cmd(source, passes, output, cluster, verify_diagnostics, list_passes, print_ir_after_all):
    """Run agentc passes on an .mlir file and print the result, like mlir-opt.

    \b
    Examples:
      agentc-opt voice.agent.mlir -p verify-agent
      agentc-opt in.mlir -p decompose-llm --verify-diagnostics
    """
    from agentc import driver
    from agentc.passes import registry, run_pipeline

    if list_passes:
        for name, mod in sorted(registry().items()):
            doc = (mod.__doc__ or "").strip().splitlines()[0]
            click.echo(f"{name:20s} {doc.split(':', 1)[-1].strip()}")
        return
    driver.ensure_pipeline()
    names = [p.strip() for p in re.split(r",(?![^{]*\})", passes) if p.strip()]
    c = driver.Compilation(source, driver.Options(cluster=cluster, print_ir_after_all=print_ir_after_all))
    text = None
    try:
        if source == "-":
            text = sys.stdin.read()
        else:
            with open(source, encoding="utf-8") as f:
                text = f.read()
    except OSError as e:
        raise UsageError(f"cannot read '{source}': {e.strerror}") from None
    expected = _expectations(text) if verify_diagnostics else []
    try:
        with c.ctx:
            c.module = driver.parse_mlir(text, source, c.ctx)
            from mlir import ir

            with ir.Location.unknown():
                run_pipeline(c.module, names, c, print_ir_after_all=print_ir_after_all)
    except AgentcError as e:
        e = driver.relocate(e, source)
        if not verify_diagnostics:
            raise e from None
        line = e.loc.line if e.loc else 0
        for want_line, want_msg in expected:
            if want_line == line and want_msg in e.message:
                expected.remove((want_line, want_msg))
                break
        else:
            click.echo(f"{source}:{line}: error: unexpected error: {e.message}", err=True)
            sys.exit(1)
        for want_line, want_msg in expected:
            click.echo(f"{source}:{want_line}: error: expected error \"{want_msg}\" was not produced", err=True)
        sys.exit(1 if expected else 0)
    if verify_diagnostics and expected:
        for want_line, want_msg in expected:
            click.echo(f"{source}:{want_line}: error: expected error \"{want_msg}\" was not produced", err=True)
        sys.exit(1)
    asm = c.asm()
    if output:
        outputs.write_file_atomic(output, asm.encode())
    elif not verify_diagnostics:
        click.echo(asm, nl=False)


def opt_main():
    opt_cmd(prog_name="agentc-opt")


# ----------------------------------------------------------------------------- agentc check (CI gate)

@cli.command("check")
@click.argument("source", type=click.Path(exists=True))
@click.option("--baseline", required=True, type=click.Path(dir_okay=False),
              help="The manifest.json to compare against (e.g. from the main branch). "
                   "Example: --baseline ci/baseline/manifest.json")
@click.option("--max-cost-increase", default="5%", show_default=True,
              help="Largest allowed rise of $/request and $/hr. Example: --max-cost-increase 2%")
@click.option("--max-latency-increase", default="5%", show_default=True,
              help="Largest allowed rise of e2e, TTFT and TBT. Example: --max-latency-increase 10%")
@common_plan_options
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON instead of a table.")
@guarded
def check_cmd(source, baseline, max_cost_increase, max_latency_increase, cluster, catalogs, objective, sla_mode,
              lam, pricing, worst_case, as_json):
    """Plan SOURCE and compare it with a baseline manifest; exit 1 on an SLA violation or
    a cost/latency regression beyond the bounds, 0 otherwise.

    SOURCE is an .agent file (planned up to the `placed` stage), or a manifest.json /
    output directory already written by `agentc compile`.

    \b
    Examples:
      agentc check examples/voice_agent.agent --baseline baseline/manifest.json
      agentc check app.agent --cluster prod.toml --baseline base.json --max-cost-increase 2%
      agentc check out/ --baseline base.json --max-latency-increase 10%
    """
    from dataclasses import asdict

    from agentc import check, report

    opts = _options(cluster=cluster, catalogs=tuple(catalogs), objective=objective, sla_mode=sla_mode, lam=lam,
                    pricing=pricing, worst_case=worst_case)
    result = check.compare(check.current_manifest(source, opts), check.load_manifest(baseline),
                           max_cost_increase=check.parse_bound(max_cost_increase),
                           max_latency_increase=check.parse_bound(max_latency_increase))
    if as_json:
        click.echo(json.dumps({"passed": not result.failed, "rows": [asdict(r) for r in result.rows],
                               "sla_violations": result.sla_violations, "regressions": result.regressions},
                              indent=2, sort_keys=True))
    else:
        check.render(result, report.console())
    sys.exit(1 if result.failed else 0)
cli.add_command(__import__("agentc.sim.cli", fromlist=["simulate_cmd"]).simulate_cmd)  # agentc simulate
