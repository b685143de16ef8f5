"""Lowering shared by the GPU targets (nvvm, rocdl): linalg on tensors -> outlined GPU kernels.
(Their MLIR/LLVM calls go through `toolchain`, like every target's.)

Both GPU targets start the same way: bufferize the tensor kernels (results become
out-parameters), lower every linalg op to `scf.parallel` loops, tile each loop nest
into a grid of fixed-size thread blocks, map the tiles to GPU blocks and threads, turn
the mapped loops into `gpu.launch`es and outline them. All outlined kernels are then
gathered into one `gpu.module @agentc_kernels`, so a compilation yields one PTX file,
one cubin and one AMDGPU object instead of one per linalg op. The two targets differ
only from the device-dialect conversion on (`convert-gpu-to-nvvm` vs
`convert-gpu-to-rocdl`).

Mapping: the innermost loop dimension goes to `x` (block and thread), so neighbouring
threads touch neighbouring elements of row-major buffers (coalesced access); upstream
`gpu-map-parallel-loops` maps the outermost dimension to `x` instead, hence the small
mapping pass here. Copies and the few sequential loops the kernels keep on tensors
(top-k selection, cache updates) become kernels too (the loops as 1x1 launches).

Memory model of the host code: buffers passed in are device-accessible pointers
(the host program's `agentc_alloc(.., AGENTC_ALLOC_HOST)`). Every temporary comes from
the runtime, `agentc_alloc(bytes, where)`, and goes back with `agentc_free` before every
return of the launcher (`runtime_memory`). `where` is AGENTC_ALLOC_DEVICE when only
kernels touch the buffer, AGENTC_ALLOC_SHARED when the host code also reads or writes
it (the scalar seeds of reductions, top-k results, a reduction loop left on the host),
so a runtime can give device memory to the first and managed memory to the second.
"""

from __future__ import annotations

from mlir import ir

from agentc.codegen import abi
from agentc.diagnostics import ToolchainError, UsageError

from . import toolchain
from .base import check_opt_level, check_options

KERNEL_MODULE = "agentc_kernels"

# Bufferize (function results become out-parameters so callers own all buffers), then
# lower linalg to parallel loops and tile them into thread blocks; mapping follows.
_BUFFERIZE = (
    "one-shot-bufferize{bufferize-function-boundaries "
    "function-boundary-type-conversion=identity-layout-map},"
    "buffer-results-to-out-params{hoist-static-allocs modify-public-functions},"
    "canonicalize,cse"
)
_TILE = (
    "func.func(convert-linalg-to-parallel-loops,"
    "scf-parallel-loop-tiling{{parallel-loop-tile-sizes={tiles} no-min-max-bounds}})"
)

_TO_GPU_AND_OUTLINE = (
    "func.func(convert-parallel-loops-to-gpu),canonicalize,"
    "gpu-launch-sink-index-computations,gpu-kernel-outlining,"
    "canonicalize,cse"
)

# Expand composite math (tanh, ...) into exp/log and remove affine/scf inside kernels.
# What math remains is lowered per target (nvvm.lower_math_to_intrinsics, rocdl's
# convert-math-to-llvm) so kernels never call libdevice or ocml.
_PREPARE_KERNELS = (
    "gpu.module(math-expand-ops,lower-affine,convert-scf-to-cf,canonicalize,cse)"
)

# Host side: everything outside gpu.module/gpu.binary to the LLVM dialect; gpu-to-llvm
# turns gpu.launch_func into calls of the mgpu* runtime wrappers.
HOST_TO_LLVM = (
    "expand-strided-metadata,lower-affine,convert-scf-to-cf,gpu-to-llvm,"
    "finalize-memref-to-llvm,"
    "convert-arith-to-llvm,convert-index-to-llvm,convert-func-to-llvm,"
    "convert-cf-to-llvm,reconcile-unrealized-casts"
)


# --------------------------------------------------------------------------- passes

