using AttnCore.Kernels;
using AttnCore.Kernels.Cpu;
using NUnit.Framework;
using System.Runtime.Intrinsics;

namespace AttnCore.Tests.Kernels;

/// <summary>
/// The direct stride-1 convolution (Kernels/Cpu/ConvDirect.cs) against the float64 reference loops of ConvReference.cs:
/// forward, backward data and backward weights, on one and two threads, for the shapes that take the direct path
/// (each case first checks it does, so the test cannot pass on the im2col path alone).
/// </summary>
[TestFixture, Category("Kernels")]
public class ConvDirectTests
{
    // The direct tiles need vectors: Vector512, or an accelerated Vector<float> (AVX2, Arm64, SSE).
    static bool Vectorised => Vector512.IsHardwareAccelerated || System.Numerics.Vector.IsHardwareAccelerated;

    static double[] Rand(Generator g, long n) { var a = new double[n]; for (long i = 0; i < n; i++) a[i] = g.NextNormal(); return a; }
    static float[] F(double[] x) => Array.ConvertAll(x, v => (float)v);

    static void AssertClose(float[] actual, double[] expected, double tol, string what)
    {
        for (int i = 0; i < expected.Length; i++)
            if (Math.Abs(actual[i] - expected[i]) > tol * (1 + Math.Abs(expected[i])))
                Assert.Fail($"{what}: element {i} is {actual[i]}, reference {expected[i]}");
    }

    // (N, C, H, W, K, R, S, strideH, strideW, padH, padW). Flattened rows P·(W + 2·padW) that are not a multiple of the
    // 64-position tile end in 16-position tiles (stage 2: 288, stage 3: 80, the 5x5 case: 624).
    static readonly Conv2dShape[] Cases =
    [
        new(2, 16, 32, 32, 16, 3, 3, 1, 1, 1, 1),    // ResNet-20 stage 1
        new(17, 16, 32, 32, 16, 3, 3, 1, 1, 1, 1),   // 17 images: the weight gradient stages 7 at a time, so chunks end early
        new(3, 32, 16, 16, 32, 3, 3, 1, 1, 1, 1),    // stage 2
        new(2, 64, 8, 8, 64, 3, 3, 1, 1, 1, 1),      // stage 3
        new(3, 3, 32, 30, 16, 3, 3, 1, 1, 1, 1),     // the stem: 3 channels, odd width
        new(2, 5, 20, 27, 7, 5, 5, 1, 1, 2, 2),      // 5x5, K not a multiple of the 4-channel tile
        new(2, 4, 25, 21, 6, 3, 2, 1, 1, 0, 1),      // no row padding, 3x2 kernel (a tile of 3 taps past S)
        new(1, 2, 9, 6, 3, 3, 3, 1, 1, 1, 1),        // one image, short rows
    ];

    static IEnumerable<TestCaseData> DirectCases() => OnOneAndTwoThreads(Cases);

    internal static IEnumerable<TestCaseData> OnOneAndTwoThreads(Conv2dShape[] cases)
    {
        foreach (var s in cases)
            foreach (int threads in new[] { 1, 2 })
                yield return new TestCaseData(s, threads).SetArgDisplayNames($"{s.N}x{s.C}x{s.H}x{s.W} K{s.K} {s.R}x{s.S} stride {s.StrideH} pad{s.PadH},{s.PadW}", $"threads {threads}");
    }

    [TestCaseSource(nameof(DirectCases))]
    public void Direct_convolution_matches_the_float64_reference_in_all_three_passes(Conv2dShape s, int threads)
    {
        // Stride 1 runs direct at every vector width (Vector512, or Vector<float> on AVX2 and Arm64), not without SIMD.
        Assert.That(Conv2d.DirectApplies<float>(s), Is.EqualTo(Vectorised), $"{s} should take the direct path");
        CheckAllThreePasses(s, threads, seed: 11);
    }

