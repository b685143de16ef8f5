"""`agentc run` through the emitted host programs: each pool's `agentc_<pool>_run`
(passes/lower_host.py) and its kernels, loaded in this process, with the runtime C ABI
(agentc/runtime_abi.h) provided by ctypes callbacks into Python.

Loading: the pool's LLVM IR (`{pool}/{pool}.ll` and `{pool}/{kernel}.ll`, the code
`agentc compile` turns into the pool's objects) is optimised (O3) and compiled for this
machine's CPU by llvmlite's MCJIT, all of a pool in one engine, so the host program
calls its kernels directly. The ABI symbols (`agentc_alloc`, `agentc_bind`, ...) are
process-wide symbols defined once here; they answer for the run in progress (one at a
time, `_LOCK`).

Running: every pool's host program runs in its own thread (a cross-pool `agentc_recv`
blocks until the peer's `agentc_send`), each with the graph inputs as bytes; the graph
outputs come back from the pool that makes each. What the callbacks do:
- `agentc_alloc` / `agentc_free`: zero-filled 64-byte-aligned numpy buffers, kept
  alive until freed;
- `agentc_bind(model, op, arg, index)`: an encoder layer's weights (`Encoder.weights`,
  laid out as the kernel wants), an index chunk's rows (padded with zero rows), or a
  decoder's tensors (`_decoder_array`: token embeddings, RoPE rows, layer weights, final
  norm, LM head, and per token the sampler's (1/temperature, u));
- `agentc_embed_rows`: the encoder's WordPiece ids and embedding rows (table lookups);
- `agentc_tokenize` / `agentc_detokenize`: the decoder's tokenizer (the prompt as the
  executor builds it; documents by their text), ids as i32; `agentc_kv_transfer`:
  the KV value handed on (one process);
- tools, compute, memory and observe: as the in-process executor does, values as bytes
  (text UTF-8, answers JSON).
A callback that fails records the error, returns a negative code (or a zeroed buffer
where the ABI allows no failure) and the run raises it afterwards.

Which programs: those whose every op the emitted code computes for real
(`HOST_OPS`): embeddings, retrieval, llm calls (tokenize, prefill, the KV transfer,
decode with sampling, detokenize), tools, compute, memory, observe, and loops and
branches of a program on one pool (`control_runs`; `agentc_decide` asks the
executor's `Decider`, so the same seed draws the same trips and arms; on several
pools they still run on `agentc.runtime.executor`, docs/run.md).
"""

from __future__ import annotations

import ctypes
import functools
import json
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from agentc.diagnostics import AgentcError, UsageError
from agentc.passes._ir import get, source_loc, walk
from agentc.passes._plan_ctx import entry_graph
from agentc.runtime.executor import Event, RunError, default_tool

# Ops whose emitted host code computes what the program means (see the module docstring).
HOST_OPS = frozenset({"agent.input", "agent.graph", "agent.yield", "gpu.yield", "embed.encode", "embed.pool",
                      "retrieve.search", "tool.lookup", "tool.compute", "compute.cpu", "memory.read",
                      "memory.write", "observe.append", "agent.send", "agent.recv", "llm.tokenize",
                      "llm.prefill", "kv.transfer", "llm.decode", "llm.sample", "llm.detokenize",
                      "agent.loop", "agent.branch"})
CONTROL_OPS = frozenset({"agent.loop", "agent.branch"})
RECV_TIMEOUT_S = 600.0

_ABI = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p),
                        ctypes.POINTER(ctypes.c_int64), ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64)
_ALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
_FREE = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_BIND = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int64, ctypes.c_int64,
                         ctypes.c_int64)
_CHANNEL = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int64)
_TRACE = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int64)
_DECIDE = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_char_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int64)
_ENTRY = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)

_LOCK = threading.Lock()
_ACTIVE: list = [None]      # the HostABI of the run in progress


def unsupported(module) -> list:
    """The ops of the entry graph the host-program path does not run (empty: it can):
    ops outside HOST_OPS, llm ops of a tensor-parallel shard (lower-kernels sizes only
    unsharded calls), and loops and branches unless `control_runs` holds."""
    ops = list(walk(entry_graph(module)))
    control = control_runs(module, ops)
    return [op for op in ops if op.name not in HOST_OPS or (op.name in CONTROL_OPS and not control)
            or (op.name.startswith("llm.") and int(get(op, "tp", 1) or 1) != 1)]