def _processor(kind: str, dim: int) -> str:
    return f"{kind}_{'xyz'[dim]}" if dim < 3 else "sequential"


def _loop_map(processor: str) -> ir.Attribute:
    return ir.Attribute.parse(
        f"#gpu.loop_dim_map<processor = {processor}, map = (d0) -> (d0), "
        f"bound = (d0) -> (d0)>")


def map_parallel_loops(module: ir.Module) -> None:
    """Map tiled scf.parallel nests: outer loop -> blocks, inner -> threads, last dim -> x."""

    def visit(op: ir.Operation, depth: int) -> None:
        for region in op.regions:
            for block in region.blocks:
                for child in block.operations:
                    child_op = child.operation
                    if child_op.name == "scf.parallel":
                        kind = ("block", "thread")[depth] if depth < 2 else None
                        rank = len(child_op.regions[0].blocks[0].arguments)
                        procs = [_processor(kind, rank - 1 - d) if kind else "sequential"
                                 for d in range(rank)]
                        child_op.attributes["mapping"] = ir.ArrayAttr.get(
                            [_loop_map(p) for p in procs])
                        visit(child_op, depth + 1)
                    else:
                        visit(child_op, depth)

    visit(module.operation, 0)


def _host_funcs(module: ir.Module) -> list[ir.Operation]:
    """The host functions with a body (runtime declarations have none)."""
    return [op.operation for op in module.body.operations
            if op.operation.name == "func.func" and op.operation.regions[0].blocks]


def copies_to_linalg(module: ir.Module) -> None:
    """memref.copy (from bufferization) -> linalg.copy, so copies run as GPU kernels too."""
    from mlir.dialects import linalg

    copies: list[ir.Operation] = []

    def collect(op: ir.Operation) -> ir.WalkResult:
        if op.name == "memref.copy":
            copies.append(op)
        return ir.WalkResult.ADVANCE

    module.operation.walk(collect)
    for op in copies:
        with ir.InsertionPoint(op), op.location:
            linalg.copy(op.operands[0], outs=[op.operands[1]])
        op.erase()


def wrap_sequential_loops(module: ir.Module) -> None:
    """Put each top-level scf.for of a host function (top-k selection, cache updates)
    into a one-iteration scf.parallel, so it runs as a 1x1 kernel on device memory."""
    from mlir.dialects import arith, scf

    for fn in _host_funcs(module):
        for op in list(fn.regions[0].blocks[0].operations):
            op = op.operation
            if op.name != "scf.for":
                continue
            with ir.InsertionPoint(op), op.location:
                index = ir.IndexType.get()
                zero = arith.constant(index, 0)
                one = arith.constant(index, 1)
                loop = scf.ParallelOp([], [zero], [one], [one], [])
                body = loop.regions[0].blocks.append(index)
                with ir.InsertionPoint(body):
                    scf.ReduceOp([], 0)
            op.move_before(body.operations[0])


def merge_kernel_modules(module: ir.Module) -> list[str]:
    """Move every outlined kernel into one `gpu.module @agentc_kernels`.

    Each kernel is renamed after the gpu.module that held it (`matmul_kernel_0`, ...),
    which outlining already made unique, and launches are redirected. Returns the kernel
    names in module order.
    """
    body = module.body
    gpu_modules = [op.operation for op in body.operations if op.operation.name == "gpu.module"]
    if not gpu_modules:
        return []
    renames: dict[str, str] = {}
    target = ir.Operation.parse(f"gpu.module @{KERNEL_MODULE} {{\n}}")
    ir.InsertionPoint(gpu_modules[0]).insert(target)
    target_block = target.regions[0].blocks[0]
    names = []
    for gm in gpu_modules:
        module_name = ir.StringAttr(gm.attributes["sym_name"]).value
        for fn in list(gm.regions[0].blocks[0].operations):
            fn = fn.operation
            if fn.name != "gpu.func":
                continue
            old = ir.StringAttr(fn.attributes["sym_name"]).value
            fn.attributes["sym_name"] = ir.StringAttr.get(module_name)
            renames[f"@{module_name}::@{old}"] = f"@{KERNEL_MODULE}::@{module_name}"
            fn.detach_from_parent()
            target_block.append(fn)
            names.append(module_name)
        gm.erase()

    def redirect(op: ir.Operation) -> ir.WalkResult:
        if op.name == "gpu.launch_func":
            old = str(op.attributes["kernel"])
            op.attributes["kernel"] = ir.Attribute.parse(renames[old])
        return ir.WalkResult.ADVANCE

    module.operation.walk(redirect)
    return names


