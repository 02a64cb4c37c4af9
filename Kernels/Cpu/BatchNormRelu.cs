// BatchNorm + ReLU fused: y = max(0, BN(x)) over NCHW tensors, and its gradient, without the intermediate BN output.
//
// Forward (training): the statistics pass of BatchNorm.cs (shifted Σ(x − K), Σ(x − K)² per channel), then ONE
// pass writes y = max(0, x·scale + shift) (scale = γ·invstd, shift = β − mean·scale); evaluation is that pass alone
// with the running statistics. The unfused pair writes BN's output, reads it back for ReLU and writes again.
// Backward: with the mask m = [x·scale + shift > 0] recomputed from x and dz = dy·m the gradient at BN's output, the
// BN backward of BatchNorm.cs runs on dz without materialising it:
//   Σ dz and Σ dz·(x − mean) in the reduction pass (reads dy, x), then dx = a·dz + b·x + c in the final pass,
//   dγ = invstd·Σ dz·(x − mean), dβ = Σ dz.
// The forward normalises with the mean and invstd as stored (rounded to T) and the backward recomputes scale and shift
// from the same values with the same operations, so m is the forward's [y > 0] bit for bit without reading y: reading
// the saved output (the kernel's first form) made the backward 1.6x slower at ResNet-20's first stage and 2x at its
// second (one more stream in each pass).
// The unfused pair instead writes dz (ReLU backward: mask, convert, multiply) and BN backward reads it twice.
// ReluBackward is the same mask alone, for a ReLU that follows anything else: dx = dy·[y > 0] in one pass.
// y > 0 is false for NaN and for ±0, so a NaN output passes no gradient, as PyTorch's threshold_backward.
// FLOPs: ~6 per element forward, ~14 backward. Bytes per float element: forward 12 (reads x twice, writes y) against
// 12 + 8 unfused; backward 20 (reads dy, x twice, writes dx), as BN's own backward, against 20 plus about 22 for a ReLU
// backward that writes a bool mask, converts it and multiplies. Bound: memory bandwidth.
// Reference: ForwardReluReference / BackwardReluReference (float64, the textbook two-pass formulas), compared in
// Tests/Kernels/BatchNormReluTests.cs at lengths around the vector widths.
using System.Numerics;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;

