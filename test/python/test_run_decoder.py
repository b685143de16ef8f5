"""The compiled decoder (agentc.runtime.decoder over agentc's own CPU kernels) against an
independent numpy Llama (references/llama_ref.py), on checkpoints written here in the
Hugging Face layout (safetensors + config.json) with seeded weights.

The main model: 2 layers, d_model 256, 4 query heads over 2 KV heads, SwiGLU 512,
RoPE theta 500000, and the 30522-token vocabulary of the MiniLM WordPiece tokenizer
agentc ships (so the tokens it generates detokenize with a real tokenizer). A second,
plain multi-head model (kv_heads == heads) with tied embeddings covers the other
attention shape and the missing-lm_head path. Kernels are compiled once per module.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from agentc.diagnostics import UsageError, WeightsError
from agentc.runtime import decoder as decoder_module
from agentc.runtime import sampling
from agentc.runtime.decoder import Decoder, DecoderSpec, bucket
from references.llama_ref import LlamaRef, choose

MAIN = {"hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 512, "vocab_size": 30522, "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
        "max_position_embeddings": 128, "tie_word_embeddings": False}
MHA = {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 4,
       "intermediate_size": 128, "vocab_size": 512, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
       "max_position_embeddings": 96, "tie_word_embeddings": True}
NEW_TOKENS = 32
PROMPT_LENGTHS = (1, 5, 12, 23, 32)


def write_llama_checkpoint(directory, config: dict, seed: int) -> None:
    """Seeded Llama weights under Hugging Face names and layouts ([out, in] Linear weights):
    `model.safetensors` and `config.json` in `directory` (also used by the `agentc run`
    tests, which import it from here)."""
    rng = np.random.default_rng(seed)
    d, ffn, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    kvd = d // config["num_attention_heads"] * config["num_key_value_heads"]

    def linear(out, inp):
        return rng.standard_normal((out, inp)) / np.sqrt(inp)

    def norm(n):
        return 1.0 + 0.1 * rng.standard_normal(n)
    tensors = {"model.embed_tokens.weight": rng.standard_normal((vocab, d)), "model.norm.weight": norm(d)}
    if not config["tie_word_embeddings"]:
        tensors["lm_head.weight"] = linear(vocab, d)
    for n in range(config["num_hidden_layers"]):
        p = f"model.layers.{n}."
        tensors.update({
            p + "input_layernorm.weight": norm(d), p + "post_attention_layernorm.weight": norm(d),
            p + "self_attn.q_proj.weight": linear(d, d), p + "self_attn.k_proj.weight": linear(kvd, d),
            p + "self_attn.v_proj.weight": linear(kvd, d), p + "self_attn.o_proj.weight": linear(d, d),
            p + "mlp.gate_proj.weight": linear(ffn, d), p + "mlp.up_proj.weight": linear(ffn, d),
            p + "mlp.down_proj.weight": linear(d, ffn)})
    save_file({k: v.astype(np.float32) for k, v in tensors.items()}, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps({"model_type": "llama", **config}))


def _load(directory):
    config = json.loads((directory / "config.json").read_text())
    return config, load_file(str(directory / "model.safetensors"))


def _build(tmp_path_factory, name, config, seed):
    directory = tmp_path_factory.mktemp(name)
    write_llama_checkpoint(directory, config, seed)
    config, weights = _load(directory)
    decoder = Decoder(DecoderSpec.from_hf_config(config), weights)
    reference = LlamaRef(weights, layers=config["num_hidden_layers"], heads=config["num_attention_heads"],
                         kv_heads=config["num_key_value_heads"], rope_theta=config["rope_theta"],
                         eps=config["rms_norm_eps"])
    return decoder, reference, weights


@pytest.fixture(scope="module")
def main_model(tmp_path_factory):
    return _build(tmp_path_factory, "llama", MAIN, seed=19)


@pytest.fixture(scope="module")
def mha_model(tmp_path_factory):
    return _build(tmp_path_factory, "llama_mha", MHA, seed=23)


def _prompts(vocab, lengths, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, n).tolist() for n in lengths]


def _relative(got, want) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def _check_model(decoder, reference, prompts, new_tokens, sampler=None, draws=None):
    """Each prompt decoded token by token: every token is what the reference's rule
    picks from the reference's logits after the same prefix (so, by induction, the
    reference's own generation), and the decoder's logits are within 1e-4 of them
    (relative to the largest). Returns (the token lists, the worst relative error)."""
    worst, generated = 0.0, []
    for prompt in prompts:
        sampler_now = sampler() if sampler else sampling.greedy()
        state, tokens, seen = decoder.prefill(prompt), [], []
        for i in range(new_tokens):
            token, logits = decoder.next_token(state, sampler_now)
            tokens.append(token)
            seen.append(logits.copy())
            if i + 1 < new_tokens:
                decoder.step(state, token)
        assert state.length == len(prompt) + new_tokens - 1
        want = reference.logits(prompt + tokens[:-1], start=len(prompt) - 1)
        top_k, temperature = sampler_now.top_k, sampler_now.temperature
        picks = [choose(w, top_k, temperature, float(draws[i]) if draws is not None else 0.0)
                 for i, w in enumerate(want)]
        assert tokens == picks
        worst = max(worst, max(_relative(g, w) for g, w in zip(seen, want)))
        generated.append(tokens)
    assert worst < 1e-4
    return generated, worst


def test_greedy_tokens_and_logits_match_the_reference(main_model):
    decoder, reference, _ = main_model
    prompts = _prompts(MAIN["vocab_size"], PROMPT_LENGTHS)
    generated, _ = _check_model(decoder, reference, prompts, NEW_TOKENS)
    assert decoder.generate(prompts[2], NEW_TOKENS) == generated[2]     # the one-call API
    # the checkpoint is not degenerate: greedy decoding does not repeat one token
    assert all(len(set(tokens)) > NEW_TOKENS // 2 for tokens in generated)


def test_multi_head_model_with_tied_embeddings_matches(mha_model):
    decoder, reference, weights = mha_model
    assert "lm_head.weight" not in weights and decoder.spec.kv_heads == decoder.spec.heads
    _check_model(decoder, reference, _prompts(MHA["vocab_size"], (3, 17), seed=2), 16)


def test_seeded_top_k_sampling_is_reproducible_and_follows_the_rule(main_model):
    decoder, reference, _ = main_model
    prompt = _prompts(MAIN["vocab_size"], (7,), seed=3)[0]
    first = decoder.generate(prompt, NEW_TOKENS, sampling.top_k(8, temperature=0.7, seed=5))
    again = decoder.generate(prompt, NEW_TOKENS, sampling.top_k(8, temperature=0.7, seed=5))
    other = decoder.generate(prompt, NEW_TOKENS, sampling.top_k(8, temperature=0.7, seed=6))
    assert first == again and first != other
    # the same draws through the reference's top-k / temperature / inverse-CDF rule
    draws = np.random.default_rng(5).random(NEW_TOKENS).astype(np.float32)
    (checked,), _ = _check_model(decoder, reference, [prompt], NEW_TOKENS, draws=draws,
                                 sampler=lambda: sampling.top_k(8, temperature=0.7, seed=5))
    assert checked == first
    greedy = decoder.generate(prompt, NEW_TOKENS)
    assert first != greedy                     # it did not just take the argmax


def test_stop_tokens_end_generation(main_model):
    decoder, _, _ = main_model
    prompt = _prompts(MAIN["vocab_size"], (4,), seed=4)[0]
    want = decoder.generate(prompt, 6)
    assert decoder.generate(prompt, 6, stop=[want[2]]) == want[:want.index(want[2]) + 1]


def test_buckets_are_powers_of_two_within_the_context():
    assert [bucket(n, 128) for n in (1, 64, 65, 128)] == [64, 64, 128, 128]
    assert bucket(100, 96) == 96
    assert [bucket(n, 128, decoder_module.MIN_PREFILL_BUCKET) for n in (1, 16, 17)] == [16, 16, 32]


def test_a_prompts_rows_do_not_depend_on_its_prefill_bucket(main_model, monkeypatch):
    """Short prompts run in small prefill kernels (the speed of benchmarks/bench_run.py's
    prefill): the same cache and hidden state, bit for bit, as in the 64-row kernel."""
    decoder, _, _ = main_model
    prompt = _prompts(MAIN["vocab_size"], (12,), seed=5)[0]
    small = decoder.prefill(prompt)
    monkeypatch.setattr(decoder_module, "MIN_PREFILL_BUCKET", 64)
    large = decoder.prefill(prompt)
    assert np.array_equal(small.hidden, large.hidden)
    assert all(np.array_equal(a, b) for a, b in zip(small.k_cache + small.v_cache, large.k_cache + large.v_cache))


def test_bad_weights_name_the_tensor(main_model):
    _, _, weights = main_model
    spec = DecoderSpec.from_hf_config(MAIN)
    name = "model.layers.1.self_attn.k_proj.weight"
    with pytest.raises(WeightsError, match=f"'{name}' is missing"):
        Decoder(spec, {k: v for k, v in weights.items() if k != name})
    with pytest.raises(WeightsError, match=rf"'{name}' has shape \[256, 256\], expected \[128, 256\]"):
        Decoder(spec, {**weights, name: np.zeros((256, 256), np.float32)})
    with pytest.raises(WeightsError, match=f"'{name}' has dtype int32"):
        Decoder(spec, {**weights, name: weights[name].astype(np.int32)})
    with pytest.raises(WeightsError, match="no 'hidden_size' field"):
        DecoderSpec.from_hf_config({k: v for k, v in MAIN.items() if k != "hidden_size"})
    with pytest.raises(WeightsError, match="rope_scaling"):
        DecoderSpec.from_hf_config({**MAIN, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}})
    with pytest.raises(WeightsError, match="head_dim 32"):
        DecoderSpec.from_hf_config({**MAIN, "head_dim": 32})


def test_bad_ids_and_lengths_are_usage_errors(main_model):
    decoder, _, _ = main_model
    with pytest.raises(UsageError, match="outside the vocabulary"):
        decoder.prefill([1, MAIN["vocab_size"]])
    with pytest.raises(UsageError, match="1 to 128 tokens"):
        decoder.prefill([])
    with pytest.raises(UsageError, match="exceed the context of 128"):
        decoder.generate([1] * 100, 30)
    with pytest.raises(UsageError, match="temperature"):
        sampling.top_k(4, temperature=0.0)
    with pytest.raises(UsageError, match="top_k"):
        sampling.top_k(0)
