// Softmax (GPU): softmax or log-softmax of each contiguous row of a [rows, cols] float32 matrix.
//
// Versions:
//   RowKernel<WarpTeam>   one warp per row, reductions by shuffle butterfly (rows up to ~1k columns, on
//                         devices with warp shuffles: CUDA, the CPU accelerator).
//   RowKernel<GroupTeam>  one group per row, reductions by a shared-memory tree (long rows, and every
//                         OpenCL device: PoCL has no sub-groups). See RowTeam.cs for the trade-off.
// Algorithm (both): three passes over the row, each thread taking every Width-th element: (1) the row max
// m (an all-reduce), (2) s = sum exp(x - m) (another all-reduce), (3) write exp(x - m) / s, or
// x - m - log s for log-softmax. Subtracting the max keeps exp in range (TensorPrimitives.SoftMax does
// not, see KERNEL-NOTES.md); a NaN anywhere in a row makes the whole row NaN, as in PyTorch; -inf entries
// give 0 (log-softmax: -inf) and a row of only -inf gives NaN, as in PyTorch.
// FLOPs: ~4 per element plus one exp (two exps for softmax: pass 2 and 3). Bytes: the row is read three
// times and written once (12 + 4 bytes per element; the re-reads hit cache for rows that fit).
// Bound: memory bandwidth on a GPU; thread scheduling on the CPU accelerator (correctness only).
// Reference: the float64 references in Tests/Gpu/IlgpuBackendTests.cs and Tests/Gpu/GemmRowsGpuTests.cs.
using ILGPU;
using ILGPU.Algorithms;

namespace AttnCore.Kernels.Gpu;

/// <summary>Row softmax, one team (a warp or a group) per row.</summary>
public static class Softmax
{
    /// <summary>
    /// dst[r, :] = softmax(src[r, :]) (log-softmax when <paramref name="log"/> is 1) for <paramref name="rows"/>
    /// contiguous rows of <paramref name="cols"/> &gt; 0. <typeparamref name="TGroup"/> is the group size (shared scratch).
    /// </summary>
    [GpuTypeArguments(typeof(WarpTeam), typeof(Size256))]
    public static void RowKernel<TTeam, TGroup>(ArrayView<float> src, ArrayView<float> dst, int rows, int cols, int log)
        where TTeam : struct, IRowTeam
        where TGroup : struct, IKernelSize
    {
        TGroup size = default;
        TTeam team = default;
        var scratch = SharedMemory.Allocate<float>(size.Value);
        var claimed = TeamRow.Of(team.Row, rows, cols);
        int row = claimed.Index;
        cols = claimed.Length;
        long start = (long)row * cols;
        int lane = team.Lane, step = team.Width;

        float m = float.NegativeInfinity;
        for (int j = lane; j < cols; j += step) m = Reduce.Combine(Reduce.Max, m, src[start + j]);
        m = team.AllReduce(scratch, m, Reduce.Max);

        float s = 0f;
        for (int j = lane; j < cols; j += step) s += XMath.Exp(src[start + j] - m);
        s = team.AllReduce(scratch, s, Reduce.Sum);

        if (log != 0)
        {
            float logS = XMath.Log(s);
            for (int j = lane; j < cols; j += step) dst[start + j] = (src[start + j] - m) - logS;
        }
        else
        {
            float inv = 1f / s;
            for (int j = lane; j < cols; j += step) dst[start + j] = XMath.Exp(src[start + j] - m) * inv;
        }
    }
}
