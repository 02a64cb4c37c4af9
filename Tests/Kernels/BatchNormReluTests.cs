using AttnCore.Kernels.Cpu;
using NUnit.Framework;

namespace AttnCore.Tests.Kernels;

/// <summary>
/// The fused BatchNorm + ReLU kernels and the one-pass ReLU backward (Kernels/Cpu/BatchNormRelu.cs) against float64
/// references: BatchNorm's two-pass float64 formulas clamped / masked here, at H·W around the vector widths (the SIMD
/// body and its scalar tail), float32 and float64, with and without γ/β.
/// </summary>
[TestFixture, Category("Kernels")]
public class BatchNormReluTests
{
    static readonly int[] Lengths = [1, 2, 7, 8, 9, 15, 16, 17, 31, 33];

    static double[] Normal(Generator g, int len, double shift = 0, double scale = 1) => Enumerable.Range(0, len).Select(_ => shift + scale * g.NextNormal()).ToArray();

    // Independent of the kernel: x → BN with batch statistics → clamp, then the chain rule through the clamp by hand.
    static (double[] Y, double[] Dx, double[] Dg, double[] Db) Expected(double[] x, double[] dy, double[] gamma, double[] beta, int n, int c, int hw, double eps)
    {
        var y = BatchNorm.ForwardReluReference(x, gamma, beta, n, c, hw, eps);
        var z = BatchNorm.ForwardTrainingReference(x, gamma, beta, n, c, hw, eps).Y;
        var masked = z.Select((v, i) => v > 0 ? dy[i] : 0).ToArray();
        var (dx, dg, db) = BatchNorm.BackwardReference(masked, x, gamma, n, c, hw, eps);
        Assert.That(y, Is.EqualTo(z.Select(v => Math.Max(v, 0)).ToArray()), "ForwardReluReference is BN then max(0, ·)");
        var (rdx, rdg, rdb) = BatchNorm.BackwardReluReference(dy, x, gamma, beta, n, c, hw, eps);
        Assert.That(rdx, Is.EqualTo(dx)); Assert.That(rdg, Is.EqualTo(dg)); Assert.That(rdb, Is.EqualTo(db));
        return (y, dx, dg, db);
    }

    [Test]
    public void Float32_training_forward_and_backward_match_the_float64_reference_around_vector_widths([Values] bool affine)
    {
        const int n = 3, c = 2;
        const double eps = 1e-5;
        var g = new Generator(11);
        foreach (int hw in Lengths)
        {
            int len = n * c * hw;
            double[] x = Normal(g, len, 3, 2), dy = Normal(g, len), gamma = affine ? Normal(g, c, 1, 0.5) : [], beta = affine ? Normal(g, c) : [];
            var want = Expected(x, dy, affine ? gamma : [], affine ? beta : [], n, c, hw, eps);
            float[] F(double[] v) => v.Select(d => (float)d).ToArray();
            float[] y = new float[len], mean = new float[c], inv = new float[c], rm = [0.5f, -1], rv = [1, 2];
            BatchNorm.ForwardTrainingRelu<float>(F(x), F(gamma), F(beta), y, mean, inv, rm, rv, n, c, hw, 0.1f, (float)eps);
            for (int i = 0; i < len; i++) Assert.That(y[i], Is.EqualTo(want.Y[i]).Within(1e-5 + 1e-5 * Math.Abs(want.Y[i])), $"y[{i}] hw={hw}");
            Assert.That(y.Count(v => v == 0), Is.GreaterThan(0).And.LessThan(len), $"hw={hw}: some outputs clamped, some not");
            // Running statistics as the unfused kernel moves them.
            float[] y2 = new float[len], mean2 = new float[c], inv2 = new float[c], rm2 = [0.5f, -1], rv2 = [1, 2];
            BatchNorm.ForwardTraining<float>(F(x), F(gamma), F(beta), y2, mean2, inv2, rm2, rv2, n, c, hw, 0.1f, (float)eps);
            Assert.That(rm, Is.EqualTo(rm2), $"hw={hw}: running mean"); Assert.That(rv, Is.EqualTo(rv2), $"hw={hw}: running var");
            Assert.That(mean, Is.EqualTo(mean2), $"hw={hw}: mean"); Assert.That(inv, Is.EqualTo(inv2), $"hw={hw}: invstd");

            float[] dx = new float[len], dg = new float[c], db = new float[c];
            BatchNorm.BackwardRelu<float>(F(dy), F(x), mean, inv, F(gamma), F(beta), dx, dg, db, n, c, hw);
            double scale = want.Dx.Max(Math.Abs);
            for (int i = 0; i < len; i++) Assert.That(dx[i], Is.EqualTo(want.Dx[i]).Within(2e-5 * scale), $"dx[{i}] hw={hw}");
            Assert.That(dg, Is.EqualTo(want.Dg).Within(1e-4 * (1 + want.Dg.Max(Math.Abs))), $"dgamma hw={hw}");
            Assert.That(db, Is.EqualTo(want.Db).Within(1e-4 * (1 + want.Db.Max(Math.Abs))), $"dbeta hw={hw}");
        }
    }

