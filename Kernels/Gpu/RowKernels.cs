// RowKernels (GPU): the layer-norm parameter gradients and the cross-entropy mean and backward pass, as
// one-thread-per-column/element (or one-group) kernels: correct on every ILGPU device,
// including OpenCL without sub-groups. The per-row kernels (layer norm forward/backward, cross-entropy forward)
// are team-per-row kernels in LayerNorm.cs and CrossEntropy.cs.
// LayerNormParams: dgamma/dbeta one thread per column summing over rows in order (deterministic).
// Cross-entropy: the mean of the row losses over kept rows; backward (softmax − smoothed one-hot)·g/count.
// FLOPs: ~8-20 per element. Bytes: 8-28 per element. Bound: memory (and row-serial latency for few columns).
// Reference: the CPU kernels (Tests/Gpu compare the backends).
using ILGPU;
using ILGPU.Algorithms;

namespace AttnCore.Kernels.Gpu;

/// <summary>Layer norm and cross-entropy kernels for ILGPU devices.</summary>
public static class RowKernels
{
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
