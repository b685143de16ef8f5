"""A Llama-architecture decoder over agentc's compiled kernels: `llm.prefill`,
`llm.decode` and `llm.sample` at run time.

Split of the work (why): the token embedding (a row gather), the RoPE tables (computed
once from the model's theta, in float64) and the KV cache buffers live here in numpy.
Every layer runs in the compiled `prefill_layer` / `decode_step` kernels (RMSNorm,
RoPE, grouped-query attention with a causal mask, SwiGLU), and the final norm, LM head
and the draw of the next token run in the compiled `sample` kernel
(agentc.codegen.kernels).

Shapes are bucketed, lengths are run-time values: a prompt of n tokens runs in the
`prefill_layer` kernel of the smallest power-of-two rows >= n (at least
MIN_PREFILL_BUCKET, at most the model's max context), zero rows after it; the causal
mask keeps those rows out of the real ones, and a row's result does not depend on the
bucket (bit for bit; test_run_decoder.py checks 16 against 64 rows). A decode step at position p runs in the `decode_step` kernel of
the smallest power-of-two cache rows >= p (at least MIN_BUCKET), with a mask argument
(1.0 for the p rows written, 0.0 after) that hides the rest. So a model compiles about
log2(max context) kernels of each kind, at first use (`agentc.runtime.kernels`, so a
trace shows the compiles), and keeps them for the process.

Interface (stable; `agentc run` uses it):
    spec = DecoderSpec(d_model, layers, heads, kv_heads, ffn, vocab, rope_theta,
                       norm_eps, max_context)       # or DecoderSpec.from_hf_config(dict)
    dec = Decoder(spec, weights)     # weights: Hugging Face Llama names -> numpy arrays
    state = dec.prefill(ids)         # a DecodeState: the KV cache after the prompt
    dec.step(state, token)           # appends one token to the state
    dec.logits(state)                # float32 [vocab]: next-token logits
    dec.next_token(state, sampler)   # (token id, logits) drawn by a sampling.Sampler
    dec.generate(prompt_ids, max_new, sampler=None, stop=()) -> list[int]
Bad weights raise WeightsError naming the tensor; bad ids or lengths raise UsageError.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from agentc.codegen.emit import RMS_EPS
from agentc.codegen.jit import JitKernel
from agentc.diagnostics import UsageError, WeightsError
from agentc.runtime.kernels import compiled
from agentc.runtime.sampling import Sampler, greedy

MIN_BUCKET = 64
# Prefill's work grows with its rows (decode's, over a masked cache, hardly does), so short
# prompts get smaller kernels: a 16-token prompt took 6.0 ms in 64 rows and 1.7 ms in 16
# (the d256, 2-layer model of benchmarks/bench_run.py), for one compile more.
MIN_PREFILL_BUCKET = 16

# Per layer, under `model.layers.N.`: the Hugging Face name in the kernels' weight
# order, and whether it is an nn.Linear ([out, in], transposed to the kernels' [in, out]).
_LAYER_TENSORS = (
    ("input_layernorm.weight", False), ("self_attn.q_proj.weight", True),
    ("self_attn.k_proj.weight", True), ("self_attn.v_proj.weight", True),
    ("self_attn.o_proj.weight", True), ("post_attention_layernorm.weight", False),
    ("mlp.gate_proj.weight", True), ("mlp.up_proj.weight", True), ("mlp.down_proj.weight", True),
)


@dataclass(frozen=True)
class DecoderSpec:
    """The sizes of a Llama-architecture model (Hugging Face `LlamaConfig` fields)."""

    d_model: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    rope_theta: float = 10000.0
    norm_eps: float = RMS_EPS
    max_context: int = 2048

    def __post_init__(self):
        sizes = {n: getattr(self, n) for n in ("d_model", "layers", "heads", "kv_heads", "ffn", "vocab",
                                                "max_context")}
        bad = [f"{n}={v}" for n, v in sizes.items() if int(v) != v or v < 1]
        if bad or self.d_model % self.heads or self.heads % self.kv_heads or self.head_dim % 2:
            raise UsageError("decoder: need positive sizes, heads | d_model, kv_heads | heads and an "
                             f"even head dim; got {self}" + (f" ({', '.join(bad)})" if bad else ""))
        if not (self.rope_theta > 0 and self.norm_eps > 0):
            raise UsageError(f"decoder: rope_theta and norm_eps must be > 0, got {self}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @classmethod
    def from_hf_config(cls, config: dict) -> DecoderSpec:
        """From a Hugging Face `config.json` of a Llama model. Variants the kernels do not
        compute (scaled RoPE, a head dim other than hidden_size / heads) are refused
        rather than run wrong."""
        if config.get("rope_scaling"):
            raise WeightsError(f"decoder config: rope_scaling {config['rope_scaling']} is not supported")
        heads = config.get("num_attention_heads")
        if config.get("head_dim") and heads and config["head_dim"] * heads != config.get("hidden_size"):
            raise WeightsError(f"decoder config: head_dim {config['head_dim']} is not hidden_size / "
                               "num_attention_heads")
        try:
            heads = int(config["num_attention_heads"])
            return cls(d_model=int(config["hidden_size"]), layers=int(config["num_hidden_layers"]),
                       heads=heads, kv_heads=int(config.get("num_key_value_heads") or heads),
                       ffn=int(config["intermediate_size"]), vocab=int(config["vocab_size"]),
                       rope_theta=float(config.get("rope_theta", 10000.0)),
                       norm_eps=float(config.get("rms_norm_eps", RMS_EPS)),
                       max_context=int(config.get("max_position_embeddings", 2048)))
        except KeyError as missing:
            raise WeightsError(f"decoder config: no {missing} field") from None


def bucket(n: int, cap: int, least: int = MIN_BUCKET) -> int:
    """The kernel rows for n: the smallest power of two >= max(n, least), at most cap."""
    rows = least
    while rows < n:
        rows *= 2
    return min(rows, cap)


@dataclass
class DecodeState:
    """One sequence: its KV cache (per layer, rows [0, length) written) and the last
    position's hidden state (before the final norm)."""

    k_cache: list[np.ndarray]
    v_cache: list[np.ndarray]
    length: int
    hidden: np.ndarray


