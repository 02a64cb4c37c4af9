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
