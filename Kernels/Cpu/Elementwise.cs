// Elementwise: the operator structs behind every element-wise op on the CPU.
//
// Algorithm: y[i] = f(x[i]) (or f(a[i], b[i])). FLOPs: 1..~20 per element; bytes: 8 (unary) or 12
// (binary) per float32 element. Bound: memory bandwidth for everything but erf/tanh-style functions.
//
// Following TensorPrimitives' design, each op is a small struct with a scalar Apply and a span Run.
// Run defaults to the scalar loop; where System.Numerics.Tensors.TensorPrimitives has the op, Run
// calls it instead: TensorPrimitives is already vectorised over Vector128/256/512 with a scalar
// tail, and measured as fast as a hand-written loop for these memory-bound ops, so writing our own
// would add code without adding speed. The strided/broadcast driver that walks layouts lives in the
// Engine's CPU backend and calls Run on every contiguous run it finds.
// Reference: the tests compare each op against a float64 implementation written in the test project.
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AttnCore.Kernels.Cpu;

/// <summary>y = f(x, s) element-wise, with an optional scalar s.</summary>
public interface IUnaryOperator<T> where T : unmanaged
{
    /// <summary>One element.</summary>
    static abstract T Apply(T x, T s);

    /// <summary>A contiguous run (dst may alias x).</summary>
    static abstract void Run(ReadOnlySpan<T> x, T s, Span<T> dst);
}

/// <summary>d = f(a, b) element-wise.</summary>
public interface IBinaryOperator<T> where T : unmanaged
{
    /// <summary>One element.</summary>
    static abstract T Apply(T a, T b);
    /// <summary>Both operands contiguous.</summary>
    static abstract void Run(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> dst);
    /// <summary>Right operand a broadcast scalar.</summary>
    static abstract void RunScalarRight(ReadOnlySpan<T> a, T b, Span<T> dst);
    /// <summary>Left operand a broadcast scalar.</summary>
    static abstract void RunScalarLeft(T a, ReadOnlySpan<T> b, Span<T> dst);
}

/// <summary>Scalar fallbacks shared by operators that TensorPrimitives does not cover.</summary>
public static class ElementwiseLoops
{
    /// <summary>dst[i] = TOp.Apply(x[i], s).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Unary<T, TOp>(ReadOnlySpan<T> x, T s, Span<T> dst) where T : unmanaged where TOp : IUnaryOperator<T>
    {
        for (int i = 0; i < x.Length; i++) dst[i] = TOp.Apply(x[i], s);
    }

    /// <summary>dst[i] = TOp.Apply(a[i], b[i]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Binary<T, TOp>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> dst) where T : unmanaged where TOp : IBinaryOperator<T>
    {
        for (int i = 0; i < a.Length; i++) dst[i] = TOp.Apply(a[i], b[i]);
    }

    /// <summary>dst[i] = TOp.Apply(a[i], b).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void BinaryScalarRight<T, TOp>(ReadOnlySpan<T> a, T b, Span<T> dst) where T : unmanaged where TOp : IBinaryOperator<T>
    {
        for (int i = 0; i < a.Length; i++) dst[i] = TOp.Apply(a[i], b);
    }

    /// <summary>dst[i] = TOp.Apply(a, b[i]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void BinaryScalarLeft<T, TOp>(T a, ReadOnlySpan<T> b, Span<T> dst) where T : unmanaged where TOp : IBinaryOperator<T>
    {
        for (int i = 0; i < b.Length; i++) dst[i] = TOp.Apply(a, b[i]);
    }
}

