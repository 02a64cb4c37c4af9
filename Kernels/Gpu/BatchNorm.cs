// BatchNorm (GPU): BatchNorm2d over NCHW float32 tensors viewed as [N, C, HW], the semantics of
// Kernels/Cpu/BatchNorm.cs (PyTorch's).
//
// Training forward, two launches:
//   StatsKernel      one group per channel (grid = C). Each thread folds a strided share of the channel's
//                    M = N·HW values into Σ(x − K) and Σ(x − K)², K the channel's first value (shifted data:
//                    accurate when |mean| >> std, as on the CPU); two shared-memory trees (Reduce.GroupAllReduce)
//                    combine the shares, and the first thread writes mean, invstd = 1/sqrt(var + eps) with the
//                    biased var, and moves the running statistics by momentum, the variance unbiased
//                    (var·M/(M − 1)), exactly the CPU's formula.
//   NormalizeKernel  one thread per element: y = (x − mean)·invstd·γ + β. Evaluation runs this kernel alone
//                    with the running statistics (invstd computed from the running variance).
// Backward (training), two launches: BackwardSumsKernel (one group per channel) reduces Σ dy and Σ dy·(x − mean),
// writes dβ = Σ dy and dγ = invstd·Σ dy·(x − mean), and folds
//   dx = γ·invstd/M · (M·dy − Σ dy − xhat·Σ dy·xhat)
// into per-channel coefficients dx = a·dy + b·x + c that BackwardDxKernel applies per element.
// Fused BatchNorm + ReLU (Kernels/Cpu/BatchNormRelu.cs) is the same launches with BatchNormArgs.Relu = 1: the
// normalize kernel writes max(0, y) (NaN kept), and both backward kernels read dy·[y > 0] with y the saved output.
// ReluBackwardKernel is that mask alone (dx = dy·[y > 0]) for a ReLU after any other op.
// The trees add in a fixed order: results are deterministic (unlike the atomics of ILGPU's group AllReduce).
// FLOPs: ~5 per element forward, ~8 backward. Bytes: forward reads x twice and writes y (12 per element),
// backward reads dy and x twice and writes dx (20). Bound: memory bandwidth; with few channels a GPU has
// few groups to run, which is why a channel's share is spread over a whole group.
// Reference: the SIMD CPU backend (Kernels/Cpu/BatchNorm.cs and its float64 references); Tests/Gpu/ConvGpuTests.cs.
using ILGPU;
using ILGPU.Algorithms;

namespace AttnCore.Kernels.Gpu;

/// <summary>The sizes and flags of one batch-norm launch.</summary>
public struct BatchNormArgs
{
    /// <summary>x is [N, C, HW].</summary>
    public int N, C, Hw;
    /// <summary>Running-statistics momentum and the variance epsilon.</summary>
    public float Momentum, Eps;
    /// <summary>1 when γ (or β, or the running statistics, or the parameter gradients) are present.</summary>
    public int HasGamma, HasBeta, HasRunning, WantDGamma, WantDBeta;
    /// <summary>1 for the fused BatchNorm + ReLU: the forward clamps at 0, the backward masks dy by the saved y &gt; 0.</summary>
    public int Relu;
}

/// <summary>BatchNorm2d kernels for ILGPU devices.</summary>
public static class BatchNorm
{
    /// <summary>
    /// Group per channel (grid = C, group = TGroup): batch mean and invstd of the channel, and the running
    /// statistics update when <see cref="BatchNormArgs.HasRunning"/> is 1.
    /// </summary>
    [GpuTypeArguments(typeof(Size256))]
    public static void StatsKernel<TGroup>(ArrayView<float> x, ArrayView<float> mean, ArrayView<float> invstd, ArrayView<float> runningMean, ArrayView<float> runningVar, BatchNormArgs a)
        where TGroup : struct, IKernelSize
    {
        TGroup size = default;
        var scratch = SharedMemory.Allocate<float>(size.Value);
        int ch = Grid.IdxX;
        long m = (long)a.N * a.Hw;
        float k = x[(long)ch * a.Hw];
        float s1 = 0f, s2 = 0f;
        for (long e = Group.IdxX; e < m; e += Group.DimX)
        {
            float d = x[(e / a.Hw * a.C + ch) * a.Hw + e % a.Hw] - k;
            s1 += d; s2 += d * d;
        }
        s1 = Reduce.GroupAllReduce(scratch, s1, Reduce.Sum);
        s2 = Reduce.GroupAllReduce(scratch, s2, Reduce.Sum);
        if (!Group.IsFirstThread) return;
        float shift = s1 / m, var = XMath.Max(0f, s2 / m - shift * shift), mu = k + shift;
        mean[ch] = mu;
        invstd[ch] = 1f / XMath.Sqrt(var + a.Eps);
        if (a.HasRunning != 0)
        {
            runningMean[ch] = (1 - a.Momentum) * runningMean[ch] + a.Momentum * mu;
            runningVar[ch] = (1 - a.Momentum) * runningVar[ch] + a.Momentum * var * m / (m - 1);
        }
    }

