// RUN: not %agentc-opt %s -p partition 2>&1 | FileCheck %s
// CHECK: error: 'llm.tokenize' (a.tokenize) has no placement; run the place pass first (stage 'placed')

module attributes {agentc.stage = "decomposed"} {
  "agent.graph"() ({
    %0 = "agent.input"() {index = 0 : i64, name = "q"} : () -> !agent.text
    %1 = "llm.tokenize"(%0) {batch = 1 : i64, call = "a", label = "a.tokenize", model = "m", tokens = 8 : i64, operandSegmentSizes = array<i32: 0, 1, 0, 0, 0, 0, 0, 0>} : (!agent.text) -> !agent.tokens
    gpu.yield %1 : !agent.tokens
  }) {entry, sym_name = "g"} : () -> ()
}
