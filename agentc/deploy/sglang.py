"""SGLang: `python -m sglang.launch_server` per replica in PD mode, and sglang_router.

Flags follow SGLang's server arguments and PD-disaggregation guide (docs.sglang.io,
advanced_features/pd_disaggregation, v0.5): `--model-path --host --port --tp-size
--served-model-name --quantization --disaggregation-mode prefill|decode
--disaggregation-transfer-backend nixl --disaggregation-bootstrap-port`; the router is
`python -m sglang_router.launch_router --pd-disaggregation --prefill URL BOOTSTRAP_PORT
--decode URL` (or `--worker-urls` for an aggregated group).
"""

from __future__ import annotations

from agentc.deploy import launch
from agentc.deploy.plan import Deployment, LLMGroup, Role


def bootstrap_port(port: int) -> int:
    return port + 20000


def server(g: LLMGroup, r: Role, k: int, i: int, port: int):
    argv = ["python", "-m", "sglang.launch_server", "--model-path", g.model_source, "--host", "0.0.0.0",
            "--port", str(port), "--tp-size", str(r.tp), "--served-model-name", g.name]
    if g.quantization:
        argv += ["--quantization", g.quantization]
    if not g.aggregated:
        argv += ["--disaggregation-mode", r.phase, "--disaggregation-transfer-backend", "nixl"]
        if r.phase == "prefill":
            argv += ["--disaggregation-bootstrap-port", str(bootstrap_port(port))]
    return {}, argv


def router(g: LLMGroup, k: int, by_phase: dict[str, list[int]]) -> list[str]:
    roles = {r.phase: r for r in g.roles}
    argv = ["python", "-m", "sglang_router.launch_router"]
    if g.aggregated:
        argv += ["--worker-urls"] + [launch.url(roles["both"], p) for p in by_phase["both"]]
    else:
        argv.append("--pd-disaggregation")
        for p in by_phase["prefill"]:
            argv += ["--prefill", launch.url(roles["prefill"], p), str(bootstrap_port(p))]
        for p in by_phase["decode"]:
            argv += ["--decode", launch.url(roles["decode"], p)]
    return argv + ["--host", "0.0.0.0", "--port", str(launch.router_port(k))]


def render(dep: Deployment) -> dict[str, bytes]:
    return launch.render(dep, "SGLang", server, router)
