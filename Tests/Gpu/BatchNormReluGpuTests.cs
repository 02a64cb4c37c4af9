using AttnCore.Backends;
using AttnCore.Tests.Reference;
using NUnit.Framework;

namespace AttnCore.Tests.Gpu;

/// <summary>
/// The fused BatchNorm + ReLU (training forward and backward, running statistics, evaluation) and the one-pass ReLU
/// backward on each ILGPU device against the SIMD CPU backend, from the same host inputs; gradients of Σ y·r with a
/// fixed r. Tolerance 1e-4 absolute and relative, as for the unfused batch norm (ConvGpuTests).
/// </summary>
public class BatchNormReluGpuTests(string deviceName) : DeviceFixture<BatchNormReluGpuTests>(deviceName)
{
    static Device Gpu => TestDevice;

    [OneTimeTearDown]
    public void TrimPool() => ((IlgpuBackend)TestDevice.Backend).Memory.Trim();

    static float[] Normal(Generator g, int len, double shift = 0, double scale = 1) => Enumerable.Range(0, len).Select(_ => (float)(shift + scale * g.NextNormal())).ToArray();

    static (NdArray[] Out, float[] Rm, float[] Rv) Train(Device d, float[] x, float[] w, float[] b, int[] shape, bool training)
    {
        using var scope = new TensorScope();
        int c = shape[1];
        var rm = Tensor.FromArray(Enumerable.Range(0, c).Select(i => 0.1f * i).ToArray(), null, d);
        var rv = Tensor.FromArray(Enumerable.Range(0, c).Select(i => 1 + 0.5f * i).ToArray(), null, d);
        var xt = Tensor.FromArray(x, shape, d).RequiresGrad_();
        var wt = Tensor.FromArray(w, null, d).RequiresGrad_();
        var bt = Tensor.FromArray(b, null, d).RequiresGrad_();
        var y = xt.BatchNorm2dRelu(rm, rv, wt, bt, training, 0.2);
        var r = Enumerable.Range(0, (int)y.Numel).Select(k => (float)Math.Sin(0.7 * k + 0.3)).ToArray();
        (y * Tensor.FromArray(r, y.Shape, d)).Sum().Backward();
        return ([NdArray.From(y), NdArray.From(xt.Grad!), NdArray.From(wt.Grad!), NdArray.From(bt.Grad!)], rm.ToArray<float>(), rv.ToArray<float>());
    }

    [TestCase(true), TestCase(false)]
    public void Fused_batch_norm_relu_matches_the_cpu_backend(bool training)
    {
        ulong seed = Check.FreshSeed();
        var g = new Generator(seed);
        int[] shape = [3, 4, 5, 3];
        float[] x = Normal(g, 3 * 4 * 5 * 3, 2, 3), w = Normal(g, 4, 1, 0.5), b = Normal(g, 4);
        var cpu = Train(Device.Cpu, x, w, b, shape, training);
        var gpu = Train(Gpu, x, w, b, shape, training);
        string[] names = ["y", "dx", "dweight", "dbias"];
        for (int k = 0; k < names.Length; k++)
        {
            var (got, want) = (gpu.Out[k].Data, cpu.Out[k].Data);
            for (int i = 0; i < want.Length; i++)
                Assert.That(got[i], Is.EqualTo(want[i]).Within(1e-4 + 1e-4 * Math.Abs(want[i])), $"{names[k]}[{i}] on {Gpu} seed={seed}");
        }
        Assert.That(cpu.Out[0].Data.Count(v => v == 0), Is.GreaterThan(0), "the ReLU clamps part of the output");
        Assert.That(gpu.Rm, Is.EqualTo(cpu.Rm).Within(1e-4), $"running mean seed={seed}");
        Assert.That(gpu.Rv, Is.EqualTo(cpu.Rv).Within(1e-4), $"running var seed={seed}");
    }

