// CrossEntropy (GPU): torch.nn.functional.cross_entropy over logits [outer, C, inner] (layout and formulas in
// Kernels/Cpu/CrossEntropy.cs): class-index targets with ignore_index, class weights and label smoothing, or
// class-probability targets.
//
// ForwardKernel: one team (a warp or a group, see RowTeam.cs) per position, reading the C logits at stride `inner`
// (no transposing copy): the max (all-reduce Max), Σ exp(x − max) (all-reduce Sum), lse = max + log Σ; then, when the
// loss needs the whole row (label smoothing, or probability targets), a second pass over the row for
// Σ_c w_c y_c (lse − x_c) and Σ_c w_c y_c with the smoothed target y (two all-reduces). Lane 0 writes lse, the
// position's loss, its weight in PyTorch's 'mean' denominator and rowScale (the softmax coefficient of the gradient).
// ReduceKernel (one group) sums the losses and the weights and divides on the device, so the loss never has to
// visit the host during training. BackwardKernel: one thread per logit, the softmax recomputed from the saved lse.
// FLOPs: ~4 per logit plus one exp each way. Bytes: each logit read once or twice forward (the second read hits
// cache for rows that fit), read and written once backward. Bound: memory bandwidth (the exp stays under it).
// Reference: the CPU backend's kernel (Kernels/Cpu/CrossEntropy.cs, itself tested against float64), compared in
// Tests/Gpu/CrossEntropyGpuTests.cs.
using ILGPU;
using ILGPU.Algorithms;

namespace AttnCore.Kernels.Gpu;

/// <summary>The scalar arguments of the cross-entropy kernels, packed into one.</summary>
public struct CrossEntropyArgs
{
    /// <summary>The logits are [Outer, Classes, Inner]; positions are Outer · Inner.</summary>
    public int Outer, Classes, Inner;
    /// <summary>A class target with this value adds nothing.</summary>
    public long IgnoreIndex;
    /// <summary>Label smoothing ε.</summary>
    public float Smoothing;
    /// <summary>1 for probability targets (shaped like the logits), 0 for int64 class targets.</summary>
    public int Probabilities;
    /// <summary>1 when class weights are given.</summary>
    public int Weighted;
    /// <summary>Backward: 1 when gradOutput holds one value per position (reduction 'none').</summary>
    public int PerPosition;
    /// <summary>Backward: 1 when the output gradient is divided by the denominator (reduction 'mean').</summary>
    public int Divide;
}

/// <summary>Cross-entropy: a team per position forward, a reduction, a thread per logit backward.</summary>
public static class CrossEntropy
{
    /// <summary>ReduceKernel modes: only the denominator ('none'), the mean, or the sum of the losses.</summary>
    public const int DenominatorOnly = 0, Mean = 1, Sum = 2;

    /// <summary>
    /// Position r: lse[r], loss[r] (0 when ignored), rowWeight[r] (its share of the 'mean' denominator: w_t, 1 for
    /// probability targets, 0 when ignored) and rowScale[r]. Unused views (class or probability targets, weight) may
    /// be any view of their type.
    /// </summary>
    [GpuTypeArguments(typeof(WarpTeam), typeof(Size256))]
    public static void ForwardKernel<TTeam, TGroup>(ArrayView<float> logits, ArrayView<long> classTargets, ArrayView<float> probTargets, ArrayView<float> weight,
        ArrayView<float> lse, ArrayView<float> loss, ArrayView<float> rowWeight, ArrayView<float> rowScale, CrossEntropyArgs a)
        where TTeam : struct, IRowTeam
        where TGroup : struct, IKernelSize
    {
        TGroup size = default;
        TTeam team = default;
        var scratch = SharedMemory.Allocate<float>(size.Value);
        int classes = a.Classes, inner = a.Inner;
        var row = TeamRow.Of(team.Row, a.Outer * inner, classes);
        int r = row.Index, n = row.Length;
        long o = (long)(r / inner) * classes * inner + r % inner;
        int lane = team.Lane, step = team.Width;
        float eps = a.Smoothing, uniform = eps / classes;

        float max = float.NegativeInfinity;
        for (int c = lane; c < n; c += step) max = Reduce.Combine(Reduce.Max, max, logits[o + (long)c * inner]);
        max = team.AllReduce(scratch, max, Reduce.Max);
        float sum = 0;
        for (int c = lane; c < n; c += step) sum += XMath.Exp(logits[o + (long)c * inner] - max);
        sum = team.AllReduce(scratch, sum, Reduce.Sum);
        float l = max + XMath.Log(sum);

        // Σ_c w_c y_c (lse − x_c) and Σ_c w_c y_c, y_c = q'_c (probabilities) or 1 (the smoothing term of class targets).
        int m = a.Probabilities != 0 || eps != 0 ? n : 0;
        float wyDiff = 0, wy = 0;
        for (int c = lane; c < m; c += step)
        {
            long i = o + (long)c * inner;
            float y = a.Weighted != 0 ? weight[c] : 1f;
            if (a.Probabilities != 0) y *= (1 - eps) * probTargets[i] + uniform;
            wyDiff += y * (l - logits[i]);
            wy += y;
        }
        wyDiff = team.AllReduce(scratch, wyDiff, Reduce.Sum);
        wy = team.AllReduce(scratch, wy, Reduce.Sum);
        if (lane != 0 || !row.Active) return;

        lse[r] = l;
        if (a.Probabilities != 0) { loss[r] = wyDiff; rowWeight[r] = 1; rowScale[r] = wy; return; }
        long t = classTargets[r];
        if (t == a.IgnoreIndex) { loss[r] = 0; rowWeight[r] = 0; rowScale[r] = 0; return; }
        // An out-of-range target was recorded by the index check (reported at the next sync); do not read past the row.
        if (t < 0 || t >= classes) { loss[r] = float.NaN; rowWeight[r] = 1; rowScale[r] = 0; return; }
        float wt = a.Weighted != 0 ? weight[t] : 1f;
        float value = wt * (l - logits[o + t * inner]);
        if (eps != 0) value = (1 - eps) * value + uniform * wyDiff;
        loss[r] = value;
        rowWeight[r] = wt;
        rowScale[r] = a.Weighted != 0 ? (1 - eps) * wt + uniform * wy : 1f;
    }

