"""The Ray Serve builder (agentc.deploy.serve_app) on GPU plans, without GPUs.

- Pool deployments: rag and voice planned on the default (GPU) cluster; each pool's
  deployment, as Ray itself builds it (Ray's build_app and DeploymentSchema), asks for
  the manifest's tp devices of the pool's kind with Ray's accelerator label, one
  placement-group bundle per replica that the replica's demand (Ray's own rule) fills,
  within the manifest's replicas; serve.yaml's `deployments` say the same.
- LLM groups on accelerator pools: the builder passes ray.serve.llm exactly the
  LLMConfigs serve.yaml holds (valid against docs/schemas/ray-serve-llm.schema.json),
  through the calls Ray's source defines (read from the installed Ray: ray.serve.llm
  cannot be imported here, it needs vLLM and pyarrow); without it the builder names
  what to install. The agent's LLM calls go to the engine as one completion each.
- On this GPU-less Ray: the application fails to deploy at once with the missing devices
  as its message (no traceback), and `agentc serve --ray` exits 1 saying the same.
"""

from __future__ import annotations

import ast
import json
import os
import sys
import types

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from agentc.cli import cli
from agentc.diagnostics import UsageError

from helpers import cli_ok, deploy_serve_config, free_port, serve_shutdown

pytestmark = pytest.mark.xdist_group("ray")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = {"rag": "examples/rag_agent.agent", "voice": "examples/voice_agent.agent"}

# Written out here on purpose: Ray's accelerator labels and device resources of the
# default cluster's classes (ray.util.accelerators; Gaudi is an HPU to Ray).
LABEL = {"A100": "A100", "H100": "H100", "B200": "B200", "MI300x": "AMD-Instinct-MI300X-OAM",
         "Gaudi3": "Intel-GAUDI"}
RESOURCE = {"A100": "GPU", "H100": "GPU", "B200": "GPU", "MI300x": "GPU", "Gaudi3": "HPU"}
RAY_SITE = os.path.dirname(os.path.dirname(os.path.abspath(yaml.__file__)))


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    """Each example compiled on the default cluster and deployed as ray-serve; with
    the builder's view of it (program, placed compilation, manifest)."""
    from agentc.deploy.ray_run import Program, compile_placed
    from agentc.runtime import session

    root = tmp_path_factory.mktemp("servegpu")
    out = {}
    for name, src in EXAMPLES.items():
        d = root / name
        cli_ok("compile", os.path.join(ROOT, src), "-o", str(d / "out"), "--targets", "cpu", "-q")
        cli_ok("deploy", str(d / "out"), "--format", "ray-serve", "-o", str(d / "dep"), "-q")
        source, cluster = session.source_of(str(d / "out"))
        prog = Program.make(source, cluster or session.CPU_CLUSTER)
        m = json.loads((d / "out" / "manifest.json").read_text())
        doc = yaml.safe_load((d / "dep" / "serve.yaml").read_text())
        out[name] = {"dir": d, "prog": prog, "c": compile_placed(prog), "m": m, "doc": doc}
    return out


def _llm_calls(m):
    """The LLM calls of the manifest (every op of a call carries its name)."""
    return {o["call"] for o in m["ops"] if o["kind"] in ("llm.prefill", "llm.decode")}


