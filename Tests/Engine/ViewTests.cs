using AttnCore.Tests.Reference;
using NUnit.Framework;
using static AttnCore.Tests.Reference.Check;

namespace AttnCore.Tests.Engine;

[TestFixture, Category("Engine")]
public class ViewTests
{
    static Tensor Iota(params int[] shape) => Tensor.Arange(0, NdArray.Numel(shape)).Reshape(shape);

    [Test]
    public void Views_share_storage_so_writes_through_a_view_are_seen_by_the_base()
    {
        using var x = Iota(3, 4);
        using var col = x.Narrow(1, 2, 1);
        col.Fill_(-1);
        Assert.That(x.ToArray<float>(), Is.EqualTo(new float[] { 0, 1, -1, 3, 4, 5, -1, 7, 8, 9, -1, 11 }));
        using var t = x.T;
        Assert.That(ReferenceEquals(t.Storage, x.Storage), Is.True);
        using var r = x.View(2, 6);
        Assert.That(ReferenceEquals(r.Storage, x.Storage), Is.True);
    }

    // A fill of more than 128K elements is split over the worker pool too: through a strided view it must write the view's
    // elements and nothing else, contiguous it must write every element, on one thread and on three.
    [Test]
    public void Large_fills_split_over_the_pool_write_exactly_the_view([Values(1, 3)] int threads)
    {
        int saved = AttnCore.Kernels.Cpu.WorkerPool.ThreadCount;
        try
        {
            AttnCore.Kernels.Cpu.WorkerPool.ThreadCount = threads;
            const int rows = 700, cols = 600;
            using var x = Tensor.Zeros([rows, cols]);
            using (var t = x.T)
            using (var band = t.Narrow(0, 100, 450)) band.Fill_(2);   // columns 100..549 of x, through the transpose
            var v = x.ToArray<float>();
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < cols; j++)
                    if (v[i * cols + j] != (j >= 100 && j < 550 ? 2f : 0f)) Assert.Fail($"x[{i},{j}] = {v[i * cols + j]} ({threads} threads)");
            // One long strided run (every other element), which the pool splits within the run.
            using var pairs = Tensor.Zeros([150_001, 2]);
            using (var t = pairs.T)
            using (var second = t.Narrow(0, 1, 1)) second.Fill_(3);
            var pv = pairs.ToArray<float>();
            for (int i = 0; i < pv.Length; i++)
                if (pv[i] != (i % 2 == 1 ? 3f : 0f)) Assert.Fail($"pairs[{i / 2},{i % 2}] = {pv[i]} ({threads} threads)");
            using var ones = Tensor.Ones([rows * cols + 5]);
            Assert.That(ones.ToArray<float>(), Is.All.EqualTo(1f));
            using var flags = Tensor.Full([rows, cols], 1, DType.Bool);
            Assert.That(flags.ToArray<bool>(), Is.All.True);
        }
        finally { AttnCore.Kernels.Cpu.WorkerPool.ThreadCount = saved; }
    }

    // Copies, comparisons and mask conversions of more than 128K elements are split over the worker pool (by runs, or
    // within one long run): the values must not depend on the split.
    [Test]
    public void Large_copies_masks_and_conversions_split_over_the_pool_match_the_reference([Values(1, 2)] int threads)
    {
        int saved = AttnCore.Kernels.Cpu.WorkerPool.ThreadCount;
        try
        {
            AttnCore.Kernels.Cpu.WorkerPool.ThreadCount = threads;
            using var x = Iota(64, 48, 50);   // 153,600 elements
            var r = NdArray.From(x);
            using (var p = x.Permute(2, 0, 1))
            using (var c = p.Contiguous()) Close(c, r.Permute([2, 0, 1]), 0, 0);
            using (var n = x.Narrow(1, 5, 35))
            using (var c = n.Contiguous())
            {
                var v = c.ToArray<float>();
                for (int i = 0, k = 0; i < 64; i++) for (int j = 5; j < 40; j++) for (int m = 0; m < 50; m++, k++)
                    if (v[k] != (i * 48 + j) * 50 + m) Assert.Fail($"narrowed copy element ({i}, {j}, {m}) is {v[k]}");
            }
            using var row = Iota(1, 48, 1);
            using (var e = row.Expand(64, 48, 50))
            using (var c = e.Contiguous())
            {
                var v = c.ToArray<float>();
                for (int k = 0; k < v.Length; k++)
                    if (v[k] != k / 50 % 48) Assert.Fail($"expanded copy element {k} is {v[k]}");
            }
            // One long run (a flat tensor): each chunk takes a piece of it.
            using var flat = Tensor.FromArray(Enumerable.Range(0, 300_001).Select(k => (float)(k % 7)).ToArray());
            using (var odd = flat.Slice(0, 1, 300_001, 2))
            using (var c = odd.Contiguous())
            {
                var v = c.ToArray<float>();
                for (int k = 0; k < v.Length; k++)
                    if (v[k] != (2 * k + 1) % 7) Assert.Fail($"strided flat copy element {k} is {v[k]}");
            }
            using var three = Tensor.Full([], 3, DType.Float32);
            using var isThree = flat.Eq(three);
            using var asFloat = isThree.To(DType.Float32);
            var f = asFloat.ToArray<float>();
            for (int k = 0; k < f.Length; k++)
                if (f[k] != (k % 7 == 3 ? 1 : 0)) Assert.Fail($"flat Eq(3) as float, element {k} is {f[k]}");
            // Broadcast comparison into a [64, 48, 50] mask, read back as float64.
            using var ge = x.Ge(row.Mul(2500));
            using var geD = ge.To(DType.Float64);
            var g = geD.ToArray<double>();
            for (int k = 0; k < g.Length; k++)
                if (g[k] != (k >= k / 50 % 48 * 2500 ? 1 : 0)) Assert.Fail($"broadcast Ge as float64, element {k} is {g[k]}");
        }
        finally { AttnCore.Kernels.Cpu.WorkerPool.ThreadCount = saved; }
    }

    [Test]
    public void Transpose_Permute_Slice_Narrow_Select_match_reference()
    {
        using var x = Iota(2, 3, 4);
        var r = NdArray.From(x);
        using (var p = x.Permute(2, 0, 1)) Close(p, r.Permute([2, 0, 1]), 0, 0);
        using (var t = x.Transpose(0, 2)) Close(t, r.Permute([2, 1, 0]), 0, 0);
        using (var s = x.Slice(2, 1, 4, 2)) Assert.That(s.ToArray<float>(), Is.EqualTo(new float[] { 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23 }));
        using (var s = x.Slice(1, -2, 100)) Assert.That(s.Shape, Is.EqualTo(new[] { 2, 2, 4 }));
        using (var s = x.Slice(1, 2, 1)) Assert.That(s.Shape, Is.EqualTo(new[] { 2, 0, 4 }));
        using (var n = x.Narrow(0, 1, 1)) Assert.That(n.ToArray<float>(), Is.EqualTo(Enumerable.Range(12, 12).Select(v => (float)v)));
        using (var sel = x.Select(1, -1)) Assert.That(sel.ToArray<float>(), Is.EqualTo(new float[] { 8, 9, 10, 11, 20, 21, 22, 23 }));
        using (var row = x[1][2]) Assert.That(row.ToArray<float>(), Is.EqualTo(new float[] { 20, 21, 22, 23 }));
    }

    [Test]
    public void Reshape_is_a_view_when_strides_allow_and_a_copy_otherwise()
    {
        using var x = Iota(4, 6);
        using var t = x.T;                       // [6,4], not contiguous
        Assert.Throws<ArgumentException>(() => t.View(24));
        using var flat = t.Reshape(-1);          // copy
        Assert.That(ReferenceEquals(flat.Storage, x.Storage), Is.False);
        Assert.That(flat.ToArray<float>(), Is.EqualTo(NdArray.From(x).Permute([1, 0]).Data.Select(v => (float)v)));
        using var sl = x.Narrow(1, 0, 3);       // [4,3] with row stride 6
        using var v = sl.View(2, 2, 3);         // splitting dim 0 is still a view
        Assert.That(ReferenceEquals(v.Storage, x.Storage), Is.True);
        Assert.That(v.ToArray<float>(), Is.EqualTo(sl.ToArray<float>()));
        using var u = t.View(6, 1, 4);          // inserting a size-1 dim is always a view
        Assert.That(u.ToArray<float>(), Is.EqualTo(t.ToArray<float>()));
        using var f = Iota(2, 3, 4).Flatten(1);
        Assert.That(f.Shape, Is.EqualTo(new[] { 2, 12 }));
        var ex = Assert.Throws<ArgumentException>(() => x.Reshape(5, 5));
        Assert.That(ex!.Message, Does.Contain("Reshape").And.Contain("[4,6]").And.Contain("[5,5]"));
        Assert.Throws<ArgumentException>(() => x.Reshape(-1, -1));
    }

    [Test]
    public void Expand_Squeeze_Unsqueeze_and_Contiguous()
    {
        using var x = Tensor.FromArray(new float[] { 1, 2, 3 }, [3, 1]);
        using var e = x.Expand(2, 3, 4);
        Assert.That(e.Shape, Is.EqualTo(new[] { 2, 3, 4 }));
        Assert.That(e.Strides, Is.EqualTo(new long[] { 0, 1, 0 }));
        using var c = e.Contiguous();
        Assert.That(c.IsContiguous, Is.True);
        Assert.That(c.ToArray<float>().Take(8), Is.EqualTo(new float[] { 1, 1, 1, 1, 2, 2, 2, 2 }));
        // Every element: c[i, j, k] = x[j] (runs of 4 along the stride-0 last dim are filled from one value).
        Assert.That(c.ToArray<float>(), Is.EqualTo(Enumerable.Range(0, 24).Select(i => (float)(i / 4 % 3 + 1)).ToArray()));
        Assert.That(Assert.Throws<ArgumentException>(() => x.Expand(2, 2))!.Message, Does.Contain("Expand"));
        using var s = e.Slice(0, 0, 1).Squeeze();
        Assert.That(s.Shape, Is.EqualTo(new[] { 3, 4 }));
        using var s0 = x.Squeeze(0);
        Assert.That(s0.Shape, Is.EqualTo(new[] { 3, 1 }));
        using var u = x.Unsqueeze(0).Unsqueeze(-1);
        Assert.That(u.Shape, Is.EqualTo(new[] { 1, 3, 1, 1 }));
        using var b = x.BroadcastTo(5, 3, 2);
        Assert.That(b.Shape, Is.EqualTo(new[] { 5, 3, 2 }));
    }

    [Test]
    public void Split_and_Chunk_return_views_covering_the_dim()
    {
        using var x = Iota(7, 2);
        var parts = x.Split(3);
        Assert.That(parts.Select(p => p.Size(0)), Is.EqualTo(new[] { 3, 3, 1 }));
        Assert.That(parts[2].ToArray<float>(), Is.EqualTo(new float[] { 12, 13 }));
        var sized = x.Split([2, 5]);
        Assert.That(sized[1].Size(0), Is.EqualTo(5));
        var chunks = x.Chunk(2);
        Assert.That(chunks.Select(p => p.Size(0)), Is.EqualTo(new[] { 4, 3 }));
        var cols = x.Chunk(2, 1);
        Assert.That(cols[1].ToArray<float>(), Is.EqualTo(new float[] { 1, 3, 5, 7, 9, 11, 13 }));
        Assert.Throws<ArgumentException>(() => x.Split([2, 2]));
        foreach (var p in parts.Concat(sized).Concat(chunks).Concat(cols)) p.Dispose();
    }

    [Test]
    public void View_errors_name_the_op()
    {
        using var x = Iota(2, 3);
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => x.Transpose(0, 2))!.Message, Does.Contain("Transpose"));
        Assert.That(Assert.Throws<ArgumentException>(() => x.Permute(0, 0))!.Message, Does.Contain("Permute"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => x.Narrow(1, 2, 2))!.Message, Does.Contain("Narrow"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => x.Select(0, 2))!.Message, Does.Contain("Select"));
        Assert.That(Assert.Throws<ArgumentException>(() => x.Slice(0, 0, 1, 0))!.Message, Does.Contain("Slice"));
    }
}
