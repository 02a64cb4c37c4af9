// Elementwise (GPU): one thread per output element; inputs are strided/broadcast views, the output is
// contiguous. The op is a kernel argument chosen by a switch, so one compiled kernel serves every
// function (the op codes mirror AttnCore.Backends.UnaryOp/BinaryOp, which the backend passes as ints).
// FLOPs: 1-20 per element. Bytes: 8-12 per element plus index arithmetic. Bound: memory bandwidth.
// Reference: the SIMD CPU backend (Tests/Gpu compares the two on every op).
using ILGPU;
using ILGPU.Algorithms;

namespace AttnCore.Kernels.Gpu;

/// <summary>Element-wise kernels over strided views.</summary>
public static class Elementwise
{
    /// <summary>Unary op codes (same order as AttnCore.Backends.UnaryOp).</summary>
    public enum Unary
    {
#pragma warning disable CS1591
        Neg, Abs, Exp, Log, Sqrt, Rsqrt, Tanh, Sigmoid, Relu, Gelu, GeluTanh, Silu, Sin, Cos, Square, Reciprocal, Sign,
        AddScalar, MulScalar, PowScalar, RSubScalar, RDivScalar, ClampMin, ClampMax, GeluGrad, GeluTanhGrad,
#pragma warning restore CS1591
    }

    /// <summary>Binary op codes (same order as AttnCore.Backends.BinaryOp).</summary>
    public enum Binary
    {
#pragma warning disable CS1591
        Add, Sub, Mul, Div, Pow, Maximum, Minimum, Eq, Ne, Lt, Le, Gt, Ge,
#pragma warning restore CS1591
    }

    // erf by Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7): a polynomial and one exp, no branches but the sign.
    private static float Erf(float x)
    {
        float ax = XMath.Abs(x);
        float t = 1f / (1f + 0.3275911f * ax);
        float y = 1f - ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t * XMath.Exp(-ax * ax);
        return x < 0 ? -y : y;
    }

    private static float Apply(int op, float x, float s)
    {
        switch ((Unary)op)
        {
            case Unary.Neg: return -x;
            case Unary.Abs: return XMath.Abs(x);
            case Unary.Exp: return XMath.Exp(x);
            case Unary.Log: return XMath.Log(x);
            case Unary.Sqrt: return XMath.Sqrt(x);
            case Unary.Rsqrt: return XMath.Rsqrt(x);
            case Unary.Tanh: return XMath.Tanh(x);
            case Unary.Sigmoid: return 1f / (1f + XMath.Exp(-x));
            case Unary.Relu: return x > 0 ? x : (XMath.IsNaN(x) ? x : 0f);
            case Unary.Gelu: return 0.5f * x * (1f + Erf(x * 0.70710678f));
            case Unary.GeluTanh: return 0.5f * x * (1f + XMath.Tanh(0.7978845608f * (x + 0.044715f * x * x * x)));
            case Unary.Silu: return x / (1f + XMath.Exp(-x));
            case Unary.Sin: return XMath.Sin(x);
            case Unary.Cos: return XMath.Cos(x);
            case Unary.Square: return x * x;
            case Unary.Reciprocal: return 1f / x;
            case Unary.Sign: return x > 0 ? 1f : x < 0 ? -1f : x;
            case Unary.AddScalar: return x + s;
            case Unary.MulScalar: return x * s;
            case Unary.PowScalar: return s == 2f ? x * x : XMath.Pow(x, s);
            case Unary.RSubScalar: return s - x;
            case Unary.RDivScalar: return s / x;
            case Unary.ClampMin: return x < s ? s : x;
            case Unary.ClampMax: return x > s ? s : x;
            case Unary.GeluGrad: return 0.5f * (1f + Erf(x * 0.70710678f)) + x * 0.3989422804f * XMath.Exp(-0.5f * x * x);
            default:
            {
                float th = XMath.Tanh(0.7978845608f * (x + 0.044715f * x * x * x));
                return 0.5f * (1f + th) + 0.5f * x * (1f - th * th) * 0.7978845608f * (1f + 3f * 0.044715f * x * x);
            }
        }
    }

