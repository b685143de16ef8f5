"""Analytic cost model: time, memory, energy and dollars of one granular op on one device.

The planner needs, for every (op, device class, tensor-parallel degree), how long the op
takes, whether it fits, and what it costs. agentc answers with the paper's roofline
(arXiv 2507.19635, Sec. 3.1):

    t = max_r( demand_r / (peak_r * eff_r) ) + static_latency + comm + sync

with r in {compute, memory, network}. `op_demand` turns an op kind and its attributes
into a `Demand` (FLOPs, bytes, network bytes, fixed latency, footprint); `op_cost`
prices a demand on a `DeviceSpec`. Multi-step ops (decode) are evaluated per step and
multiplied, so the binding resource is the one of a typical step. Measured profiles in a
cluster file (`[[profile]]`) override the analytic numbers for matching op kinds.
Dollars are device time x $/hr (TCO rule, its capex part alone, or the catalog's given
$/hr, per the cluster's `pricing`); the paper's resource-priced form reduces to this
when devices are rented whole. Edge transfers between pools are `transfer_ms` over the cluster's links.

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

A forward op (prefill, decode, their MoE forms, stt.encode/decode, embed.encode) may
carry `tp`: it was sharded by the decomposition, which then emits the all-reduces as
explicit comm.allreduce ops; op_cost then uses that degree and leaves the sync term
out, so nothing is counted twice. Without the attr the caller's `tp` argument applies
and the all-reduces are priced inside the op. Attrs not listed (label, call, model
name, tool, store, ...) are ignored; an attr given as None counts as absent.

Conventions: FLOPs count a multiply-add as 2. Every decode step streams the whole weight
footprint (as the paper's roofline does; the input-embedding rows actually read are a
few KB, so this overstates by one embedding table). Tensor parallelism (Megatron style)
divides FLOPs, weight bytes and KV (sharded by KV head, at most kv_heads ways) by `tp`
and adds two all-reduces of the activations per layer per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping

from agentc.catalog.specs import Cluster, DeviceSpec, Link, ModelSpec, Pool, Profile, bytes_per_elem
from agentc.diagnostics import SourceLoc, VerifyError
from agentc.op_kinds import OP_KINDS

__all__ = [
    "HOURS_PER_MONTH", "KINDS", "CostModelError", "Demand", "OpCost",
    "kv_cache_bytes", "peak_egress_bw", "peak_ingress_bw", "tco_usd_per_hr", "usd_per_hr",
    "op_demand", "op_cost", "batch_sweep", "profiled_cost", "transfer_ms", "transfer_cost", "supports_tp",
]

HOURS_PER_MONTH = 8760 / 12  # 730: financing is monthly, prices are hourly
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
    `static_ms` is device-independent work that keeps the device busy (host work);
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


@dataclass(frozen=True)
class OpCost:
    """The price of one op on one device class at tensor-parallel degree tp.

    Times are milliseconds for the whole op (all steps); `tbt_ms` is the slowest decode
    step (the last one), `ttft_ms` the time to the first token for prefill kinds.
    `usd_per_call` pays for all tp devices for `busy_ms` (time_ms less the wait on
    external parties); `energy_j` assumes TDP over the same time.
    """

    kind: str
    device: str
    tp: int
    time_ms: float
    binding: str
    compute_ms: float = 0.0
    memory_ms: float = 0.0
    network_ms: float = 0.0
    static_ms: float = 0.0
    sync_ms: float = 0.0
    wait_ms: float = 0.0
    memory_bytes: float = 0.0
    fits: bool = True
    energy_j: float = 0.0
    usd_per_call: float = 0.0
    tbt_ms: float | None = None
    ttft_ms: float | None = None
    profiled: bool = False
    host_side: bool = False
    fee_usd: float = 0.0  # of usd_per_call, what is paid per call besides device time

    @property
    def busy_ms(self) -> float:
        """How long the op occupies its devices: what is paid for and sizes replicas."""
        return self.time_ms - self.wait_ms


# --------------------------------------------------------------------------- formulas

def kv_cache_bytes(model: ModelSpec, isl: float, batch: float = 1) -> float:
    """KV cache size (arXiv 2507.19635, Sec. 5.2): 2 * layers * d_model * kv_heads/heads * ISL * BS * BPE."""
    return 2 * model.layers * model.d_model * (model.kv_heads / model.heads) * isl * batch * model.bytes_per_elem


def peak_egress_bw(model: ModelSpec, isl: float, batch: float, ttft_ms: float, n_prefill_devices: int = 1) -> float:
    """Bytes/s each prefill device must send to ship the KV cache within TTFT."""
    return kv_cache_bytes(model, isl, batch) / (ttft_ms / 1e3 * n_prefill_devices)


def peak_ingress_bw(model: ModelSpec, isl: float, batch: float, tbt_ms: float, n_decode_devices: int = 1) -> float:
    """Bytes/s each decode device must receive so the KV transfer fits in one TBT."""
    return kv_cache_bytes(model, isl, batch) / (tbt_ms / 1e3 * n_decode_devices)


def tco_usd_per_hr(device: DeviceSpec, years: float = 4, rate: float = 0.08, usd_per_kwh: float = 0.40) -> float:
    """The paper's TCO rule: capex financed as a monthly annuity over `years` at annual
    `rate`, spread over 730 hours a month (8760/12), plus power at TDP."""
    if device.capex_usd is None:
        raise CostModelError(f"device '{device.name}' has no capex_usd, so no TCO price")
    n = 12 * years
    r = rate / 12
    monthly = device.capex_usd / n if r == 0 else device.capex_usd * r / (1 - (1 + r) ** -n)
    return monthly / HOURS_PER_MONTH + device.tdp_w / 1000 * usd_per_kwh


def usd_per_hr(device: DeviceSpec, cluster: Cluster | None = None) -> float:
    """$/hr of one device under the cluster's pricing: "tco" (the paper's rule), "capex"
    (the same financing without the power term: hardware cost alone, for owners whose
    power is a flat fee) or "given" (the catalog's $/hr). Without a cluster: TCO with the paper's defaults. An
    abstract device with no capex falls back to its given price."""
    pricing = cluster.pricing if cluster is not None else "tco"
    if pricing in ("tco", "capex") and device.capex_usd is not None:
        if cluster is None:
            return tco_usd_per_hr(device)
        energy = cluster.energy_usd_per_kwh if pricing == "tco" else 0.0
        return tco_usd_per_hr(device, cluster.financing_years, cluster.interest_rate, energy)
    if device.given_usd_per_hr is None:
        raise CostModelError(f"device '{device.name}' has no price: set given_usd_per_hr"
                             + ("" if pricing == "given" else " or capex_usd"))
    return device.given_usd_per_hr


def transfer_ms(nbytes: float, link: Link | None) -> float:
    """Latency plus serialisation time of `nbytes` over a link (gbps in Gb/s); no link
    (same pool) costs nothing."""
    if link is None:
        return 0.0
    return link.transfer_ms(nbytes)


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
                  launches=steps * (model.layers + 1), steps=steps, allreduce_bytes=f["allreduce"],
                  allreduces_per_step=2 * model.layers)


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
    return Demand(flops=2 * scanned * dim + scanned * math.log2(k + 1), dtype=dtype,
                  bytes_read=scanned * dim * bpe, bytes_written=k * 8, memory_bytes=n * dim * bpe, launches=2)


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
                      bytes_read=_attr(kind, attrs, "bytes", 0, loc), launches=1, host_side=True)
    raise CostModelError(f"'{kind}' needs attribute 'cost_ms' or 'flops'", loc)


_KINDS = {
    "llm.tokenize": lambda k, a, m, l: _tokenize(k, a, m, l, TOKENIZE_US_PER_TOKEN),
    "llm.prefill": _prefill,
    "kv.transfer": _kv_transfer,
    "llm.decode": _decode,
    "llm.sample": _sample,
    "llm.detokenize": lambda k, a, m, l: _tokenize(k, a, m, l, DETOKENIZE_US_PER_TOKEN),
    "moe.gate_select": _gate_select,
    "moe.expert_prefill": _prefill,
    "moe.expert_decode": _decode,
    "moe.merge": _merge,
    "comm.allreduce": _allreduce,
    "tool.lookup": _tool,
    "tool.compute": _tool,
    "stt.featurize": _featurize,
    "stt.encode": _stt_encode,
    "stt.decode": _stt_decode,
    "tts.synthesize": _tts_synthesize,
    "tts.vocode": _tts_vocode,
    "embed.encode": _embed_encode,
    "embed.pool": _embed_pool,
    "retrieve.search": _search,
    "memory.read": _memory_rw,
    "memory.write": _memory_rw,
    "observe.append": _observe,
    "compute.cpu": _compute_cpu,
}
KINDS: tuple[str, ...] = OP_KINDS  # the one list; _KINDS has a demand function for each (tested)
_PREFILL_KINDS = ("llm.prefill", "moe.expert_prefill")
_DECODE_KINDS = ("llm.decode", "moe.expert_decode")
# Kinds that mostly wait on someone else (an API, a remote store): a measured latency for
# them is waiting, and only an explicit price in the profile (an API fee) is paid.
_WAITING_KINDS = ("tool.lookup", "tool.compute", "memory.read", "memory.write")
# Kinds whose work shards over a tensor-parallel group (weights, heads or payload).
_SPLITTABLE = frozenset(_PREFILL_KINDS + _DECODE_KINDS + (
    "kv.transfer", "moe.gate_select", "moe.merge", "comm.allreduce", "stt.encode", "stt.decode", "embed.encode"))


def op_demand(kind: str, attrs: Mapping[str, Any], model: ModelSpec | None = None,
              loc: SourceLoc | None = None) -> Demand:
    """The resource demand of one granular op (see the module docstring for attrs)."""
    try:
        fn = _KINDS[kind]
    except KeyError:
        raise CostModelError(f"the cost model has no op kind '{kind}'", loc,
                             (f"known kinds: {', '.join(KINDS)}",)) from None
    return fn(kind, attrs, model, loc)


def supports_tp(kind: str) -> bool:
    """Whether tensor parallelism applies to this kind (tp > 1 is refused otherwise)."""
    return kind in _SPLITTABLE


# --------------------------------------------------------------------------- pricing a demand

def _price(kind: str, demand: Demand, device: DeviceSpec, tp: int, cluster: Cluster | None,
           comm_tp: int | None = None) -> OpCost:
    """Roofline time of `demand` on `tp` devices of class `device`."""
    steps = max(1, demand.steps)
    peak_flops = device.tflops(demand.dtype) * 1e12 * device.efficiency(demand.dtype)
    peak_bytes = device.mem_gbps * 1e9 * device.memory_efficiency
    compute_ms = demand.flops / tp / peak_flops * 1e3 if demand.flops else 0.0
    memory_ms = demand.traffic_at(tp) / peak_bytes * 1e3
    network_ms = demand.net_bytes * 8 / (device.nic_gbits_s * 1e9) * 1e3 if demand.net_bytes else 0.0
    static_ms = demand.static_ms + demand.launches * device.launch_us / 1e3
    group = comm_tp if comm_tp is not None else tp
    sync_ms = 0.0
    if group > 1 and demand.allreduces_per_step:
        if device.fabric_gbytes_s <= 0:
            raise CostModelError(f"device '{device.name}' has no scale-up fabric for tp={group}")
        per_allreduce = (2 * (group - 1) / group * demand.allreduce_bytes / (device.fabric_gbytes_s * 1e9) * 1e3
                         + device.fabric_latency_us / 1e3)
        sync_ms = steps * demand.allreduces_per_step * per_allreduce
    roof = {"compute": compute_ms, "memory": memory_ms, "network": network_ms}
    # Totals are sums of identical mean steps, so max-of-totals = steps x max-per-step.
    busy_ms = max(roof.values()) + static_ms + sync_ms
    time_ms = busy_ms + demand.wait_ms
    binding = max(roof, key=lambda r: roof[r])
    if static_ms + sync_ms + demand.wait_ms > max(roof.values()):
        binding = "network" if sync_ms > static_ms and kind == "comm.allreduce" else "latency"
    footprint = demand.footprint_at(tp)
    return OpCost(kind=kind, device=device.name, tp=tp, time_ms=time_ms, binding=binding, compute_ms=compute_ms,
                  memory_ms=memory_ms, network_ms=network_ms, static_ms=static_ms, sync_ms=sync_ms,
                  wait_ms=demand.wait_ms, memory_bytes=footprint, fits=footprint <= device.memory_bytes,
                  energy_j=busy_ms / 1e3 * device.tdp_w * tp,
                  usd_per_call=busy_ms / 3.6e6 * usd_per_hr(device, cluster) * tp,
                  host_side=demand.host_side)


def _check_tp(kind: str, device: DeviceSpec, tp: int, loc: SourceLoc | None) -> None:
    if tp == 1:
        return
    if tp not in device.admissible_tp():
        raise CostModelError(f"tp={tp} is not admissible on '{device.name}' "
                             f"(powers of two up to devices_per_chassis={device.devices_per_chassis})", loc)
    if not supports_tp(kind):
        raise CostModelError(f"'{kind}' does not split under tensor parallelism (tp={tp})", loc)


def op_cost(kind: str, attrs: Mapping[str, Any], model: ModelSpec | None, device: DeviceSpec, tp: int = 1,
            cluster: Cluster | None = None, loc: SourceLoc | None = None) -> OpCost:
    """Time, footprint, energy and dollars of one op on `tp` devices of class `device`.
    A matching `[[profile]]` in the cluster replaces the analytic numbers."""
    if cluster is not None:
        prof = profiled_cost(kind, attrs, device, cluster, tp=tp)
        if prof is not None:
            return prof
    if device.is_abstract:
        raise CostModelError(f"device '{device.name}' is abstract and the cluster has no profile for '{kind}'", loc)
    comm_tp = None
    if kind == "comm.allreduce":
        comm_tp = int(_attr(kind, attrs, "tp", loc=loc))
    elif attrs.get("tp") is not None:
        sharded = int(_attr(kind, attrs, "tp", loc=loc))
        if tp not in (1, sharded):
            raise CostModelError(f"'{kind}' is sharded tp={sharded} by the IR; cannot price it at tp={tp}", loc)
        tp, comm_tp = sharded, 1  # the IR's explicit comm.allreduce ops carry the sync
    _check_tp(kind, device, tp, loc)
    demand = op_demand(kind, attrs, model, loc)
    cost = _price(kind, demand, device, tp, cluster, comm_tp)
    if kind in _DECODE_KINDS:
        # The SLA binds the slowest step: the last one, which reads the longest KV.
        last = dict(attrs)
        last["context"] = _attr(kind, attrs, "context", loc=loc) + _attr(kind, attrs, "tokens", loc=loc) - 1
        last["tokens"] = 1
        step = _price(kind, op_demand(kind, last, model, loc), device, tp, cluster, comm_tp)
        cost = replace(cost, tbt_ms=step.time_ms)
    elif kind in _PREFILL_KINDS:
        cost = replace(cost, ttft_ms=cost.time_ms)
    return cost


def batch_sweep(kind: str, attrs: Mapping[str, Any], model: ModelSpec | None, device: DeviceSpec, tp: int,
                cluster: Cluster | None, limit_ms: float | None, max_batch: int, loc: SourceLoc | None = None,
                refine: bool = False):
    """Yield (batch, OpCost) for batch = 1, 2, 4, ... up to `max_batch` while the op fits
    and its SLA-bearing time (TBT for decode, TTFT for prefill) stays within `limit_ms`.
    Both only grow with the batch, so the first failure ends the sweep. Serving picks
    its batch from these (the paper maximises batch under the SLA). `refine`: then also
    yield the largest batch that still passes (bisection between the last power of two
    that passed and the first that failed), so "maximised" means the integer maximum."""
    def cost(b: int):
        c = op_cost(kind, dict(attrs, batch=b), model, device, tp, cluster, loc)
        bound = c.tbt_ms if c.tbt_ms is not None else c.ttft_ms
        ok = c.fits and not (limit_ms is not None and bound is not None and bound > limit_ms)
        return ok, c

    b, good = 1, None
    while b <= max_batch:
        ok, c = cost(b)
        if not ok:
            break
        yield b, c
        good = (b, c)
        b *= 2
    if not refine or good is None:
        return
    lo, hi = good[0], min(b, max_batch + 1)  # lo passes; hi fails or is past the limit
    best = None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        ok, c = cost(mid)
        if ok:
            lo, best = mid, (mid, c)
        else:
            hi = mid
    if best is not None:
        yield best


def _profile_cost(prof: Profile, kind: str, attrs: Mapping[str, Any], device_name: str, tp: int,
                  hourly: float | None) -> OpCost:
    tokens = float(attrs.get("tokens", 0)) * float(attrs.get("batch", 1))
    waiting = kind in _WAITING_KINDS
    if prof.usd_per_call is not None:
        usd = prof.usd_per_call
    elif prof.usd_per_token is not None:
        usd = prof.usd_per_token * tokens
    elif waiting:
        usd = 0.0
    else:
        usd = prof.latency_ms / 3.6e6 * (hourly or 0.0) * tp
    wait = prof.latency_ms if waiting else 0.0
    fee = usd if waiting else 0.0
    tbt = prof.latency_ms / max(float(attrs.get("tokens", 1)), 1) if kind in _DECODE_KINDS else None
    ttft = prof.latency_ms if kind in _PREFILL_KINDS else None
    return OpCost(kind=kind, device=device_name, tp=tp, time_ms=prof.latency_ms, binding="latency",
                  static_ms=prof.latency_ms - wait, wait_ms=wait, usd_per_call=usd, tbt_ms=tbt, ttft_ms=ttft,
                  profiled=True, fee_usd=fee)


def profiled_cost(kind: str, attrs: Mapping[str, Any], device: DeviceSpec, cluster: Cluster,
                  tp: int = 1) -> OpCost | None:
    """The cluster's measured cost of `kind` on `device`, or None when not profiled.
    `latency_ms` is per call; `usd_per_token` is multiplied by tokens x batch. For tool
    calls and remote-store reads/writes the latency is waited, not paid: their cost is
    the profile's `usd_per_call` (an API fee) or `usd_per_token`, else nothing."""
    prof = cluster.profile_for(kind, device.name)
    if prof is None:
        return None
    hourly = None
    if prof.usd_per_call is None and prof.usd_per_token is None:
        hourly = usd_per_hr(device, cluster)
    return _profile_cost(prof, kind, attrs, device.name, tp, hourly)


def transfer_cost(kind: str, attrs: Mapping[str, Any], model: ModelSpec | None, src: Pool, dst: Pool,
                  cluster: Cluster, loc: SourceLoc | None = None) -> OpCost:
    """Cost of moving an op's payload (kv.transfer: the KV cache; others: `net_bytes`)
    from pool `src` to pool `dst`: a matching from/to profile, else the link's latency
    plus serialisation; nothing within one pool. Network time is not priced in dollars
    here (the planner's gamma weight prices communication)."""
    prof = cluster.transfer_profile(kind, src.device.name, dst.device.name)
    if prof is not None:
        return _profile_cost(prof, kind, attrs, f"{src.device.name}->{dst.device.name}", 1, 0.0)
    nbytes = op_demand(kind, attrs, model, loc).net_bytes
    name = f"{src.name}->{dst.name}"
    if src.name == dst.name:
        return OpCost(kind=kind, device=name, tp=1, time_ms=0.0, binding="network")
    link = cluster.link_between(src.name, dst.name)
    if link is None:
        raise CostModelError(f"pools '{src.name}' and '{dst.name}' are not linked in cluster '{cluster.name}'", loc)
    t = transfer_ms(nbytes, link)
    return OpCost(kind=kind, device=name, tp=1, time_ms=t, binding="network" if t > link.latency_ms * 2 else "latency",
                  network_ms=t - link.latency_ms, static_ms=link.latency_ms)
