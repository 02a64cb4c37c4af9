using AttnCore.Kernels.Cpu;
using NUnit.Framework;

namespace AttnCore.Tests.Kernels;

[TestFixture, Category("Kernels")]
public class GemmPrepackedTests
{
    // The float64 triple loop and random matrices of GemmTests (an independent reference, not the kernel's own).
    static double[] Reference(int m, int n, int k, bool ta, bool tb, double alpha, double beta, float[] a, int lda, float[] b, int ldb, float[] c, int ldc) =>
        GemmTests.Reference(m, n, k, ta, tb, alpha, beta, a, lda, b, ldb, c, ldc);

    static float[] Rand(Generator g, long n) => GemmTests.Rand(g, n);

    static IEnumerable<TestCaseData> Shapes()
    {
        // M: one row, a partial micro-tile, a GPT prompt (32), one past it, two row blocks' worth of tiles; N and K
        // on either side of the micro-kernel's 32 columns and the 256-deep slice; 16-wide edge strips.
        int[][] mnk = [[1, 1, 1], [5, 7, 3], [32, 384, 128], [33, 128, 512], [64, 33, 257], [97, 31, 255], [6, 32, 256], [40, 16, 300], [12, 65, 8]];
        foreach (var s in mnk)
            foreach (bool ta in new[] { false, true })
                foreach (bool tb in new[] { false, true })
                    foreach (int threads in new[] { 1, 2 })
                        yield return new TestCaseData(s[0], s[1], s[2], ta, tb, threads).SetName($"Prepacked_{s[0]}x{s[1]}x{s[2]}_ta{(ta ? 1 : 0)}_tb{(tb ? 1 : 0)}_t{threads}");
    }