# Ops that give another view of the same buffer: a user of the view uses the buffer.
_VIEWS = ("memref.subview", "memref.expand_shape", "memref.collapse_shape",
          "memref.reinterpret_cast", "memref.cast")
_BYTES = {"f64": 8, "i64": 8, "index": 8, "f32": 4, "i32": 4, "f16": 2, "bf16": 2, "i16": 2,
          "i8": 1, "i1": 1}


def _where(value: ir.Value) -> int:
    """AGENTC_ALLOC_DEVICE if only kernel launches use `value` (through views), else SHARED."""
    for use in value.uses:
        user = use.owner
        if user.name in _VIEWS:
            if _where(user.results[0]) == abi.ALLOC_SHARED:
                return abi.ALLOC_SHARED
        elif user.name != "gpu.launch_func":
            return abi.ALLOC_SHARED
    return abi.ALLOC_DEVICE


def _descriptor_type(memref: ir.MemRefType) -> ir.Type:
    """The LLVM struct `finalize-memref-to-llvm` gives a static identity-layout memref."""
    rank = memref.rank
    arrays = f", array<{rank} x i64>, array<{rank} x i64>" if rank else ""
    return ir.Type.parse(f"!llvm.struct<(ptr, ptr, i64{arrays})>")


def _runtime_alloc(op: ir.Operation) -> ir.Value:
    """`memref.alloc` -> `agentc_alloc(bytes, where)` wrapped in a memref descriptor."""
    from mlir.dialects import arith, func, llvm

    memref = ir.MemRefType(op.results[0].type)
    element = str(memref.element_type)
    if not memref.has_static_shape or element not in _BYTES \
            or memref.layout.value != ir.AffineMap.get_identity(memref.rank):
        raise ToolchainError(f"gpu: launcher temporary {memref} is not a static row-major buffer")
    i64 = ir.IntegerType.get_signless(64)
    nbytes = _BYTES[element]
    for size in memref.shape:
        nbytes *= size
    with ir.InsertionPoint(op), op.location:
        where = _where(op.results[0])
        ptr = func.call([llvm.PointerType.get()], "agentc_alloc",
                        [arith.constant(i64, max(nbytes, 1)), arith.constant(i64, where)])
        desc = llvm.mlir_poison(_descriptor_type(memref))
        desc = llvm.insertvalue(desc, ptr, [0])
        desc = llvm.insertvalue(desc, ptr, [1])
        desc = llvm.insertvalue(desc, arith.constant(i64, 0), [2])
        stride = 1
        for dim in reversed(range(memref.rank)):
            size = memref.shape[dim]
            desc = llvm.insertvalue(desc, arith.constant(i64, size), [3, dim])
            desc = llvm.insertvalue(desc, arith.constant(i64, stride), [4, dim])
            stride *= size
        cast = ir.Operation.create("builtin.unrealized_conversion_cast", results=[memref],
                                   operands=[desc])
        return cast.results[0]


def _runtime_free(buffer: ir.Value, before: ir.Operation) -> None:
    from mlir.dialects import arith, func, llvm, memref

    with ir.InsertionPoint(before), before.location:
        index = memref.extract_aligned_pointer_as_index(buffer)
        address = arith.index_cast(ir.IntegerType.get_signless(64), index)
        func.call([], "agentc_free", [llvm.inttoptr(llvm.PointerType.get(), address)])


