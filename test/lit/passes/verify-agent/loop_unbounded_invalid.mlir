// A loop whose max_trips is zero is unbounded in the frontend's terms.
//
// RUN: %agentc-opt %s -p verify-agent --verify-diagnostics
// RUN: rm -f %t.mlir
// RUN: not %agentc-opt %s -p verify-agent -o %t.mlir
// RUN: test ! -e %t.mlir

module {
  "agent.model"() {d_model = 256 : i64, dtype = "fp16", ffn = 1024 : i64, heads = 4 : i64, kind = "decoder", kv_heads = 4 : i64, layers = 2 : i64, sym_name = "m", vocab = 1000 : i64} : () -> ()
  "agent.graph"() ({
    %0 = "agent.input"() {index = 0 : i64, name = "x"} : () -> !agent.text
    // expected-error@+1 {{unbounded loop: max_trips must be >= 1, got 0}}
    %1 = "agent.loop"(%0) ({
    ^bb0(%arg0: !agent.text):
      gpu.yield %arg0 : !agent.text
    }) {expected_trips = 0.000000e+00 : f64, max_trips = 0 : i64, operandSegmentSizes = array<i32: 0, 1, 0, 0, 0, 0>, resultSegmentSizes = array<i32: 0, 1, 0, 0, 0, 0>} : (!agent.text) -> !agent.text
    gpu.yield %1 : !agent.text
  }) {input_kinds = ["text"], output_kinds = ["text"], sym_name = "a"} : () -> ()
}
