// ScaleAddRelu (GPU): the end of a ResNet block with Squeeze-and-Excitation, y = max(0, x·s + r) with one scale per
// run of contiguous values (s[n, c] over the H·W values of channel c of image n), and its gradient; the semantics of
// Kernels/Cpu/ScaleAddRelu.cs.
// Forward, one thread per element: y[i] = max(0, x[i]·s[i / L] + r[i]), NaN kept.
// Backward, one group per run (grid = runs), with d = dy·[y > 0] (the ReLU's mask from the saved output):
//   dr[i] = d[i],   dx[i] = d[i]·s[run],   ds[run] = Σ_run d[i]·x[i]
// Each thread takes a strided share of the run, writes its dr and dx and folds its share of ds; a shared-memory tree
// (Reduce.GroupAllReduce) combines the shares in a fixed order, so ds is deterministic. Each output is written only
// when wanted (the Want* flags), as on the CPU.
// FLOPs: 3 per element forward, 4 backward. Bytes: forward 12 per element, backward 20. Bound: memory bandwidth.
// Reference: the SIMD CPU backend (Kernels/Cpu/ScaleAddRelu.cs); Tests/Gpu/BatchNormReluGpuTests.cs.
using ILGPU;
using ILGPU.Algorithms;

namespace AttnCore.Kernels.Gpu;

/// <summary>The sizes and wanted outputs of one <see cref="ScaleAddRelu"/> backward launch.</summary>
public struct ScaleAddReluArgs
{
    /// <summary>Contiguous values per run (one scale each); the run is the group's grid index.</summary>
    public int RunLength;
    /// <summary>1 when dx, ds or dr is wanted.</summary>
    public int WantDx, WantDs, WantDr;
}

/// <summary>The fused SE recalibration + residual add + ReLU for ILGPU devices.</summary>
public static class ScaleAddRelu
{
    /// <summary>Element i: y = max(0, x·s[i / <paramref name="runLength"/>] + r), NaN kept.</summary>
    public static void ForwardKernel(Index1D i, ArrayView<float> x, ArrayView<float> s, ArrayView<float> r, ArrayView<float> y, int runLength)
    {
        float v = x[i] * s[i / runLength] + r[i];
        y[i] = !(v > 0f) && !XMath.IsNaN(v) ? 0f : v;
    }

    /// <summary>Group per run (grid = runs, group = TGroup): dr, dx and ds of the run, each when wanted.</summary>
    [GpuTypeArguments(typeof(Size256))]
    public static void BackwardKernel<TGroup>(ArrayView<float> dy, ArrayView<float> y, ArrayView<float> x, ArrayView<float> s,
        ArrayView<float> dx, ArrayView<float> ds, ArrayView<float> dr, ScaleAddReluArgs a)
        where TGroup : struct, IKernelSize
    {
        TGroup size = default;
        var scratch = SharedMemory.Allocate<float>(size.Value);
        int run = Grid.IdxX;
        long start = (long)run * a.RunLength;
        float scale = s[run], dot = 0f;
        for (long i = start + Group.IdxX; i < start + a.RunLength; i += Group.DimX)
        {
            float d = y[i] > 0f ? dy[i] : 0f;
            if (a.WantDr != 0) dr[i] = d;
            if (a.WantDx != 0) dx[i] = d * scale;
            if (a.WantDs != 0) dot += d * x[i];
        }
        if (a.WantDs == 0) return;
        dot = Reduce.GroupAllReduce(scratch, dot, Reduce.Sum);
        if (Group.IsFirstThread) ds[run] = dot;
    }
}
