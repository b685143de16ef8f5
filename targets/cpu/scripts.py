"""The CPU target's transform-dialect scripts, assembled from the fragment files shipped
beside this module: `matmul.mlir` (the matmul schedules) and `batch.mlir` (batched
contractions to matmuls). Each file documents its format, its fragments and their
parameters; here each schedule picks its fragments and fills them in.

`with_transform_script` puts a script into the payload module for
`transform-interpreter`; `strip_transform_script` takes it out again afterwards.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import string

from .schedule import batch_key, vector_key

SCRIPT_FILES = ("matmul.mlir", "batch.mlir", "elementwise.mlir")
_FRAGMENT = re.compile(r"// @fragment (\w+)")
TRANSFORM_ATTR = "transform.with_named_sequence"


@functools.cache
def fragments(file: str) -> dict[str, string.Template]:
    """The fragments of one script file by name (comment lines and the blank lines
    around each fragment dropped)."""
    text = importlib.resources.files(__package__).joinpath(file).read_text(encoding="utf-8")
    found: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        marker = _FRAGMENT.fullmatch(line)
        if marker:
            current = found.setdefault(marker.group(1), [])
        elif current is not None and not line.lstrip().startswith("//"):
            current.append(line)
    return {name: string.Template("\n" + "\n".join(lines).strip("\n") + "\n")
            for name, lines in found.items()}


def _fill(file: str, name: str, **params) -> str:
    return fragments(file)[name].substitute(params)


def transform_script(schedules) -> str:
    """The transform-dialect schedule for the given matmul schedules (any order)."""
    def frag(name: str, **params) -> str:
        return _fill("matmul.mlir", name, **params)

    blocks = []
    for i, sched in enumerate(sorted(set(schedules), key=lambda sched: sched.key)):
        blocks.append(frag("match", id=i, key=sched.key,
                           op="linalg.generic" if sched.prepacked else "linalg.matmul"))
        cur = "one"
        m, n, k = sched.tile
        if sched.prepacked:
            cur, cur_type = "one", "!transform.any_op"
            if sched.split:
                counts = [sched.threads, 0, 0, 0] if sched.split == "m" else [0, sched.threads, 0, 0]
                blocks.append(frag("prepacked_forall", id=i, counts=counts))
                cur = "ppar"
            blocks.append(frag("panels", id=i, cur=cur, cur_type=cur_type, m=m, k=k, k_block=sched.k_block))
        elif sched.pack_b:
            blocks.append(frag("pack_b", id=i, cur=cur, n=n))
            packed, bpanels = ("gen", "bpack") if sched.b_transposed else ("packed", "bpanels")
            if not sched.b_transposed:
                blocks.append(frag("panel_major", id=i))
            blocks.append(frag("lower_pack_b", id=i, bpanels=bpanels))
            cur, cur_type = packed, '!transform.op<"linalg.generic">'
            if sched.split:
                # The packed op's loops: (m, panel, k, j).
                counts = [sched.threads, 0, 0, 0] if sched.split == "m" else [0, sched.threads, 0, 0]
                blocks.append(frag("pack_b_forall", id=i, counts=counts, packed=packed))
                cur, cur_type = "ppar", "!transform.any_op"
                copy, copy_type = "bpart", "!transform.any_op"
            else:
                copy, copy_type = "btranspose", '!transform.op<"linalg.transpose">'
            # a block of panel rows that divides K (a K block divides K)
            rows = next(r for r in (8, 4, 2, 1) if sched.k_block % r == 0)
            blocks.append(frag("vectorize_pack_b", id=i, transpose=copy, transpose_type=copy_type, rows=rows))
            blocks.append(frag("panels", id=i, cur=cur, cur_type=cur_type, m=m, k=k, k_block=sched.k_block))
        else:
            if sched.split:
                counts = [sched.threads, 0] if sched.split == "m" else [0, sched.threads]
                blocks.append(frag("forall", id=i, cur=cur, threads=counts))
                cur = "par"
            if sched.k_block:
                blocks.append(frag("k_block", id=i, cur=cur, k_block=sched.k_block))
                cur = "kb"
            blocks.append(frag("register", id=i, cur=cur, m=m, n=n, k=k))
        blocks.append(frag("mark", id=i))
        blocks += [frag("peel", id=i, dim=dim) for dim in "nm" if dim in sched.peel]
        blocks.append(frag("end_match"))
    return frag("head") + "".join(blocks) + frag("vectorize") + frag("tail")


def batch_script(batches) -> str:
    """The transform script turning tagged batched contractions into matmuls."""
    def frag(name: str, **params) -> str:
        return _fill("batch.mlir", name, **params)

    blocks = []
    for i, (sizes, forall) in enumerate(sorted(set(batches))):
        key = batch_key(sizes, forall)
        if forall:
            blocks.append(frag("batch_forall", id=i, key=key, sizes=list(sizes)))
        else:
            loops = sum(1 for size in sizes if size)
            blocks.append(frag("batch_for", id=i, key=key, sizes=list(sizes),
                               more_loops="".join(f", %bl{j}_{i}" for j in range(1, loops)),
                               types=", ".join(["!transform.any_op"] * (loops + 1))))
        blocks.append(frag("specialize", id=i))
    return frag("head") + "".join(blocks) + frag("end")


def elementwise_script(tilings) -> str:
    """The transform script vectorising tagged elementwise ops and row reductions."""
    def frag(name: str, **params) -> str:
        return _fill("elementwise.mlir", name, **params)

    blocks = []
    for i, sizes in enumerate(sorted(set(tilings))):
        loops = sum(1 for size in sizes if size)
        blocks.append(frag("vector", id=i, key=vector_key(sizes), sizes=list(sizes),
                           loops="".join(f", %ewl{j}_{i}" for j in range(loops)),
                           types=", ".join(["!transform.any_op"] * (loops + 1))))
    return frag("head") + "".join(blocks) + frag("end")


def with_transform_script(text: str, script: str) -> str:
    """Append the named sequences of `script` (a module holding `@__transform_main`) to
    the payload module, so `transform-interpreter` can run over the result."""
    from mlir import ir

    with ir.Context():
        payload = ir.Module.parse(text)
        library = ir.Module.parse(script)
        for op in list(library.body.operations):
            op.detach_from_parent()
            payload.body.append(op)
        payload.operation.attributes[TRANSFORM_ATTR] = ir.UnitAttr.get()
        return str(payload)


def strip_transform_script(text: str) -> str:
    """Remove transform named sequences and the module marker once they have run.

    Later passes (async outlining, LLVM translation) reject the leftovers.
    """
    from mlir import ir

    with ir.Context():
        module = ir.Module.parse(text)
        for op in list(module.body.operations):
            if op.operation.name == "transform.named_sequence":
                op.operation.erase()
        if TRANSFORM_ATTR in module.operation.attributes:
            del module.operation.attributes[TRANSFORM_ATTR]
        return str(module)
