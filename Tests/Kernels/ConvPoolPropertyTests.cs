using AttnCore.Kernels;
using AttnCore.Kernels.Cpu;
using AttnCore.Tests.Reference;
using CsCheck;
using NUnit.Framework;
using Check = AttnCore.Tests.Reference.Check;

namespace AttnCore.Tests.Kernels;

// Property-based tests (CsCheck) of convolution and pooling: the shape helpers against PyTorch's documented
// output-size formulas, and forward + backward against float64 loops written here, on generated small shapes
// including 0- and 1-sized dims and non-contiguous inputs. Each suite run samples a bounded number of cases
// (a second or two) from the fixed seed PropertyGen.Seed, so CI sees the same cases every run; a failure shrinks
// to the smallest case and prints the CsCheck seed that replays it. The [Explicit] tests run many more
// iterations from fresh seeds.

/// <summary>Conv2dShape and Pool2dShape against the output sizes and rejections PyTorch documents.</summary>
[TestFixture, Category("Kernels")]
public class ConvPoolShapePropertyTests
{
    internal const int SuiteIterations = 2000, LongIterations = 500_000;
    internal const string SuiteSeed = AttnCore.Tests.Properties.PropertyGen.Seed;

    public record Axis(int Input, int Kernel, int Stride, int Pad, int Dilation);

    // Sizes from 0 up, so that empty and 1-sized dims, zero strides and kernels, and oversized paddings all occur.
    static readonly Gen<Axis> AxisGen = Gen.Select(Gen.Int[0, 12], Gen.Int[0, 7], Gen.Int[0, 4], Gen.Int[0, 4], Gen.Int[0, 3], (i, k, s, p, d) => new Axis(i, k, s, p, d));

    // torch.nn.MaxPool2d / AvgPool2d docs: out = floor((in + 2·pad − dilation·(k − 1) − 1)/stride + 1), ceil instead of
    // floor in ceil mode, where "sliding windows that would start in the right padded region are ignored"; errors
    // for non-positive kernel, stride, dilation, padding above half the kernel, an empty C/H/W, or an output below 1.
    static int? TorchPoolLength(Axis a, bool ceil)
    {
        if (a.Input < 1 || a.Kernel < 1 || a.Stride < 1 || a.Dilation < 1 || a.Pad > a.Kernel / 2) return null;
        double q = (a.Input + 2.0 * a.Pad - a.Dilation * (a.Kernel - 1.0) - 1.0) / a.Stride + 1;
        double o = ceil ? Math.Ceiling(q) : Math.Floor(q);
        if (ceil && (o - 1) * a.Stride >= a.Input + a.Pad) o--;
        return o >= 1 ? (int)o : null;
    }

    // torch.nn.Conv2d docs: out = floor((in + 2·pad − dilation·(k − 1) − 1)/stride + 1); a kernel larger than the padded input is an error.
    static int? TorchConvLength(Axis a)
    {
        if (a.Input < 1 || a.Kernel < 1 || a.Stride < 1 || a.Dilation < 1) return null;
        double o = Math.Floor((a.Input + 2.0 * a.Pad - a.Dilation * (a.Kernel - 1.0) - 1.0) / a.Stride + 1);
        return o >= 1 ? (int)o : null;
    }

    static void PoolShapeProperty(int n, int c, Axis h, Axis w, bool ceil)
    {
        var s = new Pool2dShape(n, c, h.Input, w.Input, h.Kernel, w.Kernel, h.Stride, w.Stride, h.Pad, w.Pad, h.Dilation, w.Dilation, ceil);
        int? p = TorchPoolLength(h, ceil), q = TorchPoolLength(w, ceil);
        if (c < 1 || p is null || q is null)
        {
            Assert.Throws<ArgumentException>(() => s.Validate("MaxPool2d"), $"PyTorch rejects {s}");
            return;
        }
        Assert.DoesNotThrow(() => s.Validate("MaxPool2d"), $"PyTorch accepts {s}");
        Assert.That((s.P, s.Q), Is.EqualTo((p.Value, q.Value)), $"{s}");
        // Every window starts inside the input or its left padding.
        Assert.That((s.P - 1) * h.Stride - h.Pad, Is.LessThan(h.Input), $"last row window of {s}");
        Assert.That((s.Q - 1) * w.Stride - w.Pad, Is.LessThan(w.Input), $"last column window of {s}");
        Assert.That(s.YLength, Is.EqualTo((long)n * c * p.Value * q.Value));
    }

