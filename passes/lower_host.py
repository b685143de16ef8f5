"""lower-host: each pool's schedule and op functions become a host program over real
buffers, in a nested `module @host` that compiles to `{pool}/{pool}.o`.

After `lower-kernels` a pool module is still a sketch: `!agent` handles are cast to
tensors and pointers, and runtime-call results live in dangling stack slots. Here every
handle becomes a `memref<?xi8>` (a byte buffer that knows its length) and:

- the C entry point `int64_t agentc_<pool>_run(in, in_bytes, out, out_bytes)` takes the
  graph inputs as arrays of pointers and sizes and writes the graph outputs this pool
  makes into caller buffers (`out_bytes[i]`: capacity in, bytes written out). Its
  straight pass calls step functions in program order, each running up to STEP_OPS ops
  over a frame of values (one slot per value: its buffer and bytes); an op allocates
  its result's buffer at the size agentc estimated, and a buffer is freed after the
  last op that reads it. It returns 0, or the first negative code of a runtime call,
  after freeing what is left;
- `agent.recv` / `agent.send` call `agentc_recv` / `agentc_send` (channel, peer); a
  recv's buffer holds what the sending op function can write (`sent_bytes`);
- each op call sits between `agentc_trace(label, 1)` and `agentc_trace(label, 0)`, so a
  runtime can time the plan's ops;
- a runtime op calls `agentc_<op>(name, in[], in_bytes[], n_in, out, cap)` with every
  input (the bytes it returns are the result's length); its op function takes `in[]`
  and `in_bytes[]` from its caller;
- a compute op copies its first input's bytes into the kernel's first argument
  (truncated or zero-padded: the runtime's buffer layout is its own), binds every
  other argument (weights, caches, index chunks) with `agentc_bind(model, op, arg,
  index, bytes)`, calls the kernel through its bufferized C ABI (memref descriptors,
  inputs then outputs: the symbol in `{pool}/{kernel}.o` or a GPU `host.o`) once per
  trip of its loops (layers, tokens, chunks), and copies every output, one after
  another, into the result buffer (as much as its capacity holds);
- every buffer comes from `agentc_alloc(bytes, AGENTC_ALLOC_HOST)` (zero-filled) and goes
  back to `agentc_free`, so a GPU runtime can hand out device-visible memory.

Some compute ops have functions of their own: an embedding (`embed.encode`,
`embed.pool`) runs at its real length in the smallest of its masked row-bucket kernels
(`_bucketed_fn`); a retrieve merges every index chunk's top-k into the exact top-k
(`_retrieve_fn`); an llm call that lower-kernels sized (`agentc.context`) runs its
prompt at its real length and keeps K/V in the KV value (`_prefill_fn`), and decodes
token by token, each drawn by the `sample` kernel, over that cache with a length mask
(`_decode_fn`; `llm.sample` then hands the ids on).

Control flow: a program on one pool runs its loops and branches (`control_tree`,
`_run_cf_fn`): each loop trip and branch arm is the runtime's decision
(`agentc_decide`). On several pools the program is the schedule's straight pass, so
each call in a loop or branch runs once (their schedules are not yet joined by shared
decisions and carried values; see partition).
"""

from __future__ import annotations

import math

from mlir import ir

from agentc import dialects
from agentc.codegen.abi import ABI_TYPE, DECIDE, DECIDE_TYPE, EMBED_ROWS, RUNTIME_DECLS, entry_point
from agentc.passes._ir import StringGlobals, get, placed_nothing, str_attr, top_ops
from agentc.passes.partition import PartitionError

NAME = "lower-host"

BYTES = "memref<?xi8>"
_DESC = "!llvm.struct<(ptr, ptr, i64, array<1 x i64>, array<1 x i64>)>"
# A frame slot: one value of the schedule, its buffer and the bytes it holds.
_SLOT = "!llvm.struct<(ptr, i64)>"
# Functions only this module calls: no symbol in the object, so a program links several
# pools' objects, and LLVM drops each one where it inlined every call.
_INTERNAL = "llvm.linkage = #llvm.linkage<internal>"
_ELEM_BYTES = {"f32": 4, "f16": 2, "bf16": 2, "f64": 8, "i8": 1, "i32": 4, "i64": 8, "index": 8, "i1": 1}

# Small functions every host module has: pointer <-> byte buffer, sizes, copies, and the
# frame of values the entry point's steps share (`_run_fns`). `__agentc_arg` (one input of
# a runtime call into its arrays) stays a call: inlined a thousand times into one
# fan-in's block, its loads and stores made a scheduling region that LLVM's code
# generator took seconds over.
HELPERS = f"""
func.func private @__agentc_bytes(%p: !llvm.ptr, %n: i64) -> {BYTES} attributes {{{_INTERNAL}}} {{
  %u = llvm.mlir.poison : {_DESC}
  %0 = llvm.insertvalue %p, %u[0] : {_DESC}
  %1 = llvm.insertvalue %p, %0[1] : {_DESC}
  %zero = llvm.mlir.constant(0 : i64) : i64
  %2 = llvm.insertvalue %zero, %1[2] : {_DESC}
  %3 = llvm.insertvalue %n, %2[3, 0] : {_DESC}
  %one = llvm.mlir.constant(1 : i64) : i64
  %4 = llvm.insertvalue %one, %3[4, 0] : {_DESC}
  %m = builtin.unrealized_conversion_cast %4 : {_DESC} to {BYTES}
  return %m : {BYTES}
}}
func.func private @__agentc_buffer(%n: i64) -> {BYTES} attributes {{{_INTERNAL}}} {{
  %host = arith.constant 0 : i64  // AGENTC_ALLOC_HOST
  %p = func.call @agentc_alloc(%n, %host) : (i64, i64) -> !llvm.ptr
  %m = func.call @__agentc_bytes(%p, %n) : (!llvm.ptr, i64) -> {BYTES}
  return %m : {BYTES}
}}
func.func private @__agentc_ptr(%m: {BYTES}) -> !llvm.ptr attributes {{{_INTERNAL}}} {{
  %i = memref.extract_aligned_pointer_as_index %m : {BYTES} -> index
  %j = arith.index_cast %i : index to i64
  %p = llvm.inttoptr %j : i64 to !llvm.ptr
  return %p : !llvm.ptr
}}
func.func private @__agentc_size(%m: {BYTES}) -> i64 attributes {{{_INTERNAL}}} {{
  %c0 = arith.constant 0 : index
  %n = memref.dim %m, %c0 : {BYTES}
  %r = arith.index_cast %n : index to i64
  return %r : i64
}}
func.func private @__agentc_release(%m: {BYTES}) attributes {{{_INTERNAL}}} {{
  %p = func.call @__agentc_ptr(%m) : ({BYTES}) -> !llvm.ptr
  func.call @agentc_free(%p) : (!llvm.ptr) -> ()
  return
}}
func.func private @__agentc_view(%m: {BYTES}, %n: i64) -> {BYTES} attributes {{{_INTERNAL}}} {{
  %k = arith.index_cast %n : i64 to index
  %v = memref.reinterpret_cast %m to offset: [0], sizes: [%k], strides: [1] : {BYTES} to {BYTES}
  return %v : {BYTES}
}}
func.func private @__agentc_copy(%dst: {BYTES}, %src: {BYTES}) -> i64 attributes {{{_INTERNAL}}} {{
  %c0 = arith.constant 0 : index
  %a = memref.dim %dst, %c0 : {BYTES}
  %b = memref.dim %src, %c0 : {BYTES}
  %n = arith.minui %a, %b : index
  %d = memref.reinterpret_cast %dst to offset: [0], sizes: [%n], strides: [1] : {BYTES} to {BYTES}
  %s = memref.reinterpret_cast %src to offset: [0], sizes: [%n], strides: [1] : {BYTES} to {BYTES}
  memref.copy %s, %d : {BYTES} to {BYTES}
  %r = arith.index_cast %n : index to i64
  return %r : i64
}}
func.func private @__agentc_arg(%m: {BYTES}, %ins: !llvm.ptr, %sizes: !llvm.ptr, %j: i64) attributes {{{_INTERNAL}, passthrough = ["noinline"]}} {{
  %p = func.call @__agentc_ptr(%m) : ({BYTES}) -> !llvm.ptr
  %pj = llvm.getelementptr %ins[%j] : (!llvm.ptr, i64) -> !llvm.ptr, !llvm.ptr
  llvm.store %p, %pj : !llvm.ptr, !llvm.ptr
  %n = func.call @__agentc_size(%m) : ({BYTES}) -> i64
  %nj = llvm.getelementptr %sizes[%j] : (!llvm.ptr, i64) -> !llvm.ptr, i64
  llvm.store %n, %nj : i64, !llvm.ptr
  return
}}
func.func private @__agentc_slot_ptr(%frame: !llvm.ptr, %i: i64) -> !llvm.ptr attributes {{{_INTERNAL}}} {{
  %g = llvm.getelementptr %frame[%i] : (!llvm.ptr, i64) -> !llvm.ptr, {_SLOT}
  return %g : !llvm.ptr
}}
func.func private @__agentc_slot(%frame: !llvm.ptr, %i: i64) -> {BYTES} attributes {{{_INTERNAL}}} {{
  %g = func.call @__agentc_slot_ptr(%frame, %i) : (!llvm.ptr, i64) -> !llvm.ptr
  %p = llvm.load %g : !llvm.ptr -> !llvm.ptr
  %h = llvm.getelementptr %g[0, 1] : (!llvm.ptr) -> !llvm.ptr, {_SLOT}
  %n = llvm.load %h : !llvm.ptr -> i64
  %m = func.call @__agentc_bytes(%p, %n) : (!llvm.ptr, i64) -> {BYTES}
  return %m : {BYTES}
}}
func.func private @__agentc_slot_set(%frame: !llvm.ptr, %i: i64, %p: !llvm.ptr, %n: i64) attributes {{{_INTERNAL}}} {{
  %g = func.call @__agentc_slot_ptr(%frame, %i) : (!llvm.ptr, i64) -> !llvm.ptr
  llvm.store %p, %g : !llvm.ptr, !llvm.ptr
  %h = llvm.getelementptr %g[0, 1] : (!llvm.ptr) -> !llvm.ptr, {_SLOT}
  llvm.store %n, %h : i64, !llvm.ptr
  return
}}
func.func private @__agentc_slot_new(%frame: !llvm.ptr, %i: i64, %cap: i64) -> {BYTES} attributes {{{_INTERNAL}}} {{
  %m = func.call @__agentc_buffer(%cap) : (i64) -> {BYTES}
  %p = func.call @__agentc_ptr(%m) : ({BYTES}) -> !llvm.ptr
  %zero = arith.constant 0 : i64
  func.call @__agentc_slot_set(%frame, %i, %p, %zero) : (!llvm.ptr, i64, !llvm.ptr, i64) -> ()
  return %m : {BYTES}
}}
func.func private @__agentc_slot_written(%frame: !llvm.ptr, %i: i64, %n: i64) attributes {{{_INTERNAL}}} {{
  %g = func.call @__agentc_slot_ptr(%frame, %i) : (!llvm.ptr, i64) -> !llvm.ptr
  %h = llvm.getelementptr %g[0, 1] : (!llvm.ptr) -> !llvm.ptr, {_SLOT}
  llvm.store %n, %h : i64, !llvm.ptr
  return
}}
func.func private @__agentc_slot_free(%frame: !llvm.ptr, %i: i64) attributes {{{_INTERNAL}}} {{
  %g = func.call @__agentc_slot_ptr(%frame, %i) : (!llvm.ptr, i64) -> !llvm.ptr
  %p = llvm.load %g : !llvm.ptr -> !llvm.ptr
  %null = llvm.mlir.zero : !llvm.ptr
  %live = llvm.icmp "ne" %p, %null : !llvm.ptr
  scf.if %live {{
    func.call @agentc_free(%p) : (!llvm.ptr) -> ()
    llvm.store %null, %g : !llvm.ptr, !llvm.ptr
  }}
  return
}}
func.func private @__agentc_frame_free(%frame: !llvm.ptr, %first: i64, %slots: i64) attributes {{{_INTERNAL}}} {{
  %a = arith.index_cast %first : i64 to index
  %b = arith.index_cast %slots : i64 to index
  %c1 = arith.constant 1 : index
  scf.for %s = %a to %b step %c1 {{
    %i = arith.index_cast %s : index to i64
    func.call @__agentc_slot_free(%frame, %i) : (!llvm.ptr, i64) -> ()
  }}
  func.call @agentc_free(%frame) : (!llvm.ptr) -> ()
  return
}}
"""


