"""lower-kernels: every op function of a partitioned module becomes calls of a linalg
kernel (from `agentc.codegen.kernels`) or of the runtime's C ABI (docs/runtime_abi.md).

Compute ops call one kernel, repeated by `scf.for` loops whose trip counts are the
real ones (layers, generated tokens); the kernel's first input is the op's operand
(`unrealized_conversion_cast` from the `!agent` handle), the others (weights, caches)
are `tensor.empty` placeholders the runtime binds. Each pool module holds one copy of
each distinct kernel, named after its shape, so a compile builds each (kernel, shape,
target) once.

Shape rule (what is and is not faithful):
- faithful: d_model, heads, kv_heads, ffn, vocab, mel bins, index dim and k from the
  model/plan; a tensor-parallel shard of `tp` divides d_model, heads, ffn (and
  kv_heads, at least 1) by tp, keeping head_dim; one layer function serves all layers.
- bucketed: an embedding model's sentence (`embed.encode`, `embed.pool`) runs in masked
  kernels of ENCODER_BUCKETS rows (the last raised to the model's position embeddings);
  the host program picks the smallest bucket that holds the real token count and masks
  the padding (`agentc.buckets`, `agentc.bucket_kernels`).
- chunked: an index is scanned in chunks of INDEX_CAP rows (`agentc.calls`; the last
  chunk in a kernel of its own size, `agentc.last_kernel`), each chunk's top-k merged
  into the exact top-k of the whole index by the host program.
- capped: other prompt/sequence rows at SEQ_CAP, decode context at CONTEXT_CAP, audio
  frames at FRAMES_CAP. Longer prompts are not chunked with cross-chunk attention.
- not faithful: element type (f32 everywhere, whatever the model's dtype); Whisper's
  cross-attention (its decoder is a self-attention decode step); the TTS vocoder (a
  frames x hop matmul stand-in); MoE routing (gate and merge are matmuls; an expert is a
  dense layer).

Ops with no tensor compute (tokenize, detokenize, tool.*, memory.*, observe.append,
compute.cpu, kv.transfer, comm.allreduce) call
`agentc_<op>(name, in[], in_bytes[], n_in, out, cap)` with every input of the op,
declared here and provided by the runtime; nothing runs at compile time.

This stage is not a program yet: handles are cast to tensors and pointers with
`unrealized_conversion_cast`, and each function carries what `lower-host` needs to
rebuild it over real buffers (`agentc.loops`, `agentc.calls`, `agentc.model`,
`agentc.abi_arg`, `agentc.result_bytes`).
"""

from __future__ import annotations

from mlir import ir

from agentc import dialects
from agentc.codegen import kernels
from agentc.codegen.abi import ABI_TYPE
from agentc.dialects.ops import ABI
from agentc.passes._ir import StringGlobals, get, model_attrs, placed_nothing, str_attr, top_ops, walk
from agentc.passes._plan_ctx import models_of, value_bytes
from agentc.passes.partition import PartitionError

NAME = "lower-kernels"

SEQ_CAP = 128
CONTEXT_CAP = 1024
FRAMES_CAP = 256
INDEX_CAP = 4096
SAMPLE_K = 4
FFT_BINS = 201          # n_fft = 400 (25 ms at 16 kHz)
VOCODER_HOP = 256
# Rows of the masked encoder kernels of an embedding model: a sentence runs in the
# smallest that holds it. The last is the model's position embeddings when longer.
ENCODER_BUCKETS = (32, 128)
# Rows of an llm call's prompt and KV cache: the smallest power of two >= prompt + new
# tokens (at least MIN_CONTEXT, at most CONTEXT_CAP). Prefill runs the real prompt in it
# (causal, so the zero rows after it change nothing) and decode masks the unwritten rows.
MIN_CONTEXT = 64
LLM_OPS = ("llm.tokenize", "llm.prefill", "kv.transfer", "llm.decode", "llm.sample", "llm.detokenize")
TEXT_BYTES_PER_TOKEN = 64     # room for a detokenized token (the longest vocabulary entries)



