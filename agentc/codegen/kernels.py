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

from agentc.codegen.emit import L2_EPS, LOG_EPS, RMS_EPS, Func


def matmul(m: int, n: int, k: int, *, dtype: str = "f32", name: str = "matmul") -> str:
    """C[m, n] = A[m, k] @ B[k, n]. Args (a, b) -> c."""
    f = Func(dtype)
    c = f.matmul("%a", "%b", m, k, n)
    return f.module(name, [("%a", [m, k]), ("%b", [k, n])], [(c, f.t([m, n]))])


def _project(f: Func, x, w, rows, k, n) -> str:
    """x @ w for x[rows, k], or a [k] vector (rows None) as a one-row matmul: the CPU
    target schedules matmuls (vectorised along n, streaming w's rows) but lowers
    linalg.vecmat to plain loops that walk w by columns, about 5x slower."""
    if rows is not None:
        return f.matmul(x, w, rows, k, n)
    row = f.emit(f"tensor.expand_shape {x} [[0, 1]] output_shape [1, {k}] : {f.t([k])} into {f.t([1, k])}")
    out = f.matmul(row, w, 1, k, n)
    return f.emit(f"tensor.collapse_shape {out} [[0, 1]] : {f.t([1, n])} into {f.t([n])}")


def _swiglu_ffn(f: Func, h, w_gate, w_up, w_down, rows, d_model, ffn) -> str:
    shape = [ffn] if rows is None else [rows, ffn]
    gate = _project(f, h, w_gate, rows, d_model, ffn)
    up = _project(f, h, w_up, rows, d_model, ffn)
    act = f.elementwise([gate, up], shape, lambda s, g, u: s.mul(
        s.div(g, s.add(s.const(1.0), s.exp(s.neg(g)))), u))
    return _project(f, act, w_down, rows, ffn, d_model)