def runtime_memory(module: ir.Module) -> None:
    """Every launcher temporary from `agentc_alloc` (DEVICE or SHARED, see `_where`), freed
    with `agentc_free` before each return, so a call leaves nothing allocated behind.

    Temporaries are all allocated in the entry block (bufferization puts them there),
    which dominates every return, so each return frees all of them, newest first.
    """
    declared = {ir.StringAttr(op.operation.attributes["sym_name"]).value
                for op in module.body.operations if op.operation.name == "func.func"}
    used = False
    for fn in _host_funcs(module):
        allocs: list[ir.Operation] = []

        def collect(op: ir.Operation) -> ir.WalkResult:
            # (bufferization here never frees; a dealloc would free twice)
            if op.name in ("memref.alloc", "memref.alloca", "memref.realloc", "memref.dealloc"):
                allocs.append(op)
            return ir.WalkResult.ADVANCE

        fn.walk(collect)
        entry = fn.regions[0].blocks[0]
        buffers = []
        for op in allocs:
            if op.name != "memref.alloc" or op.parent.name != "func.func" or op.block != entry:
                raise ToolchainError(f"gpu: {op.name} outside the entry block of a launcher")
            buffer = _runtime_alloc(op)
            op.results[0].replace_all_uses_with(buffer)
            op.erase()
            buffers.append(buffer)
        returns = [block.operations[len(block.operations) - 1] for block in fn.regions[0].blocks]
        for ret in returns:
            if ret.operation.name == "func.return":
                for buffer in reversed(buffers):
                    _runtime_free(buffer, ret.operation)
        used = used or bool(buffers)
    if not used:
        return
    first = module.body.operations[0]
    for decl in abi.RUNTIME_DECLS:
        name = decl.split("@", 1)[1].split("(", 1)[0]
        if name in ("agentc_alloc", "agentc_free") and name not in declared:
            ir.InsertionPoint(first).insert(ir.Operation.parse(decl))


def launch_table(text: str) -> list[dict]:
    """Every gpu.launch_func in host-function order: kernel, grid, block and, per kernel
    argument, the index of the host function argument it is (None for a temporary)."""
    table = []
    with ir.Context():
        module = ir.Module.parse(text)
        arities = {}

        def count(op: ir.Operation) -> ir.WalkResult:
            if op.name == "gpu.func":
                name = ir.StringAttr(op.attributes["sym_name"]).value
                arities[name] = len(op.regions[0].blocks[0].arguments)
            return ir.WalkResult.ADVANCE

        module.operation.walk(count)
        for fn in _host_funcs(module):
            fn_name = ir.StringAttr(fn.attributes["sym_name"]).value
            params = list(fn.regions[0].blocks[0].arguments)
            for op in fn.regions[0].blocks[0].operations:
                op = op.operation
                if op.name != "gpu.launch_func":
                    continue
                kernel = str(op.attributes["kernel"]).rsplit("::@", 1)[1]
                operands = list(op.operands)
                sizes = [_constant(v) for v in operands[:6]]
                args = operands[len(operands) - arities[kernel]:]
                table.append({"func": fn_name, "kernel": kernel, "grid": sizes[:3],
                              "block": sizes[3:],
                              "args": [params.index(a) if a in params else None for a in args]})
    return table


def _constant(value: ir.Value) -> int | None:
    owner = value.owner
    if isinstance(owner, ir.OpView) and owner.operation.name == "arith.constant":
        return ir.IntegerAttr(owner.operation.attributes["value"]).value
    return None


# --------------------------------------------------------------------------- stage

def _run(text: str, passes: str) -> str:
    return toolchain.run_pipeline(text, f"builtin.module({passes})", stage="gpu")


