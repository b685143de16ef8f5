"""The `agentc deploy` command (registered on the main group by agentc/cli.py)."""

from __future__ import annotations

import click

from agentc import outputs
from agentc.cli._common import guarded, parse_pairs
from agentc.deploy import FORMATS


@click.command("deploy")
@click.argument("source", type=click.Path())
@click.option("--format", "fmt", default="all", show_default=True, metavar="FORMAT",
              help=f"{', '.join(FORMATS)}, or all (one folder per format).")
@click.option("-o", "--output", default="deploy", show_default=True, type=click.Path(),
              help="Output directory (replaced as a whole).")
@click.option("--model", "models", multiple=True, metavar="NAME=SOURCE",
              help="What the engines load for a declared model, e.g. --model llama=/models/llama3-8b "
                   "(default: the published checkpoint of a catalog model with its architecture).")
@click.option("--weights", multiple=True, metavar="MODEL=PATH",
              help="ray-serve: a checkpoint for `agentc run`'s runtime, written into the application's args "
                   "(relative paths start where `serve run` runs). Example: --weights small=ckpt/")
@click.option("--index", "indexes", multiple=True, metavar="NAME=FILE",
              help="ray-serve: an index's documents, into the args. Example: --index docs=corpus.json")
@click.option("--tool", "tools", multiple=True, metavar="NAME=module:function",
              help="ray-serve: a tool's Python callable, into the args. Example: --tool search=mytools:search")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
@guarded
def deploy_cmd(source, fmt, output, models, weights, indexes, tools, quiet):
    """Write serving-stack configs for the plan in SOURCE (an `agentc compile -o` directory
    or its manifest.json): Ray Serve, NVIDIA Dynamo, llm-d, vLLM or SGLang launch scripts.

    \b
    Examples:
      agentc compile examples/voice_agent.agent -o out/ --targets cpu
      agentc deploy out/ --format ray-serve -o deploy/
      agentc deploy out/manifest.json --format all -o deploy/
    """
    from agentc import deploy

    run_args = {"weights": parse_pairs(weights, "--weights", "--weights small=ckpt/"),
                "index": parse_pairs(indexes, "--index", "--index docs=corpus.json"),
                "tool": parse_pairs(tools, "--tool", "--tool search=mytools:search")}
    files = deploy.render(source, fmt, parse_pairs(models, "--model", "--model llama=/models/llama3-8b"), run_args)
    outputs.check_replaceable(output, "-o")
    outputs.check_writable(output)
    outputs.write_outputs({**files, outputs.MARKER: outputs.MARKER_TEXT}, output)
    if not quiet:
        for rel in sorted(files):
            click.echo(f"{output.rstrip('/')}/{rel}")
