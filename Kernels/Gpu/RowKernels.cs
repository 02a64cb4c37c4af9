// RowKernels (GPU): layer norm and cross-entropy, as plain one-thread-per-row
// (or per-element) kernels: correct on every ILGPU device, including OpenCL without sub-groups. Group-per-row
// versions with shared-memory reductions are the next step for speed (Softmax.cs shows the pattern).
// LayerNorm: two passes per row for mean and variance (stable), then y; backward dx per row, and dgamma/dbeta
// one thread per column summing over rows in order (deterministic). Cross-entropy: max, log-sum-exp, the
// row's (label-smoothed) loss; backward (softmax − smoothed one-hot)·g/count.
// FLOPs: ~8-20 per element. Bytes: 8-28 per element. Bound: memory (and row-serial latency for few rows).
// Reference: the CPU kernels (Tests/Gpu compare the backends).
using ILGPU;
using ILGPU.Algorithms;

namespace AttnCore.Kernels.Gpu;

/// <summary>Layer norm and cross-entropy kernels for ILGPU devices.</summary>
public static class RowKernels
{
    /// <summary>Row r: mean, 1/std and y (gamma/beta applied when hasGamma/hasBeta).</summary>
    public static void LayerNormForwardKernel(Index1D r, ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y,
        ArrayView<float> mean, ArrayView<float> rstd, int cols, float eps, int hasGamma, int hasBeta)
    {
        long o = (long)(int)r * cols;
        float mu = 0;
        for (int c = 0; c < cols; c++) mu += x[o + c];
        mu /= cols;
        float v = 0;
        for (int c = 0; c < cols; c++) { float d = x[o + c] - mu; v += d * d; }
        float rs = XMath.Rsqrt(v / cols + eps);
        mean[r] = mu; rstd[r] = rs;
        for (int c = 0; c < cols; c++)
        {
            float h = (x[o + c] - mu) * rs;
            if (hasGamma != 0) h *= gamma[c];
            if (hasBeta != 0) h += beta[c];
            y[o + c] = h;
        }
    }

    /// <summary>Row r of dx = rstd·(g − mean(g) − xhat·mean(g·xhat)), g = dy·gamma.</summary>
    public static void LayerNormBackwardKernel(Index1D r, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> mean, ArrayView<float> rstd,
        ArrayView<float> gamma, ArrayView<float> dx, int cols, int hasGamma)
    {
        long o = (long)(int)r * cols;
        float mu = mean[r], rs = rstd[r], sg = 0, sgx = 0;
        for (int c = 0; c < cols; c++)
        {
            float g = hasGamma != 0 ? dy[o + c] * gamma[c] : dy[o + c];
            sg += g; sgx += g * (x[o + c] - mu) * rs;
        }
        sg /= cols; sgx /= cols;
        for (int c = 0; c < cols; c++)
        {
            float g = hasGamma != 0 ? dy[o + c] * gamma[c] : dy[o + c];
            dx[o + c] = rs * (g - sg - (x[o + c] - mu) * rs * sgx);
        }
    }

    /// <summary>Column c: dgamma = Σ_r dy·xhat, dbeta = Σ_r dy (rows summed in order).</summary>
    public static void LayerNormParamsKernel(Index1D c, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> mean, ArrayView<float> rstd,
        ArrayView<float> dgamma, ArrayView<float> dbeta, int rows, int cols, int wantGamma, int wantBeta)
    {
        float dg = 0, db = 0;
        for (int r = 0; r < rows; r++)
        {
            long i = (long)r * cols + c;
            dg += dy[i] * (x[i] - mean[r]) * rstd[r];
            db += dy[i];
        }
        if (wantGamma != 0) dgamma[c] = dg;
        if (wantBeta != 0) dbeta[c] = db;
    }

    /// <summary>Row r: lse and the (label-smoothed) loss, 0 for ignored rows; valid[r] = 1 when counted.</summary>
    public static void CrossEntropyForwardKernel(Index1D r, ArrayView<float> logits, ArrayView<long> targets, ArrayView<float> lse, ArrayView<float> loss,
        ArrayView<float> valid, int classes, long ignoreIndex, float smoothing)
    {
        long o = (long)(int)r * classes;
        float max = logits[o];
        for (int c = 1; c < classes; c++) max = XMath.Max(max, logits[o + c]);
        float sum = 0, total = 0;
        for (int c = 0; c < classes; c++) { sum += XMath.Exp(logits[o + c] - max); total += logits[o + c]; }
        float l = max + XMath.Log(sum);
        lse[r] = l;
        long t = targets[r];
        if (t == ignoreIndex) { loss[r] = 0; valid[r] = 0; return; }
        // An out-of-range target was recorded by the index check (reported at the next sync); do not read past the row.
        if (t < 0 || t >= classes) { loss[r] = float.NaN; valid[r] = 1; return; }
        loss[r] = (1 - smoothing) * (l - logits[o + t]) + smoothing * (l - total / classes);
        valid[r] = 1;
    }

    /// <summary>
    /// One group: loss[0] = sum(rowLoss) / sum(valid) over <paramref name="rows"/> rows (NaN when nothing is kept), count[0] = sum(valid).
    /// Each thread sums a strided slice in float64-free float32 (a row loss is O(log classes), so rows up to millions stay exact
    /// to ~1e-6 relative); the group then combines the partial sums in a shared-memory tree.
    /// </summary>
    [GpuTypeArguments(typeof(Size256))]
    public static void CrossEntropyMeanKernel<TGroup>(ArrayView<float> rowLoss, ArrayView<float> valid, int rows, ArrayView<float> loss, ArrayView<float> count)
        where TGroup : struct, IKernelSize
    {
        TGroup size = default;
        var scratch = SharedMemory.Allocate<float>(size.Value);
        float l = 0, n = 0;
        for (int r = Group.IdxX; r < rows; r += Group.DimX) { l += rowLoss[r]; n += valid[r]; }
        l = Reduce.GroupAllReduce(scratch, l, Reduce.Sum);
        n = Reduce.GroupAllReduce(scratch, n, Reduce.Sum);
        if (Group.IsFirstThread) { loss[0] = n == 0 ? float.NaN : l / n; count[0] = n; }
    }

    /// <summary>Element (r, c) of dlogits = (softmax − (1−ε)[c = t] − ε/C)·gradOutput[0]/count[0]; zero for ignored rows.</summary>
    public static void CrossEntropyBackwardKernel(Index1D p, ArrayView<float> logits, ArrayView<long> targets, ArrayView<float> lse, ArrayView<float> dlogits,
        int classes, long ignoreIndex, float smoothing, ArrayView<float> gradOutput, ArrayView<float> count)
    {
        float n = count[0];
        float scale = n == 0 ? 0 : gradOutput[0] / n;
        long r = p / classes, c = p % classes;
        long t = targets[r];
        if (t == ignoreIndex) { dlogits[p] = 0; return; }
        float d = XMath.Exp(logits[p] - lse[r]) - smoothing / classes;
        if (c == t) d -= 1 - smoothing;
        dlogits[p] = d * scale;
    }
}
