"""llm-d: disaggregated prefill/decode per LLM as standard Kubernetes objects.

llm-d's model-service chart renders each role as an apps/v1 Deployment of vLLM pods
labelled `llm-d.ai/inferenceServing: "true"`, `llm-d.ai/model` and `llm-d.ai/role`
(prefill/decode), with NixlConnector KV transfer between them; the gateway's
InferencePool and endpoint picker select pods by those labels. agentc writes the same
core objects (Deployments, a Service per model, a ConfigMap stating what is not
exported), so `kubernetes-validate` checks them; the InferencePool and gateway come from
llm-d's own charts. Mixed vendors: each Deployment asks for its device class's resource
(nvidia.com/gpu, amd.com/gpu, habana.ai/gaudi) and selects nodes by device class.
"""

from __future__ import annotations

import json

from agentc.deploy.plan import Deployment, LLMGroup, Role, slug, stated, yaml_text

DEVICE_LABEL = "agentc.dev/device-class"
PORT = 8000
IMAGES = {"nvidia": "vllm/vllm-openai:latest", "amd": "rocm/vllm:latest"}
DEFAULT_IMAGE = "vllm/vllm-openai:latest"
NIXL = json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_both"}, sort_keys=True)


def _labels(g: LLMGroup, r: Role) -> dict:
    return {"llm-d.ai/inferenceServing": "true", "llm-d.ai/model": g.name, "llm-d.ai/role": r.phase,
            "agentc.dev/pool": slug(r.device.pool)}


def _deployment(dep: Deployment, g: LLMGroup, r: Role) -> dict:
    args = [g.model_source, "--port", str(PORT), "--served-model-name", g.name,
            "--tensor-parallel-size", str(r.tp)]
    if g.quantization:
        args += ["--quantization", g.quantization]
    if not g.aggregated:
        args += ["--kv-transfer-config", NIXL]
    amount = str(r.tp)
    container = {
        "name": "vllm", "image": IMAGES.get(r.device.vendor, DEFAULT_IMAGE),
        "command": ["vllm", "serve"], "args": args,
        "ports": [{"containerPort": PORT, "name": "http", "protocol": "TCP"}],
        "resources": {"limits": {r.device.k8s_resource: amount}, "requests": {r.device.k8s_resource: amount}},
    }
    labels = _labels(g, r)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": slug(f"{dep.agent}-{g.name}-{r.phase}"), "labels": labels,
                     "annotations": {"agentc.dev/ops": ", ".join(r.ops), "agentc.dev/calls": ", ".join(g.calls)}},
        "spec": {
            "replicas": r.replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"nodeSelector": {DEVICE_LABEL: r.device.device_class}, "containers": [container]}},
        },
    }


def _service(dep: Deployment, g: LLMGroup) -> dict:
    front = g.roles[-1]  # requests enter at decode (it pulls KV from prefill), or the aggregated role
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": slug(f"{dep.agent}-{g.name}"), "labels": {"llm-d.ai/model": g.name}},
        "spec": {"selector": _labels(g, front),
                 "ports": [{"name": "http", "port": PORT, "targetPort": PORT, "protocol": "TCP"}]},
    }


def render(dep: Deployment) -> dict[str, bytes]:
    docs = []
    for g in dep.llms:
        docs += [_deployment(dep, g, r) for r in g.roles]
        docs.append(_service(dep, g))
    notes = stated(dep, [f"pool {p.device.pool} ({p.device.device_class}): {', '.join(p.ops)} "
                         f"(not LLM serving; run by `agentc serve --ray`)" for p in dep.pools]
                   + ["the InferencePool and endpoint picker come from llm-d's gateway charts"])
    docs.append({"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": slug(f"{dep.agent}-agentc-plan")},
                 "data": {"notes": "\n".join(notes) + "\n"}})
    head = [f"llm-d objects for agent '{dep.agent}', written by `agentc deploy --format llm-d`.",
            f"Nodes must carry the label {DEVICE_LABEL}=<device class>.", ""]
    head += [f"note: {n}" for n in notes]
    return {"llm-d.yaml": yaml_text(docs, head)}
