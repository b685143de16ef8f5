// The CPU target's elementwise ops and row reductions (bias adds, GELU, softmax,
// LayerNorm/RMSNorm): a transform-dialect script, assembled per kernel by
// targets/cpu/scripts.py and run by `transform-interpreter` on a kernel module whose
// `linalg.generic` ops carry `agentc.vector` tags (targets/cpu/schedule.py picks them).
// Each tagged op is tiled down to one vector (every outer dim 1; the last dim a slice
// of 8 to 64 lanes, or the whole row for a reduction over it) and vectorised; the
// LLVM pipeline lowers the vector ops that are left.
// Left to loops, LLVM kept most of them scalar (row reductions in order, exp a libm
// call per element).
//
// Format: as matmul.mlir (`// @fragment NAME` starts a fragment, other `//` lines are
// dropped, `${name}` is a string.Template parameter, `${id}` numbers the tiling). The
// script: `head`; per distinct tiling `vector`; then `end`.

// @fragment head
module attributes {transform.with_named_sequence} {
  transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {

// Parameters: key (the `agentc.vector` tag), sizes (the tile sizes), loops (the handles
// of the tile loops, one per nonzero size), types (the tiled op's and the loops' types).
// @fragment vector
    %ew_${id} = transform.structured.match ops{["linalg.generic"]}
      attributes {agentc.vector = "${key}"} in %root : (!transform.any_op) -> !transform.any_op
    transform.foreach %ew_${id} : !transform.any_op {
    ^bb0(%ewone_${id}: !transform.any_op):
      %ewtile_${id}${loops} = transform.structured.tile_using_for %ewone_${id}
        tile_sizes ${sizes} : (!transform.any_op) -> (${types})
      transform.structured.vectorize %ewtile_${id} : !transform.any_op
    }

// Row reductions become vector.reduction ops (tree-summed: the LLVM lowering runs
// with reassociate-fp-reductions) and the unit dims of the tiles are dropped.
// @fragment end
    %ewfuncs = transform.structured.match ops{["func.func"]} in %root
      : (!transform.any_op) -> !transform.any_op
    transform.apply_patterns to %ewfuncs {
      transform.apply_patterns.vector.lower_multi_reduction lowering_strategy = "innerreduction"
      transform.apply_patterns.vector.cast_away_vector_leading_one_dim
      transform.apply_patterns.canonicalization
    } : !transform.any_op
    transform.yield
  }
}
