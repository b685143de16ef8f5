// Tests passes/lower_kernels.py.
// RUN: %agentc-opt %s -p partition,lower-kernels | FileCheck %s --check-prefix=KERN


// KERN: llvm.mlir.global internal constant @__agentc_str_m("m\00")
// KERN: func.func private @agentc_tokenize(!llvm.ptr, !llvm.ptr, !llvm.ptr, i64, !llvm.ptr, i64) -> i64
// KERN: func.func @a_tokenize{{.*}}agentc.abi = "agentc_tokenize"
// KERN: call @agentc_tokenize(
// KERN: func.func @prefill_layer_s128_d64_h2_kv1_f128({{.*}}) -> (tensor<128x64xf32>, tensor<128x32xf32>, tensor<128x32xf32>) attributes {llvm.emit_c_interface}
// KERN: func.func @a_prefill{{.*}}agentc.kernel = "prefill_layer_s128_d64_h2_kv1_f128"
// KERN: scf.for {{.*}} iter_args
// KERN: call @prefill_layer_s128_d64_h2_kv1_f128(

module attributes {agentc.stage = "placed"} {
  "agent.model"() {d_model = 64 : i64, dtype = "fp16", ffn = 128 : i64, heads = 2 : i64, kind = "decoder", kv_heads = 1 : i64, layers = 4 : i64, sym_name = "m", vocab = 1000 : i64} : () -> ()
  "agent.graph"() ({
    %0 = "agent.input"() {index = 0 : i64, name = "q"} : () -> !agent.text
    %1 = "llm.tokenize"(%0) {call = "a", label = "a.tokenize", model = "m", tokens = 128 : i64, batch = 1 : i64, pool = "xeon", device = "xeon-8480", target = "llvm-cpu", chip = "sapphirerapids", tp = 1 : i64, replicas = 1 : i64, start_ms = 0.0 : f64, finish_ms = 1.0 : f64, operandSegmentSizes = array<i32: 0, 1, 0, 0, 0, 0, 0, 0>} : (!agent.text) -> !agent.tokens
    %2 = "llm.prefill"(%1) {call = "a", label = "a.prefill", model = "m", tokens = 300 : i64, batch = 1 : i64, pool = "h100", device = "H100", target = "nvvm", chip = "sm_90", tp = 1 : i64, replicas = 1 : i64, start_ms = 1.0 : f64, finish_ms = 2.0 : f64, operandSegmentSizes = array<i32: 0, 0, 1, 0, 0, 0, 0, 0>} : (!agent.tokens) -> !agent.kv
    gpu.yield %2 : !agent.kv
  }) {entry, sym_name = "g"} : () -> ()
}
