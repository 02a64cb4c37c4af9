// Elementwise (GPU): unary, binary and ternary (where) maps, fills and copies over strided views.
//
// Algorithm: one thread per output element, launched over the element count. Output i is contiguous
// (row-major index i) unless a StridedIndex is given for it; every input finds its element through its
// own StridedIndex, so transposed, sliced and broadcast (stride 0) views are read in place with no copy.
// The function is an int op code read once per thread in a switch (the codes mirror
// AttnCore.Backends.UnaryOp/BinaryOp, checked by a test), so ONE compiled kernel serves every op: the
// branch is uniform across a warp and costs nothing next to the memory access.
// FLOPs: 1 (add) to ~20 (GELU, pow) per element, plus ~12 integer ops per operand for the index.
// Bytes: 4 per operand read + 4 written per element (float32). Bound: memory bandwidth on a GPU; on the
// ILGPU CPU accelerator, thread scheduling (it is an emulator: correctness only).
// Reference: the float64 reference in Tests/Gpu/IlgpuBackendTests.cs (and the SIMD CPU backend).
using ILGPU;
using ILGPU.Algorithms;

namespace AttnCore.Kernels.Gpu;

/// <summary>Element-wise kernels over strided views (float32, with int64 fill/copy for index tensors).</summary>
public static class Elementwise
{
    /// <summary>Unary op codes (same names and order as AttnCore.Backends.UnaryOp).</summary>
    public enum Unary
    {
#pragma warning disable CS1591 // each value is the AttnCore.Backends.UnaryOp of the same name, documented there (Kernels cannot see Engine)
        Neg, Abs, Exp, Log, Sqrt, Rsqrt, Tanh, Sigmoid, Relu, Gelu, GeluTanh, Silu, Sin, Cos, Square, Reciprocal, Sign,
        AddScalar, MulScalar, PowScalar, RSubScalar, RDivScalar, ClampMin, ClampMax, GeluGrad, GeluTanhGrad,
#pragma warning restore CS1591
    }

    /// <summary>Binary op codes (same names and order as AttnCore.Backends.BinaryOp).</summary>
    public enum Binary
    {
#pragma warning disable CS1591 // each value is the AttnCore.Backends.BinaryOp of the same name, documented there (Kernels cannot see Engine)
        Add, Sub, Mul, Div, Pow, Maximum, Minimum, Eq, Ne, Lt, Le, Gt, Ge, LogicalAnd, LogicalOr, LogicalXor,
#pragma warning restore CS1591
    }

    private const float InvSqrt2 = 0.70710678118654752f;
    private const float InvSqrt2Pi = 0.39894228040143268f;
    private const float Sqrt2OverPi = 0.79788456080286536f;
    private const float GeluTanhC = 0.044715f;

    /// <summary>
    /// erf by Abramowitz-Stegun 7.1.26: a degree-5 polynomial in t = 1/(1 + p|x|) times exp(-x^2),
    /// absolute error below 1.5e-7 (under float32 resolution near 1). .NET has no MathF.Erf, and a
    /// polynomial keeps the kernel free of calls that might lack a device intrinsic.
    /// </summary>
    public static float Erf(float x)
    {
        float ax = XMath.Abs(x);
        float t = 1f / (1f + 0.3275911f * ax);
        float poly = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t;
        float y = 1f - poly * XMath.Exp(-ax * ax);
        return x < 0 ? -y : y;
    }

    /// <summary>
    /// x^y with C's pow semantics for a negative base and an integral exponent ((-2)^3 = -8), which a device
    /// pow built on exp(y log x) would turn into NaN; y = 2 is the exact square.
    /// </summary>
    public static float Pow(float x, float y)
    {
        if (y == 2f) return x * x;
        if (x < 0 && y == XMath.Floor(y))
        {
            float r = XMath.Pow(-x, y);
            float half = 0.5f * y;
            return half == XMath.Floor(half) ? r : -r;
        }
        return XMath.Pow(x, y);
    }

    /// <summary>The unary function <paramref name="op"/> (a <see cref="Unary"/> code) at x with scalar argument s.</summary>
    public static float ApplyUnary(int op, float x, float s)
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
            case Unary.Gelu: return 0.5f * x * (1f + Erf(x * InvSqrt2));
            case Unary.GeluTanh: return 0.5f * x * (1f + XMath.Tanh(Sqrt2OverPi * (x + GeluTanhC * x * x * x)));
            case Unary.Silu: return x / (1f + XMath.Exp(-x));
            case Unary.Sin: return XMath.Sin(x);
            case Unary.Cos: return XMath.Cos(x);
            case Unary.Square: return x * x;
            case Unary.Reciprocal: return 1f / x;
            case Unary.Sign: return x > 0 ? 1f : x < 0 ? -1f : (XMath.IsNaN(x) ? x : 0f);
            case Unary.AddScalar: return x + s;
            case Unary.MulScalar: return x * s;
            case Unary.PowScalar: return Pow(x, s);
            case Unary.RSubScalar: return s - x;
            case Unary.RDivScalar: return s / x;
            case Unary.ClampMin: return x < s ? s : x;
            case Unary.ClampMax: return x > s ? s : x;
            // d/dx x*Phi(x) = Phi(x) + x*phi(x)
            case Unary.GeluGrad: return 0.5f * (1f + Erf(x * InvSqrt2)) + x * InvSqrt2Pi * XMath.Exp(-0.5f * x * x);
            default: // GeluTanhGrad: 0.5(1+th) + 0.5x(1-th^2) * c(1 + 3*0.044715 x^2)
            {
                float th = XMath.Tanh(Sqrt2OverPi * (x + GeluTanhC * x * x * x));
                return 0.5f * (1f + th) + 0.5f * x * (1f - th * th) * Sqrt2OverPi * (1f + 3f * GeluTanhC * x * x);
            }
        }
    }

    /// <summary>The binary function <paramref name="op"/> (a <see cref="Binary"/> code); comparisons give 1 or 0, Maximum/Minimum propagate NaN.</summary>
    public static float ApplyBinary(int op, float a, float b)
    {
        switch ((Binary)op)
        {
            case Binary.Add: return a + b;
            case Binary.Sub: return a - b;
            case Binary.Mul: return a * b;
            case Binary.Div: return a / b;
            case Binary.Pow: return Pow(a, b);
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

    /// <summary>dst[i] = op(src[ls(i)], s) for i &lt; dst extent; dst contiguous.</summary>
    public static void UnaryKernel(Index1D i, ArrayView<float> src, StridedIndex ls, ArrayView<float> dst, int op, float s)
        => dst[i] = ApplyUnary(op, src[ls.At(i)], s);

    /// <summary>dst[i] = op(a[la(i)], b[lb(i)]); dst contiguous.</summary>
    public static void BinaryKernel(Index1D i, ArrayView<float> a, StridedIndex la, ArrayView<float> b, StridedIndex lb, ArrayView<float> dst, int op)
        => dst[i] = ApplyBinary(op, a[la.At(i)], b[lb.At(i)]);

    /// <summary>dst[i] = cond[lc(i)] != 0 ? a[la(i)] : b[lb(i)]; dst contiguous.</summary>
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
