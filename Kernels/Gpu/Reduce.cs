// Reduce (GPU): Sum, Max and Min over the trailing dims of a strided view, and ArgMax/ArgMin over the last dim.
//
// Each output element o reduces a block: the kept dims place its start (kept.At(o)) and the reduced dims
// walk the block (reduced.At(j), j < count). Two kernels:
//   ReduceKernel       one thread per output, a sequential loop over the block. Used when blocks are
//                      short (e.g. summing the batch dim of [N, C]), where a group per output would idle.
//   GroupReduceKernel  one group per output: each thread folds a strided share of the block, then a
//                      shared-memory tree halves the partials (log2(group) barriers). No warp shuffles, so
//                      it runs unchanged where sub-groups are missing (PoCL reports WarpSize 0).
//   TopKKernel         one thread per row, k selection passes: pass j scans the row for the first element that
//                      comes after pick j-1 in TopK's total order (value, then index), so no scratch memory and
//                      no sorting network are needed. O(k n) per row: meant for the small k of top-k sampling
//                      and metrics; the CPU backend sorts instead.
// Max/Min propagate NaN (as PyTorch). The float sum order differs from a sequential sum by rounding only.
// FLOPs: 1 per element. Bytes: 4 per element read, 4 per output written. Bound: memory bandwidth on a GPU
// (the tree is log2(group) steps); on the CPU accelerator, thread scheduling (correctness only).
// Reference: the float64 reference in Tests/Gpu/IlgpuBackendTests.cs.
using ILGPU;
using ILGPU.Algorithms;

namespace AttnCore.Kernels.Gpu;

/// <summary>Reductions over trailing dims.</summary>
public static class Reduce
{
    /// <summary>Op codes, as AttnCore.Backends.ReduceOp.</summary>
    public const int Sum = 0, Max = 1, Min = 2;

    /// <summary>The value that leaves any other unchanged under <paramref name="op"/>.</summary>
    public static float Identity(int op) => op == Sum ? 0f : op == Max ? float.NegativeInfinity : float.PositiveInfinity;

    /// <summary>Folds v into acc under <paramref name="op"/>; Max/Min keep the first NaN seen.</summary>
    public static float Combine(int op, float acc, float v)
    {
        if (op == Sum) return acc + v;
        if (XMath.IsNaN(acc)) return acc;
        if (XMath.IsNaN(v)) return v;
        return op == Max ? (v > acc ? v : acc) : (v < acc ? v : acc);
    }

    /// <summary>
    /// Combines one value per thread across the group and returns the result to every thread.
    /// <paramref name="scratch"/> is shared memory of at least Group.DimX floats (a power of two).
    /// </summary>
    public static float GroupAllReduce(ArrayView<float> scratch, float v, int op)
    {
        int tid = Group.IdxX;
        scratch[tid] = v;
        Group.Barrier();
        for (int half = Group.DimX / 2; half > 0; half /= 2)
        {
            if (tid < half) scratch[tid] = Combine(op, scratch[tid], scratch[tid + half]);
            Group.Barrier();
        }
        float result = scratch[0];
        Group.Barrier(); // nobody may overwrite scratch[0] before everyone has read it
        return result;
    }

    /// <summary>One thread per output: dst[o] = op over j &lt; count of src[kept(o) + reduced(j)]; count &gt; 0.</summary>
    public static void ReduceKernel(Index1D o, ArrayView<float> src, StridedIndex kept, StridedIndex reduced, long count, ArrayView<float> dst, int op)
    {
        long start = kept.At(o);
        float acc = Identity(op);
        for (long j = 0; j < count; j++) acc = Combine(op, acc, src[start + reduced.At(j)]);
        dst[o] = acc;
    }

    /// <summary>
    /// One group of TGroup threads per output (grid = outputs): the same result as <see cref="ReduceKernel"/>
    /// with the block split across the group and combined by a shared-memory tree.
    /// </summary>
    [GpuTypeArguments(typeof(Size256))]
    public static void GroupReduceKernel<TGroup>(ArrayView<float> src, StridedIndex kept, StridedIndex reduced, long count, ArrayView<float> dst, int op)
        where TGroup : struct, IKernelSize
    {
        TGroup size = default;
        var scratch = SharedMemory.Allocate<float>(size.Value);
        int o = Grid.IdxX;
        long start = kept.At(o);
        float acc = Identity(op);
        for (long j = Group.IdxX; j < count; j += Group.DimX) acc = Combine(op, acc, src[start + reduced.At(j)]);
        acc = GroupAllReduce(scratch, acc, op);
        if (Group.IsFirstThread) dst[o] = acc;
    }

    /// <summary>
    /// dst[o] = index of the max (op 1) or min (op 2) of the row at outer(o) with <paramref name="length"/> &gt; 0
    /// elements <paramref name="stride"/> apart; the first index wins ties and the first NaN counts as the extremum.
    /// </summary>
    public static void ArgReduceKernel(Index1D o, ArrayView<float> src, StridedIndex outer, long length, long stride, ArrayView<long> dst, int op)
    {
        long start = outer.At(o);
        float best = src[start];
        long at = 0;
        for (long j = 1; j < length && !XMath.IsNaN(best); j++)
        {
            float v = src[start + j * stride];
            if (XMath.IsNaN(v) || (op == Max ? v > best : v < best)) { best = v; at = j; }
        }
        dst[o] = at;
    }

    /// <summary>
    /// True when element (va, ia) comes before (vb, ib) in TopK's order: larger (smaller, when
    /// <paramref name="largest"/> is 0) values first, NaN above every number, ties by lower index.
    /// </summary>
    public static bool TopKBefore(float va, long ia, float vb, long ib, int largest)
    {
        bool na = XMath.IsNaN(va), nb = XMath.IsNaN(vb);
        if (na || nb)
        {
            if (na && nb) return ia < ib;
            return largest != 0 ? na : nb;
        }
        if (va != vb) return largest != 0 ? va > vb : va < vb;
        return ia < ib;
    }

    /// <summary>
    /// dst[o*k + j] = index of the j-th element, in <see cref="TopKBefore"/> order, of the row at outer(o) with
    /// <paramref name="length"/> elements <paramref name="stride"/> apart; 0 &lt; k &lt;= length.
    /// </summary>
    public static void TopKKernel(Index1D o, ArrayView<float> src, StridedIndex outer, long length, long stride, int k, int largest, ArrayView<long> dst)
    {
        long start = outer.At(o);
        float prevValue = 0;
        long prevAt = -1;
        for (int j = 0; j < k; j++)
        {
            long at = -1;
            float best = 0;
            for (long i = 0; i < length; i++)
            {
                float v = src[start + i * stride];
                bool afterPrevious = prevAt < 0 || TopKBefore(prevValue, prevAt, v, i, largest);
                if (afterPrevious && (at < 0 || TopKBefore(v, i, best, at, largest))) { best = v; at = i; }
            }
            dst[(long)o.X * k + j] = at;
            prevValue = best;
            prevAt = at;
        }
    }
}
