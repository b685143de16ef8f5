// Tests passes/lower_kernels.py and passes/lower_host.py on one llm call: the call is
// sized by its prompt + new tokens (16 + 4 -> 64 context rows); prefill gathers the
// token embeddings (bind argument 0), runs prefill_layer per layer and keeps K and V in
// the KV value (n, hidden, K of every layer, V of every layer); decode draws each token
// with the sample kernel and runs the decode steps over the cache (RoPE rows bound by
// position); sample hands the ids on.
// RUN: %agentc-opt %s -p partition,lower-kernels,lower-host | FileCheck %s

// CHECK-LABEL: module @xeon
// CHECK-DAG: func.func @prefill_layer_s64_d64_h4_kv2_f128(
// CHECK-DAG: func.func @decode_step_c64_d64_h4_kv2_f128(
// CHECK-DAG: func.func @sample_d64_v512_k4(
// CHECK: module @host
// CHECK: func.func @ans_prefill(%[[TOK:.*]]: memref<?xi8>{{.*}}, %[[KV:.*]]: memref<?xi8>{{.*}}) -> i64
// CHECK: %[[IDS:.*]] = memref.view %[[TOK]][%{{.*}}][%{{.*}}] : memref<?xi8> to memref<?xi32>
// CHECK: %[[ZERO:.*]] = arith.constant 0 : i64
// CHECK: %[[EMB_BYTES:.*]] = arith.constant 131072 : i64
// CHECK: call @agentc_bind(%{{.*}}, %{{.*}}, %[[ZERO]], %{{.*}}, %[[EMB_BYTES]])
// CHECK: %[[EMB:.*]] = memref.view {{.*}} to memref<512x64xf32>
// CHECK: %[[X:.*]] = memref.view {{.*}} to memref<64x64xf32>
// CHECK: memref.load %[[IDS]]
// CHECK: memref.load %[[EMB]]
// CHECK: memref.store %{{.*}}, %[[X]]
// CHECK: scf.for %[[L:.*]] = %{{.*}} to %{{.*}}
// CHECK-COUNT-11: call @agentc_bind(
// CHECK: call @prefill_layer_s64_d64_h4_kv2_f128(%[[X]],
// CHECK: memref.view %[[KV]][%{{.*}}][] : memref<?xi8> to memref<64x32xf32>
// CHECK: memref.view %[[KV]][%{{.*}}][] : memref<?xi8> to memref<64x32xf32>
// CHECK: %[[WRITTEN:.*]] = arith.constant 33032 : i64
// CHECK: return %[[WRITTEN]]
// CHECK: func.func @ans_decode(
// CHECK: %[[HID:.*]] = memref.view %{{.*}}[%c8][] : memref<?xi8> to memref<64xf32>
// CHECK: %[[MASK:.*]] = memref.view {{.*}} to memref<64xf32>
// CHECK: %[[T:.*]] = arith.constant 4 : index
// CHECK: scf.for %{{.*}} = %{{.*}} to %[[T]] step %{{.*}} iter_args(%[[POS:.*]] = %{{.*}}) -> (index)
// CHECK: call @sample_d64_v512_k4(%[[HID]],
// CHECK: scf.if
// CHECK: %[[P64:.*]] = arith.index_cast %[[POS]] : index to i64
// CHECK: call @agentc_bind({{.*}}, %[[P64]], {{.*}})
// CHECK: call @agentc_bind({{.*}}, %[[P64]], {{.*}})
// CHECK-COUNT-9: call @agentc_bind(
// CHECK: call @decode_step_c64_d64_h4_kv2_f128({{.*}}, %[[MASK]], {{.*}})
// CHECK: memref.store %{{.*}}, %[[MASK]][%[[POS]]]
// CHECK: func.func @ans_sample(
// CHECK-NEXT: call @__agentc_copy(
// The steps: the token ids' buffer (244 bytes), then the KV value's (33032 bytes) that
// prefill writes and kv.transfer copies; the ids (slot 1, after the one input) are
// freed after prefill reads them.
// CHECK: func.func private @__agentc_step0(%[[F:[^:]+]]: !llvm.ptr
// CHECK: %[[TCAP:.*]] = arith.constant 244 : i64
// CHECK: call @__agentc_slot_new(%[[F]], %{{.*}}, %[[TCAP]])
// CHECK: call @ans_tokenize(
// CHECK: %[[KVS:.*]] = arith.constant 2 : i64
// CHECK: %[[KVCAP:.*]] = arith.constant 33032 : i64
// CHECK: %[[KV:.*]] = call @__agentc_slot_new(%[[F]], %[[KVS]], %[[KVCAP]])
// CHECK: call @ans_prefill(%{{.*}}, %[[KV]])
// CHECK: %[[DONE:.*]] = arith.constant 1 : i64
// CHECK: call @__agentc_slot_free(%[[F]], %[[DONE]])
// CHECK: arith.constant 33032 : i64
// CHECK: call @ans_kv_transfer(
// CHECK: func.func @agentc_xeon_run(
// CHECK: call @__agentc_step0(

