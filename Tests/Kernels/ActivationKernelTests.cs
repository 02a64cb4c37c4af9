using AttnCore.Kernels.Cpu;
using AttnCore.Tests.Engine;
using NUnit.Framework;

namespace AttnCore.Tests.Kernels;

/// <summary>
/// The float32 GELU kernels (Kernels/Cpu/Activations.cs: Vector512, Vector&lt;float&gt; and a scalar tail) against the
/// float64 formulas, on every length around the vector widths: the forward, the derivative and the fused backward
/// dy · GELU'(x), including the backward written over its own gradient.
/// </summary>
[TestFixture, Category("Kernels")]
public class ActivationKernelTests
{
    static readonly int[] Lengths = [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 1000];

    static (float[] X, float[] Dy) Inputs(int n, ulong seed)
    {
        var g = new Generator(seed);
        var x = new float[n]; var dy = new float[n];
        for (int i = 0; i < n; i++) { x[i] = (float)(4 * g.NextNormal()); dy[i] = (float)g.NextNormal(); }
        if (n > 2) { x[0] = 0; x[1] = -12; x[2] = 12; }   // the centre and both tails
        return (x, dy);
    }

    [TestCaseSource(nameof(Lengths))]
    public void Gelu_its_derivative_and_the_fused_backward_match_float64(int n)
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var (x, dy) = Inputs(n, seed);
        var y = new float[n]; var d = new float[n]; var dx = new float[n];
        Activations.Gelu(x, y);
        Activations.GeluDerivative(x, d);
        Activations.GeluBackward(dy, x, dx);
        for (int i = 0; i < n; i++)
        {
            double phi = 0.5 * (1 + Reference.NdArray.Erf(x[i] / Math.Sqrt(2)));
            double grad = ElementwiseTests.GeluGrad(x[i]);
            Assert.That(y[i], Is.EqualTo(x[i] * phi).Within(2e-6 * (1 + Math.Abs(x[i]))), $"Gelu x={x[i]} (n={n}, seed={seed})");
            Assert.That(d[i], Is.EqualTo(grad).Within(2e-6 * (1 + Math.Abs(x[i]))), $"GeluDerivative x={x[i]} (n={n}, seed={seed})");
            Assert.That(dx[i], Is.EqualTo(dy[i] * grad).Within(2e-6 * (1 + Math.Abs(dy[i] * x[i]))), $"GeluBackward x={x[i]} dy={dy[i]} (n={n}, seed={seed})");
            Assert.That(dx[i], Is.EqualTo(dy[i] * d[i]).Within(1e-6 * Math.Abs(dy[i] * d[i]) + 1e-30), "the fused backward is the gradient times the derivative");
        }
        // Written over its gradient: the same values.
        var inPlace = (float[])dy.Clone();
        Activations.GeluBackward(inPlace, x, inPlace);
        Assert.That(inPlace, Is.EqualTo(dx));
    }

    [Test]
    public void The_backward_names_mismatched_lengths()
    {
        var e = Assert.Throws<ArgumentException>(() => Activations.GeluBackward(new float[4], new float[5], new float[5]))!;
        Assert.That(e.Message, Does.Contain("Activations.GeluBackward").And.Contain("gradient has 4").And.Contain("input 5"));
    }
}
