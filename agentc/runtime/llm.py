"""LLM ops at run time: a Llama-architecture decoder from a safetensors checkpoint,
answering `llm.tokenize`, `llm.prefill`, `llm.decode` and `llm.detokenize`."""

from __future__ import annotations

from agentc.diagnostics import SourceLoc
from agentc.runtime.executor import RunError


def load(spec, path: str, loc: SourceLoc | None, *, seed: int = 0, threads: int = 1):
    raise RunError(f"model '{spec.name}': the decoder runtime is not in this build yet", loc)