    [Test]
    public void Add_relu_forward_and_backward_match_the_cpu_backend()
    {
        var g = new Generator(Check.FreshSeed());
        float[] a = Normal(g, 24), b = Normal(g, 24);
        float[][] Step(Device d)
        {
            using var scope = new TensorScope();
            var ta = Tensor.FromArray(a, [2, 3, 4], d).RequiresGrad_();
            var tb = Tensor.FromArray(b, [2, 3, 4], d).RequiresGrad_();
            var y = ta.AddRelu(tb);
            var r = Enumerable.Range(0, 24).Select(k => (float)Math.Sin(0.7 * k + 0.3)).ToArray();
            (y * Tensor.FromArray(r, [2, 3, 4], d)).Sum().Backward();
            return [y.ToArray<float>(), ta.Grad!.ToArray<float>(), tb.Grad!.ToArray<float>()];
        }
        var (cpu, gpu) = (Step(Device.Cpu), Step(Gpu));
        for (int k = 0; k < 3; k++) Assert.That(gpu[k], Is.EqualTo(cpu[k]).Within(1e-6), $"output {k} on {Gpu}");
    }

    [Test]
    public void Scale_add_relu_forward_and_backward_match_the_cpu_backend()
    {
        var g = new Generator(Check.FreshSeed());
        // 2 images x 3 channels of 5x7: runs of 35 values, longer than the small devices' 16-thread group.
        int[] shape = [2, 3, 5, 7];
        int n = 2 * 3 * 5 * 7;
        float[] x = Normal(g, n), s = Normal(g, 6, 0.5, 0.5), r = Normal(g, n);
        float[][] Step(Device d, bool wantScale)
        {
            using var scope = new TensorScope();
            var tx = Tensor.FromArray(x, shape, d).RequiresGrad_();
            var ts = Tensor.FromArray(s, [2, 3, 1, 1], d);
            if (wantScale) ts.RequiresGrad_();
            var tr = Tensor.FromArray(r, shape, d).RequiresGrad_();
            var y = tx.ScaleAddRelu(ts, tr);
            Assert.That(y.GradFn!.Kind, Is.EqualTo(OpKind.ScaleAddRelu), $"fused on {d}");
            var w = Enumerable.Range(0, n).Select(k => (float)Math.Sin(0.7 * k + 0.3)).ToArray();
            (y * Tensor.FromArray(w, shape, d)).Sum().Backward();
            return [y.ToArray<float>(), tx.Grad!.ToArray<float>(), tr.Grad!.ToArray<float>(), wantScale ? ts.Grad!.ToArray<float>() : []];
        }
        foreach (bool wantScale in new[] { true, false })
        {
            var (cpu, gpu) = (Step(Device.Cpu, wantScale), Step(Gpu, wantScale));
            Assert.That(cpu[0].Count(v => v == 0), Is.InRange(1, n - 1), "the ReLU clamps part of the output");
            string[] names = ["y", "dx", "dresidual", "dscale"];
            for (int k = 0; k < 4; k++)
                for (int i = 0; i < cpu[k].Length; i++)
                    Assert.That(gpu[k][i], Is.EqualTo(cpu[k][i]).Within(1e-5 + 1e-5 * Math.Abs(cpu[k][i])), $"{names[k]}[{i}] on {Gpu}, scale grad wanted: {wantScale}");
        }
    }

    [Test]
    public void Relu_backward_matches_the_cpu_backend()
    {
        float[] y = [0, 1.5f, -0f, 2, float.NaN, 0.25f, 3, 0], dy = [1, 2, 3, 4, 5, 6, 7, 8];
        float[] Grad(Device d)
        {
            using var scope = new TensorScope();
            return Tensor.ReluBackward(Tensor.FromArray(dy, [2, 4], d), Tensor.FromArray(y, [2, 4], d)).ToArray<float>();
        }
        Assert.That(Grad(Gpu), Is.EqualTo(Grad(Device.Cpu)));
        Assert.That(Grad(Device.Cpu), Is.EqualTo(new float[] { 0, 2, 0, 4, 0, 6, 7, 0 }));
    }
}
