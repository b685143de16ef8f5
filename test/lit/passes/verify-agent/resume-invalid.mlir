// A .mlir input is verified before the pipeline resumes; the error names this file.
//
// RUN: rm -rf %t
// RUN: not %agentc compile %s -o %t 2>&1 | FileCheck %s
// RUN: test ! -e %t

"agent.graph"() ({
  %0 = "agent.input"() {name = "q", index = 0 : i64} : () -> !agent.text
  %1 = "llm.call"(%0) {model = "nope", input_tokens = 5 : i64, output_tokens = 3 : i64, operandSegmentSizes = array<i32: 1, 0, 0, 0>} : (!agent.text) -> !agent.text
  "gpu.yield"(%1) : (!agent.text) -> ()
}) {sym_name = "g"} : () -> ()

// CHECK: resume-invalid.mlir:9:8: error: unknown model 'nope' (no agent.model declares it)