def _expected_pools(m):
    """Per pool, from the manifest alone: (device class, tp, replicas) of the ops left to
    agentc's pool deployments once the LLM calls (all on GPU pools in these plans) go to
    ray.serve.llm."""
    calls = _llm_calls(m)
    device = {p["name"]: p["device"] for p in m["cluster"]["pools"]}
    by_pool = {}
    for o in m["ops"]:
        if o.get("call") in calls and o["kind"].startswith("llm."):
            continue
        by_pool.setdefault(o["pool"], []).append(o)
    return {p: (device[p], max(o["tp"] for o in ops), max(o["replicas"] for o in ops)) for p, ops in by_pool.items()}


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_pool_deployments_as_ray_builds_them_hold_the_plans_devices(name, plans):
    from ray._common.utils import resources_from_ray_options
    from ray.serve._private.build_app import build_app as ray_build
    from ray.serve.deployment import deployment_to_schema

    from agentc.deploy import plan, serve_app

    p = plans[name]
    m = p["m"]
    engines = serve_app.engine_groups(plan.build(m))
    assert {c for g in engines for c in g.calls} == _llm_calls(m), "every LLM call of these plans is on GPUs"
    skip = frozenset(c for g in engines for c in g.calls)
    apps = serve_app.pool_deployments(p["prog"], p["c"], m, None, skip)
    expected = _expected_pools(m)
    assert set(apps) == set(expected)
    written = {d["name"]: d for d in p["doc"]["applications"][0]["deployments"]}
    accelerated = 0
    for pool, app in sorted(apps.items()):
        (dep,) = ray_build(app, name="t").deployments
        schema = deployment_to_schema(dep)
        bundles = schema.placement_group_bundles if isinstance(schema.placement_group_bundles, list) else None
        device, tp, replicas = expected[pool]
        assert schema.name == f"pool-{pool}"
        auto = schema.autoscaling_config
        auto = auto if isinstance(auto, dict) else auto.model_dump()
        assert (auto["min_replicas"], auto["initial_replicas"], auto["max_replicas"]) == (1, replicas, replicas)
        opts = {k: v for k, v in schema.ray_actor_options.model_dump().items() if v is not None and v != {}}
        if device in RESOURCE:
            accelerated += 1
            bundle = {RESOURCE[device]: tp, f"agentc_pool_{pool}": tp, f"accelerator_type:{LABEL[device]}": 0.001}
            assert bundles == [bundle]          # one bundle per replica
            assert opts["accelerator_type"] == LABEL[device]
            # Serve places a replica in its bundle only if the replica's demand fits.
            demand = {k: v for k, v in resources_from_ray_options(opts).items() if v}
            assert demand == bundle
        else:   # a CPU pool: as before, tp CPUs on the pool's nodes, no placement group
            assert opts == {"num_cpus": tp, "resources": {f"agentc_pool_{pool}": 1}}
            assert bundles is None
        if schema.name in written:   # serve.yaml's entry (applied on top by name) agrees
            w = written[schema.name]
            assert w["ray_actor_options"] == opts
            assert w.get("placement_group_bundles") == bundles
    # every accelerator pool that holds non-engine ops has its bundle (rag's plan keeps
    # only its LLM calls on accelerators: its retrieve runs on the EPYC)
    assert accelerated == sum(1 for device, _, _ in expected.values() if device in RESOURCE)
    assert accelerated >= (1 if name == "voice" else 0)
    # Gaudi3 has no code (not in serve.yaml's deployments) but holds voice's speech ops:
    # the builder places them on HPUs, as `agentc run --ray` does.
    if name == "voice":
        assert "gaudi3" in apps and "pool-gaudi3" not in written


def _fake_ray_llm(monkeypatch):
    """ray.serve.llm's names, recording the calls the builder makes (the module cannot be
    imported here); each call's keywords are checked against Ray's source below."""
    calls = []

    class LLMConfig:
        def __init__(self, cfg):
            self.cfg = cfg
            self.experimental_configs = {}

        @classmethod
        def model_validate(cls, cfg):
            return cls(cfg)

    def build_llm_deployment(llm_config, **kw):
        calls.append((llm_config, kw))
        return ("app", len(calls))

    llm = types.ModuleType("ray.serve.llm")
    llm.LLMConfig, llm.build_llm_deployment = LLMConfig, build_llm_deployment
    deployment = types.ModuleType("ray.serve.llm.deployment")
    deployment.PDPrefillServer, deployment.PDDecodeServer = type("PDPrefillServer", (), {}), \
        type("PDDecodeServer", (), {})
    monkeypatch.setitem(sys.modules, "ray.serve.llm", llm)
    monkeypatch.setitem(sys.modules, "ray.serve.llm.deployment", deployment)
    return calls, deployment


def _ray_source(rel):
    import ray

    with open(os.path.join(os.path.dirname(ray.__file__), rel)) as f:
        return ast.parse(f.read())


