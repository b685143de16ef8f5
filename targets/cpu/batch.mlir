// The CPU target's batched contractions (attention's Q @ K^T and P @ V, written as
// linalg.generic): a transform-dialect script, assembled per kernel by
// targets/cpu/scripts.py and run by `transform-interpreter` on a kernel module whose
// contractions carry `agentc.batch` tags. Every dim but one m, one n and the k dim is
// walked by a loop (a forall when threads share it), the unit dims are folded away and
// the rest specialised to a (possibly transposed) linalg.matmul, which the matmul
// script (matmul.mlir) then schedules.
//
// Format: as matmul.mlir (`// @fragment NAME` starts a fragment, other `//` lines are
// dropped, `${name}` is a string.Template parameter, `${id}` numbers the batch kind).
// The script: `head`; per distinct tiling `batch_for` or `batch_forall`, then
// `specialize`; then `end`.

// @fragment head
module attributes {transform.with_named_sequence} {
  transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {

// Sequential batch loops. Parameters: key (the `agentc.batch` tag), sizes (tile sizes,
// 1 for each batch dim, 0 for m, n and k), more_loops (the handles of the loops after
// the first), types (the result types: the tiled op and each loop).
// @fragment batch_for
    %bc_${id} = transform.structured.match ops{["linalg.generic"]}
      attributes {agentc.batch = "${key}"} in %root : (!transform.any_op) -> !transform.any_op
    transform.foreach %bc_${id} : !transform.any_op {
    ^bb0(%bone_${id}: !transform.any_op):
      %btile_${id}, %bloop_${id}${more_loops} = transform.structured.tile_using_for %bone_${id}
        tile_sizes ${sizes} : (!transform.any_op) -> (${types})

// The batch shared out over threads (one scf.forall). Parameters: key, sizes.
// @fragment batch_forall
    %bc_${id} = transform.structured.match ops{["linalg.generic"]}
      attributes {agentc.batch = "${key}"} in %root : (!transform.any_op) -> !transform.any_op
    transform.foreach %bc_${id} : !transform.any_op {
    ^bb0(%bone_${id}: !transform.any_op):
      %btile_${id}, %bloop_${id} = transform.structured.tile_using_forall %bone_${id}
        tile_sizes ${sizes} : (!transform.any_op) -> (!transform.any_op, !transform.any_op)

// @fragment specialize
      transform.apply_patterns to %bloop_${id} {
        transform.apply_patterns.linalg.fold_unit_extent_dims_via_slices
        transform.apply_patterns.canonicalization
      } : !transform.any_op
      %bgen_${id} = transform.structured.match ops{["linalg.generic"]} in %bloop_${id}
        : (!transform.any_op) -> !transform.any_op
      %bmm_${id} = transform.structured.specialize %bgen_${id} : (!transform.any_op) -> !transform.any_op
    }

// @fragment end
    transform.yield
  }
}