def _memref(tensor_type: str) -> str:
    return tensor_type.replace("tensor<", "memref<", 1)


def _bind_arg(b, a: int, t, tag: str, index: str) -> str:
    """Kernel argument `a` (type `t`), a weight the runtime binds by model, op label,
    argument number and `index` (the layer): the memref's SSA name, suffixed `tag`."""
    b(f"%arg_no{tag} = arith.constant {a} : i64")
    b(f"%nw{tag} = arith.constant {_nbytes(t)} : i64")
    b(f"%pw{tag} = func.call @agentc_bind(%model, %label, %arg_no{tag}, {index}, %nw{tag}) : "
      "(!llvm.ptr, !llvm.ptr, i64, i64, i64) -> !llvm.ptr")
    b(f"%bw{tag} = func.call @__agentc_bytes(%pw{tag}, %nw{tag}) : (!llvm.ptr, i64) -> {BYTES}")
    b(f"%w{tag} = memref.view %bw{tag}[%c0][] : {BYTES} to {_memref(str(t))}")
    return f"%w{tag}"


def _nbytes(tensor_type) -> int:
    shaped = ir.ShapedType(tensor_type)
    return math.prod(shaped.shape) * _ELEM_BYTES.get(str(shaped.element_type), 4)


def _i64s(attr) -> list[int]:
    return list(ir.DenseI64ArrayAttr(attr)) if attr is not None else []


class _Lines:
    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append("  " + line)


def _attrs(fn, keep=("agentc.op", "agentc.label", "agentc.kernel", "agentc.abi")) -> str:
    """An op function's attributes: what it runs, and internal linkage (its one caller
    is its step, so LLVM inlines it there and emits no copy of its own)."""
    parts = [f"{k} = {fn.attributes[k]}" for k in keep if k in fn.attributes]
    return " attributes {" + ", ".join(parts + [_INTERNAL]) + "}"


def _abi_fn(fn, strings: StringGlobals) -> str:
    """Runtime-call op function: (in[], in_bytes[], out) -> bytes written or a negative
    code. Its inputs come as the runtime takes them, arrays of pointers and sizes that
    the caller fills (`__agentc_arg`, one call per input): as one memref argument each,
    a fan-in of a thousand values was a call of 5000 arguments, which LLVM's
    interprocedural passes take in time quadratic in its width."""
    name = get(fn, "sym_name")
    ftype = ir.FunctionType(ir.TypeAttr(fn.attributes["function_type"]).value)
    k, has_out = len(ftype.inputs), bool(ftype.results)
    params = ["%ins: !llvm.ptr", "%sizes: !llvm.ptr"] + ([f"%out: {BYTES}"] if has_out else [])
    b = _Lines()
    b(f"%name = llvm.mlir.addressof @{strings(get(fn, 'agentc.abi_arg'))} : !llvm.ptr")
    b(f"%n_in = arith.constant {k} : i64")
    if has_out:
        b(f"%o = func.call @__agentc_ptr(%out) : ({BYTES}) -> !llvm.ptr")
        b(f"%cap = func.call @__agentc_size(%out) : ({BYTES}) -> i64")
    else:
        b("%o = llvm.mlir.zero : !llvm.ptr")
        b("%cap = arith.constant 0 : i64")
    b(f"%rc = func.call @{get(fn, 'agentc.abi')}(%name, %ins, %sizes, %n_in, %o, %cap) : {ABI_TYPE}")
    b("return %rc : i64")
    return (f"func.func @{name}({', '.join(params)}) -> i64{_attrs(fn)} {{\n"
            + "\n".join(b.lines) + "\n}")


def _compute_fn(fn, kernel_types, strings: StringGlobals) -> str:
    """Kernel op function: inputs -> kernel argument buffers -> kernel calls in loops."""
    name = get(fn, "sym_name")
    ftype = ir.FunctionType(ir.TypeAttr(fn.attributes["function_type"]).value)
    k, has_out = len(ftype.inputs), bool(ftype.results)
    kernel = get(fn, "agentc.kernel")
    k_in, k_out = kernel_types[kernel]
    # lower-kernels records loops only for kernels that carry their input (layers);
    # an index scanned in chunks repeats the call without carrying anything.
    loops = _i64s(fn.attributes["agentc.loops"]) if "agentc.loops" in fn.attributes else []
    carry = bool(loops)
    calls = int(get(fn, "agentc.calls", 1) or 1)
    if not loops and calls > 1:
        loops = [calls]
    params = [f"%in{i}: {BYTES}" for i in range(k)] + ([f"%out: {BYTES}"] if has_out else [])
    b = _Lines()
    b("%c0 = arith.constant 0 : index")
    b("%c1 = arith.constant 1 : index")
    b(f"%model = llvm.mlir.addressof @{strings(get(fn, 'agentc.model', '') or '')} : !llvm.ptr")
    b(f"%label = llvm.mlir.addressof @{strings(get(fn, 'agentc.label', name))} : !llvm.ptr")
    temps = []
    b(f"%nx = arith.constant {_nbytes(k_in[0])} : i64")
    b(f"%bx = func.call @__agentc_buffer(%nx) : (i64) -> {BYTES}")
    temps.append("%bx")
    if k:
        b(f"%copied = func.call @__agentc_copy(%bx, %in0) : ({BYTES}, {BYTES}) -> i64")
    b(f"%x = memref.view %bx[%c0][] : {BYTES} to {_memref(str(k_in[0]))}")
    outs = []
    for j, t in enumerate(k_out):
        b(f"%ny{j} = arith.constant {_nbytes(t)} : i64")
        b(f"%by{j} = func.call @__agentc_buffer(%ny{j}) : (i64) -> {BYTES}")
        b(f"%y{j} = memref.view %by{j}[%c0][] : {BYTES} to {_memref(str(t))}")
        temps.append(f"%by{j}")
        outs.append(f"%y{j}")
    for d, trips in enumerate(loops):
        b(f"%trips{d} = arith.constant {trips} : index")
        b(f"scf.for %i{d} = %c0 to %trips{d} step %c1 {{")
    index = f"%i{len(loops) - 1}" if loops else "%c0"
    b(f"%index = arith.index_cast {index} : index to i64")
    args = ["%x"]
    for a, t in enumerate(k_in[1:], 1):
        args.append(_bind_arg(b, a, t, str(a), "%index"))
    types = [_memref(str(t)) for t in list(k_in) + list(k_out)]
    b(f"func.call @{kernel}({', '.join(args + outs)}) : ({', '.join(types)}) -> ()")
    if carry:
        b(f"memref.copy %y0, %x : {types[len(k_in)]} to {types[0]}")
    for _ in loops:
        b("}")
    if has_out:
        # Every output goes into the result, one after another (the first is the
        # carried activation when the kernel loops): decode's k_new/v_new, sample's and
        # retrieve's ids. A result smaller than their total keeps what fits.
        firsts = ["%bx" if carry else "%by0"] + [f"%by{j}" for j in range(1, len(k_out))]
        sizes = [_nbytes(t) for t in k_out]
        if len(firsts) == 1:
            b(f"%n = func.call @__agentc_copy(%out, {firsts[0]}) : ({BYTES}, {BYTES}) -> i64")
        else:
            b(f"%optr = func.call @__agentc_ptr(%out) : ({BYTES}) -> !llvm.ptr")
            b(f"%ocap = func.call @__agentc_size(%out) : ({BYTES}) -> i64")
            b("%n_0 = arith.constant 0 : i64")
            offset = 0
            for j, src in enumerate(firsts):
                b(f"%off{j} = arith.constant {offset} : i64")
                b(f"%offc{j} = arith.minsi %off{j}, %ocap : i64")
                b(f"%op{j} = llvm.getelementptr %optr[%offc{j}] : (!llvm.ptr, i64) -> !llvm.ptr, i8")
                b(f"%orem{j} = arith.subi %ocap, %offc{j} : i64")
                b(f"%od{j} = func.call @__agentc_bytes(%op{j}, %orem{j}) : (!llvm.ptr, i64) -> {BYTES}")
                b(f"%oc{j} = func.call @__agentc_copy(%od{j}, {src}) : ({BYTES}, {BYTES}) -> i64")
                b(f"%n_{j + 1} = arith.addi %n_{j}, %oc{j} : i64")
                offset += sizes[j]
            b(f"%n = arith.addi %n_{len(firsts)}, %n_0 : i64")   # the bytes written
    else:
        b("%n = arith.constant 0 : i64")
    for t in temps:
        b(f"func.call @__agentc_release({t}) : ({BYTES}) -> ()")
    b("return %n : i64")
    return (f"func.func @{name}({', '.join(params)}) -> i64{_attrs(fn)} {{\n"
            + "\n".join(b.lines) + "\n}")