    [Test]
    public void Float64_training_backward_matches_the_reference_to_rounding()
    {
        const int n = 2, c = 3;
        const double eps = 1e-5;
        var g = new Generator(12);
        foreach (int hw in Lengths)
        {
            int len = n * c * hw;
            double[] x = Normal(g, len), dy = Normal(g, len), gamma = Normal(g, c, 0, 1), beta = Normal(g, c);
            var want = Expected(x, dy, gamma, beta, n, c, hw, eps);
            double[] y = new double[len], mean = new double[c], inv = new double[c], dx = new double[len], dg = new double[c], db = new double[c];
            BatchNorm.ForwardTrainingRelu<double>(x, gamma, beta, y, mean, inv, [], [], n, c, hw, 0.1, eps);
            Assert.That(y, Is.EqualTo(want.Y).Within(1e-12), $"hw={hw}");
            BatchNorm.BackwardRelu<double>(dy, x, mean, inv, gamma, beta, dx, dg, db, n, c, hw);
            Assert.That(dx, Is.EqualTo(want.Dx).Within(1e-11), $"hw={hw}");
            Assert.That(dg, Is.EqualTo(want.Dg).Within(1e-11), $"hw={hw}");
            Assert.That(db, Is.EqualTo(want.Db).Within(1e-11), $"hw={hw}");
        }
    }

