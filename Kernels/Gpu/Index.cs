// Index (GPU): embedding-style row selection and its adjoint, one thread per output (or source) element.
//
// A tensor indexed along one dim is viewed as [outer, axisSize, inner] (contiguous); element p of the result
// of IndexSelect with count indices is (o, j, i) with p = (o·count + j)·inner + i, and reads
// src[(o·axisSize + index[j])·inner + i]. Gather reads index[p] instead of index[j]. The adjoints add the
// element back at the same place. Repeated indices (a token twice in a batch) would make two source threads
// hit one destination, so the adjoints run one thread per destination element that sums its sources in index
// order: no atomics (OpenCL 1.2 has no float atomic add, and PoCL rejects ILGPU's emulation), and the result
// is deterministic. That costs count reads per destination, fine for embedding tables.
// FLOPs: none (count adds per destination for the adjoints). Bytes: 8-12 per element. Bound: memory.
// Reference: the SIMD CPU backend (Tests/Gpu), and the Engine checks every index before a launch.
using ILGPU;

namespace AttnCore.Kernels.Gpu;

/// <summary>Index select, gather and their scatter-add adjoints.</summary>
public static class IndexOps
{
    /// <summary>dst[(o, j, i)] = src[o, index[j], i].</summary>
    public static void SelectKernel(Index1D p, ArrayView<float> src, ArrayView<long> index, ArrayView<float> dst, long axisSize, long inner, int count)
    {
        long i = p % inner, oj = p / inner, j = oj % count, o = oj / count;
        dst[p] = src[(o * axisSize + index[j]) * inner + i];
    }

    /// <summary>dst[(o, j, i)] = src[o, index[(o, j, i)], i].</summary>
    public static void GatherKernel(Index1D p, ArrayView<float> src, ArrayView<long> index, ArrayView<float> dst, long axisSize, long inner, int count)
    {
        long i = p % inner, o = p / inner / count;
        dst[p] = src[(o * axisSize + index[p]) * inner + i];
    }

    /// <summary>dst[o, r, i] += Σ over j with index[j] = r of src[(o, j, i)]: the adjoint of SelectKernel, one thread per dst element.</summary>
    public static void IndexAddKernel(Index1D p, ArrayView<float> src, ArrayView<long> index, ArrayView<float> dst, long axisSize, long inner, int count)
    {
        long i = p % inner, or = p / inner, r = or % axisSize, o = or / axisSize;
        float sum = 0;
        for (int j = 0; j < count; j++)
            if (index[j] == r) sum += src[(o * count + j) * inner + i];
        dst[p] += sum;
    }

    /// <summary>dst[o, r, i] += Σ over j with index[(o, j, i)] = r of src[(o, j, i)]: the adjoint of GatherKernel.</summary>
    public static void ScatterAddKernel(Index1D p, ArrayView<float> src, ArrayView<long> index, ArrayView<float> dst, long axisSize, long inner, int count)
    {
        long i = p % inner, or = p / inner, r = or % axisSize, o = or / axisSize;
        float sum = 0;
        for (int j = 0; j < count; j++)
        {
            long q = (o * count + j) * inner + i;
            if (index[q] == r) sum += src[q];
        }
        dst[p] += sum;
    }
}
