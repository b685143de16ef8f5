"""`math.exp` on f32 as arithmetic the vectoriser can widen: the CPU target's exp.

Left as `math.exp`, every element became a call to libm's `expf` (LLVM has no vector
exp without a vector math library), with the loop's live vectors spilled around each
call: the softmax and GELU of a MiniLM layer spent a fifth of the layer there. Here
exp(x) = 2^n * p(r), with n = round(x / ln 2), r = x - n ln 2 (ln 2 split in a high
part exact in a few bits and a low part, Cody-Waite) in [-ln2/2, ln2/2], p a degree-6
polynomial, and 2^n built in the exponent bits. Only add, mul, compare, select,
int/float conversions, shifts and a bitcast: every x86-64 has them as vector
instructions (rounding by float->int conversion, not `floor`, which baseline x86-64
would turn back into a libm call).

Accuracy: relative error below 1.2e-7 (2 ulp) over [-87.3, 88.3]. Below -87.33 (where
exp leaves the normal floats) the result is 0, above ln(FLT_MAX) = 88.72 it is +inf,
and between 88.37 and 88.72 it saturates at 2.4e38.

The coefficients are a least-squares fit of exp(r) in relative error at 4000 Chebyshev
nodes of [-ln2/2, ln2/2] (numpy, rounded to f32; max error of the fit 1.9e-9).
"""

from __future__ import annotations

_COEFFS = (1.0, 1.0, 0.49999991059303284, 0.1666642129421234, 0.0416683591902256,
           0.008374771103262901, 0.0013829420786350965)
_LOG2_E = 1.4426950408889634
_LN2_HI = 0.693359375                # 0x3F318000: n * _LN2_HI is exact for |n| < 2^11
_LN2_LO = -0.00021219444170128554    # ln 2 - _LN2_HI
_LOWEST = -87.33                     # below: 0 (exp(_LOWEST) ~ 1.2e-38, the least normal)
_CLAMP_HIGH = 88.37                  # n stays <= 127: 2^n is a normal float
_OVERFLOW = 88.72283935546875        # ln(FLT_MAX): above, +inf


def expand_exp(text: str) -> str:
    """Replace every f32 `math.exp` (scalar or vector) in `text` by the expansion above."""
    from mlir import ir
    from mlir.dialects import arith

    with ir.Context(), ir.Location.unknown():
        module = ir.Module.parse(text)
        f32, i32 = ir.F32Type.get(), ir.IntegerType.get_signless(32)
        found: list[ir.Operation] = []

        def collect(op: ir.Operation) -> ir.WalkResult:
            if op.name == "math.exp" and _element(op.results[0].type) == f32:
                found.append(op)
            return ir.WalkResult.ADVANCE
        module.operation.walk(collect)
        # contract: each mul-add may become one FMA where the CPU has it
        fast = ir.Attribute.parse("#arith.fastmath<contract>")

        for op in found:
            x = op.operands[0]
            ftype = x.type.maybe_downcast()
            vector = isinstance(ftype, ir.VectorType)
            itype = ir.VectorType.get(ftype.shape, i32) if vector else i32

            def const(value, ty=ftype):
                elem = _element(ty)
                attr = (ir.FloatAttr.get(elem, value) if elem == f32 else ir.IntegerAttr.get(elem, value))
                if vector:
                    attr = ir.DenseElementsAttr.get_splat(ty, attr)
                return arith.constant(ty, attr)

            def mul(a, b): return arith.mulf(a, b, fastmath=fast)
            def add(a, b): return arith.addf(a, b, fastmath=fast)

            with ir.InsertionPoint(op):
                clamped = arith.minimumf(arith.maximumf(x, const(_LOWEST)), const(_CLAMP_HIGH))
                t = mul(clamped, const(_LOG2_E))
                half = arith.select(arith.cmpf(arith.CmpFPredicate.OGE, t, const(0.0)),
                                    const(0.5), const(-0.5))
                n = arith.fptosi(itype, add(t, half))      # round half away from zero
                nf = arith.sitofp(ftype, n)
                r = add(add(clamped, mul(nf, const(-_LN2_HI))), mul(nf, const(-_LN2_LO)))
                poly = const(_COEFFS[-1])
                for coeff in reversed(_COEFFS[:-1]):
                    poly = add(mul(poly, r), const(coeff))
                scale = arith.bitcast(ftype, arith.shli(arith.addi(n, const(127, itype)), const(23, itype)))
                value = mul(poly, scale)
                value = arith.select(arith.cmpf(arith.CmpFPredicate.OLT, x, const(_LOWEST)),
                                     const(0.0), value)
                value = arith.select(arith.cmpf(arith.CmpFPredicate.OGT, x, const(_OVERFLOW)),
                                     const(float("inf")), value)
            op.results[0].replace_all_uses_with(value)
            op.erase()
        return str(module)


def _element(ty):
    from mlir import ir

    ty = ty.maybe_downcast()
    return ty.element_type if isinstance(ty, ir.ShapedType) else ty
