using AttnCore.Kernels;
using AttnCore.Kernels.Cpu;
using NUnit.Framework;
using System.Runtime.Intrinsics;

namespace AttnCore.Tests.Kernels;

/// <summary>
/// im2col + GEMM with images side by side (Kernels/Cpu/ConvSideBySide.cs) against the float64 reference loops of
/// ConvReference.cs: forward, backward data and backward weights, float32 on one and two threads and float64, for small-output
/// wide shapes that take the path (each case first checks in which passes it does).
/// </summary>
[TestFixture, Category("Kernels")]
public class ConvSideBySideTests
{
    static readonly Conv2dShape[] Cases =
    [
        new(3, 256, 7, 7, 260, 1, 1),                   // a 1x1 layer on 7x7 maps (ResNet-50's last stage, narrower); K not a tile multiple
        new(2, 260, 15, 13, 256, 1, 1, 2, 2, 0, 0),     // a 1x1 stride-2 shortcut to 8x7
        new(2, 256, 13, 13, 256, 3, 3, 2, 2, 1, 1),     // a 3x3 stride-2 layer to 7x7: side by side in the data pass only
        new(3, 256, 9, 9, 256, 3, 3, 1, 1, 0, 0),       // 3x3 without padding (not Winograd), 7x7 out: data pass only
        new(2, 256, 7, 9, 258, 3, 2, 2, 1, 1, 0, 2, 1), // dilated rows, odd sizes (float32: no direct kernel with dilation)
    ];

    static IEnumerable<TestCaseData> SideBySideCases() => ConvDirectTests.OnOneAndTwoThreads(Cases);

    [TestCaseSource(nameof(SideBySideCases))]
    public void Side_by_side_convolution_matches_the_float64_reference_in_all_three_passes(Conv2dShape s, int threads)
    {
        Assert.That(Conv2d.SideBySideApplies<float>(s, data: true), Is.True, $"{s} should take the side-by-side path in the data pass");
        Assert.That(Conv2d.SideBySideApplies<float>(s, data: false), Is.EqualTo(s.R * s.S == 1), $"{s}: forward and weights side by side for 1x1 kernels only");
        ConvDirectTests.CheckAllThreePasses(s, threads, seed: 17);
    }

    [TestCase(1), TestCase(2)]
    public void Several_chunks_accumulate_the_weight_gradient_and_leave_each_image_its_own_output(int threads)
    {
        // 1x1: 5 images of (256 + 256)·49 values with room for 2 a chunk: chunks of 2, 2 and 1. 3x3 stride 2 (data pass):
        // one image a chunk.
        long saved = Conv2d.SideBySideValues;
        try
        {
            Conv2d.SideBySideValues = 2 * 512 * 49;
            ConvDirectTests.CheckAllThreePasses(new Conv2dShape(5, 256, 7, 7, 256, 1, 1), threads, seed: 23);
            ConvDirectTests.CheckAllThreePasses(new Conv2dShape(5, 224, 13, 13, 320, 3, 3, 2, 2, 1, 1), threads, seed: 29);
        }
        finally { Conv2d.SideBySideValues = saved; }
    }

    [Test]
    public void Float64_takes_the_same_path_and_matches_the_reference_to_rounding()
    {
        foreach (var s in new Conv2dShape[] { new(3, 256, 7, 7, 260, 1, 1), new(2, 256, 13, 13, 256, 3, 3, 2, 2, 1, 1) })
        {
            Assert.That(Conv2d.SideBySideApplies<double>(s, data: true), Is.True, $"{s}");
            var g = new Generator(31);
            double[] R(long n) { var a = new double[n]; for (long i = 0; i < n; i++) a[i] = g.NextNormal(); return a; }
            var x = R(s.XLength); var w = R(s.WLength); var b = R(s.K); var dy = R(s.YLength);
            var y = new double[s.YLength]; var dx = new double[s.XLength]; var dw = new double[s.WLength]; var db = new double[s.K];
            Conv2d.Forward<double>(x, w, b, y, s);
            Conv2d.BackwardData<double>(dy, w, dx, s);
            Conv2d.BackwardWeights<double>(dy, x, dw, db, s);
            var ry = Conv2d.ForwardReference(x, w, b, s);
            var (rdx, rdw, _) = Conv2d.BackwardReference(dy, x, w, s);
            foreach (var (got, want, what) in new[] { (y, ry, "y"), (dx, rdx, "dx"), (dw, rdw, "dw") })
                for (int i = 0; i < got.Length; i++)
                    Assert.That(got[i], Is.EqualTo(want[i]).Within(1e-10 * (1 + Math.Abs(want[i]))), $"{what}[{i}] {s}");
        }
    }

    [Test]
    public void Side_by_side_is_not_taken_for_one_image_larger_outputs_thin_layers_or_groups()
    {
        Assert.Multiple(() =>
        {
            Assert.That(Conv2d.SideBySideApplies<float>(new(1, 256, 7, 7, 256, 1, 1), data: true), Is.False, "one image");
            Assert.That(Conv2d.SideBySideApplies<float>(new(4, 256, 9, 8, 256, 1, 1), data: true), Is.False, "72 outputs");
            Assert.That(Conv2d.SideBySideApplies<float>(new(128, 32, 16, 16, 64, 1, 1, 2, 2, 0, 0), data: true), Is.False, "ResNet-20's thin shortcut");
            Assert.That(Conv2d.SideBySideApplies<float>(new(4, 512, 7, 7, 512, 3, 3, 1, 1, 1, 1, 1, 1, 2), data: true), Is.False, "two groups");
            var winograd = new Conv2dShape(4, 512, 7, 7, 512, 3, 3, 1, 1, 1, 1);
            Assert.That(Conv2d.SideBySideApplies<float>(winograd, data: true), Is.EqualTo(!Conv2d.WinogradApplies<float>(winograd)), "Winograd's 3x3 layer (side by side only where Winograd is off: no AVX-512)");
            Assert.That(Conv2d.SideBySideApplies<double>(new(4, 256, 7, 7, 256, 1, 1), data: false), Is.True, "float64 too");
        });
    }
}
