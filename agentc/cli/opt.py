"""`agentc-opt`: run named passes on an .mlir file and print the result, like mlir-opt
(with `--verify-diagnostics` for lit tests)."""

from __future__ import annotations

import re
import sys

import click

from agentc import __version__, outputs
from agentc.cli._common import guarded
from agentc.diagnostics import AgentcError, UsageError

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


def _description(doc: str | None, name: str) -> str:
    """A pass's whole description: its module docstring without the `name:` lead."""
    text = (doc or "").strip()
    if text.startswith(name + ":"):
        text = text[len(name) + 1:].strip()
    return " ".join(text.split("\n\n")[0].split()) if text else "(no description)"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("source", type=click.Path(dir_okay=False, allow_dash=True), required=False)
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
    from agentc import pipeline
    from agentc.passes import registry
    from agentc.passes._ir import module_stage, set_module_stage
    from agentc.state import Compilation, Options

    if list_passes:
        for name, mod in sorted(registry().items()):
            click.echo(f"{name}\n    " + _description(mod.__doc__, name).replace("\n", "\n    "))
        return
    if source is None:
        raise UsageError("agentc-opt needs an .mlir SOURCE (or '-' for standard input), or --list-passes")
    names = [p.strip() for p in re.split(r",(?![^{]*\})", passes) if p.strip()]
    c = Compilation.new(source, Options(cluster=cluster, print_ir_after_all=print_ir_after_all))
    text = pipeline.read_mlir(source)
    expected = _expectations(text) if verify_diagnostics else []
    try:
        with c.ctx:
            c.module = pipeline.parse_mlir(text, source, c.ctx)
            # like mlir-opt, verify the input before any pass sees it
            pipeline.run_passes(c, ["verify-agent"] + names)
            reached = pipeline.stage_after_passes(module_stage(c.module), names)
            if reached is not None:
                set_module_stage(c.module, reached)
    except AgentcError as e:
        e = pipeline.relocate(e, source)
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
