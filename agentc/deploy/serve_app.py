"""The Ray Serve application that `agentc deploy --format ray-serve` names (`serve run serve.yaml`).

`build_app(args)` is the config's `import_path`: Serve calls it with the application's
`args` and deploys what it returns. It reads the plan as `agentc run OUTDIR` does (the
manifest's recorded source and cluster, compiled again to the placed stage, checked
against the manifest), and returns

- one deployment `pool-<pool>` per pool the plan uses, of `PoolDeployment` (ray_run's
  `PoolWorker`: the pool's ops with `agentc run`'s loaders and op code), autoscaled
  within the plan's replicas (ray_serve.autoscaling) with its resources
  (ray_serve.pool_options: the same functions write the config's `deployments`, which
  Serve applies on top by name);
- the ingress `agentc`, which walks each request with ray_run's driver (`_Submitter`),
  its ops calling the pools' deployment handles, and answers HTTP as `agentc serve` does
  (ray_run.answer).

Why a request router: a request's ops in a pool must meet on one replica (its memory
store, its sampler), as `crc32(rid) mod r` does for `--ray`'s actors; Serve's default
router spreads calls by queue length, so the pool deployments route by request id.

Values crossing pools travel as Serve responses passed to the next call (Serve hands
them on as object references, so they move through Ray's object store, not the ingress).

Pools of any device are deployed, as `agentc run --ray` places them: an accelerator
pool's replica holds tp devices in a placement group of one bundle (ray_serve.pool_options,
from ray_run.pool_spec). Before anything is deployed the devices the application needs
are compared with the Ray cluster's (ray_run.check_resources), so a cluster without them
fails the deployment at once with what is missing instead of waiting for them.

LLM groups with a role on an accelerator pool (ray_serve.on_engines) are served by
`ray.serve.llm` on vLLM, from the same LLMConfigs serve.yaml's `llm` entries hold
(ray_serve.llm_config): an `LLMServer` deployment when aggregated, `PDPrefillServer` and
`PDDecodeServer` when disaggregated (what `build_pd_openai_app` builds, without its
OpenAI HTTP ingress: the agent's ingress calls the decode server's handle). Each such
LLM call of the agent (tokenize .. detokenize) is one completion request there; its
ops leave the pools. Without `ray.serve.llm` (pip install "ray[llm]", which brings
vLLM) such a plan is refused in words. LLM groups on CPU pools run in their pool
deployments on agentc's own decoder.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ray import serve
from ray.serve.config import RequestRouterConfig
from ray.serve.handle import DeploymentResponse
from ray.serve.exceptions import RayServeException
from ray.serve.request_router import RequestRouter

from agentc.deploy.ray_run import PoolWorker, Program, RayPlan, _Submitter, _unwrap, compile_placed, pool_groups
from agentc.diagnostics import AgentcError, UsageError, render

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

    def __init__(self, prog: Program, pool: str, skip_calls: frozenset = frozenset()):
        super().__init__(prog, pool, skip_calls)
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

        engine = self.plan.engines.get(get(op, "call"))
        if engine is not None:
            return self._engine_op(op, engine, args)
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


    def _engine_op(self, op, engine: "EngineCall", args):
        """An LLM call served by ray.serve.llm: its tokenize op sends the prompt (its
        inputs joined, as agentc's tokenizer joins them) as one completion request; the
        call's later ops (prefill .. detokenize) pass the answer's text on."""
        from agentc.runtime.executor import _text_of

        if op.name != "llm.tokenize":
            return list(args[:len(op.results)])
        prompt = "\n".join(_text_of(self.plan.fetch_value(a)) for a in args)
        return [engine.complete(prompt, self.plan.prog.cfg)]


@dataclass(frozen=True)
class EngineCall:
    """An LLM call of the agent and the ray.serve.llm deployment that serves it."""

    handle: Any        # the LLMServer (aggregated) or PDDecodeServer deployment's handle
    model_id: str      # the LLMConfig's model_id (the group's name)
    max_tokens: int    # the call's decode `tokens`, capped by max_new_tokens

    def request(self, prompt: str, cfg) -> dict:
        """The completion request's fields (vLLM's OpenAI protocol): agentc's sampling
        options as vLLM spells them; top-k 1 is greedy (temperature 0)."""
        body = {"model": self.model_id, "prompt": prompt, "max_tokens": self.max_tokens, "stream": False,
                "seed": cfg.seed}
        if cfg.top_k == 1:
            body["temperature"] = 0.0
        else:
            body.update(temperature=cfg.temperature, top_k=cfg.top_k)
        return body

    def complete(self, prompt: str, cfg) -> str:
        """The engine's text for `prompt`, read in the request walk's worker thread (the
        server's `completions` is a stream; unstreamed, it yields one response)."""
        from agentc.runtime.executor import RunError
        from ray.serve.llm.openai_api_models import CompletionRequest

        stream = self.handle.options(stream=True).completions.remote(CompletionRequest(**self.request(prompt, cfg)))
        for item in stream:
            error = getattr(item, "error", None)
            if error is not None:
                raise RunError(f"ray.serve.llm model '{self.model_id}' refused the completion: "
                               f"{getattr(error, 'message', error)}")
            return item.choices[0].text
        raise RunError(f"ray.serve.llm model '{self.model_id}' returned no completion")


class ServePlan(RayPlan):
    """A RayPlan whose pools are Serve deployments (their handles stand for the actors)
    and whose LLM calls in `engines` (call -> EngineCall) go to ray.serve.llm."""

    fetch_value = staticmethod(_fetch)

    def __init__(self, prog: Program, *, actors: dict, engines: dict | None = None):
        super().__init__(prog, actors=actors)
        self.engines = dict(engines or {})

    @staticmethod
    async def await_value(value):
        return await _await(value)

    def submit(self, rid: str, inputs: list[Any]):
        sub = _ServeSubmitter(self, rid)
        return sub.run(list(inputs)), sub.pending


class AgentIngress:
    """The application's ingress: POST / as `agentc serve` answers it; `ask` for handles."""

    def __init__(self, prog: Program, handles: dict, engines: dict | None = None):
        # borrowed: Serve owns the replicas; engines: call -> (handle, model id, max tokens)
        self.plan = ServePlan(prog, actors=handles,
                              engines={call: EngineCall(*e) for call, e in (engines or {}).items()})

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


class BuildError(UsageError, RayServeException):
    """The builder's errors: a usage error to Python callers, and a RayServeException to
    Serve's controller, which shows such an error's text as the application's
    DEPLOY_FAILED message (any other exception becomes a traceback there)."""

    def __str__(self) -> str:
        return render(self)


def engine_groups(dep) -> list:
    """The LLM groups ray.serve.llm serves (ray_serve.on_engines), in the plan's order."""
    from agentc.deploy import ray_serve

    return [g for g in dep.llms if ray_serve.on_engines(g)]


def check_cluster(groups: list, engines: list, have: dict) -> None:
    """Refuse, in words, a Ray cluster without the devices of the accelerator pools'
    deployments (one bundle of tp devices per replica) and of the ray.serve.llm roles
    (tp devices per replica on the role's pool: bundle_per_worker, tp times), with
    `agentc run --ray`'s check and message. CPU pools are not checked: their replicas
    wait for the pool's nodes, as before."""
    import importlib.util

    from agentc.deploy.ray_run import PoolGroup, check_resources, pool_spec

    specs, by_name = {}, {}
    for g in groups:
        if g.accelerated:
            specs[g.pool], by_name[g.pool] = pool_spec(g, pinned=True), g
    for eg in engines:
        for r in eg.roles:
            if r.device.vendor == "cpu":
                continue
            name = f"{r.device.pool} (LLM {eg.name} {r.phase})"
            by_name[name] = PoolGroup(r.device.pool, r.replicas, r.replicas, {}, r.device, r.tp)
            specs[name] = pool_spec(by_name[name], pinned=True)
    try:
        check_resources(specs, by_name, have)
    except UsageError as err:
        notes = list(err.notes)
        if engines and importlib.util.find_spec("vllm") is None:
            notes.append(_LLM_INSTALL)
        raise UsageError(err.message, err.loc, notes) from None


_LLM_INSTALL = ('the LLM groups on accelerator pools are served by ray.serve.llm on vLLM: pip install "ray[llm]" '
                "(it brings vLLM) on the Ray cluster's nodes and where the application is built")


def engine_apps(engines: list) -> dict:
    """group name -> the Serve application the agent's LLM calls of that group go to,
    built with ray.serve.llm's documented API from the LLMConfigs serve.yaml holds
    (ray_serve.llm_config): `build_llm_deployment` of an `LLMServer` when aggregated; of
    `PDPrefillServer`, and of `PDDecodeServer` bound to it, when disaggregated (as
    `build_pd_openai_app` builds them, which also shifts decode's NIXL side-channel port
    base so a prefill and a decode replica on one node do not collide)."""
    from agentc.deploy import ray_serve

    try:
        from ray.serve.llm import LLMConfig, build_llm_deployment
        from ray.serve.llm.deployment import PDDecodeServer, PDPrefillServer
    except ImportError as err:
        raise UsageError(f"ray.serve.llm cannot be imported here ({err}); the plan's LLM groups on accelerator "
                         f"pools need it: {', '.join(g.name for g in engines)}", notes=(_LLM_INSTALL,)) from None
    apps = {}
    for g in engines:
        if g.aggregated:
            apps[g.name] = build_llm_deployment(LLMConfig.model_validate(ray_serve.llm_config(g, g.roles[0])))
            continue
        prefill_cfg = LLMConfig.model_validate(ray_serve.llm_config(g, g.roles[0]))
        decode_cfg = LLMConfig.model_validate(ray_serve.llm_config(g, g.roles[1]))
        decode_cfg.experimental_configs.setdefault("NIXL_SIDE_CHANNEL_PORT_BASE", 22000)
        prefill = build_llm_deployment(prefill_cfg, name_prefix="Prefill:", deployment_cls=PDPrefillServer)
        apps[g.name] = build_llm_deployment(decode_cfg, name_prefix="Decode:", bind_kwargs={"prefill_server": prefill},
                                            deployment_cls=PDDecodeServer)
    return apps


def engine_calls(c, engines: list, cfg) -> dict[str, tuple[str, int]]:
    """call -> (its group's model id, its max tokens: the decode op's `tokens`, at most
    max_new_tokens), for the agent's LLM calls ray.serve.llm serves."""
    from agentc.passes._ir import get, walk
    from agentc.passes._plan_ctx import entry_graph

    group_of = {call: g.name for g in engines for call in g.calls}
    out = {}
    for op in walk(entry_graph(c.module)):
        call = get(op, "call")
        if op.name == "llm.decode" and call in group_of:
            n = int(get(op, "tokens", 1))
            out[call] = (group_of[call], n if cfg.max_new_tokens is None else min(n, cfg.max_new_tokens))
    return out


def pool_deployments(prog: Program, c, m: dict, max_replicas: int | None, skip_calls: frozenset) -> dict:
    """pool -> its Serve application: a `pool-<pool>` deployment of PoolDeployment for
    each pool the plan uses (less the ops of `skip_calls`), autoscaled within the plan's
    replicas, with ray_serve.pool_options (what serve.yaml's `deployments` say too)."""
    from agentc.deploy import plan, ray_serve

    dev = plan._devices(m)
    apps = {}
    for g in pool_groups(c, max_replicas or 1 << 30, skip_calls):   # no cap: the plan's replicas
        if g.accelerated:
            options = ray_serve.pool_options(g.device, g.tp)
        else:
            options = ray_serve.pool_options(dev[g.pool], max((o["tp"] for o in m["ops"] if o["pool"] == g.pool),
                                                              default=1))
        apps[g.pool] = serve.deployment(PoolDeployment).options(
            name=ray_serve.deployment_name(g.pool), autoscaling_config=ray_serve.autoscaling(g.actors),
            max_ongoing_requests=1024, **options,
            request_router_config=RequestRouterConfig(request_router_class=ByRequest,
                                                      request_router_kwargs={"replicas": dict(g.replicas)}),
        ).bind(prog, g.pool, skip_calls)
    return apps


def build_app(args: dict):
    """The Serve application for `args` (serve.yaml's `applications[0].args`): `manifest`
    (a compile's output directory or its manifest.json) and `agentc run`'s program options
    (`weights`, `index`, `tool` as NAME=VALUE lists; `seed`, `threads`, `max_new_tokens`,
    `top_k`, `temperature`), and `max_replicas` (a cap on each pool's replicas).
    Relative paths and tool modules start in the working directory (`serve run`'s), as
    for `python -m agentc run`. Errors are BuildErrors (usage errors Serve shows as
    the application's message)."""
    try:
        return _build(args)
    except AgentcError as err:
        raise BuildError(err.message, err.loc, err.notes) from None


def _build(args: dict):
    import os
    import sys

    import ray

    from agentc.deploy import plan
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
    engines = engine_groups(plan.build(m))
    cfg, max_replicas = _run_config(args)
    source, cluster = session.source_of(os.path.dirname(os.path.abspath(path)))
    prog = Program.make(source, cluster or session.CPU_CLUSTER, cfg=cfg)
    c = compile_placed(prog)
    _check_against_manifest(c, m, path)
    check_config(c, cfg)

    skip = frozenset(call for g in engines for call in g.calls)
    if ray.is_initialized():   # always under Serve; a script may build before serve.run starts Ray
        check_cluster(pool_groups(c, max_replicas or 1 << 30, skip), engines, ray.cluster_resources())
    llms = engine_apps(engines) if engines else {}
    handles = pool_deployments(prog, c, m, max_replicas, skip)
    calls = {call: (llms[group], group, n) for call, (group, n) in engine_calls(c, engines, cfg).items()}
    ingress = serve.deployment(AgentIngress).options(name=INGRESS, max_ongoing_requests=1024,
                                                     ray_actor_options={"num_cpus": 0})
    return ingress.bind(prog, handles, calls)
