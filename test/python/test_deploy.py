"""`agentc deploy`: every format, on the voice, rag and table3 plans, parses and validates
against the format's own schema, and says what the manifest says.

The expectations are computed here from the manifest JSON directly (which op is whose
prefill/decode, pools, tp, replicas, device classes), not through agentc.deploy.plan;
the schemas are Ray's own pydantic models and Kubernetes' OpenAPI (kubernetes-validate),
the Dynamo CRD schema under docs/schemas/, and lists of the engines' real flags taken
from their documentation.
"""

from __future__ import annotations

import ast
import json
import os
import shlex
import subprocess
import sys

import jsonschema
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from helpers import tree_bytes

import ray.util.accelerators.accelerators as ray_accelerators
from agentc.cli import cli
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import DeploymentSchema, ServeDeploySchema

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = {
    "voice": ["examples/voice_agent.agent"],
    "rag": ["examples/rag_agent.agent"],
    "table3": ["examples/table3.agent", "--cluster", "examples/clusters/table3.toml"],
}
FORMATS = ["ray-serve", "dynamo", "llm-d", "vllm", "sglang"]
K8S_VERSION = "1.30"

# vLLM `vllm serve` engine args and vllm-project/router flags (docs.vllm.ai; router README).
VLLM_FLAGS = {"--host", "--port", "--tensor-parallel-size", "--served-model-name", "--quantization",
              "--kv-transfer-config", "--pipeline-parallel-size", "--max-model-len"}
VLLM_ROUTER_FLAGS = {"--vllm-pd-disaggregation", "--prefill", "--decode", "--worker-urls", "--host", "--port",
                     "--policy"}
# SGLang server args and sglang_router flags (docs.sglang.io server_arguments, pd_disaggregation).
SGLANG_FLAGS = {"--model-path", "--host", "--port", "--tp-size", "--served-model-name", "--quantization",
                "--disaggregation-mode", "--disaggregation-transfer-backend", "--disaggregation-bootstrap-port",
                "--disaggregation-ib-device", "--dp-size"}
SGLANG_ROUTER_FLAGS = {"--pd-disaggregation", "--prefill", "--decode", "--worker-urls", "--host", "--port",
                       "--policy"}
# Kubernetes device-plugin resources by codegen target, written out here on purpose.
K8S_GPU = {"nvvm": "nvidia.com/gpu", "rocdl": "amd.com/gpu"}
RAY_LABELS = {v for k, v in vars(ray_accelerators).items() if k[:1].isupper() and isinstance(v, str)}