class Decoder:
    """Runs a Llama model's prefill, decode steps and sampling in compiled kernels."""

    def __init__(self, spec: DecoderSpec, weights: dict[str, np.ndarray], *, threads: int = 1):
        self.spec, self.threads = spec, threads
        d, kvd, ffn = spec.d_model, spec.kv_dim, spec.ffn
        shapes = {"input_layernorm.weight": (d,), "self_attn.q_proj.weight": (d, d),
                  "self_attn.k_proj.weight": (kvd, d), "self_attn.v_proj.weight": (kvd, d),
                  "self_attn.o_proj.weight": (d, d), "post_attention_layernorm.weight": (d,),
                  "mlp.gate_proj.weight": (ffn, d), "mlp.up_proj.weight": (ffn, d),
                  "mlp.down_proj.weight": (d, ffn)}
        self.embed = _take(weights, "model.embed_tokens.weight", (spec.vocab, d))
        self.layers = [tuple(_take(weights, f"model.layers.{n}.{name}", shapes[name], linear)
                             for name, linear in _LAYER_TENSORS) for n in range(spec.layers)]
        self.final_norm = _take(weights, "model.norm.weight", (d,))
        # Tied embeddings (no lm_head.weight) reuse the embedding matrix, as HF does.
        head = "lm_head.weight" if "lm_head.weight" in weights else "model.embed_tokens.weight"
        self.lm_head = _take(weights, head, (spec.vocab, d), linear=True)
        hd = spec.head_dim
        inv_freq = spec.rope_theta ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
        angles = np.outer(np.arange(spec.max_context, dtype=np.float64), inv_freq)
        self.cos = np.ascontiguousarray(np.cos(angles), dtype=np.float32)
        self.sin = np.ascontiguousarray(np.sin(angles), dtype=np.float32)

    def _kernel(self, kind: str, **args) -> JitKernel:
        s = self.spec
        if kind != "sample":
            args.update(heads=s.heads, kv_heads=s.kv_heads, ffn=s.ffn)
        return compiled(kind, self.threads, d_model=s.d_model, eps=s.norm_eps, **args)

    def _check_ids(self, ids: Iterable[int]) -> list[int]:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.spec.vocab]
        if bad:
            raise UsageError(f"decoder: token id {bad[0]} is outside the vocabulary (0..{self.spec.vocab - 1})")
        return ids

    def prefill(self, ids: Sequence[int]) -> DecodeState:
        """Run the prompt through every layer; the state holds its KV cache."""
        ids = self._check_ids(ids)
        n, cap = len(ids), self.spec.max_context
        if not 1 <= n <= cap:
            raise UsageError(f"decoder: a prompt needs 1 to {cap} tokens, got {n}")
        rows = bucket(n, cap, MIN_PREFILL_BUCKET)
        kernel = self._kernel("prefill_layer", seq=rows)
        x = np.zeros((rows, self.spec.d_model), np.float32)
        x[:n] = self.embed[ids]
        size = bucket(n + 1, cap)
        state = DecodeState([], [], n, x[n - 1])
        for weights in self.layers:
            x, k, v = kernel(x, self.cos[:rows], self.sin[:rows], *weights)
            for cache, new in ((state.k_cache, k), (state.v_cache, v)):
                cache.append(np.zeros((size, self.spec.kv_dim), np.float32))
                cache[-1][:n] = new[:n]
        state.hidden = x[n - 1].copy()
        return state

    def step(self, state: DecodeState, token: int) -> DecodeState:
        """Append `token` at position state.length: every layer's decode step, its K/V
        written into the cache. Returns the same (updated) state."""
        (token,) = self._check_ids([token])
        pos, cap = state.length, self.spec.max_context
        if pos >= cap:
            raise UsageError(f"decoder: the context is full ({cap} tokens)")
        rows = bucket(pos, cap)
        if state.k_cache[0].shape[0] <= pos:   # grow to the next bucket
            size = bucket(pos + 1, cap)
            for cache in (state.k_cache, state.v_cache):
                for i, old in enumerate(cache):
                    cache[i] = np.zeros((size, old.shape[1]), np.float32)
                    cache[i][:pos] = old[:pos]
        kernel = self._kernel("decode_step", context=rows)
        mask = (np.arange(rows) < pos).astype(np.float32)
        x = self.embed[token]
        for weights, k_cache, v_cache in zip(self.layers, state.k_cache, state.v_cache):
            x, k_new, v_new = kernel(x, self.cos[pos], self.sin[pos], *weights,
                                     k_cache[:rows], v_cache[:rows], mask)
            k_cache[pos], v_cache[pos] = k_new, v_new
        state.length, state.hidden = pos + 1, x
        return state

    def next_token(self, state: DecodeState, sampler: Sampler) -> tuple[int, np.ndarray]:
        """(the next token drawn by `sampler`, the logits [vocab] it was drawn from)."""
        kernel = self._kernel("sample", vocab=self.spec.vocab, k=sampler.top_k)
        token, logits, _probs, _ids = kernel(state.hidden, self.final_norm, self.lm_head, sampler.params())
        return int(token[0]), logits

    def logits(self, state: DecodeState) -> np.ndarray:
        """The next-token logits [vocab] after the state's last token."""
        return self.next_token(state, greedy())[1]

    def generate(self, prompt_ids: Sequence[int], max_new: int, sampler: Sampler | None = None,
                 stop: Iterable[int] = ()) -> list[int]:
        """Up to `max_new` tokens after the prompt (greedy unless `sampler` says), ending
        early after a token in `stop` (which is returned)."""
        sampler = sampler or greedy()
        stop = set(stop)
        if len(prompt_ids) + max_new - 1 > self.spec.max_context:
            raise UsageError(f"decoder: {len(prompt_ids)} prompt tokens + {max_new} new ones exceed "
                             f"the context of {self.spec.max_context}")
        state = self.prefill(prompt_ids)
        out: list[int] = []
        for _ in range(max_new):
            token = self.next_token(state, sampler)[0]
            out.append(token)
            if token in stop or len(out) == max_new:
                break
            self.step(state, token)
        return out


def _take(weights: dict[str, np.ndarray], name: str, shape: tuple[int, ...],
          linear: bool = False) -> np.ndarray:
    """The tensor `name`, checked, as contiguous float32 in the kernels' layout."""
    arr = weights.get(name)
    if arr is None:
        raise WeightsError(f"decoder weights: tensor '{name}' is missing")
    arr = np.asarray(arr)
    if tuple(arr.shape) != shape:
        raise WeightsError(f"decoder weights: tensor '{name}' has shape {list(arr.shape)}, "
                           f"expected {list(shape)}")
    if arr.dtype.kind != "f":
        raise WeightsError(f"decoder weights: tensor '{name}' has dtype {arr.dtype}, expected a float type")
    return np.ascontiguousarray(arr.T if linear else arr, dtype=np.float32)
