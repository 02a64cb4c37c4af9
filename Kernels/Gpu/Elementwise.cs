// Elementwise (GPU): unary, binary and ternary (where) maps, fills and copies over strided views.
//
// Algorithm: one thread per output element, launched over the element count. Output i is contiguous
// (row-major index i) unless a StridedIndex is given for it; every input finds its element through its
// own StridedIndex, so transposed, sliced and broadcast (stride 0) views are read in place with no copy.
// The function is an int op code read once per thread in a switch (the codes are
// AttnCore.Kernels.UnaryOp/BinaryOp, the enums the CPU backend and Engine's catalogue use), so ONE compiled kernel serves every op: the
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
    /// pow built on exp(y log x) would turn into NaN; y = 2 and y = 3 are products, as in PyTorch's pow kernels
    /// (on CUDA, XMath.Pow goes through ex2.approx and gives 3^3 = 27.000002).
    /// </summary>
    public static float Pow(float x, float y)
    {
        if (y == 2f) return x * x;
        if (y == 3f) return x * x * x;
        if (x < 0 && y == XMath.Floor(y))
        {
            float r = XMath.Pow(-x, y);
            float half = 0.5f * y;
            return half == XMath.Floor(half) ? r : -r;
        }
        return XMath.Pow(x, y);
    }

    /// <summary>The unary function <paramref name="op"/> (a <see cref="UnaryOp"/> code) at x with scalar argument s.</summary>
    public static float ApplyUnary(int op, float x, float s)
    {
        switch ((UnaryOp)op)
        {
            case UnaryOp.Neg: return -x;
            case UnaryOp.Abs: return XMath.Abs(x);
            case UnaryOp.Exp: return XMath.Exp(x);
            case UnaryOp.Log: return XMath.Log(x);
            case UnaryOp.Sqrt: return XMath.Sqrt(x);
            case UnaryOp.Rsqrt: return XMath.Rsqrt(x);
            case UnaryOp.Tanh: return XMath.Tanh(x);
            case UnaryOp.Sigmoid: return 1f / (1f + XMath.Exp(-x));
            case UnaryOp.Relu: return x > 0 ? x : (XMath.IsNaN(x) ? x : 0f);
            case UnaryOp.Gelu: return 0.5f * x * (1f + Erf(x * InvSqrt2));
            case UnaryOp.GeluTanh: return 0.5f * x * (1f + XMath.Tanh(Sqrt2OverPi * (x + GeluTanhC * x * x * x)));
            case UnaryOp.Silu: return x / (1f + XMath.Exp(-x));
            case UnaryOp.Sin: return XMath.Sin(x);
            case UnaryOp.Cos: return XMath.Cos(x);
            case UnaryOp.Square: return x * x;
            case UnaryOp.Reciprocal: return 1f / x;
            case UnaryOp.Sign: return x > 0 ? 1f : x < 0 ? -1f : (XMath.IsNaN(x) ? x : 0f);
            case UnaryOp.AddScalar: return x + s;
            case UnaryOp.MulScalar: return x * s;
            case UnaryOp.PowScalar: return Pow(x, s);
            case UnaryOp.RSubScalar: return s - x;
            case UnaryOp.RDivScalar: return s / x;
            case UnaryOp.ClampMin: return x < s ? s : x;
            case UnaryOp.ClampMax: return x > s ? s : x;
            // d/dx x*Phi(x) = Phi(x) + x*phi(x)
            case UnaryOp.GeluGrad: return 0.5f * (1f + Erf(x * InvSqrt2)) + x * InvSqrt2Pi * XMath.Exp(-0.5f * x * x);
            case UnaryOp.GeluTanhGrad: // 0.5(1+th) + 0.5x(1-th^2) * c(1 + 3*0.044715 x^2)
            {
                float th = XMath.Tanh(Sqrt2OverPi * (x + GeluTanhC * x * x * x));
                return 0.5f * (1f + th) + 0.5f * x * (1f - th * th) * Sqrt2OverPi * (1f + 3f * GeluTanhC * x * x);
            }
            case UnaryOp.Softplus: return Softplus(x);
            case UnaryOp.Mish: return x * XMath.Tanh(Softplus(x));
            // -softplus(-x) = min(x, 0) - ln(1 + e^-|x|): e^-|x| <= 1 never overflows
            case UnaryOp.LogSigmoid: return XMath.Min(x, 0f) - Log1p(XMath.Exp(-XMath.Abs(x)));
            // A code with no case must not compute some other function: NaN makes the omission visible, and
            // Tests/Gpu/IlgpuBackendTests.cs runs every UnaryOp here against the float64 reference.
            default: return float.NaN;
        }
    }

    /// <summary>
    /// ln(1 + e) accurate for small e: ln(u) * e / (u - 1) with u = 1 + e (Goldberg), because ln(1 + e) rounds 1 + e
    /// first and loses the low digits of e; XMath has no log1p that every device provides.
    /// </summary>
    public static float Log1p(float e)
    {
        float u = 1f + e;
        return u == 1f ? e : XMath.Log(u) * e / (u - 1f);
    }

    /// <summary>PyTorch's softplus (beta 1, threshold 20): x above 20, where ln(1 + e^x) equals x in float32, else ln(1 + e^x).</summary>
    public static float Softplus(float x) => x > 20f ? x : Log1p(XMath.Exp(x));

    /// <summary>The binary function <paramref name="op"/> (a <see cref="BinaryOp"/> code); comparisons give 1 or 0, Maximum/Minimum propagate NaN.</summary>
    public static float ApplyBinary(int op, float a, float b)
    {
        switch ((BinaryOp)op)
        {
            case BinaryOp.Add: return a + b;
            case BinaryOp.Sub: return a - b;
            case BinaryOp.Mul: return a * b;
            case BinaryOp.Div: return a / b;
            case BinaryOp.Pow: return Pow(a, b);
            case BinaryOp.Maximum: return XMath.IsNaN(a) ? a : XMath.IsNaN(b) ? b : (a > b ? a : b);
            case BinaryOp.Minimum: return XMath.IsNaN(a) ? a : XMath.IsNaN(b) ? b : (a < b ? a : b);
            case BinaryOp.Eq: return a == b ? 1f : 0f;
            case BinaryOp.Ne: return a != b ? 1f : 0f;
            case BinaryOp.Lt: return a < b ? 1f : 0f;
            case BinaryOp.Le: return a <= b ? 1f : 0f;
            case BinaryOp.Gt: return a > b ? 1f : 0f;
            case BinaryOp.Ge: return a >= b ? 1f : 0f;
            case BinaryOp.GeluBackward: return a * ApplyUnary((int)UnaryOp.GeluGrad, b, 0f);
            case BinaryOp.GeluTanhBackward: return a * ApplyUnary((int)UnaryOp.GeluTanhGrad, b, 0f);
            default: return float.NaN; // the logical ops take bool tensors and never reach this float kernel
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
