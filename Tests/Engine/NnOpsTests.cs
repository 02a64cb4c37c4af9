using AttnCore.Tests.Reference;
using NUnit.Framework;
using static AttnCore.Tests.Reference.Check;

namespace AttnCore.Tests.Engine;

[TestFixture, Category("Engine")]
public class NnOpsTests
{
    static readonly int[][] Shapes = [[1], [5], [16], [17], [3, 33], [2, 3, 4], [4, 1, 7], [0, 5], [64, 130]];

    [Test]
    public void Softmax_and_LogSoftmax_along_any_dim_match_reference([Values(DType.Float32, DType.Float64)] DType dtype)
    {
        ulong seed = FreshSeed();
        var gen = new Generator(seed);
        foreach (var shape in Shapes)
            foreach (var layout in Enum.GetValues<Layouts>())
                for (int dim = -1; dim < shape.Length - 1; dim++)
                {
                    using var x0 = Make(shape, layout, gen, dtype);
                    using var x = x0 * 3.0;
                    var r = NdArray.From(x);
                    int d = dim < 0 ? shape.Length - 1 : dim;
                    var perm = Enumerable.Range(0, shape.Length).Where(i => i != d).Append(d).ToArray();
                    var inv = new int[perm.Length];
                    for (int i = 0; i < perm.Length; i++) inv[perm[i]] = i;
                    var sm = r.Permute(perm).Rows(NdArray.Softmax).Permute(inv);
                    var lsm = r.Permute(perm).Rows(NdArray.LogSoftmax).Permute(inv);
                    var (rtol, atol) = Tol(dtype);
                    string ctx = $"{Shape.Format(shape)} dim={dim} {layout} {dtype} seed={seed}";
                    using (var y = x.Softmax(dim)) Close(y, sm, rtol * 4, atol * 4, "Softmax " + ctx);
                    using (var y = x.LogSoftmax(dim)) Close(y, lsm, rtol * 4, atol * 4, "LogSoftmax " + ctx);
                }
    }

    [Test]
    public void Softmax_is_numerically_safe_for_large_logits()
    {
        using var x = Tensor.FromArray(new float[] { 1000, 1001, -1000 });
        var y = x.Softmax().ToArray<float>();
        Assert.That(y[0], Is.EqualTo(1 / (1 + Math.E)).Within(1e-6));
        Assert.That(y[1], Is.EqualTo(Math.E / (1 + Math.E)).Within(1e-6));
        Assert.That(y[2], Is.EqualTo(0f));
        var ly = x.LogSoftmax().ToArray<float>();
        Assert.That(ly[2], Is.EqualTo(-2001 + -Math.Log(1 + Math.Exp(-1))).Within(1e-3));
    }

    [Test]
    public void LayerNorm_with_and_without_affine_matches_reference([Values(DType.Float32, DType.Float64)] DType dtype)
    {
        ulong seed = FreshSeed();
        var gen = new Generator(seed);
        foreach (var (shape, nd) in new[] { (new[] { 4, 7 }, 1), (new[] { 2, 3, 16 }, 1), (new[] { 2, 3, 5 }, 2), (new[] { 1, 1 }, 1), (new[] { 3, 130 }, 1), (new[] { 0, 8 }, 1) })
            foreach (var layout in Enum.GetValues<Layouts>())
                foreach (bool affine in new[] { false, true })
                {
                    using var x = Make(shape, layout, gen, dtype);
                    var norm = shape[^nd..];
                    using var w = affine ? Make(norm, Layouts.Contiguous, gen, dtype) : null;
                    using var b = affine ? Make(norm, Layouts.Strided, gen, dtype) : null;
                    using var y = x.LayerNorm(norm, w, b, 1e-5);
                    int cols = (int)NdArray.Numel(norm);
                    var rx = NdArray.From(x);
                    var rw = w is null ? null : NdArray.From(w);
                    var rb = b is null ? null : NdArray.From(b);
                    var flat = new NdArray([(int)(rx.Data.Length / Math.Max(cols, 1)), cols], rx.Data).Rows(row =>
                    {
                        double mu = row.Average(), v = row.Sum(q => (q - mu) * (q - mu)) / row.Length;
                        return row.Select((q, j) => (q - mu) / Math.Sqrt(v + 1e-5) * (rw?.Data[j] ?? 1) + (rb?.Data[j] ?? 0)).ToArray();
                    });
                    var (rtol, atol) = Tol(dtype);
                    Close(y, new NdArray(shape, flat.Data), rtol * 20, atol * 20, $"{Shape.Format(shape)} nd={nd} affine={affine} {layout} {dtype} seed={seed}");
                }
    }

    [Test]
    public void LayerNorm_rejects_mismatched_normalized_shape_and_weight()
    {
        using var x = Tensor.Zeros([2, 3]);
        Assert.That(Assert.Throws<ArgumentException>(() => x.LayerNorm([4]))!.Message, Does.Contain("LayerNorm").And.Contain("[4]").And.Contain("[2,3]"));
        using var w = Tensor.Ones([4]);
        Assert.That(Assert.Throws<ArgumentException>(() => x.LayerNorm([3], w))!.Message, Does.Contain("weight").And.Contain("[4]"));
    }
}