def _check_heads(d_model, heads, kv_heads):
    if d_model % heads or heads % kv_heads or (d_model // heads) % 2:
        raise ValueError(f"need heads | d_model, kv_heads | heads and an even head_dim, got "
                         f"d_model={d_model}, heads={heads}, kv_heads={kv_heads}")
    return d_model // heads


def _rope(f: Func, x, cos, sin, rows: int, heads: int, hd: int) -> str:
    """Rotary position embedding of x[rows, heads*hd] (Hugging Face Llama's pairing).

    Element e of a head turns with element (e + hd/2) mod hd by the angle in
    cos/sin[rows, hd/2] (`x*cos + rotate_half(x)*sin`). The tables carry the positions
    and the model's theta, so the kernel needs no sin/cos (no libm on CPUs, no
    libdevice on GPUs) and one kernel serves every position. The result keeps the
    [rows, heads, hd] grouping attention splits by (reshaping through a finer split
    such as [rows, heads, 2, hd/2] miscompiled once views were folded).
    """
    half = hd // 2
    shape = [rows, heads, hd]
    x3 = f.emit(f"tensor.expand_shape {x} [[0], [1, 2]] output_shape {shape} : "
                f"{f.t([rows, heads * hd])} into {f.t(shape)}")

    def turn(s, own, partner, c, sn):
        first_half = s.cmpi("ult", s.index(2), s._op(f"arith.constant {half} : index"))
        return s.add(s.mul(own, c), s.mul(s.select(first_half, s.neg(partner), partner), sn))
    out = f.generic([(x3, shape, [0, 1, 2]), (x3, shape, [0, 1, f"(d2 + {half}) mod {hd}"]),
                     (cos, [rows, half], [0, f"d2 mod {half}"]), (sin, [rows, half], [0, f"d2 mod {half}"])],
                    [(f.empty(shape), shape, [0, 1, 2])], ["parallel"] * 3,
                    lambda s, a, b, c, sn, _o: turn(s, a, b, c, sn))
    return f.emit(f"tensor.collapse_shape {out} [[0], [1, 2]] : {f.t(shape)} into "
                  f"{f.t([rows, heads * hd])}")


def _layer_weights(d_model, kvd, ffn):
    return [("%attn_norm", [d_model]), ("%wq", [d_model, d_model]), ("%wk", [d_model, kvd]),
            ("%wv", [d_model, kvd]), ("%wo", [d_model, d_model]), ("%ffn_norm", [d_model]),
            ("%w_gate", [d_model, ffn]), ("%w_up", [d_model, ffn]), ("%w_down", [ffn, d_model])]


def prefill_layer(seq: int, d_model: int, heads: int, kv_heads: int, ffn: int, *,
                  eps: float = RMS_EPS, dtype: str = "f32", name: str = "prefill_layer") -> str:
    """One pre-norm Llama decoder layer over a prompt of `seq` tokens; emits its K/V.

    Args (x[seq,d], cos[seq,hd/2], sin[seq,hd/2], attn_norm[d], wq[d,d], wk[d,kv*hd],
    wv[d,kv*hd], wo[d,d], ffn_norm[d], w_gate[d,ffn], w_up[d,ffn], w_down[ffn,d]) ->
    (y[seq,d], k[seq,kv*hd], v[seq,kv*hd]). cos/sin are the RoPE tables of positions
    0..seq-1; k is rotated, as the cache keeps it. Causal attention, so a prompt shorter
    than `seq` (a bucketed kernel, zero rows after it) gets exact rows for its tokens.
    Every layer of a model calls this same function with its own weights.
    """
    hd = _check_heads(d_model, heads, kv_heads)
    kvd = kv_heads * hd
    f = Func(dtype)
    shape = [seq, d_model]
    h = f.rmsnorm("%x", "%attn_norm", shape, eps)
    q = _rope(f, f.matmul(h, "%wq", seq, d_model, d_model), "%cos", "%sin", seq, heads, hd)
    k = _rope(f, f.matmul(h, "%wk", seq, d_model, kvd), "%cos", "%sin", seq, kv_heads, hd)
    v = f.matmul(h, "%wv", seq, d_model, kvd)
    att = f.attention(q, k, v, seq, seq, heads, kv_heads, hd, causal=True)
    x1 = f.add("%x", f.matmul(att, "%wo", seq, d_model, d_model), shape)
    h2 = f.rmsnorm(x1, "%ffn_norm", shape, eps)
    y = f.add(x1, _swiglu_ffn(f, h2, "%w_gate", "%w_up", "%w_down", seq, d_model, ffn), shape)
    args = ([("%x", shape), ("%cos", [seq, hd // 2]), ("%sin", [seq, hd // 2])]
            + _layer_weights(d_model, kvd, ffn))
    return f.module(name, args, [(y, f.t(shape)), (k, f.t([seq, kvd])), (v, f.t([seq, kvd]))])


def decode_step(context: int, d_model: int, heads: int, kv_heads: int, ffn: int, *,
                eps: float = RMS_EPS, dtype: str = "f32", name: str = "decode_step") -> str:
    """One decoder layer for one new token over a KV cache of `context` rows.

    Args (x[d], cos[hd/2], sin[hd/2], attn_norm[d], wq, wk, wv, wo, ffn_norm, w_gate,
    w_up, w_down (as prefill_layer), k_cache[context,kv*hd], v_cache[context,kv*hd],
    mask[context]) -> (y[d], k_new[kv*hd], v_new[kv*hd]). cos/sin: the RoPE row of the
    token's position. The context length is a run-time value: `mask` is 1.0 for the
    cache rows written so far and 0.0 for the rest, so one kernel serves every length
    up to `context` (the runtime picks the kernel by a power-of-two bucket). The token
    attends to the kept rows plus itself (`Func.attention_append`: the cache is read in
    place, not copied into a grown one); the caller writes k_new (rotated) and v_new
    into its cache at the token's position.
    """
    hd = _check_heads(d_model, heads, kv_heads)
    kvd = kv_heads * hd
    f = Func(dtype)
    h = f.rmsnorm("%x", "%attn_norm", [d_model], eps)

    def row(vec, width):
        return f.emit(f"tensor.expand_shape {vec} [[0, 1]] output_shape [1, {width}] : "
                      f"{f.t([width])} into {f.t([1, width])}")
    cos, sin = row("%cos", hd // 2), row("%sin", hd // 2)
    q = _rope(f, row(_project(f, h, "%wq", None, d_model, d_model), d_model), cos, sin, 1, heads, hd)
    k_row = _rope(f, row(_project(f, h, "%wk", None, d_model, kvd), kvd), cos, sin, 1, kv_heads, hd)
    k_new = f.emit(f"tensor.collapse_shape {k_row} [[0, 1]] : {f.t([1, kvd])} into {f.t([kvd])}")
    v_new = _project(f, h, "%wv", None, d_model, kvd)
    att1 = f.attention_append(q, "%k_cache", "%v_cache", k_new, v_new, context, heads, kv_heads, hd,
                              key_mask="%mask")
    x1 = f.add("%x", _project(f, att1, "%wo", None, d_model, d_model), [d_model])
    h2 = f.rmsnorm(x1, "%ffn_norm", [d_model], eps)
    y = f.add(x1, _swiglu_ffn(f, h2, "%w_gate", "%w_up", "%w_down", None, d_model, ffn), [d_model])
    args = ([("%x", [d_model]), ("%cos", [hd // 2]), ("%sin", [hd // 2])]
            + _layer_weights(d_model, kvd, ffn)
            + [("%k_cache", [context, kvd]), ("%v_cache", [context, kvd]), ("%mask", [context])])
    return f.module(name, args, [(y, f.t([d_model])), (k_new, f.t([kvd])), (v_new, f.t([kvd]))])


def sample(d_model: int, vocab: int, k: int = 4, *, eps: float = RMS_EPS, dtype: str = "f32",
           name: str = "sample") -> str:
    """Final RMSNorm, LM head and a top-k draw: the token that follows hidden state h.

    Args (h[d], norm[d], w_out[d,vocab], params[2] = (1/temperature, u)) ->
    (token[1] as i32, logits[vocab], top_probs[k], top_ids[k] as i32). The k largest
    logits (ties to the lower id) get softmax(logit/temperature) probabilities; the
    token is the first of them whose cumulative probability exceeds u in [0, 1)
    (inverse-CDF sampling, u drawn by the caller's seeded generator). k = 1 is greedy
    (the argmax, whatever u and the temperature).
    """
    if not 1 <= k <= vocab:
        raise ValueError(f"sample: need 1 <= k <= vocab, got k={k}, vocab={vocab}")
    f = Func(dtype)
    h = f.rmsnorm("%h", "%norm", [d_model], eps)
    logits = _project(f, h, "%w_out", None, d_model, vocab)
    vals, ids = f.topk_1d(logits, vocab, k)
    c0, c1 = (f.emit(f"arith.constant {i} : index") for i in (0, 1))
    top = f.emit(f"tensor.extract {vals}[{c0}] : {f.t([k])}")
    inv_t = f.emit(f"tensor.extract %params[{c0}] : {f.t([2])}")
    u = f.emit(f"tensor.extract %params[{c1}] : {f.t([2])}")
    weights = f.elementwise([vals], [k], lambda s, v: s.exp(s.mul(s.sub(v, top), inv_t)))
    total = f.reduce_last(weights, [k], 0.0, lambda s, a, v: s.add(a, v))
    probs = f.elementwise([weights, (total, [])], [k], lambda s, w, t: s.div(w, t))
    # cdf[i] = sum of probs[j] for j <= i, and the draw = how many cdf entries are <= u:
    # both order-free reductions, so any target may parallelise them.
    cdf = f.generic([(probs, [k], [1])], [(f.full([k], 0.0), [k], [0])], ["parallel", "reduction"],
                    lambda s, p, a: s.add(a, s.select(s.cmpi("ule", s.index(1), s.index(0)),
                                                      p, s.const(0.0))))
    below = f.reduce_last(cdf, [k], 0.0, lambda s, a, c: s.add(a, s.select(
        s.cmpf("ole", c, u), s.const(1.0), s.const(0.0))))
    count = f.emit(f"tensor.extract {below}[] : {f.t([])}")
    last = f.emit(f"arith.constant {float(k - 1):.1f} : {dtype}")
    pick = f.emit(f"arith.fptosi {f.emit(f'arith.minimumf {count}, {last} : {dtype}')} : {dtype} to i32")
    token_id = f.emit(f"tensor.extract {ids}[{f.emit(f'arith.index_cast {pick} : i32 to index')}] : "
                      f"{f.t([k], 'i32')}")
    token = f.emit(f"tensor.from_elements {token_id} : {f.t([1], 'i32')}")
    args = [("%h", [d_model]), ("%norm", [d_model]), ("%w_out", [d_model, vocab]), ("%params", [2])]
    return f.module(name, args, [(token, f.t([1], "i32")), (logits, f.t([vocab])),
                                 (probs, f.t([k])), (ids, f.t([k], "i32"))])


def pack_panels(w, panel: int):
    """A weight w[k, n] (numpy) as column panels [n / panel, k, panel], the layout a
    kernel built with `panel=` takes: what the CPU target's packed-B schedule would
    otherwise copy B into on every call (`Func.matmul_panels`)."""
    k, n = w.shape
    if n % panel:
        raise ValueError(f"pack_panels: {n} columns are not whole panels of {panel}")
    return w.reshape(k, n // panel, panel).transpose(1, 0, 2).copy()


def encoder_layer(seq: int, d_model: int, heads: int, ffn: int, *, masked: bool = False,
                  panel: int = 0, dtype: str = "f32", name: str = "encoder_layer") -> str:
    """One post-norm BERT-style encoder layer (as in all-MiniLM), bidirectional attention.

    Args (x[seq,d], wq[d,d], bq[d], wk[d,d], bk[d], wv[d,d], bv[d], wo[d,d], bo[d],
    ln1_g[d], ln1_b[d], w1[d,ffn], b1[ffn], w2[ffn,d], b2[d], ln2_g[d], ln2_b[d]
    [, mask[seq]]) -> y[seq,d]. GELU is the erf form. With `masked`, the last argument
    (1.0 token / 0.0 padding) hides padding keys, so a sentence shorter than `seq`
    rows (a bucketed kernel, `agentc run`) attends only to its own tokens; padding rows
    come out finite and are dropped by the pooling. With `panel` > 0 the four [in, out]
    weights come as column panels (`pack_panels`: wq[d/panel, d, panel], ...,
    w1[ffn/panel, d, panel], w2[d/panel, ffn, panel]), packed once by the caller.
    """
    hd = _check_heads(d_model, heads, heads)
    if panel and (d_model % panel or ffn % panel):
        raise ValueError(f"encoder_layer: d_model={d_model} and ffn={ffn} must be whole panels of {panel}")
    f = Func(dtype)
    shape = [seq, d_model]

    def dense(x, w, b, k, n, residual=None):
        """x @ w + b (+ residual): bias and residual start the accumulator (no pass of
        their own over the result), in both layouts alike, so both round alike."""
        if panel:
            return f.matmul_panels(x, w, seq, k, n, panel, bias=b, residual=residual)
        terms = [(b, [1])] + ([residual] if residual is not None else [])
        init = f.elementwise(terms, [seq, n], lambda s, *v: v[0] if len(v) == 1 else s.add(v[1], v[0]))
        return f.matmul(x, w, seq, k, n, init=init)

    def weight(k, n):
        return [n // panel, k, panel] if panel else [k, n]
    q = dense("%x", "%wq", "%bq", d_model, d_model)
    k = dense("%x", "%wk", "%bk", d_model, d_model)
    v = dense("%x", "%wv", "%bv", d_model, d_model)
    att = f.attention(q, k, v, seq, seq, heads, heads, hd, causal=False,
                      key_mask="%mask" if masked else None)
    x1 = f.layernorm(dense(att, "%wo", "%bo", d_model, d_model, residual="%x"), "%ln1_g", "%ln1_b", shape)
    inner = dense(x1, "%w1", "%b1", d_model, ffn)
    gelu = f.elementwise([inner], [seq, ffn], lambda s, u: s.mul(
        s.mul(s.const(0.5), u), s.add(s.const(1.0), s.erf(s.mul(u, s.const(1 / math.sqrt(2)))))))
    y = f.layernorm(dense(gelu, "%w2", "%b2", ffn, d_model, residual=x1), "%ln2_g", "%ln2_b", shape)
    vec, mat = [d_model], weight(d_model, d_model)
    args = [("%x", shape), ("%wq", mat), ("%bq", vec), ("%wk", mat), ("%bk", vec), ("%wv", mat),
            ("%bv", vec), ("%wo", mat), ("%bo", vec), ("%ln1_g", vec), ("%ln1_b", vec),
            ("%w1", weight(d_model, ffn)), ("%b1", [ffn]), ("%w2", weight(ffn, d_model)), ("%b2", vec),
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
