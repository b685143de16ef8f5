// The agent dialect does not accept ops it does not define.
//
// RUN: %agentc-opt %s --verify-diagnostics
// RUN: rm -f %t.mlir
// RUN: not %agentc-opt %s -o %t.mlir
// RUN: test ! -e %t.mlir

module {
  "agent.graph"() ({
    %0 = "agent.input"() {index = 0 : i64, name = "x"} : () -> !agent.text
    // expected-error@+1 {{unregistered operation 'agent.frobnicate' found in dialect ('agent')}}
    %1 = "agent.frobnicate"(%0) : (!agent.text) -> !agent.text
    gpu.yield %0 : !agent.text
  }) {input_kinds = ["text"], output_kinds = ["text"], sym_name = "a"} : () -> ()
}
