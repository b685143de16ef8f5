// Tests passes/lower_kernels.py and passes/lower_host.py on an embedding: the encoder
// and its pooling get masked kernels per row bucket (32, 128, then the model's 512
// position embeddings); the host program takes the sentence's real rows from
// agentc_embed_rows, picks the smallest bucket that holds them, marks them in the mask
// and returns the last layer's real rows (encode) or the masked mean (pool).
// RUN: %agentc-opt %s -p partition,lower-kernels,lower-host | FileCheck %s

// CHECK-LABEL: module @xeon
// CHECK-DAG: func.func @encoder_layer_s32_d384_h12_f1536_masked({{.*}}tensor<32xf32>{{.*}}) -> tensor<32x384xf32>
// CHECK-DAG: func.func @encoder_layer_s128_d384_h12_f1536_masked(
// CHECK-DAG: func.func @encoder_layer_s512_d384_h12_f1536_masked(
// CHECK-DAG: func.func @mean_pool_l2_s32_d384_masked({{.*}}tensor<32x384xf32>{{.*}}tensor<32xf32>{{.*}}) -> tensor<384xf32>
// CHECK-DAG: func.func @mean_pool_l2_s512_d384_masked(
// CHECK: module @host
// CHECK: func.func private @agentc_embed_rows(!llvm.ptr, !llvm.ptr, !llvm.ptr, i64, !llvm.ptr, i64) -> i64
// CHECK: func.func @e_encode(%[[TEXT:.*]]: memref<?xi8>{{.*}}, %[[OUT:.*]]: memref<?xi8>{{.*}}) -> i64
// CHECK: %[[ROWB:.*]] = arith.constant 1536 : i64
// CHECK: %[[CAP:.*]] = arith.constant 786432 : i64
// CHECK: %[[GOT:.*]] = call @agentc_embed_rows({{.*}}, %[[CAP]])
// CHECK: %[[SRC:.*]] = call @__agentc_view(%{{.*}}, %[[GOT]])
// CHECK: %[[BYTES:.*]] = call @__agentc_size(%[[SRC]])
// CHECK: %[[N64:.*]] = arith.divui %[[BYTES]], %[[ROWB]] : i64
// CHECK: %[[N:.*]] = arith.index_cast %[[N64]] : i64 to index
// CHECK: %[[B32:.*]] = arith.constant 32 : index
// CHECK: arith.cmpi ule, %[[N]], %[[B32]] : index
// CHECK: memref.view {{.*}} to memref<32x384xf32>
// CHECK: %[[MASK:.*]] = memref.view {{.*}} to memref<32xf32>
// CHECK: %[[REAL:.*]] = arith.minui %[[N]]
// CHECK: scf.for %[[J:.*]] = %{{.*}} to %[[REAL]]
// CHECK-NEXT: memref.store %{{.*}}, %[[MASK]][%[[J]]] : memref<32xf32>
// CHECK: scf.for
// CHECK-COUNT-16: call @agentc_bind(
// CHECK: call @encoder_layer_s32_d384_h12_f1536_masked({{.*}}, %[[MASK]], %{{.*}})
// CHECK: memref.copy
// CHECK: call @__agentc_view(%{{.*}}, %[[BYTES]])
// CHECK: call @encoder_layer_s128_d384_h12_f1536_masked(
// CHECK: call @encoder_layer_s512_d384_h12_f1536_masked(
// CHECK: func.func @e_pool(
// CHECK: call @mean_pool_l2_s32_d384_masked(
// CHECK: call @mean_pool_l2_s128_d384_masked(
// CHECK: call @mean_pool_l2_s512_d384_masked(
// CHECK: func.func private @__agentc_step0(
// CHECK: %[[EB:.*]] = arith.constant 786432 : i64
// CHECK: call @__agentc_slot_new(%{{.*}}, %{{.*}}, %[[EB]])
// CHECK: call @e_encode(
// CHECK: func.func @agentc_xeon_run(
// CHECK-NOT: encoder_layer_s128_d384_h12_f1536(

module attributes {agentc.stage = "placed"} {
  "agent.model"() {d_model = 384 : i64, dtype = "fp32", ffn = 1536 : i64, gated_ffn = false, heads = 12 : i64, kind = "encoder", kv_heads = 12 : i64, layers = 6 : i64, position_embeddings = 512 : i64, sym_name = "minilm", tied_embeddings = true, vocab = 30522 : i64} : () -> ()
  "agent.index"() {dim = 384 : i64, size = 8 : i64, sym_name = "docs"} : () -> ()
  "agent.graph"() ({
    %0 = "agent.input"() {index = 0 : i64, name = "q"} : () -> !agent.text
    %1 = "embed.encode"(%0) {batch = 1 : i64, call = "e", label = "e.encode", model = "minilm", op_id = "e.encode", tokens = 256 : i64, tp = 1 : i64, replicas = 1 : i64, pool = "xeon", device = "xeon-8480", target = "llvm-cpu", chip = "sapphirerapids", start_ms = 0.0 : f64, finish_ms = 2.5 : f64, operandSegmentSizes = array<i32: 0, 1, 0, 0, 0, 0, 0, 0>} : (!agent.text) -> !agent.tensor
    %2 = "embed.pool"(%1) {batch = 1 : i64, call = "e", label = "e.pool", model = "minilm", op_id = "e.pool", tokens = 256 : i64, tp = 1 : i64, replicas = 1 : i64, pool = "xeon", device = "xeon-8480", target = "llvm-cpu", chip = "sapphirerapids", start_ms = 2.5 : f64, finish_ms = 2.6 : f64, operandSegmentSizes = array<i32: 0, 0, 0, 0, 0, 0, 0, 1>} : (!agent.tensor) -> !agent.embedding
    %3 = "retrieve.search"(%2) {call = "d", dim = 384 : i64, index = "docs", index_size = 8 : i64, k = 3 : i64, label = "d", op_id = "d", tp = 1 : i64, replicas = 1 : i64, pool = "xeon", device = "xeon-8480", target = "llvm-cpu", chip = "sapphirerapids", start_ms = 2.6 : f64, finish_ms = 2.7 : f64, operandSegmentSizes = array<i32: 0, 0, 0, 1, 0, 0, 0, 0>} : (!agent.embedding) -> !agent.documents
    gpu.yield %3 : !agent.documents
  }) {entry, input_kinds = ["text"], output_kinds = ["documents"], sym_name = "a"} : () -> ()
}
