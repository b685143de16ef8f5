"""Ray Serve config (`serve run serve.yaml` / `serve deploy serve.yaml`): one application.

Fields follow Ray 2.60: `ray.serve.schema.ServeDeploySchema` for the file, and
`ray.serve.llm.LLMConfig` (model_loading_config, accelerator_type, accelerator_config,
engine_kwargs, deployment_config.autoscaling_config, placement_group_config.bundle_per_worker)
for each LLM role, as docs/schemas/ray-serve-llm.schema.json writes them down from Ray's
documentation (the source is named there). The application's builder is `agentc.deploy.serve_app:build_app`: it reads
`args.manifest` and `agentc run`'s program options (`weights`, `index`, `tool`, ...)
and deploys one `pool-<pool>` deployment of `PoolDeployment` per pool the plan uses,
behind an HTTP ingress. The `deployments` list sets each pool part's replicas and
resources (`pool_options`, which the builder uses too) and pins it to its pool. The
`llm` entries give each LLM group as `ray.serve.llm` serves it on GPUs
(`build_pd_openai_app` with prefill_config/decode_config, or `build_openai_app` with
llm_configs when aggregated): on their own as those builders' args, and to the builder,
which starts the groups on accelerator pools (`on_engines`) from these same LLMConfigs
and sends the agent's calls there (a CPU plan's LLM ops run in its pool deployments, on
agentc's own decoder).
"""

from __future__ import annotations

from agentc.deploy.plan import Deployment, Device, LLMGroup, Role, pool_resource, slug, stated, yaml_text

APP_BUILDER = "agentc.deploy.serve_app:build_app"
POOL_ACTOR = "agentc.deploy.serve_app:PoolDeployment"
NIXL = {"kv_connector": "NixlConnector", "kv_role": "kv_both"}


def autoscaling(replicas: int) -> dict:
    """Serve's autoscaling bounds for a part the plan gives `replicas` replicas (LLM roles
    and pool deployments alike). The plan sized `replicas` for its load and pays for that
    many devices, so it is the ceiling and the start; idle time scales down to one, never
    to zero (a cold replica loads weights and compiles kernels before its first answer)."""
    return {"min_replicas": 1, "initial_replicas": replicas, "max_replicas": replicas}


def llm_config(g: LLMGroup, r: Role) -> dict:
    """One LLMConfig: the plan's tp per engine, its replicas as the autoscaling bounds."""
    engine = {"tensor_parallel_size": r.tp}
    if g.quantization:
        engine["quantization"] = g.quantization
    if not g.aggregated:
        engine["kv_transfer_config"] = dict(NIXL)
    cfg = {
        "model_loading_config": {"model_id": g.name, "model_source": g.model_source},
        "engine_kwargs": engine,
        "deployment_config": {"autoscaling_config": autoscaling(r.replicas)},
        "placement_group_config": {"bundle_per_worker": {r.device.ray_resource: 1,
                                                         pool_resource(r.device.pool): 1}},
    }
    if r.device.accelerator_type:
        cfg["accelerator_type"] = r.device.accelerator_type
        if r.device.ray_resource != "GPU":
            # Ray infers the hardware kind from the bundles (no GPU or TPU there: CPU) and
            # refuses an accelerator_type on CPU; Gaudi's bundles hold HPUs, so say "gpu"
            # (the kind Ray expects of every non-TPU accelerator_type).
            cfg["accelerator_config"] = {"kind": "gpu"}
    return cfg


def deployment_name(pool: str) -> str:
    """The Serve deployment of a pool's part (the config's `deployments` override it by name)."""
    return f"pool-{slug(pool)}"


# The actor options Serve takes from ray_run's pool specs (Serve restarts replicas itself).
_SERVE_ACTOR_KEYS = ("num_cpus", "num_gpus", "resources", "accelerator_type")


def pool_options(device: Device, tp: int) -> dict:
    """A pool deployment's Serve options (serve.yaml's `deployments` and the builder's
    alike). CPU pools: `ray_actor_options` of tp CPUs on nodes of the pool. Accelerator
    pools: what `agentc run --ray` asks for each of their actors (ray_run.pool_spec, the
    one place that says it): a placement group per replica of one bundle, tp devices with
    the pool's resource and Ray's accelerator label, and actor options that fill it
    exactly (Serve puts the replica in the bundle, so its demand must fit there)."""
    from agentc.deploy.ray_run import PoolGroup, pool_spec

    if device.vendor == "cpu":
        return {"ray_actor_options": {"num_cpus": tp, "resources": {pool_resource(device.pool): 1}}}
    spec = pool_spec(PoolGroup(device.pool, 1, 1, {}, device, tp), pinned=True)
    opts = {k: spec.actor[k] for k in _SERVE_ACTOR_KEYS if spec.actor.get(k) is not None}
    return {"ray_actor_options": opts, "placement_group_bundles": [dict(spec.bundles[0])]}


def on_engines(g: LLMGroup) -> bool:
    """Whether `ray.serve.llm` serves LLM group `g`: a role on an accelerator pool (vLLM's
    engines run there; agentc's own decoder runs a group placed on CPU pools only)."""
    return any(r.device.vendor != "cpu" for r in g.roles)


def _llm_entry(g: LLMGroup) -> dict:
    entry = {"name": g.name, "model": g.model, "calls": list(g.calls), "engine_ops": list(g.engine_ops)}
    if g.aggregated:
        entry["builder"] = "ray.serve.llm:build_openai_app"
        entry["args"] = {"llm_configs": [llm_config(g, g.roles[0])]}
    else:
        entry["builder"] = "ray.serve.llm:build_pd_openai_app"
        entry["args"] = {"prefill_config": llm_config(g, g.roles[0]), "decode_config": llm_config(g, g.roles[1])}
    return entry


def render(dep: Deployment, run_args: dict[str, dict[str, str]] | None = None) -> dict[str, bytes]:
    pools, deployments = [], []
    for part in dep.pools:
        if not part.device.has_code:  # stated in dep.notes: nothing to load there
            continue
        name = deployment_name(part.device.pool)
        pools.append({"name": part.device.pool, "deployment": name, "class": POOL_ACTOR, "ops": list(part.ops)})
        deployments.append({"name": name, "autoscaling_config": autoscaling(part.replicas),
                            **pool_options(part.device, part.tp)})
    notes = stated(dep)
    app = {
        "name": slug(dep.agent), "route_prefix": "/", "import_path": APP_BUILDER,
        "args": {"manifest": "manifest.json", "llm": [_llm_entry(g) for g in dep.llms], "pools": pools,
                 "notes": notes,
                 **{key: [f"{k}={v}" for k, v in sorted((run_args or {}).get(key, {}).items())]
                    for key in ("weights", "index", "tool")}},
        "deployments": deployments,
    }
    head = [f"Ray Serve config for agent '{dep.agent}', written by `agentc deploy --format ray-serve`.",
            "Run `serve run serve.yaml` here (relative paths and tool modules start in the working",
            "directory); args take `agentc run`'s options as NAME=VALUE lists (weights, index, tool:",
            "`agentc deploy --weights/--index/--tool` fill them).",
            "Ray's nodes of each pool advertise its resource: ray start --resources '{\"agentc_pool_<pool>\": N}'.",
            "Dense LLM groups on accelerator pools start on ray.serve.llm (pip install \"ray[llm]\": vLLM) "
            "from the `llm` entries; MoE calls (moe.* ops) run in their pools' deployments."]
    head += [""] + [f"note: {n}" for n in notes] if notes else []
    return {"serve.yaml": yaml_text([{"applications": [app]}], head)}
