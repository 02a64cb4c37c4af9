// CrossEntropy (GPU): the per-row part of the (label-smoothed) cross-entropy loss over [rows, classes] logits.
//
// One team (a warp or a group, see RowTeam.cs) per row: the row max (all-reduce Max), then sum exp(x - max)
// and sum x in one pass (two all-reduces), lse = max + log(sum exp); lane 0 writes lse (kept for the backward
// pass), the row loss (1 - eps)(lse - x_t) + eps(lse - mean x), 0 for ignored rows, and valid[r] (1 when the row
// counts). The mean over rows and the backward pass are RowKernels.CrossEntropyMeanKernel and
// CrossEntropyBackwardKernel (one group, and one thread per logit).
// FLOPs: ~4 per logit plus one exp. Bytes: each logit is read twice (8 bytes; the second read hits cache for
// rows that fit). Bound: memory bandwidth (the exp stays under it on GPUs).
// Reference: the CPU backend's cross-entropy (Kernels/Cpu/CrossEntropy.cs), compared in Tests/Gpu.
using ILGPU;
using ILGPU.Algorithms;

namespace AttnCore.Kernels.Gpu;

/// <summary>Cross-entropy rows, one team per row.</summary>
public static class CrossEntropy
{
    /// <summary>Row r: lse[r], loss[r] (0 when targets[r] is ignoreIndex) and valid[r] (1 when the row counts).</summary>
    [GpuTypeArguments(typeof(WarpTeam), typeof(Size256))]
    public static void ForwardKernel<TTeam, TGroup>(ArrayView<float> logits, ArrayView<long> targets, ArrayView<float> lse, ArrayView<float> loss,
        ArrayView<float> valid, int rows, int classes, long ignoreIndex, float smoothing)
        where TTeam : struct, IRowTeam
        where TGroup : struct, IKernelSize
    {
        TGroup size = default;
        TTeam team = default;
        var scratch = SharedMemory.Allocate<float>(size.Value);
        int r = team.Row;
        // No early return before the reductions: every barrier must be reached by the whole group (see Softmax.cs).
        bool active = r < rows;
        int n = active ? classes : 0;
        if (!active) r = 0;
        long o = (long)r * classes;
        int lane = team.Lane, step = team.Width;

        float max = float.NegativeInfinity;
        for (int c = lane; c < n; c += step) max = Reduce.Combine(Reduce.Max, max, logits[o + c]);
        max = team.AllReduce(scratch, max, Reduce.Max);
        float sum = 0, total = 0;
        for (int c = lane; c < n; c += step) { float v = logits[o + c]; sum += XMath.Exp(v - max); total += v; }
        sum = team.AllReduce(scratch, sum, Reduce.Sum);
        total = team.AllReduce(scratch, total, Reduce.Sum);
        if (lane != 0 || !active) return;
        float l = max + XMath.Log(sum);
        lse[r] = l;
        long t = targets[r];
        if (t == ignoreIndex) { loss[r] = 0; valid[r] = 0; return; }
        // An out-of-range target was recorded by the index check (reported at the next sync); do not read past the row.
        if (t < 0 || t >= classes) { loss[r] = float.NaN; valid[r] = 1; return; }
        loss[r] = (1 - smoothing) * (l - logits[o + t]) + smoothing * (l - total / classes);
        valid[r] = 1;
    }
}
