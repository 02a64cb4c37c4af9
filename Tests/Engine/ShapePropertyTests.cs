using System.Numerics;
using AttnCore.Tests.Reference;
using CsCheck;
using NUnit.Framework;
using static AttnCore.Tests.Reference.Check;

namespace AttnCore.Tests.Engine;

/// <summary>
/// Property-based tests (CsCheck; a failure shrinks to the smallest shape and prints a seed to replay) of the
/// shape rules against formulas written here independently: the element count (a BigInteger product; past a long
/// it must raise ArgumentException naming the op), NumPy broadcasting, reshape/view, and the reductions
/// (Sum/Mean/Max/Min/ArgMax/TopK) against the float64 reference on shapes with 0- and 1-sized dims, non-contiguous
/// views and extreme values. Each test is bounded (fixed seed, a few hundred cases); the [Explicit] ones search for
/// a minute each.
/// </summary>
[TestFixture, Category("Engine")]
public class ShapePropertyTests
{
    const string Seed = "0N0XIzNsQ0O2";
    const int LongRunSeconds = 60;

    // Dims that stress the count: empty, unit, small, and ones whose products pass int, long.
    static readonly Gen<int> Dim = Gen.OneOf(Gen.Int[0, 3], Gen.Const(7), Gen.Const(65536), Gen.Const(int.MaxValue), Gen.Int[1, int.MaxValue]);
    static readonly Gen<int[]> AnyShape = Dim.Array[0, 6];
    static readonly Gen<int[]> SmallShape = Gen.Int[0, 3].Array[0, 4];

    static BigInteger Product(int[] shape) => shape.Aggregate(BigInteger.One, (p, d) => p * d);

    // ---- the element count ----

    static void CountIsTheProductOrOverflowRaises(int[] shape)
    {
        var exact = Product(shape);
        if (exact > long.MaxValue)
        {
            var ex = Assert.Throws<ArgumentException>(() => Shape.Numel("Probe", shape))!;
            Assert.That(ex.Message, Does.StartWith("Probe:").And.Contain("overflow").And.Contain(Shape.Format(shape)));
            using var one = Tensor.Ones([1]);
            Assert.Throws<ArgumentException>(() => one.Expand(shape), "Expand to " + Shape.Format(shape));
            Assert.Throws<ArgumentException>(() => Tensor.Zeros(shape), "Zeros " + Shape.Format(shape));
            using var empty = Tensor.Zeros([0]);
            Assert.Throws<ArgumentException>(() => empty.Reshape(shape), "Reshape to " + Shape.Format(shape));
            return;
        }
        Assert.That(Shape.Numel(shape), Is.EqualTo((long)exact), Shape.Format(shape));
        using var unit = Tensor.Ones(shape.Select(_ => 1).ToArray());
        using var expanded = unit.Expand(shape);
        Assert.That(expanded.Numel, Is.EqualTo((long)exact));
        if (exact <= 4096)
        {
            using var z = Tensor.Zeros(shape);
            Assert.That(z.Numel, Is.EqualTo((long)exact));
            // Row-major strides by their definition: the product of the sizes (at least 1) to the right. Only an empty
            // shape's strides can pass a long (no element is addressed by them); they saturate at long.MaxValue.
            var strides = shape.Select((_, i) => (long)BigInteger.Min(shape.Skip(i + 1).Aggregate(BigInteger.One, (p, d) => p * Math.Max(d, 1)), long.MaxValue)).ToArray();
            Assert.That(z.Strides, Is.EqualTo(strides));
        }
        else if (exact > Array.MaxLength)
            Assert.That(Assert.Throws<ArgumentException>(() => Tensor.Zeros(shape))!.Message, Does.Contain("holds at most"));
    }

    [Test]
    public void Numel_is_the_exact_product_and_overflow_always_raises() => AnyShape.Sample(CountIsTheProductOrOverflowRaises, seed: Seed, iter: 400, threads: 1);

    [Test, Explicit("long search, about a minute")]
    public void Numel_is_the_exact_product_and_overflow_always_raises_long_run() => AnyShape.Sample(CountIsTheProductOrOverflowRaises, time: LongRunSeconds, threads: 1);

    static void NegativeDimsRaise(int[] shape, int at, int negative)
    {
        var bad = shape.Append(1).ToArray();
        bad[at % bad.Length] = negative;
        var ex = Assert.Throws<ArgumentException>(() => Tensor.Zeros(bad))!;
        Assert.That(ex.Message, Does.Contain("Zeros").And.Contain("negative dimension"));
        Assert.Throws<ArgumentException>(() => Tensor.Randn(bad, 1UL));
    }

    [Test]
    public void Negative_dims_always_raise_ArgumentException()
        => Gen.Select(SmallShape, Gen.Int[0, 10], Gen.Int[int.MinValue, -2]).Sample(NegativeDimsRaise, seed: Seed, iter: 100, threads: 1);

