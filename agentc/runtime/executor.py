"""The in-process executor of `agentc run`: walks the placed program and runs each op.

What runs where (docs/run.md says the same): the executor follows the placed module's
entry graph in program order (each pool's schedule is that order restricted to the
pool, with send/recv at cross-pool edges; in one process a value passes by reference,
so a cross-pool edge is a dictionary lookup). Heavy math runs in agentc's own compiled
CPU kernels (`agentc.runtime.kernels`: the same builders and CPU pipeline `agentc
compile` uses for a CPU pool, JIT-loaded); tokenization, embedding gathers, document
fetches, tools and the control decisions run here in Python.

Control flow: a loop's continue decision and a branch's arm come from a `Decider`
(`decide(kind, label, prob, trip, last)`). The default draws from the program's own
probabilities with a seeded numpy generator (the simulator's law: a loop runs while a
draw < p, at most `max` trips; a branch takes its first arm when a draw < prob), except
that a tool's answer decides when it says so: a dict with a boolean `"continue"` (loops)
or `"branch"` (0 = then, 1 = else) produced by the last op before the decision.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from agentc.diagnostics import AgentcError, SourceLoc, UsageError, WeightsError
from agentc.passes._ir import get, source_loc
from agentc.passes._plan_ctx import entry_graph

# Ops that only mark a point in the schedule in one process (their bytes are already here).
_PASS_THROUGH = ("kv.transfer", "agent.send", "agent.recv", "comm.allreduce", "tool.lookup")
_CONTROL = ("agent.graph", "agent.loop", "agent.branch", "agent.parallel", "gpu.yield", "agent.yield", "scf.yield")


class RunError(AgentcError):
    """A program `agentc run` cannot execute here (GPU pools, a missing tool or input)."""


@dataclass
class Event:
    """One executed op: what the trace shows (name = the plan's op id)."""

    name: str
    pool: str
    start_ns: int
    end_ns: int
    kind: str


def default_tool(name: str) -> Callable[..., Any]:
    """The documented default of an unregistered tool: a fixed payload naming it."""
    def tool(*_inputs):
        return {"tool": name, "result": "ok"}
    return tool


class Decider:
    """Loop and branch decisions: seeded draws from the program's probabilities, unless
    the last value before the decision says otherwise (see the module docstring)."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def __call__(self, kind: str, label: str, prob: float, trip: int, last: Any) -> bool | int:
        if isinstance(last, dict):
            if kind == "loop" and isinstance(last.get("continue"), bool):
                return last["continue"]
            if kind == "branch" and last.get("branch") in (0, 1):
                return int(last["branch"])
        draw = self.rng.random()
        if kind == "loop":
            return prob >= 1.0 or draw < prob
        return 0 if draw < prob else 1


@dataclass
class Runtime:
    """What ops need at run time: models' runners, indexes, tools, stores, the trace."""

    encoders: dict[str, Any] = field(default_factory=dict)      # model sym -> Encoder
    decoders: dict[str, Any] = field(default_factory=dict)      # model sym -> (Decoder, tokenizer)
    indexes: dict[str, Any] = field(default_factory=dict)       # index sym -> Index
    tools: dict[str, Callable[..., Any]] = field(default_factory=dict)
    decide: Callable[..., bool | int] = field(default_factory=Decider)
    memory: dict[str, list] = field(default_factory=dict)
    observations: list = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    tool_calls: dict[str, int] = field(default_factory=dict)
    max_new_tokens: int | None = None


def _loc(op) -> SourceLoc | None:
    return source_loc(op)


def _text_of(value) -> str:
    """A value as prompt text: documents are joined by their text, json is dumped."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[0], dict) and "text" in value[0]:
        return "\n".join(d["text"] for d in value)
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return json.dumps(value, sort_keys=True, default=str)


class Executor:
    """Runs the entry graph of a placed module with a `Runtime`."""

    def __init__(self, module, rt: Runtime):
        self.module, self.rt = module, rt
        self.graph = entry_graph(module)

    def can_run(self, name: str) -> bool:
        """Whether this executor has a runner for ops named `name`."""
        return (name in _CONTROL or name == "agent.input" or name in _PASS_THROUGH
                or hasattr(self, "_" + name.replace(".", "_")))

    # ------------------------------------------------------------------ driving
    def run(self, inputs: list[Any]) -> Any:
        self.inputs = inputs
        (result,) = self._block(self.graph.regions[0].blocks[0], {})
        return result

    def _block(self, block, env: dict) -> list[Any]:
        last = None
        for op in block.operations:
            name = op.name
            if name in ("gpu.yield", "agent.yield", "scf.yield"):
                return [env[v] for v in op.operands]
            if name == "agent.loop":
                outs = self._loop(op, env, last)
            elif name == "agent.branch":
                outs = self._branch(op, env, last)
            elif name == "agent.parallel":
                outs = self._block(op.regions[0].blocks[0], env)
            else:
                outs = self._op(op, [env[v] for v in op.operands])
            for res, value in zip(op.results, outs):
                env[res] = value
            if outs:
                last = outs[-1]
        return []

    def _loop(self, op, outer: dict, last) -> list[Any]:
        from agentc.planner.scenarios import continue_prob

        n = int(get(op, "max_trips", 1))
        p = continue_prob(n, float(get(op, "expected_trips", n)))
        block = op.regions[0].blocks[0]
        label = get(op, "label") or f"loop@{_loc(op)}"
        values = [outer[v] for v in op.operands]
        for trip in range(n):
            if not self.rt.decide("loop", label, p, trip, last):
                break
            env = dict(outer)
            env.update(zip(block.arguments, values))
            values = self._block(block, env)
            last = values[-1] if values else None
        return values

    def _branch(self, op, env, last) -> list[Any]:
        arm = self.rt.decide("branch", get(op, "label") or f"branch@{_loc(op)}",
                             float(get(op, "prob", 1.0)), 0, last)
        return self._block(op.regions[int(arm)].blocks[0], env)

    # ------------------------------------------------------------------ ops
    def _op(self, op, args: list[Any]) -> list[Any]:
        name = op.name
        if name == "agent.input":
            i = int(get(op, "index", 0))
            if i >= len(self.inputs):
                raise UsageError(f"the agent reads input '{get(op, 'name')}' (#{i + 1}) but "
                                 f"{len(self.inputs)} were given; pass --input VALUE", _loc(op))
            return [self.inputs[i]]
        handler = getattr(self, "_" + name.replace(".", "_"), None)
        if handler is None and name in _PASS_THROUGH:
            handler = self._pass_through
        if handler is None:
            raise RunError(f"'agentc run' cannot execute op '{name}' yet", _loc(op))
        from agentc.runtime.kernels import COMPILES

        seen = len(COMPILES)
        start = time.perf_counter_ns()
        out = handler(op, args)
        end = time.perf_counter_ns()
        op_id = get(op, "op_id") or get(op, "label") or name
        pool = get(op, "pool") or "host"
        # A kernel compiled at its first use is shown as its own slice, not as op time.
        jit_ns = 0
        for kind, a, b in COMPILES[seen:]:
            self.rt.events.append(Event(f"jit {kind}", pool, a, b, "compile"))
            jit_ns += b - a
        self.rt.events.append(Event(op_id, pool, start, end - jit_ns, name))
        return out if isinstance(out, list) else [out]

    def _pass_through(self, op, args):
        return args[:len(op.results)] if op.results else []

    def _encoder(self, op):
        model = get(op, "model")
        enc = self.rt.encoders.get(model)
        if enc is None:
            raise WeightsError(f"no encoder weights for model '{model}'; pass --weights {model}=PATH", _loc(op))
        return enc

    def _embed_encode(self, op, args):
        enc = self._encoder(op)
        return [enc.encode(enc.tokenize(_text_of(args[0])))]

    def _embed_pool(self, op, args):
        return [self._encoder(op).pool(*args[0])]

    def _retrieve_search(self, op, args):
        name = get(op, "index")
        index = self.rt.indexes.get(name)
        if index is None:
            raise RunError(f"no documents for index '{name}'; pass --index {name}=FILE "
                           "(a JSON list of strings, or one document per line)", _loc(op))
        return [index.search(args[0], int(get(op, "k", 4)))]

    def _call_tool(self, op, name: str, args):
        fn = self.rt.tools.get(name) or default_tool(name)
        self.rt.tool_calls[name] = self.rt.tool_calls.get(name, 0) + 1
        try:
            return fn(*args)
        except Exception as err:  # noqa: BLE001 - a user's tool failing is the user's error
            raise RunError(f"tool '{name}' failed: {type(err).__name__}: {err}", _loc(op)) from None

    def _tool_compute(self, op, args):
        return [self._call_tool(op, get(op, "tool"), args)]

    def _compute_cpu(self, op, args):
        fn = get(op, "fn")
        if fn in self.rt.tools:
            return [self._call_tool(op, fn, args)]
        return [args[0] if args else None]   # an unregistered compute passes its first input on

    def _observe_append(self, op, args):
        self.rt.observations.append([_text_of(a) for a in args])
        return []

    def _memory_read(self, op, args):
        return ["\n".join(self.rt.memory.get(get(op, "store"), []))]

    def _memory_write(self, op, args):
        self.rt.memory.setdefault(get(op, "store"), []).extend(_text_of(a) for a in args)
        return []

    # LLM ops: the decoder runtime (agentc.runtime.decoder) answers them.
    def _llm(self, op):
        model = get(op, "model")
        dec = self.rt.decoders.get(model)
        if dec is None:
            raise RunError(f"model '{model}': llm ops need decoder weights in `agentc run`; "
                           f"pass --weights {model}=PATH (a Llama-architecture checkpoint)", _loc(op))
        return dec

    def _llm_tokenize(self, op, args):
        dec = self._llm(op)
        return [dec.tokenize("\n".join(_text_of(a) for a in args))]

    def _llm_prefill(self, op, args):
        return [self._llm(op).prefill(args[0])]

    def _llm_decode(self, op, args):
        n = int(get(op, "tokens", 1))
        if self.rt.max_new_tokens is not None:
            n = min(n, self.rt.max_new_tokens)
        return [self._llm(op).decode(args[0], n)]

    def _llm_sample(self, op, args):
        return [args[0]]   # the tokens were chosen by the compiled sample kernel in decode

    def _llm_detokenize(self, op, args):
        return [self._llm(op).detokenize(args[0])]