/// <summary>Unary operator: -x.</summary>
public struct NegOp<T> : IUnaryOperator<T> where T : unmanaged, INumber<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => -x;
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => TensorPrimitives.Negate(x, d);
}
/// <summary>Unary operator: |x|.</summary>
public struct AbsOp<T> : IUnaryOperator<T> where T : unmanaged, INumber<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => T.Abs(x);
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => TensorPrimitives.Abs(x, d);
}
/// <summary>Unary operator: -1, 0 or 1 by the sign of x; NaN stays NaN.</summary>
public struct SignOp<T> : IUnaryOperator<T> where T : unmanaged, INumber<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => T.IsNaN(x) ? x : T.CreateTruncating(T.Sign(x));
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => ElementwiseLoops.Unary<T, SignOp<T>>(x, s, d);
}
/// <summary>Unary operator: x².</summary>
public struct SquareOp<T> : IUnaryOperator<T> where T : unmanaged, INumber<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => x * x;
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => TensorPrimitives.Multiply(x, x, d);
}
/// <summary>Unary operator: x + s.</summary>
public struct AddScalarOp<T> : IUnaryOperator<T> where T : unmanaged, INumber<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => x + s;
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => TensorPrimitives.Add(x, s, d);
}
/// <summary>Unary operator: x · s.</summary>
public struct MulScalarOp<T> : IUnaryOperator<T> where T : unmanaged, INumber<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => x * s;
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => TensorPrimitives.Multiply(x, s, d);
}
/// <summary>Unary operator: s - x.</summary>
public struct RSubScalarOp<T> : IUnaryOperator<T> where T : unmanaged, INumber<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => s - x;
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => TensorPrimitives.Subtract(s, x, d);
}
/// <summary>Unary operator: s / x.</summary>
public struct RDivScalarOp<T> : IUnaryOperator<T> where T : unmanaged, INumber<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => s / x;
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => TensorPrimitives.Divide(s, x, d);
}
/// <summary>Unary operator: max(x, s): NaN propagates, as torch.clamp_min.</summary>
public struct ClampMinOp<T> : IUnaryOperator<T> where T : unmanaged, INumber<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => T.IsNaN(x) ? x : T.Max(x, s);
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => TensorPrimitives.Max(x, s, d);
}
/// <summary>Unary operator: min(x, s): NaN propagates, as torch.clamp_max.</summary>
public struct ClampMaxOp<T> : IUnaryOperator<T> where T : unmanaged, INumber<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => T.IsNaN(x) ? x : T.Min(x, s);
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => TensorPrimitives.Min(x, s, d);
}
/// <summary>Unary operator: max(x, 0).</summary>
public struct ReluOp<T> : IUnaryOperator<T> where T : unmanaged, INumber<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => T.IsNaN(x) ? x : T.Max(x, T.Zero);
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => TensorPrimitives.Max(x, T.Zero, d);
}
/// <summary>Unary operator: eˣ.</summary>
public struct ExpOp<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => T.Exp(x);
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => TensorPrimitives.Exp(x, d);
}
/// <summary>Unary operator: ln x.</summary>
public struct LogOp<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => T.Log(x);
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => TensorPrimitives.Log(x, d);
}
/// <summary>Unary operator: √x.</summary>
public struct SqrtOp<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => T.Sqrt(x);
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => TensorPrimitives.Sqrt(x, d);
}
/// <summary>Unary operator: 1/√x.</summary>
public struct RsqrtOp<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => T.One / T.Sqrt(x);
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) { TensorPrimitives.Sqrt(x, d); TensorPrimitives.Divide(T.One, d, d); }
}
/// <summary>Unary operator: 1/x.</summary>
public struct ReciprocalOp<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => T.One / x;
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => TensorPrimitives.Divide(T.One, x, d);
}
/// <summary>Unary operator: tanh x, accurate near 0 (see Run).</summary>
public struct TanhOp<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => T.Tanh(x);
    // TensorPrimitives.Tanh computes tanh from e^-2|x| and cancels near 0: float64 tanh(1e-30) came out -0, and
    // float32 tanh(0) -6e-8 (an absolute error of ~6e-8, so no relative accuracy for small |x|). float64 is the
    // checking dtype and takes the exact scalar Math.Tanh. float32 keeps the vectorised kernel where that absolute
    // error is under 2.5e-7 of the result (|x| >= 1/4) and redoes the small |x| with the scalar MathF.Tanh, in
    // chunks so that dst may alias x.
    private static readonly T SmallCutoff = T.CreateTruncating(0.25);
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d)
    {
        if (typeof(T) == typeof(double)) { ElementwiseLoops.Unary<T, TanhOp<T>>(x, s, d); return; }
        Span<T> input = stackalloc T[256];
        for (int at = 0; at < x.Length; at += input.Length)
        {
            int len = Math.Min(input.Length, x.Length - at);
            var xs = x.Slice(at, len); var ds = d.Slice(at, len);
            xs.CopyTo(input);
            TensorPrimitives.Tanh(xs, ds);
            for (int i = 0; i < len; i++)
                if (T.Abs(input[i]) < SmallCutoff) ds[i] = T.Tanh(input[i]);
        }
    }
}
/// <summary>Unary operator: 1/(1 + e⁻ˣ).</summary>
public struct SigmoidOp<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => T.One / (T.One + T.Exp(-x));
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => TensorPrimitives.Sigmoid(x, d);
}
/// <summary>Unary operator: x · sigmoid(x).</summary>
public struct SiluOp<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => x / (T.One + T.Exp(-x));
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) { TensorPrimitives.Sigmoid(x, d); TensorPrimitives.Multiply(x, d, d); }
}
/// <summary>
/// Softplus ln(1 + e^x) as PyTorch (beta 1, threshold 20): x above 20, where the two agree to float64 rounding;
/// ln(1 + e) by Goldberg's ln(u) e / (u - 1), u = 1 + e, so a tiny e^x (x very negative) keeps its digits.
/// </summary>
public struct SoftplusOp<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private static readonly T Threshold = T.CreateTruncating(20);
    /// <summary>ln(1 + e) without losing the digits of a small e.</summary>
    public static T Log1p(T e)
    {
        T u = T.One + e;
        return u == T.One ? e : T.Log(u) * e / (u - T.One);
    }
    /// <inheritdoc/>
    public static T Apply(T x, T s) => x > Threshold ? x : Log1p(T.Exp(x));
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => ElementwiseLoops.Unary<T, SoftplusOp<T>>(x, s, d);
}
/// <summary>Unary operator: Mish, x · tanh(softplus(x)).</summary>
public struct MishOp<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => x * T.Tanh(SoftplusOp<T>.Apply(x, s));
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => ElementwiseLoops.Unary<T, MishOp<T>>(x, s, d);
}
/// <summary>Unary operator: ln sigmoid(x) = min(x, 0) − ln(1 + e^−|x|), which never overflows (e^−|x| ≤ 1).</summary>
public struct LogSigmoidOp<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => T.Min(x, T.Zero) - SoftplusOp<T>.Log1p(T.Exp(-T.Abs(x)));
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => ElementwiseLoops.Unary<T, LogSigmoidOp<T>>(x, s, d);
}
/// <summary>Unary operator: sin x.</summary>
public struct SinOp<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => T.Sin(x);
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => TensorPrimitives.Sin(x, d);
}
/// <summary>Unary operator: cos x.</summary>
public struct CosOp<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => T.Cos(x);
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => TensorPrimitives.Cos(x, d);
}
/// <summary>Unary operator: xˢ.</summary>
public struct PowScalarOp<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => s == T.CreateTruncating(2) ? x * x : T.Pow(x, s);
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d)
    {
        if (s == T.CreateTruncating(2)) TensorPrimitives.Multiply(x, x, d);
        else TensorPrimitives.Pow(x, s, d);
    }
}
/// <summary>GELU with the exact erf: x/2 (1 + erf(x/sqrt 2)).</summary>
public struct GeluOp<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => T.CreateTruncating(0.5) * x * (T.One + Erf.Of(x * T.CreateTruncating(0.70710678118654752440)));
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d)
    {
        if (typeof(T) == typeof(float)) Activations.Gelu(System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(x), System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(d));
        else ElementwiseLoops.Unary<T, GeluOp<T>>(x, s, d);
    }
}
/// <summary>GELU, tanh approximation: x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).</summary>
public struct GeluTanhOp<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s) => T.CreateTruncating(0.5) * x * (T.One + T.Tanh(T.CreateTruncating(0.79788456080286535588) * (x + T.CreateTruncating(0.044715) * x * x * x)));
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => ElementwiseLoops.Unary<T, GeluTanhOp<T>>(x, s, d);
}
/// <summary>d/dx GELU (erf form) = Phi(x) + x phi(x).</summary>
public struct GeluGradOp<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s)
    {
        T cdf = T.CreateTruncating(0.5) * (T.One + Erf.Of(x * T.CreateTruncating(0.70710678118654752440)));
        T pdf = T.Exp(T.CreateTruncating(-0.5) * x * x) * T.CreateTruncating(0.39894228040143267794);
        return cdf + x * pdf;
    }
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d)
    {
        if (typeof(T) == typeof(float)) Activations.GeluDerivative(System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(x), System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(d));
        else ElementwiseLoops.Unary<T, GeluGradOp<T>>(x, s, d);
    }
}
/// <summary>a · GELU'(b) (erf form): Gelu's backward, the output's gradient times the derivative at the input, in one pass.</summary>
public struct GeluBackwardOp<T> : IBinaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Apply(T a, T b) => a * GeluGradOp<T>.Apply(b, T.Zero);
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> d)
    {
        if (typeof(T) == typeof(float))
            Activations.GeluBackward(System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(a), System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(b),
                System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(d));
        else ElementwiseLoops.Binary<T, GeluBackwardOp<T>>(a, b, d);
    }
    /// <inheritdoc/>
    public static void RunScalarRight(ReadOnlySpan<T> a, T b, Span<T> d) => ElementwiseLoops.BinaryScalarRight<T, GeluBackwardOp<T>>(a, b, d);
    /// <inheritdoc/>
    public static void RunScalarLeft(T a, ReadOnlySpan<T> b, Span<T> d) => ElementwiseLoops.BinaryScalarLeft<T, GeluBackwardOp<T>>(a, b, d);
}
/// <summary>a · GELU'(b), tanh approximation.</summary>
public struct GeluTanhBackwardOp<T> : IBinaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Apply(T a, T b) => a * GeluTanhGradOp<T>.Apply(b, T.Zero);
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> d) => ElementwiseLoops.Binary<T, GeluTanhBackwardOp<T>>(a, b, d);
    /// <inheritdoc/>
    public static void RunScalarRight(ReadOnlySpan<T> a, T b, Span<T> d) => ElementwiseLoops.BinaryScalarRight<T, GeluTanhBackwardOp<T>>(a, b, d);
    /// <inheritdoc/>
    public static void RunScalarLeft(T a, ReadOnlySpan<T> b, Span<T> d) => ElementwiseLoops.BinaryScalarLeft<T, GeluTanhBackwardOp<T>>(a, b, d);
}
/// <summary>d/dx of the tanh-approximated GELU.</summary>
public struct GeluTanhGradOp<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Apply(T x, T s)
    {
        T k = T.CreateTruncating(0.79788456080286535588), c = T.CreateTruncating(0.044715);
        T th = T.Tanh(k * (x + c * x * x * x));
        T half = T.CreateTruncating(0.5);
        return half * (T.One + th) + half * x * (T.One - th * th) * k * (T.One + T.CreateTruncating(3) * c * x * x);
    }
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> x, T s, Span<T> d) => ElementwiseLoops.Unary<T, GeluTanhGradOp<T>>(x, s, d);
}

