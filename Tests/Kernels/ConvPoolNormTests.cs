using AttnCore.Kernels.Cpu;
using NUnit.Framework;

namespace AttnCore.Tests.Kernels;

/// <summary>Convolution, pooling and batch-norm kernels against direct float64 loops written here.</summary>
[TestFixture, Category("Kernels")]
public class ConvPoolNormTests
{
    static double[] Rand(Generator g, int n) => Enumerable.Range(0, n).Select(_ => g.NextNormal()).ToArray();
    static float[] F(double[] x) => x.Select(v => (float)v).ToArray();

    // Direct convolution: y[n,k,p,q] = b[k] + Σ x[n, g·cg + c, p·sh − ph + r·dh, q·sw − pw + t·dw] w[k, c, r, t]
    static double[] DirectConv(double[] x, double[] w, double[]? b, Conv2dShape s)
    {
        int cg = s.C / s.Groups, kg = s.K / s.Groups;
        var y = new double[s.N * s.K * s.P * s.Q];
        for (int n = 0; n < s.N; n++) for (int k = 0; k < s.K; k++) for (int p = 0; p < s.P; p++) for (int q = 0; q < s.Q; q++)
        {
            double acc = b?[k] ?? 0;
            for (int c = 0; c < cg; c++) for (int r = 0; r < s.R; r++) for (int t = 0; t < s.S; t++)
            {
                int h = p * s.StrideH - s.PadH + r * s.DilationH, ww = q * s.StrideW - s.PadW + t * s.DilationW;
                if (h >= 0 && h < s.H && ww >= 0 && ww < s.W) acc += x[((n * s.C + k / kg * cg + c) * s.H + h) * s.W + ww] * w[((k * cg + c) * s.R + r) * s.S + t];
            }
            y[((n * s.K + k) * s.P + p) * s.Q + q] = acc;
        }
        return y;
    }

    static readonly Conv2dShape[] Shapes =
    [
        new(1, 3, 7, 5, 4, 3, 3, 1, 1, 1, 1),
        new(3, 2, 8, 8, 5, 3, 3, 2, 2, 1, 1),
        new(2, 4, 9, 9, 6, 3, 3, 1, 1, 2, 2, 2, 2),
        new(2, 8, 5, 5, 8, 1, 1),
        new(1, 6, 6, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1, 6),
        new(1, 1, 5, 5, 1, 5, 5),
        new(2, 4, 6, 6, 4, 3, 1, 1, 2, 1, 0, 1, 1, 2),
    ];