def lower_to_gpu(text: str, tile_sizes: tuple[int, ...]) -> tuple[str, list[str]]:
    """Kernel module (linalg on tensors) -> host funcs + one gpu.module of kernels."""
    tiles = ",".join(str(t) for t in tile_sizes)
    text = _run(text, _BUFFERIZE)
    with ir.Context():
        module = ir.Module.parse(text)
        copies_to_linalg(module)
        text = str(module)
    text = _run(text, _TILE.format(tiles=tiles))
    with ir.Context():
        module = ir.Module.parse(text)
        wrap_sequential_loops(module)
        map_parallel_loops(module)
        text = str(module)
    text = _run(text, _TO_GPU_AND_OUTLINE)
    with ir.Context():
        module = ir.Module.parse(text)
        kernels = merge_kernel_modules(module)
        text = str(module)
    text = _run(text, _PREPARE_KERNELS)
    return text, kernels


def gpu_binary_objects(text: str) -> list[bytes]:
    """The object payloads of every gpu.binary in a module (after gpu-module-to-binary)."""
    from mlir.dialects import gpu
    payloads = []
    with ir.Context():
        module = ir.Module.parse(text)
        for op in module.body.operations:
            if op.operation.name != "gpu.binary":
                continue
            for attr in ir.ArrayAttr(op.operation.attributes["objects"]):
                payloads.append(bytes(gpu.ObjectAttr(attr).object))
    return payloads


def strip_binary_properties(text: str) -> str:
    """Drop gpu.object properties (they hold compile times, which break determinism)."""
    with ir.Context():
        from mlir.dialects import gpu
        module = ir.Module.parse(text)
        for op in module.body.operations:
            if op.operation.name != "gpu.binary":
                continue
            objects = []
            for attr in ir.ArrayAttr(op.operation.attributes["objects"]):
                obj = gpu.ObjectAttr(attr)
                objects.append(gpu.ObjectAttr.get(obj.target, obj.format, obj.object, None))
            op.operation.attributes["objects"] = ir.ArrayAttr.get(objects)
        return str(module)


def parse_gpu_options(who: str, options_type: type, overrides: dict, chip_prefix: str, chip_form: str,
                      examples: str):
    """The options dataclass of a GPU target, its chip checked to start with `chip_prefix`."""
    check_options(who, options_type, overrides)
    if "tile_sizes" in overrides:
        overrides["tile_sizes"] = tuple(int(t) for t in overrides["tile_sizes"])
    options = options_type(**overrides)
    if not options.chip.startswith(chip_prefix):
        raise UsageError(f"{who}: chip '{options.chip}' is not {chip_form} (e.g. {examples})")
    check_opt_level(who, options.opt_level)
    return options


def gpu_stage(state, options):
    """Stage `gpu` of both GPU targets: tile and map to blocks/threads, outline the kernels,
    take the launchers' temporaries from the runtime."""
    text, state.meta["kernels"] = lower_to_gpu(state.ir, options.tile_sizes)
    with ir.Context():
        module = ir.Module.parse(text)
        runtime_memory(module)
        state.ir = _run(str(module), "cse")
    state.meta["launches"] = launch_table(state.ir)
    return state


HOST_TRIPLE = "x86_64-unknown-linux-gnu"  # where the launchers run


def host_object(state, binary_mlir: str, opt_level: int):
    """The `host` stage both GPU targets share: the launchers (a module holding the
    device code as a gpu.binary) lowered to LLVM IR and an x86-64 object."""
    host = toolchain.run_pipeline(
        binary_mlir,
        "builtin.module(" + HOST_TO_LLVM.replace("gpu-to-llvm", "gpu-to-llvm{use-bare-pointers-for-kernels}") + ")",
        stage="host")
    llvm_ir = toolchain.translate_to_llvmir(host, stage="host")
    state.artifacts["host.ll"] = llvm_ir.encode()
    state.artifacts["host.o"] = toolchain.emit_object(llvm_ir, HOST_TRIPLE, cpu="x86-64", opt_level=opt_level,
                                                      stage="host")
    state.ir = llvm_ir
    return state
