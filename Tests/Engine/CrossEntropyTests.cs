using System.Text.Json;
using NUnit.Framework;

namespace AttnCore.Tests.Engine;

/// <summary>One case of Tests/Fixtures/cross_entropy.json (made by make_cross_entropy.py with PyTorch 1.13).</summary>
public sealed record CrossEntropyCase(string Name, int[] Shape, bool Probabilities, double[] Targets, int[] TargetShape, double[]? Weight,
    long IgnoreIndex, double LabelSmoothing, Reduction Reduction, double[] Logits, double[] Upstream, double[] Loss, double[] GradLogits, double[]? GradTargets)
{
    public override string ToString() => Name;

    public static IReadOnlyList<CrossEntropyCase> Load()
    {
        var root = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "cross_entropy.json"))).RootElement;
        static double Number(JsonElement e) => e.ValueKind == JsonValueKind.String ? double.Parse(e.GetString()!, System.Globalization.CultureInfo.InvariantCulture) : e.GetDouble();
        static double[] Doubles(JsonElement e) => e.EnumerateArray().Select(Number).ToArray();
        static int[] Ints(JsonElement e) => e.EnumerateArray().Select(v => v.GetInt32()).ToArray();
        return root.GetProperty("cases").EnumerateArray().Select(c => new CrossEntropyCase(
            c.GetProperty("name").GetString()!, Ints(c.GetProperty("shape")), c.GetProperty("probabilities").GetBoolean(),
            Doubles(c.GetProperty("targets")), Ints(c.GetProperty("target_shape")),
            c.GetProperty("weight").ValueKind == JsonValueKind.Null ? null : Doubles(c.GetProperty("weight")),
            c.GetProperty("ignore_index").GetInt64(), c.GetProperty("label_smoothing").GetDouble(),
            c.GetProperty("reduction").GetString() switch { "none" => Reduction.None, "sum" => Reduction.Sum, _ => Reduction.Mean },
            Doubles(c.GetProperty("logits")), Doubles(c.GetProperty("upstream")), Doubles(c.GetProperty("loss")), Doubles(c.GetProperty("grad_logits")),
            c.TryGetProperty("grad_targets", out var gt) ? Doubles(gt) : null)).ToList();
    }

    static Tensor Make(double[] values, int[] shape, DType dtype, Device device) => dtype == DType.Float64
        ? Tensor.FromArray(values, shape, device) : Tensor.FromArray(values.Select(v => (float)v).ToArray(), shape, device);

    /// <summary>Runs the case through Tensor.CrossEntropy and Backward on a device: loss, d/d logits, d/d targets (probabilities).</summary>
    public (double[] Loss, double[] GradLogits, double[]? GradTargets) Run(Device device, DType dtype)
    {
        using var scope = new TensorScope();
        var x = Make(Logits, Shape, dtype, device).RequiresGrad_();
        var t = Probabilities ? Make(Targets, TargetShape, dtype, device).RequiresGrad_()
                              : Tensor.FromArray(Targets.Select(v => (long)v).ToArray(), TargetShape, device);
        var w = Weight is null ? null : Make(Weight, [Weight.Length], dtype, device);
        var loss = x.CrossEntropy(t, IgnoreIndex, LabelSmoothing, w, Reduction);
        var upstream = Make(Upstream, loss.Shape, dtype, device);
        loss.Backward(upstream);
        return (loss.ToArray<double>(), x.Grad!.ToArray<double>(), Probabilities ? t.Grad!.ToArray<double>() : null);
    }

    /// <summary>Asserts every value within atol + rtol·|PyTorch| (NaN where PyTorch has NaN).</summary>
    public static void Close(double[] got, double[] want, double rtol, double atol, string what)
    {
        Assert.That(got, Has.Length.EqualTo(want.Length), what);
        for (int i = 0; i < want.Length; i++)
        {
            if (double.IsNaN(want[i])) { Assert.That(got[i], Is.NaN, $"{what}[{i}]"); continue; }
            Assert.That(got[i], Is.EqualTo(want[i]).Within(atol + rtol * Math.Abs(want[i])), $"{what}[{i}]");
        }
    }

    /// <summary>Checks a run against PyTorch's values at float32 or float64 tolerance.</summary>
    public void AssertMatches(Device device, DType dtype)
    {
        var (loss, gradLogits, gradTargets) = Run(device, dtype);
        var (rtol, atol) = dtype == DType.Float64 ? (1e-11, 1e-12) : (2e-5, 2e-6);
        string what = $"{Name} on {device} {dtype.Name()}";
        Close(loss, Loss, rtol, atol, $"{what} loss");
        Close(gradLogits, GradLogits, rtol, atol, $"{what} d/dlogits");
        if (GradTargets is not null) Close(gradTargets!, GradTargets, rtol, atol, $"{what} d/dtargets");
    }
}