    private static float Apply2(int op, float a, float b)
    {
        switch ((Binary)op)
        {
            case Binary.Add: return a + b;
            case Binary.Sub: return a - b;
            case Binary.Mul: return a * b;
            case Binary.Div: return a / b;
            case Binary.Pow: return XMath.Pow(a, b);
            case Binary.Maximum: return XMath.IsNaN(a) ? a : XMath.IsNaN(b) ? b : (a > b ? a : b);
            case Binary.Minimum: return XMath.IsNaN(a) ? a : XMath.IsNaN(b) ? b : (a < b ? a : b);
            case Binary.Eq: return a == b ? 1f : 0f;
            case Binary.Ne: return a != b ? 1f : 0f;
            case Binary.Lt: return a < b ? 1f : 0f;
            case Binary.Le: return a <= b ? 1f : 0f;
            case Binary.Gt: return a > b ? 1f : 0f;
            default: return a >= b ? 1f : 0f;
        }
    }

    /// <summary>dst[i] = op(src[layout(i)], s).</summary>
    public static void UnaryKernel(Index1D i, ArrayView<float> src, StridedIndex layout, ArrayView<float> dst, int op, float s)
        => dst[i] = Apply(op, src[layout.At(i)], s);

    /// <summary>dst[i] = op(a[la(i)], b[lb(i)]).</summary>
    public static void BinaryKernel(Index1D i, ArrayView<float> a, StridedIndex la, ArrayView<float> b, StridedIndex lb, ArrayView<float> dst, int op)
        => dst[i] = Apply2(op, a[la.At(i)], b[lb.At(i)]);

    /// <summary>dst[i] = cond[lc(i)] != 0 ? a[la(i)] : b[lb(i)].</summary>
    public static void WhereKernel(Index1D i, ArrayView<float> cond, StridedIndex lc, ArrayView<float> a, StridedIndex la, ArrayView<float> b, StridedIndex lb, ArrayView<float> dst)
        => dst[i] = cond[lc.At(i)] != 0 ? a[la.At(i)] : b[lb.At(i)];

    /// <summary>dst[ld(i)] = value.</summary>
    public static void FillKernel(Index1D i, ArrayView<float> dst, StridedIndex ld, float value) => dst[ld.At(i)] = value;

    /// <summary>dst[ld(i)] = value (int64).</summary>
    public static void FillLongKernel(Index1D i, ArrayView<long> dst, StridedIndex ld, long value) => dst[ld.At(i)] = value;

    /// <summary>dst[ld(i)] = src[ls(i)].</summary>
    public static void CopyKernel(Index1D i, ArrayView<float> src, StridedIndex ls, ArrayView<float> dst, StridedIndex ld) => dst[ld.At(i)] = src[ls.At(i)];

    /// <summary>dst[ld(i)] = src[ls(i)] (int64).</summary>
    public static void CopyLongKernel(Index1D i, ArrayView<long> src, StridedIndex ls, ArrayView<long> dst, StridedIndex ld) => dst[ld.At(i)] = src[ls.At(i)];

    /// <summary>dst[ld(i)] = (float)src[ls(i)].</summary>
    public static void LongToFloatKernel(Index1D i, ArrayView<long> src, StridedIndex ls, ArrayView<float> dst, StridedIndex ld) => dst[ld.At(i)] = src[ls.At(i)];

    /// <summary>dst[ld(i)] = (long)src[ls(i)] (truncation toward zero).</summary>
    public static void FloatToLongKernel(Index1D i, ArrayView<float> src, StridedIndex ls, ArrayView<long> dst, StridedIndex ld) => dst[ld.At(i)] = (long)src[ls.At(i)];
}