def control_runs(module, ops: list) -> bool:
    """Whether lower-host emits the loops and branches of this placed program
    (lower_host.control_tree): every op on one pool, and no graph output that the
    partition resolves to a graph input (a branch arm that passes an input through)."""
    from agentc.passes.partition import _Program

    if len({get(op, "pool") for op in ops if get(op, "pool")}) > 1:
        return False
    return all(hasattr(v.owner, "name") and v.owner.name != "agent.input"    # not a block argument either
               for v in _Program(entry_graph(module)).outputs)


class HostABI:
    """The runtime ABI of one run: buffers, bound arrays, channels, tools (an executor
    `Runtime` holds the encoders, indexes, tools and stores)."""

    def __init__(self, rt, prompts: dict | None = None, kinds: dict | None = None, tools: dict | None = None):
        self.rt = rt
        self.tools = tools or {}         # tool / compute name -> its operands' (kind, index)
        self.kinds = kinds or {}         # op id -> op name (the trace's slice kinds)
        self.locs: dict[str, object] = {}     # tool / compute name -> its op's source location
        self.pool_of: dict[int, str] = {}     # thread -> the pool it runs
        self.started: dict[tuple[int, str], int] = {}
        self.prompts = prompts or {}     # model -> its tokenize's operand (kind, index)
        self.buffers: dict[int, np.ndarray] = {}
        self.bound: dict[tuple, np.ndarray] = {}
        self.channels: dict[int, queue.Queue] = {}
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.failed = threading.Event()     # a pool stopped early: its peers stop waiting

    # -- memory
    def _buffer(self, n: int) -> int:
        arr = np.zeros(max(1, n) + 64, np.uint8)
        addr = (arr.ctypes.data + 63) & ~63
        with self.lock:
            self.buffers[addr] = arr
        return addr

    def alloc(self, n: int, _where: int) -> int:
        return self._buffer(n)

    def free(self, p: int) -> None:
        with self.lock:
            self.buffers.pop(p, None)

    # -- weights and index rows
    def bind(self, model: str, op: str, arg: int, index: int, nbytes: int) -> int:
        key = (model, op, arg, index)
        if key not in self.bound:
            self.bound[key] = self._bound_array(model, op, arg, index, nbytes)
        return self.bound[key].ctypes.data

    def _bound_array(self, model: str, op: str, arg: int, index: int, nbytes: int) -> np.ndarray:
        if model in self.rt.decoders:
            arr = self._decoder_array(model, op, arg, index, nbytes)
            if arr.nbytes != nbytes:
                raise RunError(f"model '{model}': op '{op}' argument {arg} has {arr.nbytes} bytes, "
                               f"the compiled kernel wants {nbytes} (do the checkpoint's sizes match the "
                               "model's declaration?)")
            return np.ascontiguousarray(arr, np.float32)
        if model in self.rt.encoders:
            arr = self.rt.encoders[model].weights[index][arg - 1]
            if arr.nbytes != nbytes:
                raise RunError(f"model '{model}': layer {index} argument {arg} has {arr.nbytes} bytes, "
                               f"the compiled kernel wants {nbytes}")
            return np.ascontiguousarray(arr, np.float32)
        if model in self.rt.indexes:
            emb = self.rt.indexes[model].embeddings
            rows = nbytes // (4 * emb.shape[1])     # `index`: the chunk's first row
            out = np.zeros((rows, emb.shape[1]), np.float32)
            part = emb[index:index + rows]
            out[:len(part)] = part
            return out
        raise RunError(f"no weights bound for '{model}' in `agentc run`")

    def _decoder_array(self, model: str, op: str, arg: int, index: int, nbytes: int) -> np.ndarray:
        """A decoder's arguments (lower-host's llm functions): 0 the token embeddings;
        prefill/decode 1, 2 the RoPE cos/sin rows (all C rows for prefill; row `index`
        = the position for decode), 3.. layer `index`'s weights; `<label>.sample` 1 the
        final norm, 2 the LM head, 3 the token's (1/temperature, u)."""
        dec = self.rt.decoders[model].decoder
        if op.endswith(".sample"):
            if arg == 3:
                return self.rt.decoders[model].sampler.params()
            return {1: dec.final_norm, 2: dec.lm_head}[arg]
        if arg == 0:
            return dec.embed
        if arg in (1, 2):
            table = dec.cos if arg == 1 else dec.sin
            rows = nbytes // (4 * table.shape[1])
            # prefill binds the table's first C rows (C >= 64), a decode step one row
            return table[index] if rows == 1 else table[:rows]
        return dec.layers[index][arg - 3]

    # -- runtime calls: (name, inputs as bytes) -> bytes
    def call(self, fn: str, name: str, ins: list[bytes], out: int, cap: int) -> int:
        data = getattr(self, "_" + fn.removeprefix("agentc_"))(name, ins)
        if fn == "agentc_tokenize":   # a prompt longer than the call's context keeps its end
            data = data[-(cap // 4):] if cap >= 4 else data[:0]
        data = bytes(data)[:cap]
        ctypes.memmove(out, data, len(data))
        return len(data)

    def _embed_rows(self, name, ins):
        enc = self.rt.encoders.get(name)
        if enc is None:
            raise RunError(f"no encoder weights for model '{name}'; pass --weights {name}=PATH")
        return enc._embed_rows(enc.tokenize(ins[0].decode("utf-8", "replace"))).tobytes()

    def _runner(self, name):
        runner = self.rt.decoders.get(name)
        if runner is None:
            raise RunError(f"model '{name}': llm ops need decoder weights; pass --weights {name}=PATH")
        return runner

    def _tokenize(self, name, ins):
        """The prompt as the executor builds it: the inputs joined by newlines, documents
        by their text (a retrieve's scores and ids, fetched from its index by id)."""
        kinds = self.prompts.get(name, [])
        texts = []
        for i, data in enumerate(ins):
            kind, index = kinds[i] if i < len(kinds) else ("text", None)
            if kind == "documents" and index in self.rt.indexes:
                texts.append("\n".join(h["text"] for h in from_bytes(data, kind, self.rt.indexes[index].docs)))
            else:
                texts.append(data.decode("utf-8", "replace"))
        return np.asarray(self._runner(name).tokenize("\n".join(texts)), np.int32)

    def _detokenize(self, name, ins):
        ids = np.frombuffer(ins[0][:len(ins[0]) // 4 * 4], np.int32).tolist() if ins else []
        if self.rt.max_new_tokens is not None:
            ids = ids[:self.rt.max_new_tokens]
        return self._runner(name).detokenize(ids).encode()

    def _kv_transfer(self, name, ins):
        return ins[0] if ins else b""

    def _tool_lookup(self, name, ins):
        return ins[0] if ins else b""

    def _tool(self, name, ins):
        fn = self.rt.tools.get(name) or default_tool(name)
        self.rt.tool_calls[name] = self.rt.tool_calls.get(name, 0) + 1
        kinds = self.tools.get(name, [])
        args = []
        for i, data in enumerate(ins):
            kind, index = kinds[i] if i < len(kinds) else ("text", None)
            docs = self.rt.indexes[index].docs if index in self.rt.indexes else None
            args.append(from_bytes(data, kind, docs))
        try:
            answer = fn(*args)
        except Exception as err:  # noqa: BLE001 - a user's tool failing is the user's error
            raise RunError(f"tool '{name}' failed: {type(err).__name__}: {err}", self.locs.get(name)) from None
        return _encode(answer)

    def _tool_invoke(self, name, ins):
        return self._tool(name, ins)

    def _compute(self, name, ins):
        return self._tool(name, ins) if name in self.rt.tools else (ins[0] if ins else b"")

    def _memory_read(self, name, ins):
        return "\n".join(self.rt.memory.get(name, [])).encode()

    def _memory_write(self, name, ins):
        self.rt.memory.setdefault(name, []).extend(i.decode("utf-8", "replace") for i in ins)
        return b""

    def _observe_append(self, name, ins):
        self.rt.observations.append([i.decode("utf-8", "replace") for i in ins])
        return b""

    # -- the trace: one slice per op call (agentc_trace)
    def trace(self, op: str, begin: int) -> None:
        now, thread = time.perf_counter_ns(), threading.get_ident()
        if begin:
            self.started[(thread, op)] = now
            return
        start = self.started.pop((thread, op), now)
        self.rt.events.append(Event(op, self.pool_of.get(thread, "host"), start, now, self.kinds.get(op, op)))

    # -- control decisions (agentc_decide): the executor's Decider, in program order
    def decide(self, region: str, kind: int, prob: float, trip: int) -> int:
        with self.lock:
            return int(self.rt.decide("loop" if kind == 0 else "branch", region, prob, trip, None))

    # -- channels between pools (one process: queues)
    def _queue(self, channel: int) -> queue.Queue:
        with self.lock:
            return self.channels.setdefault(channel, queue.Queue())

    def send(self, channel: int, data: int, n: int) -> int:
        self._queue(channel).put(ctypes.string_at(data, n) if n else b"")
        return 0

    def recv(self, channel: int, out: int, cap: int) -> int:
        deadline = time.monotonic() + RECV_TIMEOUT_S
        while True:
            try:
                data = self._queue(channel).get(timeout=0.05)
                break
            except queue.Empty:
                if self.failed.is_set():
                    return -1       # the sender's pool stopped; its error is the run's
                if time.monotonic() > deadline:
                    raise RunError(f"channel {channel}: nothing received in {RECV_TIMEOUT_S:.0f} s") from None
        if len(data) > cap:    # cut short, the peer's value would be another value
            raise RunError(f"channel {channel}: received {len(data)} bytes, the receiving buffer holds {cap}")
        ctypes.memmove(out, data, len(data))
        return len(data)


def _encode(value) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, sort_keys=True, default=str).encode()


def _guard(default):
    """A callback that records its exception (raised after the run) and returns `default`."""
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args):
            abi = _ACTIVE[0]
            try:
                return fn(abi, *args)
            except BaseException as err:  # noqa: BLE001 - re-raised by run() after the program stops
                if abi is not None:
                    abi.errors.append(err)
                return default(abi, *args) if callable(default) else default
        return inner
    return wrap


def _abi_fn(fn_name: str):
    @_guard(-1)
    def cb(abi, name, ins, sizes, n_in, out, cap):
        blobs = [ctypes.string_at(ins[i], sizes[i]) if sizes[i] else b"" for i in range(n_in)]
        return abi.call(fn_name, name.decode(), blobs, out, cap)
    return _ABI(cb)


def _zeroed(abi, *args):      # a bind that failed: the program runs on, the run raises
    return abi._buffer(args[-1])


_CALLBACKS = {
    "agentc_alloc": _ALLOC(_guard(lambda abi, n, w: abi._buffer(n))(lambda abi, n, w: abi.alloc(n, w))),
    "agentc_free": _FREE(_guard(None)(lambda abi, p: abi.free(p))),
    "agentc_bind": _BIND(_guard(_zeroed)(lambda abi, m, o, a, i, n: abi.bind(m.decode(), o.decode(), a, i, n))),
    "agentc_send": _CHANNEL(_guard(-1)(lambda abi, ch, peer, p, n: abi.send(ch, p, n))),
    "agentc_recv": _CHANNEL(_guard(-1)(lambda abi, ch, peer, p, n: abi.recv(ch, p, n))),
    "agentc_trace": _TRACE(_guard(None)(lambda abi, op, begin: abi.trace(op.decode(), begin))),
    "agentc_decide": _DECIDE(_guard(-1)(lambda abi, r, k, p, t: abi.decide(r.decode(), k, p, t))),
}
for _fn in ("agentc_tokenize", "agentc_detokenize", "agentc_kv_transfer", "agentc_embed_rows", "agentc_tool_lookup", "agentc_tool_invoke", "agentc_compute",
            "agentc_memory_read", "agentc_memory_write", "agentc_observe_append"):
    _CALLBACKS[_fn] = _abi_fn(_fn)


@functools.cache
def _llvm():
    """llvmlite, initialised once, with MLIR's runtime libraries (memrefCopy; the async
    runtime of threaded kernels) visible to JIT-compiled code."""
    import llvmlite.binding as llvm

    from agentc.targets import toolchain

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    for lib in ("mlir_c_runner_utils", "mlir_async_runtime"):
        ctypes.CDLL(toolchain.runtime_lib(lib), mode=ctypes.RTLD_GLOBAL)
        llvm.load_library_permanently(toolchain.runtime_lib(lib))
    return llvm


def _target_machine(llvm):
    """This CPU's target machine, a new one per engine: an MCJIT engine owns the target
    machine it is created with and deletes it with itself, so a shared one would dangle
    once the first engine is gone."""
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(),
                                        opt=3, codemodel="jitdefault")


@dataclass
class Pool:
    """One pool's loaded host program."""

    name: str
    entry: object
    engine: object
    inputs: list[str]
    outputs: list[str]


def load_pool(name: str, entry_name: str, ll_texts: list[str], inputs: list[str], outputs: list[str]) -> Pool:
    """Compile a pool's LLVM IR modules into one engine; its entry point as a ctypes
    function. The same IR loads once per process (compiling it costs seconds)."""
    return Pool(name, *_engine(entry_name, tuple(ll_texts)), inputs, outputs)


@functools.lru_cache(maxsize=16)
def _engine(entry_name: str, ll_texts: tuple[str, ...]):
    llvm = _llvm()
    tm = _target_machine(llvm)
    mods = []
    for text in ll_texts:
        mod = llvm.parse_assembly(text)
        mod.verify()
        mods.append(mod)
    for mod in mods:     # the O3 pipeline, as MLIR's ExecutionEngine runs for the JIT kernels
        pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=3))
        pb.getModulePassManager().run(mod, pb)
    # The ABI's symbols are process-global and anyone may register the same names (a
    # test's recording stubs, a GPU check): registered again right before this engine
    # resolves them, its calls go to this module's callbacks, which live for good.
    for name, cb in _CALLBACKS.items():
        llvm.add_symbol(name, ctypes.cast(cb, ctypes.c_void_p).value)
    engine = llvm.create_mcjit_compiler(mods[0], tm)
    for mod in mods[1:]:
        engine.add_module(mod)
    engine.finalize_object()
    addr = engine.get_function_address(entry_name)
    if not addr:
        raise RunError(f"no entry point '{entry_name}' in the host program")
    return _ENTRY(addr), engine


