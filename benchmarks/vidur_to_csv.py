"""Convert Vidur's published profiling tables into agentc measurement CSVs.

Vidur (github.com/microsoft/vidur, MIT licence) ships per-kernel timings of Llama-style
layers measured with PyTorch on A100, H100 and A40 GPUs (data/profiling/compute/<gpu>/
<model>/mlp.csv: one row per token count and tensor-parallel degree, one median per
kernel) and NCCL all-reduce timings (data/profiling/network/<fabric>/all_reduce.csv).
agentc does not ship those tables; this script turns a local checkout's files into the
CSV format of docs/calibration.md, for `agentc calibrate --from-measurements` and
benchmarks/bench_costmodel.py.

    python benchmarks/vidur_to_csv.py VIDUR/data/profiling/compute/h100/*/*/mlp.csv > h100.csv
    python benchmarks/vidur_to_csv.py VIDUR/data/profiling/network/h100_dgx/all_reduce.csv > h100_ar.csv
"""

from __future__ import annotations

import csv
import sys

# Vidur's kernel names -> agentc's (agentc.costmodel.layers).
KERNELS = {"input_layernorm": "norm", "attn_pre_proj": "qkv", "attn_rope": "rope", "attn_post_proj": "o",
           "post_attention_layernorm": "norm", "mlp_up_proj": "gate_up", "mlp_act": "act",
           "mlp_down_proj": "down", "add": "add"}
# `emb` (the vocab-parallel embedding, once per forward pass, not per layer) is left out.
COLUMNS = ("kernel", "tokens", "context", "tp", "d_model", "ffn", "heads", "kv_heads", "median_ms", "source")


def convert(path: str, out: csv.writer) -> None:
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if "collective" in row:
                workers = int(row["num_workers"])
                if row["collective"] != "all_reduce" or row.get("rank", "0") != "0" \
                        or int(row["devices_per_node"]) != workers:
                    continue
                # `size` is the message in bytes (as Vidur's own predictor reads it):
                # one "token" of size / 2 fp16 elements.
                out.writerow(("allreduce", 1, 0, workers, int(row["size"]) // 2, 0, 1, 1,
                              row["time_stats.all_reduce.median"], path))
                continue
            if row.get("use_gated_mlp", "True") != "True":
                continue  # agentc's measured kernels are SwiGLU layers (phi-2 is a GELU MLP)
            for vidur, ours in KERNELS.items():
                key = f"time_stats.{vidur}.median"
                if row.get(key):
                    out.writerow((ours, row["num_tokens"], 0, row["num_tensor_parallel_workers"], row["n_embd"],
                                  row["n_expanded_embd"], row["n_head"], row["n_kv_head"], row[key], path))


def main(paths: list[str]) -> None:
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(COLUMNS)
    for path in paths:
        convert(path, out)


if __name__ == "__main__":
    main(sys.argv[1:])
