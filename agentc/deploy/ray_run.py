"""A placed plan on Ray: `agentc run --ray` and `agentc serve --ray` (docs/orchestrate.md).

Why Ray: agentc plans across machines but must not manage a cluster itself. Ray places
the actors, moves values between machines and restarts what crashes; agentc maps its
plan onto Ray's primitives and nothing more:

- each pool is a placement group with one bundle per device the plan uses there (the
  bundle holds the pool's custom resource `agentc_pool_<pool>`, which the nodes of that
  pool advertise: `ray start --resources '{"agentc_pool_xeon": 2}'`; a local Ray started
  here advertises them itself; a cluster that advertises none gets CPU bundles); a GPU
  pool's bundles hold tp GPUs per actor and Ray's `accelerator_type` label of its device
  (pool_spec), so GPU nodes take them; a cluster without such devices is refused in
  words before anything waits for them (check_resources). The actors run agentc's
  runtime, which runs CPU code: on GPU nodes they hold the pool's devices and compute
  on the nodes' CPUs until the runtime launches device kernels;
- each pool runs `PoolWorker` actors (as many as the plan's largest replica count in the
  pool, capped by `max_replicas`), each loading what that pool's ops need exactly as
  `agentc run` does (agentc.runtime.session's loaders, agentc.runtime.executor's ops);
- a request is walked by the in-process executor's own control flow (a subclass whose
  ops are remote calls), so ops are submitted without waiting and their values travel
  as ObjectRefs through Ray's object store; only a loop or branch decision fetches the
  value it reads. An op with r replicas runs on actor hash(request id) mod r of its pool,
  so one request's ops of a pool meet on one actor (its memory store stays together);
- actors restart after a crash (`max_restarts`) and a call in flight on a crashed actor
  is retried once (`max_task_retries=1`); answers are recorded by request id, so a
  request submitted again is answered from the record, never run twice.
"""

from __future__ import annotations

import asyncio
import copy
import os
import sys
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from agentc.diagnostics import AgentcError, UsageError
from agentc.passes._ir import get, source_loc, walk
from agentc.passes._plan_ctx import entry_graph
from agentc.runtime.executor import Decider, Executor, RunError, Runtime
from agentc.runtime.session import RunConfig

MAX_RESTARTS = 3        # a pool actor that keeps crashing is a bug, not bad luck
MAX_TASK_RETRIES = 1    # "retried once": a call in flight when its actor died
DEFAULT_MAX_REPLICAS = 2  # actors per pool on this 2-core machine; --max-replicas raises it
_RECORD = 4096          # answers (and per-request actor state) kept for deduplication
_OP_RECORD = 256        # op results an actor keeps for repeated calls (they can be KV caches)


@dataclass(frozen=True)
class Program:
    """What every actor needs to rebuild the plan, picklable: paths as the user gave them,
    with the caller's working directory and import path (actors start elsewhere; error
    messages keep the user's spelling of the source)."""

    source: str
    cluster: str
    catalogs: tuple[str, ...] = ()
    cfg: RunConfig = field(default_factory=lambda: RunConfig({}, {}, {}))
    cwd: str = "."
    sys_path: tuple[str, ...] = ()

    @staticmethod
    def make(source: str, cluster: str, catalogs=(), cfg: RunConfig | None = None) -> "Program":
        # Tools are imported by name in the actors: give them the caller's import path.
        paths = tuple(os.path.abspath(p or ".") for p in sys.path)
        return Program(source, cluster, tuple(catalogs), cfg or RunConfig({}, {}, {}), os.getcwd(), paths)


def _enter(prog: Program) -> None:
    """In an actor or Serve replica: the caller's working directory (where the user's
    relative paths start; on a cluster, the same path on shared storage) and import path."""
    if os.path.isdir(prog.cwd):
        os.chdir(prog.cwd)
    for p in reversed(prog.sys_path):
        if p not in sys.path:
            sys.path.insert(0, p)


def compile_placed(prog: Program):
    """The placed compilation `agentc run` executes (the same call its CLI makes)."""
    from agentc import pipeline
    from agentc.cli._common import make_options

    opts = make_options(emit=pipeline.PLACED, cluster=prog.cluster, catalogs=prog.catalogs, targets=("cpu",),
                        sla_mode="soft")
    return pipeline.compile_file(prog.source, opts, or_later=True)


