using NUnit.Framework;

namespace AttnCore.Tests.Engine;

/// <summary>
/// BinaryCrossEntropyWithLogits against a float64 reference written here (−y·ln σ(x) − (1 − y)·ln(1 − σ(x)) with
/// ln σ from log1p), its gradients by central differences, extreme logits, and its refusals.
/// </summary>
[TestFixture, Category("Engine")]
public class BinaryCrossEntropyTests
{
    // ln σ(x) = −ln(1 + e^−x), written per sign so neither branch overflows.
    static double LogSigmoid(double x) => x >= 0 ? -Math.Log(1 + Math.Exp(-x)) : x - Math.Log(1 + Math.Exp(x));
    static double Reference(double x, double y) => -y * LogSigmoid(x) - (1 - y) * LogSigmoid(-x);

    [TestCase(Reduction.None), TestCase(Reduction.Sum), TestCase(Reduction.Mean)]
    public void Matches_the_float64_reference_with_weights_in_float32(Reduction reduction)
    {
        double[] x = [-3.5, -0.2, 0, 0.7, 4.1, 12];
        double[] y = [0, 1, 0.5, 1, 0, 0.25];
        double[] w = [1, 0, 2, 1, 0.5, 1];
        using var logits = Tensor.FromArray(x.Select(v => (float)v).ToArray(), [2, 3]);
        using var targets = Tensor.FromArray(y.Select(v => (float)v).ToArray(), [2, 3]);
        using var weight = Tensor.FromArray(w.Select(v => (float)v).ToArray(), [2, 3]);
        using var loss = logits.BinaryCrossEntropyWithLogits(targets, weight, reduction);
        var each = x.Select((v, i) => w[i] * Reference(v, y[i])).ToArray();
        var got = loss.ToArray<double>();
        double[] want = reduction switch { Reduction.None => each, Reduction.Sum => [each.Sum()], _ => [each.Sum() / each.Length] };
        Assert.That(got, Is.EqualTo(want).Within(2e-6).Percent.Or.EqualTo(want).Within(1e-6));
    }

    [Test]
    public void Extreme_logits_give_finite_losses_and_gradients()
    {
        // A naive ln(σ(x)) overflows to -inf at x = -1000; the stable form gives 1000 exactly.
        using var logits = Tensor.FromArray(new float[] { -1000, 1000, -1000, 1000 }).RequiresGrad_();
        using var targets = Tensor.FromArray(new float[] { 1, 0, 0, 1 });
        using var loss = logits.BinaryCrossEntropyWithLogits(targets, reduction: Reduction.None);
        Assert.That(loss.ToArray<double>(), Is.EqualTo(new double[] { 1000, 1000, 0, 0 }));
        using var total = loss.Sum();
        total.Backward();
        // dx = σ(x) − y: −1, 1, 0, 0
        Assert.That(logits.Grad!.ToArray<double>(), Is.EqualTo(new double[] { -1, 1, 0, 0 }));
    }

    [Test]
    public void Gradients_of_logits_and_targets_match_central_differences()
    {
        var gen = new Generator(11);
        using var x = (Tensor.Randn([3, 4], gen, DType.Float64) * 3.0).RequiresGrad_();
        using var y = Tensor.Rand([3, 4], gen, DType.Float64).RequiresGrad_();
        using var w = Tensor.Rand([3, 4], gen, DType.Float64);
        foreach (var reduction in new[] { Reduction.Mean, Reduction.Sum, Reduction.None })
            GradCheck.Assert(t => t[0].BinaryCrossEntropyWithLogits(t[1], w, reduction), [x, y], name: $"BCE {reduction}");
    }

    [Test]
    public void The_backward_op_is_public_and_agrees_with_the_recorded_rule()
    {
        using var x = Tensor.FromArray(new double[] { -2, 0.5, 3 }).RequiresGrad_();
        using var y = Tensor.FromArray(new double[] { 1, 0, 1 });
        using var loss = x.BinaryCrossEntropyWithLogits(y);
        loss.Backward();
        using var g = Tensor.Full([], 1.0, DType.Float64);
        var (dx, dy) = Tensor.BinaryCrossEntropyWithLogitsBackward(g, x.Detach(), y, null, Reduction.Mean);
        using (dx)
        {
            Assert.That(dy, Is.Null);
            double[] want = [-2, 0.5, 3];
            var expected = want.Select((v, i) => (1 / (1 + Math.Exp(-v)) - y.ToArray<double>()[i]) / 3).ToArray();
            Assert.That(dx!.ToArray<double>(), Is.EqualTo(expected).Within(1e-12));
            Assert.That(x.Grad!.ToArray<double>(), Is.EqualTo(expected).Within(1e-12));
        }
    }

    [Test]
    public void Bad_inputs_name_the_op_and_the_shapes()
    {
        using var x = Tensor.Zeros([2, 3], DType.Float32);
        using var wrongShape = Tensor.Zeros([3, 2], DType.Float32);
        using var wrongType = Tensor.Zeros([2, 3], DType.Float64);
        using var ints = Tensor.Zeros([2, 3], DType.Int64);
        var ex = Assert.Throws<ArgumentException>(() => x.BinaryCrossEntropyWithLogits(wrongShape));
        Assert.That(ex!.Message, Does.Contain("BinaryCrossEntropyWithLogits").And.Contain("[2,3]").And.Contain("[3,2]"));
        ex = Assert.Throws<ArgumentException>(() => x.BinaryCrossEntropyWithLogits(wrongType));
        Assert.That(ex!.Message, Does.Contain("float64").IgnoreCase);
        ex = Assert.Throws<ArgumentException>(() => x.BinaryCrossEntropyWithLogits(x, wrongShape));
        Assert.That(ex!.Message, Does.Contain("weight"));
        Assert.Throws<ArgumentException>(() => ints.BinaryCrossEntropyWithLogits(ints));
        using var learned = Tensor.Ones([2, 3], DType.Float32).RequiresGrad_();
        ex = Assert.Throws<ArgumentException>(() => x.BinaryCrossEntropyWithLogits(x, learned));
        Assert.That(ex!.Message, Does.Contain("Detach"));
        using var g = Tensor.Ones([2], DType.Float32);
        ex = Assert.Throws<ArgumentException>(() => Tensor.BinaryCrossEntropyWithLogitsBackward(g, x, x, null, Reduction.Mean));
        Assert.That(ex!.Message, Does.Contain("BinaryCrossEntropyWithLogitsBackward").And.Contain("[2]"));
    }
}
