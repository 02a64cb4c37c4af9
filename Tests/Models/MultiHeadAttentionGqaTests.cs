using AttnCore.Models.Nn;
using NUnit.Framework;

namespace AttnCore.Tests.Models;

/// <summary>
/// Grouped-query MultiHeadAttention equals ordinary multi-head attention whose key/value projection rows are
/// the grouped ones repeated per query head: the defining property of GQA, checked through the fused path, the
/// materialised-weights path and cross-attention, with a general mask.
/// </summary>
[TestFixture, Category("Models")]
public class MultiHeadAttentionGqaTests
{
    const int Dim = 16, Heads = 4, KvHeads = 2, Dh = Dim / Heads;

    // Rows [first, first + count·Dh) of each key/value head of a grouped projection, repeated Heads / KvHeads times.
    static Tensor RepeatHeads(Tensor w, int first)
    {
        var blocks = Enumerable.Range(0, Heads).Select(h => w.Narrow(0, first + h / (Heads / KvHeads) * Dh, Dh)).ToArray();
        return Tensor.Cat(blocks, 0);
    }

    // The ordinary attention's state: q rows as they are, k and v rows repeated per query head.
    static Dictionary<string, Tensor> Expanded(MultiHeadAttention gqa, string projection, int qRows)
    {
        var s = gqa.StateDict();
        var d = new Dictionary<string, Tensor>(s);
        foreach (var part in new[] { "weight", "bias" })
        {
            var w = s[$"{projection}.{part}"];
            var pieces = new List<Tensor>();
            if (qRows > 0) pieces.Add(w.Narrow(0, 0, qRows));
            pieces.Add(RepeatHeads(w, qRows));
            pieces.Add(RepeatHeads(w, qRows + KvHeads * Dh));
            d[$"{projection}.{part}"] = Tensor.Cat([.. pieces], 0);
        }
        return d;
    }

    static void Same(Tensor a, Tensor b, string what)
    {
        var x = a.ToArray<float>(); var y = b.ToArray<float>();
        Assert.That(x, Has.Length.EqualTo(y.Length), what);
        for (int i = 0; i < x.Length; i++) Assert.That(x[i], Is.EqualTo(y[i]).Within(1e-5 * (1 + Math.Abs(y[i]))), $"{what}[{i}]");
    }

    [TestCase(false), TestCase(true)]
    public void Grouped_query_self_attention_equals_multi_head_attention_with_repeated_key_value_weights(bool keepWeights)
    {
        using var scope = new TensorScope();
        var g = new Generator(21);
        using var gqa = new MultiHeadAttention(Dim, Heads, generator: g, kvHeads: KvHeads);
        using var mha = new MultiHeadAttention(Dim, Heads, generator: g);
        Assert.That(gqa.StateDict()["qkv.weight"].Shape, Is.EqualTo(new[] { Dim + 2 * KvHeads * Dh, Dim }));
        mha.LoadStateDict(Expanded(gqa, "qkv", Dim));
        gqa.KeepWeights = keepWeights;
        var x = Tensor.Randn([2, 5, Dim], g);
        var mask = Tensor.FromArray(Enumerable.Range(0, 25).Select(i => i % 6 == 1 ? float.NegativeInfinity : 0.1f * i).ToArray(), [5, 5]);
        Same(gqa.Forward(x, causal: true, mask: mask), mha.Forward(x, causal: true, mask: mask), $"output, keepWeights={keepWeights}");
    }

    [Test]
    public void Grouped_query_cross_attention_equals_multi_head_attention_with_repeated_key_value_weights()
    {
        using var scope = new TensorScope();
        var g = new Generator(22);
        using var gqa = new MultiHeadAttention(Dim, Heads, crossAttention: true, generator: g, kvHeads: 1);
        using var mha = new MultiHeadAttention(Dim, Heads, crossAttention: true, generator: g);
        // Multi-query: one key/value head serves all four query heads.
        var s = gqa.StateDict();
        var d = new Dictionary<string, Tensor>(s);
        foreach (var part in new[] { "weight", "bias" })
        {
            var w = s[$"kv.{part}"];
            d[$"kv.{part}"] = Tensor.Cat([.. Enumerable.Repeat(w.Narrow(0, 0, Dh), Heads), .. Enumerable.Repeat(w.Narrow(0, Dh, Dh), Heads)], 0);
        }
        mha.LoadStateDict(d);
        var x = Tensor.Randn([2, 3, Dim], g);
        var memory = Tensor.Randn([2, 7, Dim], g);
        using var pad = Tensor.FromArray(Enumerable.Range(0, 14).Select(i => i % 7 == 6 ? 1f : 0f).ToArray(), [2, 7]);
        Same(gqa.Forward(x, memory, pad), mha.Forward(x, memory, pad), "cross-attention output");
    }

    [Test]
    public void Key_value_heads_must_divide_the_heads()
    {
        var ex = Assert.Throws<ArgumentException>(() => new MultiHeadAttention(Dim, Heads, kvHeads: 3));
        Assert.That(ex!.Message, Does.Contain("4 query heads are not a multiple of 3"));
    }
}
