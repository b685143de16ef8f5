// The CPU target's matmul schedule: a transform-dialect script, assembled per kernel by
// targets/cpu/scripts.py from the fragments below and run by `transform-interpreter`
// on a kernel module whose static linalg.matmul ops carry `agentc.schedule` tags.
//
// Format (read by scripts.py; a file of fragments, not a module mlir-opt can parse):
// - `// @fragment NAME` starts a fragment; it runs to the next such line.
// - Other lines starting with `//` are comments like this one and are dropped.
// - `${name}` is a parameter, filled in with Python's string.Template when the
//   fragment is used. `${id}` numbers the schedule, so that each schedule's handles
//   (%mm_0, %mm_1, ...) have names of their own.
//
// The script: `head`; then per distinct schedule `match`, the tiling fragments the
// schedule needs, `mark`, `peel` per peeled dimension and `end_match`; then
// `vectorize` and `tail`.

// @fragment head
module attributes {transform.with_named_sequence} {
  transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {

// One block per distinct schedule, run on each op tagged with it (packing rewrites one
// op at a time). Parameters: key (the schedule's `agentc.schedule` tag), op (the op's
// name: linalg.matmul, or linalg.generic for a prepacked B's contraction).
// @fragment match
    %mm_${id} = transform.structured.match ops{["${op}"]}
      attributes {agentc.schedule = "${key}"} in %root : (!transform.any_op) -> !transform.any_op
    transform.foreach %mm_${id} : !transform.any_op {
    ^bb0(%one_${id}: !transform.any_op):

// @fragment end_match
    }

// Threads share out rows or columns of C (B not packed). Parameters: cur (the handle
// so far), threads (per-dimension thread counts, e.g. [2, 0]).
// @fragment forall
    %par_${id}, %forall_${id} = transform.structured.tile_using_forall %${cur}_${id} num_threads ${threads}
      : (!transform.any_op) -> (!transform.any_op, !transform.any_op)

// B packed into column panels: B[k, n] -> Bp[n / nr, k, nr] (zero-padded), so a register
// tile streams its panel contiguously (row-major B rows are a power-of-two stride
// apart at the usual sizes and fight over a few L1 sets). The packed op is a generic
// over (m, panel, k, j); each panel (and K block) is peeled off as a loop, its unit
// dims folded away, and what is left is a plain matmul again (A @ panel -> C columns).
// Parameters: cur, n (the panel width, the register tile's n).
// @fragment pack_b
    %gen_${id} = transform.structured.pack %${cur}_${id} packed_sizes = [0, ${n}, 0]
      : (!transform.any_op) -> (!transform.op<"linalg.generic">)
    %bpack_${id} = transform.get_producer_of_operand %gen_${id}[1]
      : (!transform.op<"linalg.generic">) -> (!transform.op<"linalg.pack">)

// B[k, n] packs to [k, n / nr, nr] by default; make it panel-major. (A transposed B,
// [n, k], packs to [n / nr, k, nr] as it is, and skips this fragment.)
// @fragment panel_major
    %packed_${id}, %bpanels_${id}, %unpack_${id} = transform.structured.pack_transpose %bpack_${id}
      with_compute_op(%gen_${id}) outer_perm = [1, 0]
      : (!transform.op<"linalg.pack">, !transform.op<"linalg.generic">)
      -> (!transform.op<"linalg.generic">, !transform.op<"linalg.pack">, !transform.any_op)

// Parameters: bpanels (the handle of B's pack op: `bpanels`, or `bpack` for a transposed B).
// @fragment lower_pack_b
    %bpad_${id}, %bexpand_${id}, %btranspose_${id} = transform.structured.lower_pack %${bpanels}_${id}
      : (!transform.op<"linalg.pack">)
      -> (!transform.op<"tensor.pad">, !transform.op<"tensor.expand_shape">, !transform.op<"linalg.transpose">)

// B's panels are copied panel row by panel row: tiled into blocks of `rows` rows of a
// panel (a divisor of K) and vectorised, each row moves as one vector of the panel's
// width. Left to loops, LLVM copied them one float at a time (it knows nothing of how
// the buffers alias), a fifth of an encoder layer's time. Parameters: transpose (the
// handle of B's copy into panels), transpose_type (its transform type), rows.
// @fragment vectorize_pack_b
    %bcopy_${id}, %bcl0_${id}, %bcl1_${id} = transform.structured.tile_using_for %${transpose}_${id}
      tile_sizes [1, ${rows}, 0]
      : (${transpose_type}) -> (!transform.any_op, !transform.any_op, !transform.any_op)
    transform.structured.vectorize %bcopy_${id} : !transform.any_op

// Threads share out the panels (or rows of A and C); each thread copies the B panels it
// uses inside its share, so a matmul is one dispatch to the thread pool, not two.
// Parameters: packed (the packed op's handle), counts (threads per loop of (m, panel, k, j)).
// @fragment pack_b_forall
    %ppar_${id}, %forall_${id} = transform.structured.tile_using_forall %${packed}_${id} num_threads ${counts}
      : (!transform.op<"linalg.generic">) -> (!transform.any_op, !transform.any_op)
    %bpart_${id}, %fforall_${id} = transform.structured.fuse_into_containing_op %btranspose_${id}
      into %forall_${id} : (!transform.op<"linalg.transpose">, !transform.any_op) -> (!transform.any_op, !transform.any_op)

// B prepacked (weights packed once when loaded): the op is already the packed generic
// over (m, panel, k, j); threads share out its panels (or rows) with nothing to copy.
// Parameters: counts (threads per loop of (m, panel, k, j)).
// @fragment prepacked_forall
    %ppar_${id}, %forall_${id} = transform.structured.tile_using_forall %one_${id} num_threads ${counts}
      : (!transform.any_op) -> (!transform.any_op, !transform.any_op)

// Each panel and K block becomes a loop; the rest is a matmul on one panel, tiled into
// register tiles of m rows. Parameters: cur, cur_type (its transform type), k_block,
// m and k (the register tile).
// @fragment panels
    %panel_${id}, %lnb_${id}, %lkb_${id} = transform.structured.tile_using_for %${cur}_${id}
      tile_sizes [0, 1, ${k_block}, 0] interchange = [1, 2, 0, 3]
      : (${cur_type}) -> (!transform.any_op, !transform.any_op, !transform.any_op)
    transform.apply_patterns to %lnb_${id} {
      transform.apply_patterns.linalg.fold_unit_extent_dims_via_slices
      transform.apply_patterns.canonicalization
    } : !transform.any_op
    %pgen_${id} = transform.structured.match ops{["linalg.generic"]} in %lnb_${id}
      : (!transform.any_op) -> !transform.op<"linalg.generic">
    %pmkn_${id} = transform.structured.interchange %pgen_${id} iterator_interchange = [0, 2, 1]
      : (!transform.op<"linalg.generic">) -> !transform.any_op
    %pmm_${id} = transform.structured.specialize %pmkn_${id} : (!transform.any_op) -> !transform.any_op
    %reg_${id}, %lm_${id}, %lk_${id} = transform.structured.tile_using_for %pmm_${id}
      tile_sizes [${m}, 0, ${k}]
      : (!transform.any_op) -> (!transform.any_op, !transform.any_op, !transform.any_op)

// B read in place, in K blocks. Parameters: cur, k_block.
// @fragment k_block
    %kb_${id}, %kloop_${id} = transform.structured.tile_using_for %${cur}_${id} tile_sizes [0, 0, ${k_block}]
      : (!transform.any_op) -> (!transform.any_op, !transform.any_op)

// Register tiles of an unpacked matmul. Parameters: cur, m, n, k (the register tile).
// @fragment register
    %reg_${id}, %lm_${id}, %ln_${id}, %lk_${id} = transform.structured.tile_using_for %${cur}_${id}
      tile_sizes [${m}, ${n}, ${k}]
      : (!transform.any_op) -> (!transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op)

// Marks the register tiles for `vectorize`; peeling copies the mark.
// @fragment mark
    transform.annotate %reg_${id} "agentc.vectorize" : !transform.any_op

// Peel n (inside m) before m: the m peel then clones both n loops into its remainder.
// Parameters: dim (`m` or `n`).
// @fragment peel
    %l${dim}f_${id} = transform.cast %l${dim}_${id} : !transform.any_op to !transform.op<"scf.for">
    %${dim}main_${id}, %${dim}rest_${id} = transform.loop.peel %l${dim}f_${id}
      : (!transform.op<"scf.for">) -> (!transform.any_op, !transform.any_op)

// C comes back from the panel layout (a reshape, plus a slice when N was padded); a C
// that was not a fresh fill (a slice of one, in a batch loop) goes in the same way. Then
// canonicalization turns the peeled edge tiles' sizes into constants, so every tile
// (full or edge) has a static shape and vectorises without masks.
// @fragment vectorize
    %cpacks = transform.structured.match ops{["linalg.pack"]} in %root
      : (!transform.any_op) -> !transform.op<"linalg.pack">
    %cpad, %cexpand, %ctranspose_in = transform.structured.lower_pack %cpacks
      : (!transform.op<"linalg.pack">)
      -> (!transform.op<"tensor.pad">, !transform.op<"tensor.expand_shape">, !transform.op<"linalg.transpose">)
    %unpacks = transform.structured.match ops{["linalg.unpack"]} in %root
      : (!transform.any_op) -> !transform.op<"linalg.unpack">
    %cempty, %ctranspose, %ccollapse, %cslice = transform.structured.lower_unpack %unpacks
      : (!transform.op<"linalg.unpack">) -> (!transform.op<"tensor.empty">,
         !transform.op<"linalg.transpose">, !transform.op<"tensor.collapse_shape">,
         !transform.op<"tensor.extract_slice">)
    %funcs0 = transform.structured.match ops{["func.func"]} in %root
      : (!transform.any_op) -> !transform.any_op
    transform.apply_patterns to %funcs0 {
      transform.apply_patterns.canonicalization
    } : !transform.any_op
    %tiles = transform.structured.match ops{["linalg.matmul"]}
      attributes {agentc.vectorize} in %root : (!transform.any_op) -> !transform.any_op
    transform.structured.vectorize %tiles {create_named_contraction} : !transform.any_op

// Hoist each accumulator out of its k loop (value semantics: before bufferization),
// then lower the contractions to FMAs on whole vectors.
// @fragment tail
    %funcs = transform.structured.match ops{["func.func"]} in %root
      : (!transform.any_op) -> !transform.any_op
    transform.apply_patterns to %funcs {
      transform.apply_patterns.canonicalization
      transform.apply_patterns.tensor.fold_tensor_subset_ops_into_vector_transfers
    } : !transform.any_op
    transform.apply_cse to %funcs : !transform.any_op
    %loops = transform.structured.match ops{["scf.for"]} in %root
      : (!transform.any_op) -> !transform.any_op
    transform.loop.hoist_loop_invariant_subsets %loops : !transform.any_op
    transform.apply_patterns to %funcs {
      transform.apply_patterns.vector.lower_contraction lowering_strategy = "outerproduct"
      transform.apply_patterns.vector.lower_outerproduct
      transform.apply_patterns.vector.transfer_permutation_patterns
      transform.apply_patterns.vector.lower_transfer max_transfer_rank = 1
      transform.apply_patterns.vector.lower_broadcast
      transform.apply_patterns.vector.lower_shape_cast
      transform.apply_patterns.vector.lower_transpose
    } : !transform.any_op
    transform.yield
  }
}
