using AttnCore.Backends;
using AttnCore.Kernels;
using AttnCore.Kernels.Cpu;
using AttnCore.Tests.Reference;
using NUnit.Framework;

namespace AttnCore.Tests.Gpu;

/// <summary>
/// Convolution, pooling, batch norm and SGD on each ILGPU device against the SIMD CPU backend, from the same
/// host inputs. Outputs and gradients come from Σ y·r with a fixed r, so every gradient path is exercised.
/// Tolerances, |device − cpu| &lt;= atol + rtol·|cpu|: 1e-4/1e-4 for the GEMM-based convolution (sums of up to
/// a few hundred products in another order) and batch norm (its backward cancels sums of the channel);
/// exact for max pooling (a selection), 1e-6 for average pooling and SGD (the same few roundings).
/// Shapes stay tiny: every emulated thread of the CPU accelerator is an OS thread.
/// </summary>
public class ConvGpuTests(string deviceName) : DeviceFixture<ConvGpuTests>(deviceName)
{
    static Device Gpu => TestDevice;
    static IlgpuBackend B => (IlgpuBackend)TestDevice.Backend;

    // The device outlives the fixture: hand the cached scratch buffers back so later fixtures start from an empty pool.
    [OneTimeTearDown]
    public void TrimPool() => B.Memory.Trim();

    sealed record Input(float[] Data, int[] Shape, bool Grad = true);

    static Input Rand(Generator g, int[] shape, double scale = 1, double shift = 0, bool grad = true) =>
        new(Enumerable.Range(0, (int)NdArray.Numel(shape)).Select(_ => (float)(shift + scale * g.NextNormal())).ToArray(), shape, grad);

    /// <summary>y = f(inputs) on <paramref name="device"/>, and the gradients of Σ y·r (r[i] = sin(0.7·i + 0.3)) of the inputs that want one.</summary>
    static NdArray[] Run(Device device, Input[] inputs, Func<Tensor[], Tensor> f)
    {
        using var scope = new TensorScope();
        var leaves = inputs.Select(i => Tensor.FromArray(i.Data, i.Shape, device).RequiresGrad_(i.Grad)).ToArray();
        var y = f(leaves);
        var r = Enumerable.Range(0, (int)y.Numel).Select(k => (float)Math.Sin(0.7 * k + 0.3)).ToArray();
        (y * Tensor.FromArray(r, y.Shape, device)).Sum().Backward();
        return [NdArray.From(y), .. leaves.Where(l => l.RequiresGrad).Select(l => NdArray.From(l.Grad!))];
    }

    static void Same(NdArray got, NdArray want, double rtol, double atol, string what)
    {
        Assert.That(got.Shape, Is.EqualTo(want.Shape), what);
        for (int i = 0; i < want.Data.Length; i++)
        {
            double e = want.Data[i], a = got.Data[i];
            if (double.IsNaN(e) && double.IsNaN(a)) continue;
            if (!(Math.Abs(a - e) <= atol + rtol * Math.Abs(e)))
                Assert.Fail($"{what}: element {i} is {a:R} on {Gpu}, {e:R} on the cpu (|error| {Math.Abs(a - e):E2})");
        }
    }

    static void SameOnBoth(Input[] inputs, Func<Tensor[], Tensor> f, double rtol, double atol, string what)
    {
        var cpu = Run(Device.Cpu, inputs, f);
        var gpu = Run(Gpu, inputs, f);
        string[] names = ["y", .. inputs.Select((inp, k) => (inp, k)).Where(p => p.inp.Grad).Select(p => $"d(input {p.k})")];
        for (int k = 0; k < cpu.Length; k++) Same(gpu[k], cpu[k], rtol, atol, $"{what}: {names[k]}");
    }

    // ---- convolution ---------------------------------------------------------------------------------------

