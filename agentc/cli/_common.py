"""What every agentc command shares: error mapping (exit 1 for user errors, 2 for
compiler bugs), the planning options, and the Options they build."""

from __future__ import annotations

import functools
import os
import shlex
import sys
import traceback

import click

from agentc.diagnostics import AgentcError


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
        except BrokenPipeError:
            # the reader went away (`agentc ... | head`): nothing more to say to it
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except KeyboardInterrupt:
            click.echo("agentc: interrupted", err=True)
            sys.exit(130)
        except Exception as e:  # noqa: BLE001 - the one place that catches everything
            _fail_internal(e)

    return wrapper


class StageChoice(click.ParamType):
    name = "STAGE"

    def convert(self, value, param, ctx):
        from agentc.pipeline import stage_names

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
        click.option("--time-limit", "time_limit_s", type=click.FloatRange(min=0.1, max=86400), default=10.0,
                     show_default=True, callback=_finite,
                     help="Seconds the MILP may search per solve; a plan not proven optimal by then is "
                          "reported 'feasible (gap X%)'. Example: --time-limit 60"),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def parse_pairs(values, what: str, example: str) -> dict[str, str]:
    """Repeated `NAME=VALUE` options into a dict (a usage error, exit 1, otherwise)."""
    from agentc.diagnostics import UsageError

    out = {}
    for v in values:
        name, sep, rest = v.partition("=")
        if not sep or not name or not rest:
            raise UsageError(f"{what} '{v}' is not NAME=VALUE; example: {example}")
        out[name] = rest
    return out


def make_options(**kw):
    from agentc.state import Options

    return Options(**{k: v for k, v in kw.items() if k in Options.__dataclass_fields__ and v is not None})


def print_cmake_dir(ctx, param, value):
    if not value or ctx.resilient_parsing:
        return
    import agentc

    click.echo(os.path.join(os.path.dirname(os.path.abspath(agentc.__file__)), "cmake"))
    ctx.exit(0)
