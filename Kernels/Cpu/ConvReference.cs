// ConvReference: direct float64 convolution loops: the definition the fast kernels are checked against.
// Output (n, k, p, q) = bias[k] + Σ_{c, r, t} x[n, g·C/G + c, p·sh − ph + r·dh, q·sw − pw + t·dw] · w[k, c, r, t] over
// the taps inside the input, g = k / (K/G); backward is the same sum read the other way. No blocking, no SIMD.
namespace AttnCore.Kernels.Cpu;

public static partial class Conv2d
{
    /// <summary>The direct 7-loop convolution in float64: y [N,K,P,Q] = conv2d(x, w) + bias (bias may be empty).</summary>
    public static double[] ForwardReference(ReadOnlySpan<double> x, ReadOnlySpan<double> w, ReadOnlySpan<double> bias, in Conv2dShape s)
    {
        Check("Conv2d.ForwardReference", s, x.Length, w.Length, int.MaxValue, bias.Length);
        int cg = s.C / s.Groups, kg = s.K / s.Groups, P = s.P, Q = s.Q;
        var y = new double[s.YLength];
        for (int n = 0; n < s.N; n++)
            for (int k = 0; k < s.K; k++)
                for (int p = 0; p < P; p++)
                    for (int q = 0; q < Q; q++)
                    {
                        double acc = bias.IsEmpty ? 0 : bias[k];
                        for (int c = 0; c < cg; c++)
                            for (int r = 0; r < s.R; r++)
                                for (int t = 0; t < s.S; t++)
                                {
                                    int h = p * s.StrideH - s.PadH + r * s.DilationH, ww = q * s.StrideW - s.PadW + t * s.DilationW;
                                    if ((uint)h < (uint)s.H && (uint)ww < (uint)s.W)
                                        acc += x[((n * s.C + k / kg * cg + c) * s.H + h) * s.W + ww] * w[((k * cg + c) * s.R + r) * s.S + t];
                                }
                        y[((n * s.K + k) * P + p) * Q + q] = acc;
                    }
        return y;
    }

    /// <summary>Direct float64 gradients: dx [N,C,H,W], dw [K,C/G,R,S] and dbias [K] of Σ dy·conv2d(x, w).</summary>
    public static (double[] Dx, double[] Dw, double[] Dbias) BackwardReference(ReadOnlySpan<double> dy, ReadOnlySpan<double> x, ReadOnlySpan<double> w, in Conv2dShape s)
    {
        Check("Conv2d.BackwardReference", s, x.Length, w.Length, dy.Length, 0);
        int cg = s.C / s.Groups, kg = s.K / s.Groups, P = s.P, Q = s.Q;
        var dx = new double[s.XLength]; var dw = new double[s.WLength]; var db = new double[s.K];
        for (int n = 0; n < s.N; n++)
            for (int k = 0; k < s.K; k++)
                for (int p = 0; p < P; p++)
                    for (int q = 0; q < Q; q++)
                    {
                        double g = dy[((n * s.K + k) * P + p) * Q + q];
                        db[k] += g;
                        for (int c = 0; c < cg; c++)
                            for (int r = 0; r < s.R; r++)
                                for (int t = 0; t < s.S; t++)
                                {
                                    int h = p * s.StrideH - s.PadH + r * s.DilationH, ww = q * s.StrideW - s.PadW + t * s.DilationW;
                                    if ((uint)h >= (uint)s.H || (uint)ww >= (uint)s.W) continue;
                                    int xi = ((n * s.C + k / kg * cg + c) * s.H + h) * s.W + ww, wi = ((k * cg + c) * s.R + r) * s.S + t;
                                    dx[xi] += g * w[wi];
                                    dw[wi] += g * x[xi];
                                }
                    }
        return (dx, dw, db);
    }
}
