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

from agentc.codegen.emit import L2_EPS, LOG_EPS, Func


def matmul(m: int, n: int, k: int, *, dtype: str = "f32", name: str = "matmul") -> str:
    """C[m, n] = A[m, k] @ B[k, n]. Args (a, b) -> c."""
    f = Func(dtype)
    c = f.matmul("%a", "%b", m, k, n)
    return f.module(name, [("%a", [m, k]), ("%b", [k, n])], [(c, f.t([m, n]))])


def _swiglu_ffn(f: Func, h, w_gate, w_up, w_down, rows, d_model, ffn) -> str:
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
    f = Func(dtype)
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
    f = Func(dtype)
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
    f = Func(dtype)
    probs = f.softmax_last("%logits", [vocab])
    vals, idxs = f.topk_1d(probs, vocab, k)
    return f.module(name, [("%logits", [vocab])],
                    [(probs, f.t([vocab])), (vals, f.t([k])), (idxs, f.t([k], "i32"))])


def encoder_layer(seq: int, d_model: int, heads: int, ffn: int, *, masked: bool = False,
                  dtype: str = "f32", name: str = "encoder_layer") -> str:
    """One post-norm BERT-style encoder layer (as in all-MiniLM), bidirectional attention.

    Args (x[seq,d], wq[d,d], bq[d], wk[d,d], bk[d], wv[d,d], bv[d], wo[d,d], bo[d],
    ln1_g[d], ln1_b[d], w1[d,ffn], b1[ffn], w2[ffn,d], b2[d], ln2_g[d], ln2_b[d]
    [, mask[seq]]) -> y[seq,d]. GELU is the erf form. With `masked`, the last argument
    (1.0 token / 0.0 padding) hides padding keys, so a sentence shorter than `seq`
    rows (a bucketed kernel, `agentc run`) attends only to its own tokens; padding rows
    come out finite and are dropped by the pooling.
    """
    hd = _check_heads(d_model, heads, heads)
    f = Func(dtype)
    shape = [seq, d_model]

    def dense(x, w, b, k, n):
        return f.add_bias(f.matmul(x, w, seq, k, n), b, [seq, n])
    q = dense("%x", "%wq", "%bq", d_model, d_model)
    k = dense("%x", "%wk", "%bk", d_model, d_model)
    v = dense("%x", "%wv", "%bv", d_model, d_model)
    att = f.attention(q, k, v, seq, seq, heads, heads, hd, causal=False,
                      key_mask="%mask" if masked else None)
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
            ("%ln2_g", vec), ("%ln2_b", vec)] + ([("%mask", [seq])] if masked else [])
    return f.module(name, args, [(y, f.t(shape))])


def mean_pool_l2(seq: int, d: int, *, masked: bool = False, dtype: str = "f32",
                 name: str = "mean_pool_l2") -> str:
    """Sentence embedding: mean over tokens, then L2-normalise. Args (h[seq,d]) -> e[d].

    With `masked`, a second argument mask[seq] (1.0 token / 0.0 padding) weights the
    rows and the mean divides by the token count (sentence-transformers' pooling).
    """
    f = Func(dtype)
    if masked:
        total = f.generic([("%h", [seq, d], [0, 1]), ("%mask", [seq], [0])],
                          [(f.full([d], 0.0), [d], [1])], ["reduction", "parallel"],
                          lambda s, v, m, a: s.add(a, s.mul(v, m)))
        count = f.reduce_last("%mask", [seq], 0.0, lambda s, a, v: s.add(a, v))
        mean = f.elementwise([total, (count, [])], [d],
                             lambda s, t, c: s.div(t, s.max(c, s.const(1.0))))
    else:
        total = f.generic([("%h", [seq, d], [0, 1])], [(f.full([d], 0.0), [d], [1])],
                          ["reduction", "parallel"], lambda s, v, a: s.add(a, v))
        mean = f.elementwise([total], [d], lambda s, t: s.div(t, s.const(seq)))
    sq = f.reduce_last(mean, [d], 0.0, lambda s, a, v: s.add(a, v), pre=lambda s, v: s.mul(v, v))
    out = f.elementwise([mean, (sq, [])], [d], lambda s, m, q: s.mul(
        m, s.rsqrt(s.max(q, s.const(L2_EPS)))))
    args = [("%h", [seq, d])] + ([("%mask", [seq])] if masked else [])
    return f.module(name, args, [(out, f.t([d]))])


def retrieve(n: int, d: int, k: int, *, dtype: str = "f32", name: str = "retrieve") -> str:
    """Cosine similarity of a query against an index, then top-k.

    Args (query[d], index[n,d]) -> (scores[k], ids[k] as i32), best first.
    """
    f = Func(dtype)
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
    f = Func(dtype)
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