    static IEnumerable<(string Name, Input[] Inputs, Func<Tensor[], Tensor> F)> ConvCases(Generator g) =>
    [
        ("stride 2, padding 1, bias, odd sizes", [Rand(g, [2, 3, 7, 6]), Rand(g, [4, 3, 3, 3]), Rand(g, [4])],
            t => t[0].Conv2d(t[1], t[2], stride: 2, padding: 1)),
        ("groups 2, dilation (2,1), stride (1,2), padding (2,1), no bias", [Rand(g, [3, 4, 6, 5]), Rand(g, [6, 2, 3, 2])],
            t => t[0].Conv2d(t[1], null, (1, 2), (2, 1), (2, 1), groups: 2)),
        ("depthwise 3x3, padding 1, bias", [Rand(g, [2, 4, 5, 5]), Rand(g, [4, 1, 3, 3]), Rand(g, [4])],
            t => t[0].Conv2d(t[1], t[2], padding: 1, groups: 4)),
        ("pointwise 1x1, bias only trained", [Rand(g, [2, 3, 5, 4]), Rand(g, [5, 3, 1, 1], grad: false), Rand(g, [5])],
            t => t[0].Conv2d(t[1], t[2])),
        ("input without gradient", [Rand(g, [1, 2, 5, 5], grad: false), Rand(g, [3, 2, 2, 2]), Rand(g, [3])],
            t => t[0].Conv2d(t[1], t[2], stride: 2)),
    ];

    [Test]
    public void Conv2d_forward_and_backward_match_the_cpu_backend()
    {
        ulong seed = Check.FreshSeed();
        foreach (var (name, inputs, f) in ConvCases(new Generator(seed)))
            SameOnBoth(inputs, f, 1e-4, 1e-4, $"Conv2d {name} seed={seed}");
    }

    [Test]
    public void Conv2d_in_chunks_of_one_image_gives_the_same_results()
    {
        // A column limit of one element forces one image per chunk: weight gradients then add up over chunks.
        ulong seed = Check.FreshSeed();
        long limit = B.ConvColumnLimit;
        B.ConvColumnLimit = 1;
        try
        {
            foreach (var (name, inputs, f) in ConvCases(new Generator(seed)).Take(2))
                SameOnBoth(inputs, f, 1e-4, 1e-4, $"Conv2d chunked {name} seed={seed}");
        }
        finally { B.ConvColumnLimit = limit; }
    }

    [Test]
    public void Conv2d_rejects_bad_storages_naming_the_op_and_the_shape()
    {
        var shape = new Conv2dShape(1, 2, 4, 4, 3, 3, 3, PadH: 1, PadW: 1);
        var x = B.Allocate(DType.Float32, shape.XLength);
        var w = B.Allocate(DType.Float32, shape.WLength);
        var y = B.Allocate(DType.Float32, shape.YLength - 1);
        try
        {
            var ex = Assert.Throws<ArgumentException>(() => B.Conv2dForward(x, w, null, y, shape));
            Assert.That(ex!.Message, Does.Contain("Conv2d").And.Contain("y has 47 elements, needs 48").And.Contain(shape.ToString()));
            ex = Assert.Throws<ArgumentException>(() => B.Conv2dForward(x, w, null, y, shape with { Groups = 2 }));
            Assert.That(ex!.Message, Does.Contain("Conv2d").And.Contain("divisible by groups=2"));
            ex = Assert.Throws<ArgumentException>(() => B.Conv2dBackward(y, x, w, x, w, y, shape with { K = 4 }));
            Assert.That(ex!.Message, Does.Contain("Conv2dBackward"));
        }
        finally { x.Release(); w.Release(); y.Release(); }
    }

    // ---- pooling -------------------------------------------------------------------------------------------

