"""`agentc check`: the CI gate that compares a plan with a baseline manifest."""

from __future__ import annotations

import json
import sys

import click

from agentc.cli._common import common_plan_options, guarded, make_options

@click.command("check")
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
              lam, pricing, worst_case, time_limit_s, as_json):
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

    opts = make_options(cluster=cluster, catalogs=tuple(catalogs), objective=objective, sla_mode=sla_mode, lam=lam,
                    pricing=pricing, worst_case=worst_case, time_limit_s=time_limit_s)
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
