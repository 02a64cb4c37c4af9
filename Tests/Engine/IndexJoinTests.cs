using AttnCore.Tests.Reference;
using NUnit.Framework;
using static AttnCore.Tests.Reference.Check;

namespace AttnCore.Tests.Engine;

[TestFixture, Category("Engine")]
public class IndexJoinTests
{
    [Test]
    public void Embedding_picks_rows_for_indices_of_any_shape([Values(DType.Float32, DType.Float64)] DType dtype)
    {
        ulong seed = FreshSeed();
        var gen = new Generator(seed);
        using var weight = Make([11, 6], Layouts.Transposed, gen, dtype);
        using var idx = Tensor.RandInt(0, 11, [3, 4], seed);
        using var e = Tensor.Embedding(idx, weight);
        Assert.That(e.Shape, Is.EqualTo(new[] { 3, 4, 6 }));
        var w = NdArray.From(weight); var ids = idx.ToArray<long>();
        var expected = ids.SelectMany(i => Enumerable.Range(0, 6).Select(j => w.At([(int)i, j]))).ToArray();
        Close(e, new NdArray([3, 4, 6], expected), 0, 0, $"seed={seed}");
        using var bad = Tensor.FromArray(new long[] { 0, 11 });
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.Embedding(bad, weight));
        Assert.That(ex!.Message, Does.Contain("IndexSelect").And.Contain("11"));
    }

    [Test]
    public void IndexSelect_along_each_dim_matches_reference()
    {
        ulong seed = FreshSeed();
        var gen = new Generator(seed);
        using var x = Make([4, 5, 6], Layouts.Strided, gen);
        var r = NdArray.From(x);
        for (int d = 0; d < 3; d++)
        {
            using var idx = Tensor.RandInt(0, x.Size(d), [7], new Generator(seed + (ulong)d));
            using var y = x.IndexSelect(d, idx);
            var ids = idx.ToArray<long>();
            var shape = x.Shape; shape[d] = 7;
            var exp = Enumerable.Range(0, (int)NdArray.Numel(shape)).Select(p =>
            {
                var o = NdArray.Unravel(p, shape); o[d] = (int)ids[o[d]]; return r.At(o);
            }).ToArray();
            Close(y, new NdArray(shape, exp), 0, 0, $"dim {d} seed={seed}");
        }
        using var fidx = Tensor.FromArray(new float[] { 0 });
        Assert.That(Assert.Throws<ArgumentException>(() => x.IndexSelect(0, fidx))!.Message, Does.Contain("int64"));
    }

    [Test]
    public void Gather_matches_torch_semantics_on_each_dim()
    {
        ulong seed = FreshSeed();
        var gen = new Generator(seed);
        using var x = Make([3, 4, 5], Layouts.Transposed, gen);
        var r = NdArray.From(x);
        for (int d = 0; d < 3; d++)
        {
            var ishape = new[] { 2, 3, 4 };
            using var idx = Tensor.RandInt(0, x.Size(d), ishape, new Generator(seed ^ (ulong)(d + 1)));
            using var y = x.Gather(d, idx);
            var ids = idx.ToArray<long>();
            var exp = Enumerable.Range(0, 24).Select(p => { var o = NdArray.Unravel(p, ishape); o[d] = (int)ids[p]; return r.At(o); }).ToArray();
            Close(y, new NdArray(ishape, exp), 0, 0, $"dim {d} seed={seed}");
        }
        using var big = Tensor.Zeros([3, 9, 5], DType.Int64);
        Assert.That(Assert.Throws<ArgumentException>(() => x.Gather(0, big))!.Message, Does.Contain("Gather"));
    }

    [Test]
    public void Cat_and_Stack_join_views_along_any_dim()
    {
        ulong seed = FreshSeed();
        var gen = new Generator(seed);
        using var a = Make([2, 3], Layouts.Transposed, gen);
        using var b = Make([2, 1], Layouts.Strided, gen);
        using var c = Make([2, 0], Layouts.Contiguous, gen);
        using var cat = Tensor.Cat([a, b, c], 1);
        var ra = NdArray.From(a); var rb = NdArray.From(b);
        var exp = new double[] { ra.At([0, 0]), ra.At([0, 1]), ra.At([0, 2]), rb.At([0, 0]), ra.At([1, 0]), ra.At([1, 1]), ra.At([1, 2]), rb.At([1, 0]) };
        Close(cat, new NdArray([2, 4], exp), 0, 0, $"seed={seed}");
        using var st = Tensor.Stack([a, a], 1);
        Assert.That(st.Shape, Is.EqualTo(new[] { 2, 2, 3 }));
        Assert.That(st.ToArray<float>().Take(6), Is.EqualTo(a.ToArray<float>().Take(3).Concat(a.ToArray<float>().Take(3))));
        var ex = Assert.Throws<ArgumentException>(() => Tensor.Cat([a, Tensor.Zeros([3, 3])], 1));
        Assert.That(ex!.Message, Does.Contain("Cat").And.Contain("[2,3]").And.Contain("[3,3]"));
        Assert.Throws<ArgumentException>(() => Tensor.Stack([a, b]));
    }
}