    [Test]
    public void Pooling_forward_and_backward_match_the_cpu_backend()
    {
        ulong seed = Check.FreshSeed();
        var g = new Generator(seed);
        var x = Rand(g, [2, 3, 7, 6]);
        // Small integers tie often; a NaN must win its windows; the first maximum wins ties.
        var ties = new Input(Rand(g, [2, 2, 6, 7]).Data.Select(v => MathF.Round(v)).ToArray(), [2, 2, 6, 7]);
        ties.Data[9] = float.NaN;
        var narrow = Rand(g, [1, 2, 6, 1]);
        (string, Input, Func<Tensor[], Tensor>, double)[] cases =
        [
            ("max 3x3 stride 2 padding 1", x, t => t[0].MaxPool2d(3, 2, 1), 0),
            ("max 2x2", x, t => t[0].MaxPool2d(2), 0),
            ("max 3x3 stride 1 with ties and a NaN", ties, t => t[0].MaxPool2d(3, 1, 1), 0),
            ("avg 3x3 stride 2 padding 1", x, t => t[0].AvgPool2d(3, 2, 1), 1e-6),
            ("avg 3x3 stride 1 padding 1 (overlapping)", x, t => t[0].AvgPool2d(3, 1, 1), 1e-6),
            ("avg 2x2", x, t => t[0].AvgPool2d(2), 1e-6),
            ("max (3,2) stride (2,1) padding (1,1) dilation (2,1) ceil", x, t => t[0].MaxPool2d((3, 2), (2, 1), (1, 1), (2, 1), ceilMode: true), 0),
            ("max 3x3 stride 2 padding 1 on a one-column input", narrow, t => t[0].MaxPool2d(3, 2, 1), 0),
            ("max 2x2 dilation 2 padding 1 with ties and a NaN", ties, t => t[0].MaxPool2d((2, 2), (1, 1), (1, 1), (2, 2)), 0),
            ("avg (3,2) stride (2,1) padding (1,1) ceil, padding not counted", x, t => t[0].AvgPool2d((3, 2), (2, 1), (1, 1), ceilMode: true, countIncludePad: false), 1e-6),
            ("avg 3x3 stride 2 padding 1 ceil, padding counted", x, t => t[0].AvgPool2d(3, 2, 1, ceilMode: true), 1e-6),
        ];
        foreach (var (name, input, f, tol) in cases) SameOnBoth([input], f, tol, tol, $"{name} seed={seed}");
    }

    static IEnumerable<Pool2dShape> ArgmaxShapes() =>
    [
        new(1, 2, 5, 5, 3, 3, 2, 2, 1, 1),
        new(1, 2, 7, 6, 3, 2, 2, 1, 1, 1, 2, 1, CeilMode: true),      // rectangular, dilated, ceil mode
        new(1, 1, 1, 1, 2, 2, 1, 1, 1, 1, 2, 2),                       // no cell inside the input: −∞ and −1
    ];

    [TestCaseSource(nameof(ArgmaxShapes))]
    public void Max_pooling_argmax_matches_the_cpu_including_ties(Pool2dShape shape)
    {
        var data = Enumerable.Range(0, (int)shape.XLength).Select(i => (float)(i % 3)).ToArray();   // many equal maxima
        (float[] Y, long[] Arg) Argmax(IBackend b)
        {
            var x = b.Allocate(DType.Float32, shape.XLength);
            var y = b.Allocate(DType.Float32, shape.YLength);
            var arg = b.Allocate(DType.Int64, shape.YLength);
            b.Upload<float>(data, x);
            b.Pool2dForward(true, x, y, arg, shape);
            var result = (new float[shape.YLength], new long[shape.YLength]);
            b.Download<float>(y, 0, result.Item1);
            b.Download<long>(arg, 0, result.Item2);
            x.Release(); y.Release(); arg.Release();
            return result;
        }
        var (gpu, cpu) = (Argmax(B), Argmax(Device.Cpu.Backend));
        Assert.That(gpu.Arg, Is.EqualTo(cpu.Arg), "argmax");
        Assert.That(gpu.Y, Is.EqualTo(cpu.Y), "maxima");
    }