    // Forward, backward data and backward weights of s on the given thread count against the float64 reference loops.
    internal static void CheckAllThreePasses(Conv2dShape s, int threads, ulong seed)
    {
        int saved = WorkerPool.ThreadCount;
        try
        {
            WorkerPool.ThreadCount = threads;
            var g = new Generator(seed);
            var x = Rand(g, s.XLength); var w = Rand(g, s.WLength); var b = Rand(g, s.K); var dy = Rand(g, s.YLength);
            var y = new float[s.YLength]; var dx = new float[s.XLength]; var dw = new float[s.WLength]; var db = new float[s.K];
            // Stale values in the outputs must be overwritten, not added to.
            Array.Fill(y, float.NaN); Array.Fill(dx, float.NaN); Array.Fill(dw, float.NaN);
            Conv2d.Forward<float>(F(x), F(w), F(b), y, s);
            Conv2d.BackwardData<float>(F(dy), F(w), dx, s);
            Conv2d.BackwardWeights<float>(F(dy), F(x), dw, db, s);
            var ry = Conv2d.ForwardReference(x, w, b, s);
            var (rdx, rdw, rdb) = Conv2d.BackwardReference(dy, x, w, s);
            // float32 sums of up to ~18,000 unit-normal products (dw of the 32x32 case): 2e-4 relative to (1 + |value|)
            // is about 20x the error seen.
            AssertClose(y, ry, 1e-4, $"y {s}");
            AssertClose(dx, rdx, 1e-4, $"dx {s}");
            AssertClose(dw, rdw, 2e-4, $"dw {s}");
            AssertClose(db, rdb, 2e-4, $"db {s}");
        }
        finally { WorkerPool.ThreadCount = saved; }
    }

    // Stride-2 3x3 layers: the forward pass and the weight gradient run direct over the four phases of the padded image,
// backward data over the four phases of dx (ConvDirectStridedData.cs).
    static readonly Conv2dShape[] StridedCases =
    [
        new(2, 16, 32, 32, 32, 3, 3, 2, 2, 1, 1),    // ResNet-20's first downsampling layer
        new(19, 16, 32, 32, 32, 3, 3, 2, 2, 1, 1),   // 19 images: the weight gradient stages 9 at a time
        new(3, 32, 16, 16, 64, 3, 3, 2, 2, 1, 1),    // the second
        new(2, 5, 15, 13, 7, 3, 3, 2, 2, 1, 1),      // odd height and width, K not a multiple of 4
        new(2, 4, 9, 10, 6, 3, 3, 2, 2, 0, 0),       // no padding
        new(1, 3, 11, 12, 5, 3, 3, 2, 2, 2, 2),      // padding 2: phases start two columns left of the image
        new(2, 6, 12, 7, 4, 3, 3, 2, 2, 1, 0),       // padding on rows only
        new(2, 3, 1, 1, 5, 3, 3, 2, 2, 1, 1),        // a 1x1 image: backward data has one row and column phase empty
        new(1, 2, 2, 3, 3, 3, 3, 2, 2, 1, 1),        // dx rows shorter than a vector, odd rows past the last output
    ];

    static IEnumerable<TestCaseData> StridedDirectCases() => OnOneAndTwoThreads(StridedCases);

    [TestCaseSource(nameof(StridedDirectCases))]
    public void Stride_2_direct_convolution_matches_the_float64_reference(Conv2dShape s, int threads)
    {
        Assert.That(Conv2d.DirectStridedApplies<float>(s), Is.EqualTo(Vectorised), $"{s} should take the strided direct path");
        CheckAllThreePasses(s, threads, seed: 17);
    }

