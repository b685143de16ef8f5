"""decompose-llm: split each llm.call into the granular ops that stress different
hardware (paper section 1, Fig. 7).

    llm.call -> llm.tokenize -> llm.prefill -> kv.transfer -> llm.decode
                -> llm.sample -> llm.detokenize

Prefill is compute-bound and decode memory-bound, so the planner may put them on
different devices; kv.transfer is the disaggregation edge (free when both sit on one
pool). A mixture-of-experts model (experts > 1) becomes moe.gate_select,
moe.expert_prefill / moe.expert_decode and moe.merge instead of prefill/decode. With the
pass option `tp=K` (K > 1) the forward ops are marked as sharded K ways and followed by
an explicit comm.allreduce; without it the planner chooses the degree per op and prices
the all-reduce inside the op's cost.
"""

from __future__ import annotations

from agentc.catalog import DTYPE_BYTES
from agentc.frontend.lower import attrs
from agentc.passes._ir import apply_patterns, copy_attrs, get, make, top_ops

NAME = "decompose-llm"


def _models(module) -> dict:
    return {get(op, "sym_name"): op for op in top_ops(module) if op.name == "agent.model"}


def run(module, ctx, tp: int = 1) -> None:
    models = _models(module)
    tp = int(tp)

    def rewrite_call(op, rewriter):
        model_name = get(op, "model")
        model = models[model_name]
        isl, osl = get(op, "input_tokens"), get(op, "output_tokens")
        label = get(op, "label", "llm")
        loc = op.location
        moe = (get(model, "experts", 1) or 1) > 1
        d_model = get(model, "d_model")
        bpe = DTYPE_BYTES.get(get(model, "dtype"), 2)

        def a(suffix, **kw):
            out = attrs(label=f"{label}.{suffix}", call=label, **kw)
            out.update(copy_attrs(op, "model"))
            return out

        layers = get(model, "layers")

        def sharded(value, phase, tokens):
            # Megatron-style tp: two all-reduces of the activations per layer per step.
            # Prefill is one step over all tokens; decode is `tokens` steps of one token.
            if tp <= 1:
                return value
            step_tokens, steps = (tokens, 1) if phase == "prefill" else (1, tokens)
            nbytes = int(step_tokens * d_model * bpe)
            return make("comm.allreduce", [value], "tensor",
                        a(f"{phase}.allreduce", bytes=nbytes, tp=tp, count=2 * layers * steps), loc)

        with rewriter.ip:
            toks = make("llm.tokenize", list(op.operands), "tokens", a("tokenize", tokens=isl, batch=1), loc)
            tp_attr = {"tp": tp} if tp > 1 else {}
            if moe:
                gate = make("moe.gate_select", [toks], "tensor", a("prefill.gate", tokens=isl, batch=1), loc)
                experts = make("moe.expert_prefill", [gate], "tensor",
                               a("prefill", tokens=isl, batch=1, **tp_attr), loc)
                experts = sharded(experts, "prefill", isl)
                kv = make("moe.merge", [experts], "kv", a("prefill.merge", tokens=isl, batch=1), loc)
            else:
                kv = make("llm.prefill", [toks], "kv", a("prefill", tokens=isl, batch=1, **tp_attr), loc)
                kv = sharded(kv, "prefill", isl)
            kv = make("kv.transfer", [kv], "kv", a("kv_transfer", tokens=isl, batch=1), loc)
            if moe:
                gate = make("moe.gate_select", [kv], "tensor", a("decode.gate", tokens=osl, batch=1), loc)
                out = make("moe.expert_decode", [gate], "tensor",
                           a("decode", context=isl, tokens=osl, batch=1, **tp_attr), loc)
                out = sharded(out, "decode", osl)
                logits = make("moe.merge", [out], "tensor", a("decode.merge", tokens=osl, batch=1), loc)
            else:
                logits = make("llm.decode", [kv], "tensor",
                              a("decode", context=isl, tokens=osl, batch=1, **tp_attr), loc)
                logits = sharded(logits, "decode", osl)
            ids = make("llm.sample", [logits], "tokens", a("sample", tokens=osl, batch=1), loc)
            text = make("llm.detokenize", [ids], "text", a("detokenize", tokens=osl, batch=1), loc)
        rewriter.replace_op(op, [text])

    apply_patterns(module, {"llm.call": rewrite_call})
