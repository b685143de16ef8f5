// A granular op without an attribute its contract requires (dialects/ops.py) is
// rejected by the IRDL verifier when the module is parsed, at the op's line.
// RUN: not %agentc-opt %s -p place 2>&1 | FileCheck %s
// CHECK: missing_attr_invalid.mlir:9:10: error: 'llm.prefill' op attribute "tokens" is expected but not provided

module attributes {agentc.stage = "costed"} {
  "agent.graph"() ({
    %0 = "agent.input"() {index = 0 : i64, name = "q"} : () -> !agent.tokens
    %1 = "llm.prefill"(%0) {batch = 1 : i64, call = "a", label = "a.prefill", model = "m", operandSegmentSizes = array<i32: 0, 0, 1, 0, 0, 0, 0, 0>} : (!agent.tokens) -> !agent.kv
    gpu.yield %1 : !agent.kv
  }) {entry, sym_name = "g"} : () -> ()
}
