"""Command-line interface: `agentc` and `agentc-opt`, one module per command group.

User errors (`AgentcError`) print `file:line:col: error: ...` with the source line and a
caret, and exit 1. Anything else is a compiler bug: exit 2 with a reproduction hint;
the Python traceback is shown only with AGENTC_TRACEBACK=1.
"""

from __future__ import annotations

import click

from agentc import __version__
from agentc.cli import catalog, check, compile, opt, plan, replan, run, serve
from agentc.deploy.cli import deploy_cmd
from agentc.sim.cli import simulate_cmd
from agentc.cli._common import print_cmake_dir


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agentc")
@click.option("--cmake-dir", is_flag=True, expose_value=False, is_eager=True, callback=print_cmake_dir,
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



for _cmd in (compile.compile_cmd, compile.stages_cmd, plan.plan_cmd, plan.explain_cmd, plan.cost_cmd,
             catalog.devices_cmd, catalog.calibrate_cmd, check.check_cmd, deploy_cmd,
             simulate_cmd, replan.replan_cmd, run.run_cmd, serve.serve_cmd):
    cli.add_command(_cmd)


def _run(command, prog_name: str) -> None:
    """Run a click command; a usage error (unknown option, bad value) exits 1 like every
    other user error, keeping exit 2 for compiler bugs alone."""
    try:
        rv = command.main(prog_name=prog_name, standalone_mode=False)
    except click.exceptions.UsageError as e:
        e.show()
        raise SystemExit(1) from None
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        raise SystemExit(1) from None
    raise SystemExit(rv if isinstance(rv, int) else 0)


def main():
    _run(cli, "agentc")


def opt_main():
    _run(opt.opt_cmd, "agentc-opt")