module attributes {agentc.stage = "placed"} {
  "agent.model"() {d_model = 64 : i64, dtype = "fp16", ffn = 128 : i64, heads = 4 : i64, kind = "decoder", kv_heads = 2 : i64, layers = 2 : i64, sym_name = "tiny", vocab = 512 : i64} : () -> ()
  "agent.graph"() ({
    %0 = "agent.input"() {index = 0 : i64, name = "q"} : () -> !agent.text
    %1 = "llm.tokenize"(%0) {batch = 1 : i64, call = "ans", chip = "sapphirerapids", device = "xeon-8480", label = "ans.tokenize", model = "tiny", op_id = "ans.tokenize", operandSegmentSizes = array<i32: 0, 1, 0, 0, 0, 0, 0, 0>, option = 0 : i64, pool = "xeon", replicas = 1 : i64, start_ms = 0.000000e+00 : f64, target = "llvm-cpu", tokens = 16 : i64, tp = 1 : i64} : (!agent.text) -> !agent.tokens
    %2 = "llm.prefill"(%1) {batch = 1 : i64, call = "ans", chip = "sapphirerapids", device = "xeon-8480", label = "ans.prefill", model = "tiny", op_id = "ans.prefill", operandSegmentSizes = array<i32: 0, 0, 1, 0, 0, 0, 0, 0>, option = 0 : i64, pool = "xeon", replicas = 1 : i64, target = "llvm-cpu", tokens = 16 : i64, tp = 1 : i64} : (!agent.tokens) -> !agent.kv
    %3 = "kv.transfer"(%2) {batch = 1 : i64, call = "ans", chip = "sapphirerapids", device = "xeon-8480", label = "ans.kv_transfer", model = "tiny", op_id = "ans.kv_transfer", operandSegmentSizes = array<i32: 0, 0, 0, 0, 0, 0, 1, 0>, pool = "xeon", replicas = 1 : i64, src_pool = "xeon", target = "llvm-cpu", tokens = 16 : i64, tp = 1 : i64} : (!agent.kv) -> !agent.kv
    %4 = "llm.decode"(%3) {batch = 1 : i64, call = "ans", chip = "sapphirerapids", context = 16 : i64, device = "xeon-8480", label = "ans.decode", model = "tiny", op_id = "ans.decode", operandSegmentSizes = array<i32: 0, 0, 0, 0, 0, 0, 1, 0>, option = 4 : i64, pool = "xeon", replicas = 1 : i64, target = "llvm-cpu", tokens = 4 : i64, tp = 1 : i64} : (!agent.kv) -> !agent.tensor
    %5 = "llm.sample"(%4) {batch = 1 : i64, call = "ans", chip = "sapphirerapids", device = "xeon-8480", label = "ans.sample", model = "tiny", op_id = "ans.sample", operandSegmentSizes = array<i32: 0, 0, 0, 0, 0, 0, 0, 1>, option = 0 : i64, pool = "xeon", replicas = 1 : i64, target = "llvm-cpu", tokens = 4 : i64, tp = 1 : i64} : (!agent.tensor) -> !agent.tokens
    %6 = "llm.detokenize"(%5) {batch = 1 : i64, call = "ans", chip = "sapphirerapids", device = "xeon-8480", label = "ans.detokenize", model = "tiny", op_id = "ans.detokenize", operandSegmentSizes = array<i32: 0, 0, 1, 0, 0, 0, 0, 0>, option = 0 : i64, pool = "xeon", replicas = 1 : i64, target = "llvm-cpu", tokens = 4 : i64, tp = 1 : i64} : (!agent.tokens) -> !agent.text
    gpu.yield %6 : !agent.text
  }) {entry, input_kinds = ["text"], output_kinds = ["text"], sym_name = "a"} : () -> ()
}
