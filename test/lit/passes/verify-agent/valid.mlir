// A hand-written module that uses every construct verify-agent checks passes it
// unchanged, and --verify-diagnostics with no expectations succeeds.
//
// RUN: %agentc-opt %s -p verify-agent | FileCheck %s
// RUN: %agentc-opt %s -p verify-agent --verify-diagnostics
// RUN: %agentc-opt %s -p verify-agent -o %t.mlir && %agentc-opt %t.mlir -p verify-agent | diff - %t.mlir

// CHECK-LABEL: module attributes {agentc.stage = "agent"}
// CHECK-COUNT-3: "agent.model"()
// CHECK: "agent.index"() {dim = 64 : i64, size = 100 : i64, sym_name = "notes"}
// CHECK: "agent.call"(%{{.*}}) {callee = "helper"
// CHECK: {expected_trips = 1.500000e+00 : f64, max_trips = 3 : i64
// CHECK: {prob = 2.500000e-01 : f64
// CHECK: sla_latency_ms = 1.000000e+03 : f64, sla_ttft_ms = 1.000000e+02 : f64, sym_name = "main"}

module attributes {agentc.stage = "agent"} {
  "agent.model"() {d_model = 256 : i64, dtype = "fp16", ffn = 1024 : i64, heads = 4 : i64, kind = "decoder", kv_heads = 4 : i64, layers = 2 : i64, sym_name = "m", vocab = 1000 : i64} : () -> ()
  "agent.model"() {audio_frames_per_s = 50 : i64, d_model = 768 : i64, dtype = "fp16", encoder_layers = 12 : i64, ffn = 3072 : i64, gated_ffn = false, heads = 12 : i64, kind = "stt", kv_heads = 12 : i64, layers = 12 : i64, mel_bins = 80 : i64, position_embeddings = 448 : i64, sym_name = "w", tied_embeddings = true, vocab = 51865 : i64, window_ms = 30000 : i64} : () -> ()
  "agent.model"() {d_model = 384 : i64, dtype = "fp32", ffn = 1536 : i64, heads = 12 : i64, kind = "encoder", kv_heads = 12 : i64, layers = 6 : i64, sym_name = "minilm-l6", vocab = 30522 : i64} : () -> ()
  "agent.index"() {dim = 64 : i64, size = 100 : i64, sym_name = "notes"} : () -> ()
  "agent.graph"() ({
    %0 = "agent.input"() {index = 0 : i64, name = "t"} : () -> !agent.text
    %1 = "llm.call"(%0) {input_tokens = 8 : i64, label = "llm", model = "m", operandSegmentSizes = array<i32: 1, 0, 0, 0>, output_tokens = 8 : i64} : (!agent.text) -> !agent.text
    gpu.yield %1 : !agent.text
  }) {input_kinds = ["text"], output_kinds = ["text"], sym_name = "helper"} : () -> ()
  "agent.graph"() ({
    %0 = "agent.input"() {index = 0 : i64, name = "a"} : () -> !agent.audio
    %1 = "agent.stt"(%0) {label = "t", model = "w"} : (!agent.audio) -> !agent.text
    %2 = "agent.embed"(%1) {label = "e", model = "minilm-l6", operandSegmentSizes = array<i32: 1, 0, 0>} : (!agent.text) -> !agent.embedding
    %3 = "agent.retrieve"(%2) {dim = 64 : i64, index = "notes", index_size = 100 : i64, k = 3 : i64, label = "d"} : (!agent.embedding) -> !agent.documents
    %4 = "agent.loop"(%1) ({
    ^bb0(%arg0: !agent.text):
      %6 = "agent.call"(%arg0) {callee = "helper", label = "helper", operandSegmentSizes = array<i32: 0, 1, 0, 0, 0, 0>, resultSegmentSizes = array<i32: 0, 1, 0, 0, 0, 0>} : (!agent.text) -> !agent.text
      gpu.yield %6 : !agent.text
    }) {expected_trips = 1.500000e+00 : f64, max_trips = 3 : i64, operandSegmentSizes = array<i32: 0, 1, 0, 0, 0, 0>, resultSegmentSizes = array<i32: 0, 1, 0, 0, 0, 0>} : (!agent.text) -> !agent.text
    %5 = "agent.branch"() ({
      %6 = "llm.call"(%4, %3) {input_tokens = 8 : i64, label = "t.1", model = "m", operandSegmentSizes = array<i32: 1, 0, 1, 0>, output_tokens = 8 : i64} : (!agent.text, !agent.documents) -> !agent.text
      gpu.yield %6 : !agent.text
    }, {
      gpu.yield %4 : !agent.text
    }) {prob = 2.500000e-01 : f64, resultSegmentSizes = array<i32: 0, 1, 0, 0, 0, 0>} : () -> !agent.text
    gpu.yield %5 : !agent.text
  }) {input_kinds = ["audio"], load_rps = 2.000000e+00 : f64, output_kinds = ["text"], sla_latency_ms = 1.000000e+03 : f64, sla_ttft_ms = 1.000000e+02 : f64, sym_name = "main"} : () -> ()
}