def _pool_ops(module, pool: str | None = None, skip_calls: frozenset = frozenset()) -> list:
    """The placed ops (of one pool), less those of the LLM calls in `skip_calls` (served
    by engines elsewhere: the Serve builder's ray.serve.llm deployments)."""
    return [op for op in walk(entry_graph(module)) if get(op, "pool") and (pool is None or get(op, "pool") == pool)
            and get(op, "call") not in skip_calls]


@dataclass(frozen=True)
class PoolGroup:
    """One pool's share of the plan on Ray."""

    pool: str
    devices: int                 # bundles of its placement group
    actors: int                  # PoolWorker actors
    replicas: dict[str, int]     # op id -> actors that serve it (the plan's replicas, capped)
    device: Any = None           # agentc.deploy.plan.Device: how Ray names the pool's devices
    tp: int = 1                  # accelerator pools: devices per actor (the pool's widest tp)

    @property
    def accelerated(self) -> bool:
        """Devices Ray schedules as their own resource (GPU, HPU), not a share of CPU."""
        return self.device is not None and self.device.vendor != "cpu"


def pool_groups(c, max_replicas: int = DEFAULT_MAX_REPLICAS, skip_calls: frozenset = frozenset()) -> list[PoolGroup]:
    """Per pool used by the plan: actors (its largest replica count, at most max_replicas)
    and bundles. A CPU pool's bundles are its devices (tp x replicas of its widest op, at
    most the pool's count and its actor count), shared by the actors; an accelerator
    pool gives each actor a bundle of tp devices (its widest op's tp), so it holds whole
    devices, as many as the pool has."""
    from agentc.deploy.plan import device_of

    pools = {p.name: p for p in c.pass_ctx.cluster.pools}
    by_pool: dict[str, list] = {}
    seen: dict[str, Any] = {}
    for op in _pool_ops(c.module, skip_calls=skip_calls):
        op_id = get(op, "op_id") or op.name
        if op_id in seen:   # actors find ops by id: two ops under one id would be confused
            raise RunError(f"two ops share the plan id '{op_id}'; `--ray` needs unique op ids", source_loc(op))
        seen[op_id] = op
        by_pool.setdefault(get(op, "pool"), []).append(op)
    groups = []
    for pool, ops in sorted(by_pool.items()):
        spec = pools.get(pool)
        device = device_of(pool, spec.device.name, spec.device.target) if spec else None
        count = spec.count if spec else None
        plan_reps = {get(op, "op_id") or op.name: int(get(op, "replicas", 1) or 1) for op in ops}
        actors = max(1, min(max(plan_reps.values()), max_replicas))
        tp = max(int(get(op, "tp", 1) or 1) for op in ops)
        if device is not None and device.vendor != "cpu":
            actors = max(1, min(actors, (count or actors * tp) // tp))
            devices = actors
        else:
            devices = max(int(get(op, "tp", 1) or 1) * int(get(op, "replicas", 1) or 1) for op in ops)
            devices = max(1, min(devices, count or devices, actors))
            tp = 1
        groups.append(PoolGroup(pool, devices, actors, {k: min(v, actors) for k, v in sorted(plan_reps.items())},
                                device, tp))
    return groups


@dataclass(frozen=True)
class PoolSpec:
    """What Ray is asked for one pool: its placement group's bundles and, per actor, the
    `.options()` (besides the scheduling strategy) and the bundle it goes into."""

    bundles: list[dict[str, float]]
    actor: dict[str, Any]
    bundle_of: list[int]          # actor i -> its bundle index


# Ray turns `accelerator_type=X` into a demand for this resource, which it sets on every
# node with that device (ray.util.accelerators' labels); in a placement group the
# bundle must hold it too.
ACCELERATOR_RESOURCE = "accelerator_type:{}"
ACCELERATOR_SHARE = 0.001


def pool_spec(g: PoolGroup, pinned: bool, cpu_share: float = 1.0) -> PoolSpec:
    """The Ray resources of pool group `g`. `pinned`: the cluster's nodes advertise the
    pools' resources (`agentc_pool_<pool>`), so bundles hold them and land on the pool's
    nodes. Accelerator pools hold tp devices per bundle (`num_gpus`, or the vendor's
    resource such as HPU) plus Ray's accelerator_type where Ray knows the device; CPU pools
    hold a pool unit (or a share of CPU, unpinned) per bundle, divided among its actors."""
    from agentc.deploy.plan import pool_resource

    opts: dict[str, Any] = dict(max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES)
    if g.accelerated:
        bundle = {g.device.ray_resource: float(g.tp)}
        if pinned:
            bundle[pool_resource(g.pool)] = float(g.tp)
        label = g.device.accelerator_type
        if label:
            bundle[ACCELERATOR_RESOURCE.format(label)] = ACCELERATOR_SHARE
            opts["accelerator_type"] = label
        opts["num_cpus"] = 0
        if g.device.ray_resource == "GPU":
            opts["num_gpus"] = g.tp
        extra = {k: v for k, v in bundle.items() if k != "GPU" and not k.startswith("accelerator_type:")}
        opts["resources"] = extra or None
        return PoolSpec([dict(bundle) for _ in range(g.devices)], opts, list(range(g.actors)))
    bundle = {pool_resource(g.pool): 1.0} if pinned else {"CPU": cpu_share}
    per_bundle = -(-g.actors // g.devices)
    need = {k: v / per_bundle for k, v in bundle.items()}
    opts["num_cpus"] = need.pop("CPU", 0)
    opts["resources"] = need or None
    return PoolSpec([dict(bundle) for _ in range(g.devices)], opts, [i % g.devices for i in range(g.actors)])


def check_resources(specs: dict[str, PoolSpec], groups: dict[str, PoolGroup], have: dict[str, float]) -> None:
    """Refuse, in words, a plan the Ray cluster cannot hold, instead of waiting forever for
    bundles no node can take: devices of each kind, pool resources, accelerator labels."""
    need: dict[str, float] = {}
    for spec in specs.values():
        for b in spec.bundles:
            for k, v in b.items():
                need[k] = need.get(k, 0.0) + v
    short = []
    for key in sorted(need):
        if have.get(key, 0.0) + 1e-9 >= need[key]:
            continue
        users = [p for p, spec in sorted(specs.items()) if any(key in b for b in spec.bundles)]
        if key.startswith("accelerator_type:"):
            short.append(f"pool {', '.join(users)} needs {key.split(':', 1)[1]} devices, and no node of the "
                         f"Ray cluster has one (Ray labels such nodes '{key}')")
            continue
        parts = []
        for p in users:
            g = groups[p]
            units = sum(b[key] for b in specs[p].bundles)
            what = (f"{g.actors} actor{'s' if g.actors > 1 else ''} x tp {g.tp} {g.device.device_class}"
                    if g.accelerated else f"{g.devices} bundle{'s' if g.devices > 1 else ''}")
            parts.append(f"{p} needs {units:g} ({what})")
        short.append(f"{key}: {'; '.join(parts)}; the Ray cluster has {have.get(key, 0.0):g}")
    if short:
        raise UsageError("the Ray cluster cannot hold the plan's pools: " + "; ".join(short),
                         notes=("start Ray on nodes with those devices (`ray start --num-gpus N "
                                "--resources '{\"agentc_pool_<pool>\": N}'`), or plan for the "
                                "devices it has with --cluster",))


def prepare_pool(c, cfg: RunConfig, pool: str, skip_calls: frozenset = frozenset()) -> Runtime:
    """What `session.prepare` loads, restricted to the ops of one pool."""
    from agentc.runtime import session

    return session.load_runtime(c.module, _pool_ops(c.module, pool, skip_calls), cfg)


def check_config(c, cfg: RunConfig) -> None:
    """The option checks `session.prepare` makes, without loading anything (the driver
    loads no weights; the actors do). Unlike `agentc run`, pools of any device are taken:
    Ray places them (pool_spec), and refuses a cluster without their devices."""
    from agentc.passes._plan_ctx import models_of
    from agentc.runtime import session
    from agentc.runtime.index import read_documents

    specs = models_of(c.module)
    unknown = sorted(set(cfg.weights) - set(specs))
    if unknown:
        raise UsageError(f"--weights names no model of the program: {', '.join(unknown)}; "
                         f"models: {', '.join(sorted(specs))}")
    searched = {get(op, "index") for op in walk(entry_graph(c.module)) if op.name == "retrieve.search"}
    for name in sorted(set(cfg.indexes) - searched):
        raise UsageError(f"--index names no index the program searches: '{name}'")
    for path in sorted(cfg.indexes.values()):
        read_documents(path)   # a missing or malformed file is the caller's error, found here
    for spec in cfg.tools.values():
        session.load_tool(spec)


class PoolWorker:
    """One actor of a pool: the pool's ops, run by the in-process executor's op code."""

    def __init__(self, prog: Program, pool: str, skip_calls: frozenset = frozenset()):
        _enter(prog)
        self.pool, self.error = pool, None
        self.done: OrderedDict = OrderedDict()     # (request id, step) -> answer
        self.state: OrderedDict = OrderedDict()    # request id -> its memory store
        self.samplers: OrderedDict = OrderedDict()  # (request id, model) -> its Sampler
        self.executed = 0                          # ops run (not answered from `done`)
        try:
            c = compile_placed(prog)
            self.ops = {get(op, "op_id") or op.name: op for op in _pool_ops(c.module, pool, skip_calls)}
            self.ex = Executor(c.module, prepare_pool(c, prog.cfg, pool, skip_calls))
            self.cfg = prog.cfg
        except AgentcError as err:   # reported by ready(), so the caller prints it located
            self.error = err

    def ready(self):
        return self.error

    def stats(self) -> dict:
        """This process's id and how many op calls it has really run (tests, benchmarks)."""
        return {"pid": os.getpid(), "executed": self.executed}

    def run(self, rid: str, step: int, op_id: str, *args):
        """Op `op_id`, call number `step` of request `rid`: its result (a tuple for an op
        with several results, None for none). A call seen before returns its answer."""
        key = (rid, step)
        if key in self.done:
            return self.done[key]
        rt = self.ex.rt
        rt.memory = self.state.setdefault(rid, {})
        self._trim(self.state, _RECORD)
        op = self.ops[op_id]
        if op.name == "llm.decode" and get(op, "model") in rt.decoders:
            rt.decoders[get(op, "model")].sampler = self._sampler(rid, get(op, "model"))
        # Values from the object store are read-only views (numpy zero-copy); ops such
        # as decode extend what they are given (the KV cache), as in one process.
        args = [a if isinstance(a, (str, bytes, int, float, type(None))) else copy.deepcopy(a) for a in args]
        out = self.ex._op(op, args)
        self.executed += 1
        rt.events.clear()
        n = len(op.results)
        answer = None if n == 0 else out[0] if n == 1 else tuple(out)
        self.done[key] = answer
        self._trim(self.done, _OP_RECORD)
        return answer

    def _sampler(self, rid: str, model: str):
        """A request's own sampler per model, seeded by --seed: the draws one `agentc run`
        of that request makes, however requests interleave on this actor."""
        from agentc.runtime.sampling import Sampler

        key = (rid, model)
        if key not in self.samplers:
            self.samplers[key] = Sampler(self.cfg.top_k, self.cfg.temperature, self.cfg.seed)
            self._trim(self.samplers, _RECORD)
        return self.samplers[key]

    @staticmethod
    def _trim(d: OrderedDict, most: int):
        while len(d) > most:
            d.popitem(last=False)


def _unwrap(err: BaseException) -> BaseException:
    """The agentc error inside a Ray task error, so the CLI prints it located; an actor
    lost for good (restarts spent, its node gone) is a run error, not a compiler bug."""
    import ray

    if isinstance(err, ray.exceptions.RayActorError):
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return RunError(f"a pool actor was lost and not restarted (after {MAX_RESTARTS} restarts, or its "
                        f"node is gone): {first}")
    cause = getattr(err, "cause", None)
    return cause if isinstance(cause, AgentcError) else err


def fetch(value):
    """A value, fetched when it is an ObjectRef (agentc errors come out as themselves)."""
    import ray

    if not isinstance(value, ray.ObjectRef):
        return value
    try:
        return ray.get(value)
    except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as err:
        raise _unwrap(err) from None


class _Submitter(Executor):
    """The executor's walk with remote ops: `_op` submits and returns ObjectRefs."""

    def __init__(self, plan: "RayPlan", rid: str):
        decider = Decider(plan.prog.cfg.seed)
        super().__init__(plan.module, Runtime(decide=lambda k, label, p, trip, last:
                                              decider(k, label, p, trip, plan.fetch_value(last))))
        self.plan, self.rid, self.step, self.pending = plan, rid, 0, []

    def _op(self, op, args):
        pool = get(op, "pool")
        if not pool:
            return super()._op(op, [self.plan.fetch_value(a) for a in args])
        op_id = get(op, "op_id") or op.name
        n = len(op.results)
        actor = self.plan.actor_for(pool, op_id, self.rid)
        refs = actor.run.options(num_returns=max(n, 1)).remote(self.rid, self.step, op_id, *args)
        self.step += 1
        if n == 0:
            self.pending.append(refs)
            return []
        return [refs] if n == 1 else list(refs)


class RayPlan:
    """A compiled plan's pools as Ray actors, and requests run through them."""

    # How a value in flight is read, blocking and awaited (the Serve builder's plan,
    # agentc.deploy.serve_app, holds Serve responses instead of ObjectRefs).
    fetch_value = staticmethod(fetch)

    @staticmethod
    async def await_value(value):
        return await _await(value)

    def __init__(self, prog: Program, *, address: str | None = None, max_replicas: int = DEFAULT_MAX_REPLICAS,
                 compiled=None, actors: dict[str, list] | None = None):
        """Start the pools' actors, or, given `actors` (another RayPlan's, e.g. the
        `serve` driver's), drive those."""
        import ray

        from agentc.deploy.plan import pool_resource

        self.prog = prog
        _enter(prog)
        c = compiled or compile_placed(prog)
        check_config(c, prog.cfg)
        self.module = c.module
        self.groups = {g.pool: g for g in pool_groups(c, max_replicas)}
        self._answers: OrderedDict = OrderedDict()
        self._inflight: dict[str, asyncio.Future] = {}
        self._lock = threading.Lock()
        self.pgs, self.actors, self.owner, self.pinned = {}, dict(actors or {}), actors is None, False
        if actors is not None:
            return
        if not ray.is_initialized():
            start(address, {pool_resource(g.pool): g.devices * g.tp for g in self.groups.values()})
        try:
            self._start_actors()
        except BaseException:
            self.close()
            raise

    def _start_actors(self) -> None:
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from agentc.deploy.plan import pool_resource

        have = ray.cluster_resources()
        self.pinned = all(pool_resource(p) in have for p in self.groups)
        # Without pool resources (a laptop, a fresh `ray start`): CPU pools get a share of
        # the CPUs each (accelerator pools hold whole devices either way).
        cpu_bundles = sum(g.devices for g in self.groups.values() if not g.accelerated) or 1
        cpu_share = max(0.01, round(min(1.0, have.get("CPU", 1) / cpu_bundles), 2))
        specs = {p: pool_spec(g, self.pinned, cpu_share) for p, g in self.groups.items()}
        check_resources(specs, self.groups, have)
        remote = ray.remote(PoolWorker)
        for p, spec in specs.items():
            pg = placement_group(spec.bundles, strategy="PACK")
            self.pgs[p] = pg
            self.actors[p] = [
                remote.options(**spec.actor, scheduling_strategy=PlacementGroupSchedulingStrategy(pg, b))
                .remote(self.prog, p) for b in spec.bundle_of]
        try:
            ray.get([pg.ready() for pg in self.pgs.values()], timeout=120)
        except ray.exceptions.GetTimeoutError:
            raise UsageError("Ray could not place the pools' bundles within 120 s: "
                             + ", ".join(f"{p}: {len(s.bundles)} x {s.bundles[0]}" for p, s in specs.items())) from None
        for err in ray.get([a.ready.remote() for acts in self.actors.values() for a in acts]):
            if err is not None:
                raise err

    def actor_for(self, pool: str, op_id: str, rid: str):
        reps = self.groups[pool].replicas.get(op_id, 1)
        return self.actors[pool][zlib.crc32(rid.encode()) % reps]

    def submit(self, rid: str, inputs: list[Any]):
        """Submit request `rid`: (the result, a value or ObjectRef; refs of side effects).
        Blocks only where a loop or branch decision reads a value."""
        sub = _Submitter(self, rid)
        return sub.run(list(inputs)), sub.pending

    def run(self, rid: str, inputs: list[Any]) -> Any:
        """One request, answered once per id (a repeated id returns the recorded answer)."""
        with self._lock:
            if rid in self._answers:
                return self._answers[rid]
        result, pending = self.submit(rid, inputs)
        for ref in pending:
            self.fetch_value(ref)
        answer = self.fetch_value(result)
        self._record(rid, answer)
        return answer

    async def arun(self, rid: str, inputs: list[Any]) -> Any:
        """`run` for an event loop: many requests in flight; a duplicate id in flight
        waits for the first one's answer."""
        if rid in self._answers:
            return self._answers[rid]
        if rid in self._inflight:
            return await asyncio.shield(self._inflight[rid])
        fut = asyncio.get_running_loop().create_future()
        self._inflight[rid] = fut
        try:
            result, pending = await asyncio.to_thread(self.submit, rid, inputs)
            answer = await self.await_value(result)
            for ref in pending:
                await self.await_value(ref)
            self._record(rid, answer)
            fut.set_result(answer)
            return answer
        except BaseException as err:
            fut.set_exception(err)
            fut.exception()   # retrieved: a lone request's failure is not "never retrieved"
            raise
        finally:
            self._inflight.pop(rid, None)

    def _record(self, rid: str, answer: Any) -> None:
        with self._lock:
            self._answers[rid] = answer
            while len(self._answers) > _RECORD:
                self._answers.popitem(last=False)

    def close(self) -> None:
        """End the actors and placement groups this plan started (not borrowed ones)."""
        import ray
        from ray.util.placement_group import remove_placement_group

        if not self.owner:
            return
        for acts in self.actors.values():
            for a in acts:
                ray.kill(a, no_restart=True)
        for pg in self.pgs.values():
            remove_placement_group(pg)
        self.actors, self.pgs = {}, {}


async def _await(value):
    import ray

    if not isinstance(value, ray.ObjectRef):
        return value
    try:
        return await value
    except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as err:
        raise _unwrap(err) from None


def start(address: str | None, resources: dict[str, float]) -> None:
    """Connect to the Ray at `address`, or start a local one that advertises the pools'
    resources (small: the machine is shared; no dashboard)."""
    import ray

    if address:
        ray.init(address=address, namespace="agentc", log_to_driver=False)
    else:
        ray.init(num_cpus=min(2, os.cpu_count() or 1), resources=resources, include_dashboard=False,
                 namespace="agentc", log_to_driver=False)


async def answer(plan: RayPlan, request):
    """An HTTP request to a plan: POST `{"input": [...] | "text", "id": "..."}` ->
    `{"id": ..., "output": ...}`; an agentc error -> 422 with `{"id", "error"}`; a body
    that is not such JSON -> 400 (the Serve ingresses of `agentc serve` and of the
    `agentc deploy --format ray-serve` builder both answer so)."""
    import json
    import uuid

    from starlette.responses import JSONResponse

    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return JSONResponse({"error": "the body is not JSON"}, status_code=400)
    inputs = body.get("input") if isinstance(body, dict) else None
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list):
        return JSONResponse({"error": 'expected {"input": [...], "id": "..."}'}, status_code=400)
    rid = str(body.get("id") or uuid.uuid4().hex)
    try:
        output = await plan.arun(rid, inputs)
    except AgentcError as err:
        return JSONResponse({"id": rid, "error": err.message}, status_code=422)
    return JSONResponse(json.loads(json.dumps({"id": rid, "output": output}, default=str)))


def ingress(prog: Program, max_replicas: int = DEFAULT_MAX_REPLICAS, actors: dict | None = None):
    """The Ray Serve application: one ingress replica driving the pools' actors (`actors`,
    started by the caller, or its own), answering as `answer` says."""
    from ray import serve

    @serve.deployment(name="agentc", max_ongoing_requests=1024, ray_actor_options={"num_cpus": 0})
    class AgentIngress:
        def __init__(self, prog: Program, max_replicas: int, actors: dict | None):
            self.plan = RayPlan(prog, max_replicas=max_replicas, actors=actors)

        async def __call__(self, request):
            return await answer(self.plan, request)

    return AgentIngress.bind(prog, max_replicas, actors)


def serve(prog: Program, *, address: str | None, port: int, host: str = "127.0.0.1",
          max_replicas: int = DEFAULT_MAX_REPLICAS, announce=print) -> None:
    """`agentc serve --ray`: start the pools' actors here (so errors print located), hand
    them to the Serve application, and answer until interrupted."""
    import time

    import ray
    from ray import serve as ray_serve

    plan = RayPlan(prog, address=address, max_replicas=max_replicas)   # errors print located, here
    try:
        ray_serve.start(http_options={"host": host, "port": port})
        ray_serve.run(ingress(prog, max_replicas, plan.actors), name="agentc", route_prefix="/")
        announce(f"http://{host}:{port}/")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        ray_serve.shutdown()
        plan.close()
        ray.shutdown()
