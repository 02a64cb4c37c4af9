using System.Text.Json;
using NUnit.Framework;

namespace AttnCore.Tests.Engine;

/// <summary>
/// Tensor.ScaledDotProductAttention with general masks, grouped-query attention and a custom scale: against
/// PyTorch (Tests/Fixtures/make_attention_masks_gqa.py), against the composite matmul-softmax-matmul, by
/// finite differences, and for the conventions (fully hidden rows, no expanded masks, errors).
/// </summary>
[TestFixture, Category("Engine")]
public class AttentionMaskGqaTests
{
    static Tensor Values(int k, int[] shape, DType dtype)
    {
        int n = shape.Aggregate(1, (a, b) => a * b);
        var v = Enumerable.Range(0, n).Select(i => (double)(float)Math.Sin(0.37 * i + 1.3 * k)).ToArray();
        using var t = Tensor.FromArray(v, shape);
        return t.To(dtype);
    }

    static double[] Doubles(JsonElement e) => e.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.Null ? double.NegativeInfinity : x.GetDouble()).ToArray();
    static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    static void Near(Tensor got, double[] want, double tol, string what)
    {
        var a = got.To(DType.Float64).ToArray<double>();
        Assert.That(a, Has.Length.EqualTo(want.Length), what);
        for (int i = 0; i < a.Length; i++)
            if (!(Math.Abs(a[i] - want[i]) <= tol * (1 + Math.Abs(want[i])))) Assert.Fail($"{what}: element {i} is {a[i]:R}, PyTorch {want[i]:R}");
    }

    [TestCase("additive_mask", DType.Float32), TestCase("boolean_mask", DType.Float32), TestCase("gqa_causal", DType.Float32)]
    [TestCase("additive_mask", DType.Float64), TestCase("boolean_mask", DType.Float64), TestCase("gqa_causal", DType.Float64)]
    public void Outputs_and_gradients_match_pytorch(string name, DType dtype)
    {
        var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "attention_masks_gqa.json")));
        var c = json.RootElement.GetProperty("cases").GetProperty(name);
        int b = c.GetProperty("b").GetInt32(), h = c.GetProperty("h").GetInt32(), hkv = c.GetProperty("hkv").GetInt32();
        int lq = c.GetProperty("lq").GetInt32(), lk = c.GetProperty("lk").GetInt32(), d = c.GetProperty("d").GetInt32();
        using var q = Values(1, [b, h, lq, d], dtype).RequiresGrad_();
        using var k = Values(2, [b, hkv, lk, d], dtype).RequiresGrad_();
        using var v = Values(3, [b, hkv, lk, d], dtype).RequiresGrad_();
        using var w = Values(4, [b, h, lq, d], dtype);
        using var scope = new TensorScope();
        Tensor o;
        if (name == "gqa_causal")
        {
            // The script's mask is causal plus the padding of batch 1's last key: AttnCore takes both as options.
            var pad = Tensor.Zeros([b, lk], dtype);
            using (var last = pad.Narrow(0, 1, 1).Narrow(1, lk - 1, 1)) last.Fill_(1);
            o = Tensor.ScaledDotProductAttention(q, k, v, pad, causal: true);
        }
        else
        {
            var mask = Tensor.FromArray(Doubles(c.GetProperty("mask")), Ints(c.GetProperty("mask_shape"))).To(dtype);
            // The boolean case goes in as a real bool mask (true = takes part), as PyTorch's attn_mask.
            if (name == "boolean_mask") mask = mask.Eq(0);
            o = Tensor.ScaledDotProductAttention(q, k, v, scale: c.GetProperty("scale").GetDouble(), mask: mask);
        }
        Assert.That(o.GradFn?.Kind, Is.EqualTo(OpKind.Attention), "the fused op");
        (o * w).Sum().Backward();
        double tol = dtype == DType.Float32 ? 2e-5 : 1e-12;
        Near(o, Doubles(c.GetProperty("o")), tol, $"O {name} {dtype.Name()}");
        Near(q.Grad!, Doubles(c.GetProperty("dq")), 5 * tol, $"dQ {name} {dtype.Name()}");
        Near(k.Grad!, Doubles(c.GetProperty("dk")), 5 * tol, $"dK {name} {dtype.Name()}");
        Near(v.Grad!, Doubles(c.GetProperty("dv")), 5 * tol, $"dV {name} {dtype.Name()}");
    }

    static Tensor Rand(Generator g, params int[] shape) => (Tensor.Randn(shape, g, DType.Float64) * 0.5).RequiresGrad_();

    [Test]
    public void Grouped_query_attention_with_a_mask_passes_gradcheck()
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        // [Lq, Lk] biases with a -inf entry, 4 query heads over 2 key/value heads, then multi-query (1 head), causal.
        using var bias = Tensor.FromArray(new double[] { 0.3, double.NegativeInfinity, -0.2, 0.1, 0, 0.5, -1, 0.2, 0.4, 0, 0, -0.3 }, [3, 4]);
        foreach (int hkv in new[] { 2, 1 })
        {
            Tensor[] inputs = [Rand(g, 2, 4, 3, 5), Rand(g, 2, hkv, 4, 5), Rand(g, 2, hkv, 4, 5)];
            Assert.DoesNotThrow(() => GradCheck.Assert(x => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], causal: true, scale: 0.7, mask: bias), inputs, seed, name: "GqaMaskedAttention"),
                $"hkv={hkv} seed={seed}");
            foreach (var t in inputs) t.Dispose();
        }
    }

    public static readonly int[][] MaskShapes = [[7, 9], [2, 1, 7, 9], [2, 1, 1, 9], [1, 4, 7, 1], [2, 4, 7, 9]];

    [TestCaseSource(nameof(MaskShapes))]
    public void Every_broadcast_mask_shape_matches_the_composite_path_in_value_and_gradient_without_being_expanded(int[] maskShape)
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        using var q = Tensor.Randn([2, 4, 7, 12], g).RequiresGrad_();
        using var k = Tensor.Randn([2, 2, 9, 12], g).RequiresGrad_();
        using var v = Tensor.Randn([2, 2, 9, 12], g).RequiresGrad_();
        using var w = Tensor.Randn([2, 4, 7, 12], g);
        int n = maskShape.Aggregate(1, (a, b) => a * b);
        using var mask = Tensor.FromArray(Enumerable.Range(0, n).Select(i => i % 7 == 3 ? float.NegativeInfinity : (float)g.NextNormal()).ToArray(), maskShape);
        Tensor[] Run(bool fused)
        {
            q.Grad = null; k.Grad = null; v.Grad = null;
            using var scope = new TensorScope();
            var o = fused ? Tensor.ScaledDotProductAttention(q, k, v, causal: true, mask: mask)
                          : Tensor.AttentionWithWeights(q, k, v, causal: true, mask: mask).Output;
            if (fused)
            {
                Assert.That(o.GradFn!.Kind, Is.EqualTo(OpKind.Attention));
                // The kernel reads the caller's mask through stride-0 broadcast dims: nothing of [B, H, Lq, Lk] is allocated.
                var saved = o.GradFn.Saved[5];
                Assert.That(saved.Storage.Length, Is.EqualTo(n), "the saved mask is the caller's elements, not an expansion");
                for (int dim = 0; dim < 4; dim++)
                {
                    int at = dim - (4 - maskShape.Length);
                    if (at < 0 || maskShape[at] == 1) Assert.That(saved.Layout.Strides[dim], Is.EqualTo(0), $"dim {dim} broadcast by stride 0");
                }
            }
            (o * w).Sum().Backward();
            var r = new[] { o.Detach().Clone(), q.Grad!, k.Grad!, v.Grad! };
            scope.Keep(r[0]);
            return r;
        }
        var fusedResults = Run(true);
        var composite = Run(false);
        string[] names = ["O", "dQ", "dK", "dV"];
        for (int i = 0; i < 4; i++)
        {
            var a = fusedResults[i].ToArray<float>(); var b = composite[i].ToArray<float>();
            Assert.That(a, Has.None.NaN, $"{names[i]} fused");
            for (int e = 0; e < a.Length; e++) Assert.That(a[e], Is.EqualTo(b[e]).Within(1e-4 * (1 + Math.Abs(b[e]))), $"{names[i]}[{e}] mask {Shape.Format(maskShape)} seed={seed}");
        }
        foreach (var t in fusedResults.Concat(composite)) t.Dispose();
    }

    [TestCase(DType.Float32), TestCase(DType.Float64)]
    public void A_fully_masked_query_gets_zero_output_and_zero_gradient(DType dtype)
    {
        var g = new Generator(11);
        using var q = Tensor.Randn([1, 2, 3, 4], g, dtype).RequiresGrad_();
        using var k = Tensor.Randn([1, 1, 5, 4], g, dtype).RequiresGrad_();
        using var v = Tensor.Randn([1, 1, 5, 4], g, dtype).RequiresGrad_();
        var ninf = double.NegativeInfinity;
        // Query 1 sees no key at all.
        using var maskValues = Tensor.FromArray(new[] { 0, ninf, 0, 0, ninf, ninf, ninf, ninf, ninf, ninf, 0.5, 0, 0, ninf, 0 }, [3, 5]);
        using var mask = maskValues.To(dtype);
        using var scope = new TensorScope();
        var o = Tensor.ScaledDotProductAttention(q, k, v, mask: mask);
        o.Sum().Backward();
        var oa = o.To(DType.Float64).ToArray<double>();
        var dq = q.Grad!.To(DType.Float64).ToArray<double>();
        for (int h = 0; h < 2; h++)
            for (int c = 0; c < 4; c++)
            {
                Assert.That(oa[(h * 3 + 1) * 4 + c], Is.EqualTo(0.0), $"O of the hidden query, head {h}");
                Assert.That(dq[(h * 3 + 1) * 4 + c], Is.EqualTo(0.0), $"dQ of the hidden query, head {h}");
            }
        Assert.That(oa.Concat(dq).Concat(k.Grad!.To(DType.Float64).ToArray<double>()).Concat(v.Grad!.To(DType.Float64).ToArray<double>()), Has.None.NaN);
    }

    [Test]
    public void Packed_grouped_query_self_attention_matches_split_heads_and_passes_gradcheck()
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        const int b = 2, t = 6, h = 4, hkv = 2, dh = 5;
        using var qkv = Tensor.Randn([b, t, (h + 2 * hkv) * dh], g);
        using var mask = Tensor.FromArray(Enumerable.Range(0, t * t).Select(i => i % 5 == 2 ? float.NegativeInfinity : (float)Math.Cos(i)).ToArray(), [t, t]);
        using (var scope = new TensorScope())
        {
            var packed = Tensor.PackedSelfAttention(qkv, h, causal: true, mask: mask, kvHeads: hkv);
            Assert.That(packed.GradFn, Is.Null, "no input requires gradients: nothing recorded");
            Assert.That(packed.Shape, Is.EqualTo(new[] { b, t, h * dh }));
            Tensor Heads(int first, int count) => qkv.Narrow(2, first * dh, count * dh).Reshape(b, t, count, dh).Transpose(1, 2);
            var split = Tensor.ScaledDotProductAttention(Heads(0, h), Heads(h, hkv), Heads(h + hkv, hkv), causal: true, mask: mask).Transpose(1, 2).Reshape(b, t, h * dh);
            var a = packed.ToArray<float>(); var e = split.ToArray<float>();
            for (int i = 0; i < a.Length; i++) Assert.That(a[i], Is.EqualTo(e[i]).Within(1e-5), $"seed={seed}");
        }
        using var mask64 = mask.To(DType.Float64);
        Tensor[] inputs = [Rand(g, 2, 4, (3 + 2 * 1) * 3)];
        Assert.DoesNotThrow(() => GradCheck.Assert(x => Tensor.PackedSelfAttention(x[0], 3, causal: true, mask: mask64.Narrow(0, 0, 4).Narrow(1, 0, 4), kvHeads: 1), inputs, seed, name: "PackedGqa"), $"seed={seed}");
        inputs[0].Dispose();
    }

    [Test]
    public void Heads_above_the_backend_limit_take_the_composite_path_with_gqa_and_a_mask()
    {
        var g = new Generator(4);
        int d = Device.Cpu.Backend.AttentionMaxDim + 1;
        using var q = Tensor.Randn([1, 2, 3, d], g, DType.Float64).RequiresGrad_();
        using var k = Tensor.Randn([1, 1, 4, d], g, DType.Float64);
        using var v = Tensor.Randn([1, 1, 4, d], g, DType.Float64);
        using var mask = Tensor.FromArray(new double[] { 0, double.NegativeInfinity, 0.2, 0 }, [1, 4]);
        using var o = Tensor.ScaledDotProductAttention(q, k, v, scale: 0.01, mask: mask);
        Assert.That(o.GradFn?.Kind, Is.Not.EqualTo(OpKind.Attention), "composite ops above the fused limit");
        // Float64 softmax rows by hand (the reference kernel stops at the fused limit); both query heads read K/V head 0.
        var want = new double[2 * 3 * d];
        var maskData = mask.ToArray<double>();
        var qa = q.ToArray<double>(); var ka = k.ToArray<double>(); var va = v.ToArray<double>();
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < 3; i++)
            {
                var sc = new double[4];
                for (int j = 0; j < 4; j++)
                {
                    double dot = 0;
                    for (int c = 0; c < d; c++) dot += qa[(h * 3 + i) * d + c] * ka[j * d + c];
                    sc[j] = dot * 0.01 + maskData[j];
                }
                double max = sc.Max(), sum = sc.Sum(x => Math.Exp(x - max));
                for (int c = 0; c < d; c++) want[(h * 3 + i) * d + c] = Enumerable.Range(0, 4).Sum(j => Math.Exp(sc[j] - max) / sum * va[j * d + c]);
            }
        Assert.That(o.ToArray<double>(), Is.EqualTo(want).Within(1e-12));
    }

    [Test]
    public void Bad_masks_and_head_counts_are_reported_with_the_shapes()
    {
        using var q = Tensor.Zeros([2, 4, 3, 8]); using var k = Tensor.Zeros([2, 3, 5, 8]); using var k2 = Tensor.Zeros([2, 2, 5, 8]);
        var ex = Assert.Throws<ArgumentException>(() => Tensor.ScaledDotProductAttention(q, k, k));
        Assert.That(ex!.Message, Does.Contain("4 heads, not a multiple of the 3 key/value heads").And.Contain("[2,4,3,8]"));

        using var wrong = Tensor.Zeros([3, 4]);
        ex = Assert.Throws<ArgumentException>(() => Tensor.ScaledDotProductAttention(q, k2, k2, mask: wrong));
        Assert.That(ex!.Message, Does.Contain("mask").And.Contain("[3,4]").And.Contain("[2,4,3,5]"));

        using var rank5 = Tensor.Zeros([1, 2, 4, 3, 5]);
        ex = Assert.Throws<ArgumentException>(() => Tensor.ScaledDotProductAttention(q, k2, k2, mask: rank5));
        Assert.That(ex!.Message, Does.Contain("does not broadcast"));

        using var ints = Tensor.Zeros([3, 5], DType.Int64);
        ex = Assert.Throws<ArgumentException>(() => Tensor.ScaledDotProductAttention(q, k2, k2, mask: ints));
        Assert.That(ex!.Message, Does.Contain("additive float mask").And.Contain("int64"));

        // vision-models: a learned bias is taken (OpKind.AttentionBias), but not with dropout nor by the packed kernel
        using var learned = Tensor.Zeros([3, 5]).RequiresGrad_();
        ex = Assert.Throws<ArgumentException>(() => Tensor.ScaledDotProductAttention(q, k2, k2, mask: learned, dropout: 0.1));
        Assert.That(ex!.Message, Does.Contain("learned score bias").And.Contain("[3,5]").And.Contain("dropout"));
        using var learnedPacked = Tensor.Zeros([3, 3]).RequiresGrad_();
        using var qkv12 = Tensor.Zeros([2, 3, 12]);
        ex = Assert.Throws<ArgumentException>(() => Tensor.PackedSelfAttention(qkv12, 1, mask: learnedPacked));
        Assert.That(ex!.Message, Does.Contain("PackedSelfAttention").And.Contain("requires gradients"));

        using var qkv = Tensor.Zeros([2, 3, 35]);
        ex = Assert.Throws<ArgumentException>(() => Tensor.PackedSelfAttention(qkv, 4, kvHeads: 3));
        Assert.That(ex!.Message, Does.Contain("PackedSelfAttention").And.Contain("H = 4 a multiple of Hkv = 3"));
    }
}