def _bucketed_fn(fn, kernel_types, strings: StringGlobals) -> str:
    """`embed.encode` / `embed.pool` over a sentence of n real rows: the smallest bucket
    kernel that holds n (`agentc.buckets`), its padding rows zero and masked out.

    encode: `agentc_embed_rows` (the runtime tokenizes and gathers the embedding rows:
    table lookups) gives n rows [n, d]; the layers run in the bucket's masked encoder
    kernel; the result is the last layer's n rows (n * d * 4 bytes). pool: n is its
    input's bytes / (d * 4); the result is the masked mean, L2-normalised [d].
    """
    name = get(fn, "sym_name")
    encode = get(fn, "agentc.op") == "embed.encode"
    rows = _i64s(fn.attributes["agentc.buckets"])
    syms = [str(ir.StringAttr(a).value) for a in ir.ArrayAttr(fn.attributes["agentc.bucket_kernels"])]
    layers = _i64s(fn.attributes["agentc.loops"]) if encode else []
    k_in0, _ = kernel_types[syms[-1]]
    row_bytes = _nbytes(k_in0[0]) // rows[-1]
    b = _Lines()
    b("%c0 = arith.constant 0 : index")
    b("%c1 = arith.constant 1 : index")
    b("%zero = arith.constant 0 : i64")
    b("%one = arith.constant 1.0 : f32")
    b(f"%row_bytes = arith.constant {row_bytes} : i64")
    b(f"%model = llvm.mlir.addressof @{strings(get(fn, 'agentc.model', '') or '')} : !llvm.ptr")
    b(f"%label = llvm.mlir.addressof @{strings(get(fn, 'agentc.label', name))} : !llvm.ptr")
    if encode:
        b(f"%rows_cap = arith.constant {rows[-1] * row_bytes} : i64")
        b(f"%rows = func.call @__agentc_buffer(%rows_cap) : (i64) -> {BYTES}")
        b("%n_in = arith.constant 1 : i64")
        b("%ins = llvm.alloca %n_in x !llvm.ptr : (i64) -> !llvm.ptr")
        b("%sizes = llvm.alloca %n_in x i64 : (i64) -> !llvm.ptr")
        b(f"%p0 = func.call @__agentc_ptr(%in0) : ({BYTES}) -> !llvm.ptr")
        b("llvm.store %p0, %ins : !llvm.ptr, !llvm.ptr")
        b(f"%s0 = func.call @__agentc_size(%in0) : ({BYTES}) -> i64")
        b("llvm.store %s0, %sizes : i64, !llvm.ptr")
        b(f"%rp = func.call @__agentc_ptr(%rows) : ({BYTES}) -> !llvm.ptr")
        b(f"%got = func.call @agentc_embed_rows(%model, %ins, %sizes, %n_in, %rp, %rows_cap) : {ABI_TYPE}")
        b("%bad = arith.cmpi slt, %got, %zero : i64")
        b("cf.cond_br %bad, ^done(%got : i64), ^rows")
        b.lines.append("^rows:")
        b(f"%src = func.call @__agentc_view(%rows, %got) : ({BYTES}, i64) -> {BYTES}")
    else:
        b(f"%s_in = func.call @__agentc_size(%in0) : ({BYTES}) -> i64")
        b(f"%src = func.call @__agentc_view(%in0, %s_in) : ({BYTES}, i64) -> {BYTES}")
    b(f"%srcn = func.call @__agentc_size(%src) : ({BYTES}) -> i64")
    b("%n64 = arith.divui %srcn, %row_bytes : i64")
    b("%n = arith.index_cast %n64 : i64 to index")
    b("cf.br ^pick0")
    for i, (rows_i, sym) in enumerate(zip(rows, syms)):
        k_in, k_out = kernel_types[sym]
        b.lines.append(f"^pick{i}:")
        if i + 1 < len(rows):
            b(f"%fits{i} = arith.constant {rows_i} : index")
            b(f"%le{i} = arith.cmpi ule, %n, %fits{i} : index")
            b(f"cf.cond_br %le{i}, ^bucket{i}, ^pick{i + 1}")
        else:
            b(f"cf.br ^bucket{i}")
        b.lines.append(f"^bucket{i}:")
        x_t, mask_t = _memref(str(k_in[0])), _memref(str(k_in[-1]))
        b(f"%nx{i} = arith.constant {_nbytes(k_in[0])} : i64")
        b(f"%bx{i} = func.call @__agentc_buffer(%nx{i}) : (i64) -> {BYTES}")
        b(f"%cx{i} = func.call @__agentc_copy(%bx{i}, %src) : ({BYTES}, {BYTES}) -> i64")
        b(f"%x{i} = memref.view %bx{i}[%c0][] : {BYTES} to {x_t}")
        b(f"%nm{i} = arith.constant {_nbytes(k_in[-1])} : i64")
        b(f"%bm{i} = func.call @__agentc_buffer(%nm{i}) : (i64) -> {BYTES}")
        b(f"%m{i} = memref.view %bm{i}[%c0][] : {BYTES} to {mask_t}")
        b(f"%cap{i} = arith.constant {rows_i} : index")
        b(f"%real{i} = arith.minui %n, %cap{i} : index")
        b(f"scf.for %j{i} = %c0 to %real{i} step %c1 {{")
        b(f"  memref.store %one, %m{i}[%j{i}] : {mask_t}")
        b("}")
        b(f"%ny{i} = arith.constant {_nbytes(k_out[0])} : i64")
        b(f"%by{i} = func.call @__agentc_buffer(%ny{i}) : (i64) -> {BYTES}")
        b(f"%y{i} = memref.view %by{i}[%c0][] : {BYTES} to {_memref(str(k_out[0]))}")
        weights = k_in[1:-1]
        if layers:
            b(f"%layers{i} = arith.constant {layers[0]} : index")
            b(f"scf.for %l{i} = %c0 to %layers{i} step %c1 {{")
            b(f"%index{i} = arith.index_cast %l{i} : index to i64")
        else:
            b(f"%index{i} = arith.constant 0 : i64")
        args = [f"%x{i}"]
        for a, t in enumerate(weights, 1):
            args.append(_bind_arg(b, a, t, f"{i}_{a}", f"%index{i}"))
        types = [_memref(str(t)) for t in list(k_in) + list(k_out)]
        b(f"func.call @{sym}({', '.join(args + [f'%m{i}', f'%y{i}'])}) : ({', '.join(types)}) -> ()")
        if layers:
            b(f"memref.copy %y{i}, %x{i} : {types[-1]} to {types[0]}")
            b("}")
            # the result: the n real rows of the last layer
            b(f"%res{i} = func.call @__agentc_view(%bx{i}, %srcn) : ({BYTES}, i64) -> {BYTES}")
        else:
            b(f"%res{i} = func.call @__agentc_view(%by{i}, %ny{i}) : ({BYTES}, i64) -> {BYTES}")
        b(f"%wrote{i} = func.call @__agentc_copy(%out, %res{i}) : ({BYTES}, {BYTES}) -> i64")
        for t in (f"%bx{i}", f"%bm{i}", f"%by{i}"):
            b(f"func.call @__agentc_release({t}) : ({BYTES}) -> ()")
        b(f"cf.br ^done(%wrote{i} : i64)")
    b.lines.append("^done(%rc: i64):")
    if encode:
        b(f"func.call @__agentc_release(%rows) : ({BYTES}) -> ()")
    b("return %rc : i64")
    params = [f"%in0: {BYTES}", f"%out: {BYTES}"]
    return (f"func.func @{name}({', '.join(params)}) -> i64{_attrs(fn)} {{\n"
            + "\n".join(b.lines) + "\n}")