def _shard(model: dict, tp: int) -> dict:
    tp = max(1, tp)
    heads = max(1, int(model.get("heads", 8)) // tp)
    kv = max(1, int(model.get("kv_heads", model.get("heads", 8))) // tp)
    if heads % kv:
        kv = heads
    hd = int(model.get("d_model", 512)) // int(model.get("heads", 8))
    return {"d_model": heads * hd, "heads": heads, "kv_heads": kv,
            "ffn": max(1, int(model.get("ffn", 4 * heads * hd)) // tp)}


def kernel_plan(op, model: dict) -> tuple[str, dict, list[int], int] | None:
    """(kernel kind, builder arguments, loop trip counts, calls) for a compute op;
    None for ops that go to the runtime ABI."""
    name = op.name
    tp = int(get(op, "tp", 1) or 1)
    s = _shard(model, tp)
    tokens = int(get(op, "tokens", 1) or 1)
    rows = max(1, min(tokens, SEQ_CAP))
    layers = int(model.get("layers", 1))
    audio_ms = float(get(op, "audio_ms", 1000.0) or 1000.0)
    if name in ("llm.prefill", "moe.expert_prefill"):
        return "prefill_layer", dict(seq=rows, **s), [layers], 1
    if name in ("llm.decode", "moe.expert_decode", "stt.decode"):
        ctx = max(1, min(int(get(op, "context", tokens) or tokens), CONTEXT_CAP))
        return "decode_step", dict(context=ctx, **s), [tokens, layers], 1
    if name == "llm.sample":
        vocab = int(model.get("vocab", 32000))
        return "sample", dict(d_model=s["d_model"], vocab=vocab, k=min(SAMPLE_K, vocab)), [tokens], 1
    if name == "stt.featurize":
        frames = max(1, min(int(audio_ms / 10), FRAMES_CAP))
        return "logmel", dict(frames=frames, n_fft_bins=FFT_BINS, n_mels=int(model.get("mel_bins", 80))), [], 1
    if name in ("stt.encode", "tts.synthesize", "embed.encode"):
        seq = max(1, min(int(audio_ms / 20) if name == "stt.encode" else tokens, SEQ_CAP))
        n_layers = int(model.get("encoder_layers", layers)) if name == "stt.encode" else layers
        return "encoder_layer", dict(seq=seq, d_model=s["d_model"], heads=s["heads"], ffn=s["ffn"]), \
            [n_layers], 1
    if name == "embed.pool":
        return "mean_pool_l2", dict(seq=rows, d=s["d_model"]), [], 1
    if name == "retrieve.search":
        size = int(get(op, "index_size", INDEX_CAP) or INDEX_CAP)
        n = max(1, min(size, INDEX_CAP))
        return "retrieve", dict(n=n, d=int(get(op, "dim", 384) or 384), k=min(n, int(get(op, "k", 4) or 4))), \
            [], -(-size // n)
    if name == "tts.vocode":
        frames = max(1, min(int(audio_ms / 1000 * int(model.get("sample_rate_hz", 22050)) / VOCODER_HOP),
                            FRAMES_CAP))
        return "matmul", dict(m=frames, n=VOCODER_HOP, k=s["d_model"]), [], 1
    if name == "moe.gate_select":
        return "matmul", dict(m=rows, n=max(1, int(model.get("experts", 8))), k=s["d_model"]), [], 1
    if name == "moe.merge":
        return "matmul", dict(m=rows, n=s["d_model"], k=s["d_model"]), [], 1
    return None


def encoder_buckets(model: dict) -> list[int]:
    """Row buckets of an embedding model's masked kernels, ascending; the last is its
    position embeddings (512 when the model does not say)."""
    top = int(model.get("position_embeddings", 0) or 512)
    return sorted({b for b in ENCODER_BUCKETS if b < top} | {top})


def bucket_plans(op, model: dict) -> list[tuple[str, dict]] | None:
    """(kernel kind, builder arguments) per bucket of `embed.encode` / `embed.pool`;
    None for every other op."""
    if op.name not in ("embed.encode", "embed.pool"):
        return None
    s = _shard(model, int(get(op, "tp", 1) or 1))
    if op.name == "embed.encode":
        return [("encoder_layer", dict(seq=b, d_model=s["d_model"], heads=s["heads"], ffn=s["ffn"], masked=True))
                for b in encoder_buckets(model)]
    return [("mean_pool_l2", dict(seq=b, d=s["d_model"], masked=True)) for b in encoder_buckets(model)]


def llm_contexts(module_op) -> dict[str, tuple[int, int]]:
    """call label -> (context rows, new tokens) of every llm call (its decode op)."""
    out = {}
    for op in walk(module_op):
        if op.name == "llm.decode" and get(op, "call"):
            tokens = int(get(op, "tokens", 1) or 1)
            need = int(get(op, "context", tokens) or tokens) + tokens
            rows = MIN_CONTEXT
            while rows < need and rows < CONTEXT_CAP:
                rows *= 2
            out[str(get(op, "call"))] = (rows, tokens)
    return out


def kv_bytes(model: dict, context: int) -> int:
    """Bytes of an llm call's KV value (prefill -> kv.transfer -> decode): the position
    (i64), the last hidden state [d_model] f32, then K of every layer [context, kv_dim]
    and V of every layer, f32."""
    s = _shard(model, 1)
    kvd = s["kv_heads"] * (s["d_model"] // s["heads"])
    return 8 + 4 * s["d_model"] + 2 * int(model.get("layers", 1)) * context * kvd * 4


def llm_plan(op, model: dict, contexts: dict) -> tuple[list, dict] | None:
    """(kernels as (kind, arguments), attributes) of an llm op of a call with a decode:
    the real-length prompt, KV cache and token loop lower-host builds on; None for
    other ops (and tensor-parallel shards, which keep the sketch)."""
    call = get(op, "call")
    if op.name not in LLM_OPS or call not in contexts or int(get(op, "tp", 1) or 1) != 1:
        return None
    rows, tokens = contexts[call]
    s = _shard(model, 1)
    vocab = int(model.get("vocab", 32000))
    sample = ("sample", dict(d_model=s["d_model"], vocab=vocab, k=min(SAMPLE_K, vocab)))   # a vocabulary below k
    attrs = {"agentc.context": rows, "agentc.vocab": vocab, "agentc.layers": int(model.get("layers", 1))}
    if op.name == "llm.tokenize":
        return [], dict(attrs, **{"agentc.result_bytes": 4 * max(1, rows - tokens + 1)})
    if op.name == "llm.detokenize":
        return [], dict(attrs, **{"agentc.result_bytes": TEXT_BYTES_PER_TOKEN * tokens})
    if op.name in ("llm.prefill", "kv.transfer"):
        kernels_ = [("prefill_layer", dict(seq=rows, **s))] if op.name == "llm.prefill" else []
        return kernels_, dict(attrs, **{"agentc.result_bytes": kv_bytes(model, rows)})
    if op.name == "llm.decode":
        return [("decode_step", dict(context=rows, **s)), sample], \
            dict(attrs, **{"agentc.result_bytes": 4 * tokens, "agentc.tokens": tokens})
    return [sample], dict(attrs, **{"agentc.result_bytes": 4 * tokens, "agentc.tokens": tokens})


def kernel_symbol(kind: str, args: dict) -> str:
    short = {"seq": "s", "context": "c", "d_model": "d", "heads": "h", "kv_heads": "kv", "ffn": "f",
             "vocab": "v", "k": "k", "frames": "t", "n_fft_bins": "b", "n_mels": "m", "d": "d",
             "n": "n", "m": "m"}
    return kind + "_" + "_".join(k if v is True else f"{short.get(k, k)}{v}" for k, v in args.items())


def _kernel_func(text: str):
    """(argument types, result types) of the one public function of a kernel module."""
    with ir.Context():
        m = ir.Module.parse(text)
        fn = next(iter(m.body.operations))
        ftype = ir.FunctionType(ir.TypeAttr(fn.attributes["function_type"]).value)
        return [str(t) for t in ftype.inputs], [str(t) for t in ftype.results]


def _compute_body(fn_name, arg_types, res_types, kernel, k_in, k_out, loops, calls, header_attrs):
    lines = [f"func.func @{fn_name}({', '.join(f'%arg{i}: {t}' for i, t in enumerate(arg_types))})"
             f"{' -> ' + res_types[0] if res_types else ''} attributes {{{header_attrs}}} {{"]
    if arg_types:
        lines.append(f"  %x0 = builtin.unrealized_conversion_cast %arg0 : {arg_types[0]} to {k_in[0]}")
    else:
        lines.append(f"  %x0 = tensor.empty() : {k_in[0]}")
    for i, t in enumerate(k_in[1:], 1):
        lines.append(f"  %w{i} = tensor.empty() : {t}")
    carry = k_out[0] == k_in[0]
    loops = loops if carry else []
    lines += ["  %c0 = arith.constant 0 : index", "  %c1 = arith.constant 1 : index"]
    cur = "%x0"
    for depth, trips in enumerate(loops):
        lines.append(f"  %n{depth} = arith.constant {trips} : index")
    for depth, _ in enumerate(loops):
        lines.append(f"  %y{depth} = scf.for %i{depth} = %c0 to %n{depth} step %c1 "
                     f"iter_args(%a{depth} = {cur}) -> ({k_in[0]}) {{")
        cur = f"%a{depth}"
    args = ", ".join([cur] + [f"%w{i}" for i in range(1, len(k_in))])
    head = "%r" if len(k_out) == 1 else f"%r:{len(k_out)}"
    first = "%r" if len(k_out) == 1 else "%r#0"
    lines.append(f"  {head} = func.call @{kernel}({args}) : ({', '.join(k_in)}) -> ({', '.join(k_out)})")
    result = first
    for depth in reversed(range(len(loops))):
        lines.append(f"  scf.yield {result} : {k_in[0]}")
        lines.append("  }")
        result = f"%y{depth}"
    if res_types:
        lines.append(f"  %out = builtin.unrealized_conversion_cast {result} : {k_out[0]} to {res_types[0]}")
        lines.append(f"  return %out : {res_types[0]}")
    else:
        lines.append("  return")
    lines.append("}")
    return "\n".join(lines)


def _abi_body(fn_name, arg_types, res_types, abi, name_sym, in_bytes, cap, header_attrs):
    """An op function calling the runtime with arrays of all its inputs and their sizes."""
    k = len(arg_types)
    lines = [f"func.func @{fn_name}({', '.join(f'%arg{i}: {t}' for i, t in enumerate(arg_types))})"
             f"{' -> ' + res_types[0] if res_types else ''} attributes {{{header_attrs}}} {{",
             f"  %name = llvm.mlir.addressof @{name_sym} : !llvm.ptr",
             f"  %n_in = arith.constant {k} : i64"]
    if k:
        lines += ["  %ins = llvm.alloca %n_in x !llvm.ptr : (i64) -> !llvm.ptr",
                  "  %sizes = llvm.alloca %n_in x i64 : (i64) -> !llvm.ptr"]
        for i, (t, n) in enumerate(zip(arg_types, in_bytes)):
            lines += [f"  %p{i} = builtin.unrealized_conversion_cast %arg{i} : {t} to !llvm.ptr",
                      f"  %g{i} = llvm.getelementptr %ins[{i}] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr",
                      f"  llvm.store %p{i}, %g{i} : !llvm.ptr, !llvm.ptr",
                      f"  %s{i} = arith.constant {n} : i64",
                      f"  %h{i} = llvm.getelementptr %sizes[{i}] : (!llvm.ptr) -> !llvm.ptr, i64",
                      f"  llvm.store %s{i}, %h{i} : i64, !llvm.ptr"]
    else:
        lines += ["  %ins = llvm.mlir.zero : !llvm.ptr", "  %sizes = llvm.mlir.zero : !llvm.ptr"]
    lines += [f"  %cap = arith.constant {cap} : i64",
              "  %out = llvm.alloca %cap x i8 : (i64) -> !llvm.ptr",
              f"  %rc = func.call @{abi}(%name, %ins, %sizes, %n_in, %out, %cap) : {ABI_TYPE}"]
    if res_types:
        lines += [f"  %res = builtin.unrealized_conversion_cast %out : !llvm.ptr to {res_types[0]}",
                  f"  return %res : {res_types[0]}"]
    else:
        lines.append("  return")
    lines.append("}")
    return "\n".join(lines)


def _i64_array(values) -> str:
    return "array<i64: " + ", ".join(str(int(v)) for v in values) + ">" if values else "array<i64>"


def lower_pool(sub, models: dict, specs: dict, contexts: dict | None = None) -> None:
    """Rewrite the op functions of one pool module; add kernels and ABI declarations.
    `models`: model attributes (kernel shapes); `specs`: ModelSpecs (value sizes);
    `contexts`: llm calls' (context rows, new tokens) (`llm_contexts`)."""
    body = sub.regions[0].blocks[0]
    kernel_texts: dict[str, str] = {}
    strings = StringGlobals()
    abis: set[str] = set()
    new_funcs: list[tuple[ir.Operation, str]] = []
    for fn in list(body.operations):
        fn = fn.operation
        if fn.name != "func.func" or "agentc.op" not in fn.attributes:
            continue
        inner = next(o for o in fn.regions[0].blocks[0].operations if o.operation.name != "func.return")
        inner = inner.operation
        ftype = ir.FunctionType(ir.TypeAttr(fn.attributes["function_type"]).value)
        arg_types = [str(t) for t in ftype.inputs]
        res_types = [str(t) for t in ftype.results]
        fn_name = get(fn, "sym_name")
        model = models.get(get(inner, "model", ""), {})
        header = [f"agentc.op = {str_attr(inner.name)}",
                  f"agentc.label = {str_attr(str(get(inner, 'label', fn_name)))}"]
        in_bytes = [int(value_bytes(inner, dialects.type_kind(t), specs)) for t in ftype.inputs]
        result_bytes = max(1, int(value_bytes(inner, dialects.type_kind(ftype.results[0]), specs))) \
            if res_types else 0
        header.append(f"agentc.result_bytes = {result_bytes} : i64")
        plan = kernel_plan(inner, model)
        llm = llm_plan(inner, model, contexts or {})
        if llm is not None:
            llm_kernels, llm_attrs = llm
            header = [h for h in header if not h.startswith("agentc.result_bytes")]
            header += [f"{k} = {v} : i64" for k, v in llm_attrs.items()]
            syms = []
            for kind, kargs in llm_kernels:
                syms.append(kernel_symbol(kind, kargs))
                kernel_texts.setdefault(syms[-1], kernels.KERNELS[kind](**kargs, name=syms[-1]))
            if inner.name == "llm.decode":
                header.append(f"agentc.sample_kernel = {str_attr(syms[1])}")
            if llm_kernels and plan is not None:
                # the op function sketches its (first) kernel's call; lower-host builds
                # the real one
                plan = (llm_kernels[0][0], llm_kernels[0][1], plan[2], plan[3])
        buckets = bucket_plans(inner, model)
        if buckets is not None:
            # The op function sketches the largest bucket's call; lower-host dispatches
            # on the real length.
            syms = []
            for kind, kargs in buckets:
                syms.append(kernel_symbol(kind, kargs))
                kernel_texts.setdefault(syms[-1], kernels.KERNELS[kind](**kargs, name=syms[-1]))
            rows = [kargs["seq"] for _, kargs in buckets]
            plan = (buckets[-1][0], buckets[-1][1], [int(model.get("layers", 1))]
                    if inner.name == "embed.encode" else [], 1)
            header.append(f"agentc.buckets = {_i64_array(rows)}")
            header.append("agentc.bucket_kernels = [" + ", ".join(str_attr(x) for x in syms) + "]")
            if inner.name == "embed.encode":   # the real rows, at most the largest bucket's
                header = [h for h in header if not h.startswith("agentc.result_bytes")]
                header.append(f"agentc.result_bytes = {rows[-1] * buckets[-1][1]['d_model'] * 4} : i64")
        if plan is not None:
            kind, kargs, loops, calls = plan
            sym = kernel_symbol(kind, kargs)
            if sym not in kernel_texts:
                kernel_texts[sym] = kernels.KERNELS[kind](**kargs, name=sym)
            k_in, k_out = _kernel_func(kernel_texts[sym])
            header.append(f"agentc.kernel = {str_attr(sym)}")
            owner = get(inner, "model", None) or get(inner, "index", None) or ""
            header.append(f"agentc.model = {str_attr(str(owner))}")
            header.append(f"agentc.loops = {_i64_array(loops if k_out[0] == k_in[0] else [])}")
            if calls > 1:
                header.append(f"agentc.calls = {calls} : i64")
            rest = int(get(inner, "index_size", 0) or 0) - (calls - 1) * kargs.get("n", 0)
            if kind == "retrieve" and 0 < rest < kargs["n"]:
                # the last chunk's own kernel: zero padding rows would score 0 and beat
                # real rows of negative similarity
                last = dict(kargs, n=rest, k=min(rest, kargs["k"]))
                last_sym = kernel_symbol(kind, last)
                kernel_texts.setdefault(last_sym, kernels.KERNELS[kind](**last, name=last_sym))
                header.append(f"agentc.last_kernel = {str_attr(last_sym)}")
            text = _compute_body(fn_name, arg_types, res_types, sym, k_in, k_out, loops, calls,
                                 ", ".join(header))
        elif inner.name in ABI:
            abi = ABI[inner.name]
            abis.add(abi)
            label = str(get(inner, "tool", None) or get(inner, "store", None) or get(inner, "fn", None)
                        or get(inner, "model", None) or get(inner, "label", fn_name))
            sym = strings(label)
            header += [f"agentc.abi = {str_attr(abi)}", f"agentc.abi_arg = {str_attr(label)}"]
            text = _abi_body(fn_name, arg_types, res_types, abi, sym, in_bytes, max(result_bytes, 1),
                             ", ".join(header))
        else:
            raise PartitionError(f"lower-kernels: no kernel or runtime call for '{inner.name}'")
        new_funcs.append((fn, text))

    decls = strings.decls()
    decls += [f"func.func private @{abi}{ABI_TYPE}"
              for abi in sorted(abis)]
    kernel_funcs = []
    for sym in sorted(kernel_texts):
        t = kernel_texts[sym]
        kernel_funcs.append(t[t.index("func.func"):t.rindex("}")].rstrip())
    replaced = ir.Module.parse("module {\n" + "\n".join(decls + kernel_funcs + [t for _, t in new_funcs])
                               + "\n}")
    by_name = {get(op, "sym_name"): op.operation for op in replaced.body.operations}
    for fn, _ in new_funcs:
        new = by_name[get(fn, "sym_name")]
        new.detach_from_parent()
        ir.InsertionPoint(fn).insert(new)
        fn.erase()
    first = list(body.operations)[0] if list(body.operations) else None
    for op in list(replaced.body.operations):
        op = op.operation
        op.detach_from_parent()
        if first is not None:
            ir.InsertionPoint(first).insert(op)
        else:
            body.append(op)


def run(module, ctx) -> None:
    module_op = module.operation if hasattr(module, "operation") else module
    subs = [op for op in top_ops(module_op) if op.name == "builtin.module"]
    if not subs:
        if placed_nothing(module_op):
            return
        raise PartitionError("lower-kernels needs a partitioned module (run partition first)")
    models, specs = model_attrs(module_op), models_of(module_op)
    contexts = llm_contexts(module_op)
    for sub in subs:
        if "agentc.kernels" in sub.attributes:
            continue
        lower_pool(sub, models, specs, contexts)
        sub.attributes["agentc.kernels"] = ir.UnitAttr.get()


