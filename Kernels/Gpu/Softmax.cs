// Softmax (GPU): softmax or log-softmax of each contiguous row of a [rows, cols] float32 matrix.
//
// Algorithm: one group per row (grid = rows). Three passes over the row, each thread taking every
// Group.DimX-th element: (1) the row max m (a group all-reduce in shared memory), (2) s = sum exp(x - m)
// (another all-reduce), (3) write exp(x - m) / s, or x - m - log s for log-softmax. Subtracting the max
// keeps exp in range (TensorPrimitives.SoftMax does not, see KERNEL-NOTES.md); a NaN anywhere in a row
// makes the whole row NaN, as in PyTorch. No warp shuffles: the reductions are shared-memory trees.
// FLOPs: ~4 per element plus one exp (two exps for softmax: pass 2 and 3). Bytes: the row is read three
// times and written once (12 + 4 bytes per element; the re-reads hit cache for rows that fit).
// Bound: memory bandwidth on a GPU; thread scheduling on the CPU accelerator (correctness only).
// Reference: the float64 reference in Tests/Gpu/IlgpuBackendTests.cs.
using ILGPU;
using ILGPU.Algorithms;

namespace AttnCore.Kernels.Gpu;

/// <summary>Row softmax with one thread group per row.</summary>
public static class Softmax
{
    /// <summary>dst[r, :] = softmax(src[r, :]) (log-softmax when <paramref name="log"/> is 1) for contiguous rows of <paramref name="cols"/> &gt; 0.</summary>
    [GpuTypeArguments(typeof(Size256))]
    public static void RowKernel<TGroup>(ArrayView<float> src, ArrayView<float> dst, int cols, int log)
        where TGroup : struct, IKernelSize
    {
        TGroup size = default;
        var scratch = SharedMemory.Allocate<float>(size.Value);
        long start = (long)Grid.IdxX * cols;
        int tid = Group.IdxX, step = Group.DimX;

        float m = float.NegativeInfinity;
        for (int j = tid; j < cols; j += step) m = Reduce.Combine(Reduce.Max, m, src[start + j]);
        m = Reduce.GroupAllReduce(scratch, m, Reduce.Max);

        float s = 0f;
        for (int j = tid; j < cols; j += step) s += XMath.Exp(src[start + j] - m);
        s = Reduce.GroupAllReduce(scratch, s, Reduce.Sum);

        if (log != 0)
        {
            float logS = XMath.Log(s);
            for (int j = tid; j < cols; j += step) dst[start + j] = (src[start + j] - m) - logS;
        }
        else
        {
            float inv = 1f / s;
            for (int j = tid; j < cols; j += step) dst[start + j] = XMath.Exp(src[start + j] - m) * inv;
        }
    }
}