    static void ConvShapeProperty(int n, int groups, int cPerGroup, int kPerGroup, Axis h, Axis w)
    {
        var s = new Conv2dShape(n, groups * cPerGroup, h.Input, w.Input, groups * kPerGroup, h.Kernel, w.Kernel, h.Stride, w.Stride, h.Pad, w.Pad, h.Dilation, w.Dilation, Math.Max(groups, 1));
        int? p = TorchConvLength(h), q = TorchConvLength(w);
        if (groups < 1 || cPerGroup < 1 || kPerGroup < 1 || p is null || q is null)
        {
            Assert.Throws<ArgumentException>(() => s.Validate("Conv2d"), $"PyTorch rejects {s}");
            return;
        }
        Assert.DoesNotThrow(() => s.Validate("Conv2d"), $"PyTorch accepts {s}");
        Assert.That((s.P, s.Q), Is.EqualTo((p.Value, q.Value)), $"{s}");
    }

    static void SamplePool(long iterations, string? seed = null) =>
        Gen.Select(Gen.Int[0, 2], Gen.Int[0, 2], AxisGen, AxisGen, Gen.Bool).Sample(PoolShapeProperty, seed: seed, iter: iterations, threads: 1);

    static void SampleConv(long iterations, string? seed = null) =>
        Gen.Select(Gen.Int[0, 2], Gen.Int[0, 2], Gen.Int[0, 2], Gen.Int[0, 2], AxisGen, AxisGen).Sample(ConvShapeProperty, seed: seed, iter: iterations, threads: 1);

    [Test]
    public void Pool_output_sizes_and_rejections_follow_pytorchs_formula() => SamplePool(SuiteIterations, SuiteSeed);

    [Test]
    public void Conv_output_sizes_and_rejections_follow_pytorchs_formula() => SampleConv(SuiteIterations, SuiteSeed);

    // The kernels' float32 paths against their float64 references (Pool2d.*Reference) with every option: the reference
    // beside each fast kernel must agree with it where the kernel is used, not only at the options of the fixed cases.
    static void KernelProperty(int n, int c, Axis h, Axis w, (bool Ceil, bool CountIncludePad, ulong Seed) o)
    {
        var s = new Pool2dShape(n, c, h.Input, w.Input, h.Kernel, w.Kernel, h.Stride, w.Stride, h.Pad, w.Pad, h.Dilation, w.Dilation, o.Ceil, o.CountIncludePad);
        try { s.Validate("property"); } catch (ArgumentException) { return; }
        var g = new Generator(o.Seed);
        var x = Enumerable.Range(0, (int)s.XLength).Select(_ => (float)g.NextNormal()).ToArray();
        var dy = Enumerable.Range(0, (int)s.YLength).Select(_ => (float)g.NextNormal()).ToArray();
        var xd = Array.ConvertAll(x, v => (double)v); var dyd = Array.ConvertAll(dy, v => (double)v);
        var y = new float[s.YLength]; var arg = new long[s.YLength]; var dx = new float[s.XLength];
        Pool2d.MaxForward<float>(x, y, arg, s);
        Pool2d.MaxBackward<float>(dy, arg, dx, s);
        var (ry, rarg) = Pool2d.MaxForwardReference(xd, s);
        Assert.That(arg, Is.EqualTo(rarg), $"max indices {s}");
        Assert.That(Array.ConvertAll(y, v => (double)v), Is.EqualTo(ry), $"max {s}");
        Assert.That(Array.ConvertAll(dx, v => (double)v), Is.EqualTo(Pool2d.MaxBackwardReference(dyd, rarg, s)).Within(1e-5), $"max dx {s}");
        if (s.DilationH != 1 || s.DilationW != 1) return;
        Pool2d.AvgForward<float>(x, y, s);
        Pool2d.AvgBackward<float>(dy, dx, s);
        Assert.That(Array.ConvertAll(y, v => (double)v), Is.EqualTo(Pool2d.AvgForwardReference(xd, s)).Within(1e-5), $"avg {s}");
        Assert.That(Array.ConvertAll(dx, v => (double)v), Is.EqualTo(Pool2d.AvgBackwardReference(dyd, s)).Within(1e-5), $"avg dx {s}");
    }

