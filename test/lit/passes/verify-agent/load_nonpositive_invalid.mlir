// A negative load on a graph.
//
// RUN: %agentc-opt %s -p verify-agent --verify-diagnostics
// RUN: rm -f %t.mlir
// RUN: not %agentc-opt %s -p verify-agent -o %t.mlir
// RUN: test ! -e %t.mlir

module {
  "agent.model"() {d_model = 256 : i64, dtype = "fp16", ffn = 1024 : i64, heads = 4 : i64, kind = "decoder", kv_heads = 4 : i64, layers = 2 : i64, sym_name = "m", vocab = 1000 : i64} : () -> ()
  // expected-error@+1 {{agent 'a': load_rps must be positive, got -1}}
  "agent.graph"() ({
    %0 = "agent.input"() {index = 0 : i64, name = "x"} : () -> !agent.text
    %1 = "llm.call"(%0) {input_tokens = 8 : i64, label = "y", model = "m", operandSegmentSizes = array<i32: 1, 0, 0, 0>, output_tokens = 8 : i64} : (!agent.text) -> !agent.text
    gpu.yield %1 : !agent.text
  }) {input_kinds = ["text"], load_rps = -1.000000e+00 : f64, output_kinds = ["text"], sym_name = "a"} : () -> ()
}