/// <summary>
/// Tensor.CrossEntropy on the CPU against PyTorch 1.13 (weights, ignore_index, label smoothing, probability targets,
/// every reduction, logits of rank 1, 2, 3 and 4) in float32 and float64, and its errors for bad input.
/// </summary>
[TestFixture, Category("Engine")]
public class CrossEntropyTests
{
    static IEnumerable<CrossEntropyCase> Cases() => CrossEntropyCase.Load();

    [TestCaseSource(nameof(Cases))]
    public void Loss_and_gradients_match_pytorch_in_float32(CrossEntropyCase c) => c.AssertMatches(Device.Cpu, DType.Float32);

    [TestCaseSource(nameof(Cases))]
    public void Loss_and_gradients_match_pytorch_in_float64(CrossEntropyCase c) => c.AssertMatches(Device.Cpu, DType.Float64);

    [Test]
    public void Reductions_agree_with_each_other_on_strided_logits()
    {
        // [N, C, d] logits read at stride d: 'none' summed is 'sum', and 'mean' is 'sum' over the kept target weights.
        var g = new Generator(11);
        using var x = Tensor.Randn([3, 5, 4], g);
        using var t = Tensor.FromArray(new long[] { 0, 4, -100, 2, 1, 1, 3, 0, -100, 4, 2, 2 }, [3, 4]);
        using var w = Tensor.FromArray(new float[] { 0.5f, 1, 2, 1.5f, 0.25f });
        using var none = x.CrossEntropy(t, -100, 0.1, w, Reduction.None);
        using var sum = x.CrossEntropy(t, -100, 0.1, w, Reduction.Sum);
        using var mean = x.CrossEntropy(t, -100, 0.1, w, Reduction.Mean);
        double kept = new long[] { 0, 4, 2, 1, 1, 3, 0, 4, 2, 2 }.Sum(c => (double)new[] { 0.5, 1, 2, 1.5, 0.25 }[c]);
        Assert.That(none.Shape, Is.EqualTo(new[] { 3, 4 }));
        Assert.That(none.ToArray<float>()[2], Is.EqualTo(0f), "an ignored position costs 0");
        Assert.That(sum.Item(), Is.EqualTo(none.ToArray<float>().Sum(v => (double)v)).Within(1e-5).Percent);
        Assert.That(mean.Item(), Is.EqualTo(sum.Item() / kept).Within(1e-5).Percent);
    }

    [Test]
    public void Non_contiguous_logits_and_targets_give_the_contiguous_result()
    {
        var g = new Generator(4);
        using var stored = Tensor.Randn([5, 3], g);          // logits [3, 5] as a transposed view
        using var x = stored.T;
        using var xc = x.Contiguous();
        using var tStored = Tensor.FromArray(new long[] { 1, 9, 4, 9, 0, 9 }, [3, 2]);
        using var t = tStored.Select(1, 0);                   // [1, 4, 0] at stride 2
        using var w = Tensor.FromArray(new float[] { 1, 2, 0.5f, 1, 3 });
        using var a = x.CrossEntropy(t, -100, 0.1, w, Reduction.None);
        using var b = xc.CrossEntropy(t.Contiguous(), -100, 0.1, w, Reduction.None);
        Assert.That(a.ToArray<float>(), Is.EqualTo(b.ToArray<float>()));
    }