def load_pools(c) -> list[Pool]:
    """Every pool's host program of a compilation that reached the `llvm` stage."""
    from agentc.passes._ir import attr_value, top_ops

    pools = []
    for op in top_ops(c.module):
        if op.name != "builtin.module":
            continue
        pool = get(op, "sym_name")
        host = next((h.operation for h in op.regions[0].blocks[0].operations
                     if h.operation.name == "builtin.module" and "agentc.host" in h.attributes), None)
        if host is None:
            continue
        kernels = sorted(get(f, "sym_name") for f in op.regions[0].blocks[0].operations
                         if f.operation.name == "func.func" and "llvm.emit_c_interface" in f.attributes)
        texts = [c.artifacts[f"{pool}/{pool}.ll"].decode()] + [c.artifacts[f"{pool}/{k}.ll"].decode() for k in kernels]
        pools.append(load_pool(pool, get(host, "agentc.entry_point"), texts,
                               list(attr_value(host.attributes["agentc.inputs"])),
                               list(attr_value(host.attributes["agentc.outputs"]))))
    return pools


def to_bytes(value, kind: str) -> bytes:
    """A graph input as the host program takes it."""
    if kind == "embedding" and not isinstance(value, (str, bytes)):
        return np.asarray(value, np.float32).tobytes()
    if kind in ("text", "tokens") or isinstance(value, (str, bytes)):
        return value if isinstance(value, bytes) else str(value).encode()
    return _encode(value)