    // ---- broadcasting: NumPy's rule, written again here ----

    static int[]? NumPyBroadcast(int[] a, int[] b)
    {
        int rank = Math.Max(a.Length, b.Length);
        var r = new int[rank];
        for (int i = 1; i <= rank; i++)
        {
            int x = i <= a.Length ? a[^i] : 1, y = i <= b.Length ? b[^i] : 1;
            if (x != y && x != 1 && y != 1) return null;
            r[^i] = x == 1 ? y : x;
        }
        return r;
    }

    static void BroadcastMatchesNumPy(int[] a, int[] b, bool transposed)
    {
        var expected = NumPyBroadcast(a, b);
        using var ta = Make(a, transposed ? Layouts.Transposed : Layouts.Contiguous, new Generator(1), DType.Float64);
        using var tb = Make(b, Layouts.Strided, new Generator(2), DType.Float64);
        if (expected is null)
        {
            Assert.That(Assert.Throws<ArgumentException>(() => ta.Add(tb))!.Message, Does.Contain("Add").And.Contain("broadcast"));
            return;
        }
        Assert.That(Shape.Broadcast("Add", a, b), Is.EqualTo(expected));
        using var sum = ta + tb;
        Close(sum, NdArray.Zip(NdArray.From(ta), NdArray.From(tb), (x, y) => x + y), 0, 0, $"{Shape.Format(a)} + {Shape.Format(b)}");
        using var view = tb.BroadcastTo(expected);
        Assert.That(view.Shape, Is.EqualTo(expected));
    }

    [Test]
    public void Broadcasting_follows_NumPy()
        => Gen.Select(SmallShape, SmallShape, Gen.Bool).Sample(BroadcastMatchesNumPy, seed: Seed, iter: 300, threads: 1);

    [Test, Explicit("long search, about a minute")]
    public void Broadcasting_follows_NumPy_long_run()
        => Gen.Select(SmallShape, SmallShape, Gen.Bool).Sample(BroadcastMatchesNumPy, time: LongRunSeconds, threads: 1);

    // ---- reshape and view ----

    // A target shape of the same count: runs of consecutive source dims merged, with size-1 dims sprinkled in.
    static readonly Gen<(int[] Source, int[] Target, int[] Perm, int InferAt)> ReshapeCase =
        from source in Gen.Int[1, 4].Array[1, 4]
        from cuts in Gen.Int[0, 3].Array[source.Length + 1]
        from perm in Gen.Shuffle(Enumerable.Range(0, source.Length).ToArray())
        from inferAt in Gen.Int[-1, 3]
        select (source, Regroup(source, cuts), perm, inferAt);

    static int[] Regroup(int[] source, int[] cuts)
    {
        var target = new List<int>();
        long acc = 1;
        for (int i = 0; i < source.Length; i++)
        {
            acc *= source[i];
            if (cuts[i] != 0 || i == source.Length - 1) { target.Add((int)acc); acc = 1; }
            if (cuts[i] == 3) target.Add(1);
        }
        return [.. target];
    }

    static void ReshapeKeepsRowMajorOrder((int[] Source, int[] Target, int[] Perm, int InferAt) c)
    {
        using var baseT = Tensor.Arange(0, Shape.Numel(c.Source), 1, DType.Float64).Reshape(c.Source);
        using var x = baseT.Permute(c.Perm);
        var requested = (int[])c.Target.Clone();
        if (c.InferAt >= 0 && c.InferAt < requested.Length) requested[c.InferAt] = -1;
        var expected = NdArray.From(x).Data;
        using var r = x.Reshape(requested);
        Assert.That(r.Shape, Is.EqualTo(c.Target));
        Assert.That(r.ToArray<double>(), Is.EqualTo(expected), "Reshape keeps the row-major order of the view");
        try
        {
            using var v = x.View(requested);
            Assert.That(v.Storage, Is.SameAs(x.Storage), "a view shares the storage");
            Assert.That(v.ToArray<double>(), Is.EqualTo(expected));
        }
        catch (ArgumentException e)
        {
            Assert.That(x.IsContiguous, Is.False, "a contiguous tensor can always be viewed");
            Assert.That(e.Message, Does.Contain("View").And.Contain("Reshape"));
        }
    }

    [Test]
    public void Reshape_and_View_keep_row_major_order() => ReshapeCase.Sample(ReshapeKeepsRowMajorOrder, seed: Seed, iter: 300, threads: 1);

    // ---- reductions against the float64 reference ----

    static readonly Gen<double> Value = Gen.OneOf(Gen.Double[-3, 3], Gen.Const(1e30), Gen.Const(-1e30), Gen.Const(1e-30), Gen.Const(0.0), Gen.Const(-0.0), Gen.Const(2.0));

