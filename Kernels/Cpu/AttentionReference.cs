// AttentionReference: the textbook matmul-softmax-matmul in float64, with the same masks, grouped-query head
// mapping, dropout hash and conventions as the fused kernels (fully hidden rows give zero output, lse -inf
// and zero gradients). It materialises each score row, so it is for tests, gradient checks and float64
// tensors, not for speed.
namespace AttnCore.Kernels.Cpu;

/// <summary>Float64 reference attention, forward and backward.</summary>
public static class AttentionReference
{
    private static long At(in AttentionOperand a, int b, int h, int i) => a.Offset + b * a.StrideB + h * a.StrideH + i * a.StrideL;

    // scale · q_i · k_j + mask, or -inf when the causal flag hides the key.
    private static double Score(in AttentionShape s, ReadOnlySpan<double> q, in AttentionOperand qo, ReadOnlySpan<double> k, in AttentionOperand ko,
        ReadOnlySpan<double> mask, in AttentionMaskOperand mo, int b, int h, int i, int j)
    {
        if (s.Causal && j > i + s.CausalShift) return double.NegativeInfinity;
        int hk = h / s.GroupSize;
        double dot = 0;
        for (int c = 0; c < s.Dim; c++) dot += q[(int)At(qo, b, h, i) + c] * k[(int)At(ko, b, hk, j) + c];
        double m = mask.IsEmpty ? 0 : mask[(int)(mo.Offset + b * mo.StrideB + h * mo.StrideH + i * mo.StrideQ + j * mo.StrideK)];
        return dot * s.Scale + m;
    }

    // The softmax row P[i, :] (zeros when every score is -inf); returns log-sum-exp (or -inf).
    private static double Row(in AttentionShape s, ReadOnlySpan<double> q, in AttentionOperand qo, ReadOnlySpan<double> k, in AttentionOperand ko,
        ReadOnlySpan<double> mask, in AttentionMaskOperand mo, int b, int h, int i, double[] p)
    {
        double max = double.NegativeInfinity;
        for (int j = 0; j < s.KeyLength; j++) { p[j] = Score(s, q, qo, k, ko, mask, mo, b, h, i, j); max = Math.Max(max, p[j]); }
        double sum = 0;
        for (int j = 0; j < s.KeyLength; j++) { p[j] = double.IsNegativeInfinity(max) ? 0 : Math.Exp(p[j] - max); sum += p[j]; }
        for (int j = 0; j < s.KeyLength; j++) p[j] = sum > 0 ? p[j] / sum : 0;
        return sum > 0 ? max + Math.Log(sum) : double.NegativeInfinity;
    }

    private static double KeepScale(in AttentionShape s, int b, int h, int i, int j) =>
        s.Dropout > 0 ? (Attention.Keep(s.Seed, b, h, i, j, s.Dropout) ? 1 / (1 - (double)s.Dropout) : 0) : 1;

    /// <summary>O and lse (float64) for the given operands; <paramref name="mask"/> is empty or additive, placed by <paramref name="mo"/>.</summary>
    public static void Forward(in AttentionShape s, ReadOnlySpan<double> q, in AttentionOperand qo, ReadOnlySpan<double> k, in AttentionOperand ko,
        ReadOnlySpan<double> v, in AttentionOperand vo, Span<double> o, in AttentionOperand oo, Span<double> lse, ReadOnlySpan<double> mask = default, in AttentionMaskOperand mo = default)
    {
        s.Validate("AttentionReference.Forward", q.Length, qo, k.Length, ko, v.Length, vo, o.Length, oo, lse.Length, mask.Length, mo);
        var p = new double[s.KeyLength];
        for (int b = 0; b < s.Batch; b++)
            for (int h = 0; h < s.Heads; h++)
                for (int i = 0; i < s.QueryLength; i++)
                {
                    lse[(b * s.Heads + h) * s.QueryLength + i] = Row(s, q, qo, k, ko, mask, mo, b, h, i, p);
                    for (int c = 0; c < s.Dim; c++)
                    {
                        double acc = 0;
                        for (int j = 0; j < s.KeyLength; j++) acc += p[j] * KeepScale(s, b, h, i, j) * v[(int)At(vo, b, h / s.GroupSize, j) + c];
                        o[(int)At(oo, b, h, i) + c] = acc;
                    }
                }
    }

    /// <summary>
    /// dQ, dK, dV (float64, overwritten) from dO, by the chain rule through the materialised rows; dK and dV of a
    /// key/value head sum over the query heads of its group.
    /// </summary>
    public static void Backward(in AttentionShape s, ReadOnlySpan<double> q, in AttentionOperand qo, ReadOnlySpan<double> k, in AttentionOperand ko,
        ReadOnlySpan<double> v, in AttentionOperand vo, ReadOnlySpan<double> dout, in AttentionOperand doo, ReadOnlySpan<double> mask, in AttentionMaskOperand mo,
        Span<double> dq, in AttentionOperand dqo, Span<double> dk, in AttentionOperand dko, Span<double> dv, in AttentionOperand dvo)
    {
        int L = s.QueryLength, M = s.KeyLength, D = s.Dim;
        for (int b = 0; b < s.Batch; b++)
            for (int hk = 0; hk < s.KeyValueHeads; hk++)
                for (int j = 0; j < M; j++) for (int c = 0; c < D; c++) { dk[(int)At(dko, b, hk, j) + c] = 0; dv[(int)At(dvo, b, hk, j) + c] = 0; }
        var p = new double[M];
        var dw = new double[M];
        for (int b = 0; b < s.Batch; b++)
            for (int h = 0; h < s.Heads; h++)
            {
                int hk = h / s.GroupSize;
                for (int i = 0; i < L; i++)
                {
                    Row(s, q, qo, k, ko, mask, mo, b, h, i, p);
                    // dW_ij = dO_i · V_j through dropout; dS = P ∘ (dW' - Σ_j P dW')
                    double dotPdw = 0;
                    for (int j = 0; j < M; j++)
                    {
                        double keep = KeepScale(s, b, h, i, j);
                        double g = 0;
                        for (int c = 0; c < D; c++) g += dout[(int)At(doo, b, h, i) + c] * v[(int)At(vo, b, hk, j) + c];
                        dw[j] = g * keep;
                        dotPdw += p[j] * dw[j];
                        for (int c = 0; c < D; c++) dv[(int)At(dvo, b, hk, j) + c] += p[j] * keep * dout[(int)At(doo, b, h, i) + c];
                    }
                    for (int c = 0; c < D; c++) dq[(int)At(dqo, b, h, i) + c] = 0;
                    for (int j = 0; j < M; j++)
                    {
                        double ds = p[j] * (dw[j] - dotPdw) * s.Scale;
                        for (int c = 0; c < D; c++)
                        {
                            dq[(int)At(dqo, b, h, i) + c] += ds * k[(int)At(ko, b, hk, j) + c];
                            dk[(int)At(dko, b, hk, j) + c] += ds * q[(int)At(qo, b, h, i) + c];
                        }
                    }
                }
            }
    }
}
