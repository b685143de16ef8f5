"""A seeded Llama checkpoint in the Hugging Face layout (model.safetensors, config.json,
and a tokenizer.json given by the caller), for the `agentc run` tests and
benchmarks/bench_orchestrate.py: one writer, so they load the same kind of weights."""

from __future__ import annotations

import json
import os

import numpy as np


def write_seeded_llama(folder, tokenizer_json: str, dims: dict, seed: int, max_positions: int) -> dict:
    """Write the checkpoint into `folder` and return its float32 tensors by name. `dims`:
    d, layers, heads, kv_heads, ffn, vocab. Embedding and LM head N(0, 1), norms
    1 + N(0, 0.1), projections N(0, 0.2) ([out, in], nn.Linear's layout)."""
    from safetensors.numpy import save_file

    t, rng = dims, np.random.default_rng(seed)
    d, kvd = t["d"], t["kv_heads"] * t["d"] // t["heads"]
    w = {"model.embed_tokens.weight": rng.normal(0, 1, (t["vocab"], d)),
         "lm_head.weight": rng.normal(0, 1, (t["vocab"], d)),
         "model.norm.weight": 1 + 0.1 * rng.normal(size=d)}
    for i in range(t["layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + 0.1 * rng.normal(size=d)
        w[p + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.normal(size=d)
        for name, shape in (("self_attn.q_proj", (d, d)), ("self_attn.k_proj", (kvd, d)),
                            ("self_attn.v_proj", (kvd, d)), ("self_attn.o_proj", (d, d)),
                            ("mlp.gate_proj", (t["ffn"], d)), ("mlp.up_proj", (t["ffn"], d)),
                            ("mlp.down_proj", (d, t["ffn"]))):
            w[p + name + ".weight"] = rng.normal(0, 0.2, shape)
    w = {k: np.asarray(v, np.float32) for k, v in w.items()}
    folder = str(folder)
    os.makedirs(folder, exist_ok=True)
    save_file(w, os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(tokenizer_json)
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
        json.dump({"hidden_size": d, "num_hidden_layers": t["layers"], "num_attention_heads": t["heads"],
                   "num_key_value_heads": t["kv_heads"], "intermediate_size": t["ffn"], "vocab_size": t["vocab"],
                   "max_position_embeddings": max_positions, "rope_theta": 10000.0, "rms_norm_eps": 1e-6}, f)
    return w
