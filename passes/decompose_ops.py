"""decompose-ops: the granular ops of every non-LLM node.

    agent.stt      -> stt.featurize (log-mel, CPU-friendly) -> stt.encode -> stt.decode
    agent.tts      -> tts.synthesize -> tts.vocode
    agent.embed    -> embed.encode -> embed.pool
    agent.retrieve -> retrieve.search
    memory.load    -> memory.read;   memory.store -> memory.write
    agent.observe  -> observe.append; agent.compute -> compute.cpu

Each piece stresses a different resource (the featuriser is CPU work, the encoder is
compute-bound, the vector scan is memory-bound), so each is costed and placed on its
own. Sizes come from the node's attributes (audio length, tokens, index size).
"""

from __future__ import annotations

from agentc.frontend.lower import SPEECH_MS_PER_TOKEN, STT_DEFAULT_MS, TTS_DEFAULT_TOKENS, attrs
from agentc.passes._ir import apply_patterns, copy_attrs, get, make

NAME = "decompose-ops"


def _a(op, suffix, **kw):
    label = get(op, "label", op.name)
    out = attrs(label=f"{label}.{suffix}" if suffix else label, call=label, **kw)
    out.update(copy_attrs(op, "model"))
    return out


def _stt(op, rewriter):
    audio_ms = get(op, "audio_ms", STT_DEFAULT_MS)
    tokens = get(op, "tokens", max(1, int(audio_ms / 1000 * 4)))
    with rewriter.ip:
        mel = make("stt.featurize", list(op.operands), "tensor", _a(op, "featurize", audio_ms=audio_ms), op.location)
        enc = make("stt.encode", [mel], "tensor", _a(op, "encode", audio_ms=audio_ms), op.location)
        text = make("stt.decode", [enc], "text", _a(op, "decode", tokens=tokens, audio_ms=audio_ms), op.location)
    rewriter.replace_op(op, [text])


def _tts(op, rewriter):
    tokens = get(op, "tokens", TTS_DEFAULT_TOKENS)
    audio_ms = get(op, "audio_ms", tokens * SPEECH_MS_PER_TOKEN)
    with rewriter.ip:
        frames = make("tts.synthesize", list(op.operands), "tensor", _a(op, "synthesize", tokens=tokens), op.location)
        audio = make("tts.vocode", [frames], "audio", _a(op, "vocode", audio_ms=audio_ms), op.location)
    rewriter.replace_op(op, [audio])


def _embed(op, rewriter):
    tokens = get(op, "tokens", 256)
    with rewriter.ip:
        hidden = make("embed.encode", list(op.operands), "tensor", _a(op, "encode", tokens=tokens, batch=1),
                      op.location)
        vec = make("embed.pool", [hidden], "embedding", _a(op, "pool", tokens=tokens, batch=1), op.location)
    rewriter.replace_op(op, [vec])


def _retrieve(op, rewriter):
    with rewriter.ip:
        docs = make("retrieve.search", list(op.operands), "documents",
                    _a(op, "", index=get(op, "index"), index_size=get(op, "index_size"), dim=get(op, "dim"),
                       k=get(op, "k")), op.location)
    rewriter.replace_op(op, [docs])


def _simple(new_name, result_kind, *keep):
    def pattern(op, rewriter):
        kw = {k: get(op, k) for k in keep if get(op, k) is not None}
        with rewriter.ip:
            out = make(new_name, list(op.operands), result_kind, _a(op, "", **kw), op.location)
        rewriter.replace_op(op, [out] if out is not None else [])
    return pattern


def run(module, ctx) -> None:
    apply_patterns(module, {
        "agent.stt": _stt,
        "agent.tts": _tts,
        "agent.embed": _embed,
        "agent.retrieve": _retrieve,
        "memory.load": _simple("memory.read", "documents", "bytes", "latency_ms", "store"),
        "memory.store": _simple("memory.write", None, "bytes", "latency_ms", "store"),
        "agent.observe": _simple("observe.append", None, "bytes"),
        "agent.compute": _simple("compute.cpu", "json", "cost_ms", "flops", "fn"),
    })
