"""The per-kernel layer model: a transformer forward pass as the kernels it launches.

A layer is not one roofline: it is a sequence of kernels, each bound by its own
resource, each paying a fixed cost. agentc prices a forward pass as

    t = layers x sum_k [ roof_k + fixed ] + embedding + final norm + LM head
        + all-reduces (2 per layer when tp > 1)

with the layer's kernels k = norm, qkv, rope, attn, o, norm, gate_up, act, down, add
(MoE: norm, qkv, rope, attn, o, norm, moe_gate, experts, merge, add). Each kernel's
roof is a smooth roofline, the p-norm of its compute and memory times

    roof = (c^p + m^p)^(1/p),  c = flops / (peak x compute_efficiency),
                               m = bytes / (bandwidth x memory_efficiency)

which equals max(c, m) far from the ridge and 2^(1/p) x max at it (measured GEMMs of
128-256 tokens take 1.4-2x the hard max; p = `roofline_p` of the device, fitted by
`agentc calibrate --from-measurements`; p = 0 means the hard max). `fixed` is the
device's `launch_us`, the measured per-kernel fixed cost.

Kernels come in two classes with their own achieved bandwidth and fixed cost: GEMM-like
(qkv, attention, o, gate/up, down, experts, router, LM head) use `memory_efficiency` and
`launch_us`; the elementwise ones (ELEMENTWISE: norms, RoPE, activation, add, expert
merge, embedding gather) use `elementwise_memory_efficiency` and `elementwise_launch_us`
when the device has them. Measured on A40/A100/H100, a decode-sized RMSNorm takes ~6 us
where a GEMM-fitted model says ~2 us, and one shared pair of numbers then under-prices
every decode step by 10-15% (the weight-streaming GEMMs are pulled the other way).

Tensor parallelism (Megatron style) shards every kernel by heads or FFN columns
except the norms, the residual add, the embedding and the MoE router, which every
rank runs whole; attention shards by KV head (at most kv_heads ways). An all-reduce of
`b` bytes among g devices takes `fabric_latency_us + 2 (g-1)/g x b / busbw` (the NCCL
ring; busbw is the device's `allreduce_gbytes_s`, nccl-tests' bus bandwidth, else
the fabric's per-direction bandwidth).

Attention is priced as FlashAttention-style kernels run it: prefill compute-bound in
the square of the sequence (4 x head_dim x heads x attended pairs), decode bound by the
KV bytes it reads. FLOPs count a multiply-add as 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from agentc.catalog import DeviceSpec, ModelSpec

# Kernels of one layer, in launch order; `layer_kernels` returns them in this order.
DENSE_LAYER = ("norm", "qkv", "rope", "attn", "o", "norm", "gate_up", "act", "down", "add")
MOE_LAYER = ("norm", "qkv", "rope", "attn", "o", "norm", "moe_gate", "experts", "merge", "add")
# Kernels outside the layers, once per forward pass.
PASS_KERNELS = ("embed", "final_norm", "lm_head")
KERNEL_NAMES = tuple(sorted(set(DENSE_LAYER + MOE_LAYER + PASS_KERNELS)))
# Kernels bound by streaming activations, not by a weight matrix or attention.
ELEMENTWISE = frozenset({"norm", "rope", "act", "add", "merge", "embed", "final_norm"})


def kernel_class(name: str, device: DeviceSpec) -> tuple[float, float]:
    """(memory efficiency, fixed cost in us) of kernel `name` on `device`."""
    if name in ELEMENTWISE:
        me = device.elementwise_memory_efficiency
        fixed = device.elementwise_launch_us
        return (device.memory_efficiency if me is None else me,
                device.launch_us if fixed is None else fixed)
    return device.memory_efficiency, device.launch_us


@dataclass(frozen=True)
class Kernel:
    """One kernel launch, `count` times, for the whole batch at tp = 1.

    `flops` split across min(tp, max_tp) ranks; of the memory traffic, `shard_bytes`
    splits the same way and `whole_bytes` is moved by every rank (a replicated input,
    a full-width output of a row-parallel GEMM, an unsharded norm). max_tp = 1: the
    kernel is not sharded."""

    name: str
    flops: float
    whole_bytes: float
    shard_bytes: float = 0.0
    max_tp: int = 1 << 30
    count: float = 1.0

    def split(self, tp: int) -> int:
        return max(1, min(tp, self.max_tp))

    def flops_at(self, tp: int) -> float:
        return self.flops / self.split(tp)

    def bytes_at(self, tp: int) -> float:
        return self.whole_bytes + self.shard_bytes / self.split(tp)

    def scaled(self, count: float) -> "Kernel":
        return Kernel(self.name, self.flops, self.whole_bytes, self.shard_bytes, self.max_tp, self.count * count)


def smooth_roof(times: Iterable[float], p: float) -> float:
    """(sum t^p)^(1/p) over the resources' times; the hard max when p is 0."""
    times = list(times)
    top = max(times, default=0.0)
    if not p or top <= 0:
        return top
    return top * sum((t / top) ** p for t in times) ** (1 / p)