def _signature(tree, cls, fn):
    """Argument names of `cls.fn` (or module-level `fn`) in Ray's source."""
    scope = tree if cls is None else next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls)
    f = next(n for n in scope.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == fn)
    return {a.arg for a in f.args.args + f.args.kwonlyargs}


def test_the_builder_names_ray_serve_llm_api_as_rays_source_defines_it():
    """The public names the builder imports and the keywords it passes exist in the
    installed Ray's source (read, not imported)."""
    llm = _ray_source("serve/llm/__init__.py")
    assert {"llm_config", "name_prefix", "bind_kwargs", "deployment_cls"} <= _signature(llm, None,
                                                                                       "build_llm_deployment")
    names = {a.asname or a.name for n in ast.walk(_ray_source("serve/llm/deployment.py"))
             if isinstance(n, ast.ImportFrom) for a in n.names}
    assert {"_PDDecodeServer", "_PDPrefillServer"} <= names
    pd = _ray_source("llm/_internal/serve/serving_patterns/prefill_decode/pd_server.py")
    assert "prefill_server" in _signature(pd, "PDDecodeServer", "__init__")
    assert "completions" in {n.name for n in ast.walk(pd) if isinstance(n, ast.AsyncFunctionDef)}
    pd_builder = ast.unparse(_ray_source("llm/_internal/serve/serving_patterns/prefill_decode/builder.py"))
    assert "'NIXL_SIDE_CHANNEL_PORT_BASE', 22000" in pd_builder   # the default the builder repeats
    api = ast.unparse(_ray_source("serve/llm/openai_api_models.py"))
    assert "class CompletionRequest" in api


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_engine_configs_are_the_ones_serve_yaml_holds(name, plans, monkeypatch):
    from agentc.deploy import plan, serve_app

    p = plans[name]
    engines = serve_app.engine_groups(plan.build(p["m"]))
    written = {e["name"]: e for e in p["doc"]["applications"][0]["args"]["llm"]}
    calls, deployment = _fake_ray_llm(monkeypatch)
    apps = serve_app.engine_apps(engines)
    with open(os.path.join(ROOT, "docs/schemas/ray-serve-llm.schema.json")) as f:
        validator = jsonschema.Draft202012Validator(json.load(f))
    it = iter(calls)
    assert set(apps) == {g.name for g in engines} and engines
    for g in engines:
        args = written[g.name]["args"]
        validator.validate(args)
        if g.aggregated:
            cfg, kw = next(it)
            assert written[g.name]["builder"] == "ray.serve.llm:build_openai_app"
            assert [cfg.cfg] == args["llm_configs"] and kw == {}
            assert apps[g.name] == ("app", calls.index((cfg, kw)) + 1)
            continue
        (pcfg, pkw), (dcfg, dkw) = next(it), next(it)
        assert written[g.name]["builder"] == "ray.serve.llm:build_pd_openai_app"
        assert (pcfg.cfg, dcfg.cfg) == (args["prefill_config"], args["decode_config"])
        assert pkw == {"name_prefix": "Prefill:", "deployment_cls": deployment.PDPrefillServer}
        assert dkw == {"name_prefix": "Decode:", "deployment_cls": deployment.PDDecodeServer,
                       "bind_kwargs": {"prefill_server": ("app", calls.index((pcfg, pkw)) + 1)}}
        assert dcfg.experimental_configs == {"NIXL_SIDE_CHANNEL_PORT_BASE": 22000}
        assert apps[g.name] == ("app", calls.index((dcfg, dkw)) + 1)   # the agent calls decode


def test_without_ray_serve_llm_the_builder_names_what_to_install(plans):
    import importlib.util

    from agentc.deploy import plan, serve_app

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    engines = serve_app.engine_groups(plan.build(plans["rag"]["m"]))
    with pytest.raises(UsageError) as err:
        serve_app.engine_apps(engines)
    assert "ray.serve.llm cannot be imported here" in err.value.message
    assert any('pip install "ray[llm]"' in n for n in err.value.notes)


