using AttnCore.Kernels;
using AttnCore.Kernels.Cpu;
using NUnit.Framework;

namespace AttnCore.Tests.Kernels;

/// <summary>The vectorised, chunked dropout mask against the scalar hash every device uses (RandomMask.KeepScale).</summary>
[TestFixture, Category("Kernels")]
public class DropoutMaskTests
{
    [Test]
    public void Fill_equals_the_scalar_hash_at_every_index_for_every_length_and_thread_count()
    {
        // Lengths around the 8-lane width, and ones long enough to be split over the pool (chunk starts not multiples of 8).
        int[] lengths = [.. Enumerable.Range(0, 20), 1000, 200_003, 1_000_001];
        int threads = WorkerPool.ThreadCount;
        try
        {
            foreach (int t in new[] { 1, 3 })
            {
                WorkerPool.ThreadCount = t;
                foreach (int n in lengths)
                    foreach (var (p, seed) in new[] { (0.3f, 0x0123456789ABCDEFUL), (0f, 7UL), (0.9f, ulong.MaxValue) })
                    {
                        float scale = 1 / (1 - p);
                        var mask = new float[n];
                        DropoutMask.Fill(mask, seed, p, scale);
                        for (int i = 0; i < n; i++)
                            if (mask[i] != RandomMask.KeepScale(seed, i, p, scale))
                                Assert.Fail($"threads {t}, length {n}, p {p}: element {i} is {mask[i]}, the hash gives {RandomMask.KeepScale(seed, i, p, scale)}");
                        if (n == 1_000_001)
                            Assert.That(mask.Count(v => v != 0) / (double)n, Is.EqualTo(1 - p).Within(0.002), $"keep rate at p {p}");
                    }
            }
        }
        finally { WorkerPool.ThreadCount = threads; }
    }
}
