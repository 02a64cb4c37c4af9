using AttnCore.Kernels.Cpu;
using NUnit.Framework;
using KernelOptim = AttnCore.Kernels.Cpu.Optim;

namespace AttnCore.Tests.Kernels;

/// <summary>
/// The float32 SGD step (Kernels/Cpu/Optim.cs: Vector512, a scalar tail, the pool for large tensors) against PyTorch's
/// formula written out in float64, for every length around the vector width and for a tensor long enough to be split
/// over two threads, with and without momentum, Nesterov, dampening and the first step.
/// </summary>
[TestFixture, Category("Kernels")]
public class OptimKernelTests
{
    static IEnumerable<TestCaseData> Cases()
    {
        int[] lengths = [0, 1, 15, 16, 17, 31, 32, 33, (1 << 18) + 7];
        foreach (int n in lengths)
            foreach (var (mu, damp, nesterov, first) in new[] { (0.0, 0.0, false, false), (0.9, 0.0, true, false), (0.9, 0.1, false, false), (0.9, 0.0, true, true) })
                yield return new TestCaseData(n, mu, damp, nesterov, first);
    }

    [TestCaseSource(nameof(Cases))]
    public void Float32_sgd_matches_the_float64_formula(int n, double mu, double damp, bool nesterov, bool first)
    {
        int saved = WorkerPool.ThreadCount;
        try
        {
            WorkerPool.ThreadCount = 2;
            var g = new Generator(3);
            var p = new float[n]; var grad = new float[n]; var buf = new float[n];
            for (int i = 0; i < n; i++) { p[i] = (float)g.NextNormal(); grad[i] = (float)g.NextNormal(); buf[i] = (float)g.NextNormal(); }
            double lr = 0.1, wd = 5e-4;
            var (rp, rb) = (new double[n], new double[n]);
            for (int i = 0; i < n; i++)
            {
                double d = grad[i] + wd * p[i];
                if (mu != 0)
                {
                    rb[i] = first ? d : mu * buf[i] + (1 - damp) * d;
                    d = nesterov ? d + mu * rb[i] : rb[i];
                }
                else rb[i] = buf[i];
                rp[i] = p[i] - lr * d;
            }
            KernelOptim.Sgd(p, grad, mu == 0 ? default : buf.AsSpan(), (float)lr, (float)mu, (float)damp, (float)wd, nesterov, first);
            for (int i = 0; i < n; i++)
            {
                Assert.That(p[i], Is.EqualTo(rp[i]).Within(1e-6 * (1 + Math.Abs(rp[i]))), $"p[{i}] of {n}");
                Assert.That(buf[i], Is.EqualTo(rb[i]).Within(1e-6 * (1 + Math.Abs(rb[i]))), $"buf[{i}] of {n}");
            }
        }
        finally { WorkerPool.ThreadCount = saved; }
    }

    [Test]
    public void A_short_gradient_is_named_in_the_error()
    {
        var ex = Assert.Throws<ArgumentException>(() => KernelOptim.Sgd(new float[4], new float[3], new float[4], 0.1f, 0.9f, 0, 0, false, false));
        Assert.That(ex!.Message, Does.Contain("Optim.Sgd").And.Contain("grad (3)"));
    }
}
