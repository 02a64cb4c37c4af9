using AttnCore.Kernels;
using AttnCore.Kernels.Cpu;
using NUnit.Framework;

namespace AttnCore.Tests.Kernels;

/// <summary>Convolution, pooling and batch-norm kernels against direct float64 loops written here.</summary>
[TestFixture, Category("Kernels")]
public class ConvPoolNormTests
{
    static double[] Rand(Generator g, long n) { var a = new double[n]; for (long i = 0; i < n; i++) a[i] = g.NextNormal(); return a; }
    static float[] F(double[] x) => Array.ConvertAll(x, v => (float)v);

    // ---- independent float64 convolution: y[n,k,p,q] = b[k] + Σ_{c,r,t} x[n, g·cg + c, p·sh − ph + r·dh, q·sw − pw + t·dw] w[k, c, r, t]
    // Its gradients come from the same index map: dx[xi] += dy·w[wi], dw[wi] += dy·x[xi], db[k] += dy.
    internal static void DirectConv(double[] x, double[] w, double[]? b, Conv2dShape s, double[]? y, double[]? dy, double[]? dx, double[]? dw, double[]? db)
    {
        int cg = s.C / s.Groups, kg = s.K / s.Groups;
        for (int n = 0; n < s.N; n++) for (int k = 0; k < s.K; k++) for (int p = 0; p < s.P; p++) for (int q = 0; q < s.Q; q++)
        {
            int yi = ((n * s.K + k) * s.P + p) * s.Q + q;
            double acc = b?[k] ?? 0;
            if (db is not null) db[k] += dy![yi];
            for (int c = 0; c < cg; c++) for (int r = 0; r < s.R; r++) for (int t = 0; t < s.S; t++)
            {
                int h = p * s.StrideH - s.PadH + r * s.DilationH, ww = q * s.StrideW - s.PadW + t * s.DilationW;
                if (h < 0 || h >= s.H || ww < 0 || ww >= s.W) continue;
                int xi = ((n * s.C + k / kg * cg + c) * s.H + h) * s.W + ww, wi = ((k * cg + c) * s.R + r) * s.S + t;
                acc += x[xi] * w[wi];
                if (dx is not null) dx[xi] += dy![yi] * w[wi];
                if (dw is not null) dw[wi] += dy![yi] * x[xi];
            }
            if (y is not null) y[yi] = acc;
        }
    }

    // (N, C, H, W, K, R, S, strideH, strideW, padH, padW, dilationH, dilationW, groups)
    static readonly Conv2dShape[] Shapes =
    [
        new(1, 3, 7, 5, 4, 3, 3, 1, 1, 1, 1),                 // 3x3 pad 1, odd 7x5, batch 1
        new(3, 2, 8, 8, 5, 3, 3, 2, 2, 1, 1),                 // stride 2, batch 3
        new(2, 4, 9, 9, 6, 3, 3, 1, 1, 2, 2, 2, 2),           // dilation 2
        new(2, 8, 5, 5, 8, 1, 1),                             // 1x1 stride 1: no im2col
        new(3, 8, 7, 5, 6, 1, 1, 2, 2),                       // 1x1 stride 2 (a ResNet downsample)
        new(1, 6, 6, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1, 6),        // depthwise
        new(3, 5, 7, 5, 5, 3, 3, 2, 2, 1, 1, 2, 2, 5),        // depthwise, stride 2, dilation 2
        new(1, 1, 5, 5, 1, 5, 5),                             // C = K = 1, kernel = input
        new(3, 1, 7, 5, 8, 3, 3, 1, 1, 1, 1),                 // C = 1 stem
        new(2, 4, 6, 6, 4, 3, 1, 1, 2, 1, 0, 1, 1, 2),        // groups 2, non-square kernel and stride
        new(3, 6, 9, 7, 9, 3, 2, 2, 1, 1, 0, 1, 2, 3),        // groups 3, mixed stride/dilation
        new(3, 16, 17, 15, 24, 3, 3, 1, 1, 1, 1),             // big enough to split over the worker pool
        new(2, 16, 20, 20, 16, 3, 3, 1, 1, 1, 1, 1, 1, 16),   // depthwise split over the pool
        // Stride 2 with rows of 17 outputs or more: im2col and col2im move 16 values at a time (Im2Col.cs, GatherEven).
        new(2, 3, 24, 75, 8, 7, 7, 2, 2, 3, 3),               // a 7x7 stem: 38 outputs a row, padding on both ends
        new(2, 72, 6, 41, 80, 3, 3, 2, 2, 1, 1),              // a 3x3 layer too wide for the direct kernel: 21 a row
        new(2, 70, 4, 38, 66, 1, 1, 2, 2),                    // a 1x1 shortcut: 19 a row
        new(2, 96, 6, 10, 92, 3, 3, 2, 2, 1, 1),              // data pass: Wᵀ over 64K weights, split over the pool; K off 8
        new(2, 128, 5, 5, 136, 3, 3, 1, 1, 1, 1, 1, 1, 2),    // the same with 2 groups of 68 filters
    ];

