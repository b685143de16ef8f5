"""`agentc serve --ray [ADDRESS] --port P`: the plan's pools as Ray actors answering HTTP
(agentc.deploy.ray_run; docs/orchestrate.md). `agentc run --ray` lives in run.py.

`serve` takes the same program options as `run` (copied from its command, so the two
stay one list) and answers HTTP through Ray Serve: POST / with
`{"input": [..] or "text", "id": "optional request id"}` -> `{"id": .., "output": ..}`.
"""

from __future__ import annotations

import click

from agentc.cli import run as run_cli
from agentc.cli._common import guarded
from agentc.cli._ray_options import max_replicas_option, ray_option

# The `run` options that describe the program and its artifacts (not one request).
_PROGRAM_OPTIONS = ("weights", "indexes", "tools", "cluster", "catalogs", "seed", "threads", "max_new_tokens",
                    "top_k", "temperature")

def _serve_params():
    by_name = {p.name: p for p in run_cli.run_cmd.params}
    return [by_name["source"]] + [by_name[n] for n in _PROGRAM_OPTIONS]


@click.command("serve", params=_serve_params())
@ray_option
@max_replicas_option
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535),
              help="HTTP port of the endpoint.")
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP host to bind (0.0.0.0: all).")
@guarded
def serve_cmd(source, ray_address, max_replicas, port, host, **opts):
    """Serve SOURCE over HTTP on Ray Serve: each pool a group of Ray actors.

    \b
    POST http://HOST:PORT/ {"input": ["what is agentc?"], "id": "r1"} -> {"id": "r1", "output": ...}
    Examples:
      agentc serve examples/run/rag_cpu.agent --index docs=examples/run/rag_corpus.txt --weights small=ckpt/ --ray
      agentc serve out/ --port 8080 --ray=auto
    """
    from agentc.deploy import ray_run

    prog = run_cli.program(source, **opts)
    ray_run.serve(prog, address=ray_address or None, port=port, host=host, max_replicas=max_replicas,
                  announce=lambda url: click.echo(f"serving {source} at {url} (Ctrl-C stops)"))
    return 0
