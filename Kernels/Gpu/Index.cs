// Index (GPU): embedding-style row selection and its adjoint, one thread per output (or source) element.
//
// A tensor indexed along one dim is viewed as [outer, axisSize, inner] (contiguous); element p of the result
// of IndexSelect with count indices is (o, j, i) with p = (o·count + j)·inner + i, and reads
// src[(o·axisSize + index[j])·inner + i]. Gather reads index[p] instead of index[j]. The adjoints add the
// element back at the same place. Repeated indices (a token twice in a batch) would make two source threads
// hit one destination, so the adjoints run one thread per destination element that sums its sources in index
// order: no atomics (OpenCL 1.2 has no float atomic add, and PoCL rejects ILGPU's emulation), and the result
// is deterministic. That costs count reads per destination: fine for small tables, quadratic for a GPT-2
// vocabulary (50,257 rows x 768 x 8,192 tokens). So IndexAdd with many indices first sorts (index, j) pairs,
// packed as index·2^32 + j in one int64, with a bitonic network (log2(n)·(log2(n)+1)/2 launches of n/2
// compare-swaps, n = count rounded up to a power of two); each destination then binary-searches its run of
// equal indices and adds those sources in ascending j: the same order, so the same result, as the scan.
// FLOPs: none (count adds per destination for the adjoints). Bytes: 8-12 per element. Bound: memory.
// Bad indices: the Engine launches CheckRangeKernel before each index op; it records a violation on the device
// (reported at the next host sync), and the forward kernels read 0 for an out-of-range index instead of
// leaving src, so nothing faults before the report.
// Reference: the SIMD CPU backend (Tests/Gpu).
using ILGPU;

namespace AttnCore.Kernels.Gpu;

/// <summary>Index select, gather and their scatter-add adjoints.</summary>
public static class IndexOps
{
    /// <summary>Bits of a recorded bad index kept by CheckRangeKernel (the check id takes the 16 above them).</summary>
    public const int FaultValueBits = 47;

    /// <summary>
    /// Records an index outside [0, size) (other than <paramref name="ignore"/> when <paramref name="useIgnore"/> is 1):
    /// fault[0] = (checkId &lt;&lt; 48) | (v clamped to ±(2^47 − 1), 48-bit two's complement), then fault[1] = 1.
    /// Packing both into one 64-bit store keeps value and id consistent when many threads fail at once, without
    /// atomics (PoCL's OpenCL C rejects ILGPU's atomic helpers). The host reads it only when it synchronises anyway.
    /// </summary>
    public static void CheckRangeKernel(Index1D p, ArrayView<long> index, long size, long ignore, int useIgnore, ArrayView<long> fault, long checkId)
    {
        long v = index[p];
        if ((v >= 0 && v < size) || (useIgnore != 0 && v == ignore)) return;
        const long limit = (1L << FaultValueBits) - 1;
        long clamped = v > limit ? limit : v < -limit ? -limit : v;
        fault[0] = (checkId << 48) | (clamped & ((1L << 48) - 1));
        fault[1] = 1;
    }

    /// <summary>dst[(o, j, i)] = src[o, index[j], i].</summary>
    public static void SelectKernel(Index1D p, ArrayView<float> src, ArrayView<long> index, ArrayView<float> dst, long axisSize, long inner, int count)
    {
        long i = p % inner, oj = p / inner, j = oj % count, o = oj / count;
        long r = index[j];
        // A bad index was recorded by CheckRangeKernel and is reported at the next sync; meanwhile read nothing outside src.
        dst[p] = r >= 0 && r < axisSize ? src[(o * axisSize + r) * inner + i] : 0f;
    }

    /// <summary>dst[(o, j, i)] = src[o, index[(o, j, i)], i].</summary>
    public static void GatherKernel(Index1D p, ArrayView<float> src, ArrayView<long> index, ArrayView<float> dst, long axisSize, long inner, int count)
    {
        long i = p % inner, o = p / inner / count;
        long r = index[p];
        dst[p] = r >= 0 && r < axisSize ? src[(o * axisSize + r) * inner + i] : 0f;
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

    /// <summary>keys[j] = index[j]·2^32 + j for j &lt; count, long.MaxValue for the padding up to the launch size (a power of two).</summary>
    public static void SortKeysKernel(Index1D j, ArrayView<long> index, ArrayView<long> keys, int count)
        => keys[j] = j < count ? (index[j] << 32) | (long)(int)j : long.MaxValue;

    /// <summary>
    /// One step of a bitonic sorting network over keys (ascending at the end): thread t compares element
    /// i = the t-th index whose bit <paramref name="j"/> is clear with its partner i + j, and orders the pair
    /// ascending when bit <paramref name="k"/> of i is clear, descending otherwise. Launch with n/2 threads.
    /// </summary>
    public static void BitonicStepKernel(Index1D t, ArrayView<long> keys, int j, int k)
    {
        int i = 2 * t - (t & (j - 1)); // t with a 0 inserted at bit position log2(j)
        int partner = i + j;
        long a = keys[i], b = keys[partner];
        bool ascending = (i & k) == 0;
        if (ascending ? a > b : a < b) { keys[i] = b; keys[partner] = a; }
    }

    /// <summary>
    /// dst[o, r, i] += Σ src[(o, j, i)] over the j with index[j] = r, reading them from the sorted keys: a binary
    /// search finds the first key of r, then the run is walked in ascending j (the order of IndexAddKernel).
    /// </summary>
    public static void IndexAddSortedKernel(Index1D p, ArrayView<float> src, ArrayView<long> keys, ArrayView<float> dst, long axisSize, long inner, int count)
    {
        long i = p % inner, or = p / inner, r = or % axisSize, o = or / axisSize;
        long first = r << 32;
        int lo = 0, hi = count;
        while (lo < hi)
        {
            int mid = (lo + hi) >> 1;
            if (keys[mid] < first) lo = mid + 1; else hi = mid;
        }
        float sum = 0;
        for (int q = lo; q < count && (keys[q] >> 32) == r; q++)
            sum += src[(o * count + (keys[q] & 0xFFFFFFFFL)) * inner + i];
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
