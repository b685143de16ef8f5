"""Lower the AST to the agent dialect, checking the program as it goes.

Name resolution, value kinds, units, loop bounds and SLA sanity are checked here,
because this is where names meet values; every error is a `VerifyError` at the
offending token. Every op gets the `file:line:col` location of the source it came from.
It is one module past 400 lines on purpose: one lowering class, one method per language
construct, each with the checks that construct needs beside it.

Semantics fixed here (README "Language reference" documents them):
- `loop max N while p`: pre-tested; the body runs while a test that holds with
  probability p succeeds, at most N times: expected trips = p + p^2 + ... + p^N.
  `expect E` gives the expected trips directly; `loop max N` alone runs N times.
- Variables assigned inside a loop or branch that existed before it are carried out of
  it; variables first defined inside are local to it (a branch arm's are visible after
  only when both arms define them). Everything defined in `parallel` is visible after.
"""

from __future__ import annotations

import dataclasses
import math

from mlir import ir

from agentc import dialects
from agentc.catalog import Catalog, ModelSpec, load_catalog, model_from_decl
from agentc.diagnostics import AgentcError, SourceLoc, VerifyError
from agentc.frontend import ast

VALUE_KINDS = dialects.VALUE_KINDS
TIME_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
BYTE_UNITS = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
COUNT_UNITS = {None: 1, "k": 1e3, "M": 1e6, "G": 1e9}
MODEL_KIND_FOR = {"llm": "decoder", "stt": "stt", "tts": "tts", "embed": "encoder"}
ARCH_KINDS = ("decoder", "encoder", "stt", "tts")
BUILTINS = ("llm", "stt", "tts", "embed", "retrieve", "memory.load", "memory.store", "observe")


# ---------------------------------------------------------------------------- units

MAX_TIME_MS = 1e12
# Speech sizes when the program does not give them: stt(..., seconds=) defaults to 5 s of
# audio; tts speaks its text at 60 ms per token (about 1000 tokens a minute), its token
# count taken from the LLM that wrote the text (its out=) or 128.
STT_DEFAULT_MS = 5000.0
SPEECH_MS_PER_TOKEN = 60.0
TTS_DEFAULT_TOKENS = 128


def time_ms(q: ast.Quantity, what: str) -> float:
    if q.unit not in TIME_UNITS_MS:
        got = f"'{q.text}'" if q.unit else f"'{q.text}' without a unit"
        raise VerifyError(f"{what} must be a time (ms, s or us), got {got}", q.loc)
    ms = q.value * TIME_UNITS_MS[q.unit]
    if not ms <= MAX_TIME_MS:
        raise VerifyError(f"{what} is too long, got '{q.text}' (at most {MAX_TIME_MS:g} ms, about 30 years)", q.loc)
    return ms


def size_bytes(q: ast.Quantity, what: str) -> int:
    if q.unit not in BYTE_UNITS:
        got = f"'{q.text}'" if q.unit else f"'{q.text}' without a unit"
        raise VerifyError(f"{what} must be a size in bytes (B, KB, MB, GB, KiB, ...), got {got}", q.loc)
    if not q.value * BYTE_UNITS[q.unit] < 2**63:
        raise VerifyError(f"{what} is too large, got '{q.text}'", q.loc)
    return int(round(q.value * BYTE_UNITS[q.unit]))


def count(q: ast.Quantity, what: str, minimum: int = 1) -> int:
    if q.unit not in COUNT_UNITS:
        raise VerifyError(f"{what} must be a plain count (optionally k, M, G), got '{q.text}'", q.loc)
    v = q.value * COUNT_UNITS[q.unit]
    if not minimum <= v < 2**63 or v != int(v):
        raise VerifyError(f"{what} must be an integer >= {minimum}, got '{q.text}'", q.loc)
    return int(v)


def probability(q: ast.Quantity, what: str) -> float:
    if q.unit is not None or not 0.0 <= q.value <= 1.0:
        raise VerifyError(f"{what} must be a probability between 0 and 1, got '{q.text}'", q.loc)
    return q.value


# ---------------------------------------------------------------------------- kwargs

def _speech_sizes(name: str, seconds: ast.Quantity | None, args) -> dict:
    """audio_ms (and for tts the tokens spoken) of an stt/tts call: `seconds=` (a plain
    number of seconds or a time), else stt's default length, else for tts the `out=` of
    the LLM that wrote its text."""
    if name == "embed":
        return {}
    if seconds is not None:
        audio_ms = seconds.value * 1e3 if seconds.unit is None else time_ms(seconds, f"{name} seconds")
        if not 0 < audio_ms <= MAX_TIME_MS:
            raise VerifyError(f"{name} seconds must be positive, got '{seconds.text}'", seconds.loc)
    elif name == "stt":
        audio_ms = STT_DEFAULT_MS
    else:
        producer = args[0][0].owner if args else None
        tokens = TTS_DEFAULT_TOKENS
        if producer is not None and getattr(producer, "name", "") == "llm.call" \
                and "output_tokens" in producer.attributes:
            tokens = ir.IntegerAttr(producer.attributes["output_tokens"]).value
        return {"tokens": tokens, "audio_ms": tokens * SPEECH_MS_PER_TOKEN}
    if name == "tts":
        return {"tokens": max(1, round(audio_ms / SPEECH_MS_PER_TOKEN)), "audio_ms": audio_ms}
    return {"audio_ms": audio_ms}