    /// <summary>
    /// One group: denominator[0] = Σ rowWeight over <paramref name="positions"/>; loss[0] = Σ rowLoss / denominator
    /// (<see cref="Mean"/>; NaN when nothing is kept, as PyTorch) or Σ rowLoss (<see cref="Sum"/>). Each thread sums a
    /// strided slice in float32 (a position's loss is O(log C)), then the group combines them in a shared-memory tree.
    /// </summary>
    [GpuTypeArguments(typeof(Size256))]
    public static void ReduceKernel<TGroup>(ArrayView<float> rowLoss, ArrayView<float> rowWeight, int positions, ArrayView<float> loss, ArrayView<float> denominator, int mode)
        where TGroup : struct, IKernelSize
    {
        TGroup size = default;
        var scratch = SharedMemory.Allocate<float>(size.Value);
        float l = 0, n = 0;
        for (int r = Group.IdxX; r < positions; r += Group.DimX) { l += mode == DenominatorOnly ? 0 : rowLoss[r]; n += rowWeight[r]; }
        l = Reduce.GroupAllReduce(scratch, l, Reduce.Sum);
        n = Reduce.GroupAllReduce(scratch, n, Reduce.Sum);
        if (!Group.IsFirstThread) return;
        denominator[0] = n;
        if (mode == Mean) loss[0] = n == 0 && l == 0 ? float.NaN : l / n;
        else if (mode == Sum) loss[0] = l;
    }

    /// <summary>
    /// Logit e = (n, c, s): dlogits = (softmax · rowScale − (ε/C) w_c − (1−ε) w_t [c = t]) · g for class targets (0 on
    /// ignored positions), (softmax · rowScale − w_c q'_c) · g for probabilities; g = gradOutput[position or 0], divided
    /// by denominator[0] for 'mean'.
    /// </summary>
    public static void BackwardKernel(Index1D e, ArrayView<float> logits, ArrayView<long> classTargets, ArrayView<float> probTargets, ArrayView<float> weight,
        ArrayView<float> lse, ArrayView<float> rowScale, ArrayView<float> gradOutput, ArrayView<float> denominator, ArrayView<float> dlogits, CrossEntropyArgs a)
    {
        long i = e, inner = a.Inner, classes = a.Classes;
        long s = i % inner, c = i / inner % classes, pos = i / (inner * classes) * inner + s;
        float g = gradOutput[a.PerPosition != 0 ? pos : 0];
        float scale = a.Divide != 0 ? g / denominator[0] : g;
        float eps = a.Smoothing, uniform = eps / a.Classes;
        float w = a.Weighted != 0 ? weight[c] : 1f;
        float softmax = XMath.Exp(logits[i] - lse[pos]);
        if (a.Probabilities != 0)
        {
            dlogits[i] = (softmax * rowScale[pos] - w * ((1 - eps) * probTargets[i] + uniform)) * scale;
            return;
        }
        long t = classTargets[pos];
        if (t == a.IgnoreIndex) { dlogits[i] = 0; return; }
        float d = softmax * rowScale[pos] - uniform * w;
        if (c == t) d -= (1 - eps) * w;
        dlogits[i] = d * scale;
    }
}
