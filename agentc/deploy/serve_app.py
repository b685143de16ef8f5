"""The Ray Serve application that `agentc deploy --format ray-serve` names (`serve run serve.yaml`).

`build_app(args)` is the config's `import_path`: Serve calls it with the application's
`args` and deploys what it returns. It reads the plan as `agentc run OUTDIR` does (the
manifest's recorded source and cluster, compiled again to the placed stage, checked
against the manifest), and returns

- one deployment `pool-<pool>` per pool the plan uses, of `PoolDeployment` (ray_run's
  `PoolWorker`: the pool's ops with `agentc run`'s loaders and op code), autoscaled
  within the plan's replicas (ray_serve.autoscaling) with `ray_actor_options`
  (ray_serve.actor_options: the same functions write the config's `deployments`, which
  Serve applies on top by name);
- the ingress `agentc`, which walks each request with ray_run's driver (`_Submitter`),
  its ops calling the pools' deployment handles, and answers HTTP as `agentc serve` does
  (ray_run.answer).

Why a request router: a request's ops in a pool must meet on one replica (its memory
store, its sampler), as `crc32(rid) mod r` does for `--ray`'s actors; Serve's default
router spreads calls by queue length, so the pool deployments route by request id.

Values crossing pools travel as Serve responses passed to the next call (Serve hands
them on as object references, so they move through Ray's object store, not the ingress).

Only CPU pools run: agentc's runtime runs CPU code, and the LLM groups the config puts
on `ray.serve.llm` need vLLM's engines; a plan with ops on other pools is refused.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from typing import Any

from ray import serve
from ray.serve.config import RequestRouterConfig
from ray.serve.handle import DeploymentResponse
from ray.serve.request_router import RequestRouter

from agentc.deploy.ray_run import PoolWorker, Program, RayPlan, _Submitter, _unwrap, compile_placed, pool_groups
from agentc.diagnostics import AgentcError, UsageError

INGRESS = "agentc"
# What the builder reads from args (`agentc run`'s program options as the config spells
# them), and what the config carries for its reader (the writer's summary of the plan).
ARGS = ("manifest", "weights", "index", "tool", "seed", "threads", "max_new_tokens", "top_k", "temperature",
        "max_replicas")
SUMMARY_ARGS = ("llm", "pools", "notes")
_PINNED = 4096   # requests whose pool replica the router remembers


class PoolDeployment(PoolWorker):
    """A pool's Serve replica: PoolWorker, one op at a time (Serve may call a sync method
    from several threads; the executor swaps per-request state in and out)."""

    def __init__(self, prog: Program, pool: str):
        super().__init__(prog, pool)
        if self.error is not None:   # Serve marks the deployment failed with this message
            raise self.error
        self._lock = threading.Lock()

    def run(self, rid: str, step: int, op_id: str, *args):
        with self._lock:
            return super().run(rid, step, op_id, *args)


class ByRequest(RequestRouter):
    """Sends op call (rid, step, op_id, ...) to replica crc32(rid) mod r of its pool (r:
    the op's replicas in the plan, at most the replicas running; replicas ordered by id):
    `--ray`'s rule, so a request's ops in a pool meet on one replica. The pools autoscale
    (serve.yaml's bounds), so the first choice is remembered per (request, r) while that
    replica lives: a replica added or removed mid-request does not split the request."""

    def initialize_state(self, replicas: dict[str, int] | None = None, **_):
        self.op_replicas = dict(replicas or {})
        self.pinned: OrderedDict = OrderedDict()   # (rid, r) -> replica unique_id

    async def choose_replicas(self, candidate_replicas, pending_request=None):
        ordered = sorted(candidate_replicas, key=lambda r: r.replica_id.unique_id)
        if not ordered or pending_request is None or len(pending_request.args) < 3:
            return [ordered]
        rid, op_id = str(pending_request.args[0]), str(pending_request.args[2])
        planned = self.op_replicas.get(op_id, 1)
        key = (rid, planned)
        by_id = {r.replica_id.unique_id: r for r in ordered}
        if self.pinned.get(key) in by_id:
            return [[by_id[self.pinned[key]]]]
        chosen = ordered[zlib.crc32(rid.encode()) % max(1, min(planned, len(ordered)))]
        self.pinned[key] = chosen.replica_id.unique_id
        while len(self.pinned) > _PINNED:
            self.pinned.popitem(last=False)
        return [[chosen]]


def _fetch(value):
    """A value in flight, read blocking (in the driver's worker thread)."""
    if isinstance(value, DeploymentResponse):
        try:
            return value.result()
        except AgentcError:
            raise
        except Exception as err:   # noqa: BLE001 - Ray's wrappers of the replica's error
            raise _unwrap(err) from None
    return value


async def _await(value):
    if isinstance(value, DeploymentResponse):
        try:
            return await value
        except AgentcError:
            raise
        except Exception as err:   # noqa: BLE001
            raise _unwrap(err) from None
    return value


class _ServeSubmitter(_Submitter):
    """ray_run's request walk with ops sent to the pools' deployment handles."""

    def _op(self, op, args):
        from agentc.passes._ir import get

        pool = get(op, "pool")
        if not pool:
            return super()._op(op, args)
        op_id = get(op, "op_id") or op.name
        response = self.plan.actors[pool].run.remote(self.rid, self.step, op_id, *args)
        self.step += 1
        n = len(op.results)
        if n == 0:
            self.pending.append(response)
            return []
        # Serve passes on whole responses only: an op with several results is read here.
        return [response] if n == 1 else list(self.plan.fetch_value(response))


class ServePlan(RayPlan):
    """A RayPlan whose pools are Serve deployments (their handles stand for the actors)."""

    fetch_value = staticmethod(_fetch)

    @staticmethod
    async def await_value(value):
        return await _await(value)

    def submit(self, rid: str, inputs: list[Any]):
        sub = _ServeSubmitter(self, rid)
        return sub.run(list(inputs)), sub.pending


class AgentIngress:
    """The application's ingress: POST / as `agentc serve` answers it; `ask` for handles."""

    def __init__(self, prog: Program, handles: dict):
        self.plan = ServePlan(prog, actors=handles)   # borrowed: Serve owns the replicas

    async def __call__(self, request):
        from agentc.deploy.ray_run import answer

        return await answer(self.plan, request)

    async def ask(self, rid: str, inputs: list) -> Any:
        """The agent's output for one request (a repeated id gets the recorded answer)."""
        return await self.plan.arun(rid, list(inputs))


def _run_config(args: dict):
    from agentc.cli.run import run_config

    def pairs(key):
        v = args.get(key) or []
        if isinstance(v, dict):
            return tuple(f"{k}={p}" for k, p in sorted(v.items()))
        if isinstance(v, str) or not all(isinstance(x, str) for x in v):
            raise UsageError(f"the application's args.{key} must be a list of NAME=VALUE strings "
                             f"(as `agentc run --{key}` takes them), or a mapping")
        return tuple(v)

    def number(key, kind, default):
        v = args.get(key, default)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or
                              (kind is int and not isinstance(v, int))):
            raise UsageError(f"the application's args.{key} must be {'an integer' if kind is int else 'a number'}")
        return v

    return run_config(pairs("weights"), pairs("index"), pairs("tool"), number("seed", int, 0),
                      number("threads", int, 1), number("max_new_tokens", int, None), number("top_k", int, 1),
                      number("temperature", float, 1.0)), number("max_replicas", int, None)


def _check_against_manifest(c, m: dict, path: str) -> None:
    """The plan resumed from the manifest's directory must be the manifest's."""
    from agentc.passes._ir import get, walk
    from agentc.passes._plan_ctx import entry_graph

    compiled = {get(op, "op_id") or op.name: get(op, "pool") for op in walk(entry_graph(c.module)) if get(op, "pool")}
    written = {o["id"]: o["pool"] for o in m["ops"]}
    moved = sorted(i for i in written if compiled.get(i) != written[i])   # (transfers are edges there)
    if moved:
        raise UsageError(f"the plan in the directory of '{path}' is not its manifest's "
                         f"(ops {', '.join(moved[:5])}{' ...' if len(moved) > 5 else ''} differ): "
                         f"compile the source again and deploy that")


def _refuse_non_cpu(m: dict) -> None:
    """Name the pools this builder cannot start, and why."""
    import importlib.util

    from agentc.deploy import plan

    dep = plan.build(m)
    devices = plan._devices(m)
    foreign = sorted(p for p, d in devices.items() if d.vendor != "cpu" and any(o["pool"] == p for o in m["ops"]))
    if not foreign:
        return
    llms = sorted({g.name for g in dep.llms for r in g.roles if r.device.pool in foreign})
    vllm = ("vLLM is not installed here" if importlib.util.find_spec("vllm") is None
            else "this builder does not start them yet")
    why = [f"pools {', '.join(f'{p} ({devices[p].device_class})' for p in foreign)} are not CPU pools: "
           f"agentc's runtime runs CPU code only"]
    if llms:
        why.append(f"the LLM groups {', '.join(llms)} there need `ray.serve.llm` deployments on vLLM ({vllm})")
    raise UsageError("the ray-serve application runs CPU plans only; " + "; ".join(why)
                     + ". serve.yaml still describes them for a cluster that has them.")


def build_app(args: dict):
    """The Serve application for `args` (serve.yaml's `applications[0].args`): `manifest`
    (a compile's output directory or its manifest.json) and `agentc run`'s program options
    (`weights`, `index`, `tool` as NAME=VALUE lists; `seed`, `threads`, `max_new_tokens`,
    `top_k`, `temperature`), and `max_replicas` (a cap on each pool's replicas).
    Relative paths and tool modules start in the working directory (`serve run`'s), as
    for `python -m agentc run`."""
    import os
    import sys

    from agentc.deploy import plan, ray_serve
    from agentc.deploy.ray_run import check_config
    from agentc.runtime import session

    if not isinstance(args, dict) or not isinstance(args.get("manifest"), str):
        raise UsageError("the application's args need 'manifest': an `agentc compile -o` directory or its "
                         "manifest.json")
    unknown = sorted(set(args) - set(ARGS) - set(SUMMARY_ARGS))
    if unknown:
        raise UsageError(f"the application's args have unknown keys: {', '.join(unknown)}; "
                         f"the builder reads {', '.join(ARGS)}")
    if os.getcwd() not in sys.path:   # tools import from here, as under `python -m agentc run`
        sys.path.insert(0, os.getcwd())
    path = plan.manifest_path(args["manifest"])
    m = plan.load(path)
    _refuse_non_cpu(m)
    cfg, max_replicas = _run_config(args)
    source, cluster = session.source_of(os.path.dirname(os.path.abspath(path)))
    prog = Program.make(source, cluster or session.CPU_CLUSTER, cfg=cfg)
    c = compile_placed(prog)
    _check_against_manifest(c, m, path)
    check_config(c, cfg)

    dev = plan._devices(m)
    handles = {}
    for g in pool_groups(c, max_replicas or 1 << 30):   # no cap: the plan's replicas
        tp = max((o["tp"] for o in m["ops"] if o["pool"] == g.pool), default=1)
        handles[g.pool] = serve.deployment(PoolDeployment).options(
            name=ray_serve.deployment_name(g.pool), autoscaling_config=ray_serve.autoscaling(g.actors),
            ray_actor_options=ray_serve.actor_options(dev[g.pool], tp), max_ongoing_requests=1024,
            request_router_config=RequestRouterConfig(request_router_class=ByRequest,
                                                      request_router_kwargs={"replicas": dict(g.replicas)}),
        ).bind(prog, g.pool)
    ingress = serve.deployment(AgentIngress).options(name=INGRESS, max_ongoing_requests=1024,
                                                     ray_actor_options={"num_cpus": 0})
    return ingress.bind(prog, handles)
