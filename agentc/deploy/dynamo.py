"""NVIDIA Dynamo: one DynamoGraphDeployment (nvidia.com/v1alpha1) for the agent's LLMs.

Fields follow the DynamoGraphDeployment CRD of ai-dynamo/dynamo
(deploy/cloud/helm/crds/templates/nvidia.com_dynamographdeployments.yaml) and its
examples/backends/vllm/deploy/disagg.yaml: a `Frontend` service (componentType
frontend) and per LLM group a prefill and a decode worker (componentType worker,
subComponentType prefill/decode; `python3 -m dynamo.vllm --is-prefill-worker` /
`--is-decode-worker`), or one aggregated worker. Replicas are the plan's; GPUs per worker
are its tp, as `resources.limits.gpu` on NVIDIA and as the vendor's device-plugin
resource under `resources.limits.custom` elsewhere, with a node selector on the device
class. Dynamo serves LLMs only: the agent's other parts are stated in an annotation.
"""

from __future__ import annotations

from agentc.deploy.plan import Deployment, LLMGroup, Role, slug, stated, yaml_text

API_VERSION = "nvidia.com/v1alpha1"
IMAGE = "nvcr.io/nvidia/ai-dynamo/vllm-runtime"
DEVICE_LABEL = "agentc.dev/device-class"
NOTES_ANNOTATION = "agentc.dev/notes"


def _resources(r: Role) -> dict:
    if r.device.vendor == "nvidia":
        return {"limits": {"gpu": str(r.tp)}}
    if r.device.vendor == "cpu":
        return {"limits": {"cpu": str(r.tp)}}
    return {"limits": {"custom": {r.device.k8s_resource: str(r.tp)}}}


def _worker(g: LLMGroup, r: Role) -> dict:
    args = ["--model", g.model_source, "--served-model-name", g.name, "--tensor-parallel-size", str(r.tp)]
    if g.quantization:
        args += ["--quantization", g.quantization]
    if r.phase == "prefill":
        args.append("--is-prefill-worker")
    elif r.phase == "decode":
        args.append("--is-decode-worker")
    svc = {
        "componentType": "worker",
        "replicas": r.replicas,
        "resources": _resources(r),
        "labels": {"agentc.dev/pool": slug(r.device.pool), "agentc.dev/role": r.phase},
        "extraPodSpec": {
            "nodeSelector": {DEVICE_LABEL: r.device.device_class},
            "mainContainer": {"image": IMAGE, "command": ["python3", "-m", "dynamo.vllm"], "args": args},
        },
    }
    if r.phase != "both":
        svc["subComponentType"] = r.phase
    return svc


def render(dep: Deployment) -> dict[str, bytes]:
    services = {"Frontend": {
        "componentType": "frontend", "replicas": 1,
        "extraPodSpec": {"mainContainer": {"image": IMAGE, "command": ["python3", "-m", "dynamo.frontend"],
                                           "args": ["--http-port", "8000"]}}}}
    for g in dep.llms:
        for r in g.roles:
            services[f"{g.name}-{'worker' if r.phase == 'both' else r.phase}"] = _worker(g, r)
    notes = stated(dep, [f"pool {p.device.pool} ({p.device.device_class}): {', '.join(p.ops)} "
                         f"(not LLM serving; run by `agentc serve --ray`)" for p in dep.pools])
    meta = {"name": slug(dep.agent), "labels": {"app.kubernetes.io/managed-by": "agentc"}}
    if notes:
        meta["annotations"] = {NOTES_ANNOTATION: "\n".join(notes)}
    doc = {"apiVersion": API_VERSION, "kind": "DynamoGraphDeployment", "metadata": meta,
           "spec": {"backendFramework": "vllm", "services": services}}
    head = [f"Dynamo graph for agent '{dep.agent}', written by `agentc deploy --format dynamo`.",
            f"Nodes must carry the label {DEVICE_LABEL}=<device class>."]
    head += [""] + [f"note: {n}" for n in notes] if notes else []
    return {"dynamo.yaml": yaml_text([doc], head)}