    // Small outputs with at least 16 images run with one image per vector lane (ConvImageLanes.cs): forward and weight
    // gradient for both strides, backward data for stride 1. Partial last groups, output rows that are not whole
    // 4-position tiles, K that is not a whole 4- or 8-channel tile and taps past S are all covered.
    static readonly Conv2dShape[] LaneCases =
    [
        new(16, 64, 8, 8, 64, 3, 3, 1, 1, 1, 1),     // ResNet-20 stage 3, one group
        new(33, 64, 8, 8, 64, 3, 3, 1, 1, 1, 1),     // three groups, the last with one image (and uneven over two threads)
        new(32, 32, 16, 16, 64, 3, 3, 2, 2, 1, 1),   // the stage-3 downsampling layer (backward data: phases)
        new(17, 5, 7, 9, 7, 3, 3, 1, 1, 1, 1),       // rows of 9 (tiles of 4, 4, 1), K = 7, C = 5
        new(20, 3, 6, 6, 6, 5, 5, 1, 1, 2, 2),       // 5x5: the weight tile's second tap triple runs one past S
        new(18, 4, 9, 10, 6, 3, 2, 1, 1, 0, 1),      // no row padding, 3x2 kernel
        new(16, 6, 11, 9, 5, 3, 3, 2, 2, 1, 0),      // stride 2, padding on rows only
        new(16, 3, 1, 1, 5, 3, 3, 2, 2, 1, 1),       // a 1x1 image, stride 2
    ];

    static IEnumerable<TestCaseData> LaneDirectCases() => OnOneAndTwoThreads(LaneCases);

    [TestCaseSource(nameof(LaneDirectCases))]
    public void Image_lane_convolution_matches_the_float64_reference(Conv2dShape s, int threads)
    {
        Assert.That(Conv2d.LanesApply(s) && (Conv2d.DirectApplies<float>(s) || Conv2d.DirectStridedApplies<float>(s)), Is.EqualTo(Vector512.IsHardwareAccelerated), $"{s} should take the image-lane path where Vector512 is accelerated");
        CheckAllThreePasses(s, threads, seed: 23);
    }

    [Test]
    public void Image_lanes_need_a_whole_group_of_images_and_a_small_output()
    {
        Assert.That(Conv2d.LanesApply(new Conv2dShape(15, 64, 8, 8, 64, 3, 3, 1, 1, 1, 1)), Is.False, "15 images");
        Assert.That(Conv2d.LanesApply(new Conv2dShape(128, 16, 32, 32, 16, 3, 3, 1, 1, 1, 1)), Is.False, "32x32 outputs");
        // The image lanes are AVX-512 code (16 images per vector).
        Assert.That(Conv2d.LanesApply(new Conv2dShape(128, 32, 16, 16, 32, 3, 3, 1, 1, 1, 1)), Is.EqualTo(Vector512.IsHardwareAccelerated), "16x16 outputs");
        Assert.That(Conv2d.LanesApply(new Conv2dShape(128, 64, 8, 8, 64, 3, 3, 1, 1, 1, 1)), Is.EqualTo(Vector512.IsHardwareAccelerated), "8x8 outputs, 128 images");
    }

    [Test]
    public void Strided_direct_path_is_limited_to_float32_3x3_stride_2()
    {
        Assert.That(Conv2d.DirectStridedApplies<double>(new Conv2dShape(2, 16, 8, 8, 16, 3, 3, 2, 2, 1, 1)), Is.False, "float64");
        Assert.That(Conv2d.DirectStridedApplies<float>(new Conv2dShape(2, 16, 8, 8, 16, 5, 5, 2, 2, 2, 2)), Is.False, "5x5");
        Assert.That(Conv2d.DirectStridedApplies<float>(new Conv2dShape(2, 16, 8, 8, 16, 1, 1, 2, 2)), Is.False, "1x1");
        Assert.That(Conv2d.DirectStridedApplies<float>(new Conv2dShape(2, 16, 9, 9, 16, 3, 3, 3, 3, 1, 1)), Is.False, "stride 3");
        Assert.That(Conv2d.DirectStridedApplies<float>(new Conv2dShape(2, 16, 8, 8, 16, 3, 3, 2, 1, 1, 1)), Is.False, "stride 2x1");
        Assert.That(Conv2d.DirectStridedApplies<float>(new Conv2dShape(2, 128, 8, 8, 128, 3, 3, 2, 2, 1, 1)), Is.False, "128 channels");
        Assert.That(Conv2d.DirectStridedApplies<float>(new Conv2dShape(2, 16, 8, 8, 16, 3, 3, 2, 2, 1, 1, 1, 1, 2)), Is.False, "groups 2");
        Assert.That(Conv2d.DirectStridedApplies<float>(new Conv2dShape(1, 1, 3, 8200, 1, 3, 3, 2, 2, 1, 1)), Is.False, "rows wider than 8192");
    }

