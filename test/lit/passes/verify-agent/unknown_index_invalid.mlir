// agent.retrieve from an index that is not declared.
//
// RUN: %agentc-opt %s -p verify-agent --verify-diagnostics
// RUN: rm -f %t.mlir
// RUN: not %agentc-opt %s -p verify-agent -o %t.mlir
// RUN: test ! -e %t.mlir

module {
  "agent.model"() {d_model = 256 : i64, dtype = "fp16", ffn = 1024 : i64, heads = 4 : i64, kind = "decoder", kv_heads = 4 : i64, layers = 2 : i64, sym_name = "m", vocab = 1000 : i64} : () -> ()
  "agent.graph"() ({
    %0 = "agent.input"() {index = 0 : i64, name = "x"} : () -> !agent.text
    %1 = "agent.input"() {index = 1 : i64, name = "e"} : () -> !agent.embedding
    // expected-error@+1 {{unknown index 'docs'}}
    %2 = "agent.retrieve"(%1) {dim = 64 : i64, index = "docs", index_size = 100 : i64, k = 3 : i64, label = "d"} : (!agent.embedding) -> !agent.documents
    gpu.yield %0 : !agent.text
  }) {input_kinds = ["text", "embedding"], output_kinds = ["text"], sym_name = "a"} : () -> ()
}