    /// <summary>
    /// Element i: y = (x − mean[c])·s·γ[c] + β[c] with s = invstd[c], or s = 1/sqrt(stat[c] + eps) when
    /// <paramref name="statIsVariance"/> is 1 (evaluation with the running variance).
    /// </summary>
    public static void NormalizeKernel(Index1D i, ArrayView<float> x, ArrayView<float> y, ArrayView<float> mean, ArrayView<float> stat,
        ArrayView<float> gamma, ArrayView<float> beta, BatchNormArgs a, int statIsVariance)
    {
        int ch = (int)(i / a.Hw % a.C);
        float s = statIsVariance != 0 ? 1f / XMath.Sqrt(stat[ch] + a.Eps) : stat[ch];
        float scale = a.HasGamma != 0 ? s * gamma[ch] : s;
        float shift = (a.HasBeta != 0 ? beta[ch] : 0f) - mean[ch] * scale;
        float v = x[i] * scale + shift;
        y[i] = a.Relu != 0 && !(v > 0f) && !XMath.IsNaN(v) ? 0f : v;
    }

    /// <summary>
    /// Group per channel: Σ dy and Σ dy·(x − mean) over the channel; writes dγ/dβ (when wanted) and the
    /// coefficients coef[3c .. 3c+2] = (a, b, c) of dx = a·dy + b·x + c.
    /// </summary>
    [GpuTypeArguments(typeof(Size256))]
    public static void BackwardSumsKernel<TGroup>(ArrayView<float> dy, ArrayView<float> y, ArrayView<float> x, ArrayView<float> mean, ArrayView<float> invstd, ArrayView<float> gamma,
        ArrayView<float> coef, ArrayView<float> dgamma, ArrayView<float> dbeta, BatchNormArgs a)
        where TGroup : struct, IKernelSize
    {
        TGroup size = default;
        var scratch = SharedMemory.Allocate<float>(size.Value);
        int ch = Grid.IdxX;
        long m = (long)a.N * a.Hw;
        float mu = mean[ch], inv = invstd[ch];
        float sdy = 0f, sdyxc = 0f;
        for (long e = Group.IdxX; e < m; e += Group.DimX)
        {
            long at = (e / a.Hw * a.C + ch) * a.Hw + e % a.Hw;
            float g = a.Relu != 0 && !(y[at] > 0f) ? 0f : dy[at];
            sdy += g; sdyxc += g * (x[at] - mu);
        }
        sdy = Reduce.GroupAllReduce(scratch, sdy, Reduce.Sum);
        sdyxc = Reduce.GroupAllReduce(scratch, sdyxc, Reduce.Sum);
        if (!Group.IsFirstThread) return;
        float sdyxhat = sdyxc * inv;
        if (a.WantDGamma != 0) dgamma[ch] = sdyxhat;
        if (a.WantDBeta != 0) dbeta[ch] = sdy;
        float gm = a.HasGamma != 0 ? gamma[ch] : 1f, kk = gm * inv / m;
        coef[3 * ch] = gm * inv;
        coef[3 * ch + 1] = -kk * inv * sdyxhat;
        coef[3 * ch + 2] = kk * (inv * sdyxhat * mu - sdy);
    }

    /// <summary>
    /// Element i: dx = a·dy + b·x + c with the channel's coefficients from <see cref="BackwardSumsKernel{TGroup}"/>,
    /// dy masked by y &gt; 0 when <paramref name="relu"/> is 1.
    /// </summary>
    public static void BackwardDxKernel(Index1D i, ArrayView<float> dy, ArrayView<float> y, ArrayView<float> x, ArrayView<float> coef, ArrayView<float> dx, int c, int hw, int relu)
    {
        int ch = (int)(i / hw % c);
        float g = relu != 0 && !(y[i] > 0f) ? 0f : dy[i];
        dx[i] = coef[3 * ch] * g + (coef[3 * ch + 1] * x[i] + coef[3 * ch + 2]);
    }

    /// <summary>Element i: y = max(0, a + b), NaN kept (the fused residual add and ReLU, Kernels/Cpu/AddRelu.cs).</summary>
    public static void AddReluKernel(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y)
    {
        float v = a[i] + b[i];
        y[i] = !(v > 0f) && !XMath.IsNaN(v) ? 0f : v;
    }

    /// <summary>Element i: dx = dy where the ReLU's output y &gt; 0, else 0.</summary>
    public static void ReluBackwardKernel(Index1D i, ArrayView<float> dy, ArrayView<float> y, ArrayView<float> dx) => dx[i] = y[i] > 0f ? dy[i] : 0f;
}
