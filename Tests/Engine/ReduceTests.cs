using AttnCore.Tests.Reference;
using NUnit.Framework;
using static AttnCore.Tests.Reference.Check;

namespace AttnCore.Tests.Engine;

[TestFixture, Category("Engine")]
public class ReduceTests
{
    static readonly (int[] Shape, int[] Axes)[] Cases =
    [
        ([7], [0]), ([3, 5], [1]), ([3, 5], [0]), ([3, 5], []), ([2, 3, 4], [0, 2]), ([2, 3, 4], [1]), ([2, 3, 4], [-1, 0]),
        ([4, 1, 33], [2]), ([5, 17], [0, 1]), ([0, 4], [0]), ([3, 0], [1]), ([], []), ([2, 1, 3, 2], [1, 3]),
    ];

    // Reductions over a contiguous block of 128K or more elements in all split their outputs over the worker pool (SE's
    // squeeze, CBAM's pools): the values must not depend on the split, including one output (a chunk gets nothing) and
    // outputs read through a permuted (non-contiguous) kept layout.
    [Test]
    public void Large_reductions_split_over_the_pool_match_reference([Values(1, 2)] int threads)
    {
        int saved = AttnCore.Kernels.Cpu.WorkerPool.ThreadCount;
        try
        {
            AttnCore.Kernels.Cpu.WorkerPool.ThreadCount = threads;
            var gen = new Generator(5);
            using var x = Tensor.Randn([64, 48, 7, 9], gen);
            var r = NdArray.From(x);
            foreach (var axes in new[] { new[] { 2, 3 }, new[] { 3 }, new[] { 0, 1, 2, 3 } })
            {
                string ctx = $"axes [{string.Join(",", axes)}] on {threads} threads";
                using (var s = x.Sum(axes)) Close(s, r.Reduce(axes, false, v => v.Sum()), 1e-5, 1e-3, "Sum " + ctx);
                using (var m = x.Max(axes)) Close(m, r.Reduce(axes, false, v => v.Max()), 0, 0, "Max " + ctx);
                using (var m = x.Min(axes)) Close(m, r.Reduce(axes, false, v => v.Min()), 0, 0, "Min " + ctx);
            }
            using var p = x.Permute(1, 0, 2, 3);   // kept dims strided, reduced block still contiguous
            using (var m = p.Max([2, 3])) Close(m, r.Permute([1, 0, 2, 3]).Reduce([2, 3], false, v => v.Max()), 0, 0, $"Max of a permuted view on {threads} threads");
        }
        finally { AttnCore.Kernels.Cpu.WorkerPool.ThreadCount = saved; }
    }

    [Test]
    public void Sum_Mean_Max_Min_Var_over_any_axes_match_reference([Values] bool keepDim, [Values(DType.Float32, DType.Float64)] DType dtype)
    {
        ulong seed = FreshSeed();
        var gen = new Generator(seed);
        foreach (var (shape, axes) in Cases)
            foreach (var layout in Enum.GetValues<Layouts>())
            {
                using var x = Make(shape, layout, gen, dtype);
                var r = NdArray.From(x);
                string ctx = $"{Shape.Format(shape)} axes=[{string.Join(",", axes)}] {layout} {dtype} keepDim={keepDim} seed={seed}";
                var (rtol, atol) = Tol(dtype);
                using (var s = x.Sum(axes, keepDim)) Close(s, r.Reduce(axes, keepDim, v => v.Sum()), rtol * 10, atol * 10, "Sum " + ctx);
                using (var m = x.Mean(axes, keepDim)) Close(m, r.Reduce(axes, keepDim, v => v.Count == 0 ? double.NaN : v.Average()), rtol * 10, atol * 10, "Mean " + ctx);
                if (x.Numel == 0) continue;
                using (var mx = x.Max(axes, keepDim)) Close(mx, r.Reduce(axes, keepDim, v => v.Max()), 0, 0, "Max " + ctx);
                using (var mn = x.Min(axes, keepDim)) Close(mn, r.Reduce(axes, keepDim, v => v.Min()), 0, 0, "Min " + ctx);
                using (var va = x.Var(axes, keepDim))
                    Close(va, r.Reduce(axes, keepDim, v => { double mu = v.Average(); return v.Count > 1 ? v.Sum(q => (q - mu) * (q - mu)) / (v.Count - 1) : double.NaN; }), rtol * 50, atol * 50, "Var " + ctx);
            }
    }

    [Test]
    public void ArgMax_and_ArgMin_return_first_index_as_int64()
    {
        ulong seed = FreshSeed();
        var gen = new Generator(seed);
        foreach (var shape in new[] { new[] { 5 }, new[] { 3, 7 }, new[] { 2, 3, 4 } })
            for (int dim = 0; dim < shape.Length; dim++)
            {
                using var x = Make(shape, Layouts.Transposed, gen);
                var r = NdArray.From(x);
                using var am = x.ArgMax(dim);
                Assert.That(am.DType, Is.EqualTo(DType.Int64));
                var perm = Enumerable.Range(0, shape.Length).Where(i => i != dim).Append(dim).ToArray();
                var moved = r.Permute(perm);
                var expected = moved.Rows(row => [Array.IndexOf(row, row.Max())]);
                int len = shape[dim];
                var exp = Enumerable.Range(0, expected.Data.Length / len).Select(i => expected.Data[i * len]).ToArray();
                Assert.That(am.ToArray<long>().Select(v => (double)v), Is.EqualTo(exp), $"dim {dim} seed={seed}");
            }
        using var ties = Tensor.FromArray(new float[] { 1, 3, 3, 0 });
        Assert.That(ties.ArgMax().Item(), Is.EqualTo(1));
        Assert.That(ties.ArgMin().Item(), Is.EqualTo(3));
        using var kd = Tensor.Zeros([2, 3]).ArgMax(1, keepDim: true);
        Assert.That(kd.Shape, Is.EqualTo(new[] { 2, 1 }));
    }

    [Test]
    public void Reductions_reject_bad_axes_and_empty_max()
    {
        using var x = Tensor.Zeros([2, 3]);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => x.Sum([2]));
        Assert.That(ex!.Message, Does.Contain("Sum").And.Contain("rank 2"));
        Assert.Throws<ArgumentException>(() => x.Sum([1, -1]));
        using var empty = Tensor.Zeros([0, 3]);
        var e2 = Assert.Throws<ArgumentException>(() => empty.Max());
        Assert.That(e2!.Message, Does.Contain("Max").And.Contain("[0,3]"));
        Assert.Throws<ArgumentException>(() => empty.ArgMax(0));
    }
}
