using AttnCore.Kernels.Cpu;
using NUnit.Framework;

namespace AttnCore.Tests.Kernels;

/// <summary>
/// Gemv (Kernels/Cpu/Gemv.cs), the few-row path behind MatMul against a Linear weight: against a float64 loop
/// written here and against the kernel's own SgemvReference, at depths around the Vector512 / Vector256 / scalar
/// boundaries, row counts around the four-row block, padded leading dimensions, split over two threads, and
/// through Tensor.MatMul with an offset view.
/// </summary>
[TestFixture, Category("Kernels")]
public class GemvTests
{
    static float[] Rand(Generator g, long n) { var x = new float[n]; for (long i = 0; i < n; i++) x[i] = (float)(g.NextDouble() * 2 - 1); return x; }

    static double Expected(float[] a, int lda, float[] w, int ldw, int i, int j, int k)
    {
        double s = 0;
        for (int p = 0; p < k; p++) s += (double)a[i * lda + p] * w[j * ldw + p];
        return s;
    }

    static void Compare(int m, int n, int k, int pad, int threads)
    {
        var g = new Generator(TestContext.CurrentContext.Random.NextULong());
        int lda = Math.Max(1, k) + pad, ldw = Math.Max(1, k) + pad, ldc = n + pad;
        var a = Rand(g, Math.Max(1, m * lda));
        var w = Rand(g, Math.Max(1, n * ldw));
        var c = Enumerable.Repeat(9f, Math.Max(1, m * ldc)).ToArray();   // C is overwritten, never read
        var r = new float[c.Length];
        int saved = WorkerPool.ThreadCount;
        WorkerPool.ThreadCount = threads;
        try { Gemv.Sgemv(m, n, k, a, lda, w, ldw, c, ldc); }
        finally { WorkerPool.ThreadCount = saved; }
        Gemv.SgemvReference(m, n, k, a, lda, w, ldw, r, ldc);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double e = Expected(a, lda, w, ldw, i, j, k);
                Assert.That(c[i * ldc + j], Is.EqualTo(e).Within(1e-5 * (1 + Math.Sqrt(k))), $"m={m} n={n} k={k} C[{i},{j}] vs float64");
                Assert.That(c[i * ldc + j], Is.EqualTo(r[i * ldc + j]).Within(1e-5 * (1 + Math.Sqrt(k))), $"m={m} n={n} k={k} C[{i},{j}] vs SgemvReference");
            }
        for (int i = 0; i < m; i++)
            for (int j = n; j < ldc && i * ldc + j < c.Length; j++) Assert.That(c[i * ldc + j], Is.EqualTo(9f), $"padding C[{i},{j}] was written");
    }

    [Test]
    public void Sgemv_matches_float64_around_vector_widths_and_the_row_block(
        [Values(1, 2, 3, 4)] int m, [Values(1, 3, 4, 5, 9)] int n, [Values(0, 1, 7, 8, 9, 15, 16, 17, 24, 31, 33, 131)] int k)
        => Compare(m, n, k, pad: k % 3, threads: 1);

    [Test]
    public void Sgemv_split_over_two_threads_matches_float64([Values(1, 3)] int m, [Values(1031, 1036)] int n)
        => Compare(m, n, 131, pad: 2, threads: 2);   // 1031·131 weights: above the parallel threshold, chunks of 4 rows and a tail

    [Test]
    public void Sgemv_with_a_bias_equals_the_product_then_the_add_bit_for_bit(
        [Values(1, 2, 3, 4)] int m, [Values(1, 4, 5, 9, 1031)] int n, [Values(1, 17, 131)] int k, [Values(1, 2)] int threads)
    {
        var g = new Generator(TestContext.CurrentContext.Random.NextULong());
        int lda = k + 1, ldw = k + 2, ldc = n + 3;
        var (a, w, bias) = (Rand(g, m * lda), Rand(g, n * ldw), Rand(g, n));
        var (fused, plain) = (Enumerable.Repeat(9f, m * ldc).ToArray(), Enumerable.Repeat(9f, m * ldc).ToArray());
        int saved = WorkerPool.ThreadCount;
        WorkerPool.ThreadCount = threads;
        try
        {
            Gemv.Sgemv(m, n, k, a, lda, w, ldw, fused, ldc, bias);
            Gemv.Sgemv(m, n, k, a, lda, w, ldw, plain, ldc);
        }
        finally { WorkerPool.ThreadCount = saved; }
        for (int i = 0; i < m; i++)
            for (int j = 0; j < ldc; j++)
            {
                float expected = j < n ? plain[i * ldc + j] + bias[j] : 9f;   // the padding stays unwritten
                Assert.That(BitConverter.SingleToInt32Bits(fused[i * ldc + j]), Is.EqualTo(BitConverter.SingleToInt32Bits(expected)),
                    $"m={m} n={n} k={k} threads={threads} C[{i},{j}]: {fused[i * ldc + j]} against {expected}");
            }
        // and against float64: the sum plus the bias
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                Assert.That(fused[i * ldc + j], Is.EqualTo(Expected(a, lda, w, ldw, i, j, k) + bias[j]).Within(1e-5 * (1 + Math.Sqrt(k))));
    }

    [Test]
    public void Sgemv_refuses_a_bias_of_the_wrong_length_naming_both()
    {
        var buf = new float[64];
        var e = Assert.Throws<ArgumentException>(() => Gemv.Sgemv(1, 8, 4, buf, 4, buf, 4, buf, 8, new float[7]))!;
        Assert.That(e.Message, Does.Contain("Gemv.Sgemv").And.Contain("bias has 7").And.Contain("n=8"));
    }

    [Test]
    public void Sgemv_propagates_nan_from_zero_times_infinity()
    {
        float[] a = [0f, 1f], w = [float.PositiveInfinity, 2f];
        var c = new float[1];
        Gemv.Sgemv(1, 1, 2, a, 2, w, 2, c, 1);
        Assert.That(float.IsNaN(c[0]), $"0·inf + 1·2 must be NaN, got {c[0]}");
    }

    [Test]
    public void Sgemv_refuses_bad_sizes_naming_them()
    {
        var buf = new float[64];
        var tall = Assert.Throws<ArgumentException>(() => Gemv.Sgemv(5, 2, 2, buf, 2, buf, 2, buf, 2))!;
        Assert.That(tall.Message, Does.Contain("Gemv.Sgemv").And.Contain("m=5"));
        var shortW = Assert.Throws<ArgumentException>(() => Gemv.Sgemv(1, 8, 16, buf, 16, buf, 16, buf, 8))!;
        Assert.That(shortW.Message, Does.Contain("W 64 (needs 128)"));
        var ld = Assert.Throws<ArgumentException>(() => Gemv.Sgemv(1, 2, 8, buf, 4, buf, 8, buf, 2))!;
        Assert.That(ld.Message, Does.Contain("lda=4"));
    }

    [Test]
    public void MatMul_of_a_row_view_and_a_transposed_weight_takes_the_gemv_path_and_matches_float64([Values(1, 2, 4, 5)] int rows)
    {
        var g = new Generator(TestContext.CurrentContext.Random.NextULong());
        using var big = Tensor.FromArray(Rand(g, 9 * 37), [9, 37]);
        using var x = big.Narrow(0, 3, rows);       // rows at an offset in their storage
        using var weight = Tensor.FromArray(Rand(g, 21 * 37), [21, 37]);
        using var wt = weight.T;
        using var y = x.MatMul(wt);
        var xa = x.ToArray<float>(); var wa = weight.ToArray<float>(); var ya = y.ToArray<float>();
        Assert.That(y.Shape, Is.EqualTo(new[] { rows, 21 }));
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < 21; j++)
                Assert.That(ya[i * 21 + j], Is.EqualTo(Expected(xa, 37, wa, 37, i, j, 37)).Within(1e-5), $"y[{i},{j}]");
    }
}
