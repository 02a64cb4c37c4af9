using NUnit.Framework;

namespace AttnCore.Tests.Properties;

/// <summary>The minimal cases CsCheck shrank the property failures to, kept as plain regression tests.</summary>
[TestFixture, Category("Engine")]
public class PropertyRegressionTests
{
    [TestCase(DType.Float32), TestCase(DType.Float64)]
    public void MatMul_propagates_NaN_from_zero_times_infinity_in_the_skinny_path(DType dtype)
    {
        // Shrunk: a = [[-0]], b = [[inf, 0]]. The skinny GEMM skipped zero elements of a, so -0 * inf gave 0, not NaN.
        using var a = Tensor.FromArray(new double[] { -0.0 }, [1, 1]).To(dtype);
        using var b = Tensor.FromArray(new double[] { double.PositiveInfinity, 0 }, [1, 2]).To(dtype);
        using var c = a.MatMul(b);
        var got = c.ToArray<double>();
        Assert.That(double.IsNaN(got[0]), Is.True, $"-0 * inf = NaN, got {got[0]}");
        Assert.That(got[1], Is.EqualTo(0));
    }

    [Test]
    public void Float64_tanh_of_tiny_inputs_is_the_input()
    {
        // Shrunk: tanh(1e-30) was -0 and tanh(-7.667e-36) was 0 (TensorPrimitives' float64 tanh cancels near 0).
        double[] x = { 1e-30, -7.667e-36, 1e-9, -3e-5 };
        using var t = Tensor.FromArray(x);
        using var y = t.Tanh();
        var got = y.ToArray<double>();
        for (int i = 0; i < x.Length; i++) Assert.That(got[i], Is.EqualTo(Math.Tanh(x[i])).Within(1e-15 * Math.Abs(x[i])), $"tanh({x[i]})");
    }

    [Test]
    public void Float32_tanh_near_zero_keeps_its_relative_accuracy()
    {
        // Shrunk: tanh(0) was -5.96e-8 in float32 (the vectorised kernel's absolute error), for any vector length.
        float[] x = { 13, -9.749f, 0.6016f, 0, -1.204e-21f, 1e-5f, -0.2f, 0.3f };
        using var t = Tensor.FromArray(x);
        using var y = t.Tanh();
        var got = y.ToArray<float>();
        for (int i = 0; i < x.Length; i++) Assert.That(got[i], Is.EqualTo((float)Math.Tanh(x[i])).Within(4e-7 * Math.Abs(Math.Tanh(x[i]))), $"tanh({x[i]})");
    }

    [TestCase(DType.Float64, false), TestCase(DType.Float64, true), TestCase(DType.Float32, true)]
    public void Softmax_of_huge_equal_values_is_uniform(DType dtype, bool log)
    {
        // Shrunk: a row of five ±1e30 (an expanded view). The kernels shifted by max + log(sum), which rounds to max:
        // float64 softmax gave 1s, float64 and float32 log-softmax gave 0s.
        using var x = Tensor.Full([5], 1e30, dtype);
        using var y = log ? x.LogSoftmax(0) : x.Softmax(0);
        Assert.That(y.ToArray<double>(), Is.All.EqualTo(log ? -Math.Log(5) : 0.2).Within(dtype == DType.Float32 ? 1e-6 : 1e-15));
    }

    [Test]
    public void MatMul_gradient_with_an_empty_inner_dim_and_a_batched_left_operand()
    {
        // Shrunk: a [1,1,1,0] @ b [0]. The weight-gradient GEMM reshaped a to [-1, 0], which is ambiguous, and threw.
        using var a = Tensor.Zeros([1, 1, 1, 0], DType.Float64).RequiresGrad_();
        using var b = Tensor.Zeros([0], DType.Float64).RequiresGrad_();
        using var y = a.MatMul(b);
        Assert.That(y.Shape, Is.EqualTo(new[] { 1, 1, 1 }));
        using var loss = y.Sum();
        loss.Backward();
        Assert.That(a.Grad!.Shape, Is.EqualTo(new[] { 1, 1, 1, 0 }));
        Assert.That(b.Grad!.Shape, Is.EqualTo(new[] { 0 }));
    }
}