def _retrieve_fn(fn, kernel_types, strings: StringGlobals) -> str:
    """`retrieve.search` over an index of `agentc.calls` chunks: each chunk's top-k
    (ids local to the chunk, offset by the chunk's first row) is merged into a running
    top-k by (score descending, id ascending), so the result is the exact top-k of the
    whole index; every member of it is in its chunk's top-k. `agentc_bind`'s index is the
chunk's first row (chunks are not all the same size). The last chunk may have a
    kernel of its own size (`agentc.last_kernel`). The result: k f32 scores, then their
    k i32 ids."""
    name = get(fn, "sym_name")
    full = get(fn, "agentc.kernel")
    calls = int(get(fn, "agentc.calls", 1) or 1)
    last = get(fn, "agentc.last_kernel", None)
    (q_t, idx_t), (s_t, i_t) = kernel_types[full]
    k = ir.ShapedType(s_t).shape[0]
    rows = ir.ShapedType(idx_t).shape[0]
    f32k, i32k = f"memref<{k}xf32>", f"memref<{k}xi32>"
    b = _Lines()
    b("%c0 = arith.constant 0 : index")
    b("%c1 = arith.constant 1 : index")
    b(f"%ck = arith.constant {k} : index")
    b("%ninf = arith.constant 0xFF800000 : f32")
    b("%imax = arith.constant 2147483647 : i32")
    b(f"%model = llvm.mlir.addressof @{strings(get(fn, 'agentc.model', '') or '')} : !llvm.ptr")
    b(f"%label = llvm.mlir.addressof @{strings(get(fn, 'agentc.label', name))} : !llvm.ptr")
    b(f"%nq = arith.constant {_nbytes(q_t)} : i64")
    b(f"%bq = func.call @__agentc_buffer(%nq) : (i64) -> {BYTES}")
    b(f"%cq = func.call @__agentc_copy(%bq, %in0) : ({BYTES}, {BYTES}) -> i64")
    b(f"%q = memref.view %bq[%c0][] : {BYTES} to {_memref(str(q_t))}")
    b(f"%nk = arith.constant {4 * k} : i64")
    temps = ["%bq"]
    for v, t in (("s", f32k), ("i", i32k), ("ts", f32k), ("ti", i32k)):
        b(f"%b{v} = func.call @__agentc_buffer(%nk) : (i64) -> {BYTES}")
        b(f"%{v} = memref.view %b{v}[%c0][] : {BYTES} to {t}")
        temps.append(f"%b{v}")
    b("scf.for %t = %c0 to %ck step %c1 {")
    b(f"  memref.store %ninf, %s[%t] : {f32k}")
    b(f"  memref.store %imax, %i[%t] : {i32k}")
    b("}")
    chunks = [(full, None, calls - (1 if last else 0))]
    if last:
        chunks.append((last, None, calls - 1))

    def chunk(tag: str, sym: str, c: str) -> None:
        (_, it), (st, _) = kernel_types[sym]
        kk = ir.ShapedType(st).shape[0]
        b(f"%rows{tag} = arith.constant {rows} : index")
        b(f"%first{tag} = arith.muli {c}, %rows{tag} : index")   # the chunk's first row
        b(f"%c64{tag} = arith.index_cast %first{tag} : index to i64")
        b(f"%arg{tag} = arith.constant 1 : i64")
        b(f"%nw{tag} = arith.constant {_nbytes(it)} : i64")
        b(f"%pw{tag} = func.call @agentc_bind(%model, %label, %arg{tag}, %c64{tag}, %nw{tag}) : "
          "(!llvm.ptr, !llvm.ptr, i64, i64, i64) -> !llvm.ptr")
        b(f"%bw{tag} = func.call @__agentc_bytes(%pw{tag}, %nw{tag}) : (!llvm.ptr, i64) -> {BYTES}")
        b(f"%w{tag} = memref.view %bw{tag}[%c0][] : {BYTES} to {_memref(str(it))}")
        b(f"%ny{tag} = arith.constant {4 * kk} : i64")
        b(f"%bys{tag} = func.call @__agentc_buffer(%ny{tag}) : (i64) -> {BYTES}")
        b(f"%ys{tag} = memref.view %bys{tag}[%c0][] : {BYTES} to memref<{kk}xf32>")
        b(f"%byi{tag} = func.call @__agentc_buffer(%ny{tag}) : (i64) -> {BYTES}")
        b(f"%yi{tag} = memref.view %byi{tag}[%c0][] : {BYTES} to memref<{kk}xi32>")
        b(f"func.call @{sym}(%q, %w{tag}, %ys{tag}, %yi{tag}) : ({_memref(str(q_t))}, {_memref(str(it))}, "
          f"memref<{kk}xf32>, memref<{kk}xi32>) -> ()")
        b(f"%off{tag} = arith.index_cast %first{tag} : index to i32")
        b(f"%ckk{tag} = arith.constant {kk} : index")
        b(f"%m{tag}:2 = scf.for %t{tag} = %c0 to %ck step %c1 iter_args(%a{tag} = %c0, %b{tag} = %c0) "
          "-> (index, index) {")
        b(f"  %sa{tag} = memref.load %s[%a{tag}] : {f32k}")
        b(f"  %ia{tag} = memref.load %i[%a{tag}] : {i32k}")
        b(f"  %bok{tag} = arith.cmpi ult, %b{tag}, %ckk{tag} : index")
        b(f"  %bb{tag} = arith.select %bok{tag}, %b{tag}, %c0 : index")
        b(f"  %sb0{tag} = memref.load %ys{tag}[%bb{tag}] : memref<{kk}xf32>")
        b(f"  %ib0{tag} = memref.load %yi{tag}[%bb{tag}] : memref<{kk}xi32>")
        b(f"  %ib1{tag} = arith.addi %ib0{tag}, %off{tag} : i32")
        b(f"  %sb{tag} = arith.select %bok{tag}, %sb0{tag}, %ninf : f32")
        b(f"  %ib{tag} = arith.select %bok{tag}, %ib1{tag}, %imax : i32")
        b(f"  %gt{tag} = arith.cmpf ogt, %sa{tag}, %sb{tag} : f32")
        b(f"  %eq{tag} = arith.cmpf oeq, %sa{tag}, %sb{tag} : f32")
        b(f"  %lt{tag} = arith.cmpi slt, %ia{tag}, %ib{tag} : i32")
        b(f"  %tie{tag} = arith.andi %eq{tag}, %lt{tag} : i1")
        b(f"  %ta{tag} = arith.ori %gt{tag}, %tie{tag} : i1")
        b(f"  %vs{tag} = arith.select %ta{tag}, %sa{tag}, %sb{tag} : f32")
        b(f"  %vi{tag} = arith.select %ta{tag}, %ia{tag}, %ib{tag} : i32")
        b(f"  memref.store %vs{tag}, %ts[%t{tag}] : {f32k}")
        b(f"  memref.store %vi{tag}, %ti[%t{tag}] : {i32k}")
        b(f"  %a1{tag} = arith.addi %a{tag}, %c1 : index")
        b(f"  %b1{tag} = arith.addi %b{tag}, %c1 : index")
        b(f"  %na{tag} = arith.select %ta{tag}, %a1{tag}, %a{tag} : index")
        b(f"  %nb{tag} = arith.select %ta{tag}, %b{tag}, %b1{tag} : index")
        b(f"  scf.yield %na{tag}, %nb{tag} : index, index")
        b("}")
        b(f"memref.copy %ts, %s : {f32k} to {f32k}")
        b(f"memref.copy %ti, %i : {i32k} to {i32k}")
        for t in (f"%bys{tag}", f"%byi{tag}"):
            b(f"func.call @__agentc_release({t}) : ({BYTES}) -> ()")

    if chunks[0][2] > 0:
        b(f"%chunks = arith.constant {chunks[0][2]} : index")
        b("scf.for %c = %c0 to %chunks step %c1 {")
        chunk("_f", full, "%c")
        b("}")
    if last:
        b(f"%clast = arith.constant {calls - 1} : index")
        chunk("_l", last, "%clast")
    # the result: the k scores, then their k ids (as much as the buffer holds)
    b(f"%optr = func.call @__agentc_ptr(%out) : ({BYTES}) -> !llvm.ptr")
    b(f"%ocap = func.call @__agentc_size(%out) : ({BYTES}) -> i64")
    b(f"%n0 = func.call @__agentc_copy(%out, %bs) : ({BYTES}, {BYTES}) -> i64")
    b("%off1 = arith.minsi %nk, %ocap : i64")
    b("%op1 = llvm.getelementptr %optr[%off1] : (!llvm.ptr, i64) -> !llvm.ptr, i8")
    b("%orem1 = arith.subi %ocap, %off1 : i64")
    b(f"%od1 = func.call @__agentc_bytes(%op1, %orem1) : (!llvm.ptr, i64) -> {BYTES}")
    b(f"%n1 = func.call @__agentc_copy(%od1, %bi) : ({BYTES}, {BYTES}) -> i64")
    b("%n = arith.addi %n0, %n1 : i64")
    for t in temps:
        b(f"func.call @__agentc_release({t}) : ({BYTES}) -> ()")
    b("return %n : i64")
    params = [f"%in0: {BYTES}", f"%out: {BYTES}"]
    return (f"func.func @{name}({', '.join(params)}) -> i64{_attrs(fn)} {{\n"
            + "\n".join(b.lines) + "\n}")


def _bind(b: _Lines, tag: str, label: str, arg: int, index: str, memref_t: str, nbytes: int) -> str:
    """A runtime-owned buffer (agentc_bind) viewed as `memref_t`; its SSA name."""
    b(f"%a{tag} = arith.constant {arg} : i64")
    b(f"%n{tag} = arith.constant {nbytes} : i64")
    b(f"%p{tag} = func.call @agentc_bind(%model, {label}, %a{tag}, {index}, %n{tag}) : "
      "(!llvm.ptr, !llvm.ptr, i64, i64, i64) -> !llvm.ptr")
    b(f"%b{tag} = func.call @__agentc_bytes(%p{tag}, %n{tag}) : (!llvm.ptr, i64) -> {BYTES}")
    b(f"%{tag} = memref.view %b{tag}[%c0][] : {BYTES} to {memref_t}")
    return f"%{tag}"


def _temp(b: _Lines, temps: list, tag: str, memref_t: str, nbytes: int) -> str:
    """A zeroed buffer of the program (released at the end) viewed as `memref_t`."""
    b(f"%n{tag} = arith.constant {nbytes} : i64")
    b(f"%b{tag} = func.call @__agentc_buffer(%n{tag}) : (i64) -> {BYTES}")
    b(f"%{tag} = memref.view %b{tag}[%c0][] : {BYTES} to {memref_t}")
    temps.append(f"%b{tag}")
    return f"%{tag}"


def _kv_view(b: _Lines, kv: str, tag: str, offset: str, memref_t: str) -> str:
    b(f"%{tag} = memref.view {kv}[{offset}][] : {BYTES} to {memref_t}")
    return f"%{tag}"


def _prefill_fn(fn, kernel_types, strings: StringGlobals) -> str:
    """`llm.prefill` at the prompt's real length n (its i32 ids' bytes / 4, at most the
    call's context rows C): token embeddings gathered (agentc_bind argument 0: the
    [vocab, d] table), every layer in the `prefill_layer` kernel of C rows (causal, so
    the zero rows after the prompt change nothing), its K and V kept. The result is the
    call's KV value: n (i64), the last prompt row's hidden state [d], then K of every
    layer [C, kv_dim] and V of every layer."""
    name = get(fn, "sym_name")
    kernel = get(fn, "agentc.kernel")
    k_in, k_out = kernel_types[kernel]
    C, vocab, layers = (int(get(fn, a)) for a in ("agentc.context", "agentc.vocab", "agentc.layers"))
    d = ir.ShapedType(k_in[0]).shape[1]
    kvd = ir.ShapedType(k_out[1]).shape[1]
    x_t, kv_t = f"memref<{C}x{d}xf32>", f"memref<{C}x{kvd}xf32>"
    b, temps = _Lines(), []
    b("%c0 = arith.constant 0 : index")
    b("%c1 = arith.constant 1 : index")
    b("%z64 = arith.constant 0 : i64")
    b(f"%model = llvm.mlir.addressof @{strings(get(fn, 'agentc.model', '') or '')} : !llvm.ptr")
    b(f"%label = llvm.mlir.addressof @{strings(get(fn, 'agentc.label', name))} : !llvm.ptr")
    b(f"%s_in = func.call @__agentc_size(%in0) : ({BYTES}) -> i64")
    b("%four = arith.constant 4 : i64")
    b("%n_all = arith.divui %s_in, %four : i64")
    b(f"%cC = arith.constant {C} : i64")
    b("%n64 = arith.minui %n_all, %cC : i64")
    b("%n = arith.index_cast %n64 : i64 to index")
    b("%ids = memref.view %in0[%c0][%n] : memref<?xi8> to memref<?xi32>")
    emb = _bind(b, "emb", "%label", 0, "%z64", f"memref<{vocab}x{d}xf32>", vocab * d * 4)
    x = _temp(b, temps, "x", x_t, C * d * 4)
    b("scf.for %i = %c0 to %n step %c1 {")
    b("  %tok = memref.load %ids[%i] : memref<?xi32>")
    _embed_token(b, emb, vocab, d, f"{x}[%i, %j] : {x_t}")
    b("}")
    outs = [_temp(b, temps, f"y{j}", _memref(str(t)), _nbytes(t)) for j, t in enumerate(k_out)]
    b(f"%kv_head = arith.constant {8 + 4 * d} : index")
    b(f"%kv_layer = arith.constant {C * kvd * 4} : index")
    b(f"%kv_vbase = arith.constant {8 + 4 * d + layers * C * kvd * 4} : index")
    b(f"%layers = arith.constant {layers} : index")
    b("scf.for %l = %c0 to %layers step %c1 {")
    b("%index = arith.index_cast %l : index to i64")
    args = [x]
    for a, t in enumerate(k_in[1:], 1):
        args.append(_bind(b, f"w{a}", "%label", a, "%index", _memref(str(t)), _nbytes(t)))
    types = [_memref(str(t)) for t in list(k_in) + list(k_out)]
    b(f"func.call @{kernel}({', '.join(args + outs)}) : ({', '.join(types)}) -> ()")
    b(f"memref.copy {outs[0]}, {x} : {x_t} to {x_t}")
    b("%koff0 = arith.muli %l, %kv_layer : index")
    b("%koff = arith.addi %koff0, %kv_head : index")
    b("%voff = arith.addi %koff0, %kv_vbase : index")
    k_l = _kv_view(b, "%out", "k_l", "%koff", kv_t)
    v_l = _kv_view(b, "%out", "v_l", "%voff", kv_t)
    b(f"memref.copy {outs[1]}, {k_l} : {kv_t} to {kv_t}")
    b(f"memref.copy {outs[2]}, {v_l} : {kv_t} to {kv_t}")
    b("}")
    # the header: n, and the last prompt row's hidden state
    b("%pos = memref.view %out[%c0][] : memref<?xi8> to memref<1xi64>")
    b("memref.store %n64, %pos[%c0] : memref<1xi64>")
    b("%c8 = arith.constant 8 : index")
    b(f"%hid = memref.view %out[%c8][] : memref<?xi8> to memref<{d}xf32>")
    b("%last = arith.subi %n, %c1 : index")
    b(f"%cd2 = arith.constant {d} : index")
    b("scf.for %j = %c0 to %cd2 step %c1 {")
    b(f"  %h = memref.load {x}[%last, %j] : {x_t}")
    b(f"  memref.store %h, %hid[%j] : memref<{d}xf32>")
    b("}")
    return _llm_fn_end(b, name, fn, temps, 8 + 4 * d + 2 * layers * C * kvd * 4)


