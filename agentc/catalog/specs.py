"""The catalog's data types: device classes, models, pools, links, profiles, clusters.

Frozen dataclasses with no loading logic, so the cost model, the planner and the
frontend can use them without reading a file. `DTYPE_BYTES` is agentc's one table of
element sizes; every other module asks `bytes_per_elem`. The shipped device numbers
are those of Table 5 of arXiv 2507.19635 (plus sourced extras, see devices.toml).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from agentc.diagnostics import CatalogError, SourceLoc
from agentc.units import transfer_ms

__all__ = [
    "DTYPE_BYTES", "DEVICE_KINDS", "curve_rate", "TARGETS", "MODEL_KINDS", "PRICING", "DeviceSpec", "ModelSpec", "Pool",
    "Link", "Profile", "Cluster", "Catalog", "bytes_per_elem", "did_you_mean",
]

DTYPE_BYTES: dict[str, float] = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}
DEVICE_KINDS = ("gpu", "accelerator", "cpu", "abstract")
TARGETS = ("nvvm", "rocdl", "llvm-cpu", "none")
MODEL_KINDS = ("decoder", "encoder", "stt", "tts")
PRICING = ("tco", "capex", "given")


def bytes_per_elem(dtype: str) -> float:
    """Bytes of one element of `dtype` (int4: half a byte)."""
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise CatalogError(f"unknown dtype '{dtype}' (known: {', '.join(DTYPE_BYTES)})") from None


def curve_rate(points: tuple[tuple[float, float], ...], x: float) -> float:
    """The rate at size `x` on a measured (size, rate) curve: linear in log size and log
    rate between points (rates change by cache level and tiling, multiplicatively),
    the end points' rates outside them."""
    if x <= points[0][0]:
        return points[0][1]
    for (x0, r0), (x1, r1) in zip(points, points[1:]):
        if x == x1:
            return r1
        if x < x1:
            f = math.log(x / x0) / math.log(x1 / x0)
            return math.exp(math.log(r0) + f * (math.log(r1) - math.log(r0)))
    return points[-1][1]


