"""Kernel builders: the compute inside agent nodes as MLIR `linalg` on tensors.

Each builder returns the text of a `builtin.module` holding one public `func.func`
(named after the kernel unless `name=` says otherwise) with static shapes, marked
`llvm.emit_c_interface`. Every target (cpu, nvvm, rocdl) starts from this same text, so
the builders use only ops every backend lowers: linalg named ops and generics, tensor
reshapes/slices, arith and the math ops exp, log and rsqrt. GELU's erf is expanded here
as a polynomial rather than `math.erf`, which would need libm on CPUs and libdevice
on NVIDIA GPUs.

Conventions: weights are `[in, out]` so a projection is `x @ w`; multi-head tensors
are split as `[seq, kv_heads, group, head_dim]` with query head `h = kv * group + g`
(grouped-query attention; `group = heads / kv_heads`). `KERNELS` maps a kernel kind
to its builder. The numpy implementations the tests compare against live apart, in
test/python/references/kernels_ref.py, written from the same conventions, not from
this code.
"""

from __future__ import annotations

import math
from typing import Callable

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


def _map(rank: int, results: list[int]) -> str:
    return f"affine_map<({_dims(rank)}) -> ({', '.join(f'd{i}' for i in results)})>"


class _Scalar:
    """Emits the scalar ops of a linalg.generic body; every method returns an SSA name."""

    def __init__(self, fn: "_Func", dtype: str):
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