    [Test]
    public void Max_pooling_backward_reports_an_index_outside_the_plane_at_the_next_synchronisation()
    {
        using var scope = new TensorScope();
        var dy = Tensor.Ones([1, 1, 2, 2], DType.Float32, Gpu);
        var bad = Tensor.FromArray(new long[] { 0, 3, 16, -1 }, [1, 1, 2, 2], Gpu);   // 16 is outside the 4x4 plane; −1 is an empty window
        var dx = Tensor.MaxPool2dBackward(dy, bad, [1, 1, 4, 4], (2, 2), (2, 2), (0, 0), (1, 1));
        var ex = Assert.Catch(() => dx.ToArray<float>());
        Assert.That(ex!.Message, Does.Contain("MaxPool2dBackward").And.Contain("index 16").And.Contain("4x4 input plane"));
        var good = Tensor.FromArray(new long[] { 0, 3, 13, -1 }, [1, 1, 2, 2], Gpu);
        Assert.That(Tensor.MaxPool2dBackward(dy, good, [1, 1, 4, 4], (2, 2), (2, 2), (0, 0), (1, 1)).ToArray<float>(),
            Is.EqualTo(new float[] { 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0 }));
    }

    [Test]
    public void Pooling_rejects_a_float_argmax_and_too_much_padding()
    {
        var shape = new Pool2dShape(1, 1, 4, 4, 2, 2, 2, 2);
        var x = B.Allocate(DType.Float32, 16);
        var y = B.Allocate(DType.Float32, 4);
        try
        {
            var ex = Assert.Throws<ArgumentException>(() => B.Pool2dForward(true, x, y, y, shape));
            Assert.That(ex!.Message, Does.Contain("MaxPool2d").And.Contain("argmax must be int64"));
            ex = Assert.Throws<ArgumentException>(() => B.Pool2dForward(false, x, y, null, shape with { PadH = 2 }));
            Assert.That(ex!.Message, Does.Contain("AvgPool2d").And.Contain("padding 2x0"));
        }
        finally { x.Release(); y.Release(); }
    }

    // ---- batch norm ----------------------------------------------------------------------------------------

    [Test]
    public void Batch_norm_training_forward_backward_and_running_stats_match_the_cpu_backend()
    {
        ulong seed = Check.FreshSeed();
        var g = new Generator(seed);
        // Channels far from zero mean: the shifted sums must keep the variance accurate.
        var x = Rand(g, [3, 4, 5, 3], scale: 2, shift: 30);
        var weight = Rand(g, [4], 0.5, 1);
        var bias = Rand(g, [4]);
        float[] rm0 = [0.5f, -1, 0, 2], rv0 = [1, 2, 0.5f, 3];
        (NdArray[] Out, float[] Rm, float[] Rv) Train(Device d)
        {
            using var rm = Tensor.FromArray((float[])rm0.Clone(), null, d);
            using var rv = Tensor.FromArray((float[])rv0.Clone(), null, d);
            // Two forward passes: the running statistics move twice.
            var outs = Run(d, [x, weight, bias], t => { t[0].BatchNorm2d(rm, rv, t[1], t[2], true, 0.2).Dispose(); return t[0].BatchNorm2d(rm, rv, t[1], t[2], true, 0.2); });
            return (outs, rm.ToArray<float>(), rv.ToArray<float>());
        }
        var cpu = Train(Device.Cpu);
        var gpu = Train(Gpu);
        string[] names = ["y", "dx", "dweight", "dbias"];
        for (int k = 0; k < names.Length; k++) Same(gpu.Out[k], cpu.Out[k], 1e-4, 1e-4, $"BatchNorm2d {names[k]} seed={seed}");
        Assert.That(gpu.Rm, Is.EqualTo(cpu.Rm).Within(1e-4), $"running mean seed={seed}");
        Assert.That(gpu.Rv, Is.EqualTo(cpu.Rv).Within(1e-4), $"running var seed={seed}");
        Assert.That(cpu.Rv[0], Is.Not.EqualTo(rv0[0]), "the running variance moved");
        // Without affine parameters or running statistics.
        SameOnBoth([Rand(g, [2, 3, 4, 5])], t => t[0].BatchNorm2d(null, null, null, null, true), 1e-4, 1e-4, $"BatchNorm2d plain seed={seed}");
    }

