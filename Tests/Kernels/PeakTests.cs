using AttnCore.Kernels.Cpu;
using NUnit.Framework;

namespace AttnCore.Tests.Kernels;

/// <summary>The FMA peak kernel does the work it claims: its chains match a scalar FMA chain, and the FLOPs it reports equal the FMAs its lanes counted.</summary>
[TestFixture, Category("Kernels"), NonParallelizable]
public class PeakTests
{
    [TestCase(512, 16)]
    [TestCase(256, 12)]
    [TestCase(128, 12)]
    public void Chains_cover_fma_latency_times_throughput_and_count_two_flops_per_lane_per_fma(int bits, int chains)
    {
        // 2 FMA ports x 4-5 cycles latency need 8-10 chains in flight; the register files hold 16 (zmm) or 12 (ymm) plus 2 constants.
        Assert.That(FmaPeak.ChainsFor(bits), Is.EqualTo(chains));
        Assert.That(FmaPeak.FlopsPerIteration(bits), Is.EqualTo(2 * chains * (bits / 32)));
    }

    [TestCase(512)]
    [TestCase(256)]
    [TestCase(128)]
    public void Every_lane_of_every_chain_runs_exactly_the_claimed_number_of_fmas(int bits)
    {
        foreach (long iterations in new long[] { 0, 1, 7, 1000, 123_457 })
        {
            // acc = acc * 1 + 1 from 0 ends at the iteration count in every lane, exactly (below 2^24).
            double lanes = FmaPeak.RunChains(iterations, 1f, 1f, bits);
            Assert.That(2 * lanes, Is.EqualTo((double)iterations * FmaPeak.FlopsPerIteration(bits)), $"{bits} bits, {iterations} iterations");
        }
    }

    [TestCase(512)]
    [TestCase(256)]
    [TestCase(128)]
    public void Chains_match_a_scalar_fma_chain_with_the_same_rounding(int bits)
    {
        // A contracting multiplier makes every step round: the vector FMAs must round once per step, as MathF.FusedMultiplyAdd does.
        foreach (var (iterations, m, a) in new (long, float, float)[] { (300, 0.5f, 1f), (1001, 0.999f, 0.1f), (64, -0.75f, 3f) })
        {
            double expected = FmaPeak.ChainsReference(iterations, m, a, bits);
            Assert.That(FmaPeak.RunChains(iterations, m, a, bits), Is.EqualTo(expected), $"{bits} bits, {iterations} x ({m}, {a})");
        }
        // Independent float64 check of the reference: x_n = a (1 - m^n) / (1 - m) for m = 0.5, a = 1, n = 300 is 2 to float precision.
        Assert.That(FmaPeak.ChainsReference(300, 0.5f, 1f, bits) / (FmaPeak.ChainsFor(bits) * (bits / 32)), Is.EqualTo(2.0).Within(1e-6));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void Measure_reports_flops_equal_to_the_fmas_its_lanes_counted(bool parallel)
    {
        int saved = WorkerPool.ThreadCount;
        WorkerPool.ThreadCount = 2;
        try
        {
            var peak = FmaPeak.Measure(0.05, parallel);
            Assert.That(peak.Threads, Is.EqualTo(parallel ? 2 : 1));
            Assert.That(peak.VectorBits, Is.EqualTo(FmaPeak.DefaultVectorBits));
            Assert.That(peak.Chains, Is.EqualTo(FmaPeak.ChainsFor(peak.VectorBits)));
            Assert.That(peak.Flops, Is.GreaterThan(0));
            Assert.That(peak.CountedFlops, Is.EqualTo(peak.Flops), "FLOPs claimed vs 2 x FMAs counted in the lanes");
            Assert.That(peak.Gflops, Is.GreaterThan(0).And.LessThan(double.PositiveInfinity));
            Assert.That(peak.Seconds, Is.GreaterThanOrEqualTo(0.05));
        }
        finally { WorkerPool.ThreadCount = saved; }
    }

    [Test]
    public void Bad_arguments_throw_argument_exceptions_naming_the_value()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => FmaPeak.ChainsFor(64))!;
        Assert.That(e.Message, Does.Contain("512, 256 or 128").And.Contain("64"));
        Assert.Throws<ArgumentOutOfRangeException>(() => FmaPeak.RunChains(-1, 1f, 1f, 512));
        foreach (double s in new[] { 0.0, -1.0, double.NaN, 601.0 })
            Assert.That(() => FmaPeak.Measure(s, parallel: false), Throws.TypeOf<ArgumentOutOfRangeException>().With.Message.Contain("seconds"), s.ToString());
    }
}