    [Test]
    public void Conv2d_forward_and_both_backward_passes_match_direct_loops()
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        foreach (var s in Shapes)
        {
            var x = Rand(g, s.N * s.C * s.H * s.W); var w = Rand(g, s.K * (s.C / s.Groups) * s.R * s.S); var b = Rand(g, s.K);
            var y = new float[s.N * s.K * s.P * s.Q];
            Conv2d.Forward<float>(F(x), F(w), F(b), y, s);
            var expected = DirectConv(x, w, b, s);
            for (int i = 0; i < y.Length; i++) Assert.That(y[i], Is.EqualTo(expected[i]).Within(1e-4 * (1 + Math.Abs(expected[i]))), $"y[{i}] {s} seed={seed}");

            // Backward by linearity: <dy, conv(x, w)> differentiated by hand, element by element, on a random dy.
            var dy = Rand(g, y.Length);
            var dx = new float[x.Length]; var dw = new float[w.Length]; var db = new float[s.K];
            Conv2d.BackwardData<float>(F(dy), F(w), dx, s);
            Conv2d.BackwardWeights<float>(F(dy), F(x), dw, db, s);
            double Inner(double[] xx, double[] ww) { var yy = DirectConv(xx, ww, null, s); double t = 0; for (int i = 0; i < yy.Length; i++) t += yy[i] * dy[i]; return t; }
            // <dy, conv(e_i, w)> = dx[i] and <dy, conv(x, e_j)> = dw[j]; probe a few entries exactly (the map is linear).
            for (int probe = 0; probe < 6; probe++)
            {
                int i = (int)g.NextInt64(0, x.Length), j = (int)g.NextInt64(0, w.Length);
                var ei = new double[x.Length]; ei[i] = 1;
                var ej = new double[w.Length]; ej[j] = 1;
                Assert.That(dx[i], Is.EqualTo(Inner(ei, w)).Within(1e-4), $"dx[{i}] {s} seed={seed}");
                Assert.That(dw[j], Is.EqualTo(Inner(x, ej)).Within(1e-3 * (1 + Math.Abs(Inner(x, ej)))), $"dw[{j}] {s} seed={seed}");
            }
            int pq = s.P * s.Q;
            for (int k = 0; k < s.K; k++)
            {
                double sum = 0;
                for (int n = 0; n < s.N; n++) for (int o = 0; o < pq; o++) sum += dy[(n * s.K + k) * pq + o];
                Assert.That(db[k], Is.EqualTo(sum).Within(1e-4 * (1 + Math.Abs(sum))), $"db {s}");
            }
        }
        Assert.Throws<ArgumentException>(() => new Conv2dShape(1, 3, 4, 4, 4, 3, 3, Groups: 2).Validate("t"));
        Assert.Throws<ArgumentException>(() => new Conv2dShape(1, 3, 2, 2, 4, 5, 5).Validate("t"));
    }

    [Test]
    public void Max_and_average_pooling_match_direct_loops_forward_and_backward()
    {
        var g = new Generator(TestContext.CurrentContext.Random.NextULong());
        foreach (var s in new Pool2dShape[] { new(2, 3, 7, 6, 2, 2, 2, 2), new(1, 2, 5, 5, 3, 3, 2, 2, 1, 1), new(1, 1, 4, 4, 3, 3, 1, 1) })
        {
            var x = F(Rand(g, s.N * s.C * s.H * s.W));
            var y = new float[s.N * s.C * s.P * s.Q]; var arg = new long[y.Length]; var ya = new float[y.Length];
            Pool2d.MaxForward<float>(x, y, arg, s);
            Pool2d.AvgForward<float>(x, ya, s);
            var dy = F(Rand(g, y.Length));
            var dxm = new float[x.Length]; var dxa = new float[x.Length];
            Pool2d.MaxBackward<float>(dy, arg, dxm, s);
            Pool2d.AvgBackward<float>(dy, dxa, s);
            var refDxm = new double[x.Length]; var refDxa = new double[x.Length];
            for (int pl = 0; pl < s.N * s.C; pl++) for (int p = 0; p < s.P; p++) for (int q = 0; q < s.Q; q++)
            {
                double best = double.NegativeInfinity, sum = 0; int at = -1;
                for (int r = 0; r < s.R; r++) for (int t = 0; t < s.S; t++)
                {
                    int h = p * s.StrideH - s.PadH + r, w = q * s.StrideW - s.PadW + t;
                    if (h < 0 || h >= s.H || w < 0 || w >= s.W) continue;
                    double v = x[(pl * s.H + h) * s.W + w];
                    sum += v;
                    if (v > best) { best = v; at = (pl * s.H + h) * s.W + w; }
                }
                int o = (pl * s.P + p) * s.Q + q;
                Assert.That(y[o], Is.EqualTo(best));
                Assert.That(ya[o], Is.EqualTo(sum / (s.R * s.S)).Within(1e-6));
                refDxm[at] += dy[o];
                for (int r = 0; r < s.R; r++) for (int t = 0; t < s.S; t++)
                {
                    int h = p * s.StrideH - s.PadH + r, w = q * s.StrideW - s.PadW + t;
                    if (h >= 0 && h < s.H && w >= 0 && w < s.W) refDxa[(pl * s.H + h) * s.W + w] += dy[o] / (s.R * s.S);
                }
            }
            for (int i = 0; i < x.Length; i++)
            {
                Assert.That(dxm[i], Is.EqualTo(refDxm[i]).Within(1e-5));
                Assert.That(dxa[i], Is.EqualTo(refDxa[i]).Within(1e-5));
            }
        }
    }

    [Test]
    public void BatchNorm_training_forward_backward_and_running_stats_match_float64()
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        int n = 3, c = 4, hw = 10;
        var x = Rand(g, n * c * hw).Select(v => v * 2 + 50).ToArray();
        var gamma = Rand(g, c); var beta = Rand(g, c);
        var y = new double[x.Length]; var mean = new double[c]; var inv = new double[c];
        var rm = new double[c]; var rv = Enumerable.Repeat(1.0, c).ToArray();
        BatchNorm.ForwardTraining<double>(x, gamma, beta, y, mean, inv, rm, rv, n, c, hw, 0.1, 1e-5);
        var dy = Rand(g, x.Length);
        var dx = new double[x.Length]; var dg = new double[c]; var db = new double[c];
        BatchNorm.Backward<double>(dy, x, mean, inv, gamma, dx, dg, db, n, c, hw);
        for (int ch = 0; ch < c; ch++)
        {
            var vals = Enumerable.Range(0, n).SelectMany(b => Enumerable.Range(0, hw).Select(i => x[(b * c + ch) * hw + i])).ToArray();
            double mu = vals.Average(), var = vals.Sum(v => (v - mu) * (v - mu)) / vals.Length;
            Assert.That(mean[ch], Is.EqualTo(mu).Within(1e-10));
            Assert.That(rm[ch], Is.EqualTo(0.1 * mu).Within(1e-10));
            Assert.That(rv[ch], Is.EqualTo(0.9 + 0.1 * var * vals.Length / (vals.Length - 1)).Within(1e-9));
            // Finite differences of L = Σ dy·y for one element of this channel.
            int idx = (1 * c + ch) * hw + 3;
            double L(double[] xx)
            {
                var yy = new double[xx.Length]; var m2 = new double[c]; var i2 = new double[c];
                BatchNorm.ForwardTraining<double>(xx, gamma, beta, yy, m2, i2, default, default, n, c, hw, 0.1, 1e-5);
                double t = 0; for (int i = 0; i < yy.Length; i++) t += yy[i] * dy[i]; return t;
            }
            var xp = (double[])x.Clone(); xp[idx] += 1e-6; var xm = (double[])x.Clone(); xm[idx] -= 1e-6;
            Assert.That(dx[idx], Is.EqualTo((L(xp) - L(xm)) / 2e-6).Within(1e-5), $"seed={seed}");
        }
    }
}
