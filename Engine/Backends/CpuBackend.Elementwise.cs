using System.Numerics;
using AttnCore.Kernels.Cpu;

namespace AttnCore.Backends;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void Unary(UnaryOp op, double scalar, Storage src, Layout srcLayout, Storage dst)
    {
        switch (src.DType)
        {
            case DType.Float32: UnaryFloat(op, (float)scalar, Data<float>(src), srcLayout, Data<float>(dst)); break;
            case DType.Float64: UnaryFloat(op, scalar, Data<double>(src), srcLayout, Data<double>(dst)); break;
            case DType.Int64: UnaryInt(op, (long)scalar, Data<long>(src), srcLayout, Data<long>(dst)); break;
        }
    }

    private static void UnaryFloat<T>(UnaryOp op, T s, T[] x, Layout l, T[] d) where T : unmanaged, IFloatingPointIeee754<T>
    {
        switch (op)
        {
            case UnaryOp.Neg: Map<T, NegOp<T>>(x, l, d, s); break;
            case UnaryOp.Abs: Map<T, AbsOp<T>>(x, l, d, s); break;
            case UnaryOp.Exp: Map<T, ExpOp<T>>(x, l, d, s); break;
            case UnaryOp.Log: Map<T, LogOp<T>>(x, l, d, s); break;
            case UnaryOp.Sqrt: Map<T, SqrtOp<T>>(x, l, d, s); break;
            case UnaryOp.Rsqrt: Map<T, RsqrtOp<T>>(x, l, d, s); break;
            case UnaryOp.Tanh: Map<T, TanhOp<T>>(x, l, d, s); break;
            case UnaryOp.Sigmoid: Map<T, SigmoidOp<T>>(x, l, d, s); break;
            case UnaryOp.Relu: Map<T, ReluOp<T>>(x, l, d, s); break;
            case UnaryOp.Gelu: Map<T, GeluOp<T>>(x, l, d, s); break;
            case UnaryOp.GeluTanh: Map<T, GeluTanhOp<T>>(x, l, d, s); break;
            case UnaryOp.Silu: Map<T, SiluOp<T>>(x, l, d, s); break;
            case UnaryOp.Sin: Map<T, SinOp<T>>(x, l, d, s); break;
            case UnaryOp.Cos: Map<T, CosOp<T>>(x, l, d, s); break;
            case UnaryOp.Square: Map<T, SquareOp<T>>(x, l, d, s); break;
            case UnaryOp.Reciprocal: Map<T, ReciprocalOp<T>>(x, l, d, s); break;
            case UnaryOp.Sign: Map<T, SignOp<T>>(x, l, d, s); break;
            case UnaryOp.AddScalar: Map<T, AddScalarOp<T>>(x, l, d, s); break;
            case UnaryOp.MulScalar: Map<T, MulScalarOp<T>>(x, l, d, s); break;
            case UnaryOp.PowScalar: Map<T, PowScalarOp<T>>(x, l, d, s); break;
            case UnaryOp.RSubScalar: Map<T, RSubScalarOp<T>>(x, l, d, s); break;
            case UnaryOp.RDivScalar: Map<T, RDivScalarOp<T>>(x, l, d, s); break;
            case UnaryOp.ClampMin: Map<T, ClampMinOp<T>>(x, l, d, s); break;
            case UnaryOp.ClampMax: Map<T, ClampMaxOp<T>>(x, l, d, s); break;
            case UnaryOp.GeluGrad: Map<T, GeluGradOp<T>>(x, l, d, s); break;
            case UnaryOp.GeluTanhGrad: Map<T, GeluTanhGradOp<T>>(x, l, d, s); break;
            default: throw new NotSupportedException($"CpuBackend.Unary: {op} is not implemented");
        }
    }

    private static void UnaryInt(UnaryOp op, long s, long[] x, Layout l, long[] d)
    {
        switch (op)
        {
            case UnaryOp.Neg: Map<long, NegOp<long>>(x, l, d, s); break;
            case UnaryOp.Abs: Map<long, AbsOp<long>>(x, l, d, s); break;
            case UnaryOp.Sign: Map<long, SignOp<long>>(x, l, d, s); break;
            case UnaryOp.Square: Map<long, SquareOp<long>>(x, l, d, s); break;
            case UnaryOp.AddScalar: Map<long, AddScalarOp<long>>(x, l, d, s); break;
            case UnaryOp.MulScalar: Map<long, MulScalarOp<long>>(x, l, d, s); break;
            case UnaryOp.RSubScalar: Map<long, RSubScalarOp<long>>(x, l, d, s); break;
            case UnaryOp.ClampMin: Map<long, ClampMinOp<long>>(x, l, d, s); break;
            case UnaryOp.ClampMax: Map<long, ClampMaxOp<long>>(x, l, d, s); break;
            default: throw new NotSupportedException($"{op}: not defined for int64 tensors; convert with To(DType.Float32) first");
        }
    }

    /// <summary>d (contiguous) = TOp(x (strided), s).</summary>
    private static void Map<T, TOp>(T[] x, Layout l, T[] d, T s) where T : unmanaged where TOp : IUnaryOperator<T>
    {
        var loop = new StridedLoop(l.Shape, l.Strides, l.Offset, Shape.ContiguousStrides(l.Shape), 0);
        int n = loop.RunLength;
        long xi = loop.Inner0;
        while (loop.Next(out long xo, out long dofs, out _))
        {
            var dst = d.AsSpan((int)dofs, n);
            if (xi == 1) TOp.Run(x.AsSpan((int)xo, n), s, dst);
            else for (int i = 0; i < n; i++) dst[i] = TOp.Apply(x[xo + i * xi], s);
        }
    }

    /// <inheritdoc/>
    public void Binary(BinaryOp op, Storage a, Layout aLayout, Storage b, Layout bLayout, Storage dst)
    {
        switch (a.DType)
        {
            case DType.Float32: BinaryFloat(op, Data<float>(a), aLayout, Data<float>(b), bLayout, Data<float>(dst)); break;
            case DType.Float64: BinaryFloat(op, Data<double>(a), aLayout, Data<double>(b), bLayout, Data<double>(dst)); break;
            case DType.Int64:
                if (op == BinaryOp.Pow) throw new NotSupportedException("Pow: not defined for int64 tensors; convert with To(DType.Float32) first");
                BinaryNumber(op, Data<long>(a), aLayout, Data<long>(b), bLayout, Data<long>(dst));
                break;
        }
    }

    private static void BinaryFloat<T>(BinaryOp op, T[] a, Layout la, T[] b, Layout lb, T[] d) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (op == BinaryOp.Pow) Zip<T, PowOp<T>>(a, la, b, lb, d);
        else BinaryNumber(op, a, la, b, lb, d);
    }

    private static void BinaryNumber<T>(BinaryOp op, T[] a, Layout la, T[] b, Layout lb, T[] d) where T : unmanaged, INumber<T>
    {
        switch (op)
        {
            case BinaryOp.Add: Zip<T, AddOp<T>>(a, la, b, lb, d); break;
            case BinaryOp.Sub: Zip<T, SubOp<T>>(a, la, b, lb, d); break;
            case BinaryOp.Mul: Zip<T, MulOp<T>>(a, la, b, lb, d); break;
            case BinaryOp.Div:
                if (typeof(T) == typeof(long)) CheckNoZeroDivisor((long[])(object)b, lb);
                Zip<T, DivOp<T>>(a, la, b, lb, d);
                break;
            case BinaryOp.Maximum: Zip<T, MaximumOp<T>>(a, la, b, lb, d); break;
            case BinaryOp.Minimum: Zip<T, MinimumOp<T>>(a, la, b, lb, d); break;
            case BinaryOp.Eq: Zip<T, CompareOp<T, EqRel<T>>>(a, la, b, lb, d); break;
            case BinaryOp.Ne: Zip<T, CompareOp<T, NeRel<T>>>(a, la, b, lb, d); break;
            case BinaryOp.Lt: Zip<T, CompareOp<T, LtRel<T>>>(a, la, b, lb, d); break;
            case BinaryOp.Le: Zip<T, CompareOp<T, LeRel<T>>>(a, la, b, lb, d); break;
            case BinaryOp.Gt: Zip<T, CompareOp<T, GtRel<T>>>(a, la, b, lb, d); break;
            case BinaryOp.Ge: Zip<T, CompareOp<T, GeRel<T>>>(a, la, b, lb, d); break;
            default: throw new NotSupportedException($"CpuBackend.Binary: {op} is not implemented");
        }
    }

    private static void CheckNoZeroDivisor(long[] b, Layout lb)
    {
        var loop = new StridedLoop(lb.Shape, lb.Strides, lb.Offset);
        int n = loop.RunLength; long bi = loop.Inner0;
        while (loop.Next(out long o, out _, out _))
            for (int i = 0; i < n; i++)
                if (b[o + i * bi] == 0) throw new DivideByZeroException("Div: integer division by zero in an int64 tensor");
    }

    /// <summary>d (contiguous) = TOp(a, b) with a and b strided/broadcast to d's shape.</summary>
    private static void Zip<T, TOp>(T[] a, Layout la, T[] b, Layout lb, T[] d) where T : unmanaged where TOp : IBinaryOperator<T>
    {
        var loop = new StridedLoop(la.Shape, la.Strides, la.Offset, lb.Strides, lb.Offset, Shape.ContiguousStrides(la.Shape), 0);
        int n = loop.RunLength;
        long ai = loop.Inner0, bi = loop.Inner1;
        while (loop.Next(out long ao, out long bo, out long dofs))
        {
            var dst = d.AsSpan((int)dofs, n);
            if (ai == 1 && bi == 1) TOp.Run(a.AsSpan((int)ao, n), b.AsSpan((int)bo, n), dst);
            else if (ai == 1 && bi == 0) TOp.RunScalarRight(a.AsSpan((int)ao, n), b[bo], dst);
            else if (ai == 0 && bi == 1) TOp.RunScalarLeft(a[ao], b.AsSpan((int)bo, n), dst);
            else for (int i = 0; i < n; i++) dst[i] = TOp.Apply(a[ao + i * ai], b[bo + i * bi]);
        }
    }

    /// <inheritdoc/>
    public void Where(Storage cond, Layout condLayout, Storage a, Layout aLayout, Storage b, Layout bLayout, Storage dst)
    {
        switch (a.DType)
        {
            case DType.Float32: WhereT(cond, condLayout, Data<float>(a), aLayout, Data<float>(b), bLayout, Data<float>(dst)); break;
            case DType.Float64: WhereT(cond, condLayout, Data<double>(a), aLayout, Data<double>(b), bLayout, Data<double>(dst)); break;
            case DType.Int64: WhereT(cond, condLayout, Data<long>(a), aLayout, Data<long>(b), bLayout, Data<long>(dst)); break;
        }
    }

    private static void WhereT<T>(Storage cond, Layout lc, T[] a, Layout la, T[] b, Layout lb, T[] d) where T : unmanaged
    {
        // d = b first, then overwrite where the condition is non-zero: three operands per pass, no scratch mask.
        var dl = Layout.Contiguous(la.Shape);
        CopyT(b, lb, d, dl);
        switch (cond.DType)
        {
            case DType.Float32: Select(Data<float>(cond), lc, a, la, d, dl); break;
            case DType.Float64: Select(Data<double>(cond), lc, a, la, d, dl); break;
            case DType.Int64: Select(Data<long>(cond), lc, a, la, d, dl); break;
        }
    }

    private static void Select<TC, T>(TC[] c, Layout lc, T[] a, Layout la, T[] d, Layout dl) where TC : unmanaged, INumber<TC> where T : unmanaged
    {
        var loop = new StridedLoop(la.Shape, lc.Strides, lc.Offset, la.Strides, la.Offset, dl.Strides, 0);
        int n = loop.RunLength;
        long ci = loop.Inner0, ai = loop.Inner1, di = loop.Inner2;
        while (loop.Next(out long co, out long ao, out long dofs))
            for (int i = 0; i < n; i++)
                if (c[co + i * ci] != TC.Zero) d[dofs + i * di] = a[ao + i * ai];
    }
}