class _Kwargs:
    """Keyword arguments of one call, checked against the names the callee accepts."""

    def __init__(self, call_name: str, kwargs: tuple[ast.KwArg, ...], allowed: tuple[str, ...]):
        self.call_name = call_name
        self.items: dict[str, ast.KwArg] = {}
        for kw in kwargs:
            if kw.name not in allowed:
                hint = f"; expected one of: {', '.join(allowed)}" if allowed else "; it takes none"
                raise VerifyError(f"unknown argument '{kw.name}' for {call_name}{hint}", kw.loc)
            if kw.name in self.items:
                raise VerifyError(f"argument '{kw.name}' given twice", kw.loc)
            self.items[kw.name] = kw

    def quantity(self, name: str, required_at: SourceLoc | None = None) -> ast.Quantity | None:
        kw = self.items.get(name)
        if kw is None:
            if required_at is not None:
                raise VerifyError(f"{self.call_name} needs '{name}='", required_at)
            return None
        if not isinstance(kw.value, ast.Quantity):
            raise VerifyError(f"'{name}' of {self.call_name} must be a number", kw.value.loc)
        return kw.value

    def word(self, name: str) -> ast.Word | None:
        kw = self.items.get(name)
        if kw is None:
            return None
        if not isinstance(kw.value, ast.Word):
            raise VerifyError(f"'{name}' of {self.call_name} must be a name", kw.value.loc)
        return kw.value


# ---------------------------------------------------------------------------- attrs

def _attr(value) -> ir.Attribute:
    if isinstance(value, bool):
        return ir.BoolAttr.get(value)
    if isinstance(value, int):
        return ir.IntegerAttr.get(ir.IntegerType.get_signless(64), value)
    if isinstance(value, float):
        return ir.FloatAttr.get(ir.F64Type.get(), value)
    if isinstance(value, str):
        return ir.StringAttr.get(value)
    if isinstance(value, (list, tuple)):
        return ir.ArrayAttr.get([_attr(v) for v in value])
    raise TypeError(f"no attribute for {value!r}")


def attrs(**kw) -> dict[str, ir.Attribute]:
    return {k: _attr(v) for k, v in kw.items() if v is not None}


def mlir_loc(loc: SourceLoc) -> ir.Location:
    return ir.Location.file(loc.file, loc.line, loc.col)


# ---------------------------------------------------------------------------- lowering

@dataclasses.dataclass
class _Agent:
    decl: ast.AgentDecl
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


