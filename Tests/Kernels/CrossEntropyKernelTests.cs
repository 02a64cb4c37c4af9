using AttnCore.Kernels.Cpu;
using NUnit.Framework;

namespace AttnCore.Tests.Kernels;

/// <summary>
/// The fused cross-entropy kernel (float32 SIMD, float32 strided, float64) against its float64 reference
/// (CrossEntropy.ForwardReference/BackwardReference) over class counts around the vector width, strided logits,
/// class weights, probability targets, label smoothing and per-position or scalar output gradients.
/// </summary>
[TestFixture, Category("Kernels")]
public class CrossEntropyKernelTests
{
    static float[] Rand(Random rng, long n, double scale = 3) => Enumerable.Range(0, (int)n).Select(_ => (float)(scale * (2 * rng.NextDouble() - 1))).ToArray();

    static (float[] Logits, long[] Classes, float[] Probabilities, float[] Weight) Inputs(Random rng, CrossEntropyProblem p, bool weighted)
    {
        var logits = Rand(rng, p.Logits);
        var classes = Enumerable.Range(0, (int)p.Positions).Select(i => i % 5 == 3 ? p.IgnoreIndex : rng.NextInt64(p.Classes)).ToArray();
        var probabilities = p.ProbabilityTargets ? Enumerable.Range(0, (int)p.Logits).Select(_ => (float)rng.NextDouble()).ToArray() : [];
        var weight = weighted ? Enumerable.Range(0, p.Classes).Select(_ => (float)(2 * rng.NextDouble() - 0.5)).ToArray() : [];
        return (logits, p.ProbabilityTargets ? [] : classes, probabilities, weight);
    }

    [Test]
    public void Float32_and_float64_kernels_match_the_float64_reference_in_every_mode()
    {
        int seed = TestContext.CurrentContext.Random.Next();
        var rng = new Random(seed);
        foreach (int classes in new[] { 1, 2, 15, 16, 17, 33, 65, 1000 })
            foreach (int inner in new[] { 1, 3 })
                foreach (bool probabilities in new[] { false, true })
                    foreach (bool weighted in new[] { false, true })
                        foreach (double eps in new[] { 0.0, 0.15 })
                        {
                            var p = new CrossEntropyProblem(4, classes, inner, probabilities, -100, eps);
                            var (x, ct, q, w) = Inputs(rng, p, weighted);
                            string what = $"C={classes} inner={inner} probabilities={probabilities} weighted={weighted} eps={eps} seed={seed}";
                            var (refLosses, refDenominator) = CrossEntropy.ForwardReference(x, ct, q, w, p);
                            // 'none' output gradient: one value per position; the scalar one is checked through Backward's divisor.
                            var g = Rand(rng, p.Positions, 1);
                            var refDx = CrossEntropy.BackwardReference(x, ct, q, w, g.Select(v => (double)v).ToArray(), p);
                            var refMeanDx = CrossEntropy.BackwardReference(x, ct, q, w, Enumerable.Repeat(0.7 / refDenominator, (int)p.Positions).ToArray(), p);

                            var (lse, scale, losses, dx) = (new float[p.Positions], new float[p.Positions], new float[p.Positions], new float[p.Logits]);
                            double sum = CrossEntropy.Forward<float>(x, ct, q, w, lse, scale, losses, p, out double denominator);
                            Assert.That(denominator, Is.EqualTo(refDenominator).Within(1e-6 * (1 + Math.Abs(refDenominator))), $"denominator {what}");
                            Assert.That(sum, Is.EqualTo(refLosses.Sum()).Within(1e-5 * (1 + Math.Abs(refLosses.Sum()))), $"sum {what}");
                            for (int i = 0; i < losses.Length; i++) Assert.That(losses[i], Is.EqualTo(refLosses[i]).Within(1e-5 * (1 + Math.Abs(refLosses[i]))), $"loss {i} {what}");
                            // dx = softmax·Σy − y cancels: float32 rounding is relative to the larger terms, bounded by the largest |dx|.
                            double floor = 1e-6 + 5e-6 * refDx.Max(Math.Abs), meanFloor = 1e-6 + 5e-6 * refMeanDx.Max(Math.Abs);
                            CrossEntropy.Backward<float>(x, ct, q, w, lse, scale, g, 1f, dx, p);
                            for (int i = 0; i < dx.Length; i++) Assert.That(dx[i], Is.EqualTo(refDx[i]).Within(floor + 1e-5 * Math.Abs(refDx[i])), $"dx {i} {what}");
                            CrossEntropy.Backward<float>(x, ct, q, w, lse, scale, [0.7f], (float)denominator, dx, p);
                            for (int i = 0; i < dx.Length; i++) Assert.That(dx[i], Is.EqualTo(refMeanDx[i]).Within(meanFloor + 1e-5 * Math.Abs(refMeanDx[i])), $"mean dx {i} {what}");

                            var (xd, qd, wd) = (x.Select(v => (double)v).ToArray(), q.Select(v => (double)v).ToArray(), w.Select(v => (double)v).ToArray());
                            var (lsed, scaled, lossesd, dxd) = (new double[p.Positions], new double[p.Positions], new double[p.Positions], new double[p.Logits]);
                            double sumd = CrossEntropy.Forward<double>(xd, ct, qd, wd, lsed, scaled, lossesd, p, out double denominatord);
                            Assert.That(sumd, Is.EqualTo(refLosses.Sum()).Within(1e-11 * (1 + Math.Abs(refLosses.Sum()))), $"float64 sum {what}");
                            Assert.That(denominatord, Is.EqualTo(refDenominator).Within(1e-12 * (1 + Math.Abs(refDenominator))), $"float64 denominator {what}");
                            CrossEntropy.Backward<double>(xd, ct, qd, wd, lsed, scaled, g.Select(v => (double)v).ToArray(), 1, dxd, p);
                            for (int i = 0; i < dxd.Length; i++) Assert.That(dxd[i], Is.EqualTo(refDx[i]).Within(1e-12 + 1e-11 * Math.Abs(refDx[i])), $"float64 dx {i} {what}");
                        }
    }