def allreduce_ms(nbytes: float, group: int, device: DeviceSpec) -> float:
    """One ring all-reduce of `nbytes` among `group` devices: latency + bus bytes / busbw."""
    if group <= 1:
        return 0.0
    busbw = device.allreduce_gbytes_s or device.fabric_gbytes_s
    return device.fabric_latency_us / 1e3 + 2 * (group - 1) / group * nbytes / (busbw * 1e9) * 1e3


@dataclass(frozen=True)
class KernelTime:
    """Priced kernels: time by the resource that bound each kernel, and the raw roofs."""

    compute_ms: float  # sum over kernels of the compute roof
    memory_ms: float  # sum over kernels of the memory roof
    compute_bound_ms: float  # time of the kernels whose compute roof is the larger
    memory_bound_ms: float  # time of the kernels whose memory roof is the larger
    fixed_ms: float  # per-kernel fixed costs (each kernel's class, kernel_class)
    launches: float

    @property
    def roof_ms(self) -> float:
        return self.compute_bound_ms + self.memory_bound_ms


def kernel_ms(k: Kernel, device: DeviceSpec, tp: int, dtype: str,
              working_set: float = 0.0) -> tuple[float, float, float]:
    """(compute roof, memory roof, smooth roof) of one launch of `k`, in ms; the op's
    resident `working_set` (bytes per device) picks the bandwidth on a measured curve."""
    peak = device.flops_per_s(dtype, k.flops_at(tp))
    bw = device.bandwidth_gbps(working_set) * 1e9 * kernel_class(k.name, device)[0]
    c = k.flops_at(tp) / peak * 1e3 if k.flops else 0.0
    m = k.bytes_at(tp) / bw * 1e3
    return c, m, smooth_roof((c, m), device.roofline_p)


def price_kernels(kernels: Iterable[Kernel], device: DeviceSpec, tp: int, dtype: str,
                  working_set: float = 0.0) -> KernelTime:
    c_sum = m_sum = cb = mb = launches = fixed_us = 0.0
    for k in kernels:
        c, m, t = kernel_ms(k, device, tp, dtype, working_set)
        fixed_us += kernel_class(k.name, device)[1] * k.count
        c_sum += c * k.count
        m_sum += m * k.count
        if c >= m:
            cb += t * k.count
        else:
            mb += t * k.count
        launches += k.count
    return KernelTime(c_sum, m_sum, cb, mb, fixed_us / 1e3, launches)


# --------------------------------------------------------------------------- kernels of a pass

def _experts_touched(model: ModelSpec, routed_tokens: float) -> float:
    if model.experts == 1:
        return 1.0
    return model.experts * (1 - (1 - model.top_k / model.experts) ** max(routed_tokens, 1))


