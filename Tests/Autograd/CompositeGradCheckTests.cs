using NUnit.Framework;

namespace AttnCore.Tests.Autograd;

/// <summary>GradCheck on whole blocks built from Engine ops: the rules compose.</summary>
[TestFixture, Category("Autograd")]
public class CompositeGradCheckTests
{
    const int B = 2, T = 4, D = 6, H = 2;

    static Tensor Rand(Generator g, params int[] shape) => (Tensor.Randn(shape, g, DType.Float64) * 0.5).RequiresGrad_();

    // Multi-head self-attention with a causal mask and an output projection: x [B,T,D] -> [B,T,D].
    static Tensor Attention(Tensor x, Tensor wqkv, Tensor wo)
    {
        var qkv = x.MatMul(wqkv).Reshape(B, T, 3, H, D / H).Permute(2, 0, 3, 1, 4);   // [3,B,H,T,dh]
        var (q, k, v) = (qkv.Select(0, 0), qkv.Select(0, 1), qkv.Select(0, 2));
        var s = q.MatMul(k.Transpose(-1, -2)) * (1.0 / Math.Sqrt(D / H));
        using var mask = Tensor.Ones([T, T], DType.Float64).Triu(1);
        var a = s.MaskedFill(mask, double.NegativeInfinity).Softmax(-1).MatMul(v);
        return a.Transpose(1, 2).Reshape(B, T, D).MatMul(wo);
    }

