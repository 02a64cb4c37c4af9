using AttnCore.Kernels.Cpu;
using NUnit.Framework;
using KernelOptim = AttnCore.Kernels.Cpu.Optim;

namespace AttnCore.Tests.Kernels;

/// <summary>
/// The float32 SGD and Adam steps (Kernels/Cpu/Optim.cs: Vector512, a scalar tail, the pool for large tensors) against PyTorch's
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

    static IEnumerable<TestCaseData> AdamCases()
    {
        foreach (int n in new[] { 0, 1, 15, 16, 17, 31, 32, 33, (1 << 18) + 7 })
            foreach (bool decoupled in new[] { true, false })
                foreach (long step in new long[] { 1, 7 })
                    yield return new TestCaseData(n, decoupled, step);
    }

    // Adam and AdamW (PyTorch's formulas, float64) on every length around the vector width and on a tensor the pool splits;
    // the split result must also equal the one-thread result bit for bit (each element's update is its own).
    [TestCaseSource(nameof(AdamCases))]
    public void Float32_adam_matches_the_float64_formula_and_the_one_thread_result(int n, bool decoupled, long step)
    {
        int saved = WorkerPool.ThreadCount;
        try
        {
            var g = new Generator(5);
            var p = new float[n]; var grad = new float[n]; var m = new float[n]; var v = new float[n];
            for (int i = 0; i < n; i++)
            {
                p[i] = (float)g.NextNormal(); grad[i] = (float)g.NextNormal(); m[i] = 0.1f * (float)g.NextNormal(); v[i] = 0.01f * MathF.Abs((float)g.NextNormal());
            }
            double lr = 1e-3, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
            double bc1 = 1 - Math.Pow(b1, step), bc2 = 1 - Math.Pow(b2, step);
            var (rp, rm, rv) = (new double[n], new double[n], new double[n]);
            for (int i = 0; i < n; i++)
            {
                double pi = p[i], gi = grad[i];
                if (decoupled) pi *= 1 - lr * wd; else gi += wd * pi;
                rm[i] = b1 * m[i] + (1 - b1) * gi;
                rv[i] = b2 * v[i] + (1 - b2) * gi * gi;
                rp[i] = pi - lr / bc1 * rm[i] / (Math.Sqrt(rv[i]) / Math.Sqrt(bc2) + eps);
            }
            var (p1, m1, v1) = ((float[])p.Clone(), (float[])m.Clone(), (float[])v.Clone());
            WorkerPool.ThreadCount = 1;
            KernelOptim.AdamW(p1, grad, m1, v1, (float)lr, (float)b1, (float)b2, (float)eps, (float)wd, step, decoupled);
            WorkerPool.ThreadCount = 2;
            KernelOptim.AdamW(p, grad, m, v, (float)lr, (float)b1, (float)b2, (float)eps, (float)wd, step, decoupled);
            Assert.That(p, Is.EqualTo(p1), "two threads against one");
            for (int i = 0; i < n; i++)
            {
                Assert.That(p[i], Is.EqualTo(rp[i]).Within(1e-6 * (1 + Math.Abs(rp[i]))), $"p[{i}] of {n}");
                Assert.That(m[i], Is.EqualTo(rm[i]).Within(1e-6 * (1 + Math.Abs(rm[i]))), $"m[{i}] of {n}");
                Assert.That(v[i], Is.EqualTo(rv[i]).Within(1e-6 * (1 + Math.Abs(rv[i]))), $"v[{i}] of {n}");
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
