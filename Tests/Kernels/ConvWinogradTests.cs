using AttnCore.Kernels;
using AttnCore.Kernels.Cpu;
using NUnit.Framework;
using System.Runtime.Intrinsics;

namespace AttnCore.Tests.Kernels;

/// <summary>
/// Winograd F(2x2, 3x3) (Kernels/Cpu/ConvWinograd.cs) against the float64 reference loops of ConvReference.cs: forward,
/// backward data and backward weights, on one and two threads, for shapes that take the Winograd path (each case first
/// checks that it does).
/// </summary>
[TestFixture, Category("Kernels")]
public class ConvWinogradTests
{
    // (N, C, H, W, K, 3, 3, stride 1, padding 1): all wider than the direct kernel takes (C·K > 64·64). On two threads the
    // small ones run a block at a time with the phases split over the threads, the last two a block per thread
    // (WinoBlockPerThread); on one thread, all a block at a time.
    static readonly Conv2dShape[] Cases =
    [
        new(2, 128, 14, 14, 128, 3, 3, 1, 1, 1, 1),   // ResNet-50's stage 3 layout (fewer channels), whole tiles
        new(2, 72, 7, 9, 80, 3, 3, 1, 1, 1, 1),       // odd height and width: the last tile row and column are cut
        new(3, 96, 5, 6, 48, 3, 3, 1, 1, 1, 1),       // K ≠ C, 27 tiles: one full and one partial vector of tiles
        new(2, 65, 1, 1, 70, 3, 3, 1, 1, 1, 1),       // 1x1 images: one tile each, nearly all padding
        new(4, 65, 46, 46, 64, 3, 3, 1, 1, 1, 1),     // 2,116 tiles: four blocks, so dw accumulates across blocks and
                                                      // (two threads, a block per thread) two per thread and two threads' dU
        new(2, 96, 30, 30, 48, 3, 3, 1, 1, 1, 1),     // K ≠ C with a block per thread on two threads
    ];

    static IEnumerable<TestCaseData> WinogradCases() => ConvDirectTests.OnOneAndTwoThreads(Cases);

    [TestCaseSource(nameof(WinogradCases))]
    public void Winograd_convolution_matches_the_float64_reference_in_all_three_passes(Conv2dShape s, int threads)
    {
        Assert.That(Conv2d.WinogradApplies<float>(s), Is.EqualTo(Vector512.IsHardwareAccelerated), $"{s} should take the Winograd path where Vector512 is accelerated");
        ConvDirectTests.CheckAllThreePasses(s, threads, seed: 13);
    }

    [Test]
    public void Winograd_is_not_taken_where_it_does_not_apply()
    {
        Assert.Multiple(() =>
        {
            Assert.That(Conv2d.WinogradApplies<float>(new(2, 64, 8, 8, 64, 3, 3, 1, 1, 1, 1)), Is.False, "64x64 channels: the direct kernel");
            Assert.That(Conv2d.WinogradApplies<float>(new(2, 128, 8, 8, 128, 3, 3, 2, 2, 1, 1)), Is.False, "stride 2");
            Assert.That(Conv2d.WinogradApplies<float>(new(2, 128, 8, 8, 128, 3, 3, 1, 1, 0, 0)), Is.False, "no padding");
            Assert.That(Conv2d.WinogradApplies<float>(new(2, 128, 8, 8, 128, 5, 5, 1, 1, 2, 2)), Is.False, "5x5");
            Assert.That(Conv2d.WinogradApplies<double>(new(2, 128, 8, 8, 128, 3, 3, 1, 1, 1, 1)), Is.False, "float64");
        });
    }

    [Test]
    public void Switching_Winograd_off_takes_im2col_and_gives_the_same_results_within_rounding()
    {
        var s = new Conv2dShape(2, 72, 7, 9, 80, 3, 3, 1, 1, 1, 1);
        var g = new Generator(5);
        float[] R(long n) { var a = new float[n]; for (long i = 0; i < n; i++) a[i] = (float)g.NextNormal(); return a; }
        var x = R(s.XLength); var w = R(s.WLength); var b = R(s.K);
        var on = new float[s.YLength]; var off = new float[s.YLength];
        Conv2d.Forward<float>(x, w, b, on, s);
        try
        {
            Conv2d.WinogradEnabled = false;
            Assert.That(Conv2d.WinogradApplies<float>(s), Is.False);
            Conv2d.Forward<float>(x, w, b, off, s);
        }
        finally { Conv2d.WinogradEnabled = true; }
        for (int i = 0; i < on.Length; i++)
            Assert.That(on[i], Is.EqualTo(off[i]).Within(1e-4 * (1 + Math.Abs(off[i]))), $"element {i}");
    }
}
