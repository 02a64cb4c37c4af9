// RowKernels (GPU): the layer-norm parameter gradients and the cross-entropy mean and backward pass, as
// one-thread-per-column/element (or one-group) kernels: correct on every ILGPU device,
// including OpenCL without sub-groups. The per-row kernels (layer norm forward/backward, cross-entropy forward)
// are team-per-row kernels in LayerNorm.cs and CrossEntropy.cs.
// LayerNormParams: dgamma/dbeta in two stages, partial sums over chunks of rows (a thread per chunk and column),
// then a thread per column adding its chunks in order (deterministic: the chunking depends only on the shape).
// Cross-entropy: the mean of the row losses over kept rows; backward (softmax − smoothed one-hot)·g/count.
// FLOPs: ~8-20 per element. Bytes: 8-28 per element. Bound: memory (and row-serial latency for few columns).
// Reference: the CPU kernels (Tests/Gpu compare the backends).
using ILGPU;
using ILGPU.Algorithms;

namespace AttnCore.Kernels.Gpu;

/// <summary>Layer norm and cross-entropy kernels for ILGPU devices.</summary>
public static class RowKernels
{
    /// <summary>
    /// Stage 1 of dgamma/dbeta: thread p = k·cols + c sums rows [k·chunk, (k+1)·chunk) of column c, writing
    /// Σ dy·xhat to partial[p] and Σ dy to partial[chunks·cols + p]. A thread per column alone would leave a GPU
    /// with only `cols` threads walking all rows (B·T of them in a Transformer); chunks of rows give it
    /// `chunks·cols` threads, neighbouring threads still read neighbouring columns (coalesced).
    /// </summary>
    public static void LayerNormParamsPartialKernel(Index1D p, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> mean, ArrayView<float> rstd,
        ArrayView<float> partial, int rows, int cols, int chunk)
    {
        int c = p % cols, k = p / cols;
        int end = XMath.Min(rows, (k + 1) * chunk);
        float dg = 0, db = 0;
        for (int r = k * chunk; r < end; r++)
        {
            long i = (long)r * cols + c;
            dg += dy[i] * (x[i] - mean[r]) * rstd[r];
            db += dy[i];
        }
        long chunks = (rows + chunk - 1) / chunk;
        partial[p] = dg;
        partial[chunks * cols + p] = db;
    }

    /// <summary>Stage 2: column c adds its <paramref name="chunks"/> partial sums in order (deterministic for a given shape).</summary>
    public static void LayerNormParamsFinishKernel(Index1D c, ArrayView<float> partial, ArrayView<float> dgamma, ArrayView<float> dbeta,
        int chunks, int cols, int wantGamma, int wantBeta)
    {
        float dg = 0, db = 0;
        for (int k = 0; k < chunks; k++)
        {
            dg += partial[(long)k * cols + c];
            db += partial[(long)(chunks + k) * cols + c];
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
