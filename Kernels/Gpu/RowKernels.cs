// RowKernels (GPU): the layer-norm parameter gradients, as one-thread-per-column kernels: correct on every ILGPU
// device, including OpenCL without sub-groups. The per-row kernels (layer norm forward/backward) are team-per-row
// kernels in LayerNorm.cs; cross-entropy has its own file (CrossEntropy.cs).
// LayerNormParams: dgamma/dbeta in two stages, partial sums over chunks of rows (a thread per chunk and column),
// then a thread per column adding its chunks in order (deterministic: the chunking depends only on the shape).
// FLOPs: ~8-20 per element. Bytes: 8-28 per element. Bound: memory (and row-serial latency for few columns).
// Reference: the CPU kernels (Tests/Gpu compare the backends).
using ILGPU;
using ILGPU.Algorithms;

namespace AttnCore.Kernels.Gpu;

/// <summary>Layer-norm parameter-gradient kernels for ILGPU devices.</summary>
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
}
