"""`agentc simulate`: the command (registered on the main CLI by one line in agentc/cli.py)."""

from __future__ import annotations

import math

import click

from agentc.cli._common import guarded
from agentc.diagnostics import UsageError
from agentc.sim.model import DEFAULT_PREFILL_BUDGET

DEFAULT_REQUESTS = 5000
DEFAULT_WINDOW_S = 10.0


def _cv(values: tuple[str, ...]) -> tuple[tuple[str, float], ...]:
    """`--cv 0.5` (every kind) or `--cv llm.decode=0.2` (one kind), repeatable."""
    out = {}
    for text in values:
        kind, _, number = text.rpartition("=")
        try:
            x = float(number)
        except ValueError:
            x = -1.0
        if not (x >= 0 and math.isfinite(x)):
            raise UsageError(f"bad --cv '{text}'; write X or KIND=X with X >= 0 (e.g. --cv llm.decode=0.2)")
        out[kind or "*"] = x
    return tuple(sorted(out.items()))


@click.command("simulate")
@click.argument("source", type=click.Path())
@click.option("--load", "load", type=float, default=None,
              help="Poisson arrivals at R requests/s (default: the program's `load` clause). Example: --load 20")
@click.option("--trace", "trace_csv", type=click.Path(dir_okay=False), default=None,
              help="Arrivals from a CSV with columns arrival_s,input_tokens,output_tokens instead of --load.")
@click.option("--requests", type=click.IntRange(min=1), default=None,
              help=f"Requests to simulate (default {DEFAULT_REQUESTS}).")
@click.option("--duration", type=float, default=None, help="Simulate the arrivals of S seconds instead of --requests.")
@click.option("--warmup", type=click.IntRange(min=0), default=None,
              help="First requests left out of the statistics (default: 10%, at most 1000).")
@click.option("--cooldown", type=click.IntRange(min=0), default=0, show_default=True,
              help="Last requests left out of the statistics: they load the system while the measured ones "
                   "finish (as --verify runs).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of every random draw.")
@click.option("--cv", "cv", multiple=True,
              help="Service-time variability: coefficient of variation for every kind (X) or one (KIND=X); "
                   "0 = deterministic, 1 = exponential. Repeatable. Example: --cv llm.decode=0.2")
@click.option("--batching", type=click.Choice(["continuous", "planned"]), default="continuous", show_default=True,
              help="Decode as iteration-level continuous batching, or at the planner's batched time.")
@click.option("--prefill-budget", type=click.IntRange(min=0), default=None, metavar="TOKENS",
              help="Prompt tokens one prefill batch may hold (continuous batching; default "
                   f"{DEFAULT_PREFILL_BUDGET}; 0 = one prompt per batch).")
@click.option("--events", "events_file", type=click.Path(dir_okay=False), default=None,
              help="A TOML scenario: [[load]] steps and ramps, [[loss]] of devices at given times.")
@click.option("--window", type=float, default=None, metavar="S",
              help="Report SLA attainment per window of S seconds of arrivals (default 10 with --events).")
@click.option("--replan-every", "replan_every", type=float, default=None, metavar="S",
              help="Re-plan inside the simulation every S s when the measured rate moved or devices were lost, "
                   "and report it against the static plan (docs/simulate.md).")
@click.option("--switch-delay", "switch_delay", type=float, default=None, metavar="S",
              help="Seconds from a re-plan until its plan takes new requests (default 30).")
@click.option("--headroom", type=float, default=None, metavar="X",
              help="A re-plan after a load change plans for the measured rate times X (default 1.5; 1 = as measured).")
@click.option("--cluster", type=click.Path(dir_okay=False), default=None,
              help="Cluster TOML to plan a .agent source for (default: the built-in fleet).")
@click.option("--catalog", "catalogs", multiple=True, type=click.Path(dir_okay=False),
              help="Extra device/model catalog TOML (repeatable).")
@click.option("--trace-requests", type=click.IntRange(min=0), default=200, show_default=True,
              help="Measured requests recorded in trace.json (with -o).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("-o", "--output", default=None, type=click.Path(file_okay=False),
              help="Write trace.json (Perfetto), simulation.json and plots (SVG, PNG) to DIR.")