    static IEnumerable<TestCaseData> ConvCases() => Shapes.Select(s => new TestCaseData(s).SetArgDisplayNames(s.ToString()));

    [TestCaseSource(nameof(ConvCases))]
    public void Conv2d_forward_and_both_backward_passes_match_direct_float64_loops(Conv2dShape s)
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        var x = Rand(g, s.XLength); var w = Rand(g, s.WLength); var b = Rand(g, s.K); var dy = Rand(g, s.YLength);
        var y = new double[s.YLength]; var dx = new double[s.XLength]; var dw = new double[s.WLength]; var db = new double[s.K];
        DirectConv(x, w, b, s, y, dy, dx, dw, db);

        var yf = new float[s.YLength]; var dxf = new float[s.XLength]; var dwf = new float[s.WLength]; var dbf = new float[s.K];
        Conv2d.Forward<float>(F(x), F(w), F(b), yf, s);
        Conv2d.BackwardData<float>(F(dy), F(w), dxf, s);
        Conv2d.BackwardWeights<float>(F(dy), F(x), dwf, dbf, s);
        // float32 sums of up to a few hundred unit-normal products: 1e-4 relative to (1 + |value|) is ~50x the error seen.
        AssertClose(yf, y, 1e-4, $"y {s} seed={seed}");
        AssertClose(dxf, dx, 1e-4, $"dx {s} seed={seed}");
        AssertClose(dwf, dw, 1e-4, $"dw {s} seed={seed}");
        AssertClose(dbf, db, 1e-4, $"db {s} seed={seed}");

        var yd = new double[s.YLength]; var dxd = new double[s.XLength]; var dwd = new double[s.WLength]; var dbd = new double[s.K];
        Conv2d.Forward<double>(x, w, b, yd, s);
        Conv2d.BackwardData<double>(dy, w, dxd, s);
        Conv2d.BackwardWeights<double>(dy, x, dwd, dbd, s);
        AssertClose(yd, y, 1e-12, $"y f64 {s}"); AssertClose(dxd, dx, 1e-12, $"dx f64 {s}");
        AssertClose(dwd, dw, 1e-12, $"dw f64 {s}"); AssertClose(dbd, db, 1e-12, $"db f64 {s}");

