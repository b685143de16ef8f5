"""The Ray backend's options, shared by `agentc run --ray` and `agentc serve` (a module of
its own so that run.py can take them without importing serve.py, which imports run.py)."""

from __future__ import annotations

import click

from agentc.deploy.ray_run import DEFAULT_MAX_REPLICAS

RAY_HELP = ("Run on Ray: the Ray cluster at ADDRESS (e.g. ray://head:10001 or auto), or, with no "
            "ADDRESS, a local Ray started here. Write it last or as --ray=ADDRESS, so it does not "
            "take SOURCE as its address. GPU pools ask Ray for tp GPUs per actor with the device's "
            "accelerator_type; a Ray cluster without them is refused.")
MAX_REPLICAS_HELP = (f"Cap on the actors per pool (the plan's replicas above it share actors; "
                     f"default {DEFAULT_MAX_REPLICAS}, for a small machine).")


def ray_option(fn):
    return click.option("--ray", "ray_address", is_flag=False, flag_value="", default=None,
                        metavar="[ADDRESS]", help=RAY_HELP)(fn)


def max_replicas_option(fn):
    return click.option("--max-replicas", default=DEFAULT_MAX_REPLICAS, show_default=True,
                        type=click.IntRange(min=1), help=MAX_REPLICAS_HELP)(fn)