public static unsafe partial class BatchNorm
{
    /// <summary>
    /// Training-mode fused BatchNorm + ReLU: y = max(0, BN(x)) with the batch statistics; writes the batch mean and
    /// invstd per channel (for backward) and updates the running statistics (when not empty) as
    /// <see cref="ForwardTraining{T}"/> does. gamma/beta may be empty.
    /// </summary>
    public static void ForwardTrainingRelu<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta, Span<T> y, Span<T> mean, Span<T> invstd,
        Span<T> runningMean, Span<T> runningVar, int n, int c, int hw, T momentum, T eps) where T : unmanaged, IFloatingPointIeee754<T>
        => ForwardTrainingCore("BatchNorm.ForwardTrainingRelu", true, x, gamma, beta, y, mean, invstd, runningMean, runningVar, n, c, hw, momentum, eps);

    /// <summary>Evaluation-mode fused BatchNorm + ReLU: y = max(0, (x − runningMean)/sqrt(runningVar + eps)·γ + β).</summary>
    public static void ForwardInferenceRelu<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta, Span<T> y, ReadOnlySpan<T> runningMean, ReadOnlySpan<T> runningVar,
        int n, int c, int hw, T eps) where T : unmanaged, IFloatingPointIeee754<T>
        => ForwardInferenceCore("BatchNorm.ForwardInferenceRelu", true, x, gamma, beta, y, runningMean, runningVar, n, c, hw, eps);

    /// <summary>
    /// Training-mode backward of the fused BatchNorm + ReLU from the input x, the saved mean and invstd, γ and β:
    /// dx (overwritten), and dγ/dβ (overwritten) when not empty. The ReLU's mask, x·scale + shift &gt; 0, is recomputed
    /// from x with the forward's scale and shift (<see cref="ForwardTrainingRelu"/> normalises with the statistics as
    /// stored), so it is the forward output's y &gt; 0 bit for bit without reading y.
    /// </summary>
    public static void BackwardRelu<T>(ReadOnlySpan<T> dy, ReadOnlySpan<T> x, ReadOnlySpan<T> mean, ReadOnlySpan<T> invstd, ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta,
        Span<T> dx, Span<T> dgamma, Span<T> dbeta, int n, int c, int hw) where T : unmanaged, IFloatingPointIeee754<T>
        => BackwardCore("BatchNorm.BackwardRelu", true, dy, x, mean, invstd, gamma, beta, dx, dgamma, dbeta, n, c, hw);

    /// <summary>ReLU backward from the ReLU's output: dx = dy where y &gt; 0, else 0 (one pass; dx may alias dy).</summary>
    public static void ReluBackward<T>(ReadOnlySpan<T> dy, ReadOnlySpan<T> y, Span<T> dx) where T : unmanaged, IFloatingPointIeee754<T>
        => Zip.Run<T, MaskLanes<T>>("BatchNorm.ReluBackward", ("dy", "y", "dx"), dy, y, dx);

    // (dy, y) -> dy·[y > 0], for the Zip driver
    private readonly struct MaskLanes<T> : Zip.IOp<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public static Vector512<T> Apply(Vector512<T> dy, Vector512<T> y) => dy & Vector512.GreaterThan(y, Vector512<T>.Zero);
        public static Vector256<T> Apply(Vector256<T> dy, Vector256<T> y) => dy & Vector256.GreaterThan(y, Vector256<T>.Zero);
        public static T Apply(T dy, T y) => y > T.Zero ? dy : T.Zero;
    }

    // What the forward pass writes, given the normalised value v = x·scale + shift.
    private interface IOutputActivation<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        static abstract Vector512<T> Apply(Vector512<T> v);
        static abstract Vector256<T> Apply(Vector256<T> v);
        static abstract T Apply(T v);
    }

    // Plain batch norm: v itself.
    private readonly struct IdentityOutput<T> : IOutputActivation<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public static Vector512<T> Apply(Vector512<T> v) => v;
        public static Vector256<T> Apply(Vector256<T> v) => v;
        public static T Apply(T v) => v;
    }

    // Fused ReLU: max(0, v); NaN stays NaN (Vector.Max and T.Max propagate it), as the ReLU op.
    private readonly struct ReluOutput<T> : IOutputActivation<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public static Vector512<T> Apply(Vector512<T> v) => Vector512.Max(v, Vector512<T>.Zero);
        public static Vector256<T> Apply(Vector256<T> v) => Vector256.Max(v, Vector256<T>.Zero);
        public static T Apply(T v) => T.Max(v, T.Zero);
    }

    // What the backward passes read as the gradient at BN's output, given dy, x and the channel's scale and shift.
    private interface IDyMask<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        static abstract Vector512<T> Apply(Vector512<T> dy, Vector512<T> x, Vector512<T> scale, Vector512<T> shift);
        static abstract Vector256<T> Apply(Vector256<T> dy, Vector256<T> x, Vector256<T> scale, Vector256<T> shift);
        static abstract T Apply(T dy, T x, T scale, T shift);
    }

    // Plain batch norm: dy itself.
    private readonly struct NoMask<T> : IDyMask<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public static Vector512<T> Apply(Vector512<T> dy, Vector512<T> x, Vector512<T> scale, Vector512<T> shift) => dy;
        public static Vector256<T> Apply(Vector256<T> dy, Vector256<T> x, Vector256<T> scale, Vector256<T> shift) => dy;
        public static T Apply(T dy, T x, T scale, T shift) => dy;
    }

    // Fused ReLU: dy where the forward's v = x·scale + shift is > 0 (then y = max(0, v) > 0 too), else 0. v is
    // computed with the same operations as ScaleShift's (a product, then a sum: not an FMA), vector for vector and in
    // the scalar tail, so the mask is the forward's exactly; reading the saved output instead had cost a third of the
    // backward's time (one more stream in each of its two passes).
    private readonly struct PositiveAffineMask<T> : IDyMask<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public static Vector512<T> Apply(Vector512<T> dy, Vector512<T> x, Vector512<T> scale, Vector512<T> shift) => MaskLanes<T>.Apply(dy, x * scale + shift);
        public static Vector256<T> Apply(Vector256<T> dy, Vector256<T> x, Vector256<T> scale, Vector256<T> shift) => MaskLanes<T>.Apply(dy, x * scale + shift);
        public static T Apply(T dy, T x, T scale, T shift) => MaskLanes<T>.Apply(dy, x * scale + shift);
    }

    // ---- float64 references ----

    /// <summary>Training-mode fused BatchNorm + ReLU in float64: max(0, BN(x)) from <see cref="ForwardTrainingReference"/>.</summary>
    public static double[] ForwardReluReference(ReadOnlySpan<double> x, ReadOnlySpan<double> gamma, ReadOnlySpan<double> beta, int n, int c, int hw, double eps)
    {
        var y = ForwardTrainingReference(x, gamma, beta, n, c, hw, eps).Y;
        for (int i = 0; i < y.Length; i++) y[i] = Math.Max(y[i], 0);
        return y;
    }

    /// <summary>
    /// Gradients of max(0, BN(x)) in float64 with the statistics recomputed from x: the ReLU's mask from the
    /// reference forward, then <see cref="BackwardReference"/> on the masked gradient.
    /// </summary>
    public static (double[] Dx, double[] DGamma, double[] DBeta) BackwardReluReference(ReadOnlySpan<double> dy, ReadOnlySpan<double> x, ReadOnlySpan<double> gamma,
        ReadOnlySpan<double> beta, int n, int c, int hw, double eps)
    {
        var z = ForwardTrainingReference(x, gamma, beta, n, c, hw, eps).Y;
        var masked = new double[z.Length];
        for (int i = 0; i < z.Length; i++) masked[i] = z[i] > 0 ? dy[i] : 0;
        return BackwardReference(masked, x, gamma, n, c, hw, eps);
    }
}
