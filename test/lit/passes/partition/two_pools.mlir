// RUN: %agentc-opt %s -p partition | FileCheck %s

// CHECK: module @xeon attributes {agentc.chip = "sapphirerapids", agentc.device = "xeon-8480", agentc.pool = "xeon", agentc.target = "llvm-cpu"}
// CHECK: func.func @a_tokenize(%{{.*}}: !agent.text{{.*}}) -> !agent.tokens attributes {agentc.op = "llm.tokenize"}
// CHECK: func.func @schedule(%[[IN:arg0]]: !agent.text
// CHECK: call @a_tokenize(%[[IN]])
// CHECK: "agent.send"(%{{.*}}) {bytes = 512 : i64, channel = 0 : i64, link = "xeon->h100", peer = "h100"}
// CHECK: module @h100 attributes {agentc.chip = "sm_90", agentc.device = "H100", agentc.pool = "h100", agentc.target = "nvvm"}
// CHECK: func.func @a_prefill
// CHECK: func.func @schedule
// CHECK: %[[T:.*]] = "agent.recv"() {bytes = 512 : i64, channel = 0 : i64, link = "xeon->h100", peer = "xeon"} : () -> !agent.tokens
// CHECK: call @a_prefill(%[[T]])


module attributes {agentc.stage = "placed"} {
  "agent.model"() {d_model = 64 : i64, dtype = "fp16", ffn = 128 : i64, heads = 2 : i64, kind = "decoder", kv_heads = 1 : i64, layers = 4 : i64, sym_name = "m", vocab = 1000 : i64} : () -> ()
  "agent.graph"() ({
    %0 = "agent.input"() {index = 0 : i64, name = "q"} : () -> !agent.text
    %1 = "llm.tokenize"(%0) {call = "a", label = "a.tokenize", model = "m", tokens = 128 : i64, batch = 1 : i64, pool = "xeon", device = "xeon-8480", target = "llvm-cpu", chip = "sapphirerapids", tp = 1 : i64, replicas = 1 : i64, start_ms = 0.0 : f64, finish_ms = 1.0 : f64, operandSegmentSizes = array<i32: 0, 1, 0, 0, 0, 0, 0, 0>} : (!agent.text) -> !agent.tokens
    %2 = "llm.prefill"(%1) {call = "a", label = "a.prefill", model = "m", tokens = 300 : i64, batch = 1 : i64, pool = "h100", device = "H100", target = "nvvm", chip = "sm_90", tp = 1 : i64, replicas = 1 : i64, start_ms = 1.0 : f64, finish_ms = 2.0 : f64, operandSegmentSizes = array<i32: 0, 0, 1, 0, 0, 0, 0, 0>} : (!agent.tokens) -> !agent.kv
    gpu.yield %2 : !agent.kv
  }) {entry, sym_name = "g"} : () -> ()
}
