using AttnCore.Kernels.Cpu;
using NUnit.Framework;

namespace AttnCore.Tests.Kernels;

/// <summary>Softmax, LayerNorm, CrossEntropy and the vector exp against float64 references written here.</summary>
[TestFixture, Category("Kernels")]
public class RowKernelTests
{
    // Every length around the vector widths (16 floats for Vector512, 8 for Vector256), plus long rows
    // that take the online-softmax path and row counts that trigger threading.
    static readonly int[] Cols = [.. Enumerable.Range(1, 34), 63, 64, 65, 100, 1000, 20000];

    static float[] Rand(Generator g, int n, double scale = 3) { var x = new float[n]; for (int i = 0; i < n; i++) x[i] = (float)(g.NextNormal() * scale); return x; }

    [Test]
    public void Softmax_and_log_softmax_match_float64_on_every_row_length()
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        foreach (int cols in Cols)
            foreach (int rows in cols > 1000 ? new[] { 3 } : new[] { 1, 5, 70 })
            {
                var x = Rand(g, rows * cols);
                var y = new float[x.Length]; var ly = new float[x.Length]; var sy = new float[x.Length];
                Softmax.Forward(x, y, rows, cols);
                Softmax.LogSoftmaxForward(x, ly, rows, cols);
                // The same with streaming stores (large outputs take them): every row length, rows off a cache line.
                Softmax.Forward(x, sy, rows, cols, streamOutput: true);
                for (int r = 0; r < rows; r++)
                {
                    double max = double.NegativeInfinity;
                    for (int c = 0; c < cols; c++) max = Math.Max(max, x[r * cols + c]);
                    double sum = 0;
                    for (int c = 0; c < cols; c++) sum += Math.Exp(x[r * cols + c] - max);
                    for (int c = 0; c < cols; c++)
                    {
                        double p = Math.Exp(x[r * cols + c] - max) / sum;
                        // Like the log-softmax bound below: the float32 normaliser over cols terms rounds more on long rows.
                        Assert.That(y[r * cols + c], Is.EqualTo(p).Within((4e-6 + 1e-9 * cols) * p + 1e-9), $"softmax rows={rows} cols={cols} [{r},{c}] seed={seed}");
                        Assert.That(sy[r * cols + c], Is.EqualTo(p).Within((4e-6 + 1e-9 * cols) * p + 1e-9), $"streamed softmax rows={rows} cols={cols} [{r},{c}] seed={seed}");
                        // The normaliser sums cols terms in float32 lanes: allow its rounding to grow with the row length.
                        Assert.That(ly[r * cols + c], Is.EqualTo(Math.Log(p)).Within((2e-6 + 1e-9 * cols) * (1 + Math.Abs(Math.Log(p)))), $"log-softmax rows={rows} cols={cols} seed={seed}");
                    }
                }
            }
    }

    [Test]
    public void Softmax_handles_special_values_and_works_in_place()
    {
        var x = new float[] { 1000, 1001, float.NegativeInfinity, -1000 };
        Softmax.Forward(x, x, 1, 4);
        Assert.That(x[0], Is.EqualTo(1 / (1 + Math.E)).Within(1e-6));
        Assert.That(x[2], Is.EqualTo(0f));
        Assert.That(x[3], Is.EqualTo(0f));
        var allMasked = Enumerable.Repeat(float.NegativeInfinity, 20).ToArray();
        Softmax.Forward(allMasked, allMasked, 1, 20);
        Assert.That(allMasked, Is.All.NaN, "like PyTorch: no finite logit, no distribution");
        var withNaN = new float[] { 1, float.NaN, 2 };
        Softmax.Forward(withNaN, withNaN, 1, 3);
        Assert.That(withNaN[1], Is.NaN);
        // A NaN in a vector-width row (the vector max, which need not carry the NaN itself) makes the whole row NaN,
        // as in PyTorch, for softmax and log-softmax, wherever it sits.
        foreach (int at in new[] { 0, 7, 16, 33 })
            foreach (bool log in new[] { false, true })
            {
                var row = Enumerable.Range(0, 40).Select(i => (float)Math.Sin(i)).ToArray();
                row[at] = float.NaN;
                if (log) Softmax.LogSoftmaxForward(row, row, 1, 40); else Softmax.Forward(row, row, 1, 40);
                Assert.That(row, Is.All.NaN, $"NaN at {at}, log {log}");
            }
        var longRow = new float[40000];
        longRow[12345] = 50;
        Softmax.Forward(longRow, longRow, 1, 40000);
        Assert.That(longRow[12345], Is.EqualTo(1 / (1 + 39999 * Math.Exp(-50))).Within(1e-6));
    }

    [Test]
    public void Softmax_backward_matches_the_analytic_formula()
    {
        var g = new Generator(TestContext.CurrentContext.Random.NextULong());
        foreach (bool log in new[] { false, true })
            foreach (int cols in new[] { 1, 7, 16, 33, 300 })
            {
                int rows = 4;
                var x = Rand(g, rows * cols); var dy = Rand(g, rows * cols, 1);
                var y = new float[x.Length]; var dx = new float[x.Length];
                if (log) Softmax.LogSoftmaxForward(x, y, rows, cols); else Softmax.Forward(x, y, rows, cols);
                Softmax.Backward(y, dy, dx, rows, cols, log);
                for (int r = 0; r < rows; r++)
                {
                    double s = 0;
                    for (int c = 0; c < cols; c++) s += log ? dy[r * cols + c] : (double)dy[r * cols + c] * y[r * cols + c];
                    for (int c = 0; c < cols; c++)
                    {
                        int i = r * cols + c;
                        double e = log ? dy[i] - Math.Exp(y[i]) * s : y[i] * (dy[i] - s);
                        Assert.That(dx[i], Is.EqualTo(e).Within(1e-5 * (1 + Math.Abs(e))), $"log={log} cols={cols}");
                    }
                }
            }
    }

    [Test]
    public unsafe void StreamingStores_threshold_parses_and_row_heads_reach_a_cache_line()
    {
        Assert.That(StreamingStores.ParseMinBytes(null, "X"), Is.EqualTo(8L << 20));
        Assert.That(StreamingStores.ParseMinBytes("123", "X"), Is.EqualTo(123));
        var e = Assert.Throws<ArgumentException>(() => StreamingStores.ParseMinBytes("8MiB", "ATTNCORE_STREAMING_STORES_MIN_BYTES"));
        Assert.That(e!.Message, Does.Contain("ATTNCORE_STREAMING_STORES_MIN_BYTES").And.Contain("8MiB"));
        Assert.Throws<ArgumentException>(() => StreamingStores.ParseMinBytes("-1", "X"));
        var buffer = new float[64];
        fixed (float* p = buffer)
            for (int offset = 0; offset < 32; offset++)
            {
                int head = StreamingStores.AlignedHead(p + offset, 100);
                Assert.That((long)(p + offset + head) % 64, Is.EqualTo(0L), $"offset {offset}");
                Assert.That(head, Is.InRange(0, 15));
                Assert.That(StreamingStores.AlignedHead(p + offset, 3), Is.EqualTo(Math.Min(3, head)));
            }
    }

    [Test]
    public void LayerNorm_forward_and_backward_match_float64()
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        // stream: the output written with streaming stores (large outputs); odd widths start rows off a cache line.
        foreach (bool stream in new[] { false, true })
        foreach (int cols in new[] { 1, 2, 15, 16, 17, 31, 32, 33, 64, 257, 1000, 1024 })
            foreach (bool affine in new[] { false, true })
            {
                int rows = cols > 100 ? 40 : 5;
                var x = Rand(g, rows * cols);
                // A large mean checks the shifted one-pass statistics; not on 2-value rows, where the normalised
                // values are ±1 whatever the data and float32 rounding of the mean dominates dx.
                if (cols >= 16) for (int i = 0; i < x.Length; i++) x[i] += 100;
                var gamma = affine ? Rand(g, cols, 1) : []; var beta = affine ? Rand(g, cols, 1) : [];
                var y = new float[x.Length]; var mean = new float[rows]; var rstd = new float[rows];
                LayerNorm.Forward(x, gamma, beta, y, mean, rstd, rows, cols, 1e-5f, stream);
                var dy = Rand(g, rows * cols, 1);
                var dx = new float[x.Length]; var dgamma = new float[cols]; var dbeta = new float[cols];
                LayerNorm.Backward(dy, x, mean, rstd, gamma, dx, affine ? dgamma : [], affine ? dbeta : [], rows, cols, stream);
                var rdg = new double[cols]; var rdb = new double[cols];
                for (int r = 0; r < rows; r++)
                {
                    double mu = 0, v = 0;
                    for (int c = 0; c < cols; c++) mu += x[r * cols + c];
                    mu /= cols;
                    for (int c = 0; c < cols; c++) v += (x[r * cols + c] - mu) * (x[r * cols + c] - mu);
                    v /= cols;
                    double rs = 1 / Math.Sqrt(v + 1e-5);
                    Assert.That(mean[r], Is.EqualTo(mu).Within(1e-5 * (1 + Math.Abs(mu))), $"mean cols={cols} seed={seed}");
                    Assert.That(rstd[r], Is.EqualTo(rs).Within(2e-4 * rs), $"rstd cols={cols} seed={seed}");
                    double sg = 0, sgx = 0;
                    for (int c = 0; c < cols; c++)
                    {
                        double xh = (x[r * cols + c] - mu) * rs, w = affine ? gamma[c] : 1, d = dy[r * cols + c];
                        double expected = xh * w + (affine ? beta[c] : 0);
                        Assert.That(y[r * cols + c], Is.EqualTo(expected).Within(2e-4 * (1 + Math.Abs(expected))), $"y cols={cols} affine={affine} stream={stream} seed={seed}");
                        sg += d * w; sgx += d * w * xh;
                        rdg[c] += d * xh; rdb[c] += d;
                    }
                    for (int c = 0; c < cols; c++)
                    {
                        double xh = (x[r * cols + c] - mu) * rs, w = affine ? gamma[c] : 1;
                        double e = rs * (dy[r * cols + c] * w - sg / cols - xh * sgx / cols);
                        // dx = rstd·(… − xhat·…) with xhat itself scaled by rstd: when a row's values nearly coincide (cols = 2)
                        // rstd is large and float32 rounding of the saved mean is amplified by rstd², so the bound carries both.
                        double cond = (2e-6 * rs + 1e-7 * rs * rs) * (1 + Math.Abs(dy[r * cols + c]));
                        Assert.That(dx[r * cols + c], Is.EqualTo(e).Within(cond + 5e-4 * Math.Abs(e)), $"dx cols={cols} affine={affine} stream={stream} seed={seed}");
                    }
                }
                if (affine)
                    for (int c = 0; c < cols; c++)
                    {
                        Assert.That(dgamma[c], Is.EqualTo(rdg[c]).Within(5e-4 * (1 + Math.Abs(rdg[c]))), $"dgamma seed={seed}");
                        Assert.That(dbeta[c], Is.EqualTo(rdb[c]).Within(1e-4 * (1 + Math.Abs(rdb[c]))), $"dbeta seed={seed}");
                    }
            }
    }

    // The residual add fused into the forward and the addend into the backward do the same float operations as the
    // separate add (x + residual, then the layer norm of it; the gradient, then + addend), so their bits must equal those
    // of the unfused kernels, which the test above holds to float64; in place (sum over x, dx over the addend) too.
    [Test]
    public void LayerNorm_with_residual_and_addend_equal_the_separate_add_bit_for_bit()
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        foreach (bool stream in new[] { false, true })
        foreach (int cols in new[] { 1, 15, 16, 17, 33, 384, 1000 })
        foreach (bool affine in new[] { false, true })
        foreach (bool inPlace in new[] { false, true })
        {
            int rows = cols > 100 ? 40 : 7;
            string what = $"cols={cols} affine={affine} stream={stream} inPlace={inPlace} seed={seed}";
            var x = Rand(g, rows * cols); var residual = Rand(g, rows * cols);
            var gamma = affine ? Rand(g, cols, 1) : []; var beta = affine ? Rand(g, cols, 1) : [];
            var dy = Rand(g, rows * cols, 1); var addend = Rand(g, rows * cols, 1);

            var sumRef = new float[x.Length];
            for (int i = 0; i < x.Length; i++) sumRef[i] = x[i] + residual[i];
            var (yRef, meanRef, rstdRef) = (new float[x.Length], new float[rows], new float[rows]);
            LayerNorm.Forward(sumRef, gamma, beta, yRef, meanRef, rstdRef, rows, cols, 1e-5f, stream);
            var (dxRef, dgRef, dbRef) = (new float[x.Length], new float[cols], new float[cols]);
            LayerNorm.Backward(dy, sumRef, meanRef, rstdRef, gamma, dxRef, affine ? dgRef : [], affine ? dbRef : [], rows, cols, stream);
            for (int i = 0; i < x.Length; i++) dxRef[i] += addend[i];

            var xIn = (float[])x.Clone();
            var sum = inPlace ? xIn : new float[x.Length];
            var (y, mean, rstd) = (new float[x.Length], new float[rows], new float[rows]);
            LayerNorm.Forward(xIn, gamma, beta, y, mean, rstd, rows, cols, 1e-5f, stream, residual, sum);
            var add = (float[])addend.Clone();
            var dx = inPlace ? add : new float[x.Length];
            var (dg, db) = (new float[cols], new float[cols]);
            LayerNorm.Backward(dy, sum, mean, rstd, gamma, dx, affine ? dg : [], affine ? db : [], rows, cols, stream, add);
            Assert.Multiple(() =>
            {
                Assert.That(sum, Is.EqualTo(sumRef), $"sum {what}");
                Assert.That(y, Is.EqualTo(yRef), $"y {what}");
                Assert.That(mean, Is.EqualTo(meanRef), $"mean {what}");
                Assert.That(rstd, Is.EqualTo(rstdRef), $"rstd {what}");
                Assert.That(dx, Is.EqualTo(dxRef), $"dx {what}");
                Assert.That(dg, Is.EqualTo(dgRef), $"dgamma {what}");
                Assert.That(db, Is.EqualTo(dbRef), $"dbeta {what}");
            });
        }
    }

    [Test]
    public void LayerNorm_with_residual_and_addend_in_float64_match_a_two_pass_reference_and_check_lengths()
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        const int rows = 3, cols = 5;
        double[] R(int n) => Enumerable.Range(0, n).Select(_ => g.NextNormal()).ToArray();
        var (x, residual, gamma, beta, dy, addend) = (R(rows * cols), R(rows * cols), R(cols), R(cols), R(rows * cols), R(rows * cols));
        var (sum, y, mean, rstd) = (new double[rows * cols], new double[rows * cols], new double[rows], new double[rows]);
        LayerNorm.ForwardWithResidual(x, residual, gamma, beta, sum, y, mean, rstd, rows, cols, 1e-5);
        var (dx, dg, db) = (new double[rows * cols], new double[cols], new double[cols]);
        LayerNorm.Backward(dy, sum, mean, rstd, gamma, addend, dx, dg, db, rows, cols);
        for (int r = 0; r < rows; r++)
        {
            var s = Enumerable.Range(0, cols).Select(c => x[r * cols + c] + residual[r * cols + c]).ToArray();
            double mu = s.Average(), rs = 1 / Math.Sqrt(s.Select(v => (v - mu) * (v - mu)).Average() + 1e-5);
            var xh = s.Select(v => (v - mu) * rs).ToArray();
            var gg = Enumerable.Range(0, cols).Select(c => dy[r * cols + c] * gamma[c]).ToArray();
            double mg = gg.Average(), mgx = Enumerable.Range(0, cols).Select(c => gg[c] * xh[c]).Average();
            for (int c = 0; c < cols; c++)
            {
                Assert.That(sum[r * cols + c], Is.EqualTo(s[c]).Within(1e-15), $"sum seed={seed}");
                Assert.That(y[r * cols + c], Is.EqualTo(xh[c] * gamma[c] + beta[c]).Within(1e-12), $"y seed={seed}");
                Assert.That(dx[r * cols + c], Is.EqualTo(addend[r * cols + c] + rs * (gg[c] - mg - xh[c] * mgx)).Within(1e-11), $"dx seed={seed}");
            }
        }
        var e = Assert.Throws<ArgumentException>(() => LayerNorm.ForwardWithResidual(new float[15], new float[14], [], [], new float[15], new float[15], new float[3], new float[3], 3, 5, 1e-5f));
        Assert.That(e!.Message, Does.Contain("LayerNorm.ForwardWithResidual").And.Contain("residual").And.Contain("14").And.Contain("3 x 5"));
        e = Assert.Throws<ArgumentException>(() => LayerNorm.Backward(new float[15], new float[15], new float[3], new float[3], [], new float[10], new float[15], [], [], 3, 5));
        Assert.That(e!.Message, Does.Contain("LayerNorm.Backward").And.Contain("addend").And.Contain("10"));
    }

    [Test]
    public void CrossEntropy_matches_float64_with_ignore_index_and_label_smoothing()
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        foreach (int classes in new[] { 1, 5, 16, 17, 65, 1000 })
            foreach (float eps in new[] { 0f, 0.1f })
            {
                int rows = 9;
                var x = Rand(g, rows * classes);
                var t = Enumerable.Range(0, rows).Select(i => i % 4 == 3 ? -100L : g.NextInt64(0, classes)).ToArray();
                var (lse, rowScale) = (new float[rows], new float[rows]);
                var problem = new CrossEntropyProblem(rows, classes, 1, false, -100, eps);
                double sum = CrossEntropy.Forward<float>(x, t, default, default, lse, rowScale, default, problem, out double denominator);
                int count = (int)denominator;
                double loss = sum / count;
                Assert.That(count, Is.EqualTo(t.Count(v => v != -100)));
                // Independent float64 loss and gradient.
                double refLoss = 0;
                var refGrad = new double[rows * classes];
                for (int r = 0; r < rows; r++)
                {
                    if (t[r] == -100) continue;
                    double max = Enumerable.Range(0, classes).Max(c => (double)x[r * classes + c]);
                    double s = Enumerable.Range(0, classes).Sum(c => Math.Exp(x[r * classes + c] - max));
                    double l = max + Math.Log(s);
                    double mean = Enumerable.Range(0, classes).Average(c => (double)x[r * classes + c]);
                    refLoss += (1 - eps) * (l - x[r * classes + t[r]]) + eps * (l - mean);
                    for (int c = 0; c < classes; c++)
                        refGrad[r * classes + c] = (Math.Exp(x[r * classes + c] - l) - (c == t[r] ? 1 - eps : 0) - eps / classes) / count;
                }
                refLoss /= count;
                Assert.That(loss, Is.EqualTo(refLoss).Within(1e-5 * (1 + Math.Abs(refLoss))), $"classes={classes} eps={eps} seed={seed}");
                var dx = new float[x.Length];
                CrossEntropy.Backward<float>(x, t, default, default, lse, rowScale, new[] { 1f }, count, dx, problem);
                for (int i = 0; i < dx.Length; i++) Assert.That(dx[i], Is.EqualTo(refGrad[i]).Within(1e-6 + 1e-5 * Math.Abs(refGrad[i])), $"grad {i} classes={classes} seed={seed}");
            }
        Assert.Throws<ArgumentOutOfRangeException>(() => CrossEntropy.Forward<float>(new float[4], new long[] { 0, 7 }, default, default, new float[2], new float[2], default,
            new CrossEntropyProblem(2, 2, 1, false, -100, 0), out _));
    }

    [Test]
    public void Vector_exp_is_accurate_over_the_whole_range()
    {
        var xs = Enumerable.Range(0, 22001).Select(i => -120f + i * 0.0094f).Append(float.NegativeInfinity).Append(0f).ToArray();
        var ys = new float[xs.Length];
        var x = new float[64]; var y = new float[64];
        for (int i = 0; i < xs.Length; i++)
        {
            x[0] = xs[i];
            Softmax.ExpShiftSum(x, y, 16, 0f);
            ys[i] = y[0];
        }
        for (int i = 0; i < xs.Length; i++)
        {
            double e = Math.Exp(xs[i]);
            // Below the smallest normal float the result is a denormal or zero; below −110.9 (t = −160) and at −inf it
            // must be exactly 0.
            if (xs[i] < -110.9f) Assert.That(ys[i], Is.EqualTo(0f), $"x={xs[i]}");
            else if (xs[i] < -86f) Assert.That(ys[i], Is.EqualTo(e).Within(1.2e-38), $"x={xs[i]}");   // results near 2^-126 lose precision to denormals
            // The base-2 form rounds t = x·log2e once, so the relative error grows with |x| (see VectorMath.ExpShifted).
            else Assert.That(ys[i], Is.EqualTo(e).Within((3e-7 + 1.2e-7 * Math.Abs(xs[i])) * e), $"x={xs[i]}");
        }
    }
}
