"""Linalg-on-tensors MLIR text, one SSA value at a time: what the kernel builders
(kernels.py) are written in.

`Func` accumulates the body of one `func.func` and offers the tensor-level blocks the
models share (matmul, norms, softmax, attention, top-k); `Scalar` emits the scalar
ops inside a `linalg.generic` body. Only ops every target lowers are used (see
kernels.py). It writes text, not through the upstream `mlir.dialects` builders; each
target parses that text as its first step.
"""

from __future__ import annotations

import math

_NEG_INF = {"f32": "0xFF800000", "f16": "0xFC00", "bf16": "0xFF80", "f64": "0xFFF0000000000000"}
RMS_EPS = 1e-6
LN_EPS = 1e-12
L2_EPS = 1e-12
LOG_EPS = 1e-10


def _float_literal(value: float, dtype: str) -> str:
    """An MLIR float literal (MLIR wants a mantissa with a dot: `1.0e-06`, not `1e-06`)."""
    return _NEG_INF[dtype] if value == -math.inf else f"{float(value):.17e}"


def _tensor(shape, dtype: str) -> str:
    dims = "".join(f"{d}x" for d in shape)
    return f"tensor<{dims}{dtype}>"


def _dims(rank: int) -> str:
    return ", ".join(f"d{i}" for i in range(rank))


def _map(rank: int, results: list[int | str]) -> str:
    """An indexing map; a result is a dimension number or an affine expression text."""
    exprs = ", ".join(i if isinstance(i, str) else f"d{i}" for i in results)
    return f"affine_map<({_dims(rank)}) -> ({exprs})>"


class Scalar:
    """Emits the scalar ops of a linalg.generic body; every method returns an SSA name."""

    def __init__(self, fn: "Func", dtype: str):
        self.fn, self.dtype = fn, dtype

    def _op(self, text: str) -> str:
        name = self.fn.fresh()
        self.fn.lines.append(f"    {name} = {text}")
        return name

    def const(self, value: float) -> str:
        return self._op(f"arith.constant {_float_literal(value, self.dtype)} : {self.dtype}")

    def add(self, a, b): return self._op(f"arith.addf {a}, {b} : {self.dtype}")
    def sub(self, a, b): return self._op(f"arith.subf {a}, {b} : {self.dtype}")
    def mul(self, a, b): return self._op(f"arith.mulf {a}, {b} : {self.dtype}")
    def div(self, a, b): return self._op(f"arith.divf {a}, {b} : {self.dtype}")
    def max(self, a, b): return self._op(f"arith.maximumf {a}, {b} : {self.dtype}")
    def neg(self, a): return self._op(f"arith.negf {a} : {self.dtype}")
    def exp(self, a): return self._op(f"math.exp {a} : {self.dtype}")
    def log(self, a): return self._op(f"math.log {a} : {self.dtype}")
    def rsqrt(self, a): return self._op(f"math.rsqrt {a} : {self.dtype}")
    def abs(self, a): return self._op(f"math.absf {a} : {self.dtype}")

    def index(self, dim: int) -> str:
        return self._op(f"linalg.index {dim} : index")

    def index_i32(self, dim: int) -> str:
        return self._op(f"arith.index_cast {self.index(dim)} : index to i32")

    def select(self, cond, a, b, ty=None):
        return self._op(f"arith.select {cond}, {a}, {b} : {ty or self.dtype}")

    def cmpf(self, pred, a, b): return self._op(f"arith.cmpf {pred}, {a}, {b} : {self.dtype}")
    def cmpi(self, pred, a, b, ty="index"): return self._op(f"arith.cmpi {pred}, {a}, {b} : {ty}")

    def erf(self, x):
        """erf(x) by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7)."""
        ax = self.abs(x)
        t = self.div(self.const(1.0), self.add(self.const(1.0), self.mul(self.const(0.3275911), ax)))
        poly = self.const(1.061405429)
        for coeff in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
            poly = self.add(self.mul(poly, t), self.const(coeff))
        poly = self.mul(poly, t)
        y = self.sub(self.const(1.0), self.mul(poly, self.exp(self.neg(self.mul(ax, ax)))))
        return self.select(self.cmpf("olt", x, self.const(0.0)), self.neg(y), y)