    [Test]
    public void Batch_norm_evaluation_kernel_matches_the_cpu_backend()
    {
        // Tensor.BatchNorm2d records evaluation through ordinary ops, so the fused kernel is checked at the backend.
        ulong seed = Check.FreshSeed();
        var g = new Generator(seed);
        int n = 2, c = 3, hw = 10;
        float[] F(int len, double shift = 0) => Enumerable.Range(0, len).Select(_ => (float)(shift + g.NextNormal())).ToArray();
        float[] x = F(n * c * hw), gamma = F(c, 1), beta = F(c), rm = F(c), rv = F(c, 3).Select(v => Math.Abs(v)).ToArray();
        float[] Eval(IBackend b)
        {
            Storage Up(float[] v) { var s = b.Allocate(DType.Float32, v.Length); b.Upload<float>(v, s); return s; }
            Storage[] s = [Up(x), Up(gamma), Up(beta), Up(rm), Up(rv), b.Allocate(DType.Float32, x.Length), b.Allocate(DType.Float32, c), b.Allocate(DType.Float32, c)];
            b.BatchNormForward(false, s[0], s[1], s[2], s[5], s[6], s[7], s[3], s[4], n, c, hw, 0.1, 1e-5);
            var y = new float[x.Length];
            b.Download<float>(s[5], 0, y);
            foreach (var st in s) st.Release();
            return y;
        }
        Assert.That(Eval(B), Is.EqualTo(Eval(Device.Cpu.Backend)).Within(1e-5), $"seed={seed}");
    }

    // ---- SGD -----------------------------------------------------------------------------------------------

    [Test]
    public void Sgd_updates_match_the_cpu_backend()
    {
        ulong seed = Check.FreshSeed();
        var g = new Generator(seed);
        SgdHyper[] variants =
        [
            new(0.1, 0, 0, 0, false, false),
            new(0.05, 0.9, 0.1, 1e-2, false, true),       // first step: the buffer becomes the gradient
            new(0.05, 0.9, 0.1, 1e-2, false, false),      // dampening
            new(0.1, 0.9, 0, 1e-3, true, false),          // Nesterov with weight decay
        ];
        float[] F() => Enumerable.Range(0, 37).Select(_ => (float)g.NextNormal()).ToArray();
        foreach (var h in variants)
        {
            float[] p = F(), gr = F(), buf = F();
            (float[] P, float[] Buf) Step(Device d)
            {
                using var pt = Tensor.FromArray((float[])p.Clone(), null, d);
                using var gt = Tensor.FromArray(gr, null, d);
                using var bt = Tensor.FromArray((float[])buf.Clone(), null, d);
                pt.SgdUpdate_(gt, bt, h);
                return (pt.ToArray<float>(), bt.ToArray<float>());
            }
            var cpu = Step(Device.Cpu);
            var gpu = Step(Gpu);
            Assert.That(gpu.P, Is.EqualTo(cpu.P).Within(1e-6), $"{h} seed={seed}");
            Assert.That(gpu.Buf, Is.EqualTo(cpu.Buf).Within(1e-6), $"{h} seed={seed}");
            if (h.Momentum == 0) Assert.That(gpu.Buf, Is.EqualTo(buf), "no momentum: the buffer is not touched");
        }
        var four = B.Allocate(DType.Float32, 4);
        var ex = Assert.Throws<ArgumentException>(() => B.SgdUpdate(four, four, null, 4, variants[1]));
        Assert.That(ex!.Message, Does.Contain("SgdUpdate").And.Contain("momentum buffer"));
        four.Release();
    }