def _agentc(*args, cwd):
    return subprocess.run([sys.executable, "-m", "agentc", *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    """Each example compiled once (CPU code only: deploy reads the manifest alone)."""
    root = tmp_path_factory.mktemp("deploy")
    out = {}
    for name, args in EXAMPLES.items():
        dest = str(root / f"{name}-out")
        r = _agentc("compile", *args, "-o", dest, "--targets", "cpu", "-q", cwd=ROOT)
        assert r.returncode == 0, r.stderr
        with open(os.path.join(dest, "manifest.json")) as f:
            out[name] = (dest, json.load(f))
    return out


def _deploy(src, fmt, dest, *extra):
    r = CliRunner().invoke(cli, ["deploy", src, "--format", fmt, "-o", str(dest), "-q", *extra])
    return r


@pytest.fixture(scope="module")
def outputs(plans, tmp_path_factory):
    root = tmp_path_factory.mktemp("deployed")
    out = {}
    for name, (dest, _) in plans.items():
        r = _deploy(dest, "all", root / name)
        assert r.exit_code == 0, r.output
        out[name] = tree_bytes(str(root / name))
    return out


def expected_groups(m):
    """(model, prefill pool, prefill tp, decode pool, decode tp) -> facts, from the manifest."""
    calls = {}
    for o in m["ops"]:
        if o["kind"] in ("llm.prefill", "llm.decode"):
            calls.setdefault(o["call"], {})[o["kind"]] = o
    groups = {}
    for call, ph in sorted(calls.items()):
        p, d = ph["llm.prefill"], ph["llm.decode"]
        key = (p["model"], p["pool"], p["tp"], d["pool"], d["tp"])
        g = groups.setdefault(key, {"prefill": 0, "decode": 0, "calls": []})
        g["prefill"] += p["replicas"]
        g["decode"] += d["replicas"]
        g["calls"].append(call)
    return groups


def pools_of(m):
    return {p["name"]: p for p in m["cluster"]["pools"]}


def _by_model(groups):
    assert len({k[0] for k in groups}) == len(groups), "these examples place each model one way"
    return {k[0]: (k, v) for k, v in groups.items()}


# --------------------------------------------------------------------------- Ray Serve

def llm_config_fields():
    """Field names of Ray's LLMConfig and ModelLoadingConfig, read from Ray's source
    (ray.serve.llm itself needs pyarrow to import)."""
    import ray

    path = os.path.join(os.path.dirname(ray.__file__), "llm/_internal/serve/core/configs/llm_config.py")
    with open(path) as f:
        tree = ast.parse(f.read())
    fields = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in ("LLMConfig", "ModelLoadingConfig"):
            fields[node.name] = {s.target.id for s in node.body
                                 if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
    return fields


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_ray_serve_validates_and_matches_the_plan(name, plans, outputs):
    m = plans[name][1]
    text = outputs[name]["ray-serve/serve.yaml"].decode()
    doc = yaml.safe_load(text)
    ServeDeploySchema.model_validate(doc)
    (app,) = doc["applications"]
    fields = llm_config_fields()
    pools = pools_of(m)
    groups = _by_model(expected_groups(m))
    assert sorted(e["model"] for e in app["args"]["llm"]) == sorted(groups)
    for entry in app["args"]["llm"]:
        (model, ppool, ptp, dpool, dtp), exp = groups[entry["model"]]
        assert sorted(entry["calls"]) == sorted(exp["calls"])
        if ppool == dpool and ptp == dtp:
            assert entry["builder"] == "ray.serve.llm:build_openai_app"
            (cfg,) = entry["args"]["llm_configs"]
            roles = [(cfg, ppool, ptp, max(exp["prefill"], exp["decode"]))]
        else:
            assert entry["builder"] == "ray.serve.llm:build_pd_openai_app"
            roles = [(entry["args"]["prefill_config"], ppool, ptp, exp["prefill"]),
                     (entry["args"]["decode_config"], dpool, dtp, exp["decode"])]
            for cfg, *_ in roles:
                assert cfg["engine_kwargs"]["kv_transfer_config"]["kv_connector"] == "NixlConnector"
        for cfg, pool, tp, replicas in roles:
            assert set(cfg) <= fields["LLMConfig"]
            assert set(cfg["model_loading_config"]) <= fields["ModelLoadingConfig"]
            assert cfg["engine_kwargs"]["tensor_parallel_size"] == tp
            assert_bounds(cfg["deployment_config"]["autoscaling_config"], replicas)
            assert cfg["placement_group_config"]["bundle_per_worker"][f"agentc_pool_{pool}"] == 1
            if "accelerator_type" in cfg:
                assert cfg["accelerator_type"] in RAY_LABELS
                dev, label = pools[pool]["device"].lower().replace("x", ""), cfg["accelerator_type"].lower()
                # Ray names the family, not the generation, for Gaudi ("Intel-GAUDI")
                assert dev in label.replace("x", "") or dev.rstrip("0123456789") in label.split("-")
    # Every op of the plan is served, done inside an engine, run by a pool, or stated.
    served = {o["id"] for o in m["ops"] if o["kind"] in ("llm.prefill", "llm.decode")}
    engine = {i for e in app["args"]["llm"] for i in e["engine_ops"]}
    pooled = {i for p in app["args"]["pools"] for i in p["ops"]}
    stated = " ".join(app["args"]["notes"])
    for o in m["ops"]:
        assert o["id"] in served | engine | pooled or o["id"] in stated, o["id"]
    for d in app["deployments"]:
        pool = d["name"].removeprefix("pool-")
        ops = [o for o in m["ops"] if o["pool"] == pool and o["id"] in pooled]
        assert "num_replicas" not in d   # Serve refuses it beside autoscaling_config
        assert_bounds(d["autoscaling_config"], max(o["replicas"] for o in ops))
        opts = d["ray_actor_options"]
        tp = max(o["tp"] for o in ops)
        # a CPU pool's replica takes a pool unit; an accelerator pool's holds tp devices of it
        assert opts["resources"][f"agentc_pool_{pool}"] == (1 if pools[pool]["target"] == "llvm-cpu" else tp)
        dev = pools[pool]["device"]
        assert opts.get("accelerator_type") == RAY_LABEL_OF.get(dev)
        if pools[pool]["target"] == "llvm-cpu":
            assert opts["num_cpus"] == tp
        elif pools[pool]["target"] in K8S_GPU:
            assert opts["num_gpus"] == tp


# The device classes of the examples' clusters as Ray labels them (ray.util.accelerators;
# A40 and the abstract HP/CO classes have none), written out here on purpose.
RAY_LABEL_OF = {"A100": "A100", "H100": "H100", "B200": "B200", "L40S": "L40S",
                "MI300x": "AMD-Instinct-MI300X-OAM", "Gaudi3": "Intel-GAUDI"}


def _llm_schema():
    with open(os.path.join(ROOT, "docs/schemas/ray-serve-llm.schema.json")) as f:
        return json.load(f)


def assert_bounds(cfg, replicas):
    """The rule docs/deploy.md states: start at and never exceed the plan's replicas,
    scale down to one when idle."""
    assert cfg == {"min_replicas": 1, "initial_replicas": replicas, "max_replicas": replicas}
    AutoscalingConfig.model_validate(cfg)


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_ray_serve_llm_args_follow_rays_documented_fields(name, plans, outputs):
    """Each LLM group's builder args validate against the schema written from Ray's docs
    (ray.serve.llm itself cannot be imported here); their deployment_config against Ray's
    own DeploymentSchema; tp, replicas and the device class are the manifest's."""
    m = plans[name][1]
    (app,) = yaml.safe_load(outputs[name]["ray-serve/serve.yaml"])["applications"]
    validator = jsonschema.Draft202012Validator(_llm_schema())
    groups = _by_model(expected_groups(m))
    device = {p["name"]: p["device"] for p in m["cluster"]["pools"]}
    for entry in app["args"]["llm"]:
        validator.validate(entry["args"])
        (model, ppool, ptp, dpool, dtp), exp = groups[entry["model"]]
        if entry["builder"] == "ray.serve.llm:build_pd_openai_app":
            roles = [(entry["args"]["prefill_config"], ppool, ptp, exp["prefill"]),
                     (entry["args"]["decode_config"], dpool, dtp, exp["decode"])]
            ids = {cfg["model_loading_config"]["model_id"] for cfg, *_ in roles}
            assert len(ids) == 1   # build_pd_openai_app refuses a P/D model id mismatch
        else:
            (cfg,) = entry["args"]["llm_configs"]
            roles = [(cfg, ppool, ptp, max(exp["prefill"], exp["decode"]))]
        for cfg, pool, tp, replicas in roles:
            assert cfg["engine_kwargs"]["tensor_parallel_size"] == tp
            assert_bounds(cfg["deployment_config"]["autoscaling_config"], replicas)
            DeploymentSchema.model_validate({"name": "x", **cfg["deployment_config"]})
            assert cfg.get("accelerator_type") == RAY_LABEL_OF.get(device[pool])


def test_the_llm_schema_names_only_what_ray_has():
    """The schema's copies of Ray's lists match the installed Ray: accelerator labels,
    Serve's autoscaling and deployment option names."""
    schema = _llm_schema()["$defs"]
    assert set(schema["acceleratorType"]["enum"]) <= RAY_LABELS
    assert set(schema["autoscalingConfig"]["properties"]) <= set(AutoscalingConfig.model_fields)
    assert set(schema["deploymentConfig"]["properties"]) <= set(DeploymentSchema.model_fields)


def test_a_gaudi_role_says_its_hardware_kind(plans, tmp_path):
    """Ray infers a CPU deployment from bundles without GPU or TPU and then refuses any
    accelerator_type: a decode moved onto the voice cluster's Gaudi3 pool (HPU bundles)
    carries accelerator_config kind gpu, and the schema refuses the config without it."""
    m = plans["voice"][1]
    gaudi = next(p["name"] for p in m["cluster"]["pools"] if p["device"] == "Gaudi3")
    ops = [dict(o, pool=gaudi, tp=1) if o["kind"] == "llm.decode" else o for o in m["ops"]]
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(dict(m, ops=ops)))
    r = _deploy(str(path), "ray-serve", tmp_path / "o")
    assert r.exit_code == 0, r.output
    (app,) = yaml.safe_load((tmp_path / "o" / "serve.yaml").read_text())["applications"]
    validator = jsonschema.Draft202012Validator(_llm_schema())
    disaggregated = [e for e in app["args"]["llm"] if "decode_config" in e["args"]]
    assert disaggregated
    for entry in disaggregated:
        cfg = entry["args"]["decode_config"]
        assert cfg["accelerator_type"] == "Intel-GAUDI" and cfg["accelerator_config"] == {"kind": "gpu"}
        assert cfg["placement_group_config"]["bundle_per_worker"] == {"HPU": 1, f"agentc_pool_{gaudi}": 1}
        validator.validate(entry["args"])
        del cfg["accelerator_config"]
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(entry["args"])


@pytest.mark.parametrize("breakage", ["no kv transfer", "both bundle forms", "unknown field", "tp zero",
                                      "num_replicas beside autoscaling", "unknown accelerator"])
def test_the_llm_schema_rejects_a_bad_config(breakage, outputs):
    entries = [e for name in EXAMPLES for e in yaml.safe_load(outputs[name]["ray-serve/serve.yaml"])
               ["applications"][0]["args"]["llm"]]
    entry = next(e for e in entries if "prefill_config" in e["args"])   # a disaggregated group
    cfg = entry["args"]["prefill_config"]
    jsonschema.Draft202012Validator(_llm_schema()).validate(entry["args"])
    if breakage == "no kv transfer":
        del cfg["engine_kwargs"]["kv_transfer_config"]
    elif breakage == "both bundle forms":
        cfg["placement_group_config"]["bundles"] = [{"GPU": 1}]
    elif breakage == "unknown field":
        cfg["resources_per_bundle"] = {"GPU": 1}
    elif breakage == "tp zero":
        cfg["engine_kwargs"]["tensor_parallel_size"] = 0
    elif breakage == "num_replicas beside autoscaling":
        cfg["deployment_config"]["num_replicas"] = 2
    else:
        cfg["accelerator_type"] = "B201"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(_llm_schema()).validate(entry["args"])


def test_ray_serve_schema_rejects_a_bad_config(plans, outputs):
    doc = yaml.safe_load(outputs["voice"]["ray-serve/serve.yaml"])
    doc["applications"][0]["deployments"][0]["num_replicas"] = "many"
    with pytest.raises(Exception):
        ServeDeploySchema.model_validate(doc)


def test_voice_pools_without_code_are_stated(plans, outputs):
    m = plans["voice"][1]
    none_pools = {p["name"] for p in m["cluster"]["pools"] if p["target"] == "none"}
    stranded = [o["id"] for o in m["ops"] if o["pool"] in none_pools]
    assert stranded, "the voice plan puts work on Gaudi3"
    for fmt, rel in (("ray-serve", "serve.yaml"), ("dynamo", "dynamo.yaml"), ("llm-d", "llm-d.yaml"),
                     ("vllm", "llama.sh"), ("sglang", "llama.sh")):
        text = outputs["voice"][f"{fmt}/{rel}"].decode()
        for op in stranded:
            assert op in text, (fmt, op)


# --------------------------------------------------------------------------- Dynamo

def _dynamo_schema():
    with open(os.path.join(ROOT, "docs/schemas/dynamographdeployment.v1alpha1.schema.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_dynamo_validates_and_matches_the_plan(name, plans, outputs):
    m = plans[name][1]
    (doc,) = list(yaml.safe_load_all(outputs[name]["dynamo/dynamo.yaml"]))
    jsonschema.validate(doc, _dynamo_schema())
    services = doc["spec"]["services"]
    assert services["Frontend"]["componentType"] == "frontend"
    pools = pools_of(m)
    workers = [s for s in services.values() if s["componentType"] == "worker"]
    for (model, ppool, ptp, dpool, dtp), exp in expected_groups(m).items():
        agg = ppool == dpool and ptp == dtp
        want = [(None, ppool, ptp, max(exp["prefill"], exp["decode"]))] if agg else \
            [("prefill", ppool, ptp, exp["prefill"]), ("decode", dpool, dtp, exp["decode"])]
        for sub, pool, tp, replicas in want:
            (w,) = [w for w in workers if w.get("subComponentType") == sub
                    and w["extraPodSpec"]["nodeSelector"]["agentc.dev/device-class"] == pools[pool]["device"]]
            args = w["extraPodSpec"]["mainContainer"]["args"]
            assert w["replicas"] == replicas
            assert args[args.index("--tensor-parallel-size") + 1] == str(tp)
            assert (f"--is-{sub}-worker" in args) if sub else not any(a.startswith("--is-") for a in args)
            limits = w["resources"]["limits"]
            if pools[pool]["target"] == "nvvm":
                assert limits["gpu"] == str(tp)
            else:
                assert list(limits["custom"].values()) == [str(tp)]
                if pools[pool]["target"] in K8S_GPU:
                    assert list(limits["custom"]) == [K8S_GPU[pools[pool]["target"]]]


def test_dynamo_schema_rejects_a_bad_graph(outputs):
    doc = yaml.safe_load(outputs["voice"]["dynamo/dynamo.yaml"])
    worker = next(s for s in doc["spec"]["services"].values() if s["componentType"] == "worker")
    worker["resources"]["limits"]["gpus"] = "1"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, _dynamo_schema())


# --------------------------------------------------------------------------- llm-d

@pytest.mark.parametrize("name", list(EXAMPLES))
def test_llm_d_objects_validate_and_match_the_plan(name, plans, outputs):
    m = plans[name][1]
    docs = list(yaml.safe_load_all(outputs[name]["llm-d/llm-d.yaml"]))
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert {d["kind"] for d in docs} <= {"Deployment", "Service", "ConfigMap"}
    pools = pools_of(m)
    deps = [d for d in docs if d["kind"] == "Deployment"]
    for (model, ppool, ptp, dpool, dtp), exp in expected_groups(m).items():
        agg = ppool == dpool and ptp == dtp
        want = [("both", ppool, ptp, max(exp["prefill"], exp["decode"]))] if agg else \
            [("prefill", ppool, ptp, exp["prefill"]), ("decode", dpool, dtp, exp["decode"])]
        for role, pool, tp, replicas in want:
            (d,) = [d for d in deps if d["metadata"]["labels"]["llm-d.ai/role"] == role
                    and d["metadata"]["labels"]["agentc.dev/pool"] == pool]
            spec = d["spec"]["template"]["spec"]
            (c,) = spec["containers"]
            assert d["spec"]["replicas"] == replicas
            assert c["args"][c["args"].index("--tensor-parallel-size") + 1] == str(tp)
            assert spec["nodeSelector"]["agentc.dev/device-class"] == pools[pool]["device"]
            assert list(c["resources"]["limits"].values()) == [str(tp)]
            if pools[pool]["target"] in K8S_GPU:
                assert list(c["resources"]["limits"]) == [K8S_GPU[pools[pool]["target"]]]
            assert ("--kv-transfer-config" in c["args"]) == (not agg)
    assert any(d["kind"] == "ConfigMap" for d in docs)


def test_voice_llm_d_requests_the_vendor_of_each_llm_pool(plans, outputs):
    """Each Deployment asks for its device's Kubernetes resource: the set follows the
    vendors the plan put the LLM phases on (the cost model decides which)."""
    manifest = plans["voice"][1]
    device_of = {p["name"]: p["device"] for p in manifest["cluster"]["pools"]}
    resource = {"A100": "nvidia.com/gpu", "H100": "nvidia.com/gpu", "B200": "nvidia.com/gpu", "A40": "nvidia.com/gpu",
                "L40S": "nvidia.com/gpu", "MI300x": "amd.com/gpu", "Gaudi3": "habana.ai/gaudi"}
    expected = {resource[device_of[o["pool"]]] for o in manifest["ops"] if o["kind"] in ("llm.prefill", "llm.decode")}
    docs = list(yaml.safe_load_all(outputs["voice"]["llm-d/llm-d.yaml"]))
    keys = {k for d in docs if d["kind"] == "Deployment"
            for k in d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]}
    assert keys == expected and expected


def test_kubernetes_validate_rejects_a_bad_deployment(outputs):
    doc = next(yaml.safe_load_all(outputs["voice"]["llm-d/llm-d.yaml"]))
    doc["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


# --------------------------------------------------------------------------- vLLM / SGLang

def _script_roles(text):
    """role -> list of argv (server lines, or the router's), from the bash case arms."""
    roles, role = {}, None
    for raw in text.splitlines():
        s = raw.strip()
        if s.endswith(")") and " " not in s and s != "esac":
            role = s[:-1]
            roles[role] = []
        elif role and (s.endswith(" &") or s.startswith("exec ")):
            words = shlex.split(s.removeprefix("exec ").removesuffix(" &"))
            while words and "=" in words[0] and not words[0].startswith("-"):
                words.pop(0)  # environment assignments
            roles[role].append(words)
    return roles


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_launch_scripts_parse_and_match_the_plan(engine, name, plans, outputs, tmp_path):
    m = plans[name][1]
    flags, router_flags = (VLLM_FLAGS, VLLM_ROUTER_FLAGS) if engine == "vllm" else (SGLANG_FLAGS, SGLANG_ROUTER_FLAGS)
    tp_flag = "--tensor-parallel-size" if engine == "vllm" else "--tp-size"
    scripts = {k: v for k, v in outputs[name].items() if k.startswith(f"{engine}/") and k.endswith(".sh")}
    groups = expected_groups(m)
    assert len(scripts) == len(groups)
    for rel, data in scripts.items():
        path = tmp_path / os.path.basename(rel)
        path.write_bytes(data)
        r = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        roles = _script_roles(data.decode())
        (router,) = roles.pop("router")
        assert {w for w in router if w.startswith("--")} <= router_flags
        for lines in roles.values():
            for argv in lines:
                assert {w for w in argv if w.startswith("--")} <= flags, argv
        model = next(s.split()[2] for s in data.decode().splitlines() if s.startswith("# model: "))
        (key,) = [k for k in groups if k[0] == model]
        (_, ppool, ptp, dpool, dtp), exp = key, groups[key]
        if ppool == dpool and ptp == dtp:
            assert set(roles) == {"serve"}
            want = {"serve": (ptp, max(exp["prefill"], exp["decode"]))}
        else:
            assert set(roles) == {"prefill", "decode"}
            want = {"prefill": (ptp, exp["prefill"]), "decode": (dtp, exp["decode"])}
        for role, (tp, replicas) in want.items():
            assert len(roles[role]) == replicas
            for argv in roles[role]:
                assert argv[argv.index(tp_flag) + 1] == str(tp)
                if engine == "sglang" and role != "serve":
                    assert argv[argv.index("--disaggregation-mode") + 1] == role
                if engine == "vllm" and role != "serve":
                    assert json.loads(argv[argv.index("--kv-transfer-config") + 1])["kv_connector"] == "NixlConnector"


# --------------------------------------------------------------------------- CLI behaviour

def test_output_is_deterministic(plans, tmp_path):
    dest = plans["voice"][0]
    a = _deploy(dest, "all", tmp_path / "a")
    b = _deploy(os.path.join(dest, "manifest.json"), "all", tmp_path / "b")
    assert a.exit_code == b.exit_code == 0
    assert tree_bytes(str(tmp_path / "a")) == tree_bytes(str(tmp_path / "b"))
    assert b"/tmp" not in b"".join(tree_bytes(str(tmp_path / "a")).values()).replace(b"/tmp/", b"")


def test_single_format_writes_only_its_files(plans, tmp_path):
    r = _deploy(plans["rag"][0], "dynamo", tmp_path / "d")
    assert r.exit_code == 0, r.output
    assert sorted(tree_bytes(str(tmp_path / "d"))) == [".agentc-output", "dynamo.yaml"]


def test_model_override(plans, tmp_path):
    r = _deploy(plans["table3"][0], "vllm", tmp_path / "v", "--model", "m=/models/my-llama")
    assert r.exit_code == 0, r.output
    assert b"vllm serve /models/my-llama " in (tmp_path / "v" / "m.sh").read_bytes()


def test_missing_manifest_is_an_error(tmp_path):
    r = _deploy(str(tmp_path / "nowhere"), "vllm", tmp_path / "o")
    assert r.exit_code == 1
    assert "error: no manifest at" in r.output
    assert not (tmp_path / "o").exists()


def test_unknown_format_is_an_error(plans, tmp_path):
    r = _deploy(plans["voice"][0], "kserve", tmp_path / "o")
    assert r.exit_code == 1
    assert "unknown deploy format 'kserve'" in r.output
    assert not (tmp_path / "o").exists()


def test_other_schema_version_is_a_located_error(plans, tmp_path):
    m = dict(plans["voice"][1], schema_version="2.0")
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(m, indent=2, sort_keys=True))
    line = next(i for i, s in enumerate(path.read_text().splitlines(), 1) if '"schema_version"' in s)
    r = _deploy(str(path), "ray-serve", tmp_path / "o")
    assert r.exit_code == 1
    assert f"{path}:{line}:" in r.output and "error: manifest schema version '2.0'" in r.output


def test_manifest_without_call_fields_is_an_error(plans, tmp_path):
    m = plans["voice"][1]
    m = dict(m, ops=[{k: v for k, v in o.items() if k != "call"} for o in m["ops"]])
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(m))
    r = _deploy(str(path), "vllm", tmp_path / "o")
    assert r.exit_code == 1 and "compile the source again" in r.output


def test_refuses_to_replace_a_foreign_directory(plans, tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "mine.txt").write_text("keep")
    r = _deploy(plans["voice"][0], "vllm", tmp_path / "o")
    assert r.exit_code == 1
    assert (tmp_path / "o" / "mine.txt").read_text() == "keep"


def test_op_on_an_unknown_pool_is_a_located_error(plans, tmp_path):
    m = plans["voice"][1]
    ops = [dict(o, pool="nowhere") if o["id"] == "ans.prefill" else o for o in m["ops"]]
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(dict(m, ops=ops), indent=2, sort_keys=True))
    r = _deploy(str(path), "dynamo", tmp_path / "o")
    assert r.exit_code == 1
    assert f"{path}:" in r.output and "op 'ans.prefill' lacks an id, kind, known pool" in r.output


def test_calls_placed_differently_get_their_own_groups(plans, tmp_path):
    m = plans["voice"][1]
    ops = [dict(o, pool="a100", device_class="A100", tp=2) if o["id"] == "ans.1.prefill" else o for o in m["ops"]]
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(dict(m, ops=ops)))
    r = _deploy(str(path), "ray-serve", tmp_path / "o")
    assert r.exit_code == 0, r.output
    (app,) = yaml.safe_load((tmp_path / "o" / "serve.yaml").read_text())["applications"]
    by_calls = {tuple(e["calls"]): e for e in app["args"]["llm"]}
    assert set(by_calls) == {("ans",), ("ans.1",)}
    assert len({e["name"] for e in by_calls.values()}) == 2
    moved = by_calls[("ans.1",)]["args"]["prefill_config"]
    assert moved["engine_kwargs"]["tensor_parallel_size"] == 2 and moved["accelerator_type"] == "A100"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_plan_without_ops_deploys_empty(fmt, plans, tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(dict(plans["rag"][1], ops=[], edges=[])))
    r = _deploy(str(path), fmt, tmp_path / "o")
    assert r.exit_code == 0, r.output
