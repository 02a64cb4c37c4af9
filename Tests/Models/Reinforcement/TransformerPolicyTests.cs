using AttnCore.Models.Reinforcement;
using NUnit.Framework;

namespace AttnCore.Tests.Models.Reinforcement;

[TestFixture, Category("Models")]
public class TransformerPolicyTests
{
    /// <summary>
    /// The policy's fast path runs the top block for the last position only (query from the last position, keys and
    /// values from all). It must give what the whole block gives at that position: the reference is the same weights
    /// through the full block (taken when the top block keeps its attention weights, a separate attention kernel),
    /// for two blocks and windows with episode starts at different positions. Logits, values and every parameter's
    /// gradient must agree to float tolerance.
    /// </summary>
    [Test]
    public void Last_position_path_equals_the_full_block_at_the_last_position_with_gradients()
    {
        const int b = 4, k = 6, obs = 3;
        using var fast = new TransformerActorCritic(obs, 2, k, new Generator(5), dim: 16, heads: 4, layers: 2);
        using var full = new TransformerActorCritic(obs, 2, k, new Generator(5), dim: 16, heads: 4, layers: 2);
        full.Attention(1).KeepWeights = true;
        var windows = Enumerable.Range(0, b * k * obs).Select(i => (float)Math.Sin(0.7 * i + 0.3)).ToArray();
        // rows start their episodes 1, 3 and 6 steps ago; row 3 sees a full window
        float[] mask = [1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        for (int i = 0; i < b; i++)
            for (int j = 0; j < k; j++)
                if (mask[i * k + j] == 1) windows.AsSpan((i * k + j) * obs, obs).Clear();
        var (fastLogits, fastValues, fastGrads) = Run(fast, windows, mask, b, k, obs);
        var (fullLogits, fullValues, fullGrads) = Run(full, windows, mask, b, k, obs);
        Assert.That(fastValues.Select(Math.Abs).Max(), Is.GreaterThan(1e-3), "the values are not trivially zero");
        Assert.That(fastLogits, Is.EqualTo(fullLogits).Within(1e-5));
        Assert.That(fastValues, Is.EqualTo(fullValues).Within(1e-5));
        Assert.That(fastGrads.Keys, Is.EquivalentTo(fullGrads.Keys));
        foreach (var (name, g) in fullGrads)
        {
            double scale = Math.Max(1e-3, g.Select(Math.Abs).Max());
            Assert.That(fastGrads[name].Zip(g, (x, y) => Math.Abs(x - y)).Max(), Is.LessThan(1e-4 * scale), $"gradient of {name}");
        }
    }

    static (float[] Logits, float[] Values, Dictionary<string, float[]> Grads) Run(TransformerActorCritic policy, float[] windows, float[] mask, int b, int k, int obs)
    {
        var x = Tensor.FromArray(windows, [b, k, obs]);
        var pad = Tensor.FromArray(mask, [b, k]);
        var (logits, values) = policy.Forward(x, pad);
        // weights per output, so that every logit and value reaches the gradients differently
        var wl = Tensor.FromArray(Enumerable.Range(0, b * 2).Select(i => (float)Math.Cos(i)).ToArray(), [b, 2]);
        var wv = Tensor.FromArray(Enumerable.Range(0, b).Select(i => 1f + i).ToArray(), [b]);
        ((logits * wl).Sum() + (values * wv).Sum()).Backward();
        var grads = policy.NamedParameters().ToDictionary(p => p.Name, p => p.Parameter.Grad!.ToArray<float>());
        return (logits.ToArray<float>(), values.ToArray<float>(), grads);
    }
}
