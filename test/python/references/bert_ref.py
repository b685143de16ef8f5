"""An independent numpy BERT sentence encoder (all-MiniLM-L6-v2 style), in float64.

Written from the BERT paper's and sentence-transformers' definitions, not from agentc:
token ids from `tokenizer.json` (the `tokenizers` library), word + position + token-type
embeddings, LayerNorm, then post-norm layers (multi-head self-attention with a padding
mask, residual, LayerNorm; GELU (erf) FFN, residual, LayerNorm), masked mean pooling
and L2 normalisation. It runs each sentence at its exact length, so it needs no
padding at all; the Hugging Face checkpoint layout is read directly (Linear weights are
[out, in], applied as x @ W.T + b).
"""

from __future__ import annotations

import math

import numpy as np

_erf = np.vectorize(math.erf, otypes=[np.float64])

EPS = 1e-12


def _ln(x, g, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + EPS) * g + b


def _gelu(x):
    # math.erf element by element: no scipy in the test environment
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


class BertRef:
    def __init__(self, tensors: dict, tokenizer_json: str, heads: int):
        from tokenizers import Tokenizer

        self.w = {k.removeprefix("bert."): np.asarray(v, np.float64) for k, v in tensors.items()}
        self.heads = heads
        self.tok = Tokenizer.from_str(tokenizer_json)
        self.tok.no_truncation()
        self.tok.no_padding()
        self.n_layers = 1 + max(int(k.split(".")[2]) for k in self.w if k.startswith("encoder.layer."))
        self.max_pos = self.w["embeddings.position_embeddings.weight"].shape[0]

    def ids(self, text: str) -> list[int]:
        ids = self.tok.encode(text).ids
        return ids if len(ids) <= self.max_pos else ids[:self.max_pos - 1] + ids[-1:]

    def _linear(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def hidden(self, ids: list[int]) -> np.ndarray:
        w, n = self.w, len(ids)
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _ln(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        d = x.shape[1]
        hd = d // self.heads
        for i in range(self.n_layers):
            p = f"encoder.layer.{i}."
            q, k, v = (self._linear(x, p + f"attention.self.{m}").reshape(n, self.heads, hd).transpose(1, 0, 2)
                       for m in ("query", "key", "value"))
            s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
            s = np.exp(s - s.max(-1, keepdims=True))
            a = (s / s.sum(-1, keepdims=True)) @ v
            a = a.transpose(1, 0, 2).reshape(n, d)
            x = _ln(x + self._linear(a, p + "attention.output.dense"),
                    w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
            h = _gelu(self._linear(x, p + "intermediate.dense"))
            x = _ln(x + self._linear(h, p + "output.dense"),
                    w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        return x

    def embed(self, text: str) -> np.ndarray:
        e = self.hidden(self.ids(text)).mean(0)
        return e / max(np.linalg.norm(e), 1e-12)

    def rank(self, query: str, docs: list[str], k: int) -> list[int]:
        """Document ids by cosine similarity to the query, best first (ties: lower id)."""
        q = self.embed(query)
        e = np.stack([self.embed(t) for t in docs])
        scores = e @ q / np.maximum(np.linalg.norm(e, axis=1), 1e-12)
        return sorted(range(len(docs)), key=lambda i: (-scores[i], i))[:k]
