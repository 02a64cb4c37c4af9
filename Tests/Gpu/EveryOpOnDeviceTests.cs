using AttnCore.Tests.Autograd;
using NUnit.Framework;

namespace AttnCore.Tests.Gpu;

/// <summary>
/// Every differentiable op of the autograd catalogue (<see cref="GradCheckTests.Cases"/>, where each is checked
/// against central differences in float64) runs forward and backward on the ILGPU device in float32 and gives the
/// SIMD CPU backend's output and input gradients. Constants an op builds itself (index tensors, masks, running
/// statistics) land on the device through <see cref="Device.UseDefault"/>. Tolerance |gpu - cpu| &lt;= 2e-4·(1 + |cpu|):
/// float32 sums in another order (tiled GEMM, tree reductions) on O(1) inputs.
/// </summary>
public class EveryOpOnDeviceTests(string deviceName) : DeviceFixture<EveryOpOnDeviceTests>(deviceName)
{

    static (float[] Output, float[][] Grads) Run(GradCheckTests.Case c, float[][] values, Device device)
    {
        using var scope = new TensorScope();
        using var _ = Device.UseDefault(device);
        var inputs = values.Select((v, i) => Tensor.FromArray(v, c.Shapes[i], device).RequiresGrad_()).ToArray();
        var y = c.F(inputs);
        Assert.That(y.Device, Is.EqualTo(device), $"{c.Name}: the result stays on {device}");
        // A fixed, non-uniform upstream gradient so every output element's adjoint is exercised.
        using var w = Tensor.Arange(0, y.Numel, 1, DType.Float32, device).Reshape(y.Shape) * 0.37;
        using var wsin = w.Sin();
        using var loss = (y * wsin).Sum();
        loss.Backward();
        return (y.ToArray<float>(), inputs.Select(x => x.Grad?.ToArray<float>() ?? []).ToArray());
    }

    [TestCaseSource(typeof(GradCheckTests), nameof(GradCheckTests.Cases))]
    public void Forward_and_backward_match_the_cpu(GradCheckTests.Case c)
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        var values = c.Shapes.Select(s => Enumerable.Range(0, s.Aggregate(1, (a, b) => a * b))
            .Select(_ => (float)(c.Domain is null ? g.NextNormal() : c.Domain(g.NextDouble()))).ToArray()).ToArray();
        var (cpuOut, cpuGrads) = Run(c, values, Device.Cpu);
        var (gpuOut, gpuGrads) = Run(c, values, TestDevice);
        Close(gpuOut, cpuOut, $"{c.Name} output, seed={seed}");
        for (int i = 0; i < cpuGrads.Length; i++) Close(gpuGrads[i], cpuGrads[i], $"{c.Name} grad of input {i}, seed={seed}");
    }

    static void Close(float[] got, float[] want, string what)
    {
        Assert.That(got, Has.Length.EqualTo(want.Length), what);
        for (int i = 0; i < want.Length; i++)
            if (!(Math.Abs(got[i] - want[i]) <= 2e-4 * (1 + Math.Abs(want[i]))) && !(float.IsNaN(got[i]) && float.IsNaN(want[i])))
                Assert.Fail($"{what}: element {i} is {got[i]}, the cpu gives {want[i]}");
    }
}
