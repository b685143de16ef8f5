"""Launch scripts for engines started from a shell (vLLM, SGLang): one per LLM group.

A script runs one role per call, on a host of that role's pool: `NAME.sh prefill`,
`NAME.sh decode` and `NAME.sh router` (or `NAME.sh serve` and `NAME.sh router` when the
group is aggregated). A role starts the plan's replicas as separate servers on
consecutive ports, each on its own `tp` devices (picked with the vendor's
visible-devices variable); the router fronts them. Hosts are `PREFILL_HOST`,
`DECODE_HOST`, `SERVE_HOST` (default 127.0.0.1). The engine-specific argv comes from the
format module (`vllm`, `sglang`); this module only writes the bash around it.
"""

from __future__ import annotations

import shlex
from typing import Callable

from agentc.deploy.plan import Deployment, LLMGroup, Role, stated

ROUTER_PORT = 8000
HOST_VAR = {"prefill": "PREFILL_HOST", "decode": "DECODE_HOST", "both": "SERVE_HOST"}
ROLE_CMD = {"prefill": "prefill", "decode": "decode", "both": "serve"}


def ports(k: int, r: Role) -> list[int]:
    """Server ports of role `r` in group `k`: disjoint across groups and roles."""
    base = 10000 + 1000 * k + (500 if r.phase == "decode" else 0)
    return [base + i for i in range(r.replicas)]


def url(r: Role, port: int) -> str:
    return f"http://${{{HOST_VAR[r.phase]}}}:{port}"


def _word(token: str) -> str:
    return f'"{token}"' if "${" in token else shlex.quote(token)


def line(argv: list[str]) -> str:
    return " ".join(_word(t) for t in argv)


Server = Callable[[LLMGroup, Role, int, int, int], tuple[dict[str, str], list[str]]]
Router = Callable[[LLMGroup, int, dict[str, list[int]]], list[str]]


def script(dep: Deployment, g: LLMGroup, k: int, engine: str, server: Server, router: Router) -> bytes:
    """`server(g, role, k, i, port)` -> (env, argv) of replica i; `router(g, k, ports by phase)` -> argv."""
    out = ["#!/usr/bin/env bash",
           f"# {engine} launch script for LLM group '{g.name}' of agent '{dep.agent}',",
           "# written by `agentc deploy`.",
           f"# model: {g.model} -> {g.model_source}; calls: {', '.join(g.calls)}",
           f"# done inside the engine (tokenize, sample, detokenize): {', '.join(g.engine_ops) or 'none'}"]
    for r in g.roles:
        out.append(f"# {r.phase}: pool {r.device.pool} ({r.device.device_class}), tp {r.tp}, "
                   f"replicas {r.replicas}, ops {', '.join(r.ops)}")
    if g.kv_transfer:
        out.append(f"# KV cache: {g.kv_transfer[0]} -> {g.kv_transfer[1]} (NIXL)")
    for n in stated(dep):
        out.append(f"# note: {n}")
    roles = "|".join([ROLE_CMD[r.phase] for r in g.roles] + ["router"])
    out += [f"# usage: $0 {roles}   (run each role on a host of its pool)",
            "set -euo pipefail"]
    out += [f'{HOST_VAR[r.phase]}="${{{HOST_VAR[r.phase]}:-127.0.0.1}}"' for r in g.roles]
    out.append('case "${1:-}" in')
    by_phase = {r.phase: ports(k, r) for r in g.roles}
    for r in g.roles:
        out.append(f"  {ROLE_CMD[r.phase]})")
        for i, port in enumerate(by_phase[r.phase]):
            env, argv = server(g, r, k, i, port)
            if r.device.visible_devices_env:
                env = {r.device.visible_devices_env: ",".join(str(i * r.tp + d) for d in range(r.tp)), **env}
            prefix = " ".join(f"{key}={shlex.quote(v)}" for key, v in sorted(env.items()))
            out.append(f"    {prefix + ' ' if prefix else ''}{line(argv)} &")
        out.append("    wait ;;")
    out.append("  router)")
    out.append(f"    exec {line(router(g, k, by_phase))} ;;")
    out.append(f'  *) echo "usage: $0 {roles}" >&2; exit 2 ;;')
    out.append("esac")
    return ("\n".join(out) + "\n").encode()


def render(dep: Deployment, engine: str, server: Server, router: Router) -> dict[str, bytes]:
    files = {f"{g.name}.sh": script(dep, g, k, engine, server, router) for k, g in enumerate(dep.llms)}
    if not dep.llms:
        files["README.txt"] = ("no LLM calls in this plan: nothing for a serving engine to run\n"
                               + "".join(f"note: {n}\n" for n in stated(dep))).encode()
    return files


def router_port(k: int) -> int:
    return ROUTER_PORT + k