/// <summary>Binary operator: a + b.</summary>
public struct AddOp<T> : IBinaryOperator<T> where T : unmanaged, INumber<T>
{
    /// <inheritdoc/>
    public static T Apply(T a, T b) => a + b;
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> d) => TensorPrimitives.Add(a, b, d);
    /// <inheritdoc/>
    public static void RunScalarRight(ReadOnlySpan<T> a, T b, Span<T> d) => TensorPrimitives.Add(a, b, d);
    /// <inheritdoc/>
    public static void RunScalarLeft(T a, ReadOnlySpan<T> b, Span<T> d) => TensorPrimitives.Add(b, a, d);
}
/// <summary>Binary operator: a - b.</summary>
public struct SubOp<T> : IBinaryOperator<T> where T : unmanaged, INumber<T>
{
    /// <inheritdoc/>
    public static T Apply(T a, T b) => a - b;
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> d) => TensorPrimitives.Subtract(a, b, d);
    /// <inheritdoc/>
    public static void RunScalarRight(ReadOnlySpan<T> a, T b, Span<T> d) => TensorPrimitives.Subtract(a, b, d);
    /// <inheritdoc/>
    public static void RunScalarLeft(T a, ReadOnlySpan<T> b, Span<T> d) => TensorPrimitives.Subtract(a, b, d);
}
/// <summary>Binary operator: a · b.</summary>
public struct MulOp<T> : IBinaryOperator<T> where T : unmanaged, INumber<T>
{
    /// <inheritdoc/>
    public static T Apply(T a, T b) => a * b;
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> d) => TensorPrimitives.Multiply(a, b, d);
    /// <inheritdoc/>
    public static void RunScalarRight(ReadOnlySpan<T> a, T b, Span<T> d) => TensorPrimitives.Multiply(a, b, d);
    /// <inheritdoc/>
    public static void RunScalarLeft(T a, ReadOnlySpan<T> b, Span<T> d) => TensorPrimitives.Multiply(b, a, d);
}
/// <summary>Binary operator: a / b.</summary>
public struct DivOp<T> : IBinaryOperator<T> where T : unmanaged, INumber<T>
{
    /// <inheritdoc/>
    public static T Apply(T a, T b) => a / b;
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> d) => TensorPrimitives.Divide(a, b, d);
    /// <inheritdoc/>
    public static void RunScalarRight(ReadOnlySpan<T> a, T b, Span<T> d) => TensorPrimitives.Divide(a, b, d);
    /// <inheritdoc/>
    public static void RunScalarLeft(T a, ReadOnlySpan<T> b, Span<T> d) => TensorPrimitives.Divide(a, b, d);
}
/// <summary>Binary operator: max(a, b); NaN propagates.</summary>
public struct MaximumOp<T> : IBinaryOperator<T> where T : unmanaged, INumber<T>
{
    /// <inheritdoc/>
    public static T Apply(T a, T b) => T.IsNaN(a) ? a : T.IsNaN(b) ? b : T.Max(a, b);
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> d) => TensorPrimitives.Max(a, b, d);
    /// <inheritdoc/>
    public static void RunScalarRight(ReadOnlySpan<T> a, T b, Span<T> d) => TensorPrimitives.Max(a, b, d);
    /// <inheritdoc/>
    public static void RunScalarLeft(T a, ReadOnlySpan<T> b, Span<T> d) => TensorPrimitives.Max(b, a, d);
}
/// <summary>Binary operator: min(a, b); NaN propagates.</summary>
public struct MinimumOp<T> : IBinaryOperator<T> where T : unmanaged, INumber<T>
{
    /// <inheritdoc/>
    public static T Apply(T a, T b) => T.IsNaN(a) ? a : T.IsNaN(b) ? b : T.Min(a, b);
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> d) => TensorPrimitives.Min(a, b, d);
    /// <inheritdoc/>
    public static void RunScalarRight(ReadOnlySpan<T> a, T b, Span<T> d) => TensorPrimitives.Min(a, b, d);
    /// <inheritdoc/>
    public static void RunScalarLeft(T a, ReadOnlySpan<T> b, Span<T> d) => TensorPrimitives.Min(b, a, d);
}
/// <summary>Binary operator: aᵇ.</summary>
public struct PowOp<T> : IBinaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Apply(T a, T b) => T.Pow(a, b);
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> d) => TensorPrimitives.Pow(a, b, d);
    /// <inheritdoc/>
    public static void RunScalarRight(ReadOnlySpan<T> a, T b, Span<T> d) => TensorPrimitives.Pow(a, b, d);
    /// <inheritdoc/>
    public static void RunScalarLeft(T a, ReadOnlySpan<T> b, Span<T> d) => TensorPrimitives.Pow(a, b, d);
}

