"""`agentc run`: serve one request of a program in this process, on CPU, with real weights
(agentc/runtime; docs/run.md)."""

from __future__ import annotations

import json
import sys

import click

from agentc.cli._common import guarded, make_options, parse_pairs
from agentc.diagnostics import SourceLoc, UsageError


def _stdin() -> str:
    raw = sys.stdin.buffer.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(f"standard input is not UTF-8 text (byte {err.start})") from None


def _show(value, kind: str, output: str | None) -> None:
    """Print the agent's output: text as is, audio bytes to --output, the rest as JSON."""
    if kind == "audio" or isinstance(value, (bytes, bytearray)):
        if not output:
            raise UsageError("the agent returns audio; pass --output FILE for its bytes")
        from agentc import outputs

        outputs.check_writable(output)
        with open(output, "wb") as f:
            f.write(bytes(value))
        click.echo(f"wrote {len(value)} bytes of audio to {output}")
    elif isinstance(value, str) and kind == "text":
        click.echo(value)
    else:
        click.echo(json.dumps(value, sort_keys=True, indent=1, default=str))


def _ray_options(fn):
    """`--ray [ADDRESS]` and `--max-replicas` (the Ray backend's options, agentc/cli/serve.py)."""
    from agentc.cli._ray_options import max_replicas_option, ray_option

    return ray_option(max_replicas_option(fn))


def run_config(weights, indexes, tools, seed, threads, max_new_tokens, top_k, temperature):
    """The runtime's configuration from `run`'s program options (shared with --ray and serve)."""
    from agentc.runtime import session

    return session.RunConfig(
        weights=parse_pairs(weights, "--weights", "--weights minilm=model.safetensors"),
        indexes=parse_pairs(indexes, "--index", "--index docs=corpus.json"),
        tools=parse_pairs(tools, "--tool", "--tool search=mytools:search"),
        seed=seed, threads=threads, max_new_tokens=max_new_tokens, top_k=top_k, temperature=temperature)


@click.command("run")
@click.argument("source", type=click.Path())
@click.option("--input", "inputs", multiple=True,
              help="The agent's inputs in order (repeatable); '-' reads one from standard input. "
                   "Example: --input 'what is agentc?'")
@click.option("--weights", multiple=True,
              help="Checkpoint of a model: MODEL=PATH (safetensors file, directory or zip, Hugging Face "
                   "layout); repeatable. Encoders default to all-MiniLM-L6-v2. Example: --weights llama=ckpt/")
@click.option("--index", "indexes", multiple=True,
              help="Documents of an index: NAME=FILE (JSON list of strings, or one per line), embedded at "
                   "start. Example: --index docs=corpus.json")
@click.option("--tool", "tools", multiple=True,
              help="A tool as a Python callable: NAME=module:function (called with the op's inputs). "
                   "Unregistered tools answer {\"tool\": NAME, \"result\": \"ok\"}. Example: --tool search=mytools:search")
@click.option("--cluster", type=click.Path(dir_okay=False), default=None,
              help="Cluster to plan for (default: agentc's CPU-only cluster); GPU pools cannot run here.")
@click.option("--catalog", "catalogs", multiple=True, type=click.Path(dir_okay=False),
              help="Extra device/model catalog TOML; repeatable.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Seed of the loop/branch draws and of sampling.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1),
              help="Threads per compiled matmul.")
@click.option("--max-new-tokens", default=None, type=click.IntRange(min=1),
              help="Cap on generated tokens per llm call (default: the program's out=).")
@click.option("--top-k", "top_k", default=1, show_default=True, type=click.IntRange(min=1),
              help="Sample each generated token among the k most likely (1: greedy), seeded by --seed.")
@click.option("--temperature", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Sampling temperature (with --top-k above 1).")
@click.option("--trace", "trace_path", default=None, type=click.Path(dir_okay=False),
              help="Write a Chrome/Perfetto trace of the executed ops (plan op ids as names).")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False),
              help="File for an audio output.")
