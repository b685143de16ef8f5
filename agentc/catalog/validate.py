"""Typed readers and range checks for catalog and cluster values, and the name rule.

Every number in a catalog or cluster file is checked for type, sign and size here, and
every device, model, pool and cluster name against one rule (`NAME_RULE`), so a
mistake is reported where it is written, as a `CatalogError` at the key's line and
column, instead of as a crash or a nonsense plan later. The limits are documented in
the README (section "Cluster files"):

- names: an ASCII letter, then ASCII letters, digits, `_` or `-`; at most 64
  characters. Pool names become directory and symbol names in the output, so a name
  can never be a path (`..`, `/`, NUL), hidden (`.x`), reserved (`manifest.json`) or
  non-ASCII.
- numbers: finite, at most `MAX_NUMBER` (1e12) in their unit; device counts (pool
  `count`, `nodes`, `devices_per_chassis`) are integers of at most `MAX_DEVICES`
  (1,000,000); model shape integers at most `MAX_MODEL_INT` (2^40).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable, Iterable, Mapping

from agentc.catalog.specs import DEVICE_KINDS, DTYPE_BYTES, MODEL_KINDS, TARGETS, DeviceSpec, ModelSpec, did_you_mean
from agentc.catalog.toml_source import TomlFile
from agentc.diagnostics import CatalogError, SourceLoc

__all__ = [
    "NAME_RULE", "MAX_NAME_CHARS", "RESERVED_NAMES", "MAX_NUMBER", "MAX_DEVICES", "MAX_MODEL_INT",
    "name_problem", "check_name", "number", "string", "device_from_table", "check_model", "model_from_decl",
    "DEVICE_NUMBERS", "DEVICE_STRINGS",
]

NAME_RULE = "an ASCII letter, then ASCII letters, digits, '_' or '-'; at most 64 characters"
MAX_NAME_CHARS = 64
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
# Names of files agentc itself writes at the top of an output directory. The character
# rule already excludes them (they hold a '.'); they are named here so the message says why.
RESERVED_NAMES = ("manifest.json", ".agentc-output")
MAX_NUMBER = 1e12
MAX_DEVICES = 1_000_000
MAX_MODEL_INT = 2**40
MAX_CURVE_SIZE = 1e18  # a measured curve's sizes: FLOPs of one call reach 1e12 at n = 8192


def _shown(name: str) -> str:
    return repr(name if len(name) <= 40 else name[:40] + "...")


def name_problem(name: str) -> str | None:
    """Why `name` breaks the name rule, or None when it follows it."""
    if name == "":
        return "is empty"
    if "\0" in name:
        return "contains a NUL character"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if ".." in name:
        return "contains '..'"
    if name in RESERVED_NAMES:
        return "is reserved (agentc writes a file of that name)"
    if name.startswith("."):
        return "starts with '.' (hidden and reserved names)"
    if not name.isascii():
        return "contains non-ASCII characters"
    if len(name) > MAX_NAME_CHARS:
        return f"is {len(name)} characters long"
    if not _NAME.fullmatch(name):
        bad = next((c for c in name if not (c.isalnum() or c in "_-")), None)
        return f"contains {bad!r}" if bad is not None else "does not start with a letter"
    return None


def check_name(name: str, what: str, fail: Callable[[str], CatalogError]) -> str:
    """`name` if it follows the name rule; else the error `fail(message)` built at the
    entry's location. `what` says whose name it is ("pool", "device")."""
    problem = name_problem(name)
    if problem is not None:
        raise fail(f"{what} name {_shown(name)} {problem}: names must be {NAME_RULE} "
                   f"(they become file and symbol names)")
    return name