def _decode_fn(fn, kernel_types, strings: StringGlobals) -> str:
    """`llm.decode` with its sampling: T new tokens, one at a time. Each is drawn by the
    `sample` kernel (final norm, LM head, top-k; agentc_bind of op `<label>.sample`:
    argument 1 the norm, 2 the head [d, vocab], 3 on repetition t the token's params
    (1/temperature, u)) from the last hidden state; unless it is the last, its embedding
    runs through every layer's `decode_step` over the KV cache (a copy of the KV value;
    the mask marks the rows written; RoPE rows: arguments 1 and 2 on repetition `pos`),
    its K and V are written at row pos. The result: the T token ids, i32."""
    name = get(fn, "sym_name")
    kernel, sample = get(fn, "agentc.kernel"), get(fn, "agentc.sample_kernel")
    k_in, k_out = kernel_types[kernel]
    s_in, s_out = kernel_types[sample]
    C, vocab, layers, T = (int(get(fn, a)) for a in ("agentc.context", "agentc.vocab", "agentc.layers",
                                                      "agentc.tokens"))
    d = ir.ShapedType(k_in[0]).shape[0]
    kvd = ir.ShapedType(k_out[1]).shape[0]
    kv_t = f"memref<{C}x{kvd}xf32>"
    kv_total = 8 + 4 * d + 2 * layers * C * kvd * 4
    b, temps = _Lines(), []
    b("%c0 = arith.constant 0 : index")
    b("%c1 = arith.constant 1 : index")
    b("%z64 = arith.constant 0 : i64")
    b("%one = arith.constant 1.0 : f32")
    b(f"%model = llvm.mlir.addressof @{strings(get(fn, 'agentc.model', '') or '')} : !llvm.ptr")
    label = str(get(fn, "agentc.label", name))
    b(f"%label = llvm.mlir.addressof @{strings(label)} : !llvm.ptr")
    b(f"%slabel = llvm.mlir.addressof @{strings(label + '.sample')} : !llvm.ptr")
    b(f"%nkv = arith.constant {kv_total} : i64")
    b(f"%kv = func.call @__agentc_buffer(%nkv) : (i64) -> {BYTES}")
    temps.append("%kv")
    b(f"%ckv = func.call @__agentc_copy(%kv, %in0) : ({BYTES}, {BYTES}) -> i64")
    b("%posv = memref.view %kv[%c0][] : memref<?xi8> to memref<1xi64>")
    b("%pos64 = memref.load %posv[%c0] : memref<1xi64>")
    b("%pos0 = arith.index_cast %pos64 : i64 to index")
    b("%c8 = arith.constant 8 : index")
    b(f"%hid = memref.view %kv[%c8][] : memref<?xi8> to memref<{d}xf32>")
    mask = _temp(b, temps, "mask", f"memref<{C}xf32>", C * 4)
    b(f"%cC = arith.constant {C} : index")
    b("%wrote = arith.minui %pos0, %cC : index")
    b("scf.for %j = %c0 to %wrote step %c1 {")
    b(f"  memref.store %one, {mask}[%j] : memref<{C}xf32>")
    b("}")
    emb = _bind(b, "emb", "%label", 0, "%z64", f"memref<{vocab}x{d}xf32>", vocab * d * 4)
    norm = _bind(b, "snorm", "%slabel", 1, "%z64", _memref(str(s_in[1])), _nbytes(s_in[1]))
    head = _bind(b, "shead", "%slabel", 2, "%z64", _memref(str(s_in[2])), _nbytes(s_in[2]))
    x = _temp(b, temps, "x", f"memref<{d}xf32>", d * 4)
    outs = [_temp(b, temps, f"y{j}", _memref(str(t)), _nbytes(t)) for j, t in enumerate(k_out)]
    souts = [_temp(b, temps, f"s{j}", _memref(str(t)), _nbytes(t)) for j, t in enumerate(s_out)]
    b(f"%cT = arith.constant {T} : index")
    b("%ids = memref.view %out[%c0][%cT] : memref<?xi8> to memref<?xi32>")
    b(f"%kv_head = arith.constant {8 + 4 * d} : index")
    b(f"%kv_layer = arith.constant {C * kvd * 4} : index")
    b(f"%kv_vbase = arith.constant {8 + 4 * d + layers * C * kvd * 4} : index")
    b(f"%layers = arith.constant {layers} : index")
    b("%last_t = arith.subi %cT, %c1 : index")
    b("%end = scf.for %t = %c0 to %cT step %c1 iter_args(%pos = %pos0) -> (index) {")
    b("%t64 = arith.index_cast %t : index to i64")
    params = _bind(b, "sparams", "%slabel", 3, "%t64", _memref(str(s_in[3])), _nbytes(s_in[3]))
    stypes = [_memref(str(t)) for t in list(s_in) + list(s_out)]
    b(f"func.call @{sample}(%hid, {norm}, {head}, {params}, {', '.join(souts)}) : ({', '.join(stypes)}) -> ()")
    b(f"%tok = memref.load {souts[0]}[%c0] : {_memref(str(s_out[0]))}")
    b("memref.store %tok, %ids[%t] : memref<?xi32>")
    b("%notlast = arith.cmpi ult, %t, %last_t : index")
    b("%room = arith.cmpi ult, %pos, %cC : index")
    b("%more = arith.andi %notlast, %room : i1")
    b("%next = scf.if %more -> (index) {")
    _embed_token(b, emb, vocab, d, f"{x}[%j] : memref<{d}xf32>")
    b("  %p64 = arith.index_cast %pos : index to i64")
    cos = _bind(b, "cos", "%label", 1, "%p64", _memref(str(k_in[1])), _nbytes(k_in[1]))
    sin = _bind(b, "sin", "%label", 2, "%p64", _memref(str(k_in[2])), _nbytes(k_in[2]))
    b("  scf.for %l = %c0 to %layers step %c1 {")
    b("  %index = arith.index_cast %l : index to i64")
    args = [x, cos, sin]
    for a, t in enumerate(k_in[3:12], 3):
        args.append(_bind(b, f"w{a}", "%label", a, "%index", _memref(str(t)), _nbytes(t)))
    b("  %koff0 = arith.muli %l, %kv_layer : index")
    b("  %koff = arith.addi %koff0, %kv_head : index")
    b("  %voff = arith.addi %koff0, %kv_vbase : index")
    k_l = _kv_view(b, "%kv", "k_l", "%koff", kv_t)
    v_l = _kv_view(b, "%kv", "v_l", "%voff", kv_t)
    types = [_memref(str(t)) for t in list(k_in) + list(k_out)]
    b(f"  func.call @{kernel}({', '.join(args + [k_l, v_l, mask] + outs)}) : ({', '.join(types)}) -> ()")
    b(f"  memref.copy {outs[0]}, {x} : memref<{d}xf32> to memref<{d}xf32>")
    b(f"  %ckvd = arith.constant {kvd} : index")
    b("  scf.for %j = %c0 to %ckvd step %c1 {")
    b(f"    %kn = memref.load {outs[1]}[%j] : memref<{kvd}xf32>")
    b(f"    memref.store %kn, {k_l}[%pos, %j] : {kv_t}")
    b(f"    %vn = memref.load {outs[2]}[%j] : memref<{kvd}xf32>")
    b(f"    memref.store %vn, {v_l}[%pos, %j] : {kv_t}")
    b("  }")
    b("  }")
    b(f"  memref.store %one, {mask}[%pos] : memref<{C}xf32>")
    b(f"  memref.copy {x}, %hid : memref<{d}xf32> to memref<{d}xf32>")
    b("  %pos1 = arith.addi %pos, %c1 : index")
    b("  scf.yield %pos1 : index")
    b("} else {")
    b("  scf.yield %pos : index")
    b("}")
    b("scf.yield %next : index")
    b("}")
    return _llm_fn_end(b, name, fn, temps, 4 * T)


def _embed_token(b, emb: str, vocab: int, d: int, into: str) -> None:
    """Row %tok of the token-embedding table `emb` (ids past the vocabulary clamped)
    stored into `into`, a store target with its indices and type (the prompt's row
    %i in prefill, the one-row input of a decode step)."""
    b("  %tki = arith.index_cast %tok : i32 to index")
    b(f"  %vmax = arith.constant {vocab - 1} : index")
    b("  %id = arith.minui %tki, %vmax : index")
    b(f"  %cd = arith.constant {d} : index")
    b("  scf.for %j = %c0 to %cd step %c1 {")
    b(f"    %e = memref.load {emb}[%id, %j] : memref<{vocab}x{d}xf32>")
    b(f"    memref.store %e, {into}")
    b("  }")


def _llm_fn_end(b, name: str, fn, temps: list[str], written: int) -> str:
    """An llm call's op function, closed: its temporaries released, the bytes it wrote
    (`written`) returned."""
    for t in temps:
        b(f"func.call @__agentc_release({t}) : ({BYTES}) -> ()")
    b(f"%written = arith.constant {written} : i64")
    b("return %written : i64")
    return (f"func.func @{name}(%in0: {BYTES}, %out: {BYTES}) -> i64{_attrs(fn)} {{\n"
            + "\n".join(b.lines) + "\n}")


def _pass_fn(fn) -> str:
    """`llm.sample` after a decode that drew its tokens: the ids, handed on."""
    return (f"func.func @{get(fn, 'sym_name')}(%in0: {BYTES}, %out: {BYTES}) -> i64{_attrs(fn)} {{\n"
            f"  %n = func.call @__agentc_copy(%out, %in0) : ({BYTES}, {BYTES}) -> i64\n"
            "  return %n : i64\n}")


_STEP_ATTRS = f'attributes {{{_INTERNAL}, passthrough = ["noinline"]}}'
# Ops per step function: enough that LLVM's fixed cost per function does not dominate a
# long schedule, few enough that every function stays small.
STEP_OPS = 16


class _Frame:
    """Where the values of a schedule live: one frame slot (buffer, bytes) per graph input
    (the caller's buffers) and per op (the buffer the program allocates for its result),
    and after which op each owned buffer is freed: its last reader, or never for a graph
    output (the entry point copies those out, then frees the frame)."""

    def __init__(self, schedule):
        # One naming state for the whole schedule: a value's name without it re-numbers
        # the enclosing function on every call (quadratic in the schedule's length).
        self.state = ir.AsmState(schedule.operation if hasattr(schedule, "operation") else schedule)
        block = schedule.regions[0].blocks[0]
        self.ops = [op.operation for op in block.operations]
        self.first = len(block.arguments)
        self.slots = self.first + len(self.ops)
        self._slot = {arg.get_name(self.state): i for i, arg in enumerate(block.arguments)}
        for n, op in enumerate(self.ops):
            if op.results:
                self._slot[op.results[0].get_name(self.state)] = self.first + n
        last: dict[int, int | None] = {self.first + n: n for n, op in enumerate(self.ops) if op.results}
        for n, op in enumerate(self.ops):
            for v in op.operands:
                if self.of(v) >= self.first:
                    last[self.of(v)] = None if op.name == "func.return" else n
        self.frees: dict[int, list[int]] = {}
        for slot, n in sorted(last.items()):
            if n is not None:
                self.frees.setdefault(n, []).append(slot)

    def of(self, value) -> int:
        return self._slot[value.get_name(self.state)]


