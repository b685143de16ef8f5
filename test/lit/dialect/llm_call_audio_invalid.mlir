// IRDL checks operand kinds per slot: llm.call reads text, tokens, documents or json,
// so audio is rejected when the file is parsed, with the file's own location, the
// source line and a caret, and nothing is written.
//
// RUN: %agentc-opt %s --verify-diagnostics
// RUN: rm -f %t.mlir
// RUN: not %agentc-opt %s -p verify-agent -o %t.mlir 2>&1 | FileCheck --strict-whitespace %s
// RUN: test ! -e %t.mlir
// RUN: not %agentc compile %s --emit agent 2>&1 | FileCheck --strict-whitespace %s

module {
  "agent.model"() {d_model = 256 : i64, dtype = "fp16", ffn = 1024 : i64, heads = 4 : i64, kind = "decoder", kv_heads = 4 : i64, layers = 2 : i64, sym_name = "m", vocab = 1000 : i64} : () -> ()
  "agent.graph"() ({
    %0 = "agent.input"() {index = 0 : i64, name = "q"} : () -> !agent.audio
    // expected-error@+1 {{expected base type 'agent.text' but got 'agent.audio'}}
    %1 = "llm.call"(%0) {input_tokens = 8 : i64, label = "y", model = "m", operandSegmentSizes = array<i32: 1, 0, 0, 0>, output_tokens = 8 : i64} : (!agent.audio) -> !agent.text
    gpu.yield %1 : !agent.text
  }) {input_kinds = ["audio"], output_kinds = ["text"], sym_name = "a"} : () -> ()
}

// CHECK: {{.*}}llm_call_audio_invalid.mlir:16:10: error: expected base type 'agent.text' but got 'agent.audio'
// CHECK-NEXT: {{^}}    %1 = "llm.call"(%0) {input_tokens = 8 : i64, label = "y", model = "m", operandSegmentSizes = array<i32: 1, 0, 0, 0>, output_tokens = 8 : i64} : (!agent.audio) -> !agent.text{{$}}
// CHECK-NEXT: {{^}}         ^{{$}}
// CHECK-NOT: Traceback