    [Test]
    public void Bad_targets_weights_and_options_name_the_op_and_the_shapes()
    {
        using var x = Tensor.Zeros([2, 3]);
        using var t = Tensor.FromArray(new long[] { 0, 2 });
        Assert.That(Assert.Throws<ArgumentException>(() => x.CrossEntropy(Tensor.FromArray(new long[] { 0, 1, 2 })))!.Message,
            Does.StartWith("CrossEntropy: class-index targets must be int64 [2]").And.Contain("got int64 [3]"));
        Assert.That(Assert.Throws<ArgumentException>(() => x.CrossEntropy(Tensor.Zeros([2, 4])))!.Message,
            Does.StartWith("CrossEntropy: probability targets must be float32 [2,3] like the logits, got float32 [2,4]"));
        Assert.That(Assert.Throws<ArgumentException>(() => x.CrossEntropy(Tensor.Zeros([2, 3], DType.Float64)))!.Message,
            Does.Contain("probability targets must be float32 [2,3]").And.Contain("got float64 [2,3]"));
        Assert.That(Assert.Throws<ArgumentException>(() => x.CrossEntropy(t, weight: Tensor.Ones([4])))!.Message,
            Does.StartWith("CrossEntropy: weight must be float32 [3] (one per class of logits [2,3]), got float32 [4]"));
        Assert.That(Assert.Throws<ArgumentException>(() => x.CrossEntropy(t, weight: Tensor.Ones([3], DType.Float64)))!.Message,
            Does.Contain("got float64 [3]"));
        Assert.That(Assert.Throws<ArgumentException>(() => x.CrossEntropy(t, labelSmoothing: 1.5))!.Message, Does.Contain("label smoothing must be in [0, 1], got 1.5"));
        Assert.Throws<ArgumentOutOfRangeException>(() => x.CrossEntropy(t, reduction: (Reduction)7));
        Assert.That(Assert.Throws<ArgumentException>(() => Tensor.Zeros([]).CrossEntropy(Tensor.FromArray(new long[] { 0 })))!.Message,
            Does.Contain("logits must have a class dim"));
        Assert.That(Assert.Throws<ArgumentException>(() => Tensor.Zeros([2, 0]).CrossEntropy(t))!.Message, Does.Contain("have no classes"));
        Assert.That(Assert.Throws<ArgumentException>(() => Tensor.Zeros([2, 3], DType.Int64).CrossEntropy(t))!.Message, Does.StartWith("CrossEntropy: needs a floating-point tensor"));
    }

    [Test]
    public void A_class_index_out_of_range_names_its_position_and_value()
    {
        using var x = Tensor.Zeros([2, 3, 2]);
        using var t = Tensor.FromArray(new long[] { 0, 1, -100, 3 }, [2, 2]);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => x.CrossEntropy(t))!;
        Assert.That(ex.Message, Does.Contain("CrossEntropy: target 3 at position 3 = [1, 1] of [2, 2] is outside the 3 classes [0, 3)"));
        Assert.That(ex.ActualValue, Is.EqualTo(3L));
        using var negative = Tensor.FromArray(new long[] { -1, 0 });
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.Zeros([2, 3]).CrossEntropy(negative))!.Message,
            Does.Contain("target -1 at position 0 is outside the 3 classes"));
        // ignore_index itself is never an error, whatever its value.
        using var ignored = Tensor.FromArray(new long[] { 1, 99 });
        Assert.DoesNotThrow(() => Tensor.Zeros([2, 3]).CrossEntropy(ignored, ignoreIndex: 99).Dispose());
    }

    [Test]
    public void Weights_that_require_a_gradient_are_refused_instead_of_silently_left_without_one()
    {
        using var x = Tensor.Randn([4, 3], new Generator(3)).RequiresGrad_();
        using var t = Tensor.FromArray(new long[] { 0, 2, 1, 1 });
        using var w = Tensor.FromArray(new float[] { 1, 2, 3 }).RequiresGrad_();
        Assert.That(Assert.Throws<ArgumentException>(() => x.CrossEntropy(t, weight: w))!.Message,
            Does.StartWith("CrossEntropy: the class weights [3] require a gradient"));
        using var detached = w.Detach();
        using var loss = x.CrossEntropy(t, weight: detached);
        loss.Backward();
        Assert.That(x.Grad, Is.Not.Null);
    }
}

/// <summary>NllLoss on log-probabilities: the second half of cross-entropy, as torch.nn.functional.nll_loss.</summary>
[TestFixture, Category("Engine")]
public class NllLossTests
{
    [TestCase(Reduction.Mean), TestCase(Reduction.Sum), TestCase(Reduction.None)]
    public void Nll_of_log_softmax_is_cross_entropy_in_values_and_gradients(Reduction reduction)
    {
        // Every unsmoothed class-target case of the PyTorch fixture, with its weights and ignore index, in float64.
        foreach (var c in CrossEntropyCase.Load().Where(c => !c.Probabilities && c.LabelSmoothing == 0))
        {
            using var scope = new TensorScope();
            var x = Tensor.FromArray(c.Logits, c.Shape).RequiresGrad_();
            var t = Tensor.FromArray(c.Targets.Select(v => (long)v).ToArray(), c.TargetShape);
            var w = c.Weight is null ? null : Tensor.FromArray(c.Weight);
            var nll = x.LogSoftmax(c.Shape.Length == 1 ? 0 : 1).NllLoss(t, w, c.IgnoreIndex, reduction);
            nll.Sum().Backward();
            var viaNll = (nll.ToArray<double>(), x.Grad!.ToArray<double>());
            x.Grad = null;
            var ce = x.CrossEntropy(t, c.IgnoreIndex, 0, w, reduction);
            ce.Sum().Backward();
            CrossEntropyCase.Close(viaNll.Item1, ce.ToArray<double>(), 1e-12, 1e-13, $"{c.Name} {reduction} loss");
            CrossEntropyCase.Close(viaNll.Item2, x.Grad!.ToArray<double>(), 1e-12, 1e-13, $"{c.Name} {reduction} gradient");
        }
    }

