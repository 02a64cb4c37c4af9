// VectorMath: exp for the fused row kernels (softmax, cross-entropy, attention).
//
// Algorithm: exp(x) = 2^n · e^r with n = round(x·log2 e) and r = x − n·ln 2 (Cody-Waite split of ln 2 into a
// high part exact in float and a low correction), e^r by its degree-6 Taylor polynomial on |r| ≤ ln2/2
// (truncation error r^7/7! < 1.3e-7 relative), 2^n by writing n + 127 into the float's exponent bits.
// Inputs below −87.3 return exactly 0 (so a masked −inf logit contributes nothing) and inputs above 88.7
// return +inf. Cost: 9 FMA-class operations per vector, about twice the speed of Vector512.Exp, which
// also handles the full range with more care; the callers only ever pass x − max ≤ 0.
// Reference: Math.Exp in double, tested in Tests/Kernels/RowKernelTests.cs across [−120, 87] (ExpShifted, below).
// The clamps are MaxNative/MinNative and the conversion ConvertToInt32Native: .NET's Max orders NaN and −0 (about
// eight AVX2 operations instead of one vmaxps) and its float-to-int conversion saturates (a compare and a blend),
// neither needed on a clamped, rounded argument. A NaN still comes through: x86's max returns its second operand
// when either is NaN, so the clamp is written MaxNative(limit, x), and Arm's fmax returns NaN itself.
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AttnCore.Kernels.Cpu;

/// <summary>Vectorised elementary functions used inside fused kernels.</summary>
public static class VectorMath
{
    internal const float Log2E = 1.44269504088896341f;
    private const float Ln2Hi = 0.693359375f;          // ln 2 rounded to 10 bits: n·Ln2Hi is exact for |n| < 2^13
    private const float Ln2Lo = -2.12194440e-4f;       // ln 2 − Ln2Hi
    private const float MinArg = -87.33654f, MaxArg = 88.72283f;

