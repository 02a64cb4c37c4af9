using AttnCore.Kernels.Cpu;
using NUnit.Framework;

namespace AttnCore.Tests.Kernels;

[TestFixture, Category("Kernels")]
public class GemmTests
{
    // Independent reference: float64 triple loop written here, not the kernel's own.
    internal static double[] Reference(int m, int n, int k, bool ta, bool tb, double alpha, double beta, float[] a, int lda, float[] b, int ldb, float[] c, int ldc, long oa = 0, long ob = 0, long oc = 0)
    {
        var r = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++) s += (double)a[oa + (ta ? p * lda + i : i * lda + p)] * b[ob + (tb ? j * ldb + p : p * ldb + j)];
                r[i * n + j] = alpha * s + (beta == 0 ? 0 : beta * c[oc + i * ldc + j]);
            }
        return r;
    }

    internal static float[] Rand(Generator g, long n) { var x = new float[n]; for (long i = 0; i < n; i++) x[i] = (float)(g.NextDouble() * 2 - 1); return x; }

    static IEnumerable<TestCaseData> Shapes()
    {
        // 1, primes, sizes just off the micro-tile (6 x 32), the block depth 256 and the row block 96.
        // The last four are exact multiples of the 8 x 8 transposes that pack a transposed B (k % 8 == 0, whole
        // 32-column strips), with a block edge at k = 256 and full 6-row strips of a transposed A.
        int[][] mnk = [[1, 1, 1], [7, 13, 5], [33, 17, 65], [5, 31, 6], [6, 32, 7], [7, 33, 255], [13, 65, 257], [95, 31, 3], [97, 33, 300], [2, 70, 9], [70, 3, 9], [1, 100, 40], [40, 1, 100],
            [12, 64, 16], [6, 96, 264], [18, 32, 8], [100, 64, 520],
            // Edge strips of 16 or more columns (PatchTST's d_model 16): the vector merge of an edge tile and the
            // vector packing of a partial B strip, at the first K slice and (k > 256) a later one.
            [40, 16, 16], [37, 48, 130], [20, 16, 300],
            // A read in place (row-major, N <= 64 or K <= 32) across two row blocks with a partial last strip, and
            // the vector packing of A: 6 x 8 transposes with a K tail (k % 8 != 0), a transposed A whose strip
            // ends exactly 8 rows before the block's end (14 = 6 + 8) and one where it does not (13).
            [102, 16, 40], [103, 40, 29], [14, 70, 20], [13, 70, 20], [8, 96, 24]];
        foreach (var s in mnk)
            foreach (bool ta in new[] { false, true })
                foreach (bool tb in new[] { false, true })
                    yield return new TestCaseData(s[0], s[1], s[2], ta, tb).SetName($"Sgemm_{s[0]}x{s[1]}x{s[2]}_ta{(ta ? 1 : 0)}_tb{(tb ? 1 : 0)}");
    }

    [TestCaseSource(nameof(Shapes))]
    public void Sgemm_matches_float64_reference(int m, int n, int k, bool ta, bool tb)
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        foreach (var (alpha, beta, extra) in new[] { (1f, 0f, 0), (0.5f, 1f, 3), (-1f, 0.25f, 1) })
        {
            int lda = (ta ? m : k) + extra, ldb = (tb ? k : n) + extra, ldc = n + extra;
            var a = Rand(g, (long)(ta ? k : m) * lda); var b = Rand(g, (long)(tb ? n : k) * ldb); var c = Rand(g, (long)m * ldc);
            if (beta == 0) Array.Fill(c, float.NaN);   // beta = 0 must not read C
            var expected = Reference(m, n, k, ta, tb, alpha, beta, a, lda, b, ldb, c, ldc);
            Gemm.Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            AssertMatches(c, ldc, expected, m, n, k, $"alpha={alpha} beta={beta} ld+{extra} seed={seed}");
        }
    }

    // The fused bias (a Linear layer's forward): every path (blocked, in-place A, edge tiles, skinny, a later K slice)
    // gives exactly the bits of the product followed by a separate add of the bias, and so the float64 reference + bias.
    [TestCaseSource(nameof(Shapes))]
    public void Sgemm_with_a_bias_equals_the_product_then_the_bias_added_bit_for_bit(int m, int n, int k, bool ta, bool tb)
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        foreach (var (alpha, beta, extra) in new[] { (1f, 0f, 0), (0.5f, 1f, 3) })
        {
            int lda = (ta ? m : k) + extra, ldb = (tb ? k : n) + extra, ldc = n + extra;
            var a = Rand(g, (long)(ta ? k : m) * lda); var b = Rand(g, (long)(tb ? n : k) * ldb); var c0 = Rand(g, (long)m * ldc);
            var bias = Rand(g, n);
            var unfused = (float[])c0.Clone();
            Gemm.Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, unfused, ldc);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) unfused[i * ldc + j] += bias[j];
            var fused = (float[])c0.Clone();
            Gemm.SgemmStridedBatched(1, ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, fused, ldc, 0, bias);
            var expected = Reference(m, n, k, ta, tb, alpha, beta, a, lda, b, ldb, c0, ldc);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) expected[i * n + j] += bias[j];
            AssertMatches(fused, ldc, expected, m, n, k, $"bias alpha={alpha} beta={beta} ld+{extra} seed={seed}");
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                    Assert.That(BitConverter.SingleToInt32Bits(fused[i * ldc + j]), Is.EqualTo(BitConverter.SingleToInt32Bits(unfused[i * ldc + j])),
                        $"C[{i},{j}] fused {fused[i * ldc + j]} against product + bias {unfused[i * ldc + j]} (alpha={alpha} beta={beta} seed={seed})");
        }
    }

    [Test]
    public void Sgemm_with_a_bias_on_two_threads_a_batch_and_an_empty_sum()
    {
        var g = new Generator(11);
        // Two threads cut C by rows (m >= n) and by columns (m < n), each part adding its own columns of the bias.
        foreach (var (m, n, k) in new[] { (300, 97, 260), (70, 400, 130) })
        {
            var a = Rand(g, (long)m * k); var b = Rand(g, (long)n * k); var bias = Rand(g, n);
            var c = new float[2L * m * n];
            Gemm.SgemmStridedBatched(2, false, true, m, n, k, 1f, a, k, 0, b, k, 0, 0f, c, n, (long)m * n, bias);
            var expected = Reference(m, n, k, false, true, 1, 0, a, k, b, k, c, n);
            for (int e = 0; e < 2; e++)
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++)
                        Assert.That(c[e * m * n + i * n + j], Is.EqualTo(expected[i * n + j] + bias[j]).Within(3e-6 * Math.Sqrt(k + 1) * (1 + Math.Abs(expected[i * n + j]))), $"{m}x{n}x{k} batch {e} C[{i},{j}]");
        }
        var only = new float[12];
        Gemm.SgemmStridedBatched(1, false, false, 3, 4, 0, 1f, [], 1, 0, [], 4, 0, 0f, only, 4, 0, [1f, 2f, 3f, 4f]);
        Assert.That(only, Is.EqualTo(new float[] { 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4 }), "k = 0: C is the bias on every row");
        var ex = Assert.Throws<ArgumentException>(() => Gemm.SgemmStridedBatched(1, false, false, 3, 4, 2, 1f, new float[6], 2, 0, new float[8], 4, 0, 0f, new float[12], 4, 0, new float[3]))!;
        Assert.That(ex.Message, Does.Contain("Gemm.Sgemm").And.Contain("bias has 3").And.Contain("n=4"));
    }

    // C (m x n, row stride ldc) against the float64 product, to a tolerance growing with sqrt(k).
    private static void AssertMatches(float[] c, int ldc, double[] expected, int m, int n, int k, string context)
    {
        double tol = 3e-6 * Math.Sqrt(k + 1);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                Assert.That(c[i * ldc + j], Is.EqualTo(expected[i * n + j]).Within(tol * (1 + Math.Abs(expected[i * n + j]))), $"C[{i},{j}] {context}");
    }

    [Test]
    public void Large_products_use_all_threads_and_still_match_on_sampled_entries()
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        int m = 300, n = 4200, k = 520;     // crosses MC, NC and KC block edges
        var a = Rand(g, m * k); var b = Rand(g, k * n); var c = new float[m * n];
        Gemm.Sgemm(false, false, m, n, k, 1f, a, k, b, n, 0f, c, n);
        for (int t = 0; t < 300; t++)
        {
            int i = (int)g.NextInt64(0, m), j = (int)g.NextInt64(0, n);
            double r = 0;
            for (int p = 0; p < k; p++) r += (double)a[i * k + p] * b[p * n + j];
            Assert.That(c[i * n + j], Is.EqualTo(r).Within(1e-4 * (1 + Math.Abs(r))), $"C[{i},{j}] seed={seed}");
        }
    }

    // The parallel path cuts C into one part per thread (rows when m >= n, else columns) and each part runs the
    // serial loops, so every element gets the same products in the same order whatever the thread count: bit for
    // bit the same C on 1, 2 and 3 threads, for tall and wide shapes, transposes, ld padding and two batch entries,
    // and close to the float64 reference.
    [TestCase(301, 97, 260, false, false)]
    [TestCase(301, 97, 260, true, true)]
    [TestCase(70, 400, 130, false, true)]
    [TestCase(70, 400, 130, true, false)]
    [TestCase(13, 1000, 40, false, false)]
    [TestCase(1000, 13, 40, true, false)]
    [TestCase(1000, 97, 1100, false, false)]   // row blocks shared by the threads, three K slices
    [TestCase(1000, 97, 1100, true, true)]
    public void Parallel_gemm_gives_the_same_bits_on_any_thread_count(int m, int n, int k, bool ta, bool tb)
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        const int batch = 2, extra = 3;
        int lda = (ta ? m : k) + extra, ldb = (tb ? k : n) + extra, ldc = n + extra;
        long sa = (long)(ta ? k : m) * lda, sb = (long)(tb ? n : k) * ldb, sc = (long)m * ldc;
        var a = Rand(g, batch * sa); var b = Rand(g, batch * sb); var c0 = Rand(g, batch * sc);
        int saved = WorkerPool.ThreadCount;
        var results = new List<float[]>();
        try
        {
            foreach (int threads in new[] { 1, 2, 3 })
            {
                WorkerPool.ThreadCount = threads;
                var c = (float[])c0.Clone();
                Gemm.SgemmStridedBatched(batch, ta, tb, m, n, k, 0.5f, a, lda, sa, b, ldb, sb, 0.25f, c, ldc, sc);
                results.Add(c);
            }
        }
        finally { WorkerPool.ThreadCount = saved; }
        for (int t = 1; t < results.Count; t++)
            for (int i = 0; i < results[0].Length; i++)
                Assert.That(BitConverter.SingleToInt32Bits(results[t][i]), Is.EqualTo(BitConverter.SingleToInt32Bits(results[0][i])),
                    $"C[{i}] on {t + 1} threads: {results[t][i]} against {results[0][i]} on one (seed={seed})");
        for (int e = 0; e < batch; e++)
        {
            var expected = Reference(m, n, k, ta, tb, 0.5, 0.25, a, lda, b, ldb, c0, ldc, oa: e * sa, ob: e * sb, oc: e * sc);
            double tol = 3e-6 * Math.Sqrt(k + 1);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                    Assert.That(results[1][e * sc + i * ldc + j], Is.EqualTo(expected[i * n + j]).Within(tol * (1 + Math.Abs(expected[i * n + j]))),
                        $"batch {e} C[{i},{j}] seed={seed}");
        }
    }

    [Test]
    public void Batched_gemm_broadcasts_a_stride_zero_operand()
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        int batch = 9, m = 20, n = 24, k = 16;
        var a = Rand(g, batch * m * k); var b = Rand(g, k * n); var c = new float[batch * m * n];
        Gemm.SgemmStridedBatched(batch, false, false, m, n, k, 1f, a, k, m * k, b, n, 0, 0f, c, n, m * n);
        for (int e = 0; e < batch; e++)
        {
            var exp = Reference(m, n, k, false, false, 1, 0, a, k, b, n, c, n, oa: e * m * k);
            for (int i = 0; i < m * n; i++) Assert.That(c[e * m * n + i], Is.EqualTo(exp[i]).Within(1e-5 * (1 + Math.Abs(exp[i]))), $"batch {e} seed={seed}");
        }
    }

    [Test]
    public void Dgemm_matches_reference_on_all_transposes()
    {
        var g = new Generator(TestContext.CurrentContext.Random.NextULong());
        foreach (bool ta in new[] { false, true })
            foreach (bool tb in new[] { false, true })
            {
                int m = 9, n = 11, k = 7;
                var a = Enumerable.Range(0, m * k).Select(_ => g.NextNormal()).ToArray();
                var b = Enumerable.Range(0, k * n).Select(_ => g.NextNormal()).ToArray();
                var c = new double[m * n]; var r = new double[m * n];
                Gemm.Dgemm(ta, tb, m, n, k, 1.5, a, ta ? m : k, b, tb ? k : n, 0, c, n);
                Gemm.DgemmReference(ta, tb, m, n, k, 1.5, a, ta ? m : k, b, tb ? k : n, 0, r, n);
                Assert.That(c, Is.EqualTo(r).Within(1e-12));
            }
    }

    // Small blockings put several NC panels, KC slices and MC blocks (each with edge tiles) into a small product, so
    // the loops' bounds are exercised on every path; a blocking the sweep might pick (MC 192, KC 384) besides.
    [TestCase(12, 7, 64, false, false)]
    [TestCase(12, 7, 64, true, true)]
    [TestCase(6, 1, 32, false, true)]
    [TestCase(18, 33, 96, true, false)]
    [TestCase(192, 384, 2048, false, false)]
    public void Sgemm_matches_float64_reference_under_other_blockings(int mc, int kc, int nc, bool ta, bool tb)
    {
        const int m = 67, n = 205, k = 150;
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        foreach (var (alpha, beta) in new[] { (1f, 0f), (0.5f, 0.75f) })
        {
            int lda = (ta ? m : k) + 1, ldb = (tb ? k : n) + 2, ldc = n + 3;
            var a = Rand(g, (long)(ta ? k : m) * lda); var b = Rand(g, (long)(tb ? n : k) * ldb); var c = Rand(g, (long)m * ldc);
            if (beta == 0) Array.Fill(c, float.NaN);
            var expected = Reference(m, n, k, ta, tb, alpha, beta, a, lda, b, ldb, c, ldc);
            Gemm.SgemmStridedBatchedWithBlocking((mc, kc, nc), 1, ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0);
            AssertMatches(c, ldc, expected, m, n, k, $"blocking {mc},{kc},{nc} alpha={alpha} beta={beta} seed={seed}");
        }
    }

    // The threads share C's row blocks (Parallel's SharedRowsTask) when C is taller than wide. A small blocking gives
    // 26 row blocks, 4 NC panels and 10 KC slices, so a block's next slice is often claimed by the other thread and
    // must wait for the previous one: bit for bit the single-thread result on 2 and 3 threads, and close to float64.
    [TestCase(false, false)]
    [TestCase(true, true)]
    public void Shared_row_blocks_give_the_one_thread_bits_under_a_small_blocking(bool ta, bool tb)
    {
        const int m = 301, n = 97, k = 150;
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        int lda = (ta ? m : k) + 1, ldb = (tb ? k : n) + 2, ldc = n + 3;
        var a = Rand(g, (long)(ta ? k : m) * lda); var b = Rand(g, (long)(tb ? n : k) * ldb); var c0 = Rand(g, (long)m * ldc);
        var bias = Rand(g, n);
        var expected = Reference(m, n, k, ta, tb, 0.5f, 0.25f, a, lda, b, ldb, c0, ldc);
        for (int i = 0; i < m; i++)
            for (int q = 0; q < n; q++) expected[i * n + q] += bias[q];
        int saved = WorkerPool.ThreadCount;
        var results = new List<float[]>();
        try
        {
            foreach (int threads in new[] { 1, 2, 3 })
            {
                WorkerPool.ThreadCount = threads;
                for (int round = 0; round < 5; round++)
                {
                    var c = (float[])c0.Clone();
                    Gemm.SgemmStridedBatchedWithBlocking((12, 16, 32), 1, ta, tb, m, n, k, 0.5f, a, lda, 0, b, ldb, 0, 0.25f, c, ldc, 0, bias);
                    results.Add(c);
                }
            }
        }
        finally { WorkerPool.ThreadCount = saved; }
        for (int t = 1; t < results.Count; t++)
            for (int i = 0; i < results[0].Length; i++)
                Assert.That(BitConverter.SingleToInt32Bits(results[t][i]), Is.EqualTo(BitConverter.SingleToInt32Bits(results[0][i])),
                    $"C[{i}] of run {t}: {results[t][i]} against {results[0][i]} on one thread (seed={seed})");
        AssertMatches(results[0], ldc, expected, m, n, k, $"seed={seed}");
    }

    [Test]
    public void Blocking_from_the_environment_is_parsed_and_checked()
    {
        Assert.That(Gemm.ParseBlocking(null, "X"), Is.EqualTo((96, 512, 1024)));
        Assert.That(Gemm.ParseBlocking(" ", "X"), Is.EqualTo((96, 512, 1024)));
        Assert.That(Gemm.ParseBlocking("192,384,2048", "X"), Is.EqualTo((192, 384, 2048)));
        foreach (var bad in new[] { "95,256,4096", "96,256,4090", "96,0,4096", "96,256", "a,b,c", "96,256,4096,1", "6000,4096,4096" })
        {
            var ex = Assert.Throws<ArgumentException>(() => Gemm.ParseBlocking(bad, "ATTNCORE_GEMM_BLOCKING"), bad);
            Assert.That(ex!.Message, Does.Contain("ATTNCORE_GEMM_BLOCKING").And.Contain(bad));
        }
        var c = new float[4];
        var e2 = Assert.Throws<ArgumentException>(() => Gemm.SgemmStridedBatchedWithBlocking((96, 256, 100), 1, false, false, 2, 2, 1, 1, new float[2], 1, 0, new float[2], 2, 0, 0, c, 2, 0));
        Assert.That(e2!.Message, Does.Contain("96,256,100"));
    }

    [Test]
    public void Invalid_sizes_throw_with_the_kernel_and_sizes_in_the_message()
    {
        var a = new float[5]; var b = new float[6]; var c = new float[4];
        var ex = Assert.Throws<ArgumentException>(() => Gemm.Sgemm(false, false, 2, 2, 3, 1, a, 3, b, 2, 0, c, 2));
        Assert.That(ex!.Message, Does.Contain("Gemm.Sgemm").And.Contain("a has 5 elements"));
        Assert.Throws<ArgumentException>(() => Gemm.Sgemm(false, false, -1, 2, 3, 1, a, 3, b, 2, 0, c, 2));
        Assert.Throws<ArgumentException>(() => Gemm.Sgemm(false, false, 2, 2, 3, 1, new float[6], 2, b, 2, 0, c, 2));
    }
}