def _limit(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


def number(tf: TomlFile, table: tuple[str, ...], d: Mapping[str, Any], key: str, *, index: int = 0,
           positive: bool = False, nonneg: bool = False, integer: bool = False, what: str = "",
           high: float = MAX_NUMBER) -> Any:
    """`d[key]` checked: a number (an integer if `integer`), finite, in range."""
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
    if value > high:
        raise tf.error(f"{what}'{key}' must be at most {_limit(high)}, got {value!r}", table, key, index)
    return value


def string(tf: TomlFile, table: tuple[str, ...], d: Mapping[str, Any], key: str, choices: Iterable[str] = (),
           *, index: int = 0, what: str = "") -> str:
    """`d[key]` checked: a string, one of `choices` when given."""
    value = d[key]
    if not isinstance(value, str):
        raise tf.error(f"{what}'{key}' must be a string, got {value!r}", table, key, index)
    choices = tuple(choices)
    if choices and value not in choices:
        raise tf.error(f"{what}'{key}' must be one of {', '.join(choices)}; got {_shown(value)}", table, key, index)
    return value


# TOML key -> DeviceSpec field, with its check. CPUs write DRAM bandwidth as dram_gbps.
DEVICE_NUMBERS = {
    "capex_usd": dict(nonneg=True), "memory_gb": dict(positive=True),
    "fp16_tflops": dict(positive=True), "bf16_tflops": dict(nonneg=True),
    "fp8_tflops": dict(nonneg=True), "fp32_tflops": dict(positive=True),
    "tdp_w": dict(nonneg=True), "given_usd_per_hr": dict(nonneg=True),
    "fabric_gbytes_s": dict(nonneg=True), "devices_per_chassis": dict(positive=True, integer=True, high=MAX_DEVICES),
    "nic_gbits_s": dict(positive=True), "fabric_latency_us": dict(nonneg=True),
    "launch_us": dict(nonneg=True), "compute_efficiency": dict(positive=True),
    "memory_efficiency": dict(positive=True), "fp8_compute_efficiency": dict(positive=True),
    "roofline_p": dict(nonneg=True), "allreduce_gbytes_s": dict(nonneg=True),
    "elementwise_memory_efficiency": dict(positive=True), "elementwise_launch_us": dict(nonneg=True),
}
DEVICE_STRINGS = {"vendor": (), "kind": DEVICE_KINDS, "target": TARGETS, "chip": (), "triple": ()}
# Measured rate curves (agentc calibrate): [[size, rate], ...] with sizes increasing.
DEVICE_CURVES = {"bandwidth_curve": ("working-set bytes", "GB/s"), "gemm_curve": ("FLOPs per call", "GFLOP/s"),
                 "copy_curve": ("working-set bytes", "GB/s")}
_DEVICE_REQUIRED = ("kind", "memory_gb", "fp16_tflops", "fp32_tflops", "tdp_w", "capex_usd",
                    "devices_per_chassis", "nic_gbits_s", "launch_us", "target")
_DEVICE_OPTIONAL_DEFAULTS = {"vendor": "", "bf16_tflops": 0.0, "fp8_tflops": 0.0, "given_usd_per_hr": None,
                             "fabric_gbytes_s": 0.0, "fabric_latency_us": 0.0,
                             "compute_efficiency": 1.0, "memory_efficiency": 1.0,
                             "fp8_compute_efficiency": None, "roofline_p": 0.0, "allreduce_gbytes_s": 0.0,
                             "elementwise_memory_efficiency": None, "elementwise_launch_us": None,
                             "bandwidth_curve": (), "gemm_curve": (), "copy_curve": (), "chip": "", "triple": ""}
_ABSTRACT_KEYS = ("given_usd_per_hr", "vendor", "kind")


def device_from_table(tf: TomlFile, name: str, raw: Mapping[str, Any],
                       base: Mapping[str, Any] | None, table: tuple[str, ...]) -> tuple[DeviceSpec, dict]:
    """Check one `[device.NAME]` table (merged over `base` keys) and build the spec.
    Returns the spec and the merged raw keys (kept so later files can override them)."""
    if not isinstance(raw, dict):
        raise tf.error(f"'device.{name}' must be a table", table)
    merged = dict(base or {})
    merged.update(raw)
    known = set(DEVICE_NUMBERS) | set(DEVICE_STRINGS) | set(DEVICE_CURVES) | {"hbm_gbps", "dram_gbps", "base"}
    for key in raw:
        if key not in known:
            raise tf.error(f"unknown key '{key}' in device '{name}'", table, key,
                           notes=did_you_mean(key, known))
    what = f"device '{name}': "
    abstract = merged.get("kind") == "abstract" or (base is None and "kind" not in merged
                                                    and set(merged) <= set(_ABSTRACT_KEYS))
    if abstract:
        given = None
        if "given_usd_per_hr" in merged:
            given = number(tf, table, merged, "given_usd_per_hr", nonneg=True, what=what)
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
    for key, checks in DEVICE_NUMBERS.items():
        if key in merged:
            values[key] = number(tf, table, merged, key, what=what, **checks)
    for key, choices in DEVICE_STRINGS.items():
        if key in merged:
            values[key] = string(tf, table, merged, key, choices, what=what)
    for key in DEVICE_CURVES:
        if key in merged:
            values[key] = _curve(tf, table, merged, key, what)
    values["mem_gbps"] = number(tf, table, merged, bw_keys[0], positive=True, what=what)
    for key in ("compute_efficiency", "memory_efficiency", "fp8_compute_efficiency", "elementwise_memory_efficiency"):
        if values[key] is not None and values[key] > 1:
            raise tf.error(f"{what}'{key}' is a fraction of peak and must be at most 1", table, key)
    if values["devices_per_chassis"] > 1 and values["fabric_gbytes_s"] <= 0:
        raise tf.error(f"{what}'fabric_gbytes_s' must be positive when devices_per_chassis > 1",
                       table, "fabric_gbytes_s" if "fabric_gbytes_s" in merged else "devices_per_chassis")
    if values["kind"] == "abstract":
        raise tf.error(f"{what}an abstract device cannot set hardware numbers", table, "kind")
    return DeviceSpec(name=name, source=tf.path, **values), merged


def _curve(tf: TomlFile, table: tuple[str, ...], d: Mapping[str, Any], key: str,
           what: str) -> tuple[tuple[float, float], ...]:
    """`d[key]` checked as a measured curve: a non-empty list of [size, rate] pairs of
    positive finite numbers, sizes strictly increasing (the cost model interpolates)."""
    size, rate = DEVICE_CURVES[key]
    value = d[key]
    shape = f"{what}'{key}' must be a list of [{size}, {rate}] pairs"
    if not isinstance(value, list) or not value:
        raise tf.error(f"{shape}, got {value!r}", table, key)
    out: list[tuple[float, float]] = []
    for i, pair in enumerate(value):
        if (not isinstance(pair, list) or len(pair) != 2
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in pair)):
            raise tf.error(f"{shape}; entry {i} is {pair!r}", table, key)
        if not (math.isfinite(pair[0]) and 0 < pair[0] <= MAX_CURVE_SIZE
                and math.isfinite(pair[1]) and 0 < pair[1] <= MAX_NUMBER):
            raise tf.error(f"{what}'{key}' entry {i}: size and rate must be positive and at most "
                           f"{_limit(MAX_CURVE_SIZE)} and {_limit(MAX_NUMBER)}, got {pair!r}", table, key)
        if out and pair[0] <= out[-1][0]:
            raise tf.error(f"{what}'{key}' entry {i}: sizes must increase, got {pair[0]!r} after "
                           f"{out[-1][0]!r}", table, key)
        out.append((float(pair[0]), float(pair[1])))
    return tuple(out)


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