        // The kernel's own float64 references agree with these loops.
        AssertClose(Conv2d.ForwardReference(x, w, b, s), y, 1e-12, $"ForwardReference {s}");
        var (rdx, rdw, rdb) = Conv2d.BackwardReference(dy, x, w, s);
        AssertClose(rdx, dx, 1e-12, "BackwardReference dx"); AssertClose(rdw, dw, 1e-12, "BackwardReference dw"); AssertClose(rdb, db, 1e-12, "BackwardReference db");
    }

    [Test]
    public void Conv2d_backward_loops_are_the_derivative_of_the_forward_loops()
    {
        // L(x, w) = <dy, conv(x, w)> is bilinear, so a central difference is exact up to rounding.
        var g = new Generator(7);
        foreach (var s in Shapes.Take(11))
        {
            var x = Rand(g, s.XLength); var w = Rand(g, s.WLength); var dy = Rand(g, s.YLength);
            var dx = new double[s.XLength]; var dw = new double[s.WLength];
            DirectConv(x, w, null, s, null, dy, dx, dw, null);
            double L(double[] xx, double[] ww) { var yy = new double[s.YLength]; DirectConv(xx, ww, null, s, yy, null, null, null, null); return yy.Zip(dy, (a, c) => a * c).Sum(); }
            for (int probe = 0; probe < 3; probe++)
            {
                int i = (int)g.NextInt64(0, s.XLength), j = (int)g.NextInt64(0, s.WLength);
                var xp = (double[])x.Clone(); xp[i] += 0.5; var xm = (double[])x.Clone(); xm[i] -= 0.5;
                var wp = (double[])w.Clone(); wp[j] += 0.5; var wm = (double[])w.Clone(); wm[j] -= 0.5;
                Assert.That(L(xp, w) - L(xm, w), Is.EqualTo(dx[i]).Within(1e-9), $"dx[{i}] {s}");
                Assert.That(L(x, wp) - L(x, wm), Is.EqualTo(dw[j]).Within(1e-9), $"dw[{j}] {s}");
            }
        }
    }

    [Test]
    public void Conv2d_caller_workspace_gives_the_same_result_and_bad_sizes_throw_naming_the_kernel()
    {
        var s = new Conv2dShape(3, 16, 17, 15, 24, 3, 3, 1, 1, 1, 1);
        var g = new Generator(3);
        var x = F(Rand(g, s.XLength)); var w = F(Rand(g, s.WLength)); var dy = F(Rand(g, s.YLength));
        var ws = new float[Conv2d.WorkspaceSize(s)];
        var y1 = new float[s.YLength]; var y2 = new float[s.YLength];
        Conv2d.Forward<float>(x, w, default, y1, s);
        Conv2d.Forward<float>(x, w, default, y2, s, ws);
        Assert.That(y2, Is.EqualTo(y1));
        var dw1 = new float[s.WLength]; var dw2 = new float[s.WLength];
        Conv2d.BackwardWeights<float>(dy, x, dw1, default, s);
        Conv2d.BackwardWeights<float>(dy, x, dw2, default, s, ws);
        Assert.That(dw2, Is.EqualTo(dw1));

        Assert.Throws<ArgumentException>(() => new Conv2dShape(1, 3, 4, 4, 4, 3, 3, Groups: 2).Validate("t"));
        Assert.Throws<ArgumentException>(() => new Conv2dShape(1, 3, 2, 2, 4, 5, 5).Validate("t"));
        var e = Assert.Throws<ArgumentException>(() => Conv2d.Forward<float>(x.AsSpan(1), w, default, y1, s));
        Assert.That(e!.Message, Does.Contain("Conv2d.Forward").And.Contain(s.XLength.ToString()));
        Assert.Throws<ArgumentException>(() => Conv2d.BackwardData<float>(dy, w.AsSpan(0, 5), new float[s.XLength], s));
        Assert.Throws<ArgumentException>(() => Conv2d.Forward<float>(x, w, default, y1, s, new float[3]));
    }

    // ---- pooling: every window cell visited, padding skipped; the first maximum wins, the last NaN.
    static IEnumerable<TestCaseData> PoolCases() => new Pool2dShape[]
    {
        new(2, 3, 7, 6, 2, 2, 2, 2),            // 2x2 stride 2, odd H
        new(1, 2, 5, 5, 3, 3, 2, 2, 1, 1),      // ResNet stem: 3x3 stride 2 pad 1
        new(3, 1, 7, 5, 3, 3, 1, 1, 1, 1),      // stride 1 pad 1, C = 1, batch 3
        new(1, 1, 4, 4, 3, 3, 1, 1),
        new(2, 16, 33, 31, 3, 3, 2, 2, 1, 1),   // big enough to split over the pool
    }.Select(s => new TestCaseData(s, false).SetArgDisplayNames(s.ToString()))
    .Concat(new Pool2dShape[]
    {
        new(2, 3, 9, 40, 3, 3, 1, 1, 1, 1),     // rows past two vector widths, with ties and NaNs
        new(1, 2, 8, 37, 3, 3, 2, 2, 1, 1),
    }.Select(s => new TestCaseData(s, true).SetArgDisplayNames(s + " ties+NaN")));

    [TestCaseSource(nameof(PoolCases))]
    public void Max_and_average_pooling_match_direct_loops_forward_and_backward(Pool2dShape s, bool tiesAndNaN)
    {
        var g = new Generator(TestContext.CurrentContext.Random.NextULong());
        var x = F(Rand(g, s.XLength));
        if (tiesAndNaN)
            for (int i = 0; i < x.Length; i++) x[i] = g.NextDouble() < 0.02 ? float.NaN : MathF.Round(x[i] * 2) / 2;
        var y = new float[s.YLength]; var arg = new long[y.Length]; var ya = new float[y.Length];
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
                // the first maximum wins; a NaN is always taken (it propagates), so the last NaN wins, as in PyTorch
                if (at < 0 || v > best || double.IsNaN(v)) { best = v; at = h * s.W + w; }
            }
            int o = (pl * s.P + p) * s.Q + q;
            Assert.That(double.IsNaN(best) ? double.IsNaN(y[o]) : y[o] == best, $"max y[{o}] = {y[o]}, expected {best} {s}");
            Assert.That(arg[o], Is.EqualTo(at), $"argmax[{o}] {s}");
            if (!double.IsNaN(sum)) Assert.That(ya[o], Is.EqualTo(sum / (s.R * s.S)).Within(1e-6), $"avg y[{o}] {s}");
            refDxm[pl * s.H * s.W + at] += dy[o];
            for (int r = 0; r < s.R; r++) for (int t = 0; t < s.S; t++)
            {
                int h = p * s.StrideH - s.PadH + r, w = q * s.StrideW - s.PadW + t;
                if (h >= 0 && h < s.H && w >= 0 && w < s.W) refDxa[(pl * s.H + h) * s.W + w] += (double)dy[o] / (s.R * s.S);
            }
        }
        AssertClose(dxm, refDxm, 1e-5, $"max dx {s}");
        AssertClose(dxa, refDxa, 1e-5, $"avg dx {s}");

        // float64 overloads and the kernel's float64 references agree with the loops too.
        var xd = Array.ConvertAll(x, v => (double)v); var dyd = Array.ConvertAll(dy, v => (double)v);
        var (ry, rarg) = Pool2d.MaxForwardReference(xd, s);
        Assert.That(rarg, Is.EqualTo(arg));
        AssertClose(ry, Array.ConvertAll(y, v => (double)v), 0, "MaxForwardReference");
        AssertClose(Pool2d.MaxBackwardReference(dyd, arg, s), refDxm, 1e-12, "MaxBackwardReference");
        AssertClose(Pool2d.AvgBackwardReference(dyd, s), refDxa, 1e-12, "AvgBackwardReference");
        var yad = new double[y.Length]; Pool2d.AvgForward<double>(xd, yad, s);
        AssertClose(yad, Pool2d.AvgForwardReference(xd, s), 1e-12, "AvgForward f64");
    }

    [Test]
    public void Max_pooling_propagates_NaN_and_global_average_pooling_matches_plane_means()
    {
        var s = new Pool2dShape(1, 1, 2, 2, 2, 2, 2, 2);
        var y = new float[1]; var arg = new long[1];
        Pool2d.MaxForward<float>([1f, float.NaN, 3f, 2f], y, arg, s);
        Assert.That(float.IsNaN(y[0]) && arg[0] == 1);

        var g = new Generator(5);
        int n = 3, c = 5, hw = 7 * 5;
        var x = Rand(g, n * c * hw); var gy = Rand(g, n * c);
        var yf = new float[n * c]; var dxf = new float[x.Length];
        Pool2d.GlobalAvgForward<float>(F(x), yf, n, c, hw);
        Pool2d.GlobalAvgBackward<float>(F(gy), dxf, n, c, hw);
        for (int pl = 0; pl < n * c; pl++)
        {
            double mean = 0; for (int i = 0; i < hw; i++) mean += x[pl * hw + i] / hw;
            Assert.That(yf[pl], Is.EqualTo(mean).Within(1e-6));
            for (int i = 0; i < hw; i++) Assert.That(dxf[pl * hw + i], Is.EqualTo(gy[pl] / hw).Within(1e-7));
        }
        AssertClose(Pool2d.GlobalAvgForwardReference(x, n, c, hw), Array.ConvertAll(yf, v => (double)v), 1e-6, "GlobalAvgForwardReference");
    }

    // ---- batch norm: two-pass float64 statistics over (N, H, W) per channel.
    static double[] BnForward(double[] x, double[] gamma, double[] beta, int n, int c, int hw, double eps, double[] mean, double[] var)
    {
        var y = new double[x.Length]; double m = n * hw;
        for (int ch = 0; ch < c; ch++)
        {
            double s = 0, q = 0;
            for (int b = 0; b < n; b++) for (int i = 0; i < hw; i++) s += x[(b * c + ch) * hw + i];
            mean[ch] = s / m;
            for (int b = 0; b < n; b++) for (int i = 0; i < hw; i++) q += Math.Pow(x[(b * c + ch) * hw + i] - mean[ch], 2);
            var[ch] = q / m;
            for (int b = 0; b < n; b++) for (int i = 0; i < hw; i++)
            {
                int o = (b * c + ch) * hw + i;
                y[o] = (x[o] - mean[ch]) / Math.Sqrt(var[ch] + eps) * gamma[ch] + beta[ch];
            }
        }
        return y;
    }

    [TestCase(3, 4, 10, 50.0), TestCase(1, 1, 35, 0.0), TestCase(8, 16, 33 * 31, -3.0)]
    public void BatchNorm_training_forward_backward_and_running_stats_match_float64(int n, int c, int hw, double offset)
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        const double eps = 1e-5, momentum = 0.1;
        var x = Rand(g, n * c * hw).Select(v => v * 2 + offset).ToArray();
        var gamma = Rand(g, c); var beta = Rand(g, c); var dy = Rand(g, x.Length);
        var mean = new double[c]; var var = new double[c];
        var y = BnForward(x, gamma, beta, n, c, hw, eps, mean, var);

        // Backward by central differences of L = Σ dy·y on the float64 loops (a few elements per channel).
        var dxRef = new double[x.Length]; var dgRef = new double[c]; var dbRef = new double[c];
        double L(double[] xx) { var yy = BnForward(xx, gamma, beta, n, c, hw, eps, new double[c], new double[c]); return yy.Zip(dy, (a, b) => a * b).Sum(); }
        for (int ch = 0; ch < c; ch++)
            for (int b = 0; b < n; b++) for (int i = 0; i < hw; i++)
            {
                int o = (b * c + ch) * hw + i;
                double xhat = (x[o] - mean[ch]) / Math.Sqrt(var[ch] + eps);
                dgRef[ch] += dy[o] * xhat; dbRef[ch] += dy[o];
            }
        var probes = Enumerable.Range(0, Math.Min(x.Length, 24)).Select(_ => (int)g.NextInt64(0, x.Length)).ToArray();

        foreach (bool f32 in new[] { false, true })
        {
            var rm = new double[c]; var rv = Enumerable.Repeat(1.0, c).ToArray();
            var yk = new double[x.Length]; var mk = new double[c]; var ik = new double[c]; var dx = new double[x.Length]; var dgk = new double[c]; var dbk = new double[c];
            if (f32)
            {
                var (yf, mf, inf, rmf, rvf) = (new float[x.Length], new float[c], new float[c], new float[c], Enumerable.Repeat(1f, c).ToArray());
                BatchNorm.ForwardTraining<float>(F(x), F(gamma), F(beta), yf, mf, inf, rmf, rvf, n, c, hw, (float)momentum, (float)eps);
                var (dxf, dgf, dbf) = (new float[x.Length], new float[c], new float[c]);
                BatchNorm.Backward<float>(F(dy), F(x), mf, inf, F(gamma), dxf, dgf, dbf, n, c, hw);
                (yk, mk, ik, rm, rv, dx, dgk, dbk) = (D(yf), D(mf), D(inf), D(rmf), D(rvf), D(dxf), D(dgf), D(dbf));
            }
            else
            {
                BatchNorm.ForwardTraining<double>(x, gamma, beta, yk, mk, ik, rm, rv, n, c, hw, momentum, eps);
                BatchNorm.Backward<double>(dy, x, mk, ik, gamma, dx, dgk, dbk, n, c, hw);
            }
            // float32: inputs rounded to 2^-24 relative at |x| ~ 50 shift xhat by ~1e-5; gradients are sums of up to 8K terms.
            double tol = f32 ? 2e-4 : 1e-9, gtol = f32 ? 2e-4 * Math.Sqrt(n * hw) : 1e-9;
            string tag = $"{(f32 ? "f32" : "f64")} n={n} c={c} hw={hw} seed={seed}";
            double m = n * hw;
            for (int ch = 0; ch < c; ch++)
            {
                Assert.That(mk[ch], Is.EqualTo(mean[ch]).Within(tol * (1 + Math.Abs(mean[ch]))), $"mean {tag}");
                Assert.That(ik[ch], Is.EqualTo(1 / Math.Sqrt(var[ch] + eps)).Within(tol), $"invstd {tag}");
                Assert.That(rm[ch], Is.EqualTo(momentum * mean[ch]).Within(tol * (1 + Math.Abs(mean[ch]))), $"running mean {tag}");
                Assert.That(rv[ch], Is.EqualTo(1 - momentum + momentum * var[ch] * m / (m - 1)).Within(tol), $"running var (unbiased) {tag}");
                Assert.That(dgk[ch], Is.EqualTo(dgRef[ch]).Within(gtol), $"dgamma {tag}");
                Assert.That(dbk[ch], Is.EqualTo(dbRef[ch]).Within(gtol), $"dbeta {tag}");
            }
            AssertClose(yk, y, tol, $"y {tag}");
            foreach (int o in probes)
            {
                var xp = (double[])x.Clone(); xp[o] += 1e-5; var xm = (double[])x.Clone(); xm[o] -= 1e-5;
                double fd = (L(xp) - L(xm)) / 2e-5;
                Assert.That(dx[o], Is.EqualTo(fd).Within((f32 ? 2e-3 : 1e-5) * (1 + Math.Abs(fd))), $"dx[{o}] {tag}");
            }
            if (!f32)
            {
                var (rx, rg, rb) = BatchNorm.BackwardReference(dy, x, gamma, n, c, hw, eps);
                AssertClose(dx, rx, 1e-9, "BackwardReference dx"); AssertClose(dgk, rg, 1e-9, "BackwardReference dgamma"); AssertClose(dbk, rb, 1e-9, "BackwardReference dbeta");
                var (ry, _, _, _) = BatchNorm.ForwardTrainingReference(x, gamma, beta, n, c, hw, eps);
                AssertClose(ry, y, 1e-12, "ForwardTrainingReference");
            }
        }
    }

    [Test]
    public void BatchNorm_eval_mode_uses_the_running_statistics()
    {
        var g = new Generator(11);
        int n = 2, c = 3, hw = 20;
        var x = Rand(g, n * c * hw); var gamma = Rand(g, c); var beta = Rand(g, c);
        double[] rm = [0.5, -1, 2], rv = [1.5, 0.25, 4];
        var y = new float[x.Length];
        BatchNorm.ForwardInference<float>(F(x), F(gamma), F(beta), y, F(rm), F(rv), n, c, hw, 1e-5f);
        for (int i = 0; i < x.Length; i++)
        {
            int ch = i / hw % c;
            Assert.That(y[i], Is.EqualTo((x[i] - rm[ch]) / Math.Sqrt(rv[ch] + 1e-5) * gamma[ch] + beta[ch]).Within(1e-5));
        }
        Assert.Throws<ArgumentException>(() => BatchNorm.ForwardInference<float>(F(x), F(gamma), F(beta), y, F(rm).AsSpan(1), F(rv), n, c, hw, 1e-5f));
    }

    static double[] D(float[] a) => Array.ConvertAll(a, v => (double)v);

    static void AssertClose(ReadOnlySpan<float> actual, double[] expected, double rel, string what)
    {
        for (int i = 0; i < expected.Length; i++)
            if (!(Math.Abs(actual[i] - expected[i]) <= rel * (1 + Math.Abs(expected[i]))) && !(double.IsNaN(actual[i]) && double.IsNaN(expected[i])))
                Assert.Fail($"{what}: [{i}] = {actual[i]}, expected {expected[i]} (tolerance {rel} x (1 + |expected|))");
    }

    static void AssertClose(ReadOnlySpan<double> actual, double[] expected, double rel, string what)
    {
        for (int i = 0; i < expected.Length; i++)
            if (!(Math.Abs(actual[i] - expected[i]) <= rel * (1 + Math.Abs(expected[i]))) && !(double.IsNaN(actual[i]) && double.IsNaN(expected[i])))
                Assert.Fail($"{what}: [{i}] = {actual[i]}, expected {expected[i]} (tolerance {rel} x (1 + |expected|))");
    }
}
