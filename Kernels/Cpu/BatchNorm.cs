// BatchNorm: per-channel normalisation of NCHW tensors (Ioffe and Szegedy 2015), PyTorch semantics.
//
// Training: for each channel c over its M = N·H·W values, one fused pass accumulates the sum and the sum of
// squares of (x − K) with K the channel's first value (shifted data: accurate when |mean| >> std), giving
// mean and the biased variance; y = (x − mean)·invstd·γ + β with invstd = 1/sqrt(var + eps). The running
// statistics move by momentum, the running variance with the unbiased estimate (var·M/(M−1)), as PyTorch.
// Evaluation: the running statistics replace the batch ones.
// Backward (training): with xhat = (x − mean)·invstd,
//   dβ = Σ dy,  dγ = Σ dy·xhat,  dx = γ·invstd/M · (M·dy − Σ dy − xhat·Σ dy·xhat).
// FLOPs: ~8 per element each way. Bytes: two reads of x forward, three of x/dy backward. Bound: memory.
// Reference: the float64 loops in Tests/Kernels/ConvPoolNormTests.cs.
using System.Numerics;

namespace AttnCore.Kernels.Cpu;

/// <summary>BatchNorm2d kernels (channels are independent).</summary>
public static class BatchNorm
{
    private static void Check(string op, int n, int c, int hw, int xLen, int yLen)
    {
        if (n < 0 || c <= 0 || hw <= 0) throw new ArgumentException($"{op}: invalid sizes N={n} C={c} HW={hw}");
        long need = (long)n * c * hw;
        if (xLen < need || yLen < need) throw new ArgumentException($"{op}: spans of {xLen} and {yLen} elements are shorter than N·C·H·W = {need}");
    }

    /// <summary>
    /// Training-mode forward: writes y, the batch mean and invstd per channel (for backward), and updates the
    /// running statistics (when not empty) with <paramref name="momentum"/>.
    /// </summary>
    public static void ForwardTraining<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta, Span<T> y, Span<T> mean, Span<T> invstd,
        Span<T> runningMean, Span<T> runningVar, int n, int c, int hw, T momentum, T eps) where T : unmanaged, IFloatingPointIeee754<T>
    {
        Check("BatchNorm.ForwardTraining", n, c, hw, x.Length, y.Length);
        long m = (long)n * hw;
        if (m < 2) throw new ArgumentException($"BatchNorm.ForwardTraining: needs more than one value per channel in training mode, got N·H·W = {m}");
        for (int ch = 0; ch < c; ch++)
        {
            T k = x[ch * hw], s1 = T.Zero, s2 = T.Zero;
            for (int b = 0; b < n; b++)
                foreach (var v in x.Slice((b * c + ch) * hw, hw)) { T d = v - k; s1 += d; s2 += d * d; }
            T mm = T.CreateTruncating(m);
            T shift = s1 / mm;
            T var = T.Max(T.Zero, s2 / mm - shift * shift);
            T mu = k + shift, inv = T.One / T.Sqrt(var + eps);
            mean[ch] = mu; invstd[ch] = inv;
            if (!runningMean.IsEmpty) runningMean[ch] = (T.One - momentum) * runningMean[ch] + momentum * mu;
            if (!runningVar.IsEmpty) runningVar[ch] = (T.One - momentum) * runningVar[ch] + momentum * var * mm / (mm - T.One);
            Normalize(x, y, n, c, hw, ch, mu, inv, gamma, beta);
        }
    }

    /// <summary>Evaluation-mode forward with the running statistics.</summary>
    public static void ForwardInference<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta, Span<T> y, ReadOnlySpan<T> runningMean, ReadOnlySpan<T> runningVar,
        int n, int c, int hw, T eps) where T : unmanaged, IFloatingPointIeee754<T>
    {
        Check("BatchNorm.ForwardInference", n, c, hw, x.Length, y.Length);
        for (int ch = 0; ch < c; ch++) Normalize(x, y, n, c, hw, ch, runningMean[ch], T.One / T.Sqrt(runningVar[ch] + eps), gamma, beta);
    }

    private static void Normalize<T>(ReadOnlySpan<T> x, Span<T> y, int n, int c, int hw, int ch, T mu, T inv, ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta) where T : unmanaged, IFloatingPointIeee754<T>
    {
        T g = gamma.IsEmpty ? T.One : gamma[ch], bb = beta.IsEmpty ? T.Zero : beta[ch];
        T scale = inv * g, shift = bb - mu * scale;
        for (int b = 0; b < n; b++)
        {
            var src = x.Slice((b * c + ch) * hw, hw);
            var dst = y.Slice((b * c + ch) * hw, hw);
            for (int i = 0; i < hw; i++) dst[i] = src[i] * scale + shift;
        }
    }

    /// <summary>Training-mode backward: dx, and dγ/dβ when not empty (all overwritten).</summary>
    public static void Backward<T>(ReadOnlySpan<T> dy, ReadOnlySpan<T> x, ReadOnlySpan<T> mean, ReadOnlySpan<T> invstd, ReadOnlySpan<T> gamma,
        Span<T> dx, Span<T> dgamma, Span<T> dbeta, int n, int c, int hw) where T : unmanaged, IFloatingPointIeee754<T>
    {
        Check("BatchNorm.Backward", n, c, hw, x.Length, dx.Length);
        T m = T.CreateTruncating((long)n * hw);
        for (int ch = 0; ch < c; ch++)
        {
            T mu = mean[ch], inv = invstd[ch], sdy = T.Zero, sdyx = T.Zero;
            for (int b = 0; b < n; b++)
            {
                var xs = x.Slice((b * c + ch) * hw, hw); var ds = dy.Slice((b * c + ch) * hw, hw);
                for (int i = 0; i < hw; i++) { sdy += ds[i]; sdyx += ds[i] * (xs[i] - mu) * inv; }
            }
            if (!dgamma.IsEmpty) dgamma[ch] = sdyx;
            if (!dbeta.IsEmpty) dbeta[ch] = sdy;
            T g = gamma.IsEmpty ? T.One : gamma[ch];
            T k = g * inv / m;
            for (int b = 0; b < n; b++)
            {
                var xs = x.Slice((b * c + ch) * hw, hw); var ds = dy.Slice((b * c + ch) * hw, hw); var o = dx.Slice((b * c + ch) * hw, hw);
                for (int i = 0; i < hw; i++) o[i] = k * (m * ds[i] - sdy - (xs[i] - mu) * inv * sdyx);
            }
        }
    }
}
