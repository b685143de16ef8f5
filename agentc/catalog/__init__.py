"""Device and model catalogs and cluster inventories, loaded from TOML.

The planner needs numbers about hardware (peak rates, memory, prices, fabric) and about
models (shapes, from which FLOPs and bytes follow). Those numbers are data, shipped as
package TOML files (`devices.toml`, `models.toml`, `default_cluster.toml`) that users
extend with their own files. This module reads them into frozen dataclasses and checks
them, reporting every mistake as a `CatalogError` that points at the file and line of
the offending key, because TOML parsers keep no positions after parsing.

File formats (see the shipped files for commented examples):
- catalog files: `[device.NAME]` and `[model.NAME]` tables; a table whose name already
  exists overrides only the keys it sets.
- cluster files: top-level `name`, `pricing` ("tco" | "capex" | "given"), `energy_usd_per_kwh`,
  `financing_years`, `interest_rate`; optional `device_files = [...]` (catalog or
  calibrate-profile files, relative to the cluster file); optional `[device.NAME]`
  tables (full classes, overrides of catalog classes, `base = "H100"` derivations, or
  abstract classes with only `given_usd_per_hr` or nothing); `[[pool]]` (name, device,
  count, nodes); `[[link]]` (a, b, gbps in Gb/s, latency_ms); optional `[default_link]`
  (gbps, latency_ms) for pool pairs without a link; `[[profile]]` measured overrides
  (op, device or from/to, latency_ms, usd_per_token or usd_per_call; for tool and
  remote-store ops the latency is waited, not paid, and usd_per_call is the API fee).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Iterable, Mapping

from agentc.diagnostics import CatalogError, SourceLoc, locate_in_file

__all__ = [
    "DTYPE_BYTES", "DeviceSpec", "ModelSpec", "Pool", "Link", "Profile", "Cluster", "Catalog",
    "load_catalog", "load_cluster", "load_device_profile", "model_from_decl",
    "list_files_used", "bytes_per_elem",
]

DTYPE_BYTES: dict[str, float] = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}
DEVICE_KINDS = ("gpu", "accelerator", "cpu", "abstract")
TARGETS = ("nvvm", "rocdl", "llvm-cpu", "none")
MODEL_KINDS = ("decoder", "encoder", "stt", "tts")
PRICING = ("tco", "capex", "given")


def bytes_per_elem(dtype: str) -> float:
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise CatalogError(f"unknown dtype '{dtype}' (known: {', '.join(DTYPE_BYTES)})") from None


# --------------------------------------------------------------------------- specs

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
    allreduce_gbytes_s: float = 0.0  # NCCL all-reduce bus bandwidth; 0: fabric_gbytes_s
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
        return self.latency_ms + nbytes * 8 / (self.gbps * 1e9) * 1e3


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

    def pool(self, name: str) -> Pool:
        for p in self.pools:
            if p.name == name:
                return p
        raise CatalogError(f"cluster '{self.name}' has no pool '{name}'",
                           notes=_did_you_mean(name, [p.name for p in self.pools]))

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
        for link in self.links:
            if {link.a, link.b} == {a, b}:
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
    devices: Mapping[str, DeviceSpec]
    models: Mapping[str, ModelSpec]
    files: tuple[str, ...] = ()

    def device(self, name: str, loc: SourceLoc | None = None) -> DeviceSpec:
        try:
            return self.devices[name]
        except KeyError:
            raise CatalogError(f"unknown device type '{name}'", loc,
                               _did_you_mean(name, self.devices)) from None

    def model(self, name: str, loc: SourceLoc | None = None) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            raise CatalogError(f"unknown model '{name}'", loc, _did_you_mean(name, self.models)) from None


def _did_you_mean(name: str, known: Iterable[str]) -> tuple[str, ...]:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return (f"did you mean '{close[0]}'?",)
    return (f"known: {', '.join(known)}",) if known else ()


# --------------------------------------------------------------------------- TOML + positions

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_\-]+)\s*=")
_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")


class _TomlFile:
    """A parsed TOML file plus a line index of tables and keys, to locate errors."""

    def __init__(self, path: str):
        self.path = path
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise CatalogError(f"cannot read '{path}': {e.strerror}") from None
        try:
            text = raw.decode("utf-8")
            self.data = tomllib.loads(text)
        except UnicodeDecodeError:
            raise CatalogError("file is not UTF-8", SourceLoc(path, 1, 1)) from None
        except tomllib.TOMLDecodeError as e:
            msg = str(e)
            m = _TOML_POS.search(msg)
            if m:
                loc = SourceLoc(path, int(m.group(1)), int(m.group(2)))
                msg = msg[: m.start()].rstrip()
            else:
                loc = SourceLoc(path, max(1, text.count("\n")), 1)
            raise CatalogError(f"invalid TOML: {msg}", loc) from None
        # sections: list of (name parts, is_array, header line, {key: (line, col)})
        self.sections: list[tuple[tuple[str, ...], bool, int, dict[str, tuple[int, int]]]] = [
            ((), False, 1, {})]
        for lineno, line in enumerate(text.splitlines(), start=1):
            h = _HEADER.match(line)
            if h and not _KEY.match(line):
                parts = tuple(p.strip().strip("\"'") for p in h.group(2).split("."))
                self.sections.append((parts, h.group(1) == "[[", lineno, {}))
                continue
            k = _KEY.match(line)
            if k:
                key = k.group(1).strip("\"'")
                self.sections[-1][3].setdefault(key, (lineno, line.index(k.group(1)) + 1))

    def loc(self, table: tuple[str, ...] = (), key: str | None = None, index: int = 0) -> SourceLoc:
        """Position of `key` in table `table` (the `index`-th one for arrays of tables)."""
        matches = [s for s in self.sections if s[0] == table]
        if not matches:
            needle = key or (table[-1] if table else "")
            return locate_in_file(self.path, needle) if needle else SourceLoc(self.path, 1, 1)
        sec = matches[min(index, len(matches) - 1)]
        if key is not None and key in sec[3]:
            line, col = sec[3][key]
            return SourceLoc(self.path, line, col)
        return SourceLoc(self.path, sec[2], 1)

    def error(self, msg: str, table: tuple[str, ...] = (), key: str | None = None, index: int = 0,
              notes: Iterable[str] = ()) -> CatalogError:
        return CatalogError(msg, self.loc(table, key, index), tuple(notes))


def _num(tf: _TomlFile, table: tuple[str, ...], d: Mapping[str, Any], key: str, *, index: int = 0,
         positive: bool = False, nonneg: bool = False, integer: bool = False, what: str = "") -> Any:
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        kind = "an integer" if integer else "a number"
        raise tf.error(f"{what}'{key}' must be {kind}, got {value!r}", table, key, index)
    if not math.isfinite(value):
        raise tf.error(f"{what}'{key}' must be finite, got {value!r}", table, key, index)
    if positive and value <= 0:
        raise tf.error(f"{what}'{key}' must be positive, got {value!r}", table, key, index)
    if nonneg and value < 0:
        raise tf.error(f"{what}'{key}' must not be negative, got {value!r}", table, key, index)
    return value


def _str(tf: _TomlFile, table: tuple[str, ...], d: Mapping[str, Any], key: str, choices: Iterable[str] = (),
         *, index: int = 0, what: str = "") -> str:
    value = d[key]
    if not isinstance(value, str):
        raise tf.error(f"{what}'{key}' must be a string, got {value!r}", table, key, index)
    choices = tuple(choices)
    if choices and value not in choices:
        raise tf.error(f"{what}'{key}' must be one of {', '.join(choices)}; got '{value}'", table, key, index)
    return value


# --------------------------------------------------------------------------- devices

# TOML key -> DeviceSpec field, with its check. CPUs write DRAM bandwidth as dram_gbps.
_DEVICE_NUMBERS = {
    "capex_usd": dict(nonneg=True), "memory_gb": dict(positive=True),
    "fp16_tflops": dict(positive=True), "bf16_tflops": dict(nonneg=True),
    "fp8_tflops": dict(nonneg=True), "fp32_tflops": dict(positive=True),
    "tdp_w": dict(nonneg=True), "given_usd_per_hr": dict(nonneg=True),
    "fabric_gbytes_s": dict(nonneg=True), "devices_per_chassis": dict(positive=True, integer=True),
    "nic_gbits_s": dict(positive=True), "fabric_latency_us": dict(nonneg=True),
    "launch_us": dict(nonneg=True), "compute_efficiency": dict(positive=True),
    "memory_efficiency": dict(positive=True), "fp8_compute_efficiency": dict(positive=True),
    "roofline_p": dict(nonneg=True), "allreduce_gbytes_s": dict(nonneg=True),
}
_DEVICE_STRINGS = {"vendor": (), "kind": DEVICE_KINDS, "target": TARGETS, "chip": (), "triple": ()}
_DEVICE_REQUIRED = ("kind", "memory_gb", "fp16_tflops", "fp32_tflops", "tdp_w", "capex_usd",
                    "devices_per_chassis", "nic_gbits_s", "launch_us", "target")
_DEVICE_OPTIONAL_DEFAULTS = {"vendor": "", "bf16_tflops": 0.0, "fp8_tflops": 0.0, "given_usd_per_hr": None,
                             "fabric_gbytes_s": 0.0, "fabric_latency_us": 0.0,
                             "compute_efficiency": 1.0, "memory_efficiency": 1.0,
                             "fp8_compute_efficiency": None, "roofline_p": 0.0, "allreduce_gbytes_s": 0.0,
                             "chip": "", "triple": ""}
_ABSTRACT_KEYS = ("given_usd_per_hr", "vendor", "kind")


def _device_from_table(tf: _TomlFile, name: str, raw: Mapping[str, Any],
                       base: Mapping[str, Any] | None, table: tuple[str, ...]) -> tuple[DeviceSpec, dict]:
    """Check one `[device.NAME]` table (merged over `base` keys) and build the spec.
    Returns the spec and the merged raw keys (kept so later files can override them)."""
    if not isinstance(raw, dict):
        raise tf.error(f"'device.{name}' must be a table", table)
    merged = dict(base or {})
    merged.update(raw)
    known = set(_DEVICE_NUMBERS) | set(_DEVICE_STRINGS) | {"hbm_gbps", "dram_gbps", "base"}
    for key in raw:
        if key not in known:
            raise tf.error(f"unknown key '{key}' in device '{name}'", table, key,
                           notes=_did_you_mean(key, known))
    what = f"device '{name}': "
    abstract = merged.get("kind") == "abstract" or (base is None and "kind" not in merged
                                                    and set(merged) <= set(_ABSTRACT_KEYS))
    if abstract:
        given = None
        if "given_usd_per_hr" in merged:
            given = _num(tf, table, merged, "given_usd_per_hr", nonneg=True, what=what)
        return DeviceSpec(name=name, kind="abstract", vendor=str(merged.get("vendor", "")),
                          given_usd_per_hr=given, source=tf.path), merged
    for key in _DEVICE_REQUIRED:
        if key not in merged:
            raise tf.error(f"device '{name}' is missing '{key}'", table)
    bw_keys = [k for k in ("hbm_gbps", "dram_gbps") if k in merged]
    if len(bw_keys) != 1:
        raise tf.error(f"device '{name}' needs exactly one of 'hbm_gbps' or 'dram_gbps' (GB/s)",
                       table, bw_keys[-1] if bw_keys else None)
    values: dict[str, Any] = dict(_DEVICE_OPTIONAL_DEFAULTS)
    for key, checks in _DEVICE_NUMBERS.items():
        if key in merged:
            values[key] = _num(tf, table, merged, key, what=what, **checks)
    for key, choices in _DEVICE_STRINGS.items():
        if key in merged:
            values[key] = _str(tf, table, merged, key, choices, what=what)
    values["mem_gbps"] = _num(tf, table, merged, bw_keys[0], positive=True, what=what)
    for key in ("compute_efficiency", "memory_efficiency", "fp8_compute_efficiency"):
        if values[key] is not None and values[key] > 1:
            raise tf.error(f"{what}'{key}' is a fraction of peak and must be at most 1", table, key)
    if values["devices_per_chassis"] > 1 and values["fabric_gbytes_s"] <= 0:
        raise tf.error(f"{what}'fabric_gbytes_s' must be positive when devices_per_chassis > 1",
                       table, "fabric_gbytes_s" if "fabric_gbytes_s" in merged else "devices_per_chassis")
    if values["kind"] == "abstract":
        raise tf.error(f"{what}an abstract device cannot set hardware numbers", table, "kind")
    return DeviceSpec(name=name, source=tf.path, **values), merged


def _load_device_tables(tf: _TomlFile, tables: Any, devices: dict[str, DeviceSpec],
                        raws: dict[str, dict]) -> None:
    if not isinstance(tables, dict):
        raise tf.error("'device' must be a table of [device.NAME] tables", ("device",))
    for name, raw in tables.items():
        table = ("device", name)
        base = raws.get(name)
        if isinstance(raw, dict) and "base" in raw:
            base_name = raw["base"]
            if base_name not in raws:
                raise tf.error(f"unknown device type '{base_name}'", table, "base",
                               notes=_did_you_mean(str(base_name), raws))
            base = {k: v for k, v in raws[base_name].items() if k != "base"}
        spec, merged = _device_from_table(tf, name, raw, base, table)
        devices[name] = spec
        raws[name] = merged


# --------------------------------------------------------------------------- models

_MODEL_INTS = ("layers", "d_model", "heads", "kv_heads", "ffn", "vocab", "experts", "top_k",
               "position_embeddings", "encoder_layers", "mel_bins", "sample_rate_hz",
               "flow_params", "vocoder_params")
_MODEL_FLOATS = ("audio_frames_per_s", "window_ms", "frames_per_token", "vocoder_gflop_per_audio_s")
_MODEL_BOOLS = ("gated_ffn", "tied_embeddings")
_MODEL_REQUIRED = ("kind", "layers", "d_model", "heads", "kv_heads", "ffn", "vocab")
_MODEL_KIND_REQUIRED = {
    "stt": ("encoder_layers", "mel_bins", "audio_frames_per_s", "window_ms"),
    "tts": ("frames_per_token", "sample_rate_hz", "vocoder_gflop_per_audio_s"),
}
_MODEL_KEYS = set(_MODEL_INTS) | set(_MODEL_FLOATS) | set(_MODEL_BOOLS) | {"kind", "dtype"}


def _check_model(name: str, values: Mapping[str, Any], fail) -> ModelSpec:
    """Validate merged model keys; `fail(msg, key)` builds the error to raise."""
    for key in values:
        if key not in _MODEL_KEYS:
            raise fail(f"unknown key '{key}' in model '{name}'", key, _did_you_mean(key, _MODEL_KEYS))
    for key in _MODEL_REQUIRED:
        if key not in values:
            raise fail(f"model '{name}' is missing '{key}'", None, ())
    kind = values["kind"]
    if kind not in MODEL_KINDS:
        raise fail(f"model '{name}': 'kind' must be one of {', '.join(MODEL_KINDS)}; got {kind!r}", "kind", ())
    for key in _MODEL_KIND_REQUIRED.get(kind, ()):
        if key not in values:
            raise fail(f"{kind} model '{name}' is missing '{key}'", None, ())
    dtype = values.get("dtype", "fp16")
    if dtype not in DTYPE_BYTES:
        raise fail(f"model '{name}': unknown dtype {dtype!r} (known: {', '.join(DTYPE_BYTES)})", "dtype", ())
    for key in _MODEL_INTS:
        if key in values:
            v = values[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise fail(f"model '{name}': '{key}' must be a non-negative integer, got {v!r}", key, ())
    for key in _MODEL_FLOATS:
        if key in values:
            v = values[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise fail(f"model '{name}': '{key}' must be a non-negative number, got {v!r}", key, ())
    for key in _MODEL_BOOLS:
        if key in values and not isinstance(values[key], bool):
            raise fail(f"model '{name}': '{key}' must be true or false, got {values[key]!r}", key, ())
    for key in ("layers", "d_model", "heads", "kv_heads", "ffn", "vocab"):
        if values[key] <= 0:
            raise fail(f"model '{name}': '{key}' must be positive", key, ())
    if values["d_model"] % values["heads"] or values["heads"] % values["kv_heads"]:
        raise fail(f"model '{name}': heads must divide d_model and kv_heads must divide heads",
                   "kv_heads", ())
    experts, top_k = values.get("experts", 1), values.get("top_k", 1)
    if experts < 1 or not 1 <= top_k <= experts:
        raise fail(f"model '{name}': need 1 <= top_k <= experts, got top_k={top_k}, experts={experts}",
                   "top_k", ())
    return ModelSpec(name=name, **{k: v for k, v in values.items()})


def _load_model_tables(tf: _TomlFile, tables: Any, models: dict[str, ModelSpec], raws: dict[str, dict]) -> None:
    if not isinstance(tables, dict):
        raise tf.error("'model' must be a table of [model.NAME] tables", ("model",))
    for name, raw in tables.items():
        table = ("model", name)
        if not isinstance(raw, dict):
            raise tf.error(f"'model.{name}' must be a table", table)
        merged = dict(raws.get(name, {}))
        merged.update(raw)
        spec = _check_model(name, merged, lambda msg, key, notes: tf.error(msg, table, key, notes=notes))
        models[name] = dataclasses.replace(spec, source=tf.path)
        raws[name] = merged


def model_from_decl(base: ModelSpec | None, *, name: str | None = None, loc: SourceLoc | None = None,
                    **overrides: Any) -> ModelSpec:
    """A model from a `.agent` declaration: `base` (a catalog model or None) with the
    declared keys (the TOML keys of models.toml) overriding it. Errors carry `loc`."""
    values: dict[str, Any] = {}
    if base is not None:
        values = {f.name: getattr(base, f.name) for f in dataclasses.fields(ModelSpec)
                  if f.name not in ("name", "source")}
    values.update(overrides)
    model_name = name or (base.name if base is not None else "model")
    spec = _check_model(model_name, values, lambda msg, key, notes: CatalogError(msg, loc, notes))
    return dataclasses.replace(spec, source=base.source if base is not None else "")


# --------------------------------------------------------------------------- catalog

def _package_file(name: str) -> str:
    return str(resources.files(__name__).joinpath(name))


class _CatalogBuilder:
    """Accumulates devices/models over several files, later files overriding earlier."""

    def __init__(self) -> None:
        self.devices: dict[str, DeviceSpec] = {}
        self.models: dict[str, ModelSpec] = {}
        self.device_raws: dict[str, dict] = {}
        self.model_raws: dict[str, dict] = {}
        self.files: list[str] = []

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> "_CatalogBuilder":
        b = cls()
        b.devices = dict(catalog.devices)
        b.models = dict(catalog.models)
        b.files = list(catalog.files)
        b.device_raws = {n: _device_raw(d) for n, d in catalog.devices.items()}
        b.model_raws = {n: {f.name: getattr(m, f.name) for f in dataclasses.fields(ModelSpec)
                            if f.name not in ("name", "source")} for n, m in catalog.models.items()}
        return b

    def add_file(self, path: str, allowed: tuple[str, ...] = ("device", "model", "measured")) -> _TomlFile:
        tf = _TomlFile(path)
        for key in tf.data:
            if key not in allowed:
                raise tf.error(f"unexpected top-level key '{key}' in a catalog file "
                               f"(expected {' or '.join(f'[{a}]' if a == 'measured' else f'[{a}.NAME]' for a in allowed)})",
                               (), key)
        if "device" in tf.data:
            _load_device_tables(tf, tf.data["device"], self.devices, self.device_raws)
        if "model" in tf.data:
            _load_model_tables(tf, tf.data["model"], self.models, self.model_raws)
        self.files.append(path)
        return tf

    def build(self) -> Catalog:
        return Catalog(devices=dict(sorted(self.devices.items())), models=dict(sorted(self.models.items())),
                       files=tuple(self.files))


def _device_raw(d: DeviceSpec) -> dict:
    """TOML keys equivalent to a spec, so files can override single keys of it."""
    if d.is_abstract:
        raw: dict[str, Any] = {"kind": "abstract"}
        if d.given_usd_per_hr is not None:
            raw["given_usd_per_hr"] = d.given_usd_per_hr
        return raw
    raw = {k: getattr(d, k) for k in list(_DEVICE_NUMBERS) + list(_DEVICE_STRINGS)}
    if raw["given_usd_per_hr"] is None:
        del raw["given_usd_per_hr"]
    raw["dram_gbps" if d.is_cpu else "hbm_gbps"] = d.mem_gbps
    return raw


def load_catalog(extra_files: Iterable[str | os.PathLike] = ()) -> Catalog:
    """The shipped devices and models, then each extra file adding or overriding."""
    b = _CatalogBuilder()
    b.add_file(_package_file("devices.toml"), ("device",))
    b.add_file(_package_file("models.toml"), ("model",))
    for path in extra_files:
        b.add_file(os.fspath(path))
    return b.build()


def load_device_profile(path: str | os.PathLike) -> DeviceSpec:
    """The device described by a calibrate profile (exactly one `[device.NAME]` table;
    the `[measured]` table with raw figures is allowed and ignored here)."""
    tf = _TomlFile(os.fspath(path))
    for key in tf.data:
        if key not in ("device", "measured"):
            raise tf.error(f"unexpected top-level key '{key}' in a device profile", (), key)
    tables = tf.data.get("device")
    if not isinstance(tables, dict) or len(tables) != 1:
        raise tf.error("a device profile needs exactly one [device.NAME] table", ("device",))
    devices: dict[str, DeviceSpec] = {}
    _load_device_tables(tf, tables, devices, {})
    (spec,) = devices.values()
    return spec


# --------------------------------------------------------------------------- clusters

_CLUSTER_KEYS = {"name", "pricing", "energy_usd_per_kwh", "financing_years", "interest_rate",
                 "device_files", "device", "pool", "link", "default_link", "profile"}


def load_cluster(path: str | os.PathLike | None, catalog: Catalog) -> Cluster:
    """Read a cluster inventory (None: the shipped default mixed fleet)."""
    path = _package_file("default_cluster.toml") if path is None else os.fspath(path)
    tf = _TomlFile(path)
    data = tf.data
    for key in data:
        if key not in _CLUSTER_KEYS:
            raise tf.error(f"unknown key '{key}' in cluster file", (), key, notes=_did_you_mean(key, _CLUSTER_KEYS))

    b = _CatalogBuilder.from_catalog(catalog)
    files = [path]
    device_files = data.get("device_files", [])
    if not isinstance(device_files, list) or not all(isinstance(p, str) for p in device_files):
        raise tf.error("'device_files' must be a list of paths", (), "device_files")
    for rel in device_files:
        full = rel if os.path.isabs(rel) else os.path.join(os.path.dirname(path), rel)
        if not os.path.isfile(full):
            raise tf.error(f"device file '{rel}' not found", (), "device_files")
        b.add_file(full, ("device", "model", "measured"))
        files.append(full)
    if "device" in data:
        _load_device_tables(tf, data["device"], b.devices, b.device_raws)

    name = data.get("name", os.path.splitext(os.path.basename(path))[0])
    if not isinstance(name, str):
        raise tf.error("'name' must be a string", (), "name")
    pricing = _str(tf, (), data, "pricing", PRICING) if "pricing" in data else "tco"
    energy = _num(tf, (), data, "energy_usd_per_kwh", nonneg=True) if "energy_usd_per_kwh" in data else 0.40
    years = _num(tf, (), data, "financing_years", positive=True) if "financing_years" in data else 4
    rate = _num(tf, (), data, "interest_rate", nonneg=True) if "interest_rate" in data else 0.08

    pools = _load_pools(tf, data.get("pool"), b.devices)
    pool_names = {p.name for p in pools}
    links = _load_links(tf, data.get("link", []), pool_names)
    default_link = None
    if "default_link" in data:
        dl = data["default_link"]
        table = ("default_link",)
        if not isinstance(dl, dict) or "gbps" not in dl:
            raise tf.error("[default_link] needs 'gbps'", table)
        default_link = Link("*", "*", _num(tf, table, dl, "gbps", positive=True, what="default_link: "),
                            _num(tf, table, dl, "latency_ms", nonneg=True, what="default_link: ")
                            if "latency_ms" in dl else 0.0)
    classes = {p.device.name for p in pools} | set(data.get("device", {}) or {})
    profiles = _load_profiles(tf, data.get("profile", []), classes)
    return Cluster(name=name, pools=pools, links=links, energy_usd_per_kwh=energy, financing_years=years,
                   interest_rate=rate, pricing=pricing, profiles=profiles, default_link=default_link,
                   files=tuple(files))


def _array_of_tables(tf: _TomlFile, value: Any, key: str) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise tf.error(f"'{key}' must be an array of tables ([[{key}]])", (), key)
    return value


def _load_pools(tf: _TomlFile, value: Any, devices: Mapping[str, DeviceSpec]) -> tuple[Pool, ...]:
    if value is None:
        raise tf.error("a cluster needs at least one [[pool]]")
    pools: list[Pool] = []
    for i, raw in enumerate(_array_of_tables(tf, value, "pool")):
        table = ("pool",)
        for key in raw:
            if key not in ("name", "device", "count", "nodes"):
                raise tf.error(f"unknown key '{key}' in [[pool]]", table, key, i)
        for key in ("name", "device", "count"):
            if key not in raw:
                raise tf.error(f"[[pool]] is missing '{key}'", table, None, i)
        name = _str(tf, table, raw, "name", index=i)
        dev_name = _str(tf, table, raw, "device", index=i)
        if dev_name not in devices:
            raise tf.error(f"unknown device type '{dev_name}' in pool '{name}'", table, "device", i,
                           notes=_did_you_mean(dev_name, devices))
        what = f"pool '{name}': "
        count = _num(tf, table, raw, "count", index=i, positive=True, integer=True, what=what)
        nodes = _num(tf, table, raw, "nodes", index=i, positive=True, integer=True, what=what) if "nodes" in raw else 1
        if nodes > count:
            raise tf.error(f"{what}{nodes} nodes for {count} devices", table, "nodes", i)
        if any(p.name == name for p in pools):
            raise tf.error(f"duplicate pool name '{name}'", table, "name", i)
        pools.append(Pool(name, devices[dev_name], count, nodes))
    return tuple(pools)


def _load_links(tf: _TomlFile, value: Any, pools: set[str]) -> tuple[Link, ...]:
    links: list[Link] = []
    for i, raw in enumerate(_array_of_tables(tf, value, "link")):
        table = ("link",)
        for key in raw:
            if key not in ("a", "b", "gbps", "latency_ms"):
                raise tf.error(f"unknown key '{key}' in [[link]]", table, key, i)
        for key in ("a", "b", "gbps"):
            if key not in raw:
                raise tf.error(f"[[link]] is missing '{key}'", table, None, i)
        ends = []
        for key in ("a", "b"):
            end = _str(tf, table, raw, key, index=i)
            if end not in pools:
                raise tf.error(f"link endpoint '{end}' is not a pool", table, key, i,
                               notes=_did_you_mean(end, pools))
            ends.append(end)
        if ends[0] == ends[1]:
            raise tf.error("a link must join two different pools", table, "b", i)
        if any({ln.a, ln.b} == set(ends) for ln in links):
            raise tf.error(f"pools '{ends[0]}' and '{ends[1]}' are already linked (links are undirected)",
                           table, "a", i)
        gbps = _num(tf, table, raw, "gbps", index=i, positive=True, what="link: ")
        lat = _num(tf, table, raw, "latency_ms", index=i, nonneg=True, what="link: ") if "latency_ms" in raw else 0.0
        links.append(Link(ends[0], ends[1], gbps, lat))
    return tuple(links)


def _load_profiles(tf: _TomlFile, value: Any, classes: set[str]) -> tuple[Profile, ...]:
    profiles: list[Profile] = []
    for i, raw in enumerate(_array_of_tables(tf, value, "profile")):
        table = ("profile",)
        allowed = ("op", "device", "from", "to", "latency_ms", "usd_per_token", "usd_per_call")
        for key in raw:
            if key not in allowed:
                raise tf.error(f"unknown key '{key}' in [[profile]]", table, key, i,
                               notes=_did_you_mean(key, allowed))
        for key in ("op", "latency_ms"):
            if key not in raw:
                raise tf.error(f"[[profile]] is missing '{key}'", table, None, i)
        op = _str(tf, table, raw, "op", index=i)
        from agentc.dialects.ops import KINDS
        kind = op if op in KINDS else f"llm.{op}"
        if kind not in KINDS:
            names = sorted(set(KINDS) | {k[4:] for k in KINDS if k.startswith("llm.")})
            raise tf.error(f"unknown op kind '{op}' in [[profile]]", table, "op", i,
                           notes=_did_you_mean(op, names))
        if ("device" in raw) == ("from" in raw or "to" in raw) or (("from" in raw) != ("to" in raw)):
            raise tf.error("a [[profile]] names either 'device' or both 'from' and 'to'", table, "op", i)
        names = {}
        for key in ("device", "from", "to"):
            if key in raw:
                names[key] = _str(tf, table, raw, key, index=i)
                if names[key] not in classes:
                    raise tf.error(f"unknown device type '{names[key]}' in [[profile]]", table, key, i,
                                   notes=_did_you_mean(names[key], classes))
        if "usd_per_token" in raw and "usd_per_call" in raw:
            raise tf.error("a [[profile]] sets 'usd_per_token' or 'usd_per_call', not both", table,
                           "usd_per_call", i)
        prices = {k: _num(tf, table, raw, k, index=i, nonneg=True, what="profile: ")
                  for k in ("usd_per_token", "usd_per_call") if k in raw}
        if any(p.matches(kind) and (p.device, p.src, p.dst) == (names.get("device"), names.get("from"),
                                                                 names.get("to")) for p in profiles):
            raise tf.error(f"a second [[profile]] for op '{op}' on the same device", table, "op", i)
        profiles.append(Profile(op=op, latency_ms=_num(tf, table, raw, "latency_ms", index=i, nonneg=True,
                                                       what="profile: "),
                                device=names.get("device"), src=names.get("from"), dst=names.get("to"),
                                **prices))
    return tuple(profiles)


def list_files_used(catalog: Catalog | None = None, cluster: Cluster | None = None) -> list[str]:
    """Every catalog and cluster file read, sorted: the inputs of a Make depfile."""
    files: set[str] = set()
    if catalog is not None:
        files.update(catalog.files)
    if cluster is not None:
        files.update(cluster.files)
    return sorted(files)