def layer_kernels(model: ModelSpec, new: float, context: float, batch: float = 1, *,
                  causal: bool = True, include_router: bool = True) -> list[Kernel]:
    """The kernels of one layer: `batch` sequences of `new` tokens after `context`
    cached ones (count 1 each; the norm appears twice)."""
    b = model.bytes_per_elem
    d, f, kv = model.d_model, model.ffn, model.kv_dim
    n = batch * new
    qkv_w = d + 2 * kv
    attended = new * context + (new * (new + 1) / 2 if causal else new * new)
    kv_bytes = 2 * kv * b * batch * (context + new) if model.kind in ("decoder", "stt") else 2 * kv * b * n
    # RMSNorm reads its input twice (the mean-square pass, then the scaling pass).
    norm = Kernel("norm", 4 * n * d, (3 * n * d + d) * b, max_tp=1)
    attn_kernels = [
        norm,
        Kernel("qkv", 2 * n * d * qkv_w, n * d * b, (d * qkv_w + n * qkv_w) * b),
        Kernel("rope", 4 * n * (d + kv), 0.0, 2 * n * (d + kv) * b),
        Kernel("attn", 4 * d * batch * attended, 0.0, 2 * n * d * b + kv_bytes, max_tp=model.kv_heads),
        Kernel("o", 2 * n * d * d, n * d * b, (d * d + n * d) * b),
        norm,
    ]
    up = (2 if model.gated_ffn else 1) * f
    if model.experts == 1:
        mlp = [Kernel("gate_up", 2 * n * d * up, n * d * b, (d * up + n * up) * b),
               Kernel("act", 4 * n * f, 0.0, (n * up + n * f) * b),
               Kernel("down", 2 * n * f * d, n * d * b, (f * d + n * f) * b)]
    else:
        k = model.top_k
        touched = _experts_touched(model, n)
        router = ([Kernel("moe_gate", 2 * n * d * model.experts, (d * model.experts + n * d) * b + n * model.experts * 4,
                          max_tp=1)] if include_router else [])
        mlp = router + [
            Kernel("experts", 2 * n * k * model.expert_params + 4 * n * k * f, n * d * b,
                   (touched * model.expert_params + n * k * (up + 2 * f + d)) * b),
            Kernel("merge", 2 * n * k * d, (k + 1) * n * d * b, max_tp=1)]
    return attn_kernels + mlp + [Kernel("add", n * d, 3 * n * d * b, max_tp=1)]


def pass_kernels(model: ModelSpec, new: float, context: float, batch: float = 1, *, causal: bool = True,
                 head_tokens: float | None = None, include_router: bool = True) -> list[Kernel]:
    """Every kernel of one forward pass: the layers (count = layers), the embedding
    gather, the final norm and the LM head over `head_tokens` positions (default: the
    last one of each sequence; decoders and STT decoders only)."""
    b = model.bytes_per_elem
    d, n = model.d_model, batch * new
    head_tokens = batch if head_tokens is None else head_tokens
    per_layer = [k.scaled(model.layers) for k in layer_kernels(model, new, context, batch, causal=causal,
                                                                 include_router=include_router)]
    out = [Kernel("embed", 0.0, 2 * n * d * b + n * 4, max_tp=1)] + per_layer
    out.append(Kernel("final_norm", 4 * n * d, (3 * n * d + d) * b, max_tp=1))
    if model.kind in ("decoder", "stt") and head_tokens:
        v = model.vocab
        out.append(Kernel("lm_head", 2 * head_tokens * d * v, head_tokens * d * b, (d * v + head_tokens * v) * b))
    return out


def allreduces_per_pass(model: ModelSpec) -> int:
    """Row-parallel GEMMs (o and down, or the experts) each end in one all-reduce."""
    return 2 * model.layers


def measured_kernel(name: str, model: ModelSpec, tokens: float, context: float) -> Kernel:
    """The kernel `name` of one layer at `tokens` new tokens after `context` (one
    sequence): what a row of a measurement table timed."""
    for k in layer_kernels(model, tokens, context, 1):
        if k.name == name:
            return k
    for k in pass_kernels(model, tokens, context, 1):
        if k.name == name:
            return Kernel(k.name, k.flops, k.whole_bytes, k.shard_bytes, k.max_tp)
    raise KeyError(name)
