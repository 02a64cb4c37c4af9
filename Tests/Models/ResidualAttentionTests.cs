using AttnCore.Models.Nn;
using NUnit.Framework;

namespace AttnCore.Tests.Models;

/// <summary>
/// MultiHeadAttention.ForwardResidual (PatchTST's residual attention) against the fused path: without previous scores
/// it is ordinary attention, and with them it is attention under those scores as an additive mask (the fused kernel's
/// bias); the scores it hands on are the next layer's input. The gradients through the scores are checked against
/// PyTorch by the patchtst_res case of ForecasterFixtureTests.
/// </summary>
[TestFixture, Category("Models")]
public class ResidualAttentionTests
{
    const int B = 2, T = 7, Dim = 16, Heads = 4;

    static void Close(Tensor actual, Tensor expected, double tol, string what)
    {
        float[] a = actual.ToArray<float>(), e = expected.ToArray<float>();
        Assert.That(a.Length, Is.EqualTo(e.Length), what);
        for (int i = 0; i < a.Length; i++) Assert.That(a[i], Is.EqualTo(e[i]).Within(tol), $"{what}[{i}]");
    }

    [Test]
    public void Without_previous_scores_it_is_ordinary_attention_and_hands_on_the_scaled_scores()
    {
        using var mha = new MultiHeadAttention(Dim, Heads, generator: new Generator(5));
        using var x = Tensor.Randn([B, T, Dim], new Generator(6));
        using var expected = mha.Forward(x);
        using var actual = mha.ForwardResidual(x, null, out var scores);
        using (scores)
        {
            Close(actual, expected, 1e-5, "output");
            // The scores, recomputed in float64 from the projection's q and k rows.
            var w = mha.StateDict()["qkv.weight"].ToArray<float>();
            var bias = mha.StateDict()["qkv.bias"].ToArray<float>();
            var xs = x.ToArray<float>();
            var s = scores.ToArray<float>();
            int dh = Dim / Heads;
            double Proj(int b, int t, int row)
            {
                double acc = bias[row];
                for (int c = 0; c < Dim; c++) acc += (double)w[row * Dim + c] * xs[(b * T + t) * Dim + c];
                return acc;
            }
            for (int b = 0; b < B; b++)
                for (int h = 0; h < Heads; h++)
                    for (int i = 0; i < T; i++)
                        for (int j = 0; j < T; j++)
                        {
                            double dot = 0;
                            for (int c = 0; c < dh; c++) dot += Proj(b, i, h * dh + c) * Proj(b, j, Dim + h * dh + c);
                            Assert.That(s[((b * Heads + h) * T + i) * T + j], Is.EqualTo(dot / Math.Sqrt(dh)).Within(1e-4), $"score ({b}, {h}, {i}, {j})");
                        }
        }
    }

    [Test]
    public void Previous_scores_act_as_an_additive_bias_and_are_carried_into_the_next_scores()
    {
        using var mha = new MultiHeadAttention(Dim, Heads, generator: new Generator(7));
        using var x = Tensor.Randn([B, T, Dim], new Generator(8));
        using var prev = Tensor.Randn([B, Heads, T, T], new Generator(9));
        using var expected = mha.Forward(x, mask: prev);
        using var own = mha.ForwardResidual(x, null, out var ownScores);
        using var actual = mha.ForwardResidual(x, prev, out var scores);
        using (ownScores)
        using (scores)
        using (var sum = ownScores + prev)
        {
            Close(actual, expected, 1e-5, "output");
            Close(scores, sum, 1e-5, "scores");
        }
    }

    [Test]
    public void Bad_previous_scores_and_cross_attention_are_refused_by_name()
    {
        using var mha = new MultiHeadAttention(Dim, Heads, generator: new Generator(1));
        using var x = Tensor.Randn([B, T, Dim], new Generator(2));
        using var wrong = Tensor.Zeros([B, Heads, T, T + 1]);
        var e = Assert.Throws<ArgumentException>(() => mha.ForwardResidual(x, wrong, out _));
        Assert.That(e!.Message, Does.Contain("ForwardResidual").And.Contain($"[{B},{Heads},{T},{T + 1}]"));
        using var cross = new MultiHeadAttention(Dim, Heads, crossAttention: true, generator: new Generator(3));
        Assert.Throws<InvalidOperationException>(() => cross.ForwardResidual(x, null, out _));
    }
}