def test_the_agents_llm_calls_go_to_the_engine_as_one_completion(plans):
    """The ingress's walk: an LLM call served by ray.serve.llm is one completion request
    with the call's prompt (its inputs joined as agentc's tokenizer joins them) and the
    decode op's token budget; none of the call's ops reach a pool; the engine's text is
    what the call's consumers get."""
    from agentc.deploy import plan, serve_app
    from agentc.passes._ir import get, walk
    from agentc.passes._plan_ctx import entry_graph
    from agentc.runtime.session import RunConfig

    p = plans["rag"]
    engines = serve_app.engine_groups(plan.build(p["m"]))
    (call,) = _llm_calls(p["m"])
    ops = {get(o, "op_id") or o.name: o for o in walk(entry_graph(p["c"].module)) if get(o, "pool")}
    tokens = int(get(ops[f"{call}.decode"], "tokens"))
    calls = serve_app.engine_calls(p["c"], engines, RunConfig({}, {}, {}))
    assert calls == {call: (engines[0].name, tokens)}
    assert serve_app.engine_calls(p["c"], engines, RunConfig({}, {}, {}, max_new_tokens=5))[call][1] == min(5, tokens)

    sent, prompts = [], []

    class Pool:   # a pool deployment's handle: records the op and answers with a marker
        def __init__(self, pool):
            self.run = types.SimpleNamespace(remote=lambda rid, step, op_id, *args: sent.append(op_id)
                                             or (f"<{op_id}>" if len(ops[op_id].results) == 1 else None))

    class Engine(serve_app.EngineCall):
        def complete(self, prompt, cfg):
            prompts.append(prompt)
            return "the engine's answer"

    handles = {pool: Pool(pool) for pool in {get(o, "pool") for o in ops.values()}}
    engine = Engine(None, engines[0].name, tokens)
    plan_ = serve_app.ServePlan(p["prog"], actors=handles, engines={call: engine})
    result, _ = plan_.submit("r1", ["what is agentc?"])
    # rag: ans = llm(llama, [question, hits, safe]); observe(question, ans); return ans
    assert sorted(sent) == ["e.encode", "e.pool", "hits", "observe", "safe"]   # none of the call's ops
    assert prompts == ["what is agentc?\n<hits>\n<safe>"]
    assert result == "the engine's answer"
    # greedy (top-k 1) is temperature 0; a sampled run says top-k, temperature and seed
    assert engine.request("x", RunConfig({}, {}, {})) == {"model": engines[0].name, "prompt": "x",
                                                         "max_tokens": tokens, "stream": False, "seed": 0,
                                                         "temperature": 0.0}
    sampled = engine.request("x", RunConfig({}, {}, {}, seed=7, top_k=40, temperature=0.7))
    assert (sampled["top_k"], sampled["temperature"], sampled["seed"]) == (40, 0.7, 7)


def test_a_gpu_plan_fails_to_deploy_at_once_in_words(plans, ray_local):
    """On this GPU-less Ray: the application, deployed as `serve run serve.yaml` deploys
    it, is DEPLOY_FAILED with the missing devices as its message (no traceback, no
    placement group waiting); `agentc serve --ray` of the same plan exits 1 with them."""
    from ray.util import placement_group_table

    p = plans["rag"]
    doc = json.loads(json.dumps(p["doc"]))
    (spec,) = doc["applications"]
    spec["args"]["manifest"] = str(p["dir"] / "dep" / "manifest.json")
    before = len(placement_group_table())
    try:
        status = deploy_serve_config(doc, free_port(), 300)
        assert status.status == "DEPLOY_FAILED"
        msg = status.message
        assert "error: the Ray cluster cannot hold the plan's pools" in msg, msg
        assert "GPU: " in msg and "the Ray cluster has 0" in msg and "Traceback" not in msg, msg
        assert 'pip install "ray[llm]"' in msg, msg
    finally:
        serve_shutdown()
    assert len(placement_group_table()) == before

    res = CliRunner().invoke(cli, ["serve", str(p["dir"] / "out"), "--ray"], prog_name="agentc")
    assert res.exit_code == 1, res.output
    assert "error: the Ray cluster cannot hold the plan's pools" in res.output and "Traceback" not in res.output