    static void SampleKernels(long iterations, string? seed = null) =>
        Gen.Select(Gen.Int[0, 2], Gen.Int[1, 2], AxisGen, AxisGen, Gen.Select(Gen.Bool, Gen.Bool, Gen.ULong)).Sample(KernelProperty, seed: seed, iter: iterations, threads: 1);

    [Test]
    public void Pool_kernels_match_their_float64_references_with_every_option() => SampleKernels(SuiteIterations / 4, SuiteSeed);

    [Test, Explicit("long property run")]
    public void Pool_and_conv_shapes_long_run() { SamplePool(LongIterations); SampleConv(LongIterations); SampleKernels(LongIterations / 10); }
}

/// <summary>Convolution and pooling through Tensor (forward and backward) against float64 loops, on generated shapes and layouts.</summary>
[TestFixture, Category("Engine")]
public class ConvPoolPropertyTests
{
    const int SuiteIterations = 150, LongIterations = 20_000;
    const string SuiteSeed = AttnCore.Tests.Properties.PropertyGen.Seed;

    public record PoolCase(int N, int C, int H, int W, int R, int S, int StrideH, int StrideW, int PadH, int PadW, int DilationH, int DilationW,
        bool CeilMode, bool CountIncludePad, Check.Layouts Layout, bool Float64, ulong Seed);

    // A kernel and a padding of at most half of it, per axis.
    static Gen<(int K, int Pad)> KernelAndPad(int max) => Gen.Int[1, max].SelectMany(k => Gen.Int[0, k / 2].Select(p => (k, p)));

    static readonly Gen<PoolCase> PoolGen =
        from n in Gen.Int[0, 2]
        from c in Gen.Int[1, 3]
        from h in Gen.Int[1, 7]
        from w in Gen.Int[1, 9]
        from kh in KernelAndPad(4)
        from kw in KernelAndPad(4)
        from stride in Gen.Select(Gen.Int[1, 3], Gen.Int[1, 3])
        from dilation in Gen.Select(Gen.Int[1, 2], Gen.Int[1, 2])
        from flags in Gen.Select(Gen.Bool, Gen.Bool, Gen.Bool)
        from layout in Gen.Enum<Check.Layouts>()
        from seed in Gen.ULong
        select new PoolCase(n, c, h, w, kh.K, kw.K, stride.Item1, stride.Item2, kh.Pad, kw.Pad, dilation.Item1, dilation.Item2, flags.Item1, flags.Item2, layout, flags.Item3, seed);

    static Pool2dShape ShapeOf(PoolCase c, bool max) => new(c.N, c.C, c.H, c.W, c.R, c.S, c.StrideH, c.StrideW, c.PadH, c.PadW,
        max ? c.DilationH : 1, max ? c.DilationW : 1, c.CeilMode, c.CountIncludePad);