def check_model(name: str, values: Mapping[str, Any], fail) -> ModelSpec:
    """Validate merged model keys; `fail(msg, key)` builds the error to raise."""
    for key in values:
        if key not in _MODEL_KEYS:
            raise fail(f"unknown key '{key}' in model '{name}'", key, did_you_mean(key, _MODEL_KEYS))
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
            if v > MAX_MODEL_INT:
                raise fail(f"model '{name}': '{key}' must be at most 2^40, got {v!r}", key, ())
    for key in _MODEL_FLOATS:
        if key in values:
            v = values[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise fail(f"model '{name}': '{key}' must be a non-negative number, got {v!r}", key, ())
            if v > MAX_NUMBER:
                raise fail(f"model '{name}': '{key}' must be at most {MAX_NUMBER:g}, got {v!r}", key, ())
    for key in _MODEL_KIND_REQUIRED.get(kind, ()):
        # present but zero is not "missing": the speech models divide by these
        if values[key] <= 0:
            raise fail(f"{kind} model '{name}': '{key}' must be positive, got {values[key]!r}", key, ())
    for key in _MODEL_BOOLS:
        if key in values and not isinstance(values[key], bool):
            raise fail(f"model '{name}': '{key}' must be true or false, got {values[key]!r}", key, ())
    for key in ("layers", "d_model", "heads", "kv_heads", "ffn", "vocab"):
        if values[key] <= 0:
            raise fail(f"model '{name}': '{key}' must be positive", key, ())
    if values["d_model"] % values["heads"] or values["heads"] % values["kv_heads"]:
        raise fail(f"model '{name}': heads must divide d_model and kv_heads must divide heads",
                   "kv_heads", ())
    head_dim = values["d_model"] // values["heads"]
    if kind != "encoder" and head_dim % 2:
        # the generated decoder layers rotate channel pairs (RoPE): an odd head has no pairs
        raise fail(f"{kind} model '{name}': the head dimension d_model/heads = {head_dim} must be even "
                   "(rotary position embeddings rotate pairs of channels)", "heads", ())
    experts, top_k = values.get("experts", 1), values.get("top_k", 1)
    if experts < 1 or not 1 <= top_k <= experts:
        raise fail(f"model '{name}': need 1 <= top_k <= experts, got top_k={top_k}, experts={experts}",
                   "top_k", ())
    return ModelSpec(name=name, **{k: v for k, v in values.items()})


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
    spec = check_model(model_name, values, lambda msg, key, notes: CatalogError(msg, loc, notes))
    return dataclasses.replace(spec, source=base.source if base is not None else "")

