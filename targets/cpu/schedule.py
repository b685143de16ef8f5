"""Which schedule each kernel op gets on the CPU: register tiles, K blocks, packed B
panels, peeled edges and thread splits for every static `linalg.matmul`, and the
batch tiling that turns batched contractions (attention's Q @ K^T and P @ V) into
matmuls. The numbers are measured, not derived: see targets/cpu/__init__.py.

`tag_contractions` and `tag_matmuls` mark the ops (`agentc.batch`, `agentc.schedule`)
that the transform scripts (scripts.py) then match by tag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .target import CpuOptions


@dataclass(frozen=True)
class MatmulSchedule:
    """How one static `linalg.matmul` is tiled (see the package docstring).

    tile: register tile (m, n, k), clipped to the op's shape. k_block: cache block over
    K (0: none). split: "m" or "n", the dimension shared out over `threads` threads
    ("" with threads == 1). pack_b: B is copied into contiguous column panels of
    `tile[1]` columns first (N padded with zeros to a whole panel). peel: the
    dimensions ("m", "n") the register tile does not divide, whose last partial tile
    is peeled off into its own loop. b_transposed: B is stored [n, k] (a matmul with
    `indexing_maps`, e.g. attention's Q @ K^T); its panels then need no transpose.
    prepacked: B arrives already in panels (`Func.matmul_panels`, weights packed once
    when loaded); the op is the packed contraction and nothing is copied.
    """

    tile: tuple[int, int, int]
    k_block: int = 0
    split: str = ""
    threads: int = 1
    pack_b: bool = False
    peel: str = ""
    b_transposed: bool = False
    prepacked: bool = False

    @property
    def key(self) -> str:
        """The `agentc.schedule` tag; also names the script's handles."""
        key = "x".join(map(str, self.tile))
        if self.k_block:
            key += f"_k{self.k_block}"
        if self.split:
            key += f"_{self.split}{self.threads}"
        if self.pack_b:
            key += "_packb"
        if self.b_transposed:
            key += "_bt"
        if self.prepacked:
            key += "_pre"
        if self.peel:
            key += f"_peel{self.peel}"
        return key


# The register tile for a CPU with AVX-512: there vector<16xf32> is one zmm register, so
# the 6x16 default (sized for AVX2's 16 ymm: 12 accumulators) would keep 6 accumulators
# in 32 registers and wait on FMA latency. 6x64 holds 24 accumulators, 4 B vectors and
# the broadcast A element. Measured on a 2-core Sapphire Rapids VM (best of 40): the
# MiniLM shapes 128x384x{384,1536} and 128x1536x384 went from 87/59/80 to 137/115/113
# GFLOP/s (OpenBLAS on the same core: 136/114/118); 8x32 and 14x32 were between.
AVX512_TILE = (6, 64, 1)


def native_tile(features: str) -> tuple[int, int, int] | None:
    """The register tile for a CPU with LLVM feature string `features` (e.g.
    "+avx2,+avx512f,..."), or None where the target's default fits."""
    return AVX512_TILE if "+avx512f" in features.split(",") else None


# A matmul below this many multiply-adds is not worth a thread dispatch: waking the
# async runtime's worker and waiting for it costs about 0.1 ms on the 2-core VM this
# was tuned on (a 128x128x512 matmul got slower on two threads, 128x512x512 broke even).
MIN_THREADED_MACS = 1 << 24


# Packing B costs a pass over B; it pays once enough rows of A reuse each panel.
MIN_PACKED_ROWS = 32


def _k_block(k: int, tile_k: int, target: int, lo: int, hi: int) -> int:
    """The divisor of K in [lo, hi] closest to `target` (0 when K <= hi or none divides)."""
    if k <= hi:
        return 0
    divisors = [d for d in range(lo, hi + 1) if k % d == 0 and d % tile_k == 0]
    return min(divisors, key=lambda d: (abs(d - target), -d), default=0)


def matmul_schedule(shape_mnk, options: CpuOptions, b_transposed: bool = False,
                    panel: int = 0) -> MatmulSchedule:
    """The schedule for a static matmul of shape (m, n, k) under `options`; `panel` > 0
    for a B already packed into panels of that width (its register tile's n).

    Measured on AVX2 (Zen 3) at 512^3: row-major B with K blocks of 128 reaches about
    60 GFLOP/s, packed B panels with the whole K (32 KiB panels, streamed) about 80.
    """
    m, n, k = shape_mnk
    pm, pn, pk = options.tile
    tile = (min(pm, m), min(pn, n), next(t for t in (pk, 4, 2, 1) if t <= pk and k % t == 0))
    # A transposed B is read a column at a time unless packed: pack it whenever N allows.
    pack_b = n >= 2 * tile[1] and (m >= MIN_PACKED_ROWS or b_transposed)
    if panel:
        tile, pack_b = (tile[0], panel, tile[2]), True
    split, threads = "", 1
    if options.threads > 1 and m * n * k >= MIN_THREADED_MACS:
        t = options.threads
        # With packed B, threads share out whole panels: N is split in panel units.
        n_units = -(-n // tile[1]) if pack_b else n
        n_unit = 1 if pack_b else tile[1]
        for dim, size, unit in (("m", m, tile[0]), ("n", n_units, n_unit))[:: -1 if pack_b else 1]:
            if size % t == 0 and size // t >= unit:
                split, threads = dim, t
                break
    m_part = m // threads if split == "m" else m
    n_part = n // threads if split == "n" else n
    if pack_b:
        k_block = _k_block(k, tile[2], 256, 128, 512) or k
        peel = "m" if m_part % tile[0] else ""
    else:
        k_block = _k_block(k, tile[2], 128, 64, 256)
        peel = ("m" if m_part % tile[0] else "") + ("n" if n_part % tile[1] else "")
    return MatmulSchedule(tile, k_block, split, threads, pack_b, peel, b_transposed, bool(panel))


def batch_key(sizes, forall: bool) -> str:
    return ("forall_" if forall else "for_") + "x".join(map(str, sizes))


def _contraction_roles(op) -> tuple[int, int, int] | None:
    """(m, n, k) dims of a linalg.generic computing out += in0 * in1 with one reduction
    dim, where the result's last dim is an n dim (B's, so rows stay contiguous), m is
    the largest A dim and m < n < k (so that folding the other dims leaves a matmul's
    loop order); None otherwise."""
    from mlir import ir

    operands = list(op.operands)
    if len(operands) != 3 or len(op.results) != 1:
        return None
    shapes = [ir.ShapedType(v.type) for v in operands]
    if not all(t.has_static_shape for t in shapes):
        return None
    if not _is_multiply_accumulate(op.regions[0].blocks[0]):
        return None
    iterators = [str(t) for t in ir.ArrayAttr(op.attributes["iterator_types"])]
    reductions = [i for i, t in enumerate(iterators) if "reduction" in t]
    maps = [_dims(m) for m in ir.ArrayAttr(op.attributes["indexing_maps"])]
    if len(reductions) != 1 or any(dims is None for dims in maps):
        return None
    a, b, c = (set(dims) for dims in maps)
    k = reductions[0]
    if k not in a or k not in b or k in c or not maps[2] or maps[2][-1] not in b - a:
        return None
    n = maps[2][-1]
    extents = _loop_extents(op)
    m_dims = sorted(c & a - b, key=lambda d: -extents[d])
    if not m_dims or not m_dims[0] < n < k or len(a | b | c) == 3:  # no batch: nothing to do
        return None
    if min(extents[m_dims[0]], extents[n], extents[k]) == 1:
        # a unit m, n or k (decode with one query row per KV head, as when kv_heads ==
        # heads; a head of width 1): folding it leaves a matrix-vector (or smaller)
        # product, not a matmul, so the generic keeps the default lowering
        return None
    return m_dims[0], n, k


def _is_multiply_accumulate(block) -> bool:
    """Whether a linalg body is `yield out + in0 * in1` (in any operand order)."""
    ops = list(block.operations)
    if [o.name for o in ops] != ["arith.mulf", "arith.addf", "linalg.yield"]:
        return False
    mul, add, yield_ = ops
    ins0, ins1, out = block.arguments

    def same(operands, values) -> bool:
        a, b = operands
        return (a == values[0] and b == values[1]) or (a == values[1] and b == values[0])

    return (same(list(mul.operands), (ins0, ins1)) and same(list(add.operands), (out, mul.result))
            and yield_.operands[0] == add.result)


def _loop_extents(op) -> list[int]:
    """The static trip count of each loop of a linalg op with plain-dim indexing maps."""
    from mlir import ir

    extents = {}
    for value, map_attr in zip(op.operands, ir.ArrayAttr(op.attributes["indexing_maps"])):
        for size, dim in zip(ir.ShapedType(value.type).shape, _dims(map_attr)):
            extents[dim] = size
    return [extents[d] for d in range(len(extents))]


def tag_contractions(text: str, options: CpuOptions) -> tuple[str, list[tuple[tuple[int, ...], bool]]]:
    """Mark batched contraction generics (`agentc.batch`) with the loop tiling that leaves
    one matmul per batch element; the batch loop is the threads' share when large."""
    from mlir import ir

    batches = []
    with ir.Context():
        module = ir.Module.parse(text)

        def visit(op):
            roles = _contraction_roles(op.operation) if op.name == "linalg.generic" else None
            if roles is not None:
                extents = _loop_extents(op.operation)
                sizes = tuple(0 if d in roles else 1 for d in range(len(extents)))
                forall = options.threads > 1 and math.prod(extents) >= MIN_THREADED_MACS
                op.attributes["agentc.batch"] = ir.StringAttr.get(batch_key(sizes, forall))
                batches.append((sizes, forall))
            return ir.WalkResult.ADVANCE
        module.operation.walk(visit)
        return str(module), batches


def _dims(map_attr) -> list[int] | None:
    """The dimension positions an indexing map's results name (None if not all plain dims)."""
    from mlir import ir

    dims = []
    for expr in ir.AffineMapAttr(map_attr).value.results:
        expr = expr.maybe_downcast()
        if not isinstance(expr, ir.AffineDimExpr):
            return None
        dims.append(expr.position)
    return dims


def _matmul_layout(op) -> tuple[int, int, int, bool] | None:
    """(m, n, k, b_transposed) of a static linalg.matmul; None for layouts left as loops
    (dynamic shapes, broadcasts, a transposed C)."""
    from mlir import ir

    a, b, c = (ir.ShapedType(v.type) for v in list(op.operands)[:3])
    if not (a.has_static_shape and b.has_static_shape and c.has_static_shape):
        return None
    maps = [_dims(m) for m in ir.ArrayAttr(op.attributes["indexing_maps"])]
    if any(dims is None or len(dims) != 2 for dims in maps):
        return None
    (a0, a1), (b0, b1), (c0, c1) = maps
    dim_k = ({a0, a1} - {c0, c1}).pop() if len({a0, a1} - {c0, c1}) == 1 else None
    if dim_k is None or {b0, b1} != {dim_k, c1}:
        return None
    return c.shape[0], c.shape[1], a.shape[[a0, a1].index(dim_k)], b0 == c1


def _panel_layout(op) -> tuple[int, int, int, int] | None:
    """(m, n, k, panel) of a static `Func.matmul_panels` contraction: a linalg.generic
    C[m, p, j] += A[m, k] * Bp[p, k, j] over loops (m, p, k, j); None for anything else."""
    from mlir import ir

    operands = list(op.operands)
    if len(operands) != 3 or len(op.results) != 1:
        return None
    a, b, c = (ir.ShapedType(v.type) for v in operands)
    if not (a.has_static_shape and b.has_static_shape and c.has_static_shape):
        return None
    if [_dims(m) for m in ir.ArrayAttr(op.attributes["indexing_maps"])] != [[0, 2], [1, 2, 3], [0, 1, 3]]:
        return None
    iterators = ["reduction" in str(t) for t in ir.ArrayAttr(op.attributes["iterator_types"])]
    if iterators != [False, False, True, False] or not _is_multiply_accumulate(op.regions[0].blocks[0]):
        return None
    return a.shape[0], b.shape[0] * b.shape[2], a.shape[1], b.shape[2]


def _inside_forall(op) -> bool:
    parent = op.parent
    while parent is not None and parent.name != "builtin.module":
        if parent.name == "scf.forall":
            return True
        parent = parent.parent
    return False


def tag_matmuls(text: str, options: CpuOptions) -> tuple[str, list[MatmulSchedule]]:
    """Mark each static linalg.matmul, and each contraction over prepacked B panels
    (`_panel_layout`), with its schedule (`agentc.schedule`).

    Matmuls already inside a thread's share of work (`scf.forall`) get one thread.
    """
    from mlir import ir

    schedules = []
    single = replace(options, threads=1)
    with ir.Context():
        module = ir.Module.parse(text)

        def visit(op):
            sched = None
            if op.name == "linalg.matmul":
                layout = _matmul_layout(op.operation)
                if layout is not None:
                    m, n, k, b_transposed = layout
                    sched = matmul_schedule((m, n, k), single if _inside_forall(op.operation) else options,
                                            b_transposed)
            elif op.name == "linalg.generic":
                panels = _panel_layout(op.operation)
                if panels is not None:
                    m, n, k, panel = panels
                    sched = matmul_schedule((m, n, k), single if _inside_forall(op.operation) else options,
                                            panel=panel)
            if sched is not None:
                op.attributes["agentc.schedule"] = ir.StringAttr.get(sched.key)
                schedules.append(sched)
            return ir.WalkResult.ADVANCE
        module.operation.walk(visit)
        return str(module), schedules


# Lanes of an elementwise tile, widest first (a tile must divide the last dim: the
# vectoriser wants static shapes); a row reduction keeps its whole row up to this long.
VECTOR_LANES = (64, 32, 16, 8)
MAX_REDUCED_ROW = 1024


def vector_key(sizes) -> str:
    return "x".join(map(str, sizes))


def _vector_tiling(op) -> tuple[int, ...] | None:
    """Tile sizes leaving one vector per tile of a static, single-result linalg.generic
    whose maps are plain dims and whose body reads no indices, if its last loop is
    parallel (a slice of VECTOR_LANES) or the only reduction (the whole row); None for
    anything else, which stays loops (it would not vectorise, or not well)."""
    from mlir import ir

    if len(op.results) != 1 or not all(ir.ShapedType(v.type).has_static_shape for v in op.operands):
        return None
    maps = [_dims(m) for m in ir.ArrayAttr(op.attributes["indexing_maps"])]
    if any(dims is None for dims in maps):
        return None
    if any(o.name in ("linalg.index", "tensor.extract") for o in op.regions[0].blocks[0].operations):
        return None
    iterators = ["reduction" in str(t) for t in ir.ArrayAttr(op.attributes["iterator_types"])]
    extents = _loop_extents(op)
    if len(extents) < 2:
        return None
    last = extents[-1]
    if iterators[-1]:
        if any(iterators[:-1]) or last > MAX_REDUCED_ROW:
            return None
        return (1,) * (len(extents) - 1) + (0,)
    if any(iterators):
        return None
    lanes = next((n for n in VECTOR_LANES if last % n == 0), None)
    return None if lanes is None else (1,) * (len(extents) - 1) + (lanes,)


def tag_elementwise(text: str) -> tuple[str, list[tuple[int, ...]]]:
    """Mark the linalg.generic ops that vectorise as one tile per vector (`agentc.vector`)."""
    from mlir import ir

    tilings = []
    with ir.Context():
        module = ir.Module.parse(text)

        def visit(op):
            sizes = _vector_tiling(op.operation) if op.name == "linalg.generic" else None
            if sizes is not None:
                op.attributes["agentc.vector"] = ir.StringAttr.get(vector_key(sizes))
                tilings.append(sizes)
            return ir.WalkResult.ADVANCE
        module.operation.walk(visit)
        return str(module), tilings


def is_threaded(state) -> bool:
    """Whether a kernel's schedules (in its CompileState's meta) use threads."""
    return (any(sched.split for sched in state.meta.get("matmul_schedules", ()))
            or any(forall for _, forall in state.meta.get("batched_contractions", ())))
