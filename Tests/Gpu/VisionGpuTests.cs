using AttnCore.Backends;
using AttnCore.Models.Vision;
using AttnCore.Optim;
using NUnit.Framework;

namespace AttnCore.Tests.Gpu;

/// <summary>
/// ResNet-20-SE training on each ILGPU device: the same weights (the CPU model's state dict loaded onto the device),
/// the same batch, two SGD steps with momentum, and the losses compared with the CPU's step by step, within 1e-3
/// relative (float32 sums in another order through 20 layers, compounded over the steps); and the BoTNet MHSA block
/// (the fused attention with its learned relative-position bias) against the CPU. Images are 8x8, batch 4: every
/// kernel launch on the emulators is costly.
/// </summary>
public class VisionGpuTests(string deviceName) : DeviceFixture<VisionGpuTests>(deviceName)
{
    [OneTimeTearDown]
    public void TrimPool() => ((IlgpuBackend)TestDevice.Backend).Memory.Trim();

    static double[] Losses(string name, Device device, int steps)
    {
        using var cpuModel = VisionModels.Create(name, 3, 10, new Generator(11));
        using var model = device == Device.Cpu ? null : VisionModels.Create(name, 3, 10, new Generator(11), device);
        model?.LoadStateDict(cpuModel.StateDict());
        var net = model ?? cpuModel;
        net.Train();
        using var optimizer = new Sgd(net.Parameters(), 0.05, momentum: 0.9, weightDecay: 5e-4);
        var rng = new Random(3);
        using var x = Tensor.FromArray(Enumerable.Range(0, 4 * 3 * 8 * 8).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray(), [4, 3, 8, 8], device);
        using var y = Tensor.FromArray(new long[] { 1, 4, 7, 9 }, [4], device);
        var losses = new double[steps];
        for (int s = 0; s < steps; s++)
        {
            using var scope = new TensorScope();
            optimizer.ZeroGrad();
            var loss = net.Forward(x).CrossEntropy(y);
            loss.Backward();
            optimizer.Step();
            losses[s] = loss.Item();
        }
        return losses;
    }

    [Test]
    public void Resnet20_se_trains_with_the_cpus_losses()
    {
        var cpu = Losses("resnet20-se", Device.Cpu, 2);
        var device = Losses("resnet20-se", TestDevice, 2);
        for (int s = 0; s < cpu.Length; s++)
            Assert.That(device[s], Is.EqualTo(cpu[s]).Within(1e-3 * Math.Abs(cpu[s])), $"resnet20-se on {DeviceName}: loss at step {s}");
        Assert.That(cpu[^1], Is.LessThan(cpu[0]), "resnet20-se: the loss falls on one batch");
    }

    // The MHSA block alone (a whole ResNet-20-MHSA takes minutes on the emulators): output and every gradient,
    // the relative tables' through the fused attention's learned bias, as on the CPU within 1e-4 + 1e-4·|cpu|.
    [Test]
    public void Mhsa_block_gives_the_cpus_output_and_gradients()
    {
        (float[] Y, float[][] Grads) Run(Device device)
        {
            using var block = new BotMhsa2d(8, heads: 2, maxExtent: 4, generator: new Generator(5), device: device);
            using var cpuBlock = device == Device.Cpu ? null : new BotMhsa2d(8, heads: 2, maxExtent: 4, generator: new Generator(5));
            if (cpuBlock is not null) block.LoadStateDict(cpuBlock.StateDict());
            using var scope = new TensorScope();
            var x = Tensor.Randn([2, 8, 3, 4], new Generator(6)).To(device).RequiresGrad_();
            var y = block.Forward(x);
            var r = Tensor.Randn(y.Shape, new Generator(7)).To(device);
            (y * r).Sum().Backward();
            return (y.ToArray<float>(), [x.Grad!.ToArray<float>(), .. block.Parameters().Select(p => p.Grad!.ToArray<float>())]);
        }
        var (cy, cg) = Run(Device.Cpu);
        var (dy, dg) = Run(TestDevice);
        for (int j = 0; j < cy.Length; j++) Assert.That(dy[j], Is.EqualTo(cy[j]).Within(1e-4 + 1e-4 * Math.Abs(cy[j])), $"output element {j}");
        for (int i = 0; i < cg.Length; i++)
            for (int j = 0; j < cg[i].Length; j++)
                Assert.That(dg[i][j], Is.EqualTo(cg[i][j]).Within(1e-4 + 1e-4 * Math.Abs(cg[i][j])), $"gradient {i} (0: input, then qkv, rel_height, rel_width) element {j}");
    }
}