def from_bytes(data: bytes, kind: str, docs: list[str] | None):
    """A graph output the host program wrote, as the executor returns it."""
    if kind == "embedding":
        return np.frombuffer(data, np.float32).copy()
    if kind == "documents" and docs is not None and len(data) % 8 == 0:
        k = len(data) // 8      # k f32 scores, then their k i32 ids (retrieve's two outputs)
        scores = np.frombuffer(data[:4 * k], np.float32)
        ids = np.frombuffer(data[4 * k:], np.int32)
        return [{"id": int(i), "score": round(float(s), 6), "text": docs[int(i)]}
                for s, i in zip(scores, ids) if 0 <= int(i) < len(docs)]
    text = data.decode("utf-8", "replace")
    if kind == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def prompt_kinds(module) -> dict[str, list[tuple[str, str | None]]]:
    """model -> (kind, index of a retrieve's documents) of each input of its first
    llm.tokenize: how `agentc_tokenize` reads the bytes it gets."""
    return _operand_kinds(module, ("llm.tokenize",), "model")


def tool_kinds(module) -> dict[str, list[tuple[str, str | None]]]:
    """tool or compute name -> (kind, index) of each of its inputs: how `agentc_tool_*`
    and `agentc_compute` turn the bytes they get into the values the executor passes
    (a retrieve's hits as {id, score, text}, JSON as its value), so a user's tool sees
    the same arguments on either engine."""
    return {**_operand_kinds(module, ("compute.cpu",), "fn"),
            **_operand_kinds(module, ("tool.compute", "tool.lookup"), "tool")}