def _run_fns(pool: str, schedule, results: dict, labels: dict, runtime_fns: set,
             strings: StringGlobals, sent: dict[int, int]) -> list[str]:
    """The C entry point and its steps. The entry point allocates the frame (`_Frame`),
    puts the graph inputs in their slots, calls the step functions in order with an
    error exit, copies the graph outputs out and frees what is left with the frame.
    Each step function (`@__agentc_step<k>(frame) -> rc`, never inlined) runs up to
    STEP_OPS ops, each reading its inputs from their slots, allocating its result's
    buffer into its own slot, between `agentc_trace(label, 1)` and
    `agentc_trace(label, 0)`, and freeing the buffers it read last. No value lives in
    a register across ops: one function over the whole schedule, with every buffer live
    throughout, grew LLVM's time much faster than the schedule. A recv's buffer holds
    what its peer's buffer can hold (`sent`: channel -> bytes, `sent_bytes`)."""
    frame = _Frame(schedule)
    ops = [n for n, op in enumerate(frame.ops) if op.name != "func.return"]
    groups = [ops[i:i + STEP_OPS] for i in range(0, len(ops), STEP_OPS)]
    steps = [_step_fn(k, group, pool, frame, results, labels, runtime_fns, strings, sent)
             for k, group in enumerate(groups)]
    b = _Lines()
    b("%zero = arith.constant 0 : i64")
    b(f"%frame_bytes = arith.constant {16 * frame.slots} : i64")
    b("%host = arith.constant 0 : i64  // AGENTC_ALLOC_HOST")
    b("%frame = func.call @agentc_alloc(%frame_bytes, %host) : (i64, i64) -> !llvm.ptr")
    for i in range(frame.first):
        b(f"%ip{i}g = llvm.getelementptr %in[{i}] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr")
        b(f"%ip{i} = llvm.load %ip{i}g : !llvm.ptr -> !llvm.ptr")
        b(f"%is{i}g = llvm.getelementptr %in_bytes[{i}] : (!llvm.ptr) -> !llvm.ptr, i64")
        b(f"%is{i} = llvm.load %is{i}g : !llvm.ptr -> i64")
        b(f"%in_slot{i} = arith.constant {i} : i64")
        b(f"func.call @__agentc_slot_set(%frame, %in_slot{i}, %ip{i}, %is{i}) : "
          "(!llvm.ptr, i64, !llvm.ptr, i64) -> ()")
    b(f"%first = arith.constant {frame.first} : i64")
    b(f"%slots = arith.constant {frame.slots} : i64")
    for k in range(len(groups)):
        b(f"%rc{k} = func.call @__agentc_step{k}(%frame) : (!llvm.ptr) -> i64")
        b(f"%bad{k} = arith.cmpi slt, %rc{k}, %zero : i64")
        b(f"cf.cond_br %bad{k}, ^fail(%rc{k} : i64), ^step{k + 1}")
        b.lines.append(f"^step{k + 1}:")
    ret = frame.ops[-1]
    for j, v in enumerate(ret.operands):
        b(f"%vs{j} = arith.constant {frame.of(v)} : i64")
        b(f"%v{j} = func.call @__agentc_slot(%frame, %vs{j}) : (!llvm.ptr, i64) -> {BYTES}")
        b(f"%op{j}g = llvm.getelementptr %out[{j}] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr")
        b(f"%op{j} = llvm.load %op{j}g : !llvm.ptr -> !llvm.ptr")
        b(f"%os{j}g = llvm.getelementptr %out_bytes[{j}] : (!llvm.ptr) -> !llvm.ptr, i64")
        b(f"%os{j} = llvm.load %os{j}g : !llvm.ptr -> i64")
        b(f"%ob{j} = func.call @__agentc_bytes(%op{j}, %os{j}) : (!llvm.ptr, i64) -> {BYTES}")
        b(f"%on{j} = func.call @__agentc_copy(%ob{j}, %v{j}) : ({BYTES}, {BYTES}) -> i64")
        b(f"llvm.store %on{j}, %os{j}g : i64, !llvm.ptr")
    b("func.call @__agentc_frame_free(%frame, %first, %slots) : (!llvm.ptr, i64, i64) -> ()")
    b("return %zero : i64")
    b.lines.append("^fail(%err: i64):")
    b("func.call @__agentc_frame_free(%frame, %first, %slots) : (!llvm.ptr, i64, i64) -> ()")
    b("return %err : i64")
    entry = (f"func.func @{entry_point(pool)}(%in: !llvm.ptr, %in_bytes: !llvm.ptr, %out: !llvm.ptr, "
             f"%out_bytes: !llvm.ptr) -> i64 attributes {{agentc.entry}} {{\n" + "\n".join(b.lines) + "\n}")
    return steps + [entry]


def _step_fn(k: int, group: list[int], pool: str, frame: _Frame, results: dict, labels: dict,
             runtime_fns: set, strings: StringGlobals, sent: dict[int, int]) -> str:
    """Step `k`: the ops `group` of the schedule in order, over the frame; the first
    negative code, or the last op's."""
    head, b = _Lines(), _Lines()    # head: the entry block's allocas (static, not per call)
    head("%zero = arith.constant 0 : i64")
    for i, n in enumerate(group):
        if i:
            b.lines.append(f"^op{n}:")
        rc = _op_lines(head, b, n, frame.ops[n], pool, frame, results, labels, runtime_fns, strings, sent)
        if i + 1 < len(group):
            b(f"%bad{n} = arith.cmpi slt, {rc}, %zero : i64")
            b(f"cf.cond_br %bad{n}, ^fail({rc} : i64), ^op{group[i + 1]}")
        else:
            b(f"return {rc} : i64")
    if len(group) > 1:
        b.lines.append("^fail(%err: i64):")
        b("return %err : i64")
    return (f"func.func private @__agentc_step{k}(%frame: !llvm.ptr) -> i64 {_STEP_ATTRS} {{\n"
            + "\n".join(head.lines + b.lines) + "\n}")


def _op_lines(head, b, n: int, op, pool: str, frame: _Frame, results: dict, labels: dict,
              runtime_fns: set, strings: StringGlobals, sent: dict[int, int]) -> str:
    """Op `n` of the schedule over the frame (SSA names suffixed `n`); its return code's
    name: the bytes its result holds, or a negative code."""
    read: dict[int, str] = {}

    def val(v) -> str:
        s = frame.of(v)
        if s not in read:
            name = read[s] = f"%a{n}_{len(read)}"
            b(f"{name}s = arith.constant {s} : i64")
            b(f"{name} = func.call @__agentc_slot(%frame, {name}s) : (!llvm.ptr, i64) -> {BYTES}")
        return read[s]

    rc = f"%rc{n}"
    if op.results:
        size = (max(int(get(op, "bytes")), sent.get(int(get(op, "channel")), 0)) if op.name == "agent.recv"
                else results[get(op, "callee").lstrip("@")])
        b(f"%slot{n} = arith.constant {frame.first + n} : i64")
        b(f"%cap{n} = arith.constant {max(1, size)} : i64")
    if op.name == "agent.recv":
        peer = strings(str(get(op, "peer")))
        b(f"%buf{n} = func.call @__agentc_slot_new(%frame, %slot{n}, %cap{n}) : (!llvm.ptr, i64, i64) -> {BYTES}")
        b(f"%ch{n} = arith.constant {int(get(op, 'channel'))} : i64")
        b(f"%peer{n} = llvm.mlir.addressof @{peer} : !llvm.ptr")
        b(f"%bp{n} = func.call @__agentc_ptr(%buf{n}) : ({BYTES}) -> !llvm.ptr")
        b(f"{rc} = func.call @agentc_recv(%ch{n}, %peer{n}, %bp{n}, %cap{n}) : "
          "(i64, !llvm.ptr, !llvm.ptr, i64) -> i64")
    elif op.name == "agent.send":
        peer = strings(str(get(op, "peer")))
        v = val(op.operands[0])
        b(f"%ch{n} = arith.constant {int(get(op, 'channel'))} : i64")
        b(f"%peer{n} = llvm.mlir.addressof @{peer} : !llvm.ptr")
        b(f"%vp{n} = func.call @__agentc_ptr({v}) : ({BYTES}) -> !llvm.ptr")
        b(f"%vs{n} = func.call @__agentc_size({v}) : ({BYTES}) -> i64")
        b(f"{rc} = func.call @agentc_send(%ch{n}, %peer{n}, %vp{n}, %vs{n}) : "
          "(i64, !llvm.ptr, !llvm.ptr, i64) -> i64")
    elif op.name == "func.call":
        callee = get(op, "callee").lstrip("@")
        if callee in runtime_fns:
            # A runtime call's inputs: the runtime's arrays of pointers and sizes (`_abi_fn`).
            count = len(op.operands)
            head(f"%n_in{n} = arith.constant {max(1, count)} : i64")
            head(f"%ins{n} = llvm.alloca %n_in{n} x !llvm.ptr : (i64) -> !llvm.ptr")
            head(f"%sizes{n} = llvm.alloca %n_in{n} x i64 : (i64) -> !llvm.ptr")
            for j, v in enumerate(op.operands):
                value = val(v)
                b(f"%in{n}_{j} = arith.constant {j} : i64")
                b(f"func.call @__agentc_arg({value}, %ins{n}, %sizes{n}, %in{n}_{j}) : "
                  f"({BYTES}, !llvm.ptr, !llvm.ptr, i64) -> ()")
            args = [(f"%ins{n}", "!llvm.ptr"), (f"%sizes{n}", "!llvm.ptr")]
        else:
            args = [(val(v), BYTES) for v in op.operands]
        if op.results:
            b(f"%buf{n} = func.call @__agentc_slot_new(%frame, %slot{n}, %cap{n}) : "
              f"(!llvm.ptr, i64, i64) -> {BYTES}")
            args.append((f"%buf{n}", BYTES))
        b(f"%label{n} = llvm.mlir.addressof @{strings(labels.get(callee, callee))} : !llvm.ptr")
        b(f"%begin{n} = arith.constant 1 : i64")
        b(f"func.call @agentc_trace(%label{n}, %begin{n}) : (!llvm.ptr, i64) -> ()")
        b(f"{rc} = func.call @{callee}({', '.join(a for a, _ in args)}) : "
          f"({', '.join(t for _, t in args)}) -> i64")
        b(f"%end{n} = arith.constant 0 : i64")
        b(f"func.call @agentc_trace(%label{n}, %end{n}) : (!llvm.ptr, i64) -> ()")
    else:
        raise PartitionError(f"lower-host: unexpected '{op.name}' in the schedule of pool '{pool}'")
    if op.results:
        b(f"func.call @__agentc_slot_written(%frame, %slot{n}, {rc}) : (!llvm.ptr, i64, i64) -> ()")
    for j, s in enumerate(frame.frees.get(n, [])):
        b(f"%free{n}_{j} = arith.constant {s} : i64")
        b(f"func.call @__agentc_slot_free(%frame, %free{n}_{j}) : (!llvm.ptr, i64) -> ()")
    return rc