    [Test]
    public void Direct_path_is_limited_to_float32_stride_1_thin_ungrouped_convolutions()
    {
        Assert.That(Conv2d.DirectApplies<double>(new Conv2dShape(2, 16, 8, 8, 16, 3, 3, 1, 1, 1, 1)), Is.False, "float64");
        Assert.That(Conv2d.DirectApplies<float>(new Conv2dShape(2, 16, 8, 8, 16, 3, 3, 2, 2, 1, 1)), Is.False, "stride 2");
        Assert.That(Conv2d.DirectApplies<float>(new Conv2dShape(2, 16, 8, 8, 16, 1, 1)), Is.False, "1x1");
        Assert.That(Conv2d.DirectApplies<float>(new Conv2dShape(2, 16, 8, 8, 16, 3, 3, 1, 1, 1, 1, 2, 2)), Is.False, "dilation 2");
        Assert.That(Conv2d.DirectApplies<float>(new Conv2dShape(2, 16, 8, 8, 16, 3, 3, 1, 1, 1, 1, 1, 1, 2)), Is.False, "groups 2");
        Assert.That(Conv2d.DirectApplies<float>(new Conv2dShape(2, 128, 8, 8, 128, 3, 3, 1, 1, 1, 1)), Is.False, "128 channels");
        Assert.That(Conv2d.DirectApplies<float>(new Conv2dShape(2, 4, 8, 8, 4, 3, 3, 1, 1, 3, 3)), Is.False, "padding as wide as the window");
        Assert.That(Conv2d.DirectApplies<float>(new Conv2dShape(1, 1, 40, 40, 1, 33, 33)), Is.False, "more than 1024 taps");
    }

    [Test]
    public void Direct_path_with_a_caller_workspace_gives_the_same_result_and_a_short_one_is_refused()
    {
        var s = new Conv2dShape(3, 8, 24, 24, 12, 3, 3, 1, 1, 1, 1);
        Assert.That(Conv2d.DirectApplies<float>(s), Is.EqualTo(Vectorised));
        var g = new Generator(5);
        var x = F(Rand(g, s.XLength)); var w = F(Rand(g, s.WLength)); var dy = F(Rand(g, s.YLength));
        var ws = new float[Conv2d.WorkspaceSize(s)];
        var y1 = new float[s.YLength]; var y2 = new float[s.YLength];
        Conv2d.Forward<float>(x, w, default, y1, s);
        Conv2d.Forward<float>(x, w, default, y2, s, ws);
        Assert.That(y2, Is.EqualTo(y1));
        var dx1 = new float[s.XLength]; var dx2 = new float[s.XLength];
        Conv2d.BackwardData<float>(dy, w, dx1, s);
        Conv2d.BackwardData<float>(dy, w, dx2, s, ws);
        Assert.That(dx2, Is.EqualTo(dx1));
        var dw1 = new float[s.WLength]; var dw2 = new float[s.WLength];
        Conv2d.BackwardWeights<float>(dy, x, dw1, default, s);
        Conv2d.BackwardWeights<float>(dy, x, dw2, default, s, ws);
        Assert.That(dw2, Is.EqualTo(dw1));
        var e = Assert.Throws<ArgumentException>(() => Conv2d.BackwardWeights<float>(dy, x, dw2, default, s, new float[ws.Length - 1]));
        Assert.That(e!.Message, Does.Contain("Conv2d.BackwardWeights").And.Contain(ws.Length.ToString()));
    }
}