    // Max: cells in row-major window order, taken when first, larger, or NaN (PyTorch's rule); −∞ and −1 when no cell is inside.
    // Average: the sum over cells inside the input, divided by the cells inside the padded input (count_include_pad)
    // or inside the input. Gradients from the same index map with upstream gradient r.
    static (double[] Y, long[] Arg, double[] Dx) ReferencePool(double[] x, double[] r, Pool2dShape s, bool max)
    {
        var y = new double[s.YLength]; var arg = new long[s.YLength]; var dx = new double[s.XLength];
        for (int pl = 0, o = 0; pl < s.N * s.C; pl++)
            for (int p = 0; p < s.P; p++)
                for (int q = 0; q < s.Q; q++, o++)
                {
                    double best = double.NegativeInfinity, sum = 0; long at = -1; int inside = 0, padded = 0;
                    var cells = new List<int>();
                    for (int i = 0; i < s.R; i++)
                        for (int j = 0; j < s.S; j++)
                        {
                            int h = p * s.StrideH - s.PadH + i * s.DilationH, w = q * s.StrideW - s.PadW + j * s.DilationW;
                            if (h >= -s.PadH && h < s.H + s.PadH && w >= -s.PadW && w < s.W + s.PadW) padded++;
                            if (h < 0 || h >= s.H || w < 0 || w >= s.W) continue;
                            int cell = h * s.W + w;
                            double v = x[pl * s.H * s.W + cell];
                            inside++; sum += v; cells.Add(cell);
                            if (at < 0 || v > best || double.IsNaN(v)) { best = v; at = cell; }
                        }
                    if (max)
                    {
                        y[o] = best; arg[o] = at;
                        if (at >= 0) dx[pl * s.H * s.W + at] += r[o];
                    }
                    else
                    {
                        int divisor = s.CountIncludePad ? padded : inside;
                        y[o] = sum / divisor;
                        foreach (int cell in cells) dx[pl * s.H * s.W + cell] += r[o] / divisor;
                    }
                }
        return (y, arg, dx);
    }

    static void PoolProperty(PoolCase c)
    {
        foreach (bool max in new[] { true, false })
        {
            var s = ShapeOf(c, max);
            try { s.Validate("property"); } catch (ArgumentException) { continue; }   // rejections: ConvPoolShapePropertyTests
            using var scope = new TensorScope();
            var dtype = c.Float64 ? DType.Float64 : DType.Float32;
            var x = Check.Make([c.N, c.C, c.H, c.W], c.Layout, new Generator(c.Seed), dtype).RequiresGrad_();
            Tensor y; Tensor? indices = null;
            if (max) (y, indices) = x.MaxPool2dWithIndices((c.R, c.S), (c.StrideH, c.StrideW), (c.PadH, c.PadW), (c.DilationH, c.DilationW), c.CeilMode);
            else y = x.AvgPool2d((c.R, c.S), (c.StrideH, c.StrideW), (c.PadH, c.PadW), c.CeilMode, c.CountIncludePad);
            var r = Check.Make(y.Shape, Check.Layouts.Contiguous, new Generator(c.Seed + 1), dtype);
            (y * r).Sum().Backward();
            var want = ReferencePool(x.ToArray<double>(), r.ToArray<double>(), s, max);
            var (rtol, atol) = c.Float64 ? (1e-12, 1e-12) : (1e-5, 1e-5);
            string what = $"{(max ? "max" : "avg")} {c}";
            Check.Close(y, new NdArray(y.Shape, want.Y), rtol, atol, what);
            Check.Close(x.Grad!, new NdArray(x.Shape, want.Dx), rtol, atol, what + " dx");
            if (indices is not null) Assert.That(indices.ToArray<long>(), Is.EqualTo(want.Arg), what + " indices");
        }
    }

    public record ConvCase(int N, int Groups, int CPerGroup, int KPerGroup, int H, int W, int R, int S, int StrideH, int StrideW, int PadH, int PadW,
        int DilationH, int DilationW, bool Bias, Check.Layouts Layout, bool Float64, ulong Seed);