/// <summary>Comparison operators: 1 where the relation holds, else 0 (NaN compares false, except Ne).</summary>
public struct CompareOp<T, TRel> : IBinaryOperator<T> where T : unmanaged, INumber<T> where TRel : IRelation<T>
{
    /// <inheritdoc/>
    public static T Apply(T a, T b) => TRel.Holds(a, b) ? T.One : T.Zero;
    /// <inheritdoc/>
    public static void Run(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> d) => ElementwiseLoops.Binary<T, CompareOp<T, TRel>>(a, b, d);
    /// <inheritdoc/>
    public static void RunScalarRight(ReadOnlySpan<T> a, T b, Span<T> d) => ElementwiseLoops.BinaryScalarRight<T, CompareOp<T, TRel>>(a, b, d);
    /// <inheritdoc/>
    public static void RunScalarLeft(T a, ReadOnlySpan<T> b, Span<T> d) => ElementwiseLoops.BinaryScalarLeft<T, CompareOp<T, TRel>>(a, b, d);
}

/// <summary>A relation between two values, for <see cref="CompareOp{T, TRel}"/>.</summary>
public interface IRelation<T>
{
    /// <summary>True when the relation holds between a and b.</summary>
    static abstract bool Holds(T a, T b);
    /// <summary>All ones in the lanes where the relation holds, else zero (the same NaN rules as <see cref="Holds"/>).</summary>
    static abstract Vector512<T> Lanes(Vector512<T> a, Vector512<T> b);
}
/// <summary>Relation: a == b.</summary>
public struct EqRel<T> : IRelation<T> where T : INumber<T>
{
    /// <inheritdoc/>
    public static bool Holds(T a, T b) => a == b;
    /// <inheritdoc/>
    public static Vector512<T> Lanes(Vector512<T> a, Vector512<T> b) => Vector512.Equals(a, b);
}
/// <summary>Relation: a != b (true when either is NaN).</summary>
public struct NeRel<T> : IRelation<T> where T : INumber<T>
{
    /// <inheritdoc/>
    public static bool Holds(T a, T b) => a != b;
    /// <inheritdoc/>
    public static Vector512<T> Lanes(Vector512<T> a, Vector512<T> b) => ~Vector512.Equals(a, b);
}
/// <summary>Relation: a &lt; b.</summary>
public struct LtRel<T> : IRelation<T> where T : INumber<T>
{
    /// <inheritdoc/>
    public static bool Holds(T a, T b) => a < b;
    /// <inheritdoc/>
    public static Vector512<T> Lanes(Vector512<T> a, Vector512<T> b) => Vector512.LessThan(a, b);
}
/// <summary>Relation: a &lt;= b.</summary>
public struct LeRel<T> : IRelation<T> where T : INumber<T>
{
    /// <inheritdoc/>
    public static bool Holds(T a, T b) => a <= b;
    /// <inheritdoc/>
    public static Vector512<T> Lanes(Vector512<T> a, Vector512<T> b) => Vector512.LessThanOrEqual(a, b);
}
/// <summary>Relation: a &gt; b.</summary>
public struct GtRel<T> : IRelation<T> where T : INumber<T>
{
    /// <inheritdoc/>
    public static bool Holds(T a, T b) => a > b;
    /// <inheritdoc/>
    public static Vector512<T> Lanes(Vector512<T> a, Vector512<T> b) => Vector512.GreaterThan(a, b);
}
/// <summary>Relation: a &gt;= b.</summary>
public struct GeRel<T> : IRelation<T> where T : INumber<T>
{
    /// <inheritdoc/>
    public static bool Holds(T a, T b) => a >= b;
    /// <inheritdoc/>
    public static Vector512<T> Lanes(Vector512<T> a, Vector512<T> b) => Vector512.GreaterThanOrEqual(a, b);
}

