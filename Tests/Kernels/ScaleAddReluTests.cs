using AttnCore.Kernels.Cpu;
using NUnit.Framework;

namespace AttnCore.Tests.Kernels;

/// <summary>
/// The fused SE scale + residual add + ReLU (Kernels/Cpu/ScaleAddRelu.cs) against float64 loops written here: forward
/// and gradient at run lengths around the vector widths (the SIMD body and its scalar tail), float32 and float64, on one
/// and two threads, with gradients left out, and NaN.
/// </summary>
[TestFixture, Category("Kernels")]
public class ScaleAddReluTests
{
    static double[] Normal(Generator g, long len) { var a = new double[len]; for (long i = 0; i < len; i++) a[i] = g.NextNormal(); return a; }

    static (double[] Y, double[] Dx, double[] Ds, double[] Dr) Reference(double[] x, double[] s, double[] r, double[] dy, int runs, int len)
    {
        var y = new double[x.Length]; var dx = new double[x.Length]; var ds = new double[runs]; var dr = new double[x.Length];
        for (int i = 0; i < runs; i++)
            for (int j = 0; j < len; j++)
            {
                int k = i * len + j;
                double v = x[k] * s[i] + r[k];
                y[k] = Math.Max(v, 0);
                double d = v > 0 ? dy[k] : 0;
                dr[k] = d; dx[k] = d * s[i]; ds[i] += d * x[k];
            }
        return (y, dx, ds, dr);
    }

    static float[] F(double[] v) => Array.ConvertAll(v, d => (float)d);

    static void Close(float[] got, double[] want, double tol, string what)
    {
        for (int i = 0; i < want.Length; i++)
            if (Math.Abs(got[i] - want[i]) > tol * (1 + Math.Abs(want[i]))) Assert.Fail($"{what}[{i}] = {got[i]}, reference {want[i]}");
    }

    [Test]
    public void Float32_matches_the_float64_loops_at_every_run_length_around_the_vector_widths([Values(1, 2)] int threads)
    {
        int saved = WorkerPool.ThreadCount;
        try
        {
            WorkerPool.ThreadCount = threads;
            var g = new Generator(31);
            // The long case (64 runs of 4,099) is large enough to split over the pool, with a tail in every run.
            foreach (var (runs, len) in Enumerable.Range(0, 34).Select(l => (3, l)).Append((64, 4099)))
            {
                double[] x = Normal(g, (long)runs * len), s = Normal(g, runs), r = Normal(g, (long)runs * len), dy = Normal(g, (long)runs * len);
                var want = Reference(Array.ConvertAll(F(x), v => (double)v), Array.ConvertAll(F(s), v => (double)v), Array.ConvertAll(F(r), v => (double)v), Array.ConvertAll(F(dy), v => (double)v), runs, len);
                var y = new float[x.Length]; var dx = new float[x.Length]; var ds = new float[runs]; var dr = new float[x.Length];
                Array.Fill(ds, float.NaN);
                ScaleAddRelu.Forward<float>(F(x), F(s), F(r), y, runs, len);
                ScaleAddRelu.Backward<float>(F(dy), y, F(x), F(s), dx, ds, dr, runs, len);
                Close(y, want.Y, 1e-6, $"y len={len}");
                Close(dx, want.Dx, 1e-6, $"dx len={len}");
                Close(dr, want.Dr, 0, $"dr len={len}");
                Close(ds, want.Ds, 1e-5, $"ds len={len}");
                if (len >= 8) Assert.That(y.Count(v => v == 0), Is.GreaterThan(0).And.LessThan(y.Length), $"len={len}: some outputs clamped, some not");
            }
        }
        finally { WorkerPool.ThreadCount = saved; }
    }

    [Test]
    public void Float64_matches_to_rounding_and_unwanted_gradients_are_skipped()
    {
        var g = new Generator(32);
        const int runs = 5, len = 37;
        double[] x = Normal(g, runs * len), s = Normal(g, runs), r = Normal(g, runs * len), dy = Normal(g, runs * len);
        var want = Reference(x, s, r, dy, runs, len);
        var y = new double[x.Length];
        ScaleAddRelu.Forward<double>(x, s, r, y, runs, len);
        Assert.That(y, Is.EqualTo(want.Y).Within(1e-15));
        var ds = new double[runs];
        ScaleAddRelu.Backward<double>(dy, y, x, [], [], ds, [], runs, len);   // the scale's gradient alone: s not needed
        Assert.That(ds, Is.EqualTo(want.Ds).Within(1e-12));
        var dx = new double[x.Length];
        ScaleAddRelu.Backward<double>(dy, y, [], s, dx, [], [], runs, len);   // x's alone: x not needed
        Assert.That(dx, Is.EqualTo(want.Dx).Within(1e-15));
    }

    [Test]
    public void Nan_propagates_forward_and_into_the_scale_gradient_but_not_through_the_mask()
    {
        float[] x = [float.NaN, 1, 2], s = [1], r = [0, -5, 1], y = new float[3], dy = [7, 7, 7], dx = new float[3], ds = new float[1], dr = new float[3];
        ScaleAddRelu.Forward<float>(x, s, r, y, 1, 3);
        Assert.That(float.IsNaN(y[0]) && y[1] == 0 && y[2] == 3, Is.True, $"y = {string.Join(", ", y)}");
        ScaleAddRelu.Backward<float>(dy, y, x, s, dx, ds, dr, 1, 3);
        Assert.That(dr, Is.EqualTo(new float[] { 0, 0, 7 }));
        Assert.That(float.IsNaN(ds[0]), Is.True, "ds sums d·x, and 0·NaN is NaN (as the unfused product's gradient)");
    }

    [Test]
    public void Bad_sizes_name_the_kernel_and_the_span()
    {
        var e = Assert.Throws<ArgumentException>(() => ScaleAddRelu.Forward<float>(new float[6], new float[1], new float[6], new float[6], 2, 3));
        Assert.That(e!.Message, Does.StartWith("ScaleAddRelu.Forward: s has 1 elements, needs 2"));
        e = Assert.Throws<ArgumentException>(() => ScaleAddRelu.Backward<float>(new float[6], new float[5], new float[6], new float[2], new float[6], [], [], 2, 3));
        Assert.That(e!.Message, Does.StartWith("ScaleAddRelu.Backward: y has 5 elements, needs 6"));
        e = Assert.Throws<ArgumentException>(() => ScaleAddRelu.Backward<float>(new float[6], new float[6], new float[6], new float[2], new float[4], [], [], 2, 3));
        Assert.That(e!.Message, Does.StartWith("ScaleAddRelu.Backward: dx has 4 elements, needs 6"));
    }
}
