// Tests passes/lower_host.py: each pool's op functions and schedule become a host
// program over byte buffers in a nested module @host; the kernels stay outside it.
// RUN: %agentc-opt %s -p partition,lower-kernels,lower-host | FileCheck %s

// The CPU pool: a runtime call with both inputs, then a send of its result.
// CHECK-LABEL: module @xeon
// CHECK: module @host attributes {agentc.entry_point = "agentc_xeon_run", agentc.host, agentc.inputs = ["text", "json"], agentc.outputs = []}
// CHECK-DAG: func.func private @agentc_alloc(i64, i64) -> !llvm.ptr
// CHECK-DAG: func.func private @agentc_send(i64, !llvm.ptr, !llvm.ptr, i64) -> i64
// CHECK-DAG: func.func private @agentc_tokenize(!llvm.ptr, !llvm.ptr, !llvm.ptr, i64, !llvm.ptr, i64) -> i64
// CHECK: func.func @a_tokenize(%[[Q:.*]]: memref<?xi8>{{.*}}, %[[J:.*]]: memref<?xi8>{{.*}}, %[[OUT:.*]]: memref<?xi8>{{.*}}) -> i64
// CHECK: %[[N:.*]] = arith.constant 2 : i64
// CHECK: %[[INS:.*]] = llvm.alloca %[[N]] x !llvm.ptr
// CHECK: call @__agentc_ptr(%[[Q]])
// CHECK: call @__agentc_ptr(%[[J]])
// CHECK: call @agentc_tokenize({{.*}}, %[[INS]], {{.*}}, %[[N]], {{.*}})
// CHECK: func.func @agentc_xeon_run(%{{.*}}: !llvm.ptr{{.*}}, %{{.*}}: !llvm.ptr{{.*}}, %{{.*}}: !llvm.ptr{{.*}}, %{{.*}}: !llvm.ptr{{.*}}) -> i64 attributes {agentc.entry}
// CHECK: %[[CAP:.*]] = arith.constant 512 : i64
// CHECK: %[[BUF:.*]] = call @__agentc_buffer(%[[CAP]])
// CHECK: %[[RC:.*]] = call @a_tokenize(%{{.*}}, %{{.*}}, %[[BUF]])
// CHECK: cf.cond_br %{{.*}}, ^bb{{[0-9]+}}(%[[RC]] : i64), ^bb
// CHECK: %[[V:.*]] = call @__agentc_view(%[[BUF]], %[[RC]])
// CHECK: %[[P:.*]] = call @__agentc_ptr(%[[V]])
// CHECK: call @agentc_send(%{{.*}}, %{{.*}}, %[[P]], %{{.*}})
// CHECK: call @__agentc_release(%[[BUF]])
// CHECK: return

// The GPU pool: prefill binds its RoPE tables and 9 weights per layer and calls the
// kernel's bufferized signature (input, tables, weights, then the outputs y, K, V) once
// per layer.
// CHECK-LABEL: module @h100
// CHECK: func.func @prefill_layer_s128_d64_h2_kv1_f128({{.*}}tensor<128x64xf32>
// CHECK: module @host
// CHECK: func.func private @prefill_layer_s128_d64_h2_kv1_f128(memref<128x64xf32>, memref<128x16xf32>, memref<128x16xf32>, memref<64xf32>, {{.*}}, memref<128x64xf32>, memref<128x32xf32>, memref<128x32xf32>)
// CHECK: func.func @a_prefill(
// CHECK: %[[L:.*]] = arith.constant 4 : index
// CHECK: scf.for %[[I:.*]] = %{{.*}} to %[[L]]
// CHECK: %[[IDX:.*]] = arith.index_cast %[[I]] : index to i64
// CHECK-COUNT-11: call @agentc_bind({{.*}}, %[[IDX]], {{.*}})
// CHECK: call @prefill_layer_s128_d64_h2_kv1_f128(
// CHECK: memref.copy
// CHECK: func.func @agentc_h100_run(
// CHECK: call @agentc_recv(

module attributes {agentc.stage = "placed"} {
  "agent.model"() {d_model = 64 : i64, dtype = "fp16", ffn = 128 : i64, heads = 2 : i64, kind = "decoder", kv_heads = 1 : i64, layers = 4 : i64, sym_name = "m", vocab = 1000 : i64} : () -> ()
  "agent.graph"() ({
    %0 = "agent.input"() {index = 0 : i64, name = "q"} : () -> !agent.text
    %j = "agent.input"() {index = 1 : i64, name = "ctx"} : () -> !agent.json
    %1 = "llm.tokenize"(%0, %j) {call = "a", label = "a.tokenize", model = "m", tokens = 128 : i64, batch = 1 : i64, pool = "xeon", device = "xeon-8480", target = "llvm-cpu", chip = "sapphirerapids", tp = 1 : i64, replicas = 1 : i64, start_ms = 0.0 : f64, finish_ms = 1.0 : f64, operandSegmentSizes = array<i32: 0, 1, 0, 0, 0, 1, 0, 0>} : (!agent.text, !agent.json) -> !agent.tokens
    %2 = "llm.prefill"(%1) {call = "a", label = "a.prefill", model = "m", tokens = 300 : i64, batch = 1 : i64, pool = "h100", device = "H100", target = "nvvm", chip = "sm_90", tp = 1 : i64, replicas = 1 : i64, start_ms = 1.0 : f64, finish_ms = 2.0 : f64, operandSegmentSizes = array<i32: 0, 0, 1, 0, 0, 0, 0, 0>} : (!agent.tokens) -> !agent.kv
    gpu.yield %2 : !agent.kv
  }) {entry, sym_name = "g"} : () -> ()
}