def _operand_kinds(module, names: tuple[str, ...], key: str) -> dict[str, list[tuple[str, str | None]]]:
    from agentc import dialects

    out: dict[str, list] = {}
    for op in walk(entry_graph(module)):
        if op.name in names and get(op, key) is not None:
            kinds = []
            for v in op.operands:
                owner = v.owner
                index = get(owner, "index") if getattr(owner, "name", "") == "retrieve.search" else None
                kinds.append((dialects.type_kind(v.type), index))
            out.setdefault(str(get(op, key)), kinds)
    return out


def _output_owners(module) -> list[tuple[str | None, str | None, int | None]]:
    """(pool, index name of a retrieve, graph input number) of each graph output, in
    graph order, as partition resolves it (the pool whose schedule returns it); a graph
    input returned as it is has no pool."""
    from mlir import ir

    from agentc.passes.partition import _Program

    out = []
    for v in _Program(entry_graph(module)).outputs:    # a loop's or branch's result: its op's
        owner = v.owner
        if not hasattr(owner, "attributes"):     # a block argument
            out.append((None, None, ir.BlockArgument(v).arg_number))
        elif owner.name == "agent.input":
            out.append((None, None, int(get(owner, "index", 0))))
        else:
            out.append((get(owner, "pool"), get(owner, "index") if owner.name == "retrieve.search" else None, None))
    return out


