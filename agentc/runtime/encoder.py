"""A BERT/MiniLM sentence encoder over agentc's compiled kernels: `embed.encode` +
`embed.pool` at run time.

Split of the work (why): tokenization (WordPiece, from `tokenizer.json` via the
`tokenizers` library), the embedding gather (word + position + type rows) and the
embedding LayerNorm run here in numpy: they are table lookups and one normalisation,
O(tokens x d). Every layer (projections, attention, GELU FFN, LayerNorms) and the
pooling run in agentc's compiled `encoder_layer` and `mean_pool_l2` kernels.

Sequence lengths are bucketed: a sentence of n tokens (after [CLS]/[SEP], truncated at
the model's position embeddings) runs in the kernel of the smallest bucket >= n, padded
with zero rows; the kernels' mask argument hides the padding keys in attention and the
padding rows in the mean, so the result is the n-token model's. One kernel is compiled
per bucket used (seconds each), not one per length.
"""

from __future__ import annotations

import numpy as np

from agentc.codegen.emit import LN_EPS
from agentc.codegen.jit import host_tile
from agentc.codegen.kernels import pack_panels
from agentc.runtime.kernels import compiled
from agentc.runtime.weights import Checkpoint

# Rows of the compiled encoder kernels; the last bucket is raised to the model's
# position embeddings when that is longer.
BUCKETS = (32, 128, 256, 512)

def _layer_tensors(d: int, ffn: int) -> list[tuple[str, tuple[int, ...]]]:
    """(HF name under `encoder.layer.N.`, HF shape) in the encoder_layer kernel's argument
    order; HF Linear weights are [out, in] and are transposed to the kernel's [in, out]."""
    out = []
    for part in ("attention.self.query", "attention.self.key", "attention.self.value",
                 "attention.output.dense"):
        out += [(f"{part}.weight", (d, d)), (f"{part}.bias", (d,))]
    out += [("attention.output.LayerNorm.weight", (d,)), ("attention.output.LayerNorm.bias", (d,)),
            ("intermediate.dense.weight", (ffn, d)), ("intermediate.dense.bias", (ffn,)),
            ("output.dense.weight", (d, ffn)), ("output.dense.bias", (d,)),
            ("output.LayerNorm.weight", (d,)), ("output.LayerNorm.bias", (d,))]
    return out


def _layernorm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return ((x - mu) / np.sqrt(var + LN_EPS) * g + b).astype(np.float32)


class Encoder:
    """A sentence encoder: `embed(texts)` -> L2-normalised [n, d] float32 embeddings."""

    def __init__(self, ckpt: Checkpoint, *, layers: int, d_model: int, heads: int, ffn: int,
                 vocab: int, positions: int = 512, type_vocab: int = 2, buckets: tuple[int, ...] = BUCKETS,
                 threads: int = 1, prepack: bool = True):
        self.layers, self.d, self.heads, self.ffn = layers, d_model, heads, ffn
        self.positions, self.threads = positions, threads
        self.buckets = tuple(sorted(b for b in buckets if b < positions)) + (positions,)
        d = d_model
        self.word = ckpt.take("embeddings.word_embeddings.weight", (vocab, d))
        self.pos = ckpt.take("embeddings.position_embeddings.weight", (positions, d))
        self.type0 = ckpt.take("embeddings.token_type_embeddings.weight", (type_vocab, d))[0]
        self.ln = (ckpt.take("embeddings.LayerNorm.weight", (d,)), ckpt.take("embeddings.LayerNorm.bias", (d,)))
        self.weights = []
        for i in range(layers):
            arrays = [ckpt.take(f"encoder.layer.{i}.{name}", shape) for name, shape in _layer_tensors(d, ffn)]
            self.weights.append([np.ascontiguousarray(a.T) if a.ndim == 2 else a for a in arrays])
        # The kernels called here take the [in, out] weights packed into column panels once,
        # now, rather than copying them into panels on every call (a tenth of a layer).
        # `weights` keeps the plain layout: the host programs' kernels (agentc.runtime.host)
        # are compiled by `agentc compile` for it.
        # (prepack=False: packed on every call, as before; benchmarks/bench_run.py compares.)
        panel = host_tile()[1]
        self.panel = panel if prepack and d % panel == 0 and ffn % panel == 0 else 0
        self.packed = [[pack_panels(a, self.panel) if self.panel and a.ndim == 2 else a for a in w]
                       for w in self.weights]
        self.tokenizer = ckpt.tokenizer()

    def tokenize(self, text: str) -> list[int]:
        """WordPiece ids with [CLS]/[SEP], truncated to the model's positions."""
        ids = self.tokenizer.encode(text).ids
        if len(ids) > self.positions:   # keep the closing [SEP], as HF truncation does
            ids = ids[:self.positions - 1] + ids[-1:]
        return ids

    def bucket(self, n: int) -> int:
        return next(b for b in self.buckets if b >= n)

    def _embed_rows(self, ids: list[int]) -> np.ndarray:
        """Word + position + type-0 embeddings, LayerNorm'd: the first layer's input rows."""
        return _layernorm(self.word[ids] + self.pos[:len(ids)] + self.type0, *self.ln)

    def encode(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """`embed.encode`: the last layer's hidden states [bucket, d] and the row mask."""
        n = len(ids)
        rows = self.bucket(n)
        x = np.zeros((rows, self.d), np.float32)
        x[:n] = self._embed_rows(ids)
        mask = np.zeros(rows, np.float32)
        mask[:n] = 1.0
        layer = compiled("encoder_layer", self.threads, seq=rows, d_model=self.d, heads=self.heads,
                         ffn=self.ffn, masked=True, panel=self.panel)
        for w in self.packed:
            (x,) = layer(x, *w, mask)
        return x, mask

    def pool(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """`embed.pool`: masked mean over the sentence's rows, L2-normalised [d]."""
        return compiled("mean_pool_l2", 1, seq=x.shape[0], d=self.d, masked=True)(x, mask)[0]

    def embed_ids(self, ids: list[int]) -> np.ndarray:
        """The pooled, L2-normalised embedding [d] of one tokenized sentence."""
        return self.pool(*self.encode(ids))

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.embed_ids(self.tokenize(t)) for t in texts]) if texts \
            else np.zeros((0, self.d), np.float32)
