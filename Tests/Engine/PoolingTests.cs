using System.Text.Json;
using AttnCore.Kernels;
using AttnCore.Kernels.Cpu;
using AttnCore.Tests.Reference;
using NUnit.Framework;

namespace AttnCore.Tests.Engine;

/// <summary>
/// Max and average pooling (and the convolution shape rules) against PyTorch: values, indices and gradients from
/// Tests/Fixtures/make_pooling.py, PyTorch's output sizes and rejections on a grid of sizes, the public backward
/// ops, and regression tests for two reported defects (windows read outside the input; oversized kernels accepted).
/// </summary>
[TestFixture, Category("Engine")]
public class PoolingTests
{
    static JsonElement Fixture => JsonDocument.Parse(File.ReadAllText(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "pooling.json"))).RootElement;

    static (int, int) Pair(JsonElement e) => (e[0].GetInt32(), e[1].GetInt32());

    static float[] Weights(long n) => Enumerable.Range(0, (int)n).Select(i => (float)Math.Sin(0.7 * i + 0.3)).ToArray();

    public static IEnumerable<TestCaseData> FixtureCases()
    {
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
            foreach (var c in Fixture.GetProperty("cases").EnumerateArray())
                yield return new TestCaseData(c.GetProperty("name").GetString(), dtype).SetArgDisplayNames(c.GetProperty("name").GetString()!, dtype.ToString());
    }

    [TestCaseSource(nameof(FixtureCases))]
    public void Pooling_matches_pytorch_values_indices_and_gradients(string name, DType dtype)
    {
        var c = Fixture.GetProperty("cases").EnumerateArray().First(e => e.GetProperty("name").GetString() == name);
        int[] shape = c.GetProperty("input_shape").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        int k = c.GetProperty("input_k").GetInt32();
        var data = Enumerable.Range(0, (int)NdArray.Numel(shape)).Select(i => (float)(Math.Sin(0.37 * i + 1.3 * k) * 2)).ToArray();
        if (c.GetProperty("round_halves").GetBoolean()) data = data.Select(v => (float)(Math.Round(v * 2.0) / 2)).ToArray();
        foreach (var i in c.GetProperty("nans").EnumerateArray()) data[i.GetInt32()] = float.NaN;
        using var scope = new TensorScope();
        var x = Tensor.FromArray(data, shape).To(dtype).RequiresGrad_();
        var (kernel, stride, padding, dilation) = (Pair(c.GetProperty("kernel")), Pair(c.GetProperty("stride")), Pair(c.GetProperty("padding")), Pair(c.GetProperty("dilation")));
        bool ceil = c.GetProperty("ceil_mode").GetBoolean();
        Tensor y;
        if (c.GetProperty("kind").GetString() == "max")
        {
            (y, var indices) = x.MaxPool2dWithIndices(kernel, stride, padding, dilation, ceil);
            Assert.That(indices.DType, Is.EqualTo(DType.Int64));
            Assert.That(indices.ToArray<long>(), Is.EqualTo(c.GetProperty("indices").EnumerateArray().Select(e => e.GetInt64()).ToArray()), "indices");
        }
        else y = x.AvgPool2d(kernel, stride, padding, ceil, c.GetProperty("count_include_pad").GetBoolean());
        Assert.That(y.Shape, Is.EqualTo(c.GetProperty("output_shape").EnumerateArray().Select(e => e.GetInt32()).ToArray()), "output shape");
        (y * Tensor.FromArray(Weights(y.Numel), y.Shape).To(dtype)).Sum().Backward();
        AssertMatches(y.ToArray<double>(), c.GetProperty("output"), "output");
        AssertMatches(x.Grad!.ToArray<double>(), c.GetProperty("grad"), "input gradient");
    }

    // PyTorch's float32 values; a float32 run sums the same few terms (≤ 12) in possibly another order.
    static void AssertMatches(double[] got, JsonElement want, string what)
    {
        var w = want.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.Null ? double.NaN : e.GetDouble()).ToArray();
        Assert.That(got.Length, Is.EqualTo(w.Length), what);
        for (int i = 0; i < w.Length; i++)
        {
            if (double.IsNaN(w[i])) { Assert.That(double.IsNaN(got[i]), $"{what}[{i}]: {got[i]}, PyTorch NaN"); continue; }
            Assert.That(got[i], Is.EqualTo(w[i]).Within(2e-6 + 2e-6 * Math.Abs(w[i])), $"{what}[{i}]");
        }
    }

    [Test]
    public void Output_sizes_and_rejections_match_pytorch_on_a_grid_of_sizes()
    {
        // Columns: size, kernel, stride, pad, dilation, ceil, max_pool2d, avg_pool2d (-1: not asked), conv2d (-1: not asked); null = PyTorch raised.
        int checkedRows = 0;
        foreach (var row in Fixture.GetProperty("shapes").EnumerateArray())
        {
            int[] v = Enumerable.Range(0, 6).Select(i => row[i].GetInt32()).ToArray();
            var (size, kernel, stride, pad, dil, ceil) = (v[0], v[1], v[2], v[3], v[4], v[5] == 1);
            string what = $"size {size} kernel {kernel} stride {stride} pad {pad} dilation {dil} ceil {ceil}";
            int? Expected(int col) => row[col].ValueKind == JsonValueKind.Null ? null : row[col].GetInt32();
            int? Ours(Action validate, Func<int> length)
            {
                try { validate(); return length(); }
                catch (ArgumentException) { return null; }
            }
            var maxShape = new Pool2dShape(1, 1, size, 16, kernel, 1, stride, 1, pad, 0, dil, 1, ceil);
            Assert.That(Ours(() => maxShape.Validate("max"), () => maxShape.P), Is.EqualTo(Expected(6)), $"max_pool2d {what}");
            if (dil == 1)
            {
                var avgShape = maxShape with { CountIncludePad = false };
                Assert.That(Ours(() => avgShape.Validate("avg"), () => avgShape.P), Is.EqualTo(Expected(7)), $"avg_pool2d {what}");
            }
            if (!ceil)
            {
                var convShape = new Conv2dShape(1, 1, size, 16, 1, kernel, 1, stride, 1, pad, 0, dil, 1);
                Assert.That(Ours(() => convShape.Validate("conv"), () => convShape.P), Is.EqualTo(Expected(8)), $"conv2d {what}");
            }
            checkedRows++;
        }
        Assert.That(checkedRows, Is.GreaterThan(1000));
    }

    // ---- regression: defect 1, max pooling read outside its window (float32 vector path, stride ≥ 2, narrow input) ----

    [Test]
    public void Max_pooling_a_narrow_column_with_stride_2_reads_only_its_windows()
    {
        // PyTorch: max_pool2d(arange(6).view(1,1,6,1), 3, 2, 1) = [1, 3, 5]; the old kernel gave [2, 4, 5] (the tap
        // right of the one-column row read the next row: (W − 1 − off)/stride truncated −1/2 to 0).
        using var scope = new TensorScope();
        var x = Tensor.FromArray(new float[] { 0, 1, 2, 3, 4, 5 }, [1, 1, 6, 1]).RequiresGrad_();
        var (y, indices) = x.MaxPool2dWithIndices((3, 3), (2, 2), (1, 1));
        Assert.That(y.ToArray<float>(), Is.EqualTo(new float[] { 1, 3, 5 }));
        Assert.That(indices.ToArray<long>(), Is.EqualTo(new long[] { 1, 3, 5 }));
        y.Sum().Backward();
        Assert.That(x.Grad!.ToArray<float>(), Is.EqualTo(new float[] { 0, 1, 0, 1, 0, 1 }));
    }

    [Test]
    public void Max_pooling_narrow_inputs_in_float32_equals_float64_for_every_stride_and_padding()
    {
        // The float32 path (vectorised) against the float64 path (scalar) on every small geometry where windows can
        // stick out to the right of a 1- to 4-column input; values rise along memory, so reading the next row wins.
        for (int w = 1; w <= 4; w++)
            for (int k = 1; k <= 5; k++)
                for (int stride = 1; stride <= 3; stride++)
                    for (int pad = 0; pad <= k / 2; pad++)
                    {
                        var shape = new Pool2dShape(1, 2, 5, w, k, k, stride, stride, pad, pad);
                        if (shape.P < 1 || shape.Q < 1) continue;
                        using var scope = new TensorScope();
                        var data = Enumerable.Range(0, (int)shape.XLength).Select(i => (float)i).ToArray();
                        var x32 = Tensor.FromArray(data, [1, 2, 5, w]).RequiresGrad_();
                        var x64 = x32.Detach().To(DType.Float64).RequiresGrad_();
                        var (y32, i32) = x32.MaxPool2dWithIndices((k, k), (stride, stride), (pad, pad));
                        var (y64, i64) = x64.MaxPool2dWithIndices((k, k), (stride, stride), (pad, pad));
                        string what = $"{w} columns, kernel {k}, stride {stride}, padding {pad}";
                        Assert.That(y32.ToArray<double>(), Is.EqualTo(y64.ToArray<double>()), what);
                        Assert.That(i32.ToArray<long>(), Is.EqualTo(i64.ToArray<long>()), what);
                        y32.Sum().Backward(); y64.Sum().Backward();
                        Assert.That(x32.Grad!.ToArray<double>(), Is.EqualTo(x64.Grad!.ToArray<double>()), what);
                    }
    }

    // ---- regression: defect 2, kernels larger than the padded input were accepted when the stride was above 1 ----

    [Test]
    public void A_kernel_larger_than_the_padded_input_is_rejected_as_in_pytorch()
    {
        using var scope = new TensorScope();
        var x = Tensor.Ones([1, 1, 4, 4]);
        var ex = Assert.Throws<ArgumentException>(() => x.Conv2d(Tensor.Ones([1, 1, 5, 5]), null, stride: 2));
        Assert.That(ex!.Message, Does.Contain("Conv2d").And.Contain("5x5 kernel").And.Contain("4x4 input"));
        ex = Assert.Throws<ArgumentException>(() => x.MaxPool2d(5, 2));
        Assert.That(ex!.Message, Does.Contain("MaxPool2d").And.Contain("5x5 window").And.Contain("4x4 input").And.Contain("0x0"));
        ex = Assert.Throws<ArgumentException>(() => x.AvgPool2d((5, 2), (2, 2)));
        Assert.That(ex!.Message, Does.Contain("AvgPool2d").And.Contain("5x2 window"));
        // Exactly fitting still works: a 4x4 window with stride 2 gives one output.
        Assert.That(x.MaxPool2d(4, 2).Shape, Is.EqualTo(new[] { 1, 1, 1, 1 }));
        Assert.That(x.Conv2d(Tensor.Ones([1, 1, 5, 5]), null, stride: 2, padding: 1).ToArray<float>(), Is.EqualTo(new float[] { 16 }));
    }

    // ---- the public backward ops and their argument checks ----

    [Test]
    public void The_backward_ops_equal_the_recorded_gradients()
    {
        using var scope = new TensorScope();
        var g = new Generator(3);
        var x = Check.Make([2, 3, 7, 6], Check.Layouts.Contiguous, g).RequiresGrad_();
        var w = Check.Make([4, 3, 3, 2], Check.Layouts.Contiguous, g).RequiresGrad_();
        var (ym, idx) = x.MaxPool2dWithIndices((3, 2), (2, 1), (1, 1), (1, 2), ceilMode: true);
        var ya = x.AvgPool2d((3, 2), (2, 2), (1, 1), ceilMode: true, countIncludePad: false);
        var yc = x.Conv2d(w, null, (2, 1), (1, 1), (1, 2));
        var gm = Check.Make(ym.Shape, Check.Layouts.Contiguous, g); var ga = Check.Make(ya.Shape, Check.Layouts.Contiguous, g); var gc = Check.Make(yc.Shape, Check.Layouts.Contiguous, g);
        ((ym * gm).Sum() + (ya * ga).Sum() + (yc * gc).Sum()).Backward();
        var dm = Tensor.MaxPool2dBackward(gm, idx, x.Shape, (3, 2), (2, 1), (1, 1), (1, 2), ceilMode: true);
        var da = Tensor.AvgPool2dBackward(ga, x.Shape, (3, 2), (2, 2), (1, 1), ceilMode: true, countIncludePad: false);
        var (dcx, dcw, dcb) = Tensor.Conv2dBackward(gc, x, w, (2, 1), (1, 1), (1, 2), wantBias: true);
        var sum = dm + da + dcx!;
        Assert.That(sum.ToArray<float>(), Is.EqualTo(x.Grad!.ToArray<float>()).Within(1e-5));
        Assert.That(dcw!.ToArray<float>(), Is.EqualTo(w.Grad!.ToArray<float>()).Within(1e-5));
        Assert.That(dcb!.ToArray<float>(), Is.EqualTo(gc.Sum([0, 2, 3]).ToArray<float>()).Within(1e-5));
    }

    [Test]
    public void Pooling_rejects_bad_arguments_naming_the_op_and_the_sizes()
    {
        using var scope = new TensorScope();
        var x = Tensor.Ones([1, 2, 5, 5]);
        var ex = Assert.Throws<ArgumentException>(() => x.MaxPool2d((3, 3), (2, 2), (2, 1)));
        Assert.That(ex!.Message, Does.Contain("MaxPool2d").And.Contain("padding 2x1").And.Contain("half the 3x3 window"));
        ex = Assert.Throws<ArgumentException>(() => x.MaxPool2d((3, 0)));
        Assert.That(ex!.Message, Does.Contain("MaxPool2d").And.Contain("kernel 3x0"));
        ex = Assert.Throws<ArgumentException>(() => x.MaxPool2d(2, dilation: 0));
        Assert.That(ex!.Message, Does.Contain("dilation 0x0"));
        ex = Assert.Throws<ArgumentException>(() => Tensor.Ones([1, 0, 5, 5]).AvgPool2d(2));
        Assert.That(ex!.Message, Does.Contain("AvgPool2d").And.Contain("[1,0,5,5]"));
        ex = Assert.Throws<ArgumentException>(() => Tensor.Ones([2, 5, 5]).MaxPool2d(2));
        Assert.That(ex!.Message, Does.Contain("MaxPool2d").And.Contain("[N, C, H, W]"));
        // An empty batch is fine, as in PyTorch.
        Assert.That(Tensor.Ones([0, 2, 5, 5]).AvgPool2d(2, ceilMode: true).Shape, Is.EqualTo(new[] { 0, 2, 3, 3 }));

        var (y, idx) = x.MaxPool2dWithIndices((2, 2));
        ex = Assert.Throws<ArgumentException>(() => Tensor.MaxPool2dBackward(Tensor.Ones([1, 2, 3, 2]), idx, x.Shape, (2, 2), (2, 2), (0, 0), (1, 1)));
        Assert.That(ex!.Message, Does.Contain("MaxPool2dBackward").And.Contain("[1,2,3,2]").And.Contain("[1,2,2,2]"));
        ex = Assert.Throws<ArgumentException>(() => Tensor.MaxPool2dBackward(y, y, x.Shape, (2, 2), (2, 2), (0, 0), (1, 1)));
        Assert.That(ex!.Message, Does.Contain("indices must be int64"));
        var bad = Tensor.FromArray(new long[] { 0, 1, 25, 3, 0, 1, 2, 3 }, [1, 2, 2, 2]);
        ex = Assert.Throws<ArgumentException>(() => Tensor.MaxPool2dBackward(y, bad, x.Shape, (2, 2), (2, 2), (0, 0), (1, 1)));
        Assert.That(ex!.Message, Does.Contain("argmax 25").And.Contain("5x5 plane"));
        ex = Assert.Throws<ArgumentException>(() => Tensor.AvgPool2dBackward(y, [1, 2, 6, 6], (2, 2), (2, 2), (0, 0)));
        Assert.That(ex!.Message, Does.Contain("AvgPool2dBackward").And.Contain("[1,2,3,3]"));
        ex = Assert.Throws<ArgumentException>(() => Tensor.Conv2dBackward(Tensor.Ones([1, 3, 5, 5]), x, Tensor.Ones([4, 2, 1, 1]), (1, 1), (0, 0), (1, 1)));
        Assert.That(ex!.Message, Does.Contain("Conv2dBackward").And.Contain("[1,3,5,5]").And.Contain("[1,4,5,5]"));
    }

    [Test]
    public void A_window_with_no_cell_inside_the_input_gives_minus_infinity_and_no_gradient()
    {
        // 1x1 input, kernel 2, padding 1, dilation 2: the only window's cells are at −1 and +1. PyTorch gives −∞ too
        // (with an index outside the plane); AttnCore's index is −1, which backward skips.
        using var scope = new TensorScope();
        var x = Tensor.FromArray(new float[] { 7 }, [1, 1, 1, 1]).RequiresGrad_();
        var (y, idx) = x.MaxPool2dWithIndices((2, 2), (1, 1), (1, 1), (2, 2));
        Assert.That(y.ToArray<float>(), Is.EqualTo(new[] { float.NegativeInfinity }));
        Assert.That(idx.ToArray<long>(), Is.EqualTo(new long[] { -1 }));
        y.Sum().Backward();
        Assert.That(x.Grad!.ToArray<float>(), Is.EqualTo(new float[] { 0 }));
    }
}
