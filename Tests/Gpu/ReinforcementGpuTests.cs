using AttnCore.Models.Reinforcement;
using NUnit.Framework;

namespace AttnCore.Tests.Gpu;

/// <summary>
/// The Transformer policy and the PPO loss on an ILGPU device: the same weights (drawn on the host from one seed) give
/// the CPU's logits, values, loss and gradients for windows with a key-padding mask at an episode start.
/// </summary>
public class ReinforcementGpuTests(string deviceName) : DeviceFixture<ReinforcementGpuTests>(deviceName)
{
    [Test]
    public void Transformer_policy_and_ppo_loss_match_the_cpu()
    {
        const int b = 3, k = 4, obs = 2;
        using var cpu = new TransformerActorCritic(obs, 2, k, new Generator(9), dim: 8, heads: 2);
        using var dev = new TransformerActorCritic(obs, 2, k, new Generator(9), dim: 8, heads: 2, device: TestDevice);
        var windows = Enumerable.Range(0, b * k * obs).Select(i => (float)Math.Sin(i)).ToArray();
        // row 0 starts its episode two steps ago (positions 0, 1 hidden), row 1 one step ago, row 2 sees a full window
        float[] mask = [1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0];
        float[] oldLogProbs = [-0.7f, -0.6f, -0.8f], advantages = [1.0f, -0.5f, 0.25f], returns = [0.5f, 1.0f, -0.2f], oldValues = [0.1f, 0.2f, 0.0f];
        (float[] Logits, float[] Values, double Loss, float[] EmbedGrad) Run(ActorCritic policy, Device device)
        {
            using var scope = new TensorScope();
            var (logits, values) = policy.Forward(Tensor.FromArray(windows, [b, k, obs], device), Tensor.FromArray(mask, [b, k], device));
            var terms = PpoLoss.Compute(logits, values, Tensor.FromArray(new long[] { 0, 1, 1 }, [b], device), Tensor.FromArray(oldLogProbs, [b], device),
                Tensor.FromArray(advantages, [b], device), Tensor.FromArray(returns, [b], device), Tensor.FromArray(oldValues, [b], device), new PpoCoefficients());
            foreach (var p in policy.Parameters()) { p.Grad?.Dispose(); p.Grad = null; }
            terms.Loss.Backward();
            var embed = policy.NamedParameters().First(p => p.Name == "embed.weight").Parameter;
            return (logits.ToArray<float>(), values.ToArray<float>(), terms.Loss.Item(), embed.Grad!.ToArray<float>());
        }
        var want = Run(cpu, Device.Cpu);
        var got = Run(dev, TestDevice);
        Assert.That(got.Logits, Is.EqualTo(want.Logits).Within(1e-4));
        Assert.That(got.Values, Is.EqualTo(want.Values).Within(1e-4));
        Assert.That(got.Loss, Is.EqualTo(want.Loss).Within(1e-4));
        Assert.That(got.EmbedGrad, Is.EqualTo(want.EmbedGrad).Within(1e-3));
        Assert.That(want.EmbedGrad.Any(g => g != 0), Is.True, "the gradient reaches the embedding");
    }
}