    static readonly Gen<ConvCase> ConvGen =
        from n in Gen.Int[0, 2]
        from channels in Gen.Select(Gen.Int[1, 2], Gen.Int[1, 2], Gen.Int[1, 2])
        from size in Gen.Select(Gen.Int[1, 7], Gen.Int[1, 7], Gen.Int[1, 3], Gen.Int[1, 3])
        from stride in Gen.Select(Gen.Int[1, 3], Gen.Int[1, 3])
        from pad in Gen.Select(Gen.Int[0, 2], Gen.Int[0, 2])
        from dilation in Gen.Select(Gen.Int[1, 2], Gen.Int[1, 2])
        from flags in Gen.Select(Gen.Bool, Gen.Bool)
        from layout in Gen.Enum<Check.Layouts>()
        from seed in Gen.ULong
        select new ConvCase(n, channels.Item1, channels.Item2, channels.Item3, size.Item1, size.Item2, size.Item3, size.Item4, stride.Item1, stride.Item2,
            pad.Item1, pad.Item2, dilation.Item1, dilation.Item2, flags.Item1, layout, flags.Item2, seed);

    static void ConvProperty(ConvCase c)
    {
        int C = c.Groups * c.CPerGroup, K = c.Groups * c.KPerGroup;
        var s = new Conv2dShape(c.N, C, c.H, c.W, K, c.R, c.S, c.StrideH, c.StrideW, c.PadH, c.PadW, c.DilationH, c.DilationW, c.Groups);
        try { s.Validate("property"); } catch (ArgumentException) { return; }
        using var scope = new TensorScope();
        var dtype = c.Float64 ? DType.Float64 : DType.Float32;
        var g = new Generator(c.Seed);
        var x = Check.Make([c.N, C, c.H, c.W], c.Layout, g, dtype).RequiresGrad_();
        var w = Check.Make([K, c.CPerGroup, c.R, c.S], c.Layout, g, dtype).RequiresGrad_();
        var b = c.Bias ? Check.Make([K], Check.Layouts.Strided, g, dtype).RequiresGrad_() : null;
        var y = x.Conv2d(w, b, (c.StrideH, c.StrideW), (c.PadH, c.PadW), (c.DilationH, c.DilationW), c.Groups);
        var r = Check.Make(y.Shape, Check.Layouts.Contiguous, g, dtype);
        (y * r).Sum().Backward();
        double[] yRef = new double[s.YLength], dx = new double[s.XLength], dw = new double[s.WLength], db = new double[K];
        ConvPoolNormTests.DirectConv(x.ToArray<double>(), w.ToArray<double>(), b?.ToArray<double>(), s, yRef, r.ToArray<double>(), dx, dw, db);
        // float32: sums of up to C/G·R·S = 18 products (and N·P·Q for dw) in another order.
        var (rtol, atol) = c.Float64 ? (1e-11, 1e-11) : (1e-4, 1e-4);
        Check.Close(y, new NdArray(y.Shape, yRef), rtol, atol, $"{c} y");
        Check.Close(x.Grad!, new NdArray(x.Shape, dx), rtol, atol, $"{c} dx");
        Check.Close(w.Grad!, new NdArray(w.Shape, dw), rtol, atol, $"{c} dw");
        if (b is not null) Check.Close(b.Grad!, new NdArray([K], db), rtol, atol, $"{c} db");
    }

    [Test]
    public void Pooling_forward_and_backward_match_float64_loops_on_generated_shapes() => PoolGen.Sample(PoolProperty, seed: SuiteSeed, iter: SuiteIterations, threads: 1);

    [Test]
    public void Conv2d_forward_and_backward_match_float64_loops_on_generated_shapes() => ConvGen.Sample(ConvProperty, seed: SuiteSeed, iter: SuiteIterations, threads: 1);

    [Test, Explicit("long property run")]
    public void Conv_and_pool_long_run()
    {
        PoolGen.Sample(PoolProperty, iter: LongIterations, threads: 1);
        ConvGen.Sample(ConvProperty, iter: LongIterations, threads: 1);
    }
}