    static readonly Gen<(int[] Shape, double[] Values, int Layout, int[] Axes, bool KeepDim, bool Double)> ReduceCase =
        from shape in Gen.OneOf(Gen.Int[0, 3], Gen.Const(1), Gen.Const(5)).Array[0, 4]
        from values in Value.Array[(int)(Shape.Numel(shape) * 3 + 1)]
        from layout in Gen.Int[0, 2]
        from axesMask in Gen.Int[0, 15]
        from keepDim in Gen.Bool
        from dbl in Gen.Bool
        select (shape, values, layout, Enumerable.Range(0, shape.Length).Where(i => (axesMask >> i & 1) == 1).ToArray(), keepDim, dbl);

    static void ReductionsMatchReference((int[] Shape, double[] Values, int Layout, int[] Axes, bool KeepDim, bool Double) c)
    {
        var dtype = c.Double ? DType.Float64 : DType.Float32;
        int next = 0;
        using var x = Make(c.Shape, (Layouts)c.Layout, new Generator(7), dtype, _ => c.Values[next++ % c.Values.Length]);
        var r = NdArray.From(x);
        string ctx = $"{Shape.Format(c.Shape)} {(Layouts)c.Layout} {dtype} axes=[{string.Join(",", c.Axes)}] keepDim={c.KeepDim}";
        double eps = c.Double ? 1e-15 : 1e-6;
        using (var s = x.Sum(c.Axes, c.KeepDim))
        {
            var absSum = r.Map(Math.Abs).Reduce(c.Axes, c.KeepDim, v => v.Sum());
            var want = r.Reduce(c.Axes, c.KeepDim, v => v.Sum());
            var got = s.ToArray<double>();
            Assert.That(s.Shape, Is.EqualTo(want.Shape), "Sum shape " + ctx);
            for (int i = 0; i < got.Length; i++)
                Assert.That(got[i], Is.EqualTo(want.Data[i]).Within(8 * eps * absSum.Data[i] + 1e-300), $"Sum element {i} {ctx}");
        }
        using (var m = x.Mean(c.Axes, c.KeepDim))
            Assert.That(m.Shape, Is.EqualTo(r.Reduce(c.Axes, c.KeepDim, v => 0).Shape), "Mean shape " + ctx);
        var reduced = c.Axes.Length == 0 ? Enumerable.Range(0, c.Shape.Length).ToArray() : c.Axes;
        bool emptyReduction = reduced.Any(a => c.Shape[a] == 0);
        if (emptyReduction)
        {
            Assert.Throws<ArgumentException>(() => x.Max(c.Axes, c.KeepDim), "Max over an empty dim raises " + ctx);
            Assert.Throws<ArgumentException>(() => x.Min(c.Axes, c.KeepDim), "Min over an empty dim raises " + ctx);
        }
        else
        {
            using (var mx = x.Max(c.Axes, c.KeepDim)) Close(mx, r.Reduce(c.Axes, c.KeepDim, v => v.Max()), 0, 0, "Max " + ctx);
            using (var mn = x.Min(c.Axes, c.KeepDim)) Close(mn, r.Reduce(c.Axes, c.KeepDim, v => v.Min()), 0, 0, "Min " + ctx);
        }
        if (c.Shape.Length == 0) return;
        int dim = c.Axes.Length > 0 ? c.Axes[0] : c.Shape.Length - 1;
        var moved = r.Permute(Enumerable.Range(0, c.Shape.Length).Where(i => i != dim).Append(dim).ToArray());
        int len = c.Shape[dim];
        if (len == 0)
        {
            Assert.Throws<ArgumentException>(() => x.ArgMax(dim), "ArgMax over an empty dim raises " + ctx);
            return;
        }
        var rows = Enumerable.Range(0, moved.Data.Length / len).Select(i => moved.Data.AsSpan(i * len, len).ToArray()).ToArray();
        using (var am = x.ArgMax(dim))
            Assert.That(am.ToArray<long>(), Is.EqualTo(rows.Select(row => (long)Array.IndexOf(row, row.Max())).ToArray()), "ArgMax (first of the largest) " + ctx);
        int k = (len + 1) / 2;
        var (tv, ti) = x.TopK(k, dim);
        using (tv) using (ti)
        {
            using var tiMoved = ti.Permute(Enumerable.Range(0, c.Shape.Length).Where(i => i != dim).Append(dim).ToArray()).Contiguous();
            var want = rows.SelectMany(row => Enumerable.Range(0, len).OrderByDescending(i => row[i]).ThenBy(i => i).Take(k).Select(i => (long)i)).ToArray();
            Assert.That(tiMoved.ToArray<long>(), Is.EqualTo(want), "TopK indices " + ctx);
        }
    }

    [Test]
    public void Reductions_match_the_float64_reference() => ReduceCase.Sample(ReductionsMatchReference, seed: Seed, iter: 300, threads: 1);

    [Test, Explicit("long search, about a minute")]
    public void Reductions_match_the_float64_reference_long_run() => ReduceCase.Sample(ReductionsMatchReference, time: LongRunSeconds, threads: 1);
}