class _Lowerer:
    def __init__(self, program: ast.Program, catalog: Catalog):
        self.program = program
        self.catalog = catalog
        self.models: dict[str, tuple[ModelSpec, SourceLoc]] = {}
        self.model_ops_emitted: set[str] = set()
        self.model_weights: dict[str, str] = {}   # `weights="..."`: a checkpoint for `agentc run`
        self.indexes: dict[str, tuple[int, int, SourceLoc]] = {}
        self.agents: dict[str, _Agent] = {}
        self.labels: dict[str, int] = {}

    # declarations -------------------------------------------------------------
    def declare(self) -> None:
        symbols: dict[str, tuple[str, SourceLoc]] = {}

        def claim(kind: str, name: str, loc: SourceLoc) -> None:
            """Models, indexes and agents become symbols of one module: one namespace,
            so a name may be declared once, whatever it names."""
            if name in symbols:
                other, where = symbols[name]
                if other == kind:
                    verb = "defined" if kind == "agent" else "declared"
                    raise VerifyError(f"{kind} '{name}' is already {verb}", loc, (f"first {verb} at {where}",))
                raise VerifyError(f"{kind} '{name}' has the name of the {other} declared at {where}", loc,
                                  ("models, indexes and agents share one namespace: rename one",))
            symbols[name] = (kind, loc)

        for m in self.program.models:
            claim("model", m.name, m.loc)
            self.models[m.name] = (self._model_spec(m), m.loc)
        for ix in self.program.indexes:
            claim("index", ix.name, ix.loc)
            kw = _Kwargs(f"index '{ix.name}'", ix.kwargs, ("size", "dim"))
            size = count(kw.quantity("size", ix.loc), "index size")
            dim = count(kw.quantity("dim", ix.loc), "index dim")
            self.indexes[ix.name] = (size, dim, ix.loc)
        for a in self.program.agents:
            claim("agent", a.name, a.loc)
            seen: dict[str, ast.Param] = {}
            for p in a.params:
                if p.name in seen:
                    raise VerifyError(f"parameter '{p.name}' is declared twice", p.loc)
                seen[p.name] = p
                self._check_kind(p.kind, p.kind_loc)
            for o in a.outputs:
                self._check_kind(o.name, o.loc)
            self.agents[a.name] = _Agent(a, tuple(p.kind for p in a.params), tuple(o.name for o in a.outputs))
        self._check_recursion()

    def _check_kind(self, kind: str, loc: SourceLoc) -> None:
        if kind not in VALUE_KINDS:
            raise VerifyError(f"unknown value kind '{kind}'; expected one of: {', '.join(VALUE_KINDS)}", loc)

    def _model_spec(self, m: ast.ModelDecl) -> ModelSpec:
        overrides = {}
        for kw in m.kwargs:
            if kw.name in overrides or (kw.name == "weights" and m.name in self.model_weights):
                raise VerifyError(f"argument '{kw.name}' given twice", kw.loc)
            v = kw.value
            if kw.name == "weights":   # not an architecture field: where `agentc run` reads the tensors
                if not isinstance(v, ast.Str):
                    raise VerifyError("weights= takes a quoted path, e.g. weights=\"ckpt/model.safetensors\"",
                                      kw.loc)
                self.model_weights[m.name] = v.value
                continue
            if isinstance(v, ast.Quantity):
                if v.unit is not None:
                    raise VerifyError(f"model field '{kw.name}' takes a plain number, got '{v.text}'", v.loc)
                overrides[kw.name] = int(v.value) if v.value < 2**63 and v.value == int(v.value) else v.value
            elif isinstance(v, ast.Word):
                overrides[kw.name] = {"true": True, "false": False}.get(v.name, v.name)
            else:
                overrides[kw.name] = v.value
        base_name = m.base.name
        if base_name in ARCH_KINDS:
            base = None
            overrides["kind"] = base_name
        else:
            if base_name not in self.catalog.models:
                raise VerifyError(f"unknown model '{base_name}'", m.base.loc,
                                  (f"known models: {', '.join(sorted(self.catalog.models))}; "
                                   f"or declare one by architecture: decoder(layers=..., ...)",))
            base = self.catalog.models[base_name]
        try:
            return model_from_decl(base, name=m.name, loc=m.loc, **overrides)
        except AgentcError as e:
            raise VerifyError(e.message, e.loc or m.loc, e.notes) from None

    def _check_recursion(self) -> None:
        calls: dict[str, set[str]] = {}

        def walk(stmts, out):
            for s in stmts:
                for c in _calls_in(s):
                    if c.kind == "builtin" and c.callee in self.agents:
                        out.add(c.callee)
                for body in _bodies(s):
                    walk(body, out)

        for name, ag in self.agents.items():
            calls[name] = set()
            walk(ag.decl.body, calls[name])
        state: dict[str, int] = {}

        def dfs(n, path):
            state[n] = 1
            for m in sorted(calls[n]):
                if state.get(m) == 1:
                    cycle = " -> ".join(path + [m])
                    raise VerifyError(f"recursive agent call ({cycle}) is an unbounded loop; "
                                      f"use a bounded 'loop max N' instead", self.agents[n].decl.loc)
                if state.get(m) is None:
                    dfs(m, path + [m])
            state[n] = 2

        for n in sorted(calls):
            if n not in state:
                dfs(n, [n])

    # module ---------------------------------------------------------------------
    def lower(self) -> ir.Module:
        self.declare()
        module = ir.Module.create(loc=mlir_loc(SourceLoc(self.program.file, 1, 1)))
        self.module = module
        with ir.InsertionPoint(module.body):
            for name, (spec, loc) in self.models.items():
                self._emit_model(name, spec, loc)
            for name, (size, dim, loc) in self.indexes.items():
                ir.Operation.create("agent.index", attributes=attrs(sym_name=name, size=size, dim=dim),
                                    loc=mlir_loc(loc))
            for ag in self.agents.values():
                self._lower_agent(ag)
        return module

    def _emit_model(self, name: str, spec: ModelSpec, loc: SourceLoc) -> None:
        if name in self.model_ops_emitted:
            return
        self.model_ops_emitted.add(name)
        fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(ModelSpec)
                  if f.name not in ("name", "source")}
        default = {f.name: f.default for f in dataclasses.fields(ModelSpec)}
        kept = {k: v for k, v in fields.items() if v != default.get(k) or k in ("dtype", "kind")}
        if name in self.model_weights:
            kept["weights"] = self.model_weights[name]
        first_graph = next((op for op in self.module.body.operations if op.name == "agent.graph"), None)
        ip = ir.InsertionPoint(first_graph) if first_graph is not None else ir.InsertionPoint(self.module.body)
        with ip:
            ir.Operation.create("agent.model", attributes=attrs(sym_name=name, **kept), loc=mlir_loc(loc))

    def _model(self, ref, call: str) -> str:
        if not isinstance(ref, ast.Ref):
            raise VerifyError(f"first argument of {call} must name a model", ref.loc)
        name = ref.name
        if name not in self.models:
            if name not in self.catalog.models:
                raise VerifyError(f"unknown model '{name}'", ref.loc,
                                  (f"declare it with 'model {name} = ...' or use a catalog model: "
                                   f"{', '.join(sorted(self.catalog.models))}",))
            self.models[name] = (self.catalog.models[name], ref.loc)
            self._emit_model(name, self.catalog.models[name], ref.loc)
        spec = self.models[name][0]
        want = MODEL_KIND_FOR[call]
        if spec.kind != want:
            raise VerifyError(f"{call} needs {_a(want)} model, but '{name}' is {_a(spec.kind)} model", ref.loc)
        return name

    # agents -----------------------------------------------------------------------
    def _lower_agent(self, ag: _Agent) -> None:
        decl = ag.decl
        self.labels = {}
        graph = ir.Operation.create("agent.graph", attributes=attrs(sym_name=decl.name), regions=1,
                                    loc=mlir_loc(decl.loc))
        block = graph.regions[0].blocks.append()
        env: dict[str, ir.Value] = {}
        sla: dict[str, float] = {}
        load = None
        body = list(decl.body)
        returned = None
        with ir.InsertionPoint(block):
            for i, p in enumerate(decl.params):
                op, (v,) = dialects.create("agent.input", (), (p.kind,), attrs(name=p.name, index=i),
                                           mlir_loc(p.loc))
                env[p.name] = v
            for idx, stmt in enumerate(body):
                if isinstance(stmt, ast.SlaClause):
                    if sla:
                        raise VerifyError("agent has more than one 'sla' clause", stmt.loc)
                    sla = self._sla(stmt)
                elif isinstance(stmt, ast.LoadClause):
                    if load is not None:
                        raise VerifyError("agent has more than one 'load' clause", stmt.loc)
                    if stmt.rate.unit != "rps":
                        got = f"'{stmt.rate.text}'" if stmt.rate.unit else f"'{stmt.rate.text}' without a unit"
                        raise VerifyError(f"load must be a rate in requests per second (rps), got {got}",
                                          stmt.rate.loc)
                    if stmt.rate.value <= 0:
                        raise VerifyError("load must be positive", stmt.rate.loc)
                    load = stmt.rate.value
                elif isinstance(stmt, ast.Return):
                    if any(not isinstance(s, (ast.SlaClause, ast.LoadClause)) for s in body[idx + 1:]):
                        raise VerifyError("return must be the last statement of an agent", stmt.loc)
                    returned = stmt
                else:
                    self._stmt(stmt, env)
            if returned is None:
                raise VerifyError(f"agent '{decl.name}' has no 'return'", decl.loc)
            values = [self._expr(e, env) for e in returned.values]
            if len(values) != len(ag.outputs):
                raise VerifyError(f"agent '{decl.name}' returns {len(values)} value(s) but declares "
                                  f"{len(ag.outputs)} output(s)", returned.loc)
            for v, want, e in zip(values, ag.outputs, returned.values):
                got = dialects.type_kind(v.type)
                if got != want:
                    raise VerifyError(f"agent '{decl.name}' must return {want} here, got {got}", e.loc)
            ir.Operation.create("gpu.yield", operands=values, loc=mlir_loc(returned.loc))
        graph.attributes["input_kinds"] = _attr(list(ag.inputs))
        graph.attributes["output_kinds"] = _attr(list(ag.outputs))
        for k, v in sorted(sla.items()):
            graph.attributes[k] = _attr(v)
        if load is not None:
            graph.attributes["load_rps"] = _attr(float(load))

    def _sla(self, clause: ast.SlaClause) -> dict[str, float]:
        out: dict[str, float] = {}
        named: dict[str, str] = {}      # key -> the metric that set it
        for t in clause.terms:
            # `latency`, `ttft`, `tbt`, each optionally `.pNN` (a percentile over requests)
            # or `.mean`; a plain term holds on every control-flow path (README)
            metric = t.metric
            base, _, stat = metric.partition(".")
            if base not in ("latency", "ttft", "tbt"):
                raise VerifyError(f"unknown SLA term '{metric}'; expected latency, ttft or tbt, each "
                                  "optionally .pNN or .mean", t.loc)
            key = f"sla_{base}_ms"
            if stat == "mean":
                out[f"sla_{base}_mean"] = True
            elif stat:
                try:
                    pct = float(stat[1:].replace("_", ".")) if stat.startswith("p") else -1
                except ValueError:
                    pct = -1
                if not 0 < pct <= 100:
                    raise VerifyError(f"bad percentile '{metric}'; write {base}.p50, {base}.p99, ... or "
                                      f"{base}.mean", t.loc)
                out["sla_percentile" if base == "latency" else f"sla_{base}_percentile"] = pct
            if key in out and named[key] != metric:
                what = "end-to-end latency" if base == "latency" else base.upper()
                raise VerifyError(f"'{named[key]}' and '{metric}' both bound the {what}; an agent has one "
                                  f"{base} term: keep the percentile you plan for", t.loc)
            if key in out:
                raise VerifyError(f"SLA term '{metric}' is given twice", t.loc)
            named[key] = metric
            ms = time_ms(t.bound, f"SLA '{metric}'")
            if ms <= 0:
                raise VerifyError(f"SLA '{metric}' must be positive, got '{t.bound.text}'", t.bound.loc)
            out[key] = ms
        lat = out.get("sla_latency_ms")
        lat_stat = named.get("sla_latency_ms", "").partition(".")[2]
        for key, name in (("sla_ttft_ms", "ttft"), ("sla_tbt_ms", "tbt")):
            # a request's TTFT and TBT are below its latency: at the same statistic, so are theirs
            same = key in named and named[key].partition(".")[2] == lat_stat
            if lat is not None and same and out[key] >= lat:
                term = next(t for t in clause.terms if t.metric.partition(".")[0] == name)
                raise VerifyError(f"impossible SLA: {name} < {out[key]:g}ms cannot be met within "
                                  f"an end-to-end latency < {lat:g}ms", term.loc)
        if "sla_ttft_ms" in out and "sla_tbt_ms" in out and out["sla_tbt_ms"] > out["sla_ttft_ms"] * 1e3:
            term = next(t for t in clause.terms if t.metric.partition(".")[0] == "tbt")
            raise VerifyError("implausible SLA: tbt is over a thousand times ttft", term.loc)
        return out

    # statements --------------------------------------------------------------------
    def _label(self, base: str) -> str:
        n = self.labels.get(base, 0)
        self.labels[base] = n + 1
        return base if n == 0 else f"{base}.{n}"

    def _stmt(self, stmt, env: dict[str, ir.Value]) -> None:
        if isinstance(stmt, ast.Assign):
            if isinstance(stmt.value, ast.Call):
                values = self._call(stmt.value, env, label=stmt.targets[0].name, nresults=len(stmt.targets))
            else:
                values = [self._expr(stmt.value, env)]
            if len(values) != len(stmt.targets):
                raise VerifyError(f"assignment to {len(stmt.targets)} name(s) from an expression with "
                                  f"{len(values)} value(s)", stmt.loc)
            for t, v in zip(stmt.targets, values):
                env[t.name] = v
        elif isinstance(stmt, ast.CallStmt):
            self._call(stmt.call, env, label=stmt.call.callee, nresults=None)
        elif isinstance(stmt, ast.Loop):
            self._loop(stmt, env)
        elif isinstance(stmt, ast.If):
            self._branch(stmt, env)
        elif isinstance(stmt, ast.Parallel):
            self._parallel(stmt, env)
        elif isinstance(stmt, (ast.SlaClause, ast.LoadClause)):
            raise VerifyError(f"'{'sla' if isinstance(stmt, ast.SlaClause) else 'load'}' must be at the "
                              f"top level of an agent", stmt.loc)
        elif isinstance(stmt, ast.Return):
            raise VerifyError("return must be the last statement of an agent", stmt.loc)

    def _grouped(self, names: list[str], kinds: dict[str, str]) -> list[str]:
        order = {k: i for i, k in enumerate(VALUE_KINDS)}
        return sorted(names, key=lambda n: (order[kinds[n]], names.index(n)))

    def _loop(self, loop: ast.Loop, env: dict[str, ir.Value]) -> None:
        if loop.max_trips is None:
            where = loop.continue_prob or loop.expected_trips
            raise VerifyError("unbounded loop: give a maximum trip count with 'loop max N'",
                              loop.loc, (f"a continue probability alone ('while') still allows any number "
                                         f"of trips",) if where else ())
        max_trips = count(loop.max_trips, "loop max")
        if loop.expected_trips is not None and loop.continue_prob is not None:
            raise VerifyError("give either 'while p' or 'expect E', not both", loop.expected_trips.loc)
        if loop.expected_trips is not None:
            expected = loop.expected_trips.value
            if loop.expected_trips.unit is not None or not 0 <= expected <= max_trips:
                raise VerifyError(f"expected trips must be between 0 and the maximum {max_trips}, "
                                  f"got '{loop.expected_trips.text}'", loop.expected_trips.loc)
        elif loop.continue_prob is not None:
            p = probability(loop.continue_prob, "loop continue probability")
            expected = float(max_trips) if p == 1 else p * (1 - p ** max_trips) / (1 - p)
        else:
            expected = float(max_trips)
        assigned = _assigned_names(loop.body)
        carried = [n for n in assigned if n in env]
        kinds = {n: dialects.type_kind(env[n].type) for n in carried}
        carried = self._grouped(carried, kinds)
        op, results = dialects.create(
            "agent.loop", [env[n] for n in carried], [kinds[n] for n in carried],
            attrs(max_trips=max_trips, expected_trips=float(round(expected, 12))), mlir_loc(loop.loc), regions=1)
        block = op.regions[0].blocks.append(*[env[n].type for n in carried],
                                            arg_locs=[mlir_loc(loop.loc)] * len(carried))
        inner = dict(env)
        for n, arg in zip(carried, block.arguments):
            inner[n] = arg
        with ir.InsertionPoint(block):
            for s in loop.body:
                self._stmt(s, inner)
            self._yield_same_kinds(carried, kinds, inner, loop.loc, "loop")
        for n, r in zip(carried, results):
            env[n] = r

    def _yield_same_kinds(self, names, kinds, inner, loc, what):
        for n in names:
            got = dialects.type_kind(inner[n].type)
            if got != kinds[n]:
                raise VerifyError(f"'{n}' is {kinds[n]} before the {what} but {got} inside it; "
                                  f"a {what} must keep each variable's kind", loc)
        ir.Operation.create("gpu.yield", operands=[inner[n] for n in names], loc=mlir_loc(loc))

    def _branch(self, br: ast.If, env: dict[str, ir.Value]) -> None:
        p = probability(br.prob, "branch probability")
        then_names, else_names = _assigned_names(br.then_body), _assigned_names(br.else_body)
        merged = [n for n in dict.fromkeys(then_names + else_names)
                  if n in env or (n in then_names and n in else_names)]
        # Lower each arm into a scratch region first to learn the kinds of new names.
        arms = []
        op_holder = ir.Operation.create("agent.parallel", regions=1, loc=mlir_loc(br.loc))
        for body in (br.then_body, br.else_body):
            block = op_holder.regions[0].blocks.append()
            inner = dict(env)
            with ir.InsertionPoint(block):
                for s in body:
                    self._stmt(s, inner)
            arms.append((block, inner))
        kinds = {}
        for n in merged:
            k_then = dialects.type_kind(arms[0][1][n].type)
            k_else = dialects.type_kind(arms[1][1][n].type)
            if k_then != k_else:
                raise VerifyError(f"'{n}' is {k_then} in one branch arm and {k_else} in the other", br.loc)
            kinds[n] = k_then
        merged = self._grouped(merged, kinds)
        op, results = dialects.create("agent.branch", [], [kinds[n] for n in merged], attrs(prob=p),
                                      mlir_loc(br.loc), regions=2)
        for region_index, (block, inner) in enumerate(arms):
            with ir.InsertionPoint(block):
                ir.Operation.create("gpu.yield", operands=[inner[n] for n in merged], loc=mlir_loc(br.loc))
            block.append_to(op.regions[region_index])
        op_holder.erase()
        for n, r in zip(merged, results):
            env[n] = r

    def _parallel(self, par: ast.Parallel, env: dict[str, ir.Value]) -> None:
        holder = ir.Operation.create("agent.parallel", regions=1, loc=mlir_loc(par.loc))
        block = holder.regions[0].blocks.append()
        inner = dict(env)
        with ir.InsertionPoint(block):
            for s in par.body:
                self._stmt(s, inner)
        names = [n for n in _assigned_names(par.body) if n in inner]
        kinds = {n: dialects.type_kind(inner[n].type) for n in names}
        names = self._grouped(names, kinds)
        op, results = dialects.create("agent.parallel", [], [kinds[n] for n in names], {},
                                      mlir_loc(par.loc), regions=1)
        with ir.InsertionPoint(block):
            ir.Operation.create("gpu.yield", operands=[inner[n] for n in names], loc=mlir_loc(par.loc))
        block.append_to(op.regions[0])
        holder.erase()
        for n, r in zip(names, results):
            env[n] = r

    # expressions ------------------------------------------------------------------
    def _expr(self, e, env) -> ir.Value:
        if isinstance(e, ast.Ref):
            if e.name not in env:
                if e.name in self.models or e.name in self.catalog.models:
                    raise VerifyError(f"'{e.name}' is a model, not a value", e.loc)
                raise VerifyError(f"undefined name '{e.name}'", e.loc)
            return env[e.name]
        if isinstance(e, ast.Call):
            values = self._call(e, env, label=e.callee, nresults=1)
            return values[0]
        raise VerifyError("a list is only allowed as an argument of llm, tool, compute or observe", e.loc)

    def _args(self, args, env) -> list[tuple[ir.Value, SourceLoc]]:
        out = []
        for a in args:
            if isinstance(a, ast.ListExpr):
                out.extend(self._args(a.items, env))
            else:
                out.append((self._expr(a, env), a.loc))
        return out

    def _check_kinds(self, values, allowed: tuple[str, ...], call: str) -> None:
        for v, loc in values:
            k = dialects.type_kind(v.type)
            if k not in allowed:
                raise VerifyError(f"{call} cannot take {k}; it accepts {', '.join(allowed)}", loc)

    def _call(self, c: ast.Call, env, label: str, nresults: int | None) -> list[ir.Value]:
        loc = mlir_loc(c.loc)
        name = c.callee
        if c.kind == "tool":
            kw = _Kwargs(f"tool '{name}'", c.kwargs, ("latency", "payload"))
            args = self._args(c.args, env)
            self._check_kinds(args, ("text", "tokens", "embedding", "documents", "json"), f"tool '{name}'")
            lat = time_ms(kw.quantity("latency", c.loc), "tool latency")
            payload = kw.quantity("payload")
            a = attrs(tool=name, latency_ms=lat, payload_bytes=size_bytes(payload, "payload") if payload else 0,
                      label=self._label(label))
            return self._make("tool.invoke", args, ("json",), a, loc, nresults, c)
        if c.kind == "compute":
            kw = _Kwargs(f"compute '{name}'", c.kwargs, ("cost", "flops"))
            args = self._args(c.args, env)
            cost, flops = kw.quantity("cost"), kw.quantity("flops")
            if cost is None and flops is None:
                raise VerifyError(f"compute '{name}' needs a cost hint: 'cost=2ms' or 'flops=1e9'", c.loc)
            a = attrs(fn=name, cost_ms=time_ms(cost, "compute cost") if cost else None,
                      flops=float(flops.value * COUNT_UNITS.get(flops.unit, 0)) if flops else None,
                      label=self._label(label))
            if flops is not None and flops.unit not in COUNT_UNITS:
                raise VerifyError(f"flops must be a plain count, got '{flops.text}'", flops.loc)
            return self._make("agent.compute", args, ("json",), a, loc, nresults, c)
        if name in self.agents and name not in BUILTINS:
            return self._agent_call(c, env, nresults)
        if name == "llm":
            kw = _Kwargs("llm", c.kwargs, ("in", "out"))
            if not c.args:
                raise VerifyError("llm needs a model and at least one input", c.loc)
            model = self._model(c.args[0], "llm")
            ctx = self._args(c.args[1:], env)
            if not ctx:
                raise VerifyError("llm needs at least one input after the model", c.loc)
            self._check_kinds(ctx, ("text", "tokens", "documents", "json"), "llm")
            a = attrs(model=model, input_tokens=count(kw.quantity("in", c.loc), "llm 'in' tokens"),
                      output_tokens=count(kw.quantity("out", c.loc), "llm 'out' tokens"), label=self._label(label))
            return self._make("llm.call", ctx, ("text",), a, loc, nresults, c)
        if name in ("stt", "tts", "embed"):
            kw = _Kwargs(name, c.kwargs, ("seconds",) if name != "embed" else ())
            if len(c.args) != 2:
                raise VerifyError(f"{name} takes a model and one input, got {len(c.args)} argument(s)", c.loc)
            model = self._model(c.args[0], name)
            arg = self._args(c.args[1:], env)
            accepts = {"stt": ("audio",), "tts": ("text",), "embed": ("text", "documents", "json")}[name]
            self._check_kinds(arg, accepts, name)
            out = {"stt": "text", "tts": "audio", "embed": "embedding"}[name]
            sizes = _speech_sizes(name, kw.quantity("seconds") if name != "embed" else None, arg)
            return self._make(f"agent.{name}", arg, (out,), attrs(model=model, label=self._label(label), **sizes),
                              loc, nresults, c)
        if name == "retrieve":
            kw = _Kwargs("retrieve", c.kwargs, ("k",))
            if len(c.args) != 2 or not isinstance(c.args[0], ast.Ref):
                raise VerifyError("retrieve takes an index and a query: retrieve(docs, query, k=5)", c.loc)
            ix = c.args[0]
            if ix.name not in self.indexes:
                raise VerifyError(f"unknown index '{ix.name}'; declare it with 'index {ix.name}(size=..., dim=...)'",
                                  ix.loc)
            size, dim, _ = self.indexes[ix.name]
            k_q = kw.quantity("k")
            k = count(k_q, "retrieve k") if k_q else 5
            if k > size:
                raise VerifyError(f"retrieve k={k} exceeds the index size {size}", k_q.loc)
            arg = self._args(c.args[1:], env)
            self._check_kinds(arg, ("embedding",), "retrieve")
            a = attrs(index=ix.name, index_size=size, dim=dim, k=k, label=self._label(label))
            return self._make("agent.retrieve", arg, ("documents",), a, loc, nresults, c)
        if name in ("memory.load", "memory.store"):
            kw = _Kwargs(name, c.kwargs, ("store", "bytes", "latency"))
            args = self._args(c.args, env)
            if not args:
                raise VerifyError(f"{name} needs at least one argument", c.loc)
            self._check_kinds(args, ("text", "tokens", "embedding", "documents", "json"), name)
            store = kw.word("store")
            b, lat = kw.quantity("bytes"), kw.quantity("latency")
            a = attrs(store=store.name if store else "memory",
                      bytes=size_bytes(b, f"{name} bytes") if b else 4096,
                      latency_ms=time_ms(lat, f"{name} latency") if lat else 1.0, label=self._label(label))
            results = ("documents",) if name == "memory.load" else ()
            return self._make(name, args, results, a, loc, nresults, c)
        if name == "observe":
            kw = _Kwargs("observe", c.kwargs, ("bytes",))
            args = self._args(c.args, env)
            if not args:
                raise VerifyError("observe needs at least one argument", c.loc)
            b = kw.quantity("bytes")
            a = attrs(bytes=size_bytes(b, "observe bytes") if b else 1024, label=self._label(label))
            return self._make("agent.observe", args, (), a, loc, nresults, c)
        known = ", ".join(BUILTINS + tuple(sorted(self.agents)))
        raise VerifyError(f"unknown function or agent '{name}'", c.loc,
                          (f"known: {known}; tool calls are written 'tool NAME(...)', "
                           f"CPU functions 'compute NAME(...)'",))

    def _make(self, opname, args, result_kinds, attributes, loc, nresults, c) -> list[ir.Value]:
        if nresults is not None and nresults > 0 and len(result_kinds) == 0:
            raise VerifyError(f"{c.callee} produces no value", c.loc)
        _op, results = dialects.create(opname, [v for v, _ in args], result_kinds, attributes, loc)
        return results

    def _agent_call(self, c: ast.Call, env, nresults) -> list[ir.Value]:
        callee = self.agents[c.callee]
        _Kwargs(f"agent '{c.callee}'", c.kwargs, ())
        args = self._args(c.args, env)
        if len(args) != len(callee.inputs):
            raise VerifyError(f"agent '{c.callee}' takes {len(callee.inputs)} input(s), got {len(args)}", c.loc)
        for (v, loc), want in zip(args, callee.inputs):
            got = dialects.type_kind(v.type)
            if got != want:
                raise VerifyError(f"agent '{c.callee}' expects {want} here, got {got}", loc)
        if nresults is not None and nresults != len(callee.outputs) and not (nresults == 1 and len(callee.outputs) >= 1):
            raise VerifyError(f"agent '{c.callee}' returns {len(callee.outputs)} value(s), "
                              f"but {nresults} are expected here", c.loc)
        _op, results = dialects.create("agent.call", [v for v, _ in args], callee.outputs,
                                       attrs(callee=c.callee, label=self._label(c.callee)), mlir_loc(c.loc))
        return results


