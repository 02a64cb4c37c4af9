using AttnCore.Models.Recommendation;
using AttnCore.Optim;
using NUnit.Framework;

namespace AttnCore.Tests.Gpu;

/// <summary>
/// The recommenders on each ILGPU device: BinaryCrossEntropyWithLogits and its backward, then a few Adam steps of
/// SASRec and of the target-attention model from the same weights and batches as on the CPU, losses matching.
/// </summary>
public class RecommendationGpuTests(string deviceName) : DeviceFixture<RecommendationGpuTests>(deviceName)
{
    [Test]
    public void Binary_cross_entropy_with_logits_and_its_gradient_match_the_cpu()
    {
        float[] x = [-30, -2.5f, -0.1f, 0, 0.4f, 3, 17, 1];
        float[] y = [0, 1, 0.3f, 1, 0, 1, 0, 0.5f];
        float[] w = [1, 1, 0, 2, 1, 0.5f, 1, 1];
        double[] Run(Device d, out double[] grad)
        {
            using var logits = Tensor.FromArray(x, [2, 4], d).RequiresGrad_();
            using var targets = Tensor.FromArray(y, [2, 4], d);
            using var weight = Tensor.FromArray(w, [2, 4], d);
            using var loss = logits.BinaryCrossEntropyWithLogits(targets, weight, Reduction.None);
            using var total = loss.Sum();
            total.Backward();
            grad = logits.Grad!.ToArray<double>();
            return loss.ToArray<double>();
        }
        var cpu = Run(Device.Cpu, out var cpuGrad);
        var dev = Run(TestDevice, out var devGrad);
        Assert.That(dev, Is.EqualTo(cpu).Within(1e-5));
        Assert.That(devGrad, Is.EqualTo(cpuGrad).Within(1e-6));
    }

    [TestCase("sasrec"), TestCase("target-attention")]
    public void Three_training_steps_give_the_cpu_losses(string name)
    {
        var config = new SasRecConfig(Items: 40, MaxLength: 8, Dim: 8, Blocks: 1, Heads: 1, Dropout: 0);
        var split = new LeaveOneOutSplit(Interactions.FromSequences(
            [[], .. Enumerable.Range(1, 12).Select(u => Enumerable.Range(0, 3 + u % 7).Select(k => 1 + (u * 7 + k * 3) % 40).ToArray())], itemCount: 40));
        var batches = new List<SequenceBatch>();
        var sampler = new SequenceSampler(split, config.MaxLength, seed: 2);
        for (int i = 0; i < 3; i++) batches.Add(sampler.Next(4));
        using var cpuModel = RecommenderCheckpoint.Create(name, config, new Generator(3));
        using var devModel = RecommenderCheckpoint.Create(name, config, new Generator(3), TestDevice);
        devModel.LoadStateDict(cpuModel.StateDict());
        double[] Losses(SelfAttentiveRecommender model, Device device)
        {
            using var adam = new Adam(model.Parameters(), 1e-2, 0.9, 0.98);
            var losses = new double[batches.Count];
            for (int i = 0; i < batches.Count; i++)
            {
                using var scope = new TensorScope();
                var (h, p, n) = batches[i].ToTensors(device);
                adam.ZeroGrad();
                var loss = model.Loss(h, p, n);
                loss.Backward();
                adam.Step();
                losses[i] = loss.Item();
            }
            return losses;
        }
        var cpu = Losses(cpuModel, Device.Cpu);
        var dev = Losses(devModel, TestDevice);
        TestContext.Out.WriteLine($"{name} on {DeviceName}: cpu {string.Join(", ", cpu)}; device {string.Join(", ", dev)}");
        Assert.That(dev, Is.EqualTo(cpu).Within(1e-4));
        Assert.That(cpu[^1], Is.Not.EqualTo(cpu[0]), "the steps changed the weights");
    }
}
