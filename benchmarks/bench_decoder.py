"""Decoder tokens per second: agentc's compiled CPU kernels vs numpy, one run.

Both sides generate the same greedy tokens from a seeded Llama-architecture checkpoint
(Hugging Face names and layouts, f32) after the same prompt:

- agentc: `agentc.runtime.decoder.Decoder`: the `decode_step` kernel per layer and the
  `sample` kernel (final norm, LM head, argmax), compiled by agentc's CPU pipeline.
- numpy: the same model in f32 numpy with a KV cache (each step attends over the
  cached rows; one `x @ W` per projection), the straightforward baseline a user
  would write; BLAS is pinned to the same thread count (set before numpy loads).

Kernels are compiled and both sides warmed up before timing; the timed part is
`--tokens` decode steps after a prefill (the prefill is not counted). Rounds alternate
between the two sides (best kept), so both see the same background load. The tokens of
the two sides are compared first. Prints tokens/s and the ratio agentc / numpy;
asserts nothing about time. `measure()` returns the figures (benchmarks/bench_run.py
may call it).

    python benchmarks/bench_decoder.py [--threads 1] [--tokens 64] [--rounds 3]
        [--model d_model,layers,heads,kv_heads,ffn,vocab]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tokens", type=int, default=64, help="decode steps timed per round")
    p.add_argument("--prompt", type=int, default=16, help="prompt tokens")
    p.add_argument("--rounds", type=int, default=3, help="timing rounds (best kept)")
    p.add_argument("--model", default="512,4,8,2,1376,32000",
                   help="d_model,layers,heads,kv_heads,ffn,vocab of the seeded checkpoint")
    return p.parse_args()


def _checkpoint(np, d, layers, heads, kv_heads, ffn, vocab, seed=0) -> dict:
    """Seeded weights under Hugging Face Llama names ([out, in] Linear weights)."""
    rng = np.random.default_rng(seed)
    kvd = d // heads * kv_heads

    def linear(out, inp):
        return (rng.standard_normal((out, inp)) / np.sqrt(inp)).astype(np.float32)
    w = {"model.embed_tokens.weight": rng.standard_normal((vocab, d)).astype(np.float32),
         "model.norm.weight": np.ones(d, np.float32), "lm_head.weight": linear(vocab, d)}
    for n in range(layers):
        p = f"model.layers.{n}."
        w.update({p + "input_layernorm.weight": np.ones(d, np.float32),
                  p + "post_attention_layernorm.weight": np.ones(d, np.float32),
                  p + "self_attn.q_proj.weight": linear(d, d), p + "self_attn.k_proj.weight": linear(kvd, d),
                  p + "self_attn.v_proj.weight": linear(kvd, d), p + "self_attn.o_proj.weight": linear(d, d),
                  p + "mlp.gate_proj.weight": linear(ffn, d), p + "mlp.up_proj.weight": linear(ffn, d),
                  p + "mlp.down_proj.weight": linear(d, ffn)})
    return w


class NumpyLlama:
    """The f32 numpy baseline with a KV cache (greedy)."""

    def __init__(self, np, w, layers, heads, kv_heads, theta, eps, max_context):
        self.np, self.heads, self.kv_heads, self.eps = np, heads, kv_heads, eps
        self.embed = w["model.embed_tokens.weight"]
        self.norm, self.head = w["model.norm.weight"], w["lm_head.weight"].T.copy()
        names = ("input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                 "self_attn.o_proj", "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj",
                 "mlp.down_proj")
        self.layers = [[w[f"model.layers.{n}.{name}.weight"] if "layernorm" in name
                        else w[f"model.layers.{n}.{name}.weight"].T.copy() for name in names]
                       for n in range(layers)]
        hd = self.embed.shape[1] // heads
        inv = theta ** (-np.arange(0, hd, 2) / hd)
        ang = np.outer(np.arange(max_context), inv)
        self.cos = np.concatenate([np.cos(ang)] * 2, axis=1).astype(np.float32)
        self.sin = np.concatenate([np.sin(ang)] * 2, axis=1).astype(np.float32)

    def _rms(self, x, g):
        return x / self.np.sqrt((x * x).mean(-1, keepdims=True) + self.eps) * g

    def _rope(self, x, pos):      # x: [seq, heads, hd]
        np = self.np
        half = x.shape[-1] // 2
        rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return x * self.cos[pos][:, None] + rot * self.sin[pos][:, None]

    def forward(self, ids, cache):
        """Append `ids` to `cache` (per layer [k, v] lists); returns the next token."""
        np = self.np
        start = len(cache[0][0]) if cache[0][0] is not None else 0
        pos = np.arange(start, start + len(ids))
        x = self.embed[ids]
        for layer, c in zip(self.layers, cache):
            an, wq, wk, wv, wo, fn, wg, wu, wd = layer
            h = self._rms(x, an)
            hd = x.shape[1] // self.heads
            q = self._rope((h @ wq).reshape(len(ids), self.heads, hd), pos)
            k = self._rope((h @ wk).reshape(len(ids), self.kv_heads, hd), pos)
            v = (h @ wv).reshape(len(ids), self.kv_heads, hd)
            c[0] = k if c[0] is None else np.concatenate([c[0], k])
            c[1] = v if c[1] is None else np.concatenate([c[1], v])
            group = self.heads // self.kv_heads
            keys, vals = np.repeat(c[0], group, axis=1), np.repeat(c[1], group, axis=1)
            # a Python float: numpy 2 promotes f32 / np.float64 to f64, and the f64
            # activations then made every LM head call convert the head to f64 (7x slower)
            s = np.einsum("qhd,khd->hqk", q, keys) / math.sqrt(hd)
            s = np.where(pos[None, :, None] >= np.arange(len(keys))[None, None, :], s, -np.inf)
            p = np.exp(s - s.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            att = np.einsum("hqk,khd->qhd", p, vals).reshape(len(ids), -1)
            x = x + att @ wo
            h2 = self._rms(x, fn)
            g = h2 @ wg
            x = x + (g / (1 + np.exp(-g)) * (h2 @ wu)) @ wd
        return int(np.argmax(self._rms(x[-1], self.norm) @ self.head))


def measure(threads: int = 1, tokens: int = 64, prompt_len: int = 16, rounds: int = 3,
            model=(512, 4, 8, 2, 1376, 32000)) -> dict:
    """Decode tokens/s of agentc's compiled decoder and of the numpy baseline, and the ratio.

    Call before numpy is imported for the BLAS thread pin to hold."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import numpy as np

    from agentc.runtime.decoder import Decoder, DecoderSpec
    from agentc.runtime.sampling import greedy

    d, layers, heads, kv_heads, ffn, vocab = model
    spec = DecoderSpec(d, layers, heads, kv_heads, ffn, vocab, rope_theta=10000.0, norm_eps=1e-5,
                       max_context=prompt_len + tokens + 1)
    weights = _checkpoint(np, d, layers, heads, kv_heads, ffn, vocab)
    decoder = Decoder(spec, weights, threads=threads)
    baseline = NumpyLlama(np, weights, layers, heads, kv_heads, 10000.0, 1e-5, spec.max_context)
    prompt = np.random.default_rng(1).integers(0, vocab, prompt_len).tolist()

    def run_agentc():
        state = decoder.prefill(prompt)
        out = [decoder.next_token(state, greedy())[0]]
        start = time.perf_counter()
        for _ in range(tokens):
            decoder.step(state, out[-1])
            out.append(decoder.next_token(state, greedy())[0])
        return time.perf_counter() - start, out

    def run_numpy():
        cache = [[None, None] for _ in range(layers)]
        out = [baseline.forward(prompt, cache)]
        start = time.perf_counter()
        for _ in range(tokens):
            out.append(baseline.forward([out[-1]], cache))
        return time.perf_counter() - start, out

    compile_start = time.perf_counter()
    _, ours = run_agentc()              # compiles the kernels (each bucket the run meets)
    compile_s = time.perf_counter() - compile_start
    _, theirs = run_numpy()
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for i, fn in enumerate((run_agentc, run_numpy)):
            best[i] = min(best[i], fn()[0])
    agentc_tps, numpy_tps = tokens / best[0], tokens / best[1]
    return {"model": dict(zip(("d_model", "layers", "heads", "kv_heads", "ffn", "vocab"), model)),
            "threads": threads, "tokens": tokens, "same_tokens": ours == theirs,
            "matching_tokens": sum(a == b for a, b in zip(ours, theirs)), "of": len(ours),
            "first_run_s": compile_s, "agentc_tokens_per_s": agentc_tps, "numpy_tokens_per_s": numpy_tps,
            "ratio": agentc_tps / numpy_tps}


def main() -> None:
    args = _parse()
    model = tuple(int(v) for v in args.model.split(","))
    r = measure(args.threads, args.tokens, args.prompt, args.rounds, model)
    print(f"decoder {r['model']} threads={r['threads']}, {r['tokens']} decode steps after a "
          f"{args.prompt}-token prompt")
    print(f"  tokens equal to numpy's: {r['matching_tokens']}/{r['of']}")
    print(f"  agentc  {r['agentc_tokens_per_s']:8.1f} tokens/s   (first run with compiles {r['first_run_s']:.1f} s)")
    print(f"  numpy   {r['numpy_tokens_per_s']:8.1f} tokens/s")
    print(f"  ratio agentc / numpy: {r['ratio']:.2f}x")


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    main()