def _a(word: str) -> str:
    """The indefinite article as spoken: 'an stt', 'an encoder', 'a decoder', 'a tts'."""
    return f"an {word}" if word[0] in "aeiou" or word in ("stt",) else f"a {word}"


def _bodies(stmt):
    if isinstance(stmt, ast.Loop):
        return [stmt.body]
    if isinstance(stmt, ast.If):
        return [stmt.then_body, stmt.else_body]
    if isinstance(stmt, ast.Parallel):
        return [stmt.body]
    return []


def _calls_in(stmt):
    def walk(e):
        if isinstance(e, ast.Call):
            yield e
            for a in e.args:
                yield from walk(a)
        elif isinstance(e, ast.ListExpr):
            for a in e.items:
                yield from walk(a)

    if isinstance(stmt, ast.Assign):
        yield from walk(stmt.value)
    elif isinstance(stmt, ast.CallStmt):
        yield from walk(stmt.call)
    elif isinstance(stmt, ast.Return):
        for v in stmt.values:
            yield from walk(v)


def _assigned_names(stmts) -> list[str]:
    out: list[str] = []
    for s in stmts:
        if isinstance(s, ast.Assign):
            out += [t.name for t in s.targets]
        for body in _bodies(s):
            out += _assigned_names(body)
    return list(dict.fromkeys(out))


def lower_program(program: ast.Program, ctx: ir.Context, catalog: Catalog | None = None) -> ir.Module:
    """Check `program` and build its agent-dialect module in `ctx`."""
    catalog = catalog or load_catalog()
    with ctx, ir.Location.unknown():
        module = _Lowerer(program, catalog).lower()
        if not module.operation.verify():
            raise VerifyError("internal: lowered module does not verify")
        return module
