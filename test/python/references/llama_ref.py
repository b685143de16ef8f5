"""An independent numpy Llama: what the compiled decoder (agentc.runtime.decoder) is
checked against.

Written from the Hugging Face `LlamaForCausalLM` definition, not from agentc's kernels
or runtime: weights stay in the checkpoint's layout (`nn.Linear` weights are
[out, in], so a projection is `x @ W.T`), RoPE uses `rotate_half` with
`inv_freq = theta ** (-arange(0, hd, 2) / hd)`, grouped-query attention repeats each
KV head over `heads / kv_heads` query heads, and everything runs in float64. There is
no KV cache: every step recomputes the whole sequence, so a cache bug on the other side
cannot be mirrored here (one causal pass yields the logits after every prefix, which is
how a generated sequence is checked). Sampling is the documented rule (top-k logits,
softmax of logit/temperature, the first token whose cumulative probability exceeds u).
"""

from __future__ import annotations

import numpy as np


class LlamaRef:
    """A Llama forward pass over a dict of Hugging Face-named arrays."""

    def __init__(self, weights: dict[str, np.ndarray], *, layers: int, heads: int, kv_heads: int,
                 rope_theta: float, eps: float):
        self.w = {name: np.asarray(t, dtype=np.float64) for name, t in weights.items()}
        self.layers, self.heads, self.kv_heads = layers, heads, kv_heads
        self.theta, self.eps = rope_theta, eps
        self.head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])

    def _norm(self, x, weight):
        variance = np.mean(x ** 2, axis=-1, keepdims=True)
        return weight * (x / np.sqrt(variance + self.eps))

    def _rotary(self, x, positions):
        """x: [heads, seq, hd] rotated as HF's apply_rotary_pos_emb."""
        hd = x.shape[-1]
        inv_freq = 1.0 / (self.theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
        freqs = np.outer(positions, inv_freq)
        emb = np.concatenate([freqs, freqs], axis=-1)
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        rotated = np.concatenate([-x2, x1], axis=-1)
        return x * np.cos(emb) + rotated * np.sin(emb)

    def _attention(self, x, layer, positions):
        p = f"model.layers.{layer}.self_attn."
        seq = x.shape[0]
        q = x @ self.w[p + "q_proj.weight"].T
        k = x @ self.w[p + "k_proj.weight"].T
        v = x @ self.w[p + "v_proj.weight"].T
        hd = q.shape[1] // self.heads
        q = q.reshape(seq, self.heads, hd).transpose(1, 0, 2)
        k = k.reshape(seq, self.kv_heads, hd).transpose(1, 0, 2)
        v = v.reshape(seq, self.kv_heads, hd).transpose(1, 0, 2)
        q, k = self._rotary(q, positions), self._rotary(k, positions)
        reps = self.heads // self.kv_heads
        k, v = np.repeat(k, reps, axis=0), np.repeat(v, reps, axis=0)
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
        future = np.triu(np.ones((seq, seq), dtype=bool), 1)
        scores[:, future] = -np.inf
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        out = (probs @ v).transpose(1, 0, 2).reshape(seq, self.heads * hd)
        return out @ self.w[p + "o_proj.weight"].T

    def _mlp(self, x, layer):
        p = f"model.layers.{layer}.mlp."
        gate = x @ self.w[p + "gate_proj.weight"].T
        up = x @ self.w[p + "up_proj.weight"].T
        return (gate / (1.0 + np.exp(-gate)) * up) @ self.w[p + "down_proj.weight"].T

    def hidden(self, ids) -> np.ndarray:
        """The final-norm hidden states [seq, d] of a token sequence."""
        x = self.w["model.embed_tokens.weight"][np.asarray(ids)]
        positions = np.arange(len(ids), dtype=np.float64)
        for layer in range(self.layers):
            p = f"model.layers.{layer}."
            x = x + self._attention(self._norm(x, self.w[p + "input_layernorm.weight"]), layer, positions)
            x = x + self._mlp(self._norm(x, self.w[p + "post_attention_layernorm.weight"]), layer)
        return self._norm(x, self.w["model.norm.weight"])

    def logits(self, ids, start: int = 0) -> np.ndarray:
        """Next-token logits [len(ids) - start, vocab]: row i follows ids[: start + i + 1].

        One causal pass over the whole sequence gives every prefix's logits, so a
        generated sequence is checked token by token without a cache: each token must
        be what `choose` picks from the logits of the prefix before it.
        """
        return self.hidden(ids)[start:] @ self.head.T


def choose(logits, top_k: int = 1, temperature: float = 1.0, u: float = 0.0) -> int:
    """The sampling rule: among the top_k logits (ties to the lower id), the first token
    whose cumulative softmax(logit / temperature) exceeds u; top_k = 1 is the argmax."""
    order = np.argsort(-logits, kind="stable")[:top_k] if top_k > 1 else [int(np.argmax(logits))]
    z = (logits[order] - logits[order[0]]) / temperature
    probs = np.exp(z) / np.exp(z).sum()
    return int(order[min(int(np.sum(np.cumsum(probs) <= u)), top_k - 1)])
