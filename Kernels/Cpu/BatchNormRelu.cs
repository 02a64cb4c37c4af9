// BatchNorm + ReLU fused: y = max(0, BN(x)) over NCHW tensors, and its gradient, without the intermediate BN output.
//
// Forward (training): the statistics pass of BatchNorm.cs (shifted Σ(x − K), Σ(x − K)² per channel), then ONE
// pass writes y = max(0, x·scale + shift) (scale = γ·invstd, shift = β − mean·scale); evaluation is that pass alone
// with the running statistics. The unfused pair writes BN's output, reads it back for ReLU and writes again.
// Backward: with the mask m = [y > 0] read from the saved output (no bool tensor, no conversion) and dz = dy·m the
// gradient at BN's output, the BN backward of BatchNorm.cs runs on dz without materialising it:
//   Σ dz and Σ dz·(x − mean) in the reduction pass (reads dy, y, x), then dx = a·dz + b·x + c in the final pass,
//   dγ = invstd·Σ dz·(x − mean), dβ = Σ dz.
// The unfused pair instead writes dz (ReLU backward: mask, convert, multiply) and BN backward reads it twice.
// ReluBackward is the same mask alone, for a ReLU that follows anything else: dx = dy·[y > 0] in one pass.
// y > 0 is false for NaN and for ±0, so a NaN output passes no gradient, as PyTorch's threshold_backward.
// FLOPs: ~6 per element forward, ~10 backward. Bytes per float element: forward 12 (reads x twice, writes y) against
// 12 + 8 unfused; backward 28 (reads dy, y, x twice, writes dx) against 20 for BN's backward plus about 22 for a ReLU
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
    /// Training-mode backward of the fused BatchNorm + ReLU from its saved output <paramref name="y"/> (the mask y &gt; 0),
    /// the input x and the saved mean and invstd: dx (overwritten), and dγ/dβ (overwritten) when not empty.
    /// </summary>
    public static void BackwardRelu<T>(ReadOnlySpan<T> dy, ReadOnlySpan<T> x, ReadOnlySpan<T> y, ReadOnlySpan<T> mean, ReadOnlySpan<T> invstd, ReadOnlySpan<T> gamma,
        Span<T> dx, Span<T> dgamma, Span<T> dbeta, int n, int c, int hw) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (y.IsEmpty && (long)n * c * hw > 0) throw new ArgumentException($"BatchNorm.BackwardRelu: the saved output y is empty, needs N·C·HW = {(long)n * c * hw} (N={n} C={c} HW={hw})");
        BackwardCore("BatchNorm.BackwardRelu", dy, x, y, mean, invstd, gamma, dx, dgamma, dbeta, n, c, hw);
    }

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

    // What the backward passes read as the gradient at BN's output, given dy and the pointer y at the same element.
    private interface IDyMask<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        static abstract Vector512<T> Apply(Vector512<T> dy, T* y);
        static abstract Vector256<T> Apply(Vector256<T> dy, T* y);
        static abstract T Apply(T dy, T* y);
    }

    // Plain batch norm: dy itself (y is not read and may be null).
    private readonly struct NoMask<T> : IDyMask<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public static Vector512<T> Apply(Vector512<T> dy, T* y) => dy;
        public static Vector256<T> Apply(Vector256<T> dy, T* y) => dy;
        public static T Apply(T dy, T* y) => dy;
    }

    // Fused ReLU: dy where the saved output y > 0, else 0 (the compare's all-ones lanes select dy bit for bit).
    private readonly struct PositiveOutputMask<T> : IDyMask<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public static Vector512<T> Apply(Vector512<T> dy, T* y) => MaskLanes<T>.Apply(dy, Vector512.Load(y));
        public static Vector256<T> Apply(Vector256<T> dy, T* y) => MaskLanes<T>.Apply(dy, Vector256.Load(y));
        public static T Apply(T dy, T* y) => MaskLanes<T>.Apply(dy, *y);
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
