// agent.call passing text to a graph that takes audio.
//
// RUN: %agentc-opt %s -p verify-agent --verify-diagnostics
// RUN: rm -f %t.mlir
// RUN: not %agentc-opt %s -p verify-agent -o %t.mlir
// RUN: test ! -e %t.mlir

module {
  "agent.model"() {d_model = 256 : i64, dtype = "fp16", ffn = 1024 : i64, heads = 4 : i64, kind = "decoder", kv_heads = 4 : i64, layers = 2 : i64, sym_name = "m", vocab = 1000 : i64} : () -> ()
  "agent.graph"() ({
    %0 = "agent.input"() {index = 0 : i64, name = "q"} : () -> !agent.audio
    gpu.yield %0 : !agent.audio
  }) {input_kinds = ["audio"], output_kinds = ["audio"], sym_name = "b"} : () -> ()
  "agent.graph"() ({
    %0 = "agent.input"() {index = 0 : i64, name = "x"} : () -> !agent.text
    // expected-error@+1 {{call of 'b' passes (text) but it takes (audio)}}
    %1 = "agent.call"(%0) {callee = "b", label = "b", operandSegmentSizes = array<i32: 0, 1, 0, 0, 0, 0>, resultSegmentSizes = array<i32: 1, 0, 0, 0, 0, 0>} : (!agent.text) -> !agent.audio
    gpu.yield %0 : !agent.text
  }) {input_kinds = ["text"], output_kinds = ["text"], sym_name = "a"} : () -> ()
}