class Func:
    """Accumulates the body of one func.func and offers the shared tensor-level helpers."""

    def __init__(self, dtype: str):
        self.dtype = dtype
        self.lines: list[str] = []
        self._count = 0

    def fresh(self) -> str:
        self._count += 1
        return f"%v{self._count}"

    def emit(self, text: str) -> str:
        name = self.fresh()
        self.lines.append(f"  {name} = {text}")
        return name

    def t(self, shape, dtype=None) -> str:
        return _tensor(shape, dtype or self.dtype)

    # -- creation ---------------------------------------------------------------------
    def full(self, shape, value: float, dtype=None) -> str:
        dtype = dtype or self.dtype
        ty = self.t(shape, dtype)
        empty = self.emit(f"tensor.empty() : {ty}")
        if dtype.startswith("i"):
            literal = str(int(value))
        else:
            literal = _float_literal(value, dtype)
        cst = self.emit(f"arith.constant {literal} : {dtype}")
        return self.emit(f"linalg.fill ins({cst} : {dtype}) outs({empty} : {ty}) -> {ty}")

    def empty(self, shape, dtype=None) -> str:
        return self.emit(f"tensor.empty() : {self.t(shape, dtype)}")

    # -- structured ops ---------------------------------------------------------------
    def generic(self, ins, outs, iterators, body) -> str | tuple[str, ...]:
        """`ins`/`outs`: lists of (value, shape, result dims of the indexing map[, dtype]).

        `body(s, *block_args)` emits scalar ops with `s` (a `Scalar`) and returns the
        value(s) to yield. Returns the result name(s).
        """
        rank = len(iterators)
        operands = [(*o, self.dtype) if len(o) == 3 else o for o in list(ins) + list(outs)]
        maps = ", ".join(_map(rank, o[2]) for o in operands)
        iters = ", ".join(f'"{i}"' for i in iterators)
        types = [self.t(o[1], o[3]) for o in operands]
        n_in = len(ins)
        result_types = types[n_in:]
        base = self.fresh()
        head = base if len(outs) == 1 else f"{base}:{len(outs)}"
        results = [base] if len(outs) == 1 else [f"{base}#{i}" for i in range(len(outs))]
        ins_txt = (f" ins({', '.join(o[0] for o in operands[:n_in])} : {', '.join(types[:n_in])})"
                   if ins else "")
        outs_txt = f" outs({', '.join(o[0] for o in operands[n_in:])} : {', '.join(result_types)})"
        self.lines.append(f"  {head} = linalg.generic {{indexing_maps = [{maps}], "
                          f"iterator_types = [{iters}]}}{ins_txt}{outs_txt} {{")
        args = [self.fresh() for _ in operands]
        arg_decl = ", ".join(f"{a}: {o[3]}" for a, o in zip(args, operands))
        self.lines.append(f"  ^bb0({arg_decl}):")
        yielded = body(Scalar(self, self.dtype), *args)
        if isinstance(yielded, str):
            yielded = (yielded,)
        yield_types = ", ".join(o[3] for o in operands[n_in:])
        self.lines.append(f"    linalg.yield {', '.join(yielded)} : {yield_types}")
        self.lines.append(f"  }} -> {result_types[0] if len(outs) == 1 else '(' + ', '.join(result_types) + ')'}")
        return results[0] if len(results) == 1 else tuple(results)

    def matmul(self, a, b, m, k, n, init=None) -> str:
        """[m, k] @ [k, n] with linalg.matmul (the op targets tile and vectorise), added to
        `init` [m, n] when given (the accumulator's start)."""
        out = self.full([m, n], 0.0) if init is None else init
        ty = self.t([m, n])
        return self.emit(f"linalg.matmul ins({a}, {b} : {self.t([m, k])}, {self.t([k, n])}) "
                         f"outs({out} : {ty}) -> {ty}")

    def matmul_panels(self, a, bp, m, k, n, panel, bias=None, residual=None) -> str:
        """[m, k] @ B for a B[k, n] given as column panels bp[n / panel, k, panel] (weights
        packed once when they are loaded, `agentc.codegen.kernels.pack_panels`): the
        contraction the CPU target's packed-B schedule makes of a matmul, so that schedule
        runs on it without copying B into panels on every call. A `bias` [n] and a
        `residual` [m, n] to add are the accumulator's start, so adding them costs no
        pass of its own over C."""
        panels = n // panel
        cp = [m, panels, panel]
        terms = []
        if bias is not None:
            terms.append((self.emit(f"tensor.expand_shape {bias} [[0, 1]] output_shape [{panels}, {panel}] : "
                                    f"{self.t([n])} into {self.t([panels, panel])}"), [1, 2]))
        if residual is not None:
            terms.append(self.emit(f"tensor.expand_shape {residual} [[0], [1, 2]] output_shape {cp} : "
                                   f"{self.t([m, n])} into {self.t(cp)}"))
        if terms:
            init = self.elementwise(terms, cp, lambda s, *v: v[0] if len(v) == 1 else s.add(v[1], v[0]))
        else:
            init = self.full(cp, 0.0)
        out = self.generic([(a, [m, k], [0, 2]), (bp, [panels, k, panel], [1, 2, 3])],
                           [(init, cp, [0, 1, 3])],
                           ["parallel", "parallel", "reduction", "parallel"],
                           lambda s, x, w, acc: s.add(acc, s.mul(x, w)))
        return self.emit(f"tensor.collapse_shape {out} [[0], [1, 2]] : {self.t(cp)} into {self.t([m, n])}")

    def vecmat(self, x, w, k, n) -> str:
        """[k] @ [k, n] with linalg.vecmat (decode's memory-bound projections)."""
        out = self.full([n], 0.0)
        ty = self.t([n])
        return self.emit(f"linalg.vecmat ins({x}, {w} : {self.t([k])}, {self.t([k, n])}) "
                         f"outs({out} : {ty}) -> {ty}")

    def project(self, x, w, rows, k, n) -> str:
        """x @ w, where x is [rows, k], or a [k] vector when rows is None."""
        return self.vecmat(x, w, k, n) if rows is None else self.matmul(x, w, rows, k, n)

    def elementwise(self, inputs, shape, body) -> str:
        """Map `body` over same-shaped tensors; an input (v, dims) broadcasts along dims."""
        rank = len(shape)
        ins = []
        for x in inputs:
            if isinstance(x, tuple):
                value, kept = x
                ins.append((value, [shape[d] for d in kept], kept))
            else:
                ins.append((x, shape, list(range(rank))))
        out = self.empty(shape)
        return self.generic(ins, [(out, shape, list(range(rank)))], ["parallel"] * rank,
                            lambda s, *a: body(s, *a[:-1]))

    def reduce_last(self, x, shape, init: float, combine, pre=None) -> str:
        """Reduce the last dimension: acc = combine(acc, pre(x))."""
        rank = len(shape)
        acc = self.full(shape[:-1], init)
        return self.generic([(x, shape, list(range(rank)))],
                            [(acc, shape[:-1], list(range(rank - 1)))],
                            ["parallel"] * (rank - 1) + ["reduction"],
                            lambda s, v, a: combine(s, a, pre(s, v) if pre else v))

    def add(self, a, b, shape) -> str:
        return self.elementwise([a, b], shape, lambda s, x, y: s.add(x, y))

    def add_bias(self, x, bias, shape) -> str:
        return self.elementwise([x, (bias, [len(shape) - 1])], shape, lambda s, v, b: s.add(v, b))

    # -- model building blocks --------------------------------------------------------
    def softmax_last(self, x, shape) -> str:
        """Numerically stable softmax over the last dimension."""
        rank = len(shape)
        rows = list(range(rank - 1))
        peak = self.reduce_last(x, shape, -math.inf, lambda s, a, v: s.max(a, v))
        exps = self.elementwise([x, (peak, rows)], shape, lambda s, v, m: s.exp(s.sub(v, m)))
        total = self.reduce_last(exps, shape, 0.0, lambda s, a, v: s.add(a, v))
        return self.elementwise([exps, (total, rows)], shape, lambda s, e, t: s.div(e, t))

    def rmsnorm(self, x, gamma, shape, eps=RMS_EPS) -> str:
        """x * rsqrt(mean(x^2) + eps) * gamma over the last dimension."""
        rows = list(range(len(shape) - 1))
        width = shape[-1]
        sq = self.reduce_last(x, shape, 0.0, lambda s, a, v: s.add(a, v), pre=lambda s, v: s.mul(v, v))

        def body(s, v, ss, g):
            scale = s.rsqrt(s.add(s.div(ss, s.const(width)), s.const(eps)))
            return s.mul(s.mul(v, scale), g)
        return self.elementwise([x, (sq, rows), (gamma, [len(shape) - 1])], shape, body)

    def layernorm(self, x, gamma, beta, shape, eps=LN_EPS) -> str:
        """(x - mean) * rsqrt(var + eps) * gamma + beta over the last dimension."""
        rows = list(range(len(shape) - 1))
        last = [len(shape) - 1]
        width = shape[-1]
        total = self.reduce_last(x, shape, 0.0, lambda s, a, v: s.add(a, v))
        centred = self.elementwise([x, (total, rows)], shape,
                                   lambda s, v, t: s.sub(v, s.div(t, s.const(width))))
        var = self.reduce_last(centred, shape, 0.0, lambda s, a, v: s.add(a, v),
                               pre=lambda s, v: s.mul(v, v))

        def body(s, c, vs, g, b):
            scale = s.rsqrt(s.add(s.div(vs, s.const(width)), s.const(eps)))
            return s.add(s.mul(s.mul(c, scale), g), b)
        return self.elementwise([centred, (var, rows), (gamma, last), (beta, last)], shape, body)

    def attention(self, q, k, v, seq, ctx, heads, kv_heads, head_dim, causal: bool,
                  key_mask: str | None = None) -> str:
        """softmax(q k^T / sqrt(hd) [+ causal mask]) v for all heads.

        q: [seq, heads*hd]; k, v: [ctx, kv_heads*hd]. Returns [seq, heads*hd]. With
        `causal`, query i sees keys j <= i + (ctx - seq), i.e. the queries are the last
        `seq` positions of the context. `key_mask` ([ctx], 1.0 keep / 0.0 drop) hides the
        padding keys of a sequence shorter than the kernel's rows.
        """
        group = heads // kv_heads
        hd = head_dim
        q4 = self.emit(f"tensor.expand_shape {q} [[0], [1, 2, 3]] output_shape "
                       f"[{seq}, {kv_heads}, {group}, {hd}] : {self.t([seq, heads * hd])} "
                       f"into {self.t([seq, kv_heads, group, hd])}")
        k3 = self.emit(f"tensor.expand_shape {k} [[0], [1, 2]] output_shape [{ctx}, {kv_heads}, {hd}]"
                       f" : {self.t([ctx, kv_heads * hd])} into {self.t([ctx, kv_heads, hd])}")
        v3 = self.emit(f"tensor.expand_shape {v} [[0], [1, 2]] output_shape [{ctx}, {kv_heads}, {hd}]"
                       f" : {self.t([ctx, kv_heads * hd])} into {self.t([ctx, kv_heads, hd])}")
        score_shape = [kv_heads, group, seq, ctx]
        # dims (kv, g, i, j, e): scores[kv, g, i, j] = sum_e q[i, kv, g, e] * k[j, kv, e]
        scores = self.generic(
            [(q4, [seq, kv_heads, group, hd], [2, 0, 1, 4]), (k3, [ctx, kv_heads, hd], [3, 0, 4])],
            [(self.full(score_shape, 0.0), score_shape, [0, 1, 2, 3])],
            ["parallel"] * 4 + ["reduction"],
            lambda s, a, b, acc: s.add(acc, s.mul(a, b)))
        offset = ctx - seq

        def scale_mask(s, x, *keep):
            scaled = s.mul(x, s.const(1.0 / math.sqrt(hd)))
            if keep:
                scaled = s.select(s.cmpf("ogt", keep[0], s.const(0.5)), scaled, s.const(-math.inf))
            if not causal:
                return scaled
            limit = s._op(f"arith.addi {s.index(2)}, {s._op(f'arith.constant {offset} : index')} : index")
            hidden = s.cmpi("ugt", s.index(3), limit)
            return s.select(hidden, s.const(-math.inf), scaled)
        masks = [(key_mask, [3])] if key_mask else []
        probs = self.softmax_last(self.elementwise([scores, *masks], score_shape, scale_mask), score_shape)
        # dims (i, kv, g, e, j): out[i, kv, g, e] = sum_j p[kv, g, i, j] * v[j, kv, e]
        out_shape = [seq, kv_heads, group, hd]
        out = self.generic(
            [(probs, score_shape, [1, 2, 0, 4]), (v3, [ctx, kv_heads, hd], [4, 1, 3])],
            [(self.full(out_shape, 0.0), out_shape, [0, 1, 2, 3])],
            ["parallel"] * 4 + ["reduction"],
            lambda s, a, b, acc: s.add(acc, s.mul(a, b)))
        return self.emit(f"tensor.collapse_shape {out} [[0], [1, 2, 3]] : "
                         f"{self.t(out_shape)} into {self.t([seq, heads * hd])}")

    def attention_append(self, q, k_cache, v_cache, k_new, v_new, ctx, heads, kv_heads, head_dim,
                         key_mask: str) -> str:
        """One query's attention over the kept rows of a KV cache plus its own new K/V row,
        without building the grown cache: the new row's score joins the cache's in the
        softmax's max and sum, its value in the weighted sum. (Concatenating first copied
        the whole cache, every layer, every decode step.)

        q: [1, heads*hd]; k_cache, v_cache: [ctx, kv_heads*hd]; k_new, v_new: [kv_heads*hd];
        key_mask: [ctx], 1.0 keep / 0.0 drop. Returns [1, heads*hd].
        """
        group, hd = heads // kv_heads, head_dim
        q4 = self.emit(f"tensor.expand_shape {q} [[0], [1, 2, 3]] output_shape "
                       f"[1, {kv_heads}, {group}, {hd}] : {self.t([1, heads * hd])} "
                       f"into {self.t([1, kv_heads, group, hd])}")

        def split(x, rows):
            lead = [rows] if rows else []
            return self.emit(f"tensor.expand_shape {x} [{'[0], [1, 2]' if rows else '[0, 1]'}] output_shape "
                             f"{lead + [kv_heads, hd]} : {self.t(lead + [kv_heads * hd])} "
                             f"into {self.t(lead + [kv_heads, hd])}")
        k3, v3, k2, v2 = split(k_cache, ctx), split(v_cache, ctx), split(k_new, 0), split(v_new, 0)
        scale = 1.0 / math.sqrt(hd)
        shape, row = [kv_heads, group, ctx], [kv_heads, group]
        # scores[kv, g, j] = sum_e q[0, kv, g, e] * k[j, kv, e], scaled; dropped rows -inf
        scores = self.generic([(q4, [1, kv_heads, group, hd], ["0", 0, 1, 3]), (k3, [ctx, kv_heads, hd], [2, 0, 3])],
                              [(self.full(shape, 0.0), shape, [0, 1, 2])],
                              ["parallel"] * 3 + ["reduction"], lambda s, a, b, acc: s.add(acc, s.mul(a, b)))
        scores = self.elementwise([scores, (key_mask, [2])], shape, lambda s, x, keep: s.select(
            s.cmpf("ogt", keep, s.const(0.5)), s.mul(x, s.const(scale)), s.const(-math.inf)))
        own = self.generic([(q4, [1, kv_heads, group, hd], ["0", 0, 1, 2]), (k2, [kv_heads, hd], [0, 2])],
                           [(self.full(row, 0.0), row, [0, 1])],
                           ["parallel", "parallel", "reduction"], lambda s, a, b, acc: s.add(acc, s.mul(a, b)))
        own = self.elementwise([own], row, lambda s, x: s.mul(x, s.const(scale)))
        peak = self.reduce_last(scores, shape, -math.inf, lambda s, a, v: s.max(a, v))
        peak = self.elementwise([peak, own], row, lambda s, a, b: s.max(a, b))   # finite: own is
        exps = self.elementwise([scores, (peak, [0, 1])], shape, lambda s, v, m: s.exp(s.sub(v, m)))
        own_w = self.elementwise([own, peak], row, lambda s, v, m: s.exp(s.sub(v, m)))
        total = self.reduce_last(exps, shape, 0.0, lambda s, a, v: s.add(a, v))
        total = self.elementwise([total, own_w], row, lambda s, a, b: s.add(a, b))
        # out[kv, g, e] = (sum_j exps[kv, g, j] * v[j, kv, e] + own_w[kv, g] * v_new[kv, e]) / total
        out_shape = [kv_heads, group, hd]
        acc = self.generic([(exps, shape, [0, 1, 3]), (v3, [ctx, kv_heads, hd], [3, 0, 2])],
                           [(self.full(out_shape, 0.0), out_shape, [0, 1, 2])],
                           ["parallel"] * 3 + ["reduction"], lambda s, a, b, acc: s.add(acc, s.mul(a, b)))
        out = self.elementwise([acc, (own_w, [0, 1]), (v2, [0, 2]), (total, [0, 1])], out_shape,
                               lambda s, a, w, v, t: s.div(s.add(a, s.mul(w, v)), t))
        return self.emit(f"tensor.collapse_shape {out} [[0, 1, 2]] : {self.t(out_shape)} into "
                         f"{self.t([heads * hd])}")

    def argmax_1d(self, x, n) -> tuple[str, str]:
        """(max value, first index of it) of a [n] tensor, as rank-0 tensors."""
        best = self.full([], -math.inf)
        where = self.full([], 0, "i32")

        def body(s, v, b, w):
            better = s.cmpf("ogt", v, b)
            return s.select(better, v, b), s.select(better, s.index_i32(0), w, "i32")
        return self.generic([(x, [n], [0])], [(best, [], []), (where, [], [], "i32")],
                            ["reduction"], body)

    def topk_1d(self, x, n, k) -> tuple[str, str]:
        """The k largest values of a [n] tensor, descending, with their indices (i32).

        k rounds of argmax, each masking the winner out: cheap for the small k that
        sampling and retrieval use, and it stays within plain linalg.
        """
        values, indices = [], []
        for round_ in range(k):
            best, where = self.argmax_1d(x, n)
            values.append(self.emit(f"tensor.extract {best}[] : {self.t([])}"))
            indices.append(self.emit(f"tensor.extract {where}[] : {self.t([], 'i32')}"))
            if round_ + 1 < k:
                chosen = self.emit(f"arith.index_cast {indices[-1]} : i32 to index")
                x = self.elementwise([x], [n], lambda s, v, c=chosen: s.select(
                    s.cmpi("eq", s.index(0), c), s.const(-math.inf), v))
        vals = self.emit(f"tensor.from_elements {', '.join(values)} : {self.t([k])}")
        idxs = self.emit(f"tensor.from_elements {', '.join(indices)} : {self.t([k], 'i32')}")
        return vals, idxs

    def module(self, name: str, args: list[tuple[str, list[int]]], results: list[tuple[str, str]]) -> str:
        """Wrap the body: args are (ssa name, shape); results are (value, type)."""
        sig = ", ".join(f"{a}: {self.t(shape)}" for a, shape in args)
        res_types = ", ".join(t for _, t in results)
        ret = f"  return {', '.join(v for v, _ in results)} : {res_types}"
        return "\n".join([
            "module {",
            f"func.func @{name}({sig}) -> ({res_types}) attributes {{llvm.emit_c_interface}} {{",
            *self.lines, ret, "}", "}", ""])