    [Test]
    public void Backward_split_over_the_worker_pool_matches_the_reference()
    {
        // 96 x 1000 logits: enough for several chunks of the outer dim.
        int seed = TestContext.CurrentContext.Random.Next();
        var rng = new Random(seed);
        var p = new CrossEntropyProblem(96, 1000, 1, false, -100, 0.1);
        var (x, ct, q, w) = Inputs(rng, p, weighted: true);
        var (lse, scale, dx) = (new float[p.Positions], new float[p.Positions], new float[p.Logits]);
        CrossEntropy.Forward<float>(x, ct, q, w, lse, scale, default, p, out double denominator);
        CrossEntropy.Backward<float>(x, ct, q, w, lse, scale, [1f], (float)denominator, dx, p);
        var want = CrossEntropy.BackwardReference(x, ct, q, w, Enumerable.Repeat(1 / denominator, (int)p.Positions).ToArray(), p);
        for (int i = 0; i < dx.Length; i++) Assert.That(dx[i], Is.EqualTo(want[i]).Within(1e-7 + 1e-5 * Math.Abs(want[i])), $"dx {i} seed={seed}");
    }

    [Test]
    public void Out_of_range_targets_and_short_spans_are_refused_before_any_output_is_written()
    {
        var p = new CrossEntropyProblem(2, 3, 2, false, -100, 0);
        var lse = new float[4];
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() =>
            CrossEntropy.Forward<float>(new float[12], new long[] { 0, -100, 2, 3 }, default, default, lse, new float[4], default, p, out _))!;
        Assert.That(ex.Message, Does.Contain("target 3 at position 3 = [1, 1] of [2, 2] is outside the 3 classes [0, 3)"));
        Assert.That(lse, Is.All.EqualTo(0f), "the targets are checked before the kernel writes");
        Assert.That(Assert.Throws<ArgumentException>(() =>
            CrossEntropy.Forward<float>(new float[12], new long[4], default, new float[2], lse, new float[4], default, p, out _))!.Message,
            Does.Contain("weight has 2 values, need one per class (3)"));
        Assert.That(Assert.Throws<ArgumentException>(() =>
            CrossEntropy.Forward<float>(new float[11], new long[4], default, default, lse, new float[4], default, p, out _))!.Message,
            Does.Contain("logits hold 11 values, [2, 3, 2] needs 12"));
        Assert.That(Assert.Throws<ArgumentException>(() =>
            CrossEntropy.Backward<float>(new float[12], new long[4], default, default, lse, new float[4], new float[3], 1f, new float[12], p))!.Message,
            Does.Contain("gradOutput holds 3 values, need 1 or one per position (4)"));
    }
}
