"""One contract per granular op (dialects/ops.py): the IRDL is generated from it and the
verifier enforces its attributes; the cost model, the planner and partition read their
facts from it."""

from __future__ import annotations

from importlib import resources

import pytest
from mlir import ir

from agentc import dialects
from agentc.costmodel import demand
from agentc.catalog import load_catalog
from agentc.dialects import gen_irdl, ops


def test_shipped_irdl_is_generated_from_the_contracts():
    shipped = resources.files("agentc.dialects").joinpath("agent.irdl.mlir").read_text()
    assert shipped == gen_irdl.generate(), "run `python -m agentc.dialects.gen_irdl`"


def test_every_op_has_a_demand_hook_and_one_code_path():
    for name, c in ops.OPS.items():
        assert c.demand in demand._DEMAND, name
        assert (c.kernel is None) != (c.abi is None), f"{name}: a kernel or an ABI call, not both"


def _parse(text):
    with dialects.make_context() as ctx, ir.Location.unknown():
        return ir.Module.parse(text, ctx)


PREFILL = ('%0 = "agent.input"() {{index = 0 : i64, name = "q"}} : () -> !agent.tokens\n'
           '%1 = "llm.prefill"(%0) {{{attrs}, operandSegmentSizes = array<i32: 0, 0, 1, 0, 0, 0, 0, 0>}} '
           ': (!agent.tokens) -> !agent.kv')
GOOD = 'label = "a.prefill", call = "a", model = "m", tokens = 512 : i64, batch = 1 : i64'


def test_verifier_accepts_a_complete_op():
    assert _parse(PREFILL.format(attrs=GOOD)).operation.verify()


@pytest.mark.parametrize("attrs, message", [
    (GOOD.replace(', tokens = 512 : i64', ''), 'attribute "tokens" is expected but not provided'),
    (GOOD.replace('tokens = 512 : i64', 'tokens = "many"'), "expected base attribute 'builtin.integer'"),
    (GOOD.replace('model = "m"', 'model = 3 : i64'), "expected base attribute 'builtin.string'"),
])
def test_verifier_rejects_missing_or_mistyped_attributes(attrs, message):
    with pytest.raises(ir.MLIRError) as e:
        _parse(PREFILL.format(attrs=attrs))
    assert message in str(e.value)


def test_value_bytes_by_hand():
    """Sizes worked by hand from the contract's constants and Llama 3 8B's shape."""
    m = load_catalog().models["llama3-8b"]
    # KV: 2 * 32 layers * 4096 * 8/32 * 1000 tokens * 2 bytes = 131,072,000
    assert ops.value_bytes("kv.transfer", "kv", {"tokens": 1000, "batch": 1}, m) == 131_072_000
    assert ops.value_bytes("llm.detokenize", "text", {"tokens": 128}, m) == 4 * 128
    assert ops.value_bytes("llm.decode", "tensor", {"tokens": 128, "context": 512}, m) == 128256 * 4
    assert ops.value_bytes("retrieve.search", "documents", {"k": 5}, None) == 5 * 2048
    assert ops.value_bytes("tool.compute", "json", {"payload_bytes": 8192}, None) == 8192
    assert ops.value_bytes("tts.vocode", "audio", {"audio_ms": 1000.0}, None) == 32_000


def test_planner_and_partition_price_the_same_bytes(tmp_path):
    """The bytes on each planned cross-pool edge equal what partition's send carries."""
    from agentc import pipeline
    from agentc.passes._ir import get, walk

    c = pipeline.compile_file("examples/rag_agent.agent", pipeline.Options(emit="partitioned", targets=()))
    sends = {}
    for op in walk(c.module.operation):
        if op.name == "agent.send":
            sends.setdefault(get(op, "link"), set()).add(get(op, "bytes"))
    planned = {(e.src, e.dst): e.bytes for e in c.problem.edges}
    plan = c.plan
    crossing = [(s, d) for (s, d) in planned if plan.ops[s].pool != plan.ops[d].pool]
    assert crossing and sends
    for s, d in crossing:
        link = f"{plan.ops[s].pool}->{plan.ops[d].pool}"
        assert int(planned[(s, d)]) in sends[link], (s, d, planned[(s, d)], sends[link])
