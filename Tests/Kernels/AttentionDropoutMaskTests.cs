using System.Runtime.Intrinsics;
using AttnCore.Kernels;
using AttnCore.Kernels.Cpu;
using NUnit.Framework;

namespace AttnCore.Tests.Kernels;

/// <summary>
/// The vectorised dropout decision (Attention.KeepMask16, used by the forward pass's DropoutRow and the backward
/// pass's masked tiles) against the scalar one (Attention.Keep, the float64 comparison of AttentionDropout.Hash24):
/// the backward pass must regenerate exactly the mask the forward pass applied, so every lane must agree.
/// </summary>
[TestFixture, Category("Kernels")]
public class AttentionDropoutMaskTests
{
    [Test]
    public void Sixteen_lane_keep_mask_equals_the_scalar_decision_at_every_rate_and_position()
    {
        if (!Vector512.IsHardwareAccelerated) Assert.Ignore("Vector512 is not accelerated on this CPU; the kernels use the scalar Keep");
        var random = new Random(7);
        int checkedLanes = 0, kept = 0;
        foreach (float p in new[] { 0.5f, 0.1f, 0.25f, 0.3f, 0.9f, 1e-7f, 0.99999994f })
        {
            ulong threshold = Attention.KeepThreshold(p);
            for (int trial = 0; trial < 300; trial++)
            {
                ulong seed = (ulong)random.NextInt64() ^ ((ulong)random.Next() << 40);
                int b = random.Next(0, 5000), h = random.Next(0, 64), i = random.Next(0, 70_000), j = random.Next(0, 70_000);
                var mask = Attention.KeepMask16(seed, b, h, i, j, threshold).AsUInt32();
                for (int lane = 0; lane < 16; lane++)
                {
                    bool scalar = Attention.Keep(seed, b, h, i, j + lane, p);
                    Assert.That(mask[lane], Is.EqualTo(scalar ? uint.MaxValue : 0u), $"p {p}, seed {seed}, (b, h, i, j) = ({b}, {h}, {i}, {j + lane})");
                    checkedLanes++; if (scalar) kept++;
                }
            }
        }
        // the comparison must see both outcomes at the middle rates, or equal masks would prove nothing
        Assert.That(kept, Is.GreaterThan(checkedLanes / 10).And.LessThan(checkedLanes * 9 / 10));
    }

    /// <summary>The integer threshold sits exactly where the float64 comparison flips: hash ceil(p·2^24) - 1 is dropped, ceil(p·2^24) kept.</summary>
    [Test]
    public void Keep_threshold_is_the_first_kept_24_bit_hash()
    {
        foreach (float p in new[] { 0.5f, 0.1f, 1f / 3, 1e-7f })
        {
            ulong t = Attention.KeepThreshold(p);
            Assert.That(t * (1.0 / (1UL << 24)), Is.GreaterThanOrEqualTo((double)p));
            Assert.That((t - 1) * (1.0 / (1UL << 24)), Is.LessThan((double)p));
        }
    }
}