    // The backward recomputes the ReLU's mask from x; it must be the forward's y > 0 exactly, also where BN(x) is within
    // rounding of zero. Each channel holds a, a ± 0.5 and a ± m ulps (m = 1 .. 5) in symmetric pairs, so its mean is
    // exactly a and BN(x) of the inputs a few ulps from a sits on the ReLU's edge, where rounding decides the sign: a
    // mask computed in any other way (other operations, or other statistics than the forward used) flips some of them.
    // The fused backward must equal the plain backward run on dy masked by the forward's own output, bit for bit.
    [Test]
    public void Fused_backward_mask_is_the_forward_outputs_bit_for_bit()
    {
        const int n = 8, c = 6;
        var g = new Generator(21);
        float[] a = [0.1f, 3.7f, -2.3f, 0.013f, 17.1f, -0.77f], gamma = [0.7f, 1.3f, 2.9f, 0.37f, 1.1f, 5.3f], beta = new float[c];
        foreach (int hw in Lengths)
        {
            int len = n * c * hw;
            var x = new float[len];
            for (int b = 0; b < n; b++)
                for (int ch = 0; ch < c; ch++)
                    for (int j = 0; j < hw; j++)
                    {
                        int k = b * hw + j, m = k / 8 % 4 + 1;
                        float ulp = MathF.BitIncrement(MathF.Abs(a[ch])) - MathF.Abs(a[ch]);
                        float[] offsets = [0f, 0.5f, 0f, -0.5f, m * ulp, -m * ulp, (m + 1) * ulp, -(m + 1) * ulp];
                        x[(b * c + ch) * hw + j] = a[ch] + offsets[k % 8];
                    }
            float[] dy = Normal(g, len).Select(v => (float)v).ToArray();
            float[] y = new float[len], mean = new float[c], inv = new float[c];
            BatchNorm.ForwardTrainingRelu<float>(x, gamma, beta, y, mean, inv, [], [], n, c, hw, 0.1f, 1e-5f);
            Assert.That(mean, Is.EqualTo(a), "each channel's mean is exactly its a");
            float[] masked = dy.Select((v, i) => y[i] > 0 ? v : 0f).ToArray();
            float[] dx = new float[len], dg = new float[c], db = new float[c], dx2 = new float[len], dg2 = new float[c], db2 = new float[c];
            BatchNorm.BackwardRelu<float>(dy, x, mean, inv, gamma, beta, dx, dg, db, n, c, hw);
            BatchNorm.Backward<float>(masked, x, mean, inv, gamma, dx2, dg2, db2, n, c, hw);
            Assert.That(dx, Is.EqualTo(dx2), $"dx hw={hw}");
            Assert.That(dg, Is.EqualTo(dg2), $"dgamma hw={hw}");
            Assert.That(db, Is.EqualTo(db2), $"dbeta hw={hw}");
        }
    }

    [Test]
    public void Inference_is_the_unfused_inference_clamped_at_zero()
    {
        const int n = 2, c = 2;
        var g = new Generator(13);
        foreach (int hw in Lengths)
        {
            int len = n * c * hw;
            double[] x = Normal(g, len), gamma = Normal(g, c, 1), beta = Normal(g, c), rm = Normal(g, c), rv = Normal(g, c, 0, 1).Select(v => 0.5 + v * v).ToArray();
            double[] fused = new double[len], plain = new double[len];
            BatchNorm.ForwardInferenceRelu<double>(x, gamma, beta, fused, rm, rv, n, c, hw, 1e-5);
            BatchNorm.ForwardInference<double>(x, gamma, beta, plain, rm, rv, n, c, hw, 1e-5);
            Assert.That(fused, Is.EqualTo(plain.Select(v => Math.Max(v, 0)).ToArray()), $"hw={hw}");
        }
    }

    [Test]
    public void Relu_backward_passes_dy_where_the_output_is_positive_at_every_length()
    {
        var g = new Generator(14);
        for (int len = 0; len <= 2 * 16 + 1; len++)
        {
            float[] y = Normal(g, len).Select(v => (float)Math.Max(v, 0)).ToArray(), dy = Normal(g, len).Select(v => (float)v).ToArray();
            if (len > 3) { y[0] = float.NaN; y[1] = -0f; y[2] = float.Epsilon; y[3] = float.PositiveInfinity; }
            var dx = new float[len];
            BatchNorm.ReluBackward<float>(dy, y, dx);
            for (int i = 0; i < len; i++) Assert.That(dx[i], Is.EqualTo(y[i] > 0 ? dy[i] : 0f), $"len={len} i={i} y={y[i]}");
            BatchNorm.ReluBackward<float>(dy, y, dy);   // in place: dx aliasing dy
            Assert.That(dy, Is.EqualTo(dx), $"len={len} in place");
        }
    }