    [Test]
    public void Nll_passes_gradcheck_and_refuses_bad_targets()
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        using var t = Tensor.FromArray(new long[] { 0, 3, -100, 2, 1, 1 }, [2, 3]);
        using var w = Tensor.FromArray(new[] { 0.5, 2.0, -1.0, 1.5 });
        foreach (var reduction in new[] { Reduction.Mean, Reduction.Sum, Reduction.None })
            Assert.DoesNotThrow(() => GradCheck.Assert(x => x[0].NllLoss(t, w, -100, reduction), [Tensor.Randn([2, 4, 3], new Generator(seed), DType.Float64).RequiresGrad_()], seed,
                name: $"NllLoss {reduction}"), $"seed={seed}");
        using var x = Tensor.Zeros([2, 4]);
        Assert.That(Assert.Throws<ArgumentException>(() => x.NllLoss(Tensor.Zeros([2, 4])))!.Message,
            Does.StartWith("NllLoss: targets must be int64 class indices, got float32 [2,4]"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => x.NllLoss(Tensor.FromArray(new long[] { 4, 0 })))!.Message,
            Does.Contain("target 4 at position 0 is outside the 4 classes"));
    }
}

/// <summary>Central differences (float64) agree with the fused cross-entropy backward in every mode.</summary>
[TestFixture, Category("Autograd")]
public class CrossEntropyGradCheckTests
{
    static Tensor Rand(Generator g, params int[] shape) => Tensor.Randn(shape, g, DType.Float64).RequiresGrad_();

    [TestCase(Reduction.Mean), TestCase(Reduction.Sum), TestCase(Reduction.None)]
    public void Class_targets_with_weights_smoothing_and_ignore_index_pass_gradcheck(Reduction reduction)
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        using var t2 = Tensor.FromArray(new long[] { 2, -100, 0, 3 });
        using var t4 = Tensor.FromArray(new long[] { 0, 3, 2, -100, 1, 1, 3, 0 }, [2, 2, 2]);
        using var w = Tensor.FromArray(new[] { 0.5, 2.0, -1.0, 1.5 });
        Tensor[] inputs = [Rand(g, 4, 4), Rand(g, 2, 4, 2, 2)];
        Assert.DoesNotThrow(() => GradCheck.Assert(x => x[0].CrossEntropy(t2, -100, 0.2, w, reduction), [inputs[0]], seed, name: $"CrossEntropy [N,C] {reduction}"), $"seed={seed}");
        Assert.DoesNotThrow(() => GradCheck.Assert(x => x[0].CrossEntropy(t4, -100, 0.1, w, reduction), [inputs[1]], seed, name: $"CrossEntropy [N,C,d1,d2] {reduction}"), $"seed={seed}");
        using var scalarTarget = Tensor.FromArray(new long[] { 1 }, []);
        Assert.DoesNotThrow(() => GradCheck.Assert(x => x[0].CrossEntropy(scalarTarget, -100, 0.3, w, reduction), [Rand(g, 4)], seed, name: $"CrossEntropy [C] {reduction}"), $"seed={seed}");
    }

    [TestCase(Reduction.Mean), TestCase(Reduction.Sum), TestCase(Reduction.None)]
    public void Probability_targets_pass_gradcheck_for_logits_and_targets(Reduction reduction)
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        using var w = Tensor.FromArray(new[] { 0.5, 2.0, 1.0 });
        Tensor[] inputs = [Rand(g, 2, 3, 2), Rand(g, 2, 3, 2)];
        Assert.DoesNotThrow(() => GradCheck.Assert(x => x[0].CrossEntropy(x[1], -100, 0.2, w, reduction), inputs, seed, name: $"CrossEntropy probabilities {reduction}"), $"seed={seed}");
    }
}
