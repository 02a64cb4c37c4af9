// LayerNorm (GPU): y = (x - mean) / sqrt(var + eps) * gamma + beta over each contiguous row of [rows, cols],
// and its input gradient. One team (a warp or a group, see RowTeam.cs) per row.
//
// Forward: the team sums its strided share of the row and all-reduces it (mean), then does the same for
// sum (x - mean)^2 (two passes, as the CPU kernel: stable for rows with a large mean), and writes y; lane 0
// stores mean and rstd = 1/sqrt(var + eps) for the backward pass.
// Backward: with g = dy * gamma and xhat = (x - mean) * rstd, dx = rstd * (g - mean(g) - xhat * mean(g * xhat)):
// two all-reduces (sum g, sum g * xhat) and one pass writing dx. dgamma/dbeta sum over rows, a column
// reduction: RowKernels.LayerNormParamsKernel, one thread per column.
// Residual add fused in (p.HasResidual): the rows normalised are x + residual, written to sum by the first pass;
// every later pass of a lane reads back only the elements that lane wrote, so no barrier is needed. The backward's
// addend (p.HasAddend): dx = addend + the gradient, the input's gradient from its other consumer added in the same pass.
// FLOPs: ~8 per element forward, ~12 backward. Bytes: forward reads x three times and writes y (16 bytes
// per element; the re-reads hit cache), backward reads dy and x twice and writes dx. Bound: memory bandwidth.
// Reference: the CPU backend's LayerNorm (Kernels/Cpu/LayerNorm.cs), compared in Tests/Gpu.
using ILGPU;
using ILGPU.Algorithms;

namespace AttnCore.Kernels.Gpu;

/// <summary>The scalar arguments of the layer-norm kernels, packed into one.</summary>
public struct LayerNormArgs
{
    /// <summary>Rows and the normalised length.</summary>
    public int Rows, Cols;
    /// <summary>Added to the variance.</summary>
    public float Eps;
    /// <summary>1 when gamma (beta) is given: y = xhat * gamma + beta.</summary>
    public int HasGamma, HasBeta;
    /// <summary>1 when the forward normalises x + residual (written to sum) / the backward adds an addend to dx.</summary>
    public int HasResidual, HasAddend;
}

/// <summary>Layer norm over rows, one team per row.</summary>
public static class LayerNorm
{
    /// <summary>
    /// Row r: mean[r], rstd[r] and y (gamma/beta applied when p.HasGamma/p.HasBeta are 1); with p.HasResidual, of the
    /// row x + residual, which is written to sum.
    /// </summary>
    [GpuTypeArguments(typeof(WarpTeam), typeof(Size256))]
    public static void ForwardKernel<TTeam, TGroup>(ArrayView<float> x, ArrayView<float> residual, ArrayView<float> sum, ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y,
        ArrayView<float> mean, ArrayView<float> rstd, LayerNormArgs p)
        where TTeam : struct, IRowTeam
        where TGroup : struct, IKernelSize
    {
        TGroup size = default;
        TTeam team = default;
        var scratch = SharedMemory.Allocate<float>(size.Value);
        var row = TeamRow.Of(team.Row, p.Rows, p.Cols);
        int r = row.Index, cols = row.Length;
        long o = (long)r * cols;
        int lane = team.Lane, step = team.Width;

        float total = 0;
        for (int c = lane; c < cols; c += step)
        {
            float v = x[o + c];
            if (p.HasResidual != 0) { v += residual[o + c]; sum[o + c] = v; }
            total += v;
        }
        float mu = team.AllReduce(scratch, total, Reduce.Sum) / p.Cols;
        float sq = 0;
        for (int c = lane; c < cols; c += step) { float d = (p.HasResidual != 0 ? sum[o + c] : x[o + c]) - mu; sq += d * d; }
        float rs = XMath.Rsqrt(team.AllReduce(scratch, sq, Reduce.Sum) / p.Cols + p.Eps);
        if (lane == 0 && row.Active) { mean[r] = mu; rstd[r] = rs; }
        for (int c = lane; c < cols; c += step)
        {
            float h = ((p.HasResidual != 0 ? sum[o + c] : x[o + c]) - mu) * rs;
            if (p.HasGamma != 0) h *= gamma[c];
            if (p.HasBeta != 0) h += beta[c];
            y[o + c] = h;
        }
    }

    /// <summary>
    /// Row r of dx = rstd·(g − mean(g) − xhat·mean(g·xhat)), g = dy·gamma (dy alone when p.HasGamma is 0), plus
    /// addend when p.HasAddend is 1 (dx may be the addend).
    /// </summary>
    [GpuTypeArguments(typeof(WarpTeam), typeof(Size256))]
    public static void BackwardKernel<TTeam, TGroup>(ArrayView<float> dy, ArrayView<float> x, ArrayView<float> mean, ArrayView<float> rstd,
        ArrayView<float> gamma, ArrayView<float> addend, ArrayView<float> dx, LayerNormArgs p)
        where TTeam : struct, IRowTeam
        where TGroup : struct, IKernelSize
    {
        TGroup size = default;
        TTeam team = default;
        var scratch = SharedMemory.Allocate<float>(size.Value);
        var row = TeamRow.Of(team.Row, p.Rows, p.Cols);
        int r = row.Index, cols = row.Length;
        long o = (long)r * cols;
        int lane = team.Lane, step = team.Width;
        float mu = mean[r], rs = rstd[r], sg = 0, sgx = 0;
        for (int c = lane; c < cols; c += step)
        {
            float g = p.HasGamma != 0 ? dy[o + c] * gamma[c] : dy[o + c];
            sg += g; sgx += g * (x[o + c] - mu) * rs;
        }
        sg = team.AllReduce(scratch, sg, Reduce.Sum) / p.Cols;
        sgx = team.AllReduce(scratch, sgx, Reduce.Sum) / p.Cols;
        for (int c = lane; c < cols; c += step)
        {
            float g = p.HasGamma != 0 ? dy[o + c] * gamma[c] : dy[o + c];
            float v = rs * (g - sg - (x[o + c] - mu) * rs * sgx);
            dx[o + c] = p.HasAddend != 0 ? v + addend[o + c] : v;
        }
    }
}