# --------------------------------------------------------------------------- control flow

_CONTROL = ("agent.loop", "agent.branch")


class _Tree:
    """The entry graph in program order (partition's order) with its loops and branches
    kept: `nodes` of ("op", op), ("loop", op, body, yields), ("branch", op, [(arm,
    yields), ...]); `inputs` the graph's input values in the schedule's argument order;
    `outputs` the values the graph returns; `steps` its granular ops in order."""

    def __init__(self, graph):
        self.inputs: list = []
        self.steps: list = []
        body = [o.operation for o in graph.regions[0].blocks[0].operations]
        self.nodes, self.outputs = self._visit(body)

    def _visit(self, ops):
        nodes, yields = [], []
        for op in ops:
            if op.name == "agent.input":
                self.inputs.append(op.results[0])
            elif op.name == "agent.loop":
                block = op.regions[0].blocks[0]
                inner, ys = self._visit([o.operation for o in block.operations])
                nodes.append(("loop", op, inner, ys))
            elif op.name == "agent.branch":
                arms = [self._visit([o.operation for o in r.blocks[0].operations]) for r in op.regions]
                nodes.append(("branch", op, arms))
            elif op.name in ("gpu.yield", "agent.yield", "scf.yield"):
                yields = list(op.operands)
            else:
                self.steps.append(op)
                nodes.append(("op", op))
        return nodes, yields


def control_tree(module, schedule):
    """The `_Tree` of a one-pool program with loops or branches whose granular ops are
    the schedule's calls one to one (None otherwise: the straight pass stands; a
    parallel region, or ops on several pools, whose schedules are not yet joined by
    shared decisions)."""
    from agentc.passes._plan_ctx import entry_graph

    graph = entry_graph(module)
    if graph is None:
        return None
    names = set()
    for region in graph.regions:
        for block in region.blocks:
            for op in block.operations:
                _names(op.operation, names)
    if not names & set(_CONTROL) or "agent.parallel" in names:
        return None
    tree = _Tree(graph)
    *calls, ret = [op.operation for op in schedule.regions[0].blocks[0].operations]
    if (len(calls) != len(tree.steps) or len(ret.operands) != len(tree.outputs)
            or any(c.name != "func.call" for c in calls)):
        return None
    return tree


def _names(op, into: set) -> None:
    into.add(op.name)
    for region in op.regions:
        for block in region.blocks:
            for inner in block.operations:
                _names(inner.operation, into)


def _run_cf_fn(pool: str, schedule, tree: _Tree, results: dict, labels: dict, runtime_fns: set,
               strings: StringGlobals) -> str:
    """The C entry point of a one-pool program with loops and branches: the graph's
    control flow over the schedule's calls. A loop asks `agentc_decide(region, 0, p,
    trip)` before each trip (at most `max_trips`; p the loop's continue probability); a
    branch asks `agentc_decide(region, 1, prob, 0)` for its arm. A value has one buffer
    (allocated on entry) and a slot with its length; a loop's carried values and a
    region's results have buffers of their own, written by copies: the initial values
    on entering a loop, the body's yields after each trip (so after the loop they hold
    the last trip's, or the initial values after none), an arm's yields after it."""
    from agentc.planner.scenarios import continue_prob

    b = _Lines()
    calls = [op.operation for op in schedule.regions[0].blocks[0].operations][:-1]
    call_of = {id(step): (n, c) for n, (step, c) in enumerate(zip(tree.steps, calls))}
    where: dict = {}        # graph value -> ("in", i) | ("op", n) | ("m", m)
    buffers: list[str] = []
    for i, v in enumerate(tree.inputs):
        b(f"%ip{i}g = llvm.getelementptr %in[{i}] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr")
        b(f"%ip{i} = llvm.load %ip{i}g : !llvm.ptr -> !llvm.ptr")
        b(f"%is{i}g = llvm.getelementptr %in_bytes[{i}] : (!llvm.ptr) -> !llvm.ptr, i64")
        b(f"%is{i} = llvm.load %is{i}g : !llvm.ptr -> i64")
        b(f"%input{i} = func.call @__agentc_bytes(%ip{i}, %is{i}) : (!llvm.ptr, i64) -> {BYTES}")
        where[v] = ("in", i)
    b("%zero = arith.constant 0 : i64")
    b("%one = arith.constant 1 : i64")
    for n, c in enumerate(calls):
        if c.results:
            size = results[get(c, "callee").lstrip("@")]
            b(f"%cap{n} = arith.constant {max(1, size)} : i64")
            b(f"%buf{n} = func.call @__agentc_buffer(%cap{n}) : (i64) -> {BYTES}")
            b(f"%sz{n} = llvm.alloca %one x i64 : (i64) -> !llvm.ptr")
            b(f"llvm.store %zero, %sz{n} : i64, !llvm.ptr")
            buffers.append(f"%buf{n}")
            for r in tree.steps[n].results:
                where[r] = ("op", n)
        if get(c, "callee").lstrip("@") in runtime_fns:
            # a runtime call's input arrays (`_abi_fn`)
            b(f"%n_in{n} = arith.constant {max(1, len(c.operands))} : i64")
            b(f"%ins{n} = llvm.alloca %n_in{n} x !llvm.ptr : (i64) -> !llvm.ptr")
            b(f"%sizes{n} = llvm.alloca %n_in{n} x i64 : (i64) -> !llvm.ptr")

    # merged values: a loop's carried values (and its results), a branch's results
    sources: dict[int, list] = {}

    def merges(nodes):
        for node in nodes:
            if node[0] == "loop":
                op, body, ys = node[1], node[2], node[3]
                block = op.regions[0].blocks[0]
                for arg, init, y, res in zip(block.arguments, op.operands, ys, op.results):
                    m = len(sources)
                    sources[m] = [init, y]
                    where[arg] = where[res] = ("m", m)
                merges(body)
            elif node[0] == "branch":
                op, arms = node[1], node[2]
                for arm, _ in arms:
                    merges(arm)
                for j, res in enumerate(op.results):
                    m = len(sources)
                    sources[m] = [ys[j] for _, ys in arms]
                    where[res] = ("m", m)

    merges(tree.nodes)
    # each merge's capacity: the largest of what can flow into it (static result bytes,
    # a graph input's bytes), found by iterating to a fixed point (loops carry cycles)
    atoms: dict[int, set] = {m: set() for m in sources}
    changed = True
    while changed:
        changed = False
        for m, srcs in sources.items():
            new = set(atoms[m])
            for v in srcs:
                kind, k = where[v]
                new |= ({("c", max(1, results[get(calls[k], "callee").lstrip("@")]))} if kind == "op"
                        else {("in", k)} if kind == "in" else atoms[k])
            if new != atoms[m]:
                atoms[m], changed = new, True
    for m in sources:
        static = max([c for t, c in atoms[m] if t == "c"], default=1)
        b(f"%mcap{m}_0 = arith.constant {static} : i64")
        last = f"%mcap{m}_0"
        for j, (_, i) in enumerate(sorted(a for a in atoms[m] if a[0] == "in")):
            b(f"%mcap{m}_{j + 1} = arith.maxui {last}, %is{i} : i64")
            last = f"%mcap{m}_{j + 1}"
        b(f"%mbuf{m} = func.call @__agentc_buffer({last}) : (i64) -> {BYTES}")
        b(f"%msz{m} = llvm.alloca %one x i64 : (i64) -> !llvm.ptr")
        b(f"llvm.store %zero, %msz{m} : i64, !llvm.ptr")
        buffers.append(f"%mbuf{m}")

    fresh = iter(range(1 << 30))

    def view(v) -> str:
        kind, k = where[v]
        if kind == "in":
            return f"%input{k}"
        t = next(fresh)
        buf, slot = (f"%buf{k}", f"%sz{k}") if kind == "op" else (f"%mbuf{k}", f"%msz{k}")
        b(f"%vn{t} = llvm.load {slot} : !llvm.ptr -> i64")
        b(f"%vv{t} = func.call @__agentc_view({buf}, %vn{t}) : ({BYTES}, i64) -> {BYTES}")
        return f"%vv{t}"

    def check(rc: str, tag: str) -> None:
        b(f"%bad{tag} = arith.cmpi slt, {rc}, %zero : i64")
        b(f"cf.cond_br %bad{tag}, ^fail({rc} : i64), ^ok{tag}")
        b.lines.append(f"^ok{tag}:")

    def put(m: int, v) -> None:
        """Copy value `v` into merge `m`'s buffer (unless it is that merge already)."""
        if where[v] == ("m", m):
            return
        src = view(v)
        t = next(fresh)
        b(f"%mc{t} = func.call @__agentc_copy(%mbuf{m}, {src}) : ({BYTES}, {BYTES}) -> i64")
        b(f"llvm.store %mc{t}, %msz{m} : i64, !llvm.ptr")

    def emit(nodes) -> None:
        for node in nodes:
            if node[0] == "op":
                n, c = call_of[id(node[1])]
                callee = get(c, "callee").lstrip("@")
                args = [(view(v), BYTES) for v in node[1].operands]
                if callee in runtime_fns:
                    for j, (value, _) in enumerate(args):
                        b(f"%in{n}_{j} = arith.constant {j} : i64")
                        b(f"func.call @__agentc_arg({value}, %ins{n}, %sizes{n}, %in{n}_{j}) : "
                          f"({BYTES}, !llvm.ptr, !llvm.ptr, i64) -> ()")
                    args = [(f"%ins{n}", "!llvm.ptr"), (f"%sizes{n}", "!llvm.ptr")]
                args += [(f"%buf{n}", BYTES)] if c.results else []
                b(f"%tl{n} = llvm.mlir.addressof @{strings(labels.get(callee, callee))} : !llvm.ptr")
                b(f"%tb{n} = arith.constant 1 : i64")
                b(f"func.call @agentc_trace(%tl{n}, %tb{n}) : (!llvm.ptr, i64) -> ()")
                b(f"%rc{n} = func.call @{callee}({', '.join(a for a, _ in args)}) : "
                  f"({', '.join(t for _, t in args)}) -> i64")
                b(f"%te{n} = arith.constant 0 : i64")
                b(f"func.call @agentc_trace(%tl{n}, %te{n}) : (!llvm.ptr, i64) -> ()")
                check(f"%rc{n}", f"op{n}")
                if c.results:
                    b(f"llvm.store %rc{n}, %sz{n} : i64, !llvm.ptr")
            elif node[0] == "loop":
                op, body, ys = node[1], node[2], node[3]
                k = next(fresh)
                block = op.regions[0].blocks[0]
                carried = [where[a][1] for a in block.arguments]
                for m, init in zip(carried, op.operands):
                    put(m, init)
                n_max = int(get(op, "max_trips", 1) or 1)
                p = continue_prob(n_max, float(get(op, "expected_trips", n_max)))
                region = strings(str(get(op, "label") or f"loop{k}"))
                b(f"%lz{k} = arith.constant 0 : i64")
                b(f"cf.br ^head{k}(%lz{k} : i64)")
                b.lines.append(f"^head{k}(%trip{k}: i64):")
                b(f"%lmax{k} = arith.constant {n_max} : i64")
                b(f"%lmore{k} = arith.cmpi slt, %trip{k}, %lmax{k} : i64")
                b(f"cf.cond_br %lmore{k}, ^ask{k}, ^exit{k}")
                b.lines.append(f"^ask{k}:")
                b(f"%lr{k} = llvm.mlir.addressof @{region} : !llvm.ptr")
                b(f"%lk{k} = arith.constant 0 : i64")
                b(f"%lp{k} = arith.constant {float(p):.17e} : f64")
                b(f"%ld{k} = func.call @{DECIDE}(%lr{k}, %lk{k}, %lp{k}, %trip{k}) : {DECIDE_TYPE}")
                check(f"%ld{k}", f"l{k}")
                b(f"%lgo{k} = arith.cmpi ne, %ld{k}, %zero : i64")
                b(f"cf.cond_br %lgo{k}, ^body{k}, ^exit{k}")
                b.lines.append(f"^body{k}:")
                emit(body)
                for m, y in zip(carried, ys):
                    put(m, y)
                b(f"%next{k} = arith.addi %trip{k}, %one : i64")
                b(f"cf.br ^head{k}(%next{k} : i64)")
                b.lines.append(f"^exit{k}:")
            else:
                op, arms = node[1], node[2]
                k = next(fresh)
                region = strings(str(get(op, "label") or f"branch{k}"))
                b(f"%br{k} = llvm.mlir.addressof @{region} : !llvm.ptr")
                b(f"%bk{k} = arith.constant 1 : i64")
                b(f"%bp{k} = arith.constant {float(get(op, 'prob', 1.0)):.17e} : f64")
                b(f"%bd{k} = func.call @{DECIDE}(%br{k}, %bk{k}, %bp{k}, %zero) : {DECIDE_TYPE}")
                check(f"%bd{k}", f"b{k}")
                for j in range(len(arms) - 1):
                    b(f"%bj{k}_{j} = arith.constant {j} : i64")
                    b(f"%bis{k}_{j} = arith.cmpi eq, %bd{k}, %bj{k}_{j} : i64")
                    b(f"cf.cond_br %bis{k}_{j}, ^arm{k}_{j}, ^not{k}_{j}")
                    b.lines.append(f"^not{k}_{j}:")
                b(f"cf.br ^arm{k}_{len(arms) - 1}")
                merged = [where[r][1] for r in op.results]
                for j, (arm, ys) in enumerate(arms):
                    b.lines.append(f"^arm{k}_{j}:")
                    emit(arm)
                    for m, y in zip(merged, ys):
                        put(m, y)
                    b(f"cf.br ^join{k}")
                b.lines.append(f"^join{k}:")

    b("cf.br ^start")
    b.lines.append("^start:")
    emit(tree.nodes)
    for j, v in enumerate(tree.outputs):
        src = view(v)
        b(f"%op{j}g = llvm.getelementptr %out[{j}] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr")
        b(f"%op{j} = llvm.load %op{j}g : !llvm.ptr -> !llvm.ptr")
        b(f"%os{j}g = llvm.getelementptr %out_bytes[{j}] : (!llvm.ptr) -> !llvm.ptr, i64")
        b(f"%os{j} = llvm.load %os{j}g : !llvm.ptr -> i64")
        b(f"%ob{j} = func.call @__agentc_bytes(%op{j}, %os{j}) : (!llvm.ptr, i64) -> {BYTES}")
        b(f"%on{j} = func.call @__agentc_copy(%ob{j}, {src}) : ({BYTES}, {BYTES}) -> i64")
        b(f"llvm.store %on{j}, %os{j}g : i64, !llvm.ptr")
    for buf in buffers:
        b(f"func.call @__agentc_release({buf}) : ({BYTES}) -> ()")
    b("return %zero : i64")
    out = b.lines
    out.append("^fail(%err: i64):")
    for buf in buffers:
        out.append(f"  func.call @__agentc_release({buf}) : ({BYTES}) -> ()")
    out.append("  return %err : i64")
    return (f"func.func @{entry_point(pool)}(%in: !llvm.ptr, %in_bytes: !llvm.ptr, %out: !llvm.ptr, "
            f"%out_bytes: !llvm.ptr) -> i64 attributes {{agentc.entry}} {{\n" + "\n".join(out) + "\n}")


