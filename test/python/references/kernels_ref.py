"""numpy references for the kernel builders of `agentc.codegen.kernels`.

Each `ref_<kind>` takes the kernel's arguments in the same order and returns its
results (a tuple when the kernel has several), computed in float64 with plain numpy:
the tests JIT each kernel and compare. Written from the conventions the builders
document (weights `[in, out]`, grouped-query heads `h = kv * group + g`, pre-norm
Llama layers, post-norm BERT layers with erf GELU), never from the builders' code,
so a mistake in one is not copied into the other. The epsilons are the ones the
kernels are specified to use, restated here on purpose.
"""

from __future__ import annotations

from math import erf
from typing import Callable

import numpy as np

RMS_EPS = 1e-6      # RMSNorm (Llama)
LN_EPS = 1e-12      # LayerNorm (BERT / all-MiniLM)
L2_EPS = 1e-12      # floor under squared norms before rsqrt
LOG_EPS = 1e-10     # floor under mel power before log


def _np_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _np_rmsnorm(x, g):
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + RMS_EPS) * g


def _np_layernorm(x, g, b):
    c = x - x.mean(axis=-1, keepdims=True)
    return c / np.sqrt((c * c).mean(axis=-1, keepdims=True) + LN_EPS) * g + b


def _np_attention(q, k, v, heads, kv_heads, causal):
    seq, ctx = q.shape[0], k.shape[0]
    hd = q.shape[1] // heads
    group = heads // kv_heads
    qh = q.reshape(seq, heads, hd).transpose(1, 0, 2)
    kh = np.repeat(k.reshape(ctx, kv_heads, hd).transpose(1, 0, 2), group, axis=0)
    vh = np.repeat(v.reshape(ctx, kv_heads, hd).transpose(1, 0, 2), group, axis=0)
    s = qh @ kh.transpose(0, 2, 1) / np.sqrt(hd)
    if causal:
        hidden = np.arange(ctx)[None, :] > np.arange(seq)[:, None] + (ctx - seq)
        s = np.where(hidden, -np.inf, s)
    return (_np_softmax(s) @ vh).transpose(1, 0, 2).reshape(seq, heads * hd)


def _np_swiglu(h, wg, wu, wd):
    g = h @ wg
    return (g / (1 + np.exp(-g)) * (h @ wu)) @ wd


def _np_topk(x, k):
    order = np.argsort(-x, kind="stable")[:k]
    return x[order], order.astype(np.int32)


def ref_matmul(a, b):
    return a @ b


def _np_rope(x, cos, sin, heads):
    """HF Llama's apply_rotary_pos_emb on x[seq, heads*hd] with half tables [seq, hd/2]."""
    seq = x.shape[0]
    hd = x.shape[1] // heads
    xh = x.reshape(seq, heads, hd)
    c = np.concatenate([cos, cos], axis=-1)[:, None, :]
    s = np.concatenate([sin, sin], axis=-1)[:, None, :]
    rotated = np.concatenate([-xh[..., hd // 2:], xh[..., : hd // 2]], axis=-1)
    return (xh * c + rotated * s).reshape(seq, heads * hd)


def ref_prefill_layer(x, cos, sin, attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down, *,
                      heads, kv_heads):
    h = _np_rmsnorm(x, attn_norm)
    q, k, v = _np_rope(h @ wq, cos, sin, heads), _np_rope(h @ wk, cos, sin, kv_heads), h @ wv
    x1 = x + _np_attention(q, k, v, heads, kv_heads, causal=True) @ wo
    return x1 + _np_swiglu(_np_rmsnorm(x1, ffn_norm), w_gate, w_up, w_down), k, v


def ref_decode_step(x, cos, sin, attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down,
                    k_cache, v_cache, mask, *, heads, kv_heads):
    h = _np_rmsnorm(x, attn_norm)
    q = _np_rope((h @ wq)[None], cos[None], sin[None], heads)
    k_new = _np_rope((h @ wk)[None], cos[None], sin[None], kv_heads)[0]
    v_new = h @ wv
    kept = mask > 0.5                       # the cache rows written so far
    keys = np.vstack([k_cache[kept], k_new[None]])
    values = np.vstack([v_cache[kept], v_new[None]])
    x1 = x + (_np_attention(q, keys, values, heads, kv_heads, causal=False) @ wo)[0]
    return x1 + _np_swiglu(_np_rmsnorm(x1, ffn_norm), w_gate, w_up, w_down), k_new, v_new


def ref_sample(h, norm, w_out, params, *, k=4):
    """Final norm + LM head; top-k; the first of them whose cumulative
    softmax(logit * params[0]) exceeds u = params[1]."""
    logits = _np_rmsnorm(h, norm) @ w_out
    top, ids = _np_topk(logits, k)
    probs = _np_softmax((top - top[0]) * params[0])
    chosen = min(int(np.sum(np.cumsum(probs) <= params[1])), k - 1)
    return np.array([ids[chosen]], np.int32), logits, probs, ids


def ref_encoder_layer(x, wq, bq, wk, bk, wv, bv, wo, bo, ln1_g, ln1_b, w1, b1, w2, b2, ln2_g, ln2_b,
                      *, heads):
    att = _np_attention(x @ wq + bq, x @ wk + bk, x @ wv + bv, heads, heads, causal=False)
    x1 = _np_layernorm(x + att @ wo + bo, ln1_g, ln1_b)
    u = x1 @ w1 + b1
    gelu = 0.5 * u * (1 + np.vectorize(erf)(u / np.sqrt(2)))
    return _np_layernorm(x1 + gelu @ w2 + b2, ln2_g, ln2_b)


def ref_mean_pool_l2(h):
    m = h.mean(axis=0)
    return m / np.sqrt(max(float((m * m).sum()), L2_EPS))


def ref_retrieve(query, index, *, k):
    scores = (index @ query) / (np.sqrt(np.maximum((index * index).sum(axis=1), L2_EPS))
                                * np.sqrt(max(float(query @ query), L2_EPS)))
    return _np_topk(scores, k)


def ref_logmel(power, mel_fb):
    return np.log(np.maximum(power @ mel_fb, LOG_EPS))


REFERENCES: dict[str, Callable] = {
    "matmul": ref_matmul,
    "prefill_layer": ref_prefill_layer,
    "decode_step": ref_decode_step,
    "sample": ref_sample,
    "encoder_layer": ref_encoder_layer,
    "mean_pool_l2": ref_mean_pool_l2,
    "retrieve": ref_retrieve,
    "logmel": ref_logmel,
}