def run(c, pools: list[Pool], rt, inputs: list, capacity: int = 1 << 20) -> list:
    """Run every pool's host program (threads) on `inputs`; the graph outputs in order."""
    owners = _output_owners(c.module)
    wanted = max((len(p.inputs) for p in pools), default=0)
    if len(inputs) < wanted:
        raise UsageError(f"the agent reads {wanted} input(s) but {len(inputs)} were given; pass --input VALUE")
    kinds = {str(get(op, "op_id") or get(op, "label")): op.name for op in walk(entry_graph(c.module))
             if get(op, "op_id") or get(op, "label")}
    abi = HostABI(rt, prompt_kinds(c.module), kinds, tool_kinds(c.module))
    for op in walk(entry_graph(c.module)):
        name = get(op, "tool") or get(op, "fn")
        if name and op.name in ("tool.compute", "compute.cpu"):
            abi.locs.setdefault(str(name), source_loc(op))
    results: dict[str, tuple[int, list[bytes]]] = {}

    def one(pool: Pool):
        try:
            run_pool(pool)
        except BaseException as err:  # noqa: BLE001 - raised by run() below
            abi.errors.append(err)
        if pool.name not in results or results[pool.name][0] != 0:
            abi.failed.set()

    def run_pool(pool: Pool):
        blobs = [to_bytes(v, k) for v, k in zip(inputs, pool.inputs)]
        keep = [ctypes.create_string_buffer(b, len(b) or 1) for b in blobs]
        ins = (ctypes.c_void_p * max(1, len(blobs)))(*[ctypes.addressof(k) for k in keep])
        in_bytes = (ctypes.c_int64 * max(1, len(blobs)))(*[len(b) for b in blobs])
        outs = [ctypes.create_string_buffer(capacity) for _ in pool.outputs]
        out_ptrs = (ctypes.c_void_p * max(1, len(outs)))(*[ctypes.addressof(o) for o in outs])
        out_bytes = (ctypes.c_int64 * max(1, len(outs)))(*[capacity] * len(outs))
        abi.pool_of[threading.get_ident()] = pool.name
        rc = pool.entry(ctypes.addressof(ins), ctypes.addressof(in_bytes), ctypes.addressof(out_ptrs),
                        ctypes.addressof(out_bytes))
        results[pool.name] = (rc, [o.raw[:out_bytes[j]] for j, o in enumerate(outs)])

    with _LOCK:
        _ACTIVE[0] = abi
        try:
            threads = [threading.Thread(target=one, args=(p,), name=f"agentc-{p.name}") for p in pools]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            _ACTIVE[0] = None
    if abi.errors:
        err = abi.errors[0]
        raise err if isinstance(err, AgentcError) else RunError(f"host program: {type(err).__name__}: {err}")
    for name, (rc, _) in sorted(results.items()):
        if rc != 0:
            raise RunError(f"pool '{name}': its host program returned {rc}")
    taken = {p.name: 0 for p in pools}
    out = []
    for (pool, index, arg), kind in zip(owners, _kinds(c.module)):
        if pool is None:
            out.append(inputs[arg])
            continue
        blobs = results[pool][1]
        data = blobs[taken[pool]]
        taken[pool] += 1
        docs = rt.indexes[index].docs if index in rt.indexes else None
        out.append(from_bytes(data, kind, docs))
    return out


def _kinds(module) -> list[str]:
    from agentc import dialects

    ret = list(entry_graph(module).regions[0].blocks[0].operations)[-1]
    return [dialects.type_kind(v.type) for v in ret.operands]
