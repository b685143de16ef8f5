"""THE contract of every granular op: one entry per op, read by everything else.

An entry says what the op needs (typed attributes, generated into the IRDL so the MLIR
verifier rejects a missing or mistyped one), what it yields (its result kind and, via
`value_bytes`, how many bytes that value carries across a link), how the cost model
prices it (`demand`: the name of its hook in agentc.costmodel; `phase`; whether it
waits rather than computes; whether tensor parallelism shards it) and what code it
becomes (`kernel`: the linalg kernel kind of agentc's kernel builders, or `abi`: the
runtime C ABI function it calls). The decompose passes create these ops; the cost
model, the planner, partition and the code generators look them up here, so a fact
about an op is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STRING, INTEGER, FLOAT = "string", "integer", "float"

# Attributes every granular op carries: its label (`ans.prefill`) and the call it came from.
COMMON_ATTRS = {"label": STRING, "call": STRING}
_LLM = {"model": STRING, "tokens": INTEGER, "batch": INTEGER}


@dataclass(frozen=True)
class OpContract:
    name: str
    result: str | None               # value kind of the result; None: no result
    attrs: dict[str, str]            # required attributes -> STRING | INTEGER | FLOAT
    demand: str                      # its hook in agentc.costmodel (what it needs)
    phase: str = ""                  # "prefill" | "decode" for the two LLM phases
    waits: bool = False              # mostly waits on an API or a remote store
    splittable: bool = False         # tensor parallelism shards its work
    shard_only_if_too_big: bool = False  # sharded only where one device cannot hold it (an
    # index over k devices, each scanning its shard, then a merge of the k top-k lists)
    kernel: str | None = None        # kernel kind built for it (agentc's kernel builders)
    abi: str | None = None           # runtime C ABI function it calls instead
    doc: str = field(default="", compare=False)


def _op(name, result, attrs, demand, **kw) -> OpContract:
    return OpContract(name, result, {**COMMON_ATTRS, **attrs}, demand, **kw)


OPS: dict[str, OpContract] = {c.name: c for c in (
    _op("llm.tokenize", "tokens", _LLM, "tokenize", abi="agentc_tokenize"),
    _op("llm.prefill", "kv", _LLM, "prefill", phase="prefill", splittable=True, kernel="prefill_layer"),
    _op("kv.transfer", "kv", _LLM, "kv_transfer", splittable=True, abi="agentc_kv_transfer"),
    _op("llm.decode", "tensor", {**_LLM, "context": INTEGER}, "decode", phase="decode", splittable=True,
        kernel="decode_step"),
    _op("llm.sample", "tokens", _LLM, "sample", kernel="sample"),
    _op("llm.detokenize", "text", _LLM, "detokenize", abi="agentc_detokenize"),
    _op("moe.gate_select", "tensor", _LLM, "gate_select", splittable=True, kernel="matmul"),
    _op("moe.expert_prefill", "tensor", _LLM, "prefill", phase="prefill", splittable=True,
        kernel="prefill_layer"),
    _op("moe.expert_decode", "tensor", {**_LLM, "context": INTEGER}, "decode", phase="decode",
        splittable=True, kernel="decode_step"),
    _op("moe.merge", "tensor", _LLM, "merge", splittable=True, kernel="matmul"),
    _op("comm.allreduce", "tensor", {"bytes": INTEGER, "tp": INTEGER, "count": INTEGER}, "allreduce",
        splittable=True, abi="agentc_allreduce"),
    _op("tool.lookup", "json", {"tool": STRING, "latency_ms": FLOAT}, "tool", waits=True,
        abi="agentc_tool_lookup"),
    _op("tool.compute", "json", {"tool": STRING, "latency_ms": FLOAT}, "tool", waits=True,
        abi="agentc_tool_invoke"),
    _op("stt.featurize", "tensor", {"model": STRING, "audio_ms": FLOAT}, "featurize", kernel="logmel"),
    _op("stt.encode", "tensor", {"model": STRING, "audio_ms": FLOAT}, "stt_encode", splittable=True,
        kernel="encoder_layer"),
    _op("stt.decode", "text", {"model": STRING, "audio_ms": FLOAT, "tokens": INTEGER}, "stt_decode",
        splittable=True, kernel="decode_step"),
    _op("tts.synthesize", "tensor", {"model": STRING, "tokens": INTEGER}, "tts_synthesize",
        kernel="encoder_layer"),
    _op("tts.vocode", "audio", {"model": STRING, "audio_ms": FLOAT}, "tts_vocode", kernel="matmul"),
    _op("embed.encode", "tensor", {"model": STRING, "tokens": INTEGER, "batch": INTEGER}, "embed_encode",
        splittable=True, kernel="encoder_layer"),
    _op("embed.pool", "embedding", {"model": STRING, "tokens": INTEGER, "batch": INTEGER}, "embed_pool",
        kernel="mean_pool_l2"),
    _op("retrieve.search", "documents", {"index": STRING, "index_size": INTEGER, "dim": INTEGER, "k": INTEGER},
        "search", splittable=True, shard_only_if_too_big=True, kernel="retrieve"),
    _op("memory.read", "documents", {"store": STRING}, "memory", waits=True, abi="agentc_memory_read"),
    _op("memory.write", None, {"store": STRING}, "memory", waits=True, abi="agentc_memory_write"),
    _op("observe.append", None, {}, "observe", abi="agentc_observe_append"),
    _op("compute.cpu", "json", {"fn": STRING}, "compute_cpu", abi="agentc_compute"),
)}

KINDS: tuple[str, ...] = tuple(sorted(OPS))
PREFILL_KINDS: tuple[str, ...] = tuple(n for n, c in OPS.items() if c.phase == "prefill")
DECODE_KINDS: tuple[str, ...] = tuple(n for n, c in OPS.items() if c.phase == "decode")
WAITING_KINDS: tuple[str, ...] = tuple(n for n, c in OPS.items() if c.waits)
SPLITTABLE: frozenset[str] = frozenset(n for n, c in OPS.items() if c.splittable)
SHARD_ONLY_IF_TOO_BIG: frozenset[str] = frozenset(n for n, c in OPS.items() if c.shard_only_if_too_big)
ABI: dict[str, str] = {n: c.abi for n, c in OPS.items() if c.abi}
# Producer -> consumer pairs that run interleaved layer by layer inside one forward pass
# (the MoE router, the experts and their merge take turns in every layer), so they sit
# on one pool: split, they would trade hidden states across a link twice per layer and
# step, and the KV cache the router receives would not be where attention reads it.
LAYER_INTERLEAVED: frozenset[tuple[str, str]] = frozenset({
    ("moe.gate_select", "moe.expert_prefill"), ("moe.gate_select", "moe.expert_decode"),
    ("moe.expert_prefill", "moe.merge"), ("moe.expert_decode", "moe.merge"),
    ("comm.allreduce", "moe.merge")})



def canonical_kind(op: str) -> str | None:
    """The kind `op` names in a `[[profile]]`: itself, or `llm.<op>` for an LLM short
    name ("prefill"); else None."""
    if op in OPS:
        return op
    return f"llm.{op}" if f"llm.{op}" in OPS else None


def profile_op_names() -> list[str]:
    """Every name a `[[profile]]` may give as `op`, sorted (for did-you-mean notes)."""
    return sorted(set(OPS) | {k[4:] for k in OPS if k.startswith("llm.")})


# Graph-level ops that run a model, and the model kind each needs.
MODEL_KIND_FOR = {"llm.call": "decoder", "agent.stt": "stt", "agent.tts": "tts", "agent.embed": "encoder"}

# Sizes of values whose producer does not say (bytes).
BYTES_PER_TOKEN = 4           # a token id (int32) or a UTF-8 word piece
DEFAULT_TOKENS = 512          # text with no token count: a prompt-sized message
DOCUMENT_BYTES = 2048         # one retrieved chunk (~512 tokens of text)
DEFAULT_JSON_BYTES = 4096     # a tool or compute result with no declared payload
PCM_BYTES_PER_MS = 32         # 16 kHz, 16-bit mono audio
F32 = 4


def kv_cache_bytes(model, isl: float, batch: float = 1) -> float:
    """The KV cache a prefill of `isl` tokens leaves (arXiv 2507.19635, section 5.2):
    2 * layers * d_model * kv_heads/heads * ISL * BS * bytes per element."""
    return 2 * model.layers * model.d_model * (model.kv_heads / model.heads) * isl * batch * model.bytes_per_elem


def value_bytes(op_name: str, kind: str, attrs: dict, model=None) -> float:
    """Bytes of the value an op yields (of value kind `kind`): what a transfer of it
    moves, for the planner's edge prices and partition's send/recv alike. `attrs` are
    the op's attributes; `model` its ModelSpec (None when it has none)."""
    tokens = int(attrs.get("tokens") or attrs.get("context") or DEFAULT_TOKENS)
    batch = int(attrs.get("batch") or 1)
    if kind == "kv":
        return kv_cache_bytes(model, tokens, batch) if model is not None else 1e6 * batch
    if kind in ("text", "tokens"):
        return float(BYTES_PER_TOKEN * tokens * batch)
    if kind == "audio":
        return float(PCM_BYTES_PER_MS * float(attrs.get("audio_ms") or 5000.0))
    if kind == "embedding":
        return float(F32 * (model.d_model if model is not None else int(attrs.get("dim") or 1024)))
    if kind == "documents":
        return float(attrs.get("bytes") or DOCUMENT_BYTES * int(attrs.get("k") or 4))
    if kind == "tensor":
        if op_name == "llm.decode" and model is not None:
            return float(model.vocab * F32 * batch)          # the last step's logits
        if op_name == "stt.featurize" and model is not None:    # 10 ms log-mel frames
            return float(int(float(attrs.get("audio_ms") or 1000.0) / 10) * (model.mel_bins or 80) * F32)
        if op_name == "stt.encode":                            # 20 ms encoder frames
            tokens = max(1, int(float(attrs.get("audio_ms") or 1000.0) / 20))
        width = model.d_model if model is not None else 1024
        return float(tokens * width * (model.bytes_per_elem if model is not None else 2) * batch)
    return float(attrs.get("payload_bytes") or attrs.get("bytes") or DEFAULT_JSON_BYTES)