    // ---- a small network -----------------------------------------------------------------------------------

    [Test]
    public void A_conv_net_trained_with_sgd_on_the_device_gives_the_cpu_losses()
    {
        // conv(3→4, 3x3, pad 1) → batch norm → relu → max pool 2 → linear(64→3) → cross-entropy; three SGD steps
        // (momentum, Nesterov, weight decay) from the same host weights. Tolerance 1e-4 on the losses: float32
        // sums in other orders, through three steps.
        var g = new Generator(11);
        var x = Rand(g, [4, 3, 8, 8]);
        float[] F(int len, double scale) => Enumerable.Range(0, len).Select(_ => (float)(scale * g.NextNormal())).ToArray();
        float[] cw = F(4 * 3 * 3 * 3, 0.3), cb = F(4, 0.1), lw = F(3 * 64, 0.15), lb = F(3, 0.1);
        long[] targets = [0, 2, 1, 2];
        (double[] Losses, float[] ConvWeight) Train(Device d)
        {
            using var convW = Tensor.FromArray((float[])cw.Clone(), [4, 3, 3, 3], d).RequiresGrad_();
            using var convB = Tensor.FromArray((float[])cb.Clone(), [4], d).RequiresGrad_();
            using var gamma = Tensor.FromArray(new float[] { 1, 1, 1, 1 }, null, d).RequiresGrad_();
            using var beta = Tensor.FromArray(new float[4], null, d).RequiresGrad_();
            using var linW = Tensor.FromArray((float[])lw.Clone(), [3, 64], d).RequiresGrad_();
            using var linB = Tensor.FromArray((float[])lb.Clone(), [3], d).RequiresGrad_();
            using var runMean = Tensor.FromArray(new float[4], null, d);
            using var runVar = Tensor.FromArray(new float[] { 1, 1, 1, 1 }, null, d);
            using var input = Tensor.FromArray(x.Data, x.Shape, d);
            using var y = Tensor.FromArray(targets, null, d);
            using var opt = new AttnCore.Optim.Sgd(new[] { convW, convB, gamma, beta, linW, linB }, 0.1, momentum: 0.9, weightDecay: 1e-4, nesterov: true);
            var losses = new double[3];
            long driverAllocations = 0;
            for (int step = 0; step < 3; step++)
            {
                // From the second step on, scratch and activations come from the memory pool.
                if (step == 2 && d.Backend is IlgpuBackend gb) driverAllocations = gb.DriverAllocations;
                using var scope = new TensorScope();
                opt.ZeroGrad();
                var h = input.Conv2d(convW, convB, padding: 1).BatchNorm2d(runMean, runVar, gamma, beta, true).Relu().MaxPool2d(2);
                var loss = (h.Flatten(1).MatMul(linW.T) + linB).CrossEntropy(y);
                loss.Backward();
                opt.Step();
                losses[step] = loss.Item();
            }
            if (d.Backend is IlgpuBackend b) Assert.That(b.DriverAllocations, Is.EqualTo(driverAllocations), "the third step asked the driver for memory");
            return (losses, convW.ToArray<float>());
        }
        var cpu = Train(Device.Cpu);
        var gpu = Train(Gpu);
        Assert.That(gpu.Losses, Is.EqualTo(cpu.Losses).Within(1e-4), $"losses on {Gpu}: [{string.Join(", ", gpu.Losses)}], on cpu: [{string.Join(", ", cpu.Losses)}]");
        Assert.That(gpu.ConvWeight, Is.EqualTo(cpu.ConvWeight).Within(1e-4), "conv weights after three steps");
        Assert.That(cpu.Losses[2], Is.LessThan(cpu.Losses[0]), "and it learns");
    }
}
