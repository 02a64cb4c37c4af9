// The float64 reference of the fused cross-entropy (Kernels/Cpu/CrossEntropy.cs): written from PyTorch 1.13's
// composition (log_softmax, nll_loss with weights, the label-smoothing term, probability targets), plainly, with
// no shared code, so the kernel tests compare two independent derivations.
namespace AttnCore.Kernels.Cpu;

public static partial class CrossEntropy
{
    /// <summary>
    /// The float64 reference: per-position losses (0 on ignored positions) and the PyTorch 'mean' denominator,
    /// composed as PyTorch 1.13 does (log_softmax, then nll_loss and the smoothing term separately). Empty
    /// <paramref name="weight"/> means no class weights.
    /// </summary>
    public static (double[] Losses, double Denominator) ForwardReference(ReadOnlySpan<float> logits, ReadOnlySpan<long> classTargets, ReadOnlySpan<float> probTargets,
        ReadOnlySpan<float> weight, CrossEntropyProblem p)
    {
        int classes = p.Classes;
        var losses = new double[p.Positions];
        double denominator = 0, eps = p.LabelSmoothing;
        var logp = LogSoftmaxReference(logits, p);
        for (long pos = 0; pos < p.Positions; pos++)
        {
            var y = TargetDistributionReference(classTargets, probTargets, weight, p, pos);
            if (y is null) continue;
            long at0 = pos / p.Inner * classes * p.Inner + pos % p.Inner;
            if (p.ProbabilityTargets)
            {
                for (int c = 0; c < classes; c++) losses[pos] -= y[c] * logp[at0 + (long)c * p.Inner];
                denominator += 1;
                continue;
            }
            long t = classTargets[(int)pos];
            double wt = weight.IsEmpty ? 1 : weight[(int)t], smooth = 0;
            for (int c = 0; c < classes; c++) smooth -= (weight.IsEmpty ? 1 : weight[c]) * logp[at0 + (long)c * p.Inner];
            losses[pos] = (1 - eps) * -wt * logp[at0 + t * p.Inner] + eps / classes * smooth;
            denominator += wt;
        }
        return (losses, denominator);
    }

    /// <summary>
    /// The float64 reference of dlogits: with y the (weighted, smoothed) target distribution of a position, the loss
    /// is −Σ_c y_c log softmax_c, so dx_c = softmax_c Σ y − y_c; times <paramref name="gradPerPosition"/>[p] (the output
    /// gradient already divided as the reduction requires).
    /// </summary>
    public static double[] BackwardReference(ReadOnlySpan<float> logits, ReadOnlySpan<long> classTargets, ReadOnlySpan<float> probTargets,
        ReadOnlySpan<float> weight, ReadOnlySpan<double> gradPerPosition, CrossEntropyProblem p)
    {
        var dx = new double[p.Logits];
        var logp = LogSoftmaxReference(logits, p);
        for (long pos = 0; pos < p.Positions; pos++)
        {
            var y = TargetDistributionReference(classTargets, probTargets, weight, p, pos);
            if (y is null) continue;
            long at0 = pos / p.Inner * p.Classes * p.Inner + pos % p.Inner;
            double mass = y.Sum();
            for (int c = 0; c < p.Classes; c++)
            {
                long i = at0 + (long)c * p.Inner;
                dx[i] = (Math.Exp(logp[i]) * mass - y[c]) * gradPerPosition[(int)pos];
            }
        }
        return dx;
    }

    // y_c with loss_p = −Σ_c y_c log softmax_c: w_c q'_c for probabilities; (ε/C) w_c + (1−ε) w_t [c = t] for a class t; null when ignored.
    private static double[]? TargetDistributionReference(ReadOnlySpan<long> classTargets, ReadOnlySpan<float> probTargets, ReadOnlySpan<float> weight, CrossEntropyProblem p, long pos)
    {
        int classes = p.Classes;
        double eps = p.LabelSmoothing;
        long at0 = pos / p.Inner * classes * p.Inner + pos % p.Inner;
        var y = new double[classes];
        if (p.ProbabilityTargets)
        {
            for (int c = 0; c < classes; c++) y[c] = (weight.IsEmpty ? 1 : weight[c]) * ((1 - eps) * probTargets[(int)(at0 + (long)c * p.Inner)] + eps / classes);
            return y;
        }
        long t = classTargets[(int)pos];
        if (t == p.IgnoreIndex) return null;
        for (int c = 0; c < classes; c++) y[c] = eps / classes * (weight.IsEmpty ? 1 : weight[c]);
        y[t] += (1 - eps) * (weight.IsEmpty ? 1 : weight[(int)t]);
        return y;
    }

    private static double[] LogSoftmaxReference(ReadOnlySpan<float> logits, CrossEntropyProblem p)
    {
        int classes = p.Classes, inner = p.Inner;
        var logp = new double[p.Logits];
        for (long pos = 0; pos < p.Positions; pos++)
        {
            long at0 = pos / inner * classes * inner + pos % inner;
            double max = double.NegativeInfinity, sum = 0;
            for (int c = 0; c < classes; c++) max = Math.Max(max, logits[(int)(at0 + (long)c * inner)]);
            for (int c = 0; c < classes; c++) sum += Math.Exp(logits[(int)(at0 + (long)c * inner)] - max);
            double lse = max + Math.Log(sum);
            for (int c = 0; c < classes; c++) logp[at0 + (long)c * inner] = logits[(int)(at0 + (long)c * inner)] - lse;
        }
        return logp;
    }
}