    // 2^n · e^r for x already clamped to [MinArg, MaxArg]: the shared core of every variant below.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Core(Vector512<float> xc)
    {
        var n = Vector512.Round(xc * Vector512.Create(Log2E));
        var r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2Hi), xc);
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2Lo), r);
        var p = Vector512.Create(1f / 720);
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1f / 120));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1f / 24));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1f / 6));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(0.5f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512<float>.One);
        p = Vector512.FusedMultiplyAdd(p, r, Vector512<float>.One);
        var scale = (Vector512.ConvertToInt32Native(n) + Vector512.Create(127)) << 23;
        return p * scale.AsSingle();
    }

    /// <summary>e^x per lane (see the file header for accuracy and range).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        var result = Core(Vector512.MinNative(Vector512.MaxNative(x, Vector512.Create(MinArg)), Vector512.Create(MaxArg)));
        result = Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512.Create(MinArg)), Vector512<float>.Zero, result);
        result = Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512.Create(MaxArg)), Vector512.Create(float.PositiveInfinity), result);
        return Vector512.ConditionalSelect(Vector512.Equals(x, x), result, x);   // NaN stays NaN
    }

    /// <summary>
    /// e^x for x ≤ 0 (or −inf), the case of every x − max in softmax and attention: the overflow and NaN
    /// handling of <see cref="Exp(Vector512{float})"/> is dropped (callers check the row max for NaN once),
    /// which saves four compare/blend operations per vector. Below −87.3 the result is exactly 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> ExpNonPositive(Vector512<float> x) =>
        Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512.Create(MinArg)), Vector512<float>.Zero, Core(Vector512.MaxNative(Vector512.Create(MinArg), x)));

    /// <summary>
    /// e^(x − shift) for x ≤ shift (or a little above: attention's lazy rescaling passes up to shift + 8), computed
    /// in base 2 with the shift folded into the first FMA: t = x·log2e − shift·log2e, n = round(t), 2^(t−n) by a
    /// degree-5 minimax polynomial on |t−n| ≤ ½ (Remez, relative error 7.5e-8, 2.1e-7 evaluated in float;
    /// Tests/Fixtures/make_exp2_minimax.py computes the coefficients), times 2^n
    /// by vscalefps (Avx512F.Scale), which scales by a float exponent in one operation: about 10 vector operations
    /// instead of the 14 of exponent-bit arithmetic and a degree-6 polynomial. The one rounding of t adds a relative
    /// error of up to 1e-7·|x − shift| (half an ulp of t): 2e-6 at e^−20, where a softmax weight no longer matters.
    /// t is clamped at −160, where 2^t rounds to exactly 0 (a −inf logit contributes nothing) with no compare/blend;
    /// between e^−87.3 and e^−103 the results are denormals (gradual underflow), as in Math.Exp.
    /// Pass <paramref name="negShiftLog2e"/> = −shift·log2e.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> ExpShifted(Vector512<float> x, Vector512<float> negShiftLog2e)
    {
        var t = Vector512.MaxNative(Vector512.Create(-160f), Vector512.FusedMultiplyAdd(x, Vector512.Create(Log2E), negShiftLog2e));
        var n = Vector512.Round(t);
        var f = t - n;
        var p = Vector512.Create(1.327647245e-3f);
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(9.675540961e-3f));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(5.550713092e-2f));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(2.402212024e-1f));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(6.931469440e-1f));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(1.000000119f));
        if (Avx512F.IsSupported) return Avx512F.Scale(p, n);
        // 2^n by exponent bits: n + 127 is at least 0 only for t ≥ −127, so lower t gives 0 here too.
        var bits = Vector512.Max(Vector512.ConvertToInt32Native(n) + Vector512.Create(127), Vector512<int>.Zero) << 23;
        return p * bits.AsSingle();
    }

    // The width-portable core: Vector<float> is 8 lanes on AVX2 and 4 on Arm64's AdvSimd (and on SSE-only x64), the
    // paths the kernels take where Vector512 is not accelerated.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<float> Core(Vector<float> xc)
    {
        var n = Vector.Round(xc * new Vector<float>(Log2E));
        var r = Vector.MultiplyAddEstimate(n, new Vector<float>(-Ln2Hi), xc);
        r = Vector.MultiplyAddEstimate(n, new Vector<float>(-Ln2Lo), r);
        var p = new Vector<float>(1f / 720);
        p = Vector.MultiplyAddEstimate(p, r, new Vector<float>(1f / 120));
        p = Vector.MultiplyAddEstimate(p, r, new Vector<float>(1f / 24));
        p = Vector.MultiplyAddEstimate(p, r, new Vector<float>(1f / 6));
        p = Vector.MultiplyAddEstimate(p, r, new Vector<float>(0.5f));
        p = Vector.MultiplyAddEstimate(p, r, Vector<float>.One);
        p = Vector.MultiplyAddEstimate(p, r, Vector<float>.One);
        var scale = Vector.ShiftLeft(Vector.ConvertToInt32Native(n) + new Vector<int>(127), 23);
        return p * Vector.AsVectorSingle(scale);
    }

    /// <summary>e^x per lane at the machine's portable width (see the file header for accuracy and range).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Exp(Vector<float> x)
    {
        var result = Core(Vector.MinNative(Vector.MaxNative(x, new Vector<float>(MinArg)), new Vector<float>(MaxArg)));
        result = Vector.ConditionalSelect(Vector.LessThan(x, new Vector<float>(MinArg)), Vector<float>.Zero, result);
        result = Vector.ConditionalSelect(Vector.GreaterThan(x, new Vector<float>(MaxArg)), new Vector<float>(float.PositiveInfinity), result);
        return Vector.ConditionalSelect(Vector.Equals(x, x), result, x);
    }

    /// <summary>e^x for x ≤ 0 (or −inf) at the portable width: <see cref="ExpNonPositive(Vector512{float})"/>'s contract.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> ExpNonPositive(Vector<float> x) =>
        Vector.ConditionalSelect(Vector.LessThan(x, new Vector<float>(MinArg)), Vector<float>.Zero, Core(Vector.MaxNative(new Vector<float>(MinArg), x)));

    /// <summary>Scalar e^x with the same range rules (for tails).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Exp(float x) => x < MinArg ? 0f : MathF.Exp(x);
}
