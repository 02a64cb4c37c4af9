using NUnit.Framework;

namespace AttnCore.Tests.Engine;

/// <summary>
/// Tensor.CachedSelfAttention, the decoding step of a key/value-cached self-attention: several steps of different
/// lengths (a prefill, then single tokens) against a float64 attention written here over every key and value seen so
/// far, the cache contents themselves, grouped-query heads, qkv as a view inside a wider tensor, heads wider than
/// the fused kernel takes, and the refusals.
/// </summary>
[TestFixture, Category("Engine")]
public class CachedAttentionTests
{
    // qkv rows of one step: [B, T, (H + 2·Hkv)·Dh] values, float32 and kept for the reference.
    static float[] Rand(Generator g, long n) { var x = new float[n]; for (long i = 0; i < n; i++) x[i] = (float)g.NextNormal(); return x; }

    /// <summary>Runs the steps through the cache and checks each output and, at the end, the cache against float64.</summary>
    static void RunSteps(int b, int heads, int kvHeads, int dh, int max, int[] steps, Device device, int extraColumns = 0)
    {
        var g = new Generator(TestContext.CurrentContext.Random.NextULong());
        int width = (heads + 2 * kvHeads) * dh, group = heads / kvHeads;
        using var keys = Tensor.Zeros([b, kvHeads, max, dh], DType.Float32, device);
        using var values = Tensor.Zeros([b, kvHeads, max, dh], DType.Float32, device);
        // Every key and value so far, per (batch, kv head, position), as float64.
        var seenK = new List<double[]>[b, kvHeads];
        var seenV = new List<double[]>[b, kvHeads];
        for (int i = 0; i < b; i++) for (int h = 0; h < kvHeads; h++) { seenK[i, h] = []; seenV[i, h] = []; }
        int cached = 0;
        using var noGrad = new NoGrad();
        foreach (int t in steps)
        {
            var data = Rand(g, (long)b * t * (width + extraColumns));
            using var wide = Tensor.FromArray(data, [b, t, width + extraColumns], device);
            using var qkv = wide.Narrow(2, extraColumns, width);   // a view at an offset with row stride > width
            using var o = Tensor.CachedSelfAttention(qkv, heads, keys, values, cached, kvHeads);
            Assert.That(o.Shape, Is.EqualTo(new[] { b, t, heads * dh }));
            double At(int bi, int ti, int col) => data[((long)bi * t + ti) * (width + extraColumns) + extraColumns + col];
            for (int bi = 0; bi < b; bi++)
                for (int ti = 0; ti < t; ti++)
                    for (int hk = 0; hk < kvHeads; hk++)
                    {
                        seenK[bi, hk].Add(Enumerable.Range(0, dh).Select(d => At(bi, ti, (heads + hk) * dh + d)).ToArray());
                        seenV[bi, hk].Add(Enumerable.Range(0, dh).Select(d => At(bi, ti, (heads + kvHeads + hk) * dh + d)).ToArray());
                    }
            var actual = o.ToArray<float>();
            for (int bi = 0; bi < b; bi++)
                for (int h = 0; h < heads; h++)
                    for (int ti = 0; ti < t; ti++)
                    {
                        int visible = cached + ti + 1, hk = h / group;
                        var q = Enumerable.Range(0, dh).Select(d => At(bi, ti, h * dh + d)).ToArray();
                        var scores = Enumerable.Range(0, visible).Select(j => q.Zip(seenK[bi, hk][j], (x, y) => x * y).Sum() / Math.Sqrt(dh)).ToArray();
                        double top = scores.Max();
                        var p = scores.Select(s => Math.Exp(s - top)).ToArray();
                        double sum = p.Sum();
                        for (int d = 0; d < dh; d++)
                        {
                            double e = 0;
                            for (int j = 0; j < visible; j++) e += p[j] / sum * seenV[bi, hk][j][d];
                            Assert.That(actual[((long)bi * t + ti) * heads * dh + h * dh + d], Is.EqualTo(e).Within(2e-5),
                                $"step at {cached}: out[b={bi}, t={ti}, h={h}, d={d}]");
                        }
                    }
            cached += t;
        }
        var k = keys.ToArray<float>(); var v = values.ToArray<float>();
        for (int bi = 0; bi < b; bi++)
            for (int hk = 0; hk < kvHeads; hk++)
                for (int j = 0; j < max; j++)
                    for (int d = 0; d < dh; d++)
                    {
                        long at = (((long)bi * kvHeads + hk) * max + j) * dh + d;
                        Assert.That(k[at], Is.EqualTo(j < cached ? seenK[bi, hk][j][d] : 0), $"key cache [{bi},{hk},{j},{d}]");
                        Assert.That(v[at], Is.EqualTo(j < cached ? seenV[bi, hk][j][d] : 0), $"value cache [{bi},{hk},{j},{d}]");
                    }
    }

    /// <summary>The shared check, on the device a caller passes (the Gpu fixture reruns it on ILGPU devices).</summary>
    internal static void PrefillThenSingleTokens(Device device) => RunSteps(2, 4, 2, 8, 10, [3, 1, 2, 1], device, extraColumns: 5);

    [Test]
    public void Prefill_then_single_tokens_match_float64_with_grouped_query_heads() => PrefillThenSingleTokens(Device.Cpu);

    [Test]
    public void Multi_head_single_batch_fills_the_cache_to_capacity() => RunSteps(1, 3, 3, 16, 6, [1, 1, 3, 1], Device.Cpu);

    [Test]
    public void Heads_wider_than_the_fused_kernel_take_the_composite_path() => RunSteps(1, 1, 1, AttnCore.Kernels.AttentionShape.MaxDim + 8, 4, [2, 1], Device.Cpu);

    [Test]
    public void Refuses_overflow_wrong_caches_and_gradients_naming_the_shapes()
    {
        using var keys = Tensor.Zeros([1, 2, 4, 8]);
        using var values = Tensor.Zeros([1, 2, 4, 8]);
        using var qkv = Tensor.Zeros([1, 3, 48]);
        var full = Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.CachedSelfAttention(qkv, 2, keys, values, 2))!;
        Assert.That(full.Message, Does.Contain("CachedSelfAttention").And.Contain("capacity 4").And.Contain("[1,3,48]"));
        using var threeHeads = Tensor.Zeros([1, 3, 4, 8]);
        var wrong = Assert.Throws<ArgumentException>(() => Tensor.CachedSelfAttention(qkv, 2, threeHeads, values, 0))!;
        Assert.That(wrong.Message, Does.Contain("CachedSelfAttention").And.Contain("[1, 2, Max, 8]"));
        var uneven = Assert.Throws<ArgumentException>(() => Tensor.CachedSelfAttention(qkv, 5, keys, values, 0))!;
        Assert.That(uneven.Message, Does.Contain("H = 5"));
        using var learned = Tensor.Zeros([1, 1, 48]).RequiresGrad_();
        var grad = Assert.Throws<ArgumentException>(() => Tensor.CachedSelfAttention(learned, 2, keys, values, 0))!;
        Assert.That(grad.Message, Does.Contain("requires gradients"));
    }
}