def _llm(fn, op: str) -> bool:
    """An llm op function lower-kernels sized for its call (`agentc.context`)."""
    return get(fn, "agentc.op") == op and "agentc.context" in fn.attributes


def _schedule_of(sub):
    return next((op.operation for op in sub.regions[0].blocks[0].operations
                 if op.operation.name == "func.func" and "agentc.schedule" in op.operation.attributes), None)


def sent_bytes(subs) -> dict[int, int]:
    """channel -> the bytes of the buffer its send reads: the sending op function's
    `agentc.result_bytes` (what lower-kernels lays out, e.g. an llm call's whole KV
    value), not the send's `bytes` (the planner's payload estimate, which for a KV
    value counts only the prompt's rows and would cut the cache short)."""
    out: dict[int, int] = {}
    for sub in subs:
        body = sub.regions[0].blocks[0]
        sizes = {get(op.operation, "sym_name"): int(get(op.operation, "agentc.result_bytes", 0) or 0)
                 for op in body.operations if op.operation.name == "func.func"}
        schedule = _schedule_of(sub)
        for op in schedule.regions[0].blocks[0].operations if schedule is not None else []:
            op = op.operation
            owner = op.operands[0].owner if op.name == "agent.send" else None
            if getattr(owner, "name", "") == "func.call":
                out[int(get(op, "channel"))] = sizes.get(get(owner, "callee").lstrip("@"), 0)
    return out


def host_text(sub, sent: dict[int, int] | None = None, module=None) -> str:
    """The host module of one lowered pool module (`lower-kernels` output); `sent`:
    `sent_bytes` of every pool of the program (a recv's buffer holds its peer's);
    `module`: the whole program, whose loops and branches a one-pool program runs
    (`control_tree`)."""
    pool = get(sub, "sym_name")
    body = sub.regions[0].blocks[0]
    kernel_types, op_fns, schedule, abis = {}, [], None, set()
    for op in body.operations:
        op = op.operation
        if op.name != "func.func":
            continue
        ftype = ir.FunctionType(ir.TypeAttr(op.attributes["function_type"]).value)
        if "llvm.emit_c_interface" in op.attributes:
            kernel_types[get(op, "sym_name")] = (list(ftype.inputs), list(ftype.results))
        elif "agentc.schedule" in op.attributes:
            schedule = op
        elif "agentc.op" in op.attributes:
            op_fns.append(op)
            if "agentc.abi" in op.attributes:
                abis.add(get(op, "agentc.abi"))
    if schedule is None:
        raise PartitionError(f"lower-host: pool '{pool}' has no schedule (run partition and lower-kernels)")
    strings = StringGlobals()
    results = {get(fn, "sym_name"): int(get(fn, "agentc.result_bytes", 0) or 0) for fn in op_fns}
    fns = [(_abi_fn(fn, strings) if "agentc.abi" in fn.attributes
            else _bucketed_fn(fn, kernel_types, strings) if "agentc.buckets" in fn.attributes
            else _retrieve_fn(fn, kernel_types, strings) if get(fn, "agentc.op") == "retrieve.search"
            else _prefill_fn(fn, kernel_types, strings) if _llm(fn, "llm.prefill")
            else _decode_fn(fn, kernel_types, strings) if _llm(fn, "llm.decode")
            else _pass_fn(fn) if _llm(fn, "llm.sample")
            else _compute_fn(fn, kernel_types, strings)) for fn in op_fns]
    if any(get(fn, "agentc.op") == "embed.encode" and "agentc.buckets" in fn.attributes for fn in op_fns):
        abis.add(EMBED_ROWS)
    labels = {get(fn, "sym_name"): str(get(fn, "agentc.label", get(fn, "sym_name"))) for fn in op_fns}
    runtime_fns = {get(fn, "sym_name") for fn in op_fns if "agentc.abi" in fn.attributes}
    tree = control_tree(module, schedule) if module is not None else None
    run = ([_run_cf_fn(pool, schedule, tree, results, labels, runtime_fns, strings)] if tree is not None
           else _run_fns(pool, schedule, results, labels, runtime_fns, strings, sent or {}))
    if tree is not None:
        abis.add(DECIDE)
    kernels = []
    for sym in sorted(kernel_types):
        ins, outs = kernel_types[sym]
        kernels.append(f"func.func private @{sym}({', '.join(_memref(str(t)) for t in ins + outs)})")
    parts = (strings.decls() + RUNTIME_DECLS + [f"func.func private @{a}{DECIDE_TYPE if a == DECIDE else ABI_TYPE}"
                                                for a in sorted(abis)]
             + kernels + [HELPERS] + fns + run)
    block = schedule.regions[0].blocks[0]
    ret = [o.operation for o in block.operations][-1]
    kinds = [dialects.type_kind(a.type) for a in block.arguments]
    out_kinds = [dialects.type_kind(v.type) for v in ret.operands]
    attrs = (f"agentc.host, agentc.entry_point = {str_attr(entry_point(pool))}, "
             f"agentc.inputs = [{', '.join(str_attr(k) for k in kinds)}], "
             f"agentc.outputs = [{', '.join(str_attr(k) for k in out_kinds)}]")
    return (f"module @host attributes {{{attrs}}} {{\n"
            + "\n".join(parts) + "\n}")


def lower_pool(sub, sent: dict[int, int] | None = None, module=None) -> None:
    """Replace the op functions, schedule and their declarations with `module @host`."""
    # Parsed as a detached operation, straight into the pool module (a parsed Module
    # printed and parsed again cost as much as building its text).
    host = ir.Operation.parse(host_text(sub, sent, module))
    body = sub.regions[0].blocks[0]
    for op in list(body.operations):
        op = op.operation
        if op.name == "func.func" and "llvm.emit_c_interface" in op.attributes:
            continue
        op.erase()
    body.append(host)


def run(module, ctx) -> None:
    module_op = module.operation if hasattr(module, "operation") else module
    subs = [op for op in top_ops(module_op) if op.name == "builtin.module"]
    if not subs and placed_nothing(module_op):
        return
    if not subs or not all("agentc.kernels" in s.attributes for s in subs):
        raise PartitionError("lower-host needs the kernels stage (run partition and lower-kernels first)")
    sent = sent_bytes([s for s in subs if "agentc.host" not in s.attributes])
    one_pool = module_op if len(subs) == 1 else None   # loops and branches: see control_tree
    for sub in subs:
        if "agentc.host" in sub.attributes or get(sub, "agentc.target", "none") == "none":
            continue
        lower_pool(sub, sent, one_pool)
        sub.attributes["agentc.host"] = ir.UnitAttr.get()
