// Tests passes/lower_host.py: each pool's op functions and schedule become a host
// program over byte buffers in a nested module @host; the kernels stay outside it.
// RUN: %agentc-opt %s -p partition,lower-kernels,lower-host | FileCheck %s

// The CPU pool: a runtime call with both inputs, then a send of its result. The runtime
// call's op function takes its inputs as the runtime does (arrays of pointers and sizes).
// CHECK-LABEL: module @xeon
// CHECK: module @host attributes {agentc.entry_point = "agentc_xeon_run", agentc.host, agentc.inputs = ["text", "json"], agentc.outputs = []}
// CHECK-DAG: func.func private @agentc_alloc(i64, i64) -> !llvm.ptr
// CHECK-DAG: func.func private @agentc_send(i64, !llvm.ptr, !llvm.ptr, i64) -> i64
// CHECK-DAG: func.func private @agentc_tokenize(!llvm.ptr, !llvm.ptr, !llvm.ptr, i64, !llvm.ptr, i64) -> i64
// CHECK: func.func @a_tokenize(%[[INS:[^:]+]]: !llvm.ptr{{.*}}, %[[SIZES:[^:]+]]: !llvm.ptr{{.*}}, %[[OUT:[^:]+]]: memref<?xi8>{{.*}}) -> i64 attributes {{{.*}}llvm.linkage = #llvm.linkage<internal>}
// CHECK: %[[N:.*]] = arith.constant 2 : i64
// CHECK: %[[O:.*]] = call @__agentc_ptr(%[[OUT]])
// CHECK: call @agentc_tokenize({{.*}}, %[[INS]], %[[SIZES]], %[[N]], %[[O]], {{.*}})
// The schedule's ops in a step function over the frame: each reads its inputs from their
// slots, allocates its result into its own slot (512 bytes: slot 2, after the 2 inputs),
// and frees the buffers it reads last (the send frees the tokens).
// CHECK: func.func private @__agentc_step0(%[[F:[^:]+]]: !llvm.ptr{{.*}}) -> i64 attributes {{{.*}}passthrough = ["noinline"]}
// CHECK: %[[A:.*]] = llvm.alloca %{{.*}} x !llvm.ptr
// CHECK: %[[S:.*]] = llvm.alloca %{{.*}} x i64
// CHECK: %[[SLOT:.*]] = arith.constant 2 : i64
// CHECK: %[[CAP:.*]] = arith.constant 512 : i64
// CHECK: %[[Q:.*]] = call @__agentc_slot(%[[F]], %{{.*}})
// CHECK: call @__agentc_arg(%[[Q]], %[[A]], %[[S]], %{{.*}})
// CHECK: %[[J:.*]] = call @__agentc_slot(%[[F]], %{{.*}})
// CHECK: call @__agentc_arg(%[[J]], %[[A]], %[[S]], %{{.*}})
// CHECK: %[[BUF:.*]] = call @__agentc_slot_new(%[[F]], %[[SLOT]], %[[CAP]])
// CHECK: %[[RC:.*]] = call @a_tokenize(%[[A]], %[[S]], %[[BUF]])
// CHECK: call @__agentc_slot_written(%[[F]], %[[SLOT]], %[[RC]])
// CHECK: cf.cond_br %{{.*}}, ^bb{{[0-9]+}}(%[[RC]] : i64), ^bb
// CHECK: %[[TOK:.*]] = arith.constant 2 : i64
// CHECK: %[[V:.*]] = call @__agentc_slot(%[[F]], %[[TOK]])
// CHECK: %[[P:.*]] = call @__agentc_ptr(%[[V]])
// CHECK: call @agentc_send(%{{.*}}, %{{.*}}, %[[P]], %{{.*}})
// CHECK: %[[DONE:.*]] = arith.constant 2 : i64
// CHECK: call @__agentc_slot_free(%[[F]], %[[DONE]])
// CHECK: return
// The entry point: a frame of 5 slots (2 inputs, 3 ops) of 16 bytes, the inputs in their
// slots, the steps, and on either exit the frame freed with what it still holds.
// CHECK: func.func @agentc_xeon_run(%{{.*}}: !llvm.ptr{{.*}}, %{{.*}}: !llvm.ptr{{.*}}, %{{.*}}: !llvm.ptr{{.*}}, %{{.*}}: !llvm.ptr{{.*}}) -> i64 attributes {agentc.entry}
// CHECK: %[[FB:.*]] = arith.constant 80 : i64
// CHECK: %[[FR:.*]] = call @agentc_alloc(%[[FB]], %{{.*}})
// CHECK-COUNT-2: call @__agentc_slot_set(%[[FR]], %{{.*}})
// CHECK: %[[RC0:.*]] = call @__agentc_step0(%[[FR]])
// CHECK: cf.cond_br %{{.*}}, ^bb{{[0-9]+}}(%[[RC0]] : i64), ^bb
// CHECK: call @__agentc_frame_free(%[[FR]], %{{.*}}, %{{.*}})
// CHECK-NEXT: return
// CHECK: ^bb{{[0-9]+}}(%[[ERR:[^:]+]]: i64
// CHECK-NEXT: call @__agentc_frame_free(%[[FR]], %{{.*}}, %{{.*}})
// CHECK-NEXT: return %[[ERR]]

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
// CHECK: func.func private @__agentc_step0(
// CHECK: call @agentc_recv(
// CHECK: func.func @agentc_h100_run(

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