@click.option("--engine", default="auto", show_default=True, type=click.Choice(["auto", "host", "executor"]),
              help="host: run the pools' emitted host programs (agentc_<pool>_run, loaded with llvmlite); "
                   "executor: walk the plan in Python, calling the same compiled kernels; auto: host unless "
                   "the program has loops or branches (or --top-k other than 1 or 4). See docs/run.md.")
@_ray_options
@guarded
def run_cmd(source, inputs, weights, indexes, tools, cluster, catalogs, seed, threads, max_new_tokens,
            top_k, temperature, trace_path, output, engine="auto", ray_address=None, max_replicas=None):
    """Run SOURCE (.agent, .mlir, or a compile's output directory) on one request in this process.

    \b
    Examples:
      agentc run examples/run/rag_cpu.agent --input 'what is agentc?' --index docs=examples/run/rag_corpus.txt --weights small=ckpt/
      agentc run out/ --input hello --tool search=mytools:search --trace run.json
    """
    if ray_address is not None:   # `--ray`: the pools as Ray actors (agentc/cli/serve.py)

        return run_on_ray(ray_address, max_replicas, source, inputs, trace_path, output, weights=weights,
                          indexes=indexes, tools=tools, cluster=cluster, catalogs=catalogs, seed=seed,
                          threads=threads, max_new_tokens=max_new_tokens, top_k=top_k, temperature=temperature)
    from agentc import outputs, pipeline
    from agentc.passes._ir import get
    from agentc.passes._plan_ctx import entry_graph
    from agentc.runtime import session

    cfg = run_config(weights, indexes, tools, seed, threads, max_new_tokens, top_k, temperature)
    path, recorded_cluster = session.source_of(source)
    # One request: the plan only says where each op runs, so a missed SLA is not a
    # reason to refuse it (soft mode prices the miss instead).
    opts = make_options(emit=pipeline.PLACED, cluster=cluster or recorded_cluster or session.CPU_CLUSTER,
                        catalogs=tuple(catalogs), targets=("cpu",), sla_mode="soft")
    c = pipeline.compile_file(path, opts, or_later=True)
    if trace_path:
        outputs.check_writable(trace_path)
    values = [_stdin() if v == "-" else v for v in inputs]
    refusal = session.host_refusal(c, cfg) if engine != "executor" else "--engine executor"
    if engine == "host" and refusal:
        raise session.RunError(f"{refusal} (run it with --engine executor)", SourceLoc(c.input_path, 1, 1))
    if refusal is None:
        from agentc.runtime import host

        pools, rt = session.prepare_host(c, cfg)
        result, events = host.run(c, pools, rt, values)[0], rt.events
    else:
        ex = session.prepare(c, cfg)
        result, events = ex.run(values), ex.rt.events
    kinds = get(entry_graph(c.module), "output_kinds") or ["text"]
    _show(result, kinds[0], output)
    if trace_path:
        pools = [p.name for p in c.pass_ctx.cluster.pools]
        with open(trace_path, "wb") as f:
            f.write(session.trace_json(events, pools))


# --------------------------------------------------------------------------- --ray (docs/orchestrate.md)

def program(source, weights, indexes, tools, cluster, catalogs, seed, threads, max_new_tokens, top_k,
            temperature):
    """The ray_run.Program of `run`-style options (paths made absolute for the actors)."""
    from agentc.deploy.ray_run import Program
    from agentc.runtime import session

    cfg = run_config(weights, indexes, tools, seed, threads, max_new_tokens, top_k, temperature)
    path, recorded_cluster = session.source_of(source)
    return Program.make(path, cluster or recorded_cluster or session.CPU_CLUSTER, catalogs, cfg)


def run_on_ray(ray_address: str, max_replicas: int, source, inputs, trace_path, output, **opts):
    """`agentc run ... --ray`: one request through the pools' actors, printed as `run` does."""
    import uuid

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
        values = [_stdin() if v == "-" else v for v in inputs]
        result = plan.run(uuid.uuid4().hex, values)
        kinds = get(entry_graph(plan.module), "output_kinds") or ["text"]
        _show(result, kinds[0], output)
    finally:
        plan.close()
        if started:
            ray.shutdown()
