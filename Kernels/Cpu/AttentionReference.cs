// AttentionReference: the textbook matmul-softmax-matmul in float64, with the same masks, dropout hash and
// conventions as the fused kernels (fully hidden rows give zeros). It materialises the L x L matrix, so it
// is for tests, gradient checks and float64 tensors, not for speed.
namespace AttnCore.Kernels.Cpu;

/// <summary>Float64 reference attention, forward and backward.</summary>
public static class AttentionReference
{
    private static long At(in AttentionOperand a, int b, int h, int i) => a.Offset + b * a.StrideB + h * a.StrideH + i * a.StrideL;

    private static bool Hidden(in AttentionShape s, ReadOnlySpan<byte> pad, int b, int i, int j) =>
        (s.Causal && j > i + s.CausalShift) || (!pad.IsEmpty && pad[b * s.KeyLength + j] != 0);

    /// <summary>O and lse (float64) for the given operands.</summary>
    public static void Forward(in AttentionShape s, ReadOnlySpan<double> q, in AttentionOperand qo, ReadOnlySpan<double> k, in AttentionOperand ko,
        ReadOnlySpan<double> v, in AttentionOperand vo, Span<double> o, in AttentionOperand oo, Span<double> lse, ReadOnlySpan<byte> pad)
    {
        Attention.Validate("AttentionReference.Forward", s, q.Length, qo, k.Length, ko, v.Length, vo, o.Length, oo, lse.Length, pad.Length);
        var p = new double[s.KeyLength];
        for (int b = 0; b < s.Batch; b++)
            for (int h = 0; h < s.Heads; h++)
                for (int i = 0; i < s.QueryLength; i++)
                {
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < s.KeyLength; j++)
                    {
                        double dot = 0;
                        for (int c = 0; c < s.Dim; c++) dot += q[(int)At(qo, b, h, i) + c] * k[(int)At(ko, b, h, j) + c];
                        p[j] = Hidden(s, pad, b, i, j) ? double.NegativeInfinity : dot * s.Scale;
                        max = Math.Max(max, p[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j < s.KeyLength; j++) { p[j] = double.IsNegativeInfinity(max) ? 0 : Math.Exp(p[j] - max); sum += p[j]; }
                    lse[(b * s.Heads + h) * s.QueryLength + i] = sum > 0 ? max + Math.Log(sum) : double.NegativeInfinity;
                    for (int c = 0; c < s.Dim; c++)
                    {
                        double acc = 0;
                        for (int j = 0; j < s.KeyLength; j++)
                        {
                            if (sum == 0) break;
                            double w = p[j] / sum;
                            if (s.Dropout > 0) w = Attention.Keep(s.Seed, b, h, i, j, s.Dropout) ? w / (1 - s.Dropout) : 0;
                            acc += w * v[(int)At(vo, b, h, j) + c];
                        }
                        o[(int)At(oo, b, h, i) + c] = acc;
                    }
                }
    }

    /// <summary>dQ, dK, dV (float64, overwritten) from dO, by the chain rule through the materialised matrices.</summary>
    public static void Backward(in AttentionShape s, ReadOnlySpan<double> q, in AttentionOperand qo, ReadOnlySpan<double> k, in AttentionOperand ko,
        ReadOnlySpan<double> v, in AttentionOperand vo, ReadOnlySpan<double> dout, in AttentionOperand doo, ReadOnlySpan<byte> pad,
        Span<double> dq, in AttentionOperand dqo, Span<double> dk, in AttentionOperand dko, Span<double> dv, in AttentionOperand dvo)
    {
        int L = s.QueryLength, M = s.KeyLength, D = s.Dim;
        for (int b = 0; b < s.Batch; b++)
            for (int h = 0; h < s.Heads; h++)
            {
                for (int j = 0; j < M; j++) for (int c = 0; c < D; c++) { dk[(int)At(dko, b, h, j) + c] = 0; dv[(int)At(dvo, b, h, j) + c] = 0; }
                for (int i = 0; i < L; i++)
                {
                    var p = new double[M];
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < M; j++)
                    {
                        double dot = 0;
                        for (int c = 0; c < D; c++) dot += q[(int)At(qo, b, h, i) + c] * k[(int)At(ko, b, h, j) + c];
                        p[j] = Hidden(s, pad, b, i, j) ? double.NegativeInfinity : dot * s.Scale;
                        max = Math.Max(max, p[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j < M; j++) { p[j] = double.IsNegativeInfinity(max) ? 0 : Math.Exp(p[j] - max); sum += p[j]; }
                    for (int j = 0; j < M; j++) p[j] = sum > 0 ? p[j] / sum : 0;
                    // dW_ij = dO_i · V_j through dropout; dS = P ∘ (dW' - Σ_j P dW')
                    var dw = new double[M];
                    double dotPdw = 0;
                    for (int j = 0; j < M; j++)
                    {
                        double keep = s.Dropout > 0 ? (Attention.Keep(s.Seed, b, h, i, j, s.Dropout) ? 1 / (1 - s.Dropout) : 0) : 1;
                        double g = 0;
                        for (int c = 0; c < D; c++) g += dout[(int)At(doo, b, h, i) + c] * v[(int)At(vo, b, h, j) + c];
                        dw[j] = g * keep;
                        dotPdw += p[j] * dw[j];
                        for (int c = 0; c < D; c++) dv[(int)At(dvo, b, h, j) + c] += p[j] * keep * dout[(int)At(doo, b, h, i) + c];
                    }
                    for (int c = 0; c < D; c++) dq[(int)At(dqo, b, h, i) + c] = 0;
                    for (int j = 0; j < M; j++)
                    {
                        double ds = p[j] * (dw[j] - dotPdw) * s.Scale;
                        for (int c = 0; c < D; c++)
                        {
                            dq[(int)At(dqo, b, h, i) + c] += ds * k[(int)At(ko, b, h, j) + c];
                            dk[(int)At(dko, b, h, j) + c] += ds * q[(int)At(qo, b, h, i) + c];
                        }
                    }
                }
            }
    }
}
