// Reduce (GPU): each output element is reduced by one thread walking its (possibly strided) block.
// The kept dims and the reduced dims each travel as a StridedIndex; thread o starts at kept(o) and visits
// kept(o) + reduced(j) for j < count. Simple and exact in order (sequential per output), which is what a
// CPU-accelerator check needs; a group-per-row tree reduction is the GPU-issue follow-up.
// FLOPs: 1 per element. Bytes: 4 per element. Bound: memory latency on a GPU, thread count on the CPU emulator.
// Reference: the SIMD CPU backend's Reduce.
using ILGPU;
using ILGPU.Algorithms;

namespace AttnCore.Kernels.Gpu;

/// <summary>Reductions over trailing dims.</summary>
public static class Reduce
{
    /// <summary>0 = sum, 1 = max, 2 = min (as AttnCore.Backends.ReduceOp).</summary>
    public static void ReduceKernel(Index1D o, ArrayView<float> src, StridedIndex kept, StridedIndex reduced, long count, ArrayView<float> dst, int op)
    {
        long baseOffset = kept.At(o);
        float acc = op == 0 ? 0f : src[baseOffset + reduced.At(0)];
        for (long j = op == 0 ? 0 : 1; j < count; j++)
        {
            float v = src[baseOffset + reduced.At(j)];
            if (op == 0) acc += v;
            else if (XMath.IsNaN(acc)) { }
            else if (XMath.IsNaN(v)) acc = v;
            else if (op == 1) acc = v > acc ? v : acc;
            else acc = v < acc ? v : acc;
        }
        dst[o] = acc;
    }

    /// <summary>Index of the max (op 1) or min (op 2) along the last dim; first index wins ties, NaN counts as the extremum.</summary>
    public static void ArgReduceKernel(Index1D o, ArrayView<float> src, StridedIndex outer, long length, long stride, ArrayView<long> dst, int op)
    {
        long baseOffset = outer.At(o);
        float best = src[baseOffset];
        long at = 0;
        for (long j = 1; j < length && !XMath.IsNaN(best); j++)
        {
            float v = src[baseOffset + j * stride];
            if (XMath.IsNaN(v) || (op == 1 ? v > best : v < best)) { best = v; at = j; }
        }
        dst[o] = at;
    }
}
