"""LLM ops at run time: a Llama-architecture checkpoint (Hugging Face layout) driven
through rundec's `Decoder` (agentc.runtime.decoder), which runs every layer, the final
norm, the LM head and the token choice in agentc's compiled kernels.

How the decomposed ops map onto it: `llm.tokenize` encodes the joined inputs with the
checkpoint's `tokenizer.json`; `llm.prefill` runs the prompt and holds the KV cache
(`kv.transfer` passes it on by reference, one process); `llm.decode` generates the
op's `tokens` (or `--max-new-tokens`) one step at a time, each token chosen by the
compiled `sample` kernel (greedy unless a sampler says); `llm.sample` hands the ids on;
`llm.detokenize` decodes them to text.
"""

from __future__ import annotations

from agentc.diagnostics import SourceLoc, WeightsError
from agentc.runtime.weights import load_checkpoint


class LlmRunner:
    """One model's decoder, tokenizer and sampler, as the executor calls them."""

    def __init__(self, decoder, tokenizer, sampler):
        self.decoder, self.tokenizer, self.sampler = decoder, tokenizer, sampler

    def tokenize(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text).ids or [0]
        cap = self.decoder.spec.max_context - 1
        return ids[-cap:]   # keep the end of an over-long prompt: the question comes last

    def prefill(self, ids: list[int]):
        return self.decoder.prefill(ids)

    def decode(self, state, n: int) -> list[int]:
        n = max(0, min(n, self.decoder.spec.max_context - state.length))
        out: list[int] = []
        for i in range(n):
            token = self.decoder.next_token(state, self.sampler)[0]
            out.append(token)
            if i + 1 < n:
                self.decoder.step(state, token)
        return out

    def detokenize(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


def load(spec, path: str, loc: SourceLoc | None, *, seed: int = 0, threads: int = 1,
         top_k: int = 1, temperature: float = 1.0) -> LlmRunner:
    """The runner of model `spec` (its program declaration) from the checkpoint at `path`.

    Sizes come from the checkpoint's config.json when it has one, else from the
    declaration; a tensor that does not fit is a WeightsError at the declaration."""
    from agentc.runtime.decoder import Decoder, DecoderSpec
    from agentc.runtime.sampling import Sampler

    ckpt = load_checkpoint(path, loc)
    try:
        if ckpt.config:
            dspec = DecoderSpec.from_hf_config(ckpt.config)
        else:
            dspec = DecoderSpec(d_model=spec.d_model, layers=spec.layers, heads=spec.heads,
                                kv_heads=spec.kv_heads, ffn=spec.ffn, vocab=spec.vocab)
        decoder = Decoder(dspec, ckpt.tensors, threads=threads)
    except WeightsError as err:
        raise WeightsError(f"checkpoint '{path}': {err.message}", err.loc or loc, err.notes) from None
    return LlmRunner(decoder, ckpt.tokenizer(), Sampler(top_k, temperature, seed))