    [Test]
    public void Add_relu_is_max_of_zero_and_the_sum_at_every_length()
    {
        var g = new Generator(15);
        for (int len = 0; len <= 2 * 16 + 1; len++)
        {
            double[] a = Normal(g, len), b = Normal(g, len);
            if (len > 2) { a[0] = double.NaN; a[1] = -b[1]; a[2] = double.NegativeInfinity; }
            var y = new double[len];
            AddRelu.Forward<double>(a, b, y);
            for (int i = 0; i < len; i++)
            {
                double want = double.IsNaN(a[i] + b[i]) ? double.NaN : Math.Max(a[i] + b[i], 0);
                Assert.That(y[i], Is.EqualTo(want), $"len={len} i={i}");
            }
            float[] af = a.Select(v => (float)v).ToArray(), bf = b.Select(v => (float)v).ToArray(), yf = new float[len];
            AddRelu.Forward<float>(af, bf, yf);
            for (int i = 0; i < len; i++) Assert.That(yf[i], Is.EqualTo(float.IsNaN(af[i] + bf[i]) ? float.NaN : MathF.Max(af[i] + bf[i], 0)), $"float len={len} i={i}");
        }
        var e = Assert.Throws<ArgumentException>(() => AddRelu.Forward<float>(new float[3], new float[2], new float[3]));
        Assert.That(e!.Message, Does.StartWith("AddRelu.Forward").And.Contain("b 2"));
    }

    // 128K elements or more are cut into pool chunks: lengths that split unevenly, on 1 and 2 threads, in place too.
    [Test]
    public void Large_add_relu_and_relu_backward_split_over_the_pool_at_every_element([Values(1, 2)] int threads)
    {
        int saved = WorkerPool.ThreadCount;
        try
        {
            WorkerPool.ThreadCount = threads;
            var g = new Generator(16);
            foreach (int len in new[] { 128 * 1024, 300_007 })
            {
                float[] a = Normal(g, len).Select(v => (float)v).ToArray(), b = Normal(g, len).Select(v => (float)v).ToArray(), y = new float[len];
                AddRelu.Forward<float>(a, b, y);
                for (int i = 0; i < len; i++)
                    if (y[i] != MathF.Max(a[i] + b[i], 0)) Assert.Fail($"AddRelu len={len} i={i}: {y[i]}");
                var dx = new float[len];
                BatchNorm.ReluBackward<float>(a, y, dx);
                for (int i = 0; i < len; i++)
                    if (dx[i] != (y[i] > 0 ? a[i] : 0f)) Assert.Fail($"ReluBackward len={len} i={i}: {dx[i]}");
                BatchNorm.ReluBackward<float>(a, y, a);   // in place
                Assert.That(a, Is.EqualTo(dx), $"ReluBackward in place, len={len}");
            }
        }
        finally { WorkerPool.ThreadCount = saved; }
    }

    [Test]
    public void Bad_sizes_name_the_kernel_and_the_lengths()
    {
        var e = Assert.Throws<ArgumentException>(() => BatchNorm.ReluBackward<float>(new float[4], new float[3], new float[4]));
        Assert.That(e!.Message, Does.StartWith("BatchNorm.ReluBackward").And.Contain("y 3"));
        e = Assert.Throws<ArgumentException>(() => BatchNorm.BackwardRelu<float>(new float[8], new float[8], new float[2], new float[2], [], new float[1], new float[8], [], [], 2, 2, 2));
        Assert.That(e!.Message, Does.StartWith("BatchNorm.BackwardRelu: beta has 1 elements, needs C=2"));
        e = Assert.Throws<ArgumentException>(() => BatchNorm.BackwardRelu<float>(new float[6], new float[8], new float[2], new float[2], [], [], new float[8], [], [], 2, 2, 2));
        Assert.That(e!.Message, Does.StartWith("BatchNorm.BackwardRelu").And.Contain("dy"));
        e = Assert.Throws<ArgumentException>(() => BatchNorm.ForwardTrainingRelu<float>(new float[2], [], [], new float[2], new float[2], new float[2], [], [], 1, 2, 1, 0.1f, 1e-5f));
        Assert.That(e!.Message, Does.StartWith("BatchNorm.ForwardTrainingRelu: needs more than one value per channel"));
    }
}
