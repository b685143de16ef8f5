"""`agentc serve --ray [ADDRESS] --port P` and `agentc run --ray [ADDRESS]`: the plan's
pools as Ray actors (agentc.deploy.ray_run; docs/orchestrate.md).

`serve` takes the same program options as `run` (copied from its command, so the two
stay one list) and answers HTTP through Ray Serve: POST / with
`{"input": [..] or "text", "id": "optional request id"}` -> `{"id": .., "output": ..}`.
"""

from __future__ import annotations

import uuid

import click

from agentc.cli import run as run_cli
from agentc.cli._common import guarded
from agentc.cli._ray_options import max_replicas_option, ray_option

# The `run` options that describe the program and its artifacts (not one request).
_PROGRAM_OPTIONS = ("weights", "indexes", "tools", "cluster", "catalogs", "seed", "threads", "max_new_tokens",
                    "top_k", "temperature")

def program(source, weights, indexes, tools, cluster, catalogs, seed, threads, max_new_tokens, top_k,
            temperature):
    """The ray_run.Program of `run`-style options (paths made absolute for the actors)."""
    from agentc.deploy.ray_run import Program
    from agentc.runtime import session

    cfg = session.RunConfig(
        weights=session.parse_pairs(weights, "--weights", "--weights minilm=model.safetensors"),
        indexes=session.parse_pairs(indexes, "--index", "--index docs=corpus.json"),
        tools=session.parse_pairs(tools, "--tool", "--tool search=mytools:search"),
        seed=seed, threads=threads, max_new_tokens=max_new_tokens, top_k=top_k, temperature=temperature)
    path, recorded_cluster = session.source_of(source)
    return Program.make(path, cluster or recorded_cluster or session.CPU_CLUSTER, catalogs, cfg)


def run_on_ray(ray_address: str, max_replicas: int, source, inputs, trace_path, output, **opts):
    """`agentc run ... --ray`: one request through the pools' actors, printed as `run` does."""
    from agentc.deploy.ray_run import RayPlan
    from agentc.diagnostics import UsageError
    from agentc.passes._ir import get
    from agentc.passes._plan_ctx import entry_graph

    import ray

    if trace_path:
        raise UsageError("--trace is not recorded on Ray yet; run without --ray for a trace")
    prog = program(source, **opts)
    started = not ray.is_initialized()
    plan = RayPlan(prog, address=ray_address or None, max_replicas=max_replicas)
    try:
        values = [run_cli._stdin() if v == "-" else v for v in inputs]
        result = plan.run(uuid.uuid4().hex, values)
        kinds = get(entry_graph(plan.module), "output_kinds") or ["text"]
        run_cli._show(result, kinds[0], output)
    finally:
        plan.close()
        if started:
            ray.shutdown()


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

    prog = program(source, **opts)
    ray_run.serve(prog, address=ray_address or None, port=port, host=host, max_replicas=max_replicas,
                  announce=lambda url: click.echo(f"serving {source} at {url} (Ctrl-C stops)"))
    return 0
