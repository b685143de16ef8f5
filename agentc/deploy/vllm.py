"""vLLM: `vllm serve` per replica, prefill/decode joined by NixlConnector, and vllm-router.

Flags follow vLLM's `vllm serve` engine arguments (docs.vllm.ai, v0.11):
`--host --port --tensor-parallel-size --served-model-name --quantization
--kv-transfer-config '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'`, and
`VLLM_NIXL_SIDE_CHANNEL_PORT` per instance (docs/features/nixl_connector_usage.md). The
router is vllm-project/router's `vllm-router --vllm-pd-disaggregation --prefill URL
--decode URL` (or `--worker-urls` for an aggregated group).
"""

from __future__ import annotations

import json

from agentc.deploy import launch
from agentc.deploy.plan import Deployment, LLMGroup, Role

NIXL = json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_both"}, sort_keys=True, separators=(",", ":"))


def server(g: LLMGroup, r: Role, k: int, i: int, port: int):
    argv = ["vllm", "serve", g.model_source, "--host", "0.0.0.0", "--port", str(port),
            "--tensor-parallel-size", str(r.tp), "--served-model-name", g.name]
    if g.quantization:
        argv += ["--quantization", g.quantization]
    env = {}
    if not g.aggregated:
        argv += ["--kv-transfer-config", NIXL]
        env["VLLM_NIXL_SIDE_CHANNEL_PORT"] = str(port + 20000)
    return env, argv


def router(g: LLMGroup, k: int, by_phase: dict[str, list[int]]) -> list[str]:
    roles = {r.phase: r for r in g.roles}
    argv = ["vllm-router"]
    if g.aggregated:
        argv += ["--worker-urls"] + [launch.url(roles["both"], p) for p in by_phase["both"]]
    else:
        argv.append("--vllm-pd-disaggregation")
        for p in by_phase["prefill"]:
            argv += ["--prefill", launch.url(roles["prefill"], p)]
        for p in by_phase["decode"]:
            argv += ["--decode", launch.url(roles["decode"], p)]
    return argv + ["--host", "0.0.0.0", "--port", str(launch.router_port(k))]


def render(dep: Deployment) -> dict[str, bytes]:
    return launch.render(dep, "vLLM", server, router)
