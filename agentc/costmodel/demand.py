"""What an op asks of a device: `op_demand` turns an op kind and its attributes into a
`Demand` (FLOPs, bytes, network bytes, fixed latency, footprint), before any device is
chosen. Each op's contract (agentc/dialects/ops.py) names its hook here. The module
is past 400 lines because it is the table of those hooks: one short function per op
kind, sharing the transformer-pass helpers at the top.

Attribute contract of the granular op vocabulary (what the IR decomposition emits).
`model` is the ModelSpec passed beside the attrs (the attr itself names it in the IR);
`batch` defaults to 1 everywhere it appears; every other listed attr is required.

    llm.tokenize        {tokens, batch}             host text -> ids, per-token CPU cost
    llm.prefill         {model, tokens, batch}      forward over `tokens` prompt tokens,
                                                    writes their KV; TTFT-bearing
    kv.transfer         {model, tokens, batch}      moves the KV cache of `tokens` tokens
    llm.decode          {model, context, tokens, batch}
                                                    `tokens` autoregressive steps after a
                                                    `context`-token prompt; each step
                                                    streams all weights + the growing KV
    llm.sample          {model, tokens, batch}      softmax/top-p over the vocab per token
    llm.detokenize      {tokens, batch}             ids -> text
    moe.gate_select     {model, tokens, batch}      router GEMV + top-k, every layer
    moe.expert_prefill  {model, tokens, batch}      MoE prefill: attention + the experts
                                                    routed to (all that the tokens touch)
    moe.expert_decode   {model, context, tokens, batch}
                                                    MoE decode: attention + the distinct
                                                    experts a step touches (top_k at batch 1)
    moe.merge           {model, tokens, batch}      weighted sum of top_k expert outputs
    comm.allreduce      {bytes, tp, count?}         `count` (default 1) ring all-reduces
                                                    of `bytes` each over the chassis
                                                    fabric among `tp` devices
    tool.lookup         {latency_ms, payload_bytes} external call: declared latency
    tool.compute        {latency_ms, payload_bytes} (waited, not paid) + payload over the
                                                    device's NIC (paid)
    stt.featurize       {audio_ms}                  16 kHz audio -> log-mel frames
    stt.encode          {model, audio_ms}           speech encoder (pads to the window)
    stt.decode          {model, tokens, audio_ms?}  text decoder with cross-attention
    tts.synthesize      {model, tokens}             text encoder + flow (acoustic frames)
    tts.vocode          {model, audio_ms}           frames -> waveform
    embed.encode        {model, tokens, batch}      bidirectional encoder forward
    embed.pool          {model, tokens, batch}      mean pool + normalise
    retrieve.search     {index_size, dim, k, probe_fraction?, dtype?}
                                                    exhaustive (or probed) inner-product scan
    memory.read         {bytes, latency_ms}         remote store round trip (waited, not
                                                    paid) + payload
    memory.write        {bytes, latency_ms}
    observe.append      {bytes}                     append to the observation log
    compute.cpu         {cost_ms} or {flops}        general compute, declared cost
                        (+ bytes (read), bytes_written)

A forward op (prefill, decode, their MoE forms, stt.encode/decode, embed.encode) may
carry `tp`: it was sharded by the decomposition, which then emits the all-reduces as
explicit comm.allreduce ops; op_cost then uses that degree and leaves the sync term
out, so nothing is counted twice. Without the attr the caller's `tp` argument applies
and the all-reduces are priced inside the op. Attrs not listed (label, call, model
name, tool, store, ...) are ignored; an attr given as None counts as absent.

Conventions: FLOPs count a multiply-add as 2. The Demand totals of a decode step count
the whole weight footprint (the paper's roofline); its kernels (costmodel.layers), which
set the time, gather only the input-embedding rows they use. Tensor parallelism (Megatron style)
divides FLOPs, weight bytes and KV (sharded by KV head, at most kv_heads ways) by `tp`
and adds two all-reduces of the activations per layer per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from agentc.catalog import ModelSpec, bytes_per_elem
from agentc.diagnostics import SourceLoc, VerifyError
from agentc.dialects.ops import DECODE_KINDS, OPS, PREFILL_KINDS, SPLITTABLE, WAITING_KINDS, kv_cache_bytes
from agentc.dialects.ops import KINDS as OPS_KINDS

from .layers import allreduces_per_pass, pass_kernels

TOKENIZE_US_PER_TOKEN = 1.0  # fast BPE tokenizers: ~1 M tokens/s per core
DETOKENIZE_US_PER_TOKEN = 0.5
OBSERVE_APPEND_US = 5.0  # one buffered log append
MEL_FLOPS_PER_FRAME = 50_000  # 400-point FFT + 80-bin mel filter bank per 10 ms hop
MEL_HOP_MS = 10.0
AUDIO_SAMPLE_RATE_HZ = 16_000
VOCODER_LAUNCHES = 20  # upsampling stages x residual blocks, fused


class CostModelError(VerifyError):
    """An op the cost model cannot price: unknown kind, missing attr, no model."""


@dataclass(frozen=True)
class Demand:
    """What one op asks of a device, before any device is chosen (at tp = 1).

    bytes_read/bytes_written are memory traffic; of that traffic, `weight_bytes` (weights
    streamed) and `kv_bytes` (KV cache read + written) shard under tensor parallelism.
    `memory_bytes` is the resident footprint at the op's peak, of which
    `sharded_memory_bytes` (weights + KV) shards. `steps` sequential forward passes
    share these totals evenly; `launches` kernel launches cost the device's launch_us;
    `kernels`, when
    given, are the step's kernel launches (costmodel.layers): each is priced on its own
    roof with its own fixed cost, and `launches` is then informational. `static_ms` is device-independent work that keeps the device busy (host work);
    `wait_ms` is time spent waiting on someone else (a tool's API latency, a remote
    store's round trip): it adds to latency but not to occupancy, so it is not paid for
    and does not count towards replicas under load (one host holds many calls in flight).
    """

    flops: float = 0.0
    dtype: str = "fp32"
    bytes_read: float = 0.0
    bytes_written: float = 0.0
    net_bytes: float = 0.0
    static_ms: float = 0.0
    wait_ms: float = 0.0
    memory_bytes: float = 0.0
    weight_bytes: float = 0.0
    kv_bytes: float = 0.0
    sharded_memory_bytes: float = 0.0
    kv_shards: int = 1
    launches: int = 0
    steps: int = 1
    allreduce_bytes: float = 0.0
    allreduces_per_step: int = 0
    host_side: bool = False
    kernels: tuple = ()  # layers.Kernel of one mean step; when set, they price the time


    @property
    def memory_traffic(self) -> float:
        return self.bytes_read + self.bytes_written

    def traffic_at(self, tp: int) -> float:
        """Memory bytes one of `tp` devices moves."""
        kv_split = min(tp, self.kv_shards)
        rest = self.memory_traffic - self.weight_bytes - self.kv_bytes
        return rest + self.weight_bytes / tp + self.kv_bytes / kv_split

    def footprint_at(self, tp: int) -> float:
        return self.memory_bytes - self.sharded_memory_bytes + self.sharded_memory_bytes / tp


# --------------------------------------------------------------------------- attributes

_MISSING = object()


def _attr(kind: str, attrs: Mapping[str, Any], key: str, default: Any = _MISSING, loc: SourceLoc | None = None) -> float:
    if attrs.get(key) is None:
        if default is _MISSING:
            raise CostModelError(f"'{kind}' needs attribute '{key}'", loc)
        return default
    value = attrs[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise CostModelError(f"'{kind}' attribute '{key}' must be a non-negative number, got {value!r}", loc)
    return value


def _need_model(kind: str, model: ModelSpec | None, loc: SourceLoc | None, *kinds: str) -> ModelSpec:
    if model is None:
        raise CostModelError(f"'{kind}' needs a model", loc)
    if kinds and model.kind not in kinds:
        raise CostModelError(f"'{kind}' needs {'an' if kinds[0][0] in 'aeious' else 'a'} {' or '.join(kinds)} model; "
                             f"'{model.name}' is {model.kind}", loc)
    return model


# --------------------------------------------------------------------------- transformer passes

def _experts_touched(model: ModelSpec, routed_tokens: float) -> float:
    """Expected distinct experts hit when `routed_tokens` tokens each pick top_k."""
    if model.experts == 1:
        return 1.0
    return model.experts * (1 - (1 - model.top_k / model.experts) ** max(routed_tokens, 1))


def _forward(model: ModelSpec, new: float, context: float, batch: float, *, causal: bool,
             head_tokens: float, include_router: bool = True) -> dict[str, float]:
    """One forward pass of `batch` sequences, `new` tokens each, after `context` cached
    tokens: FLOPs, weights streamed, KV read/written, activation traffic."""
    bpe = model.bytes_per_elem
    d, L = model.d_model, model.layers
    tokens = batch * new
    router = model.router_params if include_router else 0
    per_token_linear = model.attn_params + model.top_k * model.expert_params + router
    linear = 2 * tokens * L * per_token_linear
    if causal:
        attended = new * context + new * (new + 1) / 2
    else:
        attended = new * (context + new)
    attention = 4 * d * L * batch * attended
    head = 2 * head_tokens * model.vocab * d if model.kind in ("decoder", "stt") else 0
    touched = _experts_touched(model, tokens)
    untouched = L * (model.experts - touched) * model.expert_params
    if not include_router:
        untouched += L * model.router_params
    weights = (model.param_count - untouched) * bpe
    kv_per_token = kv_cache_bytes(model, 1, 1)
    kv_read = kv_per_token * batch * context
    kv_written = kv_per_token * tokens if model.kind in ("decoder", "stt") else 0
    activations = 2 * L * tokens * (d + model.ffn) * bpe
    return dict(flops=linear + attention + head, weights=weights, kv_read=kv_read, kv_written=kv_written,
                activations=activations, allreduce=tokens * d * bpe)


def _llm_demand(kind: str, model: ModelSpec, new: float, context: float, batch: float, steps: int,
                *, causal: bool = True, include_router: bool = True) -> Demand:
    """`steps` forward passes; pass s sees context + s tokens (decode) or is one pass."""
    bpe = model.bytes_per_elem
    step_new, step_ctx = (new, context) if steps == 1 else (1, context + (steps - 1) / 2)
    kernels = tuple(pass_kernels(model, step_new, step_ctx, batch, causal=causal, head_tokens=batch,
                                 include_router=include_router))
    if steps == 1:
        f = _forward(model, new, context, batch, causal=causal, head_tokens=batch, include_router=include_router)
        flops, kv_read, kv_written, acts = f["flops"], f["kv_read"], f["kv_written"], f["activations"]
        peak_ctx = context + new
    else:
        # Every quantity is linear in the context, so the mean step (context + (steps-1)/2)
        # times `steps` gives the exact totals.
        mid = _forward(model, 1, context + (steps - 1) / 2, batch, causal=causal, head_tokens=batch,
                       include_router=include_router)
        flops, kv_read, kv_written, acts = (steps * mid[k] for k in ("flops", "kv_read", "kv_written", "activations"))
        f = mid
        peak_ctx = context + steps
    weights = f["weights"] * steps
    kv_resident = kv_cache_bytes(model, peak_ctx, batch) if model.kind in ("decoder", "stt") else 0
    # Live activations of one block plus the fp32 logits of the sampled positions.
    scratch = batch * (new if steps == 1 else 1) * 2 * max(model.d_model, model.ffn) * bpe + batch * model.vocab * 4
    return Demand(flops=flops, dtype=model.dtype, bytes_read=weights + kv_read + acts / 2,
                  bytes_written=kv_written + acts / 2, weight_bytes=weights, kv_bytes=kv_read + kv_written,
                  memory_bytes=model.weight_bytes + kv_resident + scratch,
                  sharded_memory_bytes=model.weight_bytes + kv_resident, kv_shards=model.kv_heads,
                  launches=int(steps * sum(k.count for k in kernels)), steps=steps, allreduce_bytes=f["allreduce"],
                  allreduces_per_step=allreduces_per_pass(model), kernels=kernels)


# --------------------------------------------------------------------------- op kinds

def _tokenize(kind, attrs, model, loc, per_token_us):
    tokens = _attr(kind, attrs, "tokens", loc=loc) * _attr(kind, attrs, "batch", 1, loc)
    return Demand(static_ms=tokens * per_token_us / 1e3, bytes_read=tokens * 4, bytes_written=tokens * 4,
                  launches=1, host_side=True)


def _prefill(kind, attrs, model, loc):
    m = _need_model(kind, model, loc, "decoder")
    return _llm_demand(kind, m, _attr(kind, attrs, "tokens", loc=loc), 0, _attr(kind, attrs, "batch", 1, loc), 1,
                       include_router=kind == "llm.prefill")


def _decode(kind, attrs, model, loc):
    m = _need_model(kind, model, loc, "decoder")
    steps = int(_attr(kind, attrs, "tokens", loc=loc))
    if steps < 1:
        raise CostModelError(f"'{kind}' needs tokens >= 1", loc)
    return _llm_demand(kind, m, 1, _attr(kind, attrs, "context", loc=loc), _attr(kind, attrs, "batch", 1, loc),
                       steps, include_router=kind == "llm.decode")


def _kv_transfer(kind, attrs, model, loc):
    m = _need_model(kind, model, loc)
    nbytes = kv_cache_bytes(m, _attr(kind, attrs, "tokens", loc=loc), _attr(kind, attrs, "batch", 1, loc))
    return Demand(dtype=m.dtype, bytes_read=nbytes, net_bytes=nbytes, kv_bytes=nbytes, kv_shards=m.kv_heads,
                  memory_bytes=nbytes, sharded_memory_bytes=nbytes, launches=1)


def _sample(kind, attrs, model, loc):
    m = _need_model(kind, model, loc)
    steps = max(1, int(_attr(kind, attrs, "tokens", loc=loc)))
    rows = steps * _attr(kind, attrs, "batch", 1, loc)
    return Demand(flops=5 * m.vocab * rows, dtype="fp32", bytes_read=4 * m.vocab * rows, bytes_written=8 * rows,
                  memory_bytes=4 * m.vocab * rows / steps, launches=steps, steps=steps)


def _gate_select(kind, attrs, model, loc):
    m = _need_model(kind, model, loc, "decoder")
    tokens = _attr(kind, attrs, "tokens", loc=loc) * _attr(kind, attrs, "batch", 1, loc)
    bpe = m.bytes_per_elem
    router = m.layers * m.d_model * max(m.experts, 1)
    return Demand(flops=2 * tokens * router + tokens * m.layers * m.experts * 4, dtype=m.dtype,
                  bytes_read=router * bpe + tokens * m.layers * m.d_model * bpe,
                  bytes_written=tokens * m.layers * m.top_k * 8, weight_bytes=router * bpe,
                  memory_bytes=router * bpe, sharded_memory_bytes=router * bpe, launches=m.layers)


def _merge(kind, attrs, model, loc):
    m = _need_model(kind, model, loc, "decoder")
    tokens = _attr(kind, attrs, "tokens", loc=loc) * _attr(kind, attrs, "batch", 1, loc)
    bpe = m.bytes_per_elem
    per_layer = tokens * m.d_model
    return Demand(flops=2 * m.top_k * per_layer * m.layers, dtype=m.dtype,
                  bytes_read=m.top_k * per_layer * m.layers * bpe, bytes_written=per_layer * m.layers * bpe,
                  memory_bytes=(m.top_k + 1) * per_layer * bpe, launches=m.layers)


def _allreduce(kind, attrs, model, loc):
    nbytes = _attr(kind, attrs, "bytes", loc=loc)
    group = int(_attr(kind, attrs, "tp", loc=loc))
    if group < 1:
        raise CostModelError(f"'{kind}' needs tp >= 1", loc)
    count = int(_attr(kind, attrs, "count", 1, loc))
    return Demand(bytes_read=count * nbytes, bytes_written=count * nbytes, memory_bytes=2 * nbytes,
                  allreduce_bytes=nbytes, allreduces_per_step=count, launches=count)


def _tool(kind, attrs, model, loc):
    return Demand(wait_ms=_attr(kind, attrs, "latency_ms", loc=loc),
                  net_bytes=_attr(kind, attrs, "payload_bytes", 0, loc), launches=1, host_side=True)


def _featurize(kind, attrs, model, loc):
    audio_ms = _attr(kind, attrs, "audio_ms", loc=loc)
    frames = audio_ms / MEL_HOP_MS
    mel = model.mel_bins if model is not None and model.mel_bins else 80
    samples = audio_ms / 1e3 * AUDIO_SAMPLE_RATE_HZ
    return Demand(flops=frames * MEL_FLOPS_PER_FRAME, dtype="fp32", bytes_read=samples * 4,
                  bytes_written=frames * mel * 4, memory_bytes=samples * 4 + frames * mel * 4, launches=1)


def _stt_frames(model: ModelSpec, audio_ms: float) -> float:
    if model.window_ms:
        audio_ms = max(1, math.ceil(audio_ms / model.window_ms)) * model.window_ms
    return model.audio_frames_per_s * audio_ms / 1e3


def _stt_encode(kind, attrs, model, loc):
    m = _need_model(kind, model, loc, "stt")
    frames = _stt_frames(m, _attr(kind, attrs, "audio_ms", loc=loc))
    d, bpe = m.d_model, m.bytes_per_elem
    conv = 2 * (2 * frames) * 3 * m.mel_bins * d + 2 * frames * 3 * d * d
    linear = 2 * frames * m.encoder_layers * (m.encoder_layer_params - 2 * d)
    attention = 4 * d * m.encoder_layers * frames * frames
    weights = (m.encoder_layers * m.encoder_layer_params + m.conv_frontend_params) * bpe
    acts = 2 * m.encoder_layers * frames * (d + m.ffn) * bpe
    return Demand(flops=conv + linear + attention, dtype=m.dtype, bytes_read=weights + acts / 2,
                  bytes_written=acts / 2, weight_bytes=weights, memory_bytes=m.weight_bytes + frames * m.ffn * bpe * 2,
                  sharded_memory_bytes=m.weight_bytes, launches=m.encoder_layers + 2,
                  allreduce_bytes=frames * d * bpe, allreduces_per_step=2 * m.encoder_layers)


def _stt_decode(kind, attrs, model, loc):
    m = _need_model(kind, model, loc, "stt")
    steps = max(1, int(_attr(kind, attrs, "tokens", loc=loc)))
    frames = _stt_frames(m, _attr(kind, attrs, "audio_ms", m.window_ms or 30_000, loc))
    d, L, bpe = m.d_model, m.layers, m.bytes_per_elem
    cross_kv = 2 * L * frames * d * bpe
    # Cross-attention K/V are projected once from the encoder output; then each step
    # runs the decoder over one token, reading the weights, cross K/V and its own KV.
    project = 2 * frames * L * 2 * d * d
    mid_ctx = (steps - 1) / 2
    per_step_linear = 2 * L * (m.layer_params - 2 * d * d) + 2 * m.vocab * d
    per_step_attn = 4 * d * L * (mid_ctx + 1 + frames)
    decoder_weights = (L * m.layer_params + m.vocab * d + m.position_embeddings * d) * bpe
    self_kv = kv_cache_bytes(m, mid_ctx + 1, 1)
    return Demand(flops=project + steps * (per_step_linear + per_step_attn), dtype=m.dtype,
                  bytes_read=steps * (decoder_weights + cross_kv + self_kv), bytes_written=cross_kv + steps * 2 * L * d * bpe,
                  weight_bytes=steps * decoder_weights, kv_bytes=steps * (cross_kv + self_kv) + cross_kv,
                  memory_bytes=m.weight_bytes + cross_kv + kv_cache_bytes(m, steps, 1),
                  sharded_memory_bytes=m.weight_bytes + cross_kv + kv_cache_bytes(m, steps, 1), kv_shards=m.kv_heads,
                  launches=steps * (L + 1), steps=steps, allreduce_bytes=d * bpe, allreduces_per_step=2 * L)


def _tts_synthesize(kind, attrs, model, loc):
    m = _need_model(kind, model, loc, "tts")
    tokens = _attr(kind, attrs, "tokens", loc=loc)
    frames = tokens * m.frames_per_token
    f = _forward(m, tokens, 0, 1, causal=False, head_tokens=0)
    flow = 2 * m.flow_params * frames
    weights = (m.param_count - m.vocoder_params) * m.bytes_per_elem
    return Demand(flops=f["flops"] + flow, dtype=m.dtype, bytes_read=weights + f["activations"] / 2,
                  bytes_written=f["activations"] / 2 + frames * m.d_model * m.bytes_per_elem, weight_bytes=weights,
                  memory_bytes=m.weight_bytes + frames * m.d_model * m.bytes_per_elem * 4,
                  launches=m.layers + 8)


def _tts_vocode(kind, attrs, model, loc):
    m = _need_model(kind, model, loc, "tts")
    audio_s = _attr(kind, attrs, "audio_ms", loc=loc) / 1e3
    samples = audio_s * m.sample_rate_hz
    weights = m.vocoder_params * m.bytes_per_elem
    return Demand(flops=m.vocoder_gflop_per_audio_s * 1e9 * audio_s, dtype=m.dtype, bytes_read=weights,
                  bytes_written=samples * 4, weight_bytes=weights, memory_bytes=m.weight_bytes + samples * 4 * 8,
                  launches=VOCODER_LAUNCHES)


def _embed_encode(kind, attrs, model, loc):
    m = _need_model(kind, model, loc, "encoder")
    return _llm_demand(kind, m, _attr(kind, attrs, "tokens", loc=loc), 0, _attr(kind, attrs, "batch", 1, loc), 1,
                       causal=False)


def _embed_pool(kind, attrs, model, loc):
    m = _need_model(kind, model, loc, "encoder")
    rows = _attr(kind, attrs, "tokens", loc=loc) * _attr(kind, attrs, "batch", 1, loc)
    bpe = m.bytes_per_elem
    return Demand(flops=rows * m.d_model + 3 * m.d_model, dtype=m.dtype, bytes_read=rows * m.d_model * bpe,
                  bytes_written=m.d_model * bpe, memory_bytes=rows * m.d_model * bpe, launches=1)


def _search(kind, attrs, model, loc):
    n = _attr(kind, attrs, "index_size", loc=loc)
    dim = _attr(kind, attrs, "dim", loc=loc)
    k = max(1, _attr(kind, attrs, "k", loc=loc))
    scanned = n * min(1.0, _attr(kind, attrs, "probe_fraction", 1.0, loc))
    dtype = attrs.get("dtype", "fp32")
    bpe = bytes_per_elem(dtype)
    # Sharded over tp devices (an index too big for one, annotate_cost): each holds and
    # scans 1/tp of it (the index counts as sharded weights), then the tp top-k lists
    # (id and score, 8 bytes each) are merged by one collective over the fabric.
    return Demand(flops=2 * scanned * dim + scanned * math.log2(k + 1), dtype=dtype,
                  bytes_read=scanned * dim * bpe, bytes_written=k * 8, memory_bytes=n * dim * bpe, launches=2,
                  weight_bytes=scanned * dim * bpe, sharded_memory_bytes=n * dim * bpe,
                  allreduce_bytes=k * 8, allreduces_per_step=1)


def _memory_rw(kind, attrs, model, loc):
    nbytes = _attr(kind, attrs, "bytes", loc=loc)
    read = kind == "memory.read"
    return Demand(wait_ms=_attr(kind, attrs, "latency_ms", 0, loc), net_bytes=nbytes,
                  bytes_read=nbytes if not read else 0, bytes_written=nbytes if read else 0,
                  memory_bytes=nbytes, launches=1, host_side=True)


def _observe(kind, attrs, model, loc):
    nbytes = _attr(kind, attrs, "bytes", loc=loc)
    return Demand(static_ms=OBSERVE_APPEND_US / 1e3, bytes_read=nbytes, bytes_written=nbytes,
                  memory_bytes=nbytes, host_side=True)


def _compute_cpu(kind, attrs, model, loc):
    if "cost_ms" in attrs:
        return Demand(static_ms=_attr(kind, attrs, "cost_ms", loc=loc), launches=1, host_side=True)
    if "flops" in attrs:
        return Demand(flops=_attr(kind, attrs, "flops", loc=loc), dtype="fp32",
                      bytes_read=_attr(kind, attrs, "bytes", 0, loc),
                      bytes_written=_attr(kind, attrs, "bytes_written", 0, loc), launches=1, host_side=True)
    raise CostModelError(f"'{kind}' needs attribute 'cost_ms' or 'flops'", loc)


# Demand hooks by name; each op's contract (agentc.dialects.ops.OPS) names its hook, its
# phase, whether it waits and whether tensor parallelism shards it.
_DEMAND = {
    "tokenize": lambda k, a, m, l: _tokenize(k, a, m, l, TOKENIZE_US_PER_TOKEN),
    "detokenize": lambda k, a, m, l: _tokenize(k, a, m, l, DETOKENIZE_US_PER_TOKEN),
    "prefill": _prefill,
    "kv_transfer": _kv_transfer,
    "decode": _decode,
    "sample": _sample,
    "gate_select": _gate_select,
    "merge": _merge,
    "allreduce": _allreduce,
    "tool": _tool,
    "featurize": _featurize,
    "stt_encode": _stt_encode,
    "stt_decode": _stt_decode,
    "tts_synthesize": _tts_synthesize,
    "tts_vocode": _tts_vocode,
    "embed_encode": _embed_encode,
    "embed_pool": _embed_pool,
    "search": _search,
    "memory": _memory_rw,
    "observe": _observe,
    "compute_cpu": _compute_cpu,
}
KINDS: tuple[str, ...] = OPS_KINDS
_PREFILL_KINDS = PREFILL_KINDS
_DECODE_KINDS = DECODE_KINDS
# Kinds that mostly wait on someone else (an API, a remote store): a measured latency for
# them is waiting, and only an explicit price in the profile (an API fee) is paid.
_WAITING_KINDS = WAITING_KINDS


def op_demand(kind: str, attrs: Mapping[str, Any], model: ModelSpec | None = None,
              loc: SourceLoc | None = None) -> Demand:
    """The resource demand of one granular op (see the module docstring for attrs)."""
    try:
        fn = _DEMAND[OPS[kind].demand]
    except KeyError:
        raise CostModelError(f"the cost model has no op kind '{kind}'", loc,
                             (f"known kinds: {', '.join(KINDS)}",)) from None
    return fn(kind, attrs, model, loc)


def supports_tp(kind: str) -> bool:
    """Whether tensor parallelism applies to this kind (tp > 1 is refused otherwise)."""
    return kind in SPLITTABLE