/// <summary>The error function, for GELU. .NET has no Math.Erf.</summary>
public static class Erf
{
    /// <summary>
    /// erf(x). float: the Numerical Recipes erfc fit (fractional error below 1.2e-7, enough for float32).
    /// double: exact to about 1e-15, which gradient checks need (the derivative of a 1e-7 approximation is
    /// not the derivative of erf to 1e-7): the Maclaurin series below |x| = 2.5 (at most ~2 digits lost to
    /// cancellation), and Lentz's continued fraction for erfc above.
    /// </summary>
    public static T Of<T>(T x) where T : IFloatingPointIeee754<T>
    {
        double v = double.CreateTruncating(x);
        return T.CreateTruncating(typeof(T) == typeof(double) ? Precise(v) : Fast(v));
    }

    private static double Fast(double x)
    {
        double z = Math.Abs(x);
        double t = 1.0 / (1.0 + 0.5 * z);
        double ans = t * Math.Exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
            t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
        return x >= 0 ? 1.0 - ans : ans - 1.0;
    }

    private static double Precise(double x)
    {
        if (double.IsNaN(x)) return x;
        double z = Math.Abs(x);
        if (z < 2.5)
        {
            // erf(z) = 2/sqrt(pi) * sum_n (-1)^n z^(2n+1) / (n! (2n+1))
            double sum = 0, term = z;
            for (int n = 0; n < 100; n++)
            {
                double add = term / (2 * n + 1);
                sum += add;
                if (Math.Abs(add) < 1e-17 * Math.Abs(sum)) break;
                term *= -z * z / (n + 1);
            }
            double e = 2 / Math.Sqrt(Math.PI) * sum;
            return x < 0 ? -e : e;
        }
        if (z > 6) return x < 0 ? -1 : 1;
        // erfc(z) = exp(-z^2)/sqrt(pi) * 1/(z + 1/2/(z + 1/(z + 3/2/(z + ...)))), evaluated by modified Lentz.
        const double tiny = 1e-300;
        double f = z, c = z, d = 0;
        for (int k = 1; k < 200; k++)
        {
            double a = k / 2.0;
            d = z + a * d; if (Math.Abs(d) < tiny) d = tiny; d = 1 / d;
            c = z + a / c; if (Math.Abs(c) < tiny) c = tiny;
            double delta = c * d;
            f *= delta;
            if (Math.Abs(delta - 1) < 1e-16) break;
        }
        double erfc = Math.Exp(-z * z) / Math.Sqrt(Math.PI) / f;
        return x < 0 ? erfc - 1 : 1 - erfc;
    }
}

