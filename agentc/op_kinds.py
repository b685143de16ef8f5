"""The granular op kinds that agentc prices and places: the one list of their names.

The cost model has a demand function per kind (`agentc.costmodel`), and a cluster's
`[[profile]]` entries name kinds (or an LLM kind by its short name, "prefill"). Both
read this list. It imports nothing, so the catalog can check a profile's op without
importing the cost model, which itself imports the catalog's data types.
"""

from __future__ import annotations

__all__ = ["OP_KINDS", "canonical_kind", "profile_op_names"]

OP_KINDS: tuple[str, ...] = (
    "comm.allreduce", "compute.cpu", "embed.encode", "embed.pool", "kv.transfer", "llm.decode",
    "llm.detokenize", "llm.prefill", "llm.sample", "llm.tokenize", "memory.read", "memory.write",
    "moe.expert_decode", "moe.expert_prefill", "moe.gate_select", "moe.merge", "observe.append",
    "retrieve.search", "stt.decode", "stt.encode", "stt.featurize", "tool.compute", "tool.lookup",
    "tts.synthesize", "tts.vocode",
)


def canonical_kind(op: str) -> str | None:
    """The kind `op` names: itself, or `llm.<op>` for an LLM short name; else None."""
    if op in OP_KINDS:
        return op
    return f"llm.{op}" if f"llm.{op}" in OP_KINDS else None


def profile_op_names() -> list[str]:
    """Every name a `[[profile]]` may give as `op`, sorted (for did-you-mean notes)."""
    return sorted(set(OP_KINDS) | {k[4:] for k in OP_KINDS if k.startswith("llm.")})