    [TestCaseSource(nameof(Shapes))]
    public void Prepacked_gemm_matches_float64_and_equals_the_unpacked_gemm_bit_for_bit(int m, int n, int k, bool ta, bool tb, int threads)
    {
        int saved = WorkerPool.ThreadCount;
        try
        {
            WorkerPool.ThreadCount = threads;
            ulong seed = TestContext.CurrentContext.Random.NextULong();
            var g = new Generator(seed);
            foreach (var (alpha, beta, extra) in new[] { (1f, 0f, 0), (0.5f, 1f, 3), (-1f, 0.25f, 1) })
            {
                int lda = (ta ? m : k) + extra, ldb = (tb ? k : n) + extra, ldc = n + extra;
                var a = Rand(g, (long)(ta ? k : m) * lda); var b = Rand(g, (long)(tb ? n : k) * ldb); var c0 = Rand(g, (long)m * ldc);
                var c = (float[])c0.Clone(); var unpacked = (float[])c0.Clone();
                if (beta == 0) { Array.Fill(c, float.NaN); Array.Fill(unpacked, float.NaN); }   // beta = 0 must not read C
                var expected = Reference(m, n, k, ta, tb, alpha, beta, a, lda, b, ldb, c0, ldc);
                var packed = Gemm.PackB(tb, k, n, b, ldb);
                Assert.That(packed.Floats, Is.EqualTo((long)k * ((n + 31) / 32 * 32)));
                Gemm.SgemmPrepacked(ta, m, alpha, a, lda, packed, beta, c, ldc);
                Gemm.Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, unpacked, ldc);
                double tol = 3e-6 * Math.Sqrt(k + 1);
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++)
                    {
                        Assert.That(c[i * ldc + j], Is.EqualTo(expected[i * n + j]).Within(tol * (1 + Math.Abs(expected[i * n + j]))),
                            $"C[{i},{j}] alpha={alpha} beta={beta} ld+{extra} seed={seed}");
                        // Sgemm takes its skinny path (no packing) for m or n up to 4: other roundings there.
                        if (m > 4 && n > 4)
                            Assert.That(BitConverter.SingleToInt32Bits(c[i * ldc + j]), Is.EqualTo(BitConverter.SingleToInt32Bits(unpacked[i * ldc + j])),
                                $"C[{i},{j}] differs from Sgemm's {unpacked[i * ldc + j]}: {c[i * ldc + j]} (alpha={alpha} beta={beta} seed={seed})");
                    }
            }
        }
        finally { WorkerPool.ThreadCount = saved; }
    }

    [Test]
    public void Repacking_after_the_source_changes_gives_the_new_product()
    {
        var g = new Generator(7);
        int m = 12, n = 40, k = 20;
        var a = Rand(g, m * k); var w = Rand(g, n * k);
        var packed = Gemm.PackB(true, k, n, w, k);
        for (int i = 0; i < w.Length; i++) w[i] = -2 * w[i];
        var stale = new float[m * n]; var fresh = new float[m * n]; var expected = new float[m * n];
        Gemm.SgemmPrepacked(false, m, 1f, a, k, packed, 0f, stale, n);
        Gemm.Repack(packed, w, k);
        Gemm.SgemmPrepacked(false, m, 1f, a, k, packed, 0f, fresh, n);
        Gemm.Sgemm(false, true, m, n, k, 1f, a, k, w, k, 0f, expected, n);
        Assert.That(fresh, Is.EqualTo(expected));
        for (int i = 0; i < stale.Length; i++) Assert.That(stale[i], Is.EqualTo(-0.5f * expected[i]).Within(1e-5f * (1 + Math.Abs(expected[i]))), $"C[{i}] before repacking");
    }

    [Test]
    public void Bad_shapes_fail_naming_the_call_and_the_sizes()
    {
        var packed = Gemm.PackB(false, 8, 10, new float[80], 10);
        var e = Assert.Throws<ArgumentException>(() => Gemm.SgemmPrepacked(false, 4, 1f, new float[4 * 7], 7, packed, 0f, new float[40], 10))!;
        Assert.That(e.Message, Does.Contain("Gemm.SgemmPrepacked").And.Contain("lda=7"));
        e = Assert.Throws<ArgumentException>(() => Gemm.SgemmPrepacked(false, 4, 1f, new float[32], 8, packed, 0f, new float[39], 10))!;
        Assert.That(e.Message, Does.Contain("Gemm.SgemmPrepacked").And.Contain("c has 39 elements"));
        e = Assert.Throws<ArgumentException>(() => Gemm.PackB(true, 8, 10, new float[79], 8))!;
        Assert.That(e.Message, Does.Contain("Gemm.PackB").And.Contain("b has 79 elements"));
    }

    [TestCase(1)]
    [TestCase(4)]
    [TestCase(5)]
    [TestCase(33)]
    public void MultiplyByWeight_with_a_packed_weight_equals_the_unpacked_form_and_packs_only_above_MaxRows(int m)
    {
        var g = new Generator(11 + (ulong)m);
        int n = 70, k = 45;
        var a = Rand(g, m * k); var w = Rand(g, n * k);
        var unpacked = new float[m * n]; var prepacked = new float[m * n];
        Gemv.MultiplyByWeight(m, n, k, a, k, w, k, unpacked, n);
        int packs = 0;
        Gemv.MultiplyByWeight(m, n, k, a, k, w, k, prepacked, n, w, wt => { packs++; return Gemm.PackB(true, k, n, wt, k); });
        Assert.That(prepacked, Is.EqualTo(unpacked), "bit-identical to the unpacked form");
        Assert.That(packs, Is.EqualTo(m <= Gemv.MaxRows ? 0 : 1), "the factory runs only for the GEMM");
        var expected = Reference(m, n, k, false, true, 1, 0, a, k, w, k, new float[m * n], n);
        for (int i = 0; i < expected.Length; i++) Assert.That(prepacked[i], Is.EqualTo(expected[i]).Within(1e-4 * (1 + Math.Abs(expected[i]))), $"C[{i}]");
    }

    [Test]
    public void MultiplyByWeight_rejects_a_packed_weight_of_another_shape()
    {
        var packed = Gemm.PackB(true, 8, 10, new float[80], 8);
        var e = Assert.Throws<ArgumentException>(() => Gemv.MultiplyByWeight(6, 12, 8, new float[48], 8, new float[96], 8, new float[72], 12, packed, p => p))!;
        Assert.That(e.Message, Does.Contain("Gemv.MultiplyByWeight").And.Contain("[10, 8]").And.Contain("[12, 8]"));
    }
}