/// <summary>
/// Kernels over bool masks on contiguous spans: comparisons that write a mask (the relation inlined through its static
/// interface), the logical and/or/xor of two masks, and a mask read back as 1/0 numbers. Masks are one byte per
/// element. The comparisons and the conversion have a Vector512 path for float32 and float64, because a max or min
/// reduction's gradient runs both over a whole activation (CBAM's channel and spatial max pools, every step): 16 (8)
/// lanes are compared, their all-ones masks cut to 0/1 and narrowed to bytes by one vpmovdb (vpmovqb); back, bytes are
/// widened by one vpmovzxbd (vpmovzxbq) and converted. Scalar tails, and scalar loops for the other element types.
/// Reference: Tests/Kernels/MaskKernelTests.cs (every length around the vector width against scalar loops) and
/// Tests/Engine/BoolTests.cs (float64 relations).
/// </summary>
public static unsafe class MaskKernels
{
    /// <summary>d[i] = TRel(a[i], b[i]).</summary>
    public static void Compare<T, TRel>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<bool> d) where TRel : IRelation<T>
    {
        if (a.Length < d.Length || b.Length < d.Length) throw new ArgumentException($"MaskKernels.Compare: inputs of {a.Length} and {b.Length} for {d.Length} outputs");
        int i = 0;
        if (Avx512F.IsSupported && (typeof(T) == typeof(float) || typeof(T) == typeof(double)))
        {
            ref T ra = ref MemoryMarshal.GetReference(a), rb = ref MemoryMarshal.GetReference(b);
            fixed (bool* pd = d)
                for (int n = Vector512<T>.Count; i + n <= d.Length; i += n)
                    StoreMask(TRel.Lanes(Vector512.LoadUnsafe(ref ra, (nuint)i), Vector512.LoadUnsafe(ref rb, (nuint)i)), (byte*)pd + i);
        }
        for (; i < d.Length; i++) d[i] = TRel.Holds(a[i], b[i]);
    }

    /// <summary>d[i] = TRel(a[i], b): a tensor against one (broadcast) value.</summary>
    public static void CompareScalarRight<T, TRel>(ReadOnlySpan<T> a, T b, Span<bool> d) where TRel : IRelation<T>
    {
        if (a.Length < d.Length) throw new ArgumentException($"MaskKernels.CompareScalarRight: {a.Length} inputs for {d.Length} outputs");
        int i = 0;
        if (Avx512F.IsSupported && (typeof(T) == typeof(float) || typeof(T) == typeof(double)))
        {
            ref T ra = ref MemoryMarshal.GetReference(a);
            var vb = Vector512.Create(b);
            fixed (bool* pd = d)
                for (int n = Vector512<T>.Count; i + n <= d.Length; i += n)
                    StoreMask(TRel.Lanes(Vector512.LoadUnsafe(ref ra, (nuint)i), vb), (byte*)pd + i);
        }
        for (; i < d.Length; i++) d[i] = TRel.Holds(a[i], b);
    }

    // Writes one byte per lane of an all-ones/zero lane mask: 1 or 0 (16 bytes for float32, 8 for float64).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreMask<T>(Vector512<T> lanes, byte* dst)
    {
        if (typeof(T) == typeof(float)) Avx512F.ConvertToVector128Byte(lanes.AsUInt32() & Vector512<uint>.One).Store(dst);
        else *(ulong*)dst = Avx512F.ConvertToVector128Byte(lanes.AsUInt64() & Vector512<ulong>.One).AsUInt64().ToScalar();
    }

    /// <summary>d[i] = 1 where m[i], else 0: a mask as numbers (as mask.to(dtype)).</summary>
    public static void ToNumbers<T>(ReadOnlySpan<bool> m, Span<T> d) where T : INumber<T>
    {
        if (m.Length < d.Length) throw new ArgumentException($"MaskKernels.ToNumbers: {m.Length} mask values for {d.Length} outputs");
        int i = 0;
        if (Avx512F.IsSupported && (typeof(T) == typeof(float) || typeof(T) == typeof(double)))
        {
            ref T rd = ref MemoryMarshal.GetReference(d);
            fixed (bool* pm = m)
            {
                byte* src = (byte*)pm;
                if (typeof(T) == typeof(float))
                    for (; i + 16 <= d.Length; i += 16)
                    {
                        // Any non-zero byte counts as true, as the scalar path's m[i] ? 1 : 0.
                        var bytes = Vector128.Min(Vector128.Load(src + i), Vector128<byte>.One);
                        Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(bytes)).As<float, T>().StoreUnsafe(ref rd, (nuint)i);
                    }
                else
                    for (; i + 8 <= d.Length; i += 8)
                    {
                        var bytes = Vector128.Min(Vector128.CreateScalarUnsafe(*(ulong*)(src + i)).AsByte(), Vector128<byte>.One);
                        Avx512DQ.ConvertToVector512Double(Avx512F.ConvertToVector512Int64(bytes)).As<double, T>().StoreUnsafe(ref rd, (nuint)i);
                    }
            }
        }
        for (; i < d.Length; i++) d[i] = m[i] ? T.One : T.Zero;
    }

    /// <summary>d[i] = a[i] op b[i] for op 0 (and), 1 (or), 2 (xor).</summary>
    public static void Logical(int op, ReadOnlySpan<bool> a, ReadOnlySpan<bool> b, Span<bool> d)
    {
        if (a.Length < d.Length || b.Length < d.Length) throw new ArgumentException($"MaskKernels.Logical: inputs of {a.Length} and {b.Length} for {d.Length} outputs");
        for (int i = 0; i < d.Length; i++) d[i] = op == 0 ? a[i] & b[i] : op == 1 ? a[i] | b[i] : a[i] ^ b[i];
    }
}