@dataclass(frozen=True)
class DeviceSpec:
    """One device class. Rates are dense peaks; `mem_gbps` is GB/s (HBM or DRAM).

    An abstract class (kind "abstract", e.g. the paper's HP/CO) has no hardware numbers;
    only profiled costs can price work on it.
    """

    name: str
    kind: str
    vendor: str = ""
    capex_usd: float | None = None
    memory_gb: float = 0.0
    mem_gbps: float = 0.0
    fp16_tflops: float = 0.0
    bf16_tflops: float = 0.0
    fp8_tflops: float = 0.0
    fp32_tflops: float = 0.0
    tdp_w: float = 0.0
    given_usd_per_hr: float | None = None
    fabric_gbytes_s: float = 0.0
    devices_per_chassis: int = 1
    nic_gbits_s: float = 0.0
    fabric_latency_us: float = 0.0
    launch_us: float = 0.0
    compute_efficiency: float = 1.0
    memory_efficiency: float = 1.0
    fp8_compute_efficiency: float | None = None
    roofline_p: float = 0.0  # smooth-roofline exponent (costmodel.layers); 0: the hard max
    # Elementwise kernels (norms, RoPE, activation, add, gather): their own achieved
    # bandwidth and fixed cost (costmodel.layers.ELEMENTWISE); None: the GEMM figures.
    elementwise_memory_efficiency: float | None = None
    elementwise_launch_us: float | None = None
    allreduce_gbytes_s: float = 0.0  # NCCL all-reduce bus bandwidth; 0: fabric_gbytes_s
    # Measured rate curves (agentc calibrate): ((working-set bytes, GB/s), ...) and
    # ((FLOPs per call, GFLOP/s), ...), sizes increasing; empty: mem_gbps and the peak.
    # copy_curve: bytes read + written per second by a copy; empty: bandwidth_curve.
    bandwidth_curve: tuple[tuple[float, float], ...] = ()
    gemm_curve: tuple[tuple[float, float], ...] = ()
    copy_curve: tuple[tuple[float, float], ...] = ()
    target: str = "none"
    chip: str = ""
    triple: str = ""
    source: str = field(default="", compare=False)

    @property
    def hbm_gbps(self) -> float:
        """The paper's name for memory bandwidth (GB/s), also used for CPU DRAM."""
        return self.mem_gbps

    @property
    def is_cpu(self) -> bool:
        return self.kind == "cpu"

    @property
    def is_abstract(self) -> bool:
        return self.kind == "abstract"

    @property
    def memory_bytes(self) -> float:
        return self.memory_gb * 1e9

    def bandwidth_gbps(self, working_set_bytes: float) -> float:
        """Memory bandwidth (GB/s, before efficiency) for data of `working_set_bytes`
        that stays resident between calls: the measured curve where there is one (a CPU
        streams a matrix that fits its last-level cache ~2x faster than DRAM), else
        mem_gbps."""
        if not self.bandwidth_curve:
            return self.mem_gbps
        return curve_rate(self.bandwidth_curve, working_set_bytes)

    def copy_gbps(self, working_set_bytes: float) -> float:
        """Bytes read + written per second (GB/s, before efficiency) when every byte read
        is written back out, as a copy or an elementwise op does: the measured copy curve
        where there is one (a CPU writes on one thread and pays for the written lines'
        reads, so it copies well below its read rate in cache), else the read figure."""
        if not self.copy_curve:
            return self.bandwidth_gbps(working_set_bytes)
        return curve_rate(self.copy_curve, working_set_bytes)

    def flops_per_s(self, dtype: str, flops: float | None = None) -> float:
        """Achieved FLOP/s for one call of `flops` FLOPs in `dtype`: the measured GEMM
        curve where there is one (small GEMMs reach a fraction of the large ones' rate),
        else the dense peak; either times the dtype's efficiency."""
        if self.gemm_curve and flops:
            return curve_rate(self.gemm_curve, flops) * 1e9 * self.efficiency(dtype)
        return self.tflops(dtype) * 1e12 * self.efficiency(dtype)

    def efficiency(self, dtype: str) -> float:
        """Achieved / peak FLOP/s for computing in `dtype` (FP8 GEMMs often reach a
        smaller fraction of their peak than FP16 ones, hence a factor of their own)."""
        if dtype in ("fp8", "int8") and self.fp8_tflops and self.fp8_compute_efficiency is not None:
            return self.fp8_compute_efficiency
        return self.compute_efficiency

    def tflops(self, dtype: str) -> float:
        """Dense peak for computing in `dtype`; types without native support fall back to
        the next wider type the device has (fp8 -> fp16, int4 weights -> fp16)."""
        if dtype in ("fp8", "int8"):
            return self.fp8_tflops or self.fp16_tflops
        if dtype in ("fp16", "int4"):
            return self.fp16_tflops
        if dtype == "bf16":
            return self.bf16_tflops or self.fp16_tflops
        if dtype == "fp32":
            return self.fp32_tflops
        raise CatalogError(f"unknown dtype '{dtype}' (known: {', '.join(DTYPE_BYTES)})")

    def admissible_tp(self, devices_available: int | None = None) -> tuple[int, ...]:
        """Tensor-parallel degrees: powers of two within one chassis (and the pool)."""
        limit = self.devices_per_chassis
        if devices_available is not None:
            limit = min(limit, devices_available)
        out, tp = [], 1
        while tp <= limit:
            out.append(tp)
            tp *= 2
        return tuple(out)


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of one model; FLOPs and bytes are derived from it in costmodel."""

    name: str
    kind: str
    layers: int
    d_model: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    dtype: str = "fp16"
    experts: int = 1
    top_k: int = 1
    gated_ffn: bool = True
    tied_embeddings: bool = False
    position_embeddings: int = 0
    encoder_layers: int = 0
    mel_bins: int = 0
    audio_frames_per_s: float = 0.0
    window_ms: float = 0.0
    frames_per_token: float = 0.0
    sample_rate_hz: int = 0
    flow_params: int = 0
    vocoder_params: int = 0
    vocoder_gflop_per_audio_s: float = 0.0
    source: str = field(default="", compare=False)

    @property
    def bytes_per_elem(self) -> float:
        return bytes_per_elem(self.dtype)

    @property
    def head_dim(self) -> float:
        return self.d_model / self.heads

    @property
    def kv_dim(self) -> float:
        """Width of K (and of V) per token per layer: d_model * kv_heads / heads."""
        return self.d_model * self.kv_heads / self.heads

    # Parameter counts, block by block. Biases and norm scales are left out of the
    # blocks (under 0.1% for every catalog model) except one norm vector per block.
    @property
    def attn_params(self) -> int:
        """Q and O are d x d; K and V are d x kv_dim (grouped-query attention)."""
        return int(2 * self.d_model * self.d_model + 2 * self.d_model * self.kv_dim)

    @property
    def expert_params(self) -> int:
        """One FFN (one expert): 3 matrices for SwiGLU, 2 for a GELU MLP."""
        return (3 if self.gated_ffn else 2) * self.d_model * self.ffn

    @property
    def router_params(self) -> int:
        return self.d_model * self.experts if self.experts > 1 else 0

    @property
    def layer_params(self) -> int:
        """One decoder (or encoder-only) block with every expert."""
        cross = 4 * self.d_model * self.d_model if self.kind == "stt" else 0
        return (self.attn_params + cross + self.experts * self.expert_params
                + self.router_params + 2 * self.d_model)

    @property
    def active_layer_params(self) -> int:
        """One block as a token sees it: only `top_k` experts run."""
        return self.layer_params - (self.experts - self.top_k) * self.expert_params

    @property
    def encoder_layer_params(self) -> int:
        """One speech-encoder block (full multi-head attention, same FFN shape)."""
        return 4 * self.d_model * self.d_model + self.expert_params + 2 * self.d_model

    @property
    def embedding_params(self) -> int:
        tables = 1 if self.tied_embeddings or self.kind in ("encoder", "tts") else 2
        return tables * self.vocab * self.d_model + self.position_embeddings * self.d_model

    @property
    def lm_head_params(self) -> int:
        """Output projection, run once per generated token (shared when tied)."""
        return self.vocab * self.d_model if self.kind in ("decoder", "stt") else 0

    @property
    def conv_frontend_params(self) -> int:
        """Whisper-style stem: conv(mel_bins -> d, k=3) then conv(d -> d, k=3)."""
        if self.kind != "stt":
            return 0
        return 3 * self.mel_bins * self.d_model + 3 * self.d_model * self.d_model

    @property
    def param_count(self) -> int:
        """All weights, computed from the shape (stored sizes only for TTS flow/vocoder)."""
        return (self.layers * self.layer_params
                + self.encoder_layers * self.encoder_layer_params
                + self.embedding_params + self.d_model + self.conv_frontend_params
                + self.flow_params + self.vocoder_params)

    @property
    def active_param_count(self) -> int:
        """Weights a single token uses (MoE: `top_k` of `experts`)."""
        return self.param_count - self.layers * (self.experts - self.top_k) * self.expert_params

    @property
    def weight_bytes(self) -> float:
        return self.param_count * self.bytes_per_elem


@dataclass(frozen=True)
class Pool:
    """`count` devices of one class spread over `nodes` chassis."""

    name: str
    device: DeviceSpec
    count: int
    nodes: int = 1

    @property
    def per_node(self) -> int:
        return max(1, self.count // self.nodes)

    def admissible_tp(self) -> tuple[int, ...]:
        return self.device.admissible_tp(self.per_node)


@dataclass(frozen=True)
class Link:
    """A network path between two pools; `gbps` is gigaBITS per second."""

    a: str
    b: str
    gbps: float
    latency_ms: float = 0.0

    def transfer_ms(self, nbytes: float) -> float:
        return transfer_ms(nbytes, self.gbps, self.latency_ms)


@dataclass(frozen=True)
class Profile:
    """A measured cost that overrides the analytic model.

    Compute profiles name `device`; transfer profiles name `src` and `dst`. `latency_ms`
    is per call; `usd_per_token` is multiplied by the op's tokens x batch.
    """

    op: str
    latency_ms: float
    device: str | None = None
    src: str | None = None
    dst: str | None = None
    usd_per_token: float | None = None
    usd_per_call: float | None = None

    def matches(self, kind: str) -> bool:
        """`op` names an op kind exactly or by its LLM short name ("prefill")."""
        return kind == self.op or kind == f"llm.{self.op}"


@dataclass(frozen=True)
class Cluster:
    """An inventory: pools of devices, the links between them and how they are priced."""

    name: str
    pools: tuple[Pool, ...]
    links: tuple[Link, ...] = ()
    energy_usd_per_kwh: float = 0.40
    financing_years: float = 4
    interest_rate: float = 0.08
    pricing: str = "tco"
    profiles: tuple[Profile, ...] = ()
    default_link: Link | None = None
    files: tuple[str, ...] = field(default=(), compare=False)

    @functools.cached_property
    def _pools_by_name(self) -> dict[str, Pool]:
        return {p.name: p for p in self.pools}

    @functools.cached_property
    def _links_by_ends(self) -> dict[frozenset[str], Link]:
        # lookups are per pool pair in the planner: an index keeps them O(1) for
        # clusters of hundreds of pools and their links
        return {frozenset((ln.a, ln.b)): ln for ln in self.links}

    def without_twins(self, keep: int) -> tuple[tuple[Pool, ...], dict[str, tuple[str, ...]]]:
        """The pools worth pricing, and each kept pool's dropped twins.

        Pools of one device, size and node count that no link names are interchangeable
        (the default link joins each to the rest alike): a plan stays a plan, at the same
        cost and times, when they swap names. A plan puts each op on one pool, so it
        uses at most as many of them as it has ops, and without load (no capacity, only
        the link between twins) one suffices: `keep` says how many. The first by name
        are kept. 1,000 identical CPU pools are then priced as one, not 1,000 times."""
        named = {x for ln in self.links for x in (ln.a, ln.b)}
        groups: dict[tuple, list[Pool]] = {}
        kept = []
        for p in sorted(self.pools, key=lambda p: p.name):
            if p.name in named:
                kept.append(p)
                continue
            twins = groups.setdefault((p.device.name, p.count, p.nodes), [])
            twins.append(p)
            if len(twins) <= max(1, keep):
                kept.append(p)
        dropped = {g[max(1, keep) - 1].name: tuple(p.name for p in g[max(1, keep):])
                   for g in groups.values() if len(g) > max(1, keep)}
        order = {p.name: i for i, p in enumerate(self.pools)}
        return tuple(sorted(kept, key=lambda p: order[p.name])), dropped

    def pool(self, name: str) -> Pool:
        if name in self._pools_by_name:
            return self._pools_by_name[name]
        raise CatalogError(f"cluster '{self.name}' has no pool '{name}'",
                           notes=did_you_mean(name, [p.name for p in self.pools]))

    @property
    def device_classes(self) -> tuple[DeviceSpec, ...]:
        seen: dict[str, DeviceSpec] = {}
        for p in self.pools:
            seen.setdefault(p.device.name, p.device)
        return tuple(seen[k] for k in sorted(seen))

    def link_between(self, a: str, b: str) -> Link | None:
        """The link joining two pools (either direction), else the default link; None
        for the same pool (no transfer) or when the pools are not connected."""
        if a == b:
            return None
        link = self._links_by_ends.get(frozenset((a, b)))
        if link is not None:
            return link
        if self.default_link is not None:
            return dataclasses.replace(self.default_link, a=a, b=b)
        return None

    def connected(self, a: str, b: str) -> bool:
        return a == b or self.link_between(a, b) is not None

    def transfer_ms(self, nbytes: float, a: str, b: str) -> float:
        if a == b:
            return 0.0
        link = self.link_between(a, b)
        if link is None:
            raise CatalogError(f"pools '{a}' and '{b}' of cluster '{self.name}' are not linked")
        return link.transfer_ms(nbytes)

    def profile_for(self, kind: str, device: str) -> Profile | None:
        for prof in self.profiles:
            if prof.device == device and prof.matches(kind):
                return prof
        return None

    def transfer_profile(self, kind: str, src: str, dst: str) -> Profile | None:
        for prof in self.profiles:
            if prof.src == src and prof.dst == dst and prof.matches(kind):
                return prof
        return None


@dataclass(frozen=True)
class Catalog:
    """Device classes and models by name, and the files they were read from."""

    devices: Mapping[str, DeviceSpec]
    models: Mapping[str, ModelSpec]
    files: tuple[str, ...] = ()

    def device(self, name: str, loc: SourceLoc | None = None) -> DeviceSpec:
        try:
            return self.devices[name]
        except KeyError:
            raise CatalogError(f"unknown device type '{name}'", loc,
                               did_you_mean(name, self.devices)) from None

    def model(self, name: str, loc: SourceLoc | None = None) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            raise CatalogError(f"unknown model '{name}'", loc, did_you_mean(name, self.models)) from None


def did_you_mean(name: str, known: Iterable[str]) -> tuple[str, ...]:
    """A note suggesting the closest known name, else listing them all."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return (f"did you mean '{close[0]}'?",)
    return (f"known: {', '.join(known)}",) if known else ()