@guarded
def simulate_cmd(source, load, trace_csv, requests, duration, warmup, cooldown, seed, cv, batching, prefill_budget,
                 events_file, window, replan_every, switch_delay, headroom, cluster, catalogs, trace_requests, as_json,
                 output):
    """Simulate SOURCE (.agent, an output directory or a manifest.json) under load.

    \b
    Examples:
      agentc simulate examples/voice_agent.agent --load 20
      agentc simulate out/ --load 5 --cv 1 -o sim/
      agentc simulate app.agent --trace requests.csv --json
    """
    import numpy as np

    from agentc import outputs
    from agentc.report import console
    from agentc.sim import arrivals, model, plan, report

    if trace_csv is not None and (load is not None or requests is not None or duration is not None):
        raise UsageError("--trace gives the arrivals; it cannot be combined with --load, --requests or --duration")
    if requests is not None and duration is not None:
        raise UsageError("give --requests or --duration, not both")
    if duration is not None and not (duration > 0 and math.isfinite(duration)):
        raise UsageError(f"--duration must be positive, got {duration:g}")
    if window is not None and not (window > 0 and math.isfinite(window)):
        raise UsageError(f"--window must be positive, got {window:g}")
    for name, value in (("--switch-delay", switch_delay), ("--headroom", headroom)):
        if value is not None and replan_every is None:
            raise UsageError(f"{name} applies to re-planning; give --replan-every S too")
    if headroom is not None and not (headroom >= 1 and math.isfinite(headroom)):
        raise UsageError(f"--headroom must be at least 1, got {headroom:g}")
    if replan_every is not None and not (replan_every > 0 and math.isfinite(replan_every)):
        raise UsageError(f"--replan-every must be positive, got {replan_every:g}")
    if switch_delay is not None and not (switch_delay >= 0 and math.isfinite(switch_delay)):
        raise UsageError(f"--switch-delay must be non-negative, got {switch_delay:g}")
    if replan_every is not None and window is None:
        window = DEFAULT_WINDOW_S
    scenario = None
    if events_file is not None:
        from agentc.sim import events

        scenario = events.read(events_file)
        if trace_csv is not None and scenario.loads:
            raise UsageError("--trace gives the arrivals; its [[load]] changes cannot apply (keep only [[loss]])")
        if window is None:
            window = DEFAULT_WINDOW_S
    if output is not None:
        outputs.check_replaceable(output, "-o")
        outputs.check_writable(output)
    if replan_every is None:
        p = plan.load(source, cluster, tuple(catalogs))
    else:
        from agentc.sim import replanning

        p, manifest, program, cluster_file = replanning.load(source, cluster, tuple(catalogs))
    if scenario is not None:
        events.check(scenario, p)
    cv_table = _cv(cv)
    kinds = {op.kind for op in p.ops.values()}
    unknown = [k for k, _x in cv_table if k != "*" and k not in kinds]
    if unknown:   # a misspelt kind would otherwise leave the run deterministic without a word
        raise UsageError(f"--cv names the kind '{unknown[0]}', which no op of the plan has; "
                         f"its kinds: {', '.join(sorted(kinds))}")
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])
    if trace_csv is not None:
        arr = arrivals.read_trace(trace_csv)
    else:
        rate = load if load is not None else p.load_rps
        if rate is None:
            raise UsageError(f"'{source}' has no `load` clause: give the arrival rate with --load R or a --trace")
        if duration is None and requests is None:
            requests = DEFAULT_REQUESTS
        if scenario is not None and scenario.loads:
            arr = events.arrivals(scenario, rate, rng, requests=requests, duration_s=duration)
        else:
            arr = arrivals.poisson(rate, rng, requests=requests, duration_s=duration)
        if not arr:
            raise UsageError(f"no request arrives within {duration:g} s at {rate:g} req/s")
    if warmup is None:
        warmup = min(1000, len(arr) // 10)
    if warmup + cooldown >= len(arr):
        raise UsageError(f"--warmup {warmup} and --cooldown {cooldown} leave none of the {len(arr)} requests "
                         "to measure")
    config = model.Config(seed=seed, cv=cv_table, batching=batching, warmup=warmup, cooldown=cooldown,
                          trace_requests=trace_requests if output else 0, timeline=output is not None,
                          prefill_budget=DEFAULT_PREFILL_BUDGET if prefill_budget is None else prefill_budget)
    losses = scenario.losses if scenario is not None else ()
    controller = replanner = static = None
    if replan_every is not None:
        import dataclasses

        made_for = p.load_rps or (rate if trace_csv is None else len(arr) / max(arr[-1].t_ms / 1e3, 1e-9))
        replanner = replanning.Replanner(manifest, program, cluster_file, arr, replan_every * 1e3,
                                         1e3 * (replanning.DEFAULT_SWITCH_DELAY_S if switch_delay is None
                                                else switch_delay), made_for, tuple(catalogs),
                                         replanning.DEFAULT_HEADROOM if headroom is None else headroom)
        controller = model.Controller(replan_every * 1e3, replanner.decide)
        static = model.simulate(p, arr, dataclasses.replace(config, trace_requests=0, timeline=False), losses)
    result = model.simulate(p, arr, config, losses, controller)
    summary = report.summarize(result, window * 1e3 if window is not None else None)
    if replanner is not None:
        summary["replanning"] = replanning.compare(static, result, replanner, window * 1e3)
    if scenario is not None:
        summary["events"] = {"file": events_file,
                             "load": [{"at_s": c.t_ms / 1e3, "rps": c.rps, "ramp_s": c.ramp_ms / 1e3}
                                      for c in scenario.loads],
                             "loss": [{"at_s": x.t_ms / 1e3, "pool": x.pool, "devices": x.devices}
                                      for x in scenario.losses]}
    if output is not None:
        from agentc.sim import perfetto, plots

        files = {outputs.MARKER: outputs.MARKER_TEXT, "simulation.json": report.dumps(summary).encode(),
                 "trace.json": perfetto.dumps(result)}
        files.update(plots.render(result, summary))
        outputs.write_outputs(files, output)
    if as_json:
        click.echo(report.dumps(summary), nl=False)
    else:
        report.print_table(summary, console())
        if replanner is not None:
            replanning.print_table(summary["replanning"], console())
        if output is not None:
            click.echo(f"wrote {output}/: trace.json (open in ui.perfetto.dev), simulation.json, "
                       f"latency_cdf, utilisation, queue (.svg, .png)")
