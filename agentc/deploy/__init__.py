"""`agentc deploy`: the configs real serving stacks read, written from a manifest.

One module per format, each with `render(Deployment) -> {relative path: bytes}`;
`plan` reads the manifest into the LLM groups and pool parts they all share. The
registry below is the one list of formats (the CLI's choices come from it).
"""

from __future__ import annotations

import importlib

from agentc.deploy import plan
from agentc.diagnostics import UsageError

FORMATS = {
    "ray-serve": "agentc.deploy.ray_serve",
    "dynamo": "agentc.deploy.dynamo",
    "llm-d": "agentc.deploy.llm_d",
    "vllm": "agentc.deploy.vllm",
    "sglang": "agentc.deploy.sglang",
}


def formats(name: str) -> list[str]:
    """The formats `--format name` stands for ('all': every one)."""
    if name == "all":
        return list(FORMATS)
    if name not in FORMATS:
        raise UsageError(f"unknown deploy format '{name}'; formats: {', '.join(FORMATS)}, all")
    return [name]


def render(source: str, fmt: str, model_overrides: dict[str, str] | None = None,
           run_args: dict[str, dict[str, str]] | None = None) -> dict[str, bytes]:
    """Files (relative path -> bytes) for `--format fmt` from the manifest at `source`.

    With 'all', each format goes into a folder of its name. The Ray Serve config names
    `manifest.json`, so a copy of the manifest goes beside it, with the directory's
    recorded plan module (`*.host.mlir`: what the builder resumes, so a re-planned
    directory deploys its re-plan); `run_args` (`weights`, `index`, `tool`: NAME ->
    VALUE, as `agentc run` takes them) become the application's args."""
    import glob
    import os

    names = formats(fmt)
    path = plan.manifest_path(source)
    manifest = plan.load(path)
    dep = plan.build(manifest, model_overrides)
    out: dict[str, bytes] = {}
    for name in names:
        module = importlib.import_module(FORMATS[name])
        files = module.render(dep, run_args or {}) if name == "ray-serve" else module.render(dep)
        if name == "ray-serve":
            with open(path, "rb") as f:
                files["manifest.json"] = f.read()
            here = os.path.dirname(os.path.abspath(path))
            for mod in sorted(glob.glob(os.path.join(glob.escape(here), "*.host.mlir"))):
                with open(mod, "rb") as f:
                    files[os.path.basename(mod)] = f.read()
        prefix = f"{name}/" if len(names) > 1 else ""
        out.update({prefix + rel: data for rel, data in files.items()})
    return out