class _Func:
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

        `body(s, *block_args)` emits scalar ops with `s` (a `_Scalar`) and returns the
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
        yielded = body(_Scalar(self, self.dtype), *args)
        if isinstance(yielded, str):
            yielded = (yielded,)
        yield_types = ", ".join(o[3] for o in operands[n_in:])
        self.lines.append(f"    linalg.yield {', '.join(yielded)} : {yield_types}")
        self.lines.append(f"  }} -> {result_types[0] if len(outs) == 1 else '(' + ', '.join(result_types) + ')'}")
        return results[0] if len(results) == 1 else tuple(results)

    def matmul(self, a, b, m, k, n) -> str:
        """[m, k] @ [k, n] with linalg.matmul (the op targets tile and vectorise)."""
        out = self.full([m, n], 0.0)
        ty = self.t([m, n])
        return self.emit(f"linalg.matmul ins({a}, {b} : {self.t([m, k])}, {self.t([k, n])}) "
                         f"outs({out} : {ty}) -> {ty}")

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

    def attention(self, q, k, v, seq, ctx, heads, kv_heads, head_dim, causal: bool) -> str:
        """softmax(q k^T / sqrt(hd) [+ causal mask]) v for all heads.

        q: [seq, heads*hd]; k, v: [ctx, kv_heads*hd]. Returns [seq, heads*hd]. With
        `causal`, query i sees keys j <= i + (ctx - seq), i.e. the queries are the last
        `seq` positions of the context.
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

        def scale_mask(s, x):
            scaled = s.mul(x, s.const(1.0 / math.sqrt(hd)))
            if not causal:
                return scaled
            limit = s._op(f"arith.addi {s.index(2)}, {s._op(f'arith.constant {offset} : index')} : index")
            hidden = s.cmpi("ugt", s.index(3), limit)
            return s.select(hidden, s.const(-math.inf), scaled)
        probs = self.softmax_last(self.elementwise([scores], score_shape, scale_mask), score_shape)
        # dims (i, kv, g, e, j): out[i, kv, g, e] = sum_j p[kv, g, i, j] * v[j, kv, e]
        out_shape = [seq, kv_heads, group, hd]
        out = self.generic(
            [(probs, score_shape, [1, 2, 0, 4]), (v3, [ctx, kv_heads, hd], [4, 1, 3])],
            [(self.full(out_shape, 0.0), out_shape, [0, 1, 2, 3])],
            ["parallel"] * 4 + ["reduction"],
            lambda s, a, b, acc: s.add(acc, s.mul(a, b)))
        return self.emit(f"tensor.collapse_shape {out} [[0], [1, 2, 3]] : "
                         f"{self.t(out_shape)} into {self.t([seq, heads * hd])}")

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


# ---------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------

def matmul(m: int, n: int, k: int, *, dtype: str = "f32", name: str = "matmul") -> str:
    """C[m, n] = A[m, k] @ B[k, n]. Args (a, b) -> c."""
    f = _Func(dtype)
    c = f.matmul("%a", "%b", m, k, n)
    return f.module(name, [("%a", [m, k]), ("%b", [k, n])], [(c, f.t([m, n]))])


def _swiglu_ffn(f: _Func, h, w_gate, w_up, w_down, rows, d_model, ffn) -> str:
    shape = [ffn] if rows is None else [rows, ffn]
    gate = f.project(h, w_gate, rows, d_model, ffn)
    up = f.project(h, w_up, rows, d_model, ffn)
    act = f.elementwise([gate, up], shape, lambda s, g, u: s.mul(
        s.div(g, s.add(s.const(1.0), s.exp(s.neg(g)))), u))
    return f.project(act, w_down, rows, ffn, d_model)


def _check_heads(d_model, heads, kv_heads):
    if d_model % heads or heads % kv_heads:
        raise ValueError(f"need heads | d_model and kv_heads | heads, got d_model={d_model}, "
                         f"heads={heads}, kv_heads={kv_heads}")
    return d_model // heads


def prefill_layer(seq: int, d_model: int, heads: int, kv_heads: int, ffn: int, *,
                  dtype: str = "f32", name: str = "prefill_layer") -> str:
    """One pre-norm decoder layer (Llama style) over a prompt of `seq` tokens.

    Args (x[seq,d], attn_norm[d], wq[d,d], wk[d,kv*hd], wv[d,kv*hd], wo[d,d],
    ffn_norm[d], w_gate[d,ffn], w_up[d,ffn], w_down[ffn,d]) -> y[seq,d]. Causal
    attention; every layer of a model calls this same function with its own weights.
    """
    hd = _check_heads(d_model, heads, kv_heads)
    kvd = kv_heads * hd
    f = _Func(dtype)
    shape = [seq, d_model]
    h = f.rmsnorm("%x", "%attn_norm", shape)
    q = f.matmul(h, "%wq", seq, d_model, d_model)
    k = f.matmul(h, "%wk", seq, d_model, kvd)
    v = f.matmul(h, "%wv", seq, d_model, kvd)
    att = f.attention(q, k, v, seq, seq, heads, kv_heads, hd, causal=True)
    x1 = f.add("%x", f.matmul(att, "%wo", seq, d_model, d_model), shape)
    h2 = f.rmsnorm(x1, "%ffn_norm", shape)
    y = f.add(x1, _swiglu_ffn(f, h2, "%w_gate", "%w_up", "%w_down", seq, d_model, ffn), shape)
    args = [("%x", shape), ("%attn_norm", [d_model]), ("%wq", [d_model, d_model]),
            ("%wk", [d_model, kvd]), ("%wv", [d_model, kvd]), ("%wo", [d_model, d_model]),
            ("%ffn_norm", [d_model]), ("%w_gate", [d_model, ffn]), ("%w_up", [d_model, ffn]),
            ("%w_down", [ffn, d_model])]
    return f.module(name, args, [(y, f.t(shape))])


def decode_step(context: int, d_model: int, heads: int, kv_heads: int, ffn: int, *,
                dtype: str = "f32", name: str = "decode_step") -> str:
    """One decoder layer for one new token attending over `context` cached positions.

    Args (x[d], attn_norm[d], wq[d,d], wk[d,kv*hd], wv[d,kv*hd], wo[d,d], ffn_norm[d],
    w_gate[d,ffn], w_up[d,ffn], w_down[ffn,d], k_cache[context,kv*hd],
    v_cache[context,kv*hd]) -> (y[d], k_new[kv*hd], v_new[kv*hd]). The token attends
    to the cache plus itself; the caller appends k_new/v_new to its cache.
    """
    hd = _check_heads(d_model, heads, kv_heads)
    kvd = kv_heads * hd
    f = _Func(dtype)
    h = f.rmsnorm("%x", "%attn_norm", [d_model])
    q = f.vecmat(h, "%wq", d_model, d_model)
    k_new = f.vecmat(h, "%wk", d_model, kvd)
    v_new = f.vecmat(h, "%wv", d_model, kvd)
    full = [context + 1, kvd]

    def extend(cache, row):
        grown = f.emit(f"tensor.insert_slice {cache} into {f.empty(full)}[0, 0] [{context}, {kvd}] "
                       f"[1, 1] : {f.t([context, kvd])} into {f.t(full)}")
        return f.emit(f"tensor.insert_slice {row} into {grown}[{context}, 0] [1, {kvd}] [1, 1] : "
                      f"{f.t([kvd])} into {f.t(full)}")
    q2 = f.emit(f"tensor.expand_shape {q} [[0, 1]] output_shape [1, {d_model}] : "
                f"{f.t([d_model])} into {f.t([1, d_model])}")
    att = f.attention(q2, extend("%k_cache", k_new), extend("%v_cache", v_new),
                      1, context + 1, heads, kv_heads, hd, causal=False)
    att1 = f.emit(f"tensor.collapse_shape {att} [[0, 1]] : {f.t([1, d_model])} into {f.t([d_model])}")
    x1 = f.add("%x", f.vecmat(att1, "%wo", d_model, d_model), [d_model])
    h2 = f.rmsnorm(x1, "%ffn_norm", [d_model])
    y = f.add(x1, _swiglu_ffn(f, h2, "%w_gate", "%w_up", "%w_down", None, d_model, ffn), [d_model])
    args = [("%x", [d_model]), ("%attn_norm", [d_model]), ("%wq", [d_model, d_model]),
            ("%wk", [d_model, kvd]), ("%wv", [d_model, kvd]), ("%wo", [d_model, d_model]),
            ("%ffn_norm", [d_model]), ("%w_gate", [d_model, ffn]), ("%w_up", [d_model, ffn]),
            ("%w_down", [ffn, d_model]), ("%k_cache", [context, kvd]), ("%v_cache", [context, kvd])]
    return f.module(name, args, [(y, f.t([d_model])), (k_new, f.t([kvd])), (v_new, f.t([kvd]))])


def sample(vocab: int, k: int = 4, *, dtype: str = "f32", name: str = "sample") -> str:
    """Softmax over logits and the top-k tokens (the first index is the argmax).

    Args (logits[vocab]) -> (probs[vocab], top_probs[k], top_ids[k] as i32).
    """
    f = _Func(dtype)
    probs = f.softmax_last("%logits", [vocab])
    vals, idxs = f.topk_1d(probs, vocab, k)
    return f.module(name, [("%logits", [vocab])],
                    [(probs, f.t([vocab])), (vals, f.t([k])), (idxs, f.t([k], "i32"))])


def encoder_layer(seq: int, d_model: int, heads: int, ffn: int, *, dtype: str = "f32",
                  name: str = "encoder_layer") -> str:
    """One post-norm BERT-style encoder layer (as in all-MiniLM), bidirectional attention.

    Args (x[seq,d], wq[d,d], bq[d], wk[d,d], bk[d], wv[d,d], bv[d], wo[d,d], bo[d],
    ln1_g[d], ln1_b[d], w1[d,ffn], b1[ffn], w2[ffn,d], b2[d], ln2_g[d], ln2_b[d])
    -> y[seq,d]. GELU is the erf form.
    """
    hd = _check_heads(d_model, heads, heads)
    f = _Func(dtype)
    shape = [seq, d_model]

    def dense(x, w, b, k, n):
        return f.add_bias(f.matmul(x, w, seq, k, n), b, [seq, n])
    q = dense("%x", "%wq", "%bq", d_model, d_model)
    k = dense("%x", "%wk", "%bk", d_model, d_model)
    v = dense("%x", "%wv", "%bv", d_model, d_model)
    att = f.attention(q, k, v, seq, seq, heads, heads, hd, causal=False)
    x1 = f.layernorm(f.add("%x", dense(att, "%wo", "%bo", d_model, d_model), shape),
                     "%ln1_g", "%ln1_b", shape)
    inner = dense(x1, "%w1", "%b1", d_model, ffn)
    gelu = f.elementwise([inner], [seq, ffn], lambda s, u: s.mul(
        s.mul(s.const(0.5), u), s.add(s.const(1.0), s.erf(s.mul(u, s.const(1 / math.sqrt(2)))))))
    y = f.layernorm(f.add(x1, dense(gelu, "%w2", "%b2", ffn, d_model), shape), "%ln2_g", "%ln2_b", shape)
    vec, mat = [d_model], [d_model, d_model]
    args = [("%x", shape), ("%wq", mat), ("%bq", vec), ("%wk", mat), ("%bk", vec), ("%wv", mat),
            ("%bv", vec), ("%wo", mat), ("%bo", vec), ("%ln1_g", vec), ("%ln1_b", vec),
            ("%w1", [d_model, ffn]), ("%b1", [ffn]), ("%w2", [ffn, d_model]), ("%b2", vec),
            ("%ln2_g", vec), ("%ln2_b", vec)]
    return f.module(name, args, [(y, f.t(shape))])


def mean_pool_l2(seq: int, d: int, *, dtype: str = "f32", name: str = "mean_pool_l2") -> str:
    """Sentence embedding: mean over tokens, then L2-normalise. Args (h[seq,d]) -> e[d]."""
    f = _Func(dtype)
    total = f.generic([("%h", [seq, d], [0, 1])], [(f.full([d], 0.0), [d], [1])],
                      ["reduction", "parallel"], lambda s, v, a: s.add(a, v))
    mean = f.elementwise([total], [d], lambda s, t: s.div(t, s.const(seq)))
    sq = f.reduce_last(mean, [d], 0.0, lambda s, a, v: s.add(a, v), pre=lambda s, v: s.mul(v, v))
    out = f.elementwise([mean, (sq, [])], [d], lambda s, m, q: s.mul(
        m, s.rsqrt(s.max(q, s.const(L2_EPS)))))
    return f.module(name, [("%h", [seq, d])], [(out, f.t([d]))])


def retrieve(n: int, d: int, k: int, *, dtype: str = "f32", name: str = "retrieve") -> str:
    """Cosine similarity of a query against an index, then top-k.

    Args (query[d], index[n,d]) -> (scores[k], ids[k] as i32), best first.
    """
    f = _Func(dtype)
    dots = f.generic([("%index", [n, d], [0, 1]), ("%query", [d], [1])],
                     [(f.full([n], 0.0), [n], [0])], ["parallel", "reduction"],
                     lambda s, a, b, acc: s.add(acc, s.mul(a, b)))
    square = lambda s, v: s.mul(v, v)  # noqa: E731
    row_sq = f.reduce_last("%index", [n, d], 0.0, lambda s, a, v: s.add(a, v), pre=square)
    q_sq = f.reduce_last("%query", [d], 0.0, lambda s, a, v: s.add(a, v), pre=square)

    def cosine(s, dot, rs, qs):
        eps = s.const(L2_EPS)
        return s.mul(dot, s.mul(s.rsqrt(s.max(rs, eps)), s.rsqrt(s.max(qs, eps))))
    scores = f.elementwise([dots, row_sq, (q_sq, [])], [n], cosine)
    vals, idxs = f.topk_1d(scores, n, k)
    return f.module(name, [("%query", [d]), ("%index", [n, d])],
                    [(vals, f.t([k])), (idxs, f.t([k], "i32"))])


def logmel(frames: int, n_fft_bins: int, n_mels: int, *, dtype: str = "f32",
           name: str = "logmel") -> str:
    """Log-mel features: log(power[frames,bins] @ mel_fb[bins,mels] + eps) -> [frames,mels]."""
    f = _Func(dtype)
    mel = f.matmul("%power", "%mel_fb", frames, n_fft_bins, n_mels)
    out = f.elementwise([mel], [frames, n_mels], lambda s, v: s.log(s.max(v, s.const(LOG_EPS))))
    return f.module(name, [("%power", [frames, n_fft_bins]), ("%mel_fb", [n_fft_bins, n_mels])],
                    [(out, f.t([frames, n_mels]))])


KERNELS: dict[str, Callable[..., str]] = {
    "matmul": matmul,
    "prefill_layer": prefill_layer,
    "decode_step": decode_step,
    "sample": sample,
    "encoder_layer": encoder_layer,
    "mean_pool_l2": mean_pool_l2,
    "retrieve": retrieve,
    "logmel": logmel,
}
