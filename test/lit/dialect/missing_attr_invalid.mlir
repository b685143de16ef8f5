// agent.loop without max_trips is rejected by IRDL before any pass runs.
//
// RUN: %agentc-opt %s --verify-diagnostics
// RUN: rm -f %t.mlir
// RUN: not %agentc-opt %s -o %t.mlir
// RUN: test ! -e %t.mlir

module {
  "agent.graph"() ({
    %0 = "agent.input"() {index = 0 : i64, name = "x"} : () -> !agent.text
    // expected-error@+1 {{'agent.loop' op attribute "max_trips" is expected but not provided}}
    %1 = "agent.loop"(%0) ({
    ^bb0(%arg0: !agent.text):
      gpu.yield %arg0 : !agent.text
    }) {expected_trips = 1.0 : f64, operandSegmentSizes = array<i32: 0, 1, 0, 0, 0, 0>, resultSegmentSizes = array<i32: 0, 1, 0, 0, 0, 0>} : (!agent.text) -> !agent.text
    gpu.yield %0 : !agent.text
  }) {input_kinds = ["text"], output_kinds = ["text"], sym_name = "a"} : () -> ()
}