    [Test]
    public void Multi_head_attention_gradients_pass_gradcheck()
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        Tensor[] inputs = [Rand(g, B, T, D), Rand(g, D, 3 * D), Rand(g, D, D)];
        Assert.DoesNotThrow(() => GradCheck.Assert(x => Attention(x[0], x[1], x[2]), inputs, seed, name: "MHA"), $"seed={seed}");
    }

    [Test]
    public void Pre_norm_transformer_block_gradients_pass_gradcheck()
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        Tensor[] inputs =
        [
            Rand(g, B, T, D), Rand(g, D), Rand(g, D), Rand(g, D, 3 * D), Rand(g, D, D),
            Rand(g, D), Rand(g, D), Rand(g, D, 4 * D), Rand(g, 4 * D), Rand(g, 4 * D, D),
        ];
        Tensor Block(Tensor[] p)
        {
            var x = p[0];
            var h = x + Attention(x.LayerNorm([D], p[1], p[2]), p[3], p[4]);
            var m = (h.LayerNorm([D], p[5], p[6]).MatMul(p[7]) + p[8]).Gelu().MatMul(p[9]);
            return h + m;
        }
        Assert.DoesNotThrow(() => GradCheck.Assert(Block, inputs, seed, name: "TransformerBlock"), $"seed={seed}");
    }

    // GPT's blocks as Models/Transformers/Gpt.cs runs them: each block leaves its last residual add to the next layer
    // norm (AddLayerNorm), and every layer norm's input also has the residual path's gradient, which Backward hands to
    // the norm's rule to add in its pass.
    [Test]
    public void Pre_norm_blocks_with_the_residual_add_in_the_next_layer_norm_pass_gradcheck()
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        var inputs = new List<Tensor> { Rand(g, B, T, D) };
        for (int b = 0; b < 2; b++)
            inputs.AddRange([Rand(g, D), Rand(g, D), Rand(g, D, 3 * D), Rand(g, D, D), Rand(g, D), Rand(g, D), Rand(g, D, 4 * D), Rand(g, 4 * D, D)]);
        inputs.AddRange([Rand(g, D), Rand(g, D)]);
        Tensor Blocks(Tensor[] p)
        {
            Tensor stream = p[0];
            Tensor? delta = null;
            for (int b = 0; b < 2; b++)
            {
                int o = 1 + 8 * b;
                var (s, n1) = delta is null ? (stream, stream.LayerNorm([D], p[o], p[o + 1])) : stream.AddLayerNorm(delta, [D], p[o], p[o + 1]);
                var (h, n2) = s.AddLayerNorm(Attention(n1, p[o + 2], p[o + 3]), [D], p[o + 4], p[o + 5]);
                (stream, delta) = (h, n2.MatMul(p[o + 6]).Gelu().MatMul(p[o + 7]));
            }
            return stream.AddLayerNorm(delta!, [D], p[17], p[18]).Output;
        }
        Assert.DoesNotThrow(() => GradCheck.Assert(Blocks, [.. inputs], seed, name: "PreNormBlocks"), $"seed={seed}");
    }

    [Test]
    public void Fused_attention_op_gradients_pass_gradcheck_with_masks()
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        using var pad = Tensor.FromArray(new double[] { 0, 0, 0, 1, 0, 0, 1, 1 }, [2, 4]);
        foreach (bool causal in new[] { false, true })
        {
            Tensor[] inputs = [Rand(g, 2, 2, 3, 5), Rand(g, 2, 2, 4, 5), Rand(g, 2, 2, 4, 5)];
            Assert.DoesNotThrow(() => GradCheck.Assert(x => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], pad, causal), inputs, seed, name: "FusedAttention"), $"causal={causal} seed={seed}");
        }
    }

    [Test]
    public void Packed_self_attention_matches_split_heads_and_passes_gradcheck()
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        using var qkv32 = Tensor.Randn([2, 7, 3 * 8], g);
        using var pad = Tensor.FromArray(new float[] { 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0 }, [2, 7]);
        using (var packed = Tensor.PackedSelfAttention(qkv32, 2, pad, causal: true))
        using (var parts = qkv32.Reshape(2, 7, 3, 2, 4).Permute(2, 0, 3, 1, 4))
        using (var split = Tensor.ScaledDotProductAttention(parts.Select(0, 0), parts.Select(0, 1), parts.Select(0, 2), pad, causal: true))
        using (var merged = split.Transpose(1, 2).Reshape(2, 7, 8))
        {
            var a = packed.ToArray<float>(); var b = merged.ToArray<float>();
            for (int i = 0; i < a.Length; i++) Assert.That(a[i], Is.EqualTo(b[i]).Within(1e-5), $"seed={seed}");
        }
        using var pad64 = pad.To(DType.Float64);
        Tensor[] inputs = [Rand(g, 2, 5, 3 * 6)];
        Assert.DoesNotThrow(() => GradCheck.Assert(x => Tensor.PackedSelfAttention(x[0], 3, null, causal: true), inputs, seed, name: "PackedSelfAttention"), $"seed={seed}");
    }

    [Test]
    public void Fused_attention_equals_the_materialised_composite_in_float32()
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        using var q = Tensor.Randn([2, 3, 70, 32], g); using var k = Tensor.Randn([2, 3, 70, 32], g); using var v = Tensor.Randn([2, 3, 70, 32], g);
        using var pad = Tensor.FromArray(Enumerable.Range(0, 140).Select(i => i % 70 > 60 ? 1f : 0f).ToArray(), [2, 70]);
        foreach (bool causal in new[] { false, true })
        {
            using var fused = Tensor.ScaledDotProductAttention(q, k, v, pad, causal);
            var (composite, weights) = Tensor.AttentionWithWeights(q, k, v, pad, causal);
            var a = fused.ToArray<float>(); var b = composite.ToArray<float>();
            for (int i = 0; i < a.Length; i++) Assert.That(a[i], Is.EqualTo(b[i]).Within(1e-5), $"causal={causal} seed={seed}");
            composite.Dispose(); weights.Dispose();
        }
    }

    [Test]
    public void Residual_conv_block_gradients_pass_gradcheck()
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        Tensor[] inputs = [Rand(g, 2, 3, 5, 5), Rand(g, 3, 3, 3, 3), Rand(g, 3), Rand(g, 3), Rand(g, 3, 3, 3, 3), Rand(g, 3), Rand(g, 3)];
        // x + BN(conv(act(BN(conv(x))))), a ResNet basic block. The activation is GELU rather than ReLU: finite
        // differences are meaningless at ReLU's kink, and ReLU's own rule is checked away from it elsewhere.
        Tensor Block(Tensor[] p)
        {
            var h = p[0].Conv2d(p[1], null, 1, 1).BatchNorm2d(null, null, p[2], p[3], training: true).Gelu();
            return p[0] + h.Conv2d(p[4], null, 1, 1).BatchNorm2d(null, null, p[5], p[6], training: true);
        }
        Assert.DoesNotThrow(() => GradCheck.Assert(Block, inputs, seed, name: "ResidualConvBlock"), $"seed={seed}");
    }

    [Test]
    public void Cross_entropy_with_ignore_index_and_label_smoothing_passes_gradcheck()
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        using var targets = Tensor.FromArray(new long[] { 2, -100, 0, 4, 1 });
        Tensor[] inputs = [Rand(g, 5, 5)];
        Assert.DoesNotThrow(() => GradCheck.Assert(x => x[0].CrossEntropy(targets, -100, 0.1), inputs, seed, name: "CrossEntropy"), $"seed={seed}");
    }
}
