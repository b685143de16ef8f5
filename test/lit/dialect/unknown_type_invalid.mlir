// !agent.video is not a value kind.
//
// RUN: %agentc-opt %s --verify-diagnostics
// RUN: rm -f %t.mlir
// RUN: not %agentc-opt %s -o %t.mlir
// RUN: test ! -e %t.mlir

module {
  "agent.graph"() ({
    %0 = "agent.input"() {index = 0 : i64, name = "x"} : () -> !agent.text
    // expected-error@+1 {{expected dynamic type}}
    %1 = "agent.stt"(%0) {label = "t", model = "w"} : (!agent.text) -> !agent.video
    gpu.yield %0 : !agent.text
  }) {input_kinds = ["text"], output_kinds = ["text"], sym_name = "a"} : () -> ()
}
