// Activations: GELU and its derivative, vectorised (the other activations map to TensorPrimitives in
// Elementwise.cs: Sigmoid, Tanh and ReLU there are as fast as a hand-written loop).
//
// GELU(x) = x·Φ(x) with Φ(x) = ½(1 + erf(x/√2)) (PyTorch's default, exact form). .NET has no vector erf, so
// erf(a) for a ≥ 0 is Abramowitz-Stegun 7.1.26: 1 − q with q = t(a1 + t(a2 + t(a3 + t(a4 + t·a5))))·e^(−a²),
// t = 1/(1 + p·a), |error| < 1.5e-7. Then Φ(x) = 1 − q/2 for x ≥ 0 and q/2 for x < 0 (erf is odd), and
// GELU'(x) = Φ(x) + x·φ(x) with φ(x) = e^(−x²/2)/√(2π), reusing the same exponential.
// FLOPs: ~20 per element (one exp, one division). Bytes: 8 per element. Bound: the divide and exp throughput.
// Reference: the float64 erf series in the tests (Tests/Engine/ElementwiseTests.cs, RowKernelTests).
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;

/// <summary>Vectorised GELU forward and derivative.</summary>
public static unsafe class Activations
{
    private const float P = 0.3275911f, A1 = 0.254829592f, A2 = -0.284496736f, A3 = 1.421413741f, A4 = -1.453152027f, A5 = 1.061405429f;
    private const float InvSqrt2 = 0.70710678118654752f, InvSqrt2Pi = 0.39894228040143268f;

    /// <summary>y = GELU(x) (exact erf form). y may alias x.</summary>
    public static void Gelu(ReadOnlySpan<float> x, Span<float> y)
    {
        if (y.Length < x.Length) throw new ArgumentException($"Activations.Gelu: destination has {y.Length} elements, source {x.Length}");
        fixed (float* px = x) fixed (float* py = y) Run(px, null, py, x.Length, derivative: false);
    }

    /// <summary>y = GELU'(x) (exact erf form). y may alias x.</summary>
    public static void GeluDerivative(ReadOnlySpan<float> x, Span<float> y)
    {
        if (y.Length < x.Length) throw new ArgumentException($"Activations.Gelu: destination has {y.Length} elements, source {x.Length}");
        fixed (float* px = x) fixed (float* py = y) Run(px, null, py, x.Length, derivative: true);
    }

    /// <summary>dx = dy · GELU'(x) (exact erf form) in one pass: Gelu's backward without the derivative's temporary. dx may alias dy or x.</summary>
    public static void GeluBackward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, Span<float> dx)
    {
        if (dy.Length != x.Length || dx.Length < x.Length)
            throw new ArgumentException($"Activations.GeluBackward: gradient has {dy.Length} elements, input {x.Length}, destination {dx.Length}");
        fixed (float* pg = dy) fixed (float* px = x) fixed (float* pd = dx) Run(px, pg, pd, x.Length, derivative: true);
    }

    // y = GELU(x) or GELU'(x), times dy where dy is given (the backward): one loop at each width for all three.
    private static void Run(float* px, float* dy, float* py, int n, bool derivative)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i + 16 <= n; i += 16)
            {
                var v = Vector512.Load(px + i);
                var f = derivative ? Derivative(v) : Forward(v);
                (dy == null ? f : Vector512.Load(dy + i) * f).Store(py + i);
            }
        else if (Vector.IsHardwareAccelerated)
            for (; i + Vector<float>.Count <= n; i += Vector<float>.Count)
            {
                var v = Vector.Load(px + i);
                var (cdf, e) = CdfAndExp(v);
                var f = derivative ? Vector.MultiplyAddEstimate(v * new Vector<float>(InvSqrt2Pi), e, cdf) : v * cdf;
                (dy == null ? f : Vector.Load(dy + i) * f).Store(py + i);
            }
        for (; i < n; i++)
        {
            var (cdf, pdf) = Scalar(px[i]);
            float f = derivative ? cdf + px[i] * pdf : px[i] * cdf;
            py[i] = dy == null ? f : dy[i] * f;
        }
    }

    // Φ(x) and φ(x) for one vector: q = erfc-like tail term, e = e^(−x²/2).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<float> Cdf, Vector512<float> E) CdfAndExp(Vector512<float> x)
    {
        var a = Vector512.Abs(x) * Vector512.Create(InvSqrt2);
        var t = Vector512<float>.One / Vector512.FusedMultiplyAdd(Vector512.Create(P), a, Vector512<float>.One);
        var poly = Vector512.FusedMultiplyAdd(Vector512.Create(A5), t, Vector512.Create(A4));
        poly = Vector512.FusedMultiplyAdd(poly, t, Vector512.Create(A3));
        poly = Vector512.FusedMultiplyAdd(poly, t, Vector512.Create(A2));
        poly = Vector512.FusedMultiplyAdd(poly, t, Vector512.Create(A1));
        var e = VectorMath.ExpNonPositive(-(a * a));                  // e^(−x²/2)
        var halfQ = Vector512.Create(0.5f) * poly * t * e;
        var cdf = Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512<float>.Zero), halfQ, Vector512<float>.One - halfQ);
        return (cdf, e);
    }

    // CdfAndExp at the portable width (AVX2: 8 lanes, Arm64: 4), where Vector512 is not accelerated.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector<float> Cdf, Vector<float> E) CdfAndExp(Vector<float> x)
    {
        var a = Vector.Abs(x) * new Vector<float>(InvSqrt2);
        var t = Vector<float>.One / Vector.MultiplyAddEstimate(new Vector<float>(P), a, Vector<float>.One);
        var poly = Vector.MultiplyAddEstimate(new Vector<float>(A5), t, new Vector<float>(A4));
        poly = Vector.MultiplyAddEstimate(poly, t, new Vector<float>(A3));
        poly = Vector.MultiplyAddEstimate(poly, t, new Vector<float>(A2));
        poly = Vector.MultiplyAddEstimate(poly, t, new Vector<float>(A1));
        var e = VectorMath.ExpNonPositive(-(a * a));
        var halfQ = new Vector<float>(0.5f) * poly * t * e;
        var cdf = Vector.ConditionalSelect(Vector.LessThan(x, Vector<float>.Zero), halfQ, Vector<float>.One - halfQ);
        return (cdf, e);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Forward(Vector512<float> x) => x * CdfAndExp(x).Cdf;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Derivative(Vector512<float> x)
    {
        var (cdf, e) = CdfAndExp(x);
        return Vector512.FusedMultiplyAdd(x * Vector512.Create(InvSqrt2Pi), e, cdf);
    }

    private static (float Cdf, float Pdf) Scalar(float x)
    {
        float a = MathF.Abs(x) * InvSqrt2;
        float t = 1 / (1 + P * a);
        float e = MathF.Exp(-a * a);
        float halfQ = 0.5f * ((((A5 * t + A4) * t + A3) * t + A2) * t + A1) * t * e;
        return (x < 0 ? halfQ : 1 - halfQ, e * InvSqrt2Pi);
    }
}
