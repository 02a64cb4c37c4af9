using AttnCore.Tests.Reference;
using NUnit.Framework;
using static AttnCore.Tests.Reference.Check;

namespace AttnCore.Tests.Engine;

/// <summary>
/// DType.Bool as PyTorch's torch.bool: comparisons give masks (checked against the C# relations on float64 values),
/// masks convert to and from every dtype (non-zero and NaN are true), promote in arithmetic (mask * x has x's dtype),
/// select in Where/MaskedFill (old 0/1 float masks still work), combine with the logical ops, reduce with Any/All
/// and count with Sum (int64).
/// </summary>
[TestFixture, Category("Engine")]
public class BoolTests
{
    static readonly (string Name, Func<Tensor, Tensor, Tensor> Op, Func<double, double, bool> Ref)[] Relations =
    [
        ("Eq", (a, b) => a.Eq(b), (x, y) => x == y), ("Ne", (a, b) => a.Ne(b), (x, y) => x != y),
        ("Lt", (a, b) => a.Lt(b), (x, y) => x < y), ("Le", (a, b) => a.Le(b), (x, y) => x <= y),
        ("Gt", (a, b) => a.Gt(b), (x, y) => x > y), ("Ge", (a, b) => a.Ge(b), (x, y) => x >= y),
    ];

    static bool[] Expected(Tensor a, Tensor b, Func<double, double, bool> rel)
    {
        var r = NdArray.Zip(NdArray.From(a), NdArray.From(b), (x, y) => rel(x, y) ? 1 : 0);
        return r.Data.Select(v => v != 0).ToArray();
    }

    [Test]
    public void Comparisons_return_bool_masks_matching_the_relation_with_broadcast_views_ties_and_NaN(
        [Values(DType.Float32, DType.Float64, DType.Int64)] DType dtype)
    {
        ulong seed = FreshSeed();
        var gen = new Generator(seed);
        Func<double, double> coarse = u => Math.Round(u * 4) - 2; // ties on purpose
        foreach (var (sa, sb) in new[] { (new[] { 3, 4 }, new[] { 4 }), (new[] { 2, 1, 3 }, new[] { 4, 1 }), (new[] { 5 }, Array.Empty<int>()), (new[] { 0, 3 }, new[] { 3 }) })
            foreach (var layout in Enum.GetValues<Layouts>())
            {
                using var a0 = Make(sa, layout, gen, dtype == DType.Int64 ? DType.Float64 : dtype, coarse);
                using var b0 = Make(sb, Layouts.Strided, gen, dtype == DType.Int64 ? DType.Float64 : dtype, coarse);
                using var a = a0.To(dtype);
                using var b = b0.To(dtype);
                foreach (var (name, op, rel) in Relations)
                {
                    using var m = op(a, b);
                    Assert.That(m.DType, Is.EqualTo(DType.Bool), name);
                    Assert.That(m.Shape, Is.EqualTo(Shape.Broadcast("t", sa, sb)), name);
                    Assert.That(m.ToArray<bool>(), Is.EqualTo(Expected(a, b, rel)), $"{name} {dtype} {Shape.Format(sa)} {layout} seed={seed}");
                }
            }
        if (dtype == DType.Int64) return;
        using var nan = Tensor.FromArray(new double[] { double.NaN, 1, double.NaN }).To(dtype);
        using var one = Tensor.FromArray(new double[] { 1, double.NaN, double.NaN }).To(dtype);
        foreach (var (name, op, rel) in Relations)
            using (var m = op(nan, one)) Assert.That(m.ToArray<bool>(), Is.EqualTo(Expected(nan, one, rel)), name + " with NaN");
    }

    [Test]
    public void Scalar_comparisons_and_bool_operands_compare_as_numbers()
    {
        using var a = Tensor.FromArray(new float[] { 1, 2, 3, 2 });
        using (var m = a.Gt(2)) Assert.That(m.ToArray<bool>(), Is.EqualTo(new[] { false, false, true, false }));
        using (var m = a.Ne(2)) Assert.That(m.ToArray<bool>(), Is.EqualTo(new[] { true, false, true, false }));
        using var mask = Tensor.FromArray(new[] { true, false, true });
        using (var m = mask.Gt(0.5)) Assert.That(m.ToArray<bool>(), Is.EqualTo(new[] { true, false, true }), "a mask meets a number as 0/1");
        using (var m = mask.Eq(0)) Assert.That(m.ToArray<bool>(), Is.EqualTo(new[] { false, true, false }));
        using var other = Tensor.FromArray(new[] { true, true, false });
        using (var m = mask.Lt(other)) Assert.That(m.ToArray<bool>(), Is.EqualTo(new[] { false, true, false }), "false < true");
        using (var m = mask.Eq(other)) Assert.That(m.ToArray<bool>(), Is.EqualTo(new[] { true, false, false }));
    }

    [Test]
    public void Conversions_to_and_from_bool_follow_PyTorch()
    {
        using var f = Tensor.FromArray(new double[] { 0, 2.5, double.NaN, -0.0, -1, double.PositiveInfinity });
        using var b = f.To(DType.Bool);
        Assert.That(b.DType, Is.EqualTo(DType.Bool));
        Assert.That(b.ToArray<bool>(), Is.EqualTo(new[] { false, true, true, false, true, true }));
        using var i = Tensor.FromArray(new long[] { 0, 7, -3 });
        Assert.That(i.ToArray<bool>(), Is.EqualTo(new[] { false, true, true }));
        using var m = Tensor.FromArray(new[] { true, false, true }, [3]);
        Assert.That(m.ToArray<float>(), Is.EqualTo(new float[] { 1, 0, 1 }));
        Assert.That(m.ToArray<double>(), Is.EqualTo(new double[] { 1, 0, 1 }));
        Assert.That(m.ToArray<long>(), Is.EqualTo(new long[] { 1, 0, 1 }));
        using var t = m.Unsqueeze(0).Expand(2, 3).Transpose(0, 1).Contiguous();
        Assert.That(t.ToArray<bool>(), Is.EqualTo(new[] { true, true, false, false, true, true }));
        using var full = Tensor.Full([2], double.NaN, DType.Bool);
        Assert.That(full.ToArray<bool>(), Is.EqualTo(new[] { true, true }), "bool(nan) is true");
        Assert.That(Tensor.Zeros([3], DType.Bool).ToArray<bool>(), Is.EqualTo(new[] { false, false, false }));
        Assert.That(DType.Bool.SizeOf(), Is.EqualTo(1));
        using var s = Tensor.Scalar(1, DType.Bool);
        Assert.That(s.Item(), Is.EqualTo(1));
    }

    [Test]
    public void Arithmetic_with_a_bool_operand_promotes_as_PyTorch_or_raises_clearly([Values(DType.Float32, DType.Float64)] DType dtype)
    {
        using var x = Tensor.FromArray(new double[] { 1.5, -2, 3 }).To(dtype);
        using var m = Tensor.FromArray(new[] { true, false, true });
        using (var y = x * m) { Assert.That(y.DType, Is.EqualTo(dtype)); Assert.That(y.ToArray<double>(), Is.EqualTo(new double[] { 1.5, 0, 3 })); }
        using (var y = m + x) { Assert.That(y.DType, Is.EqualTo(dtype)); Assert.That(y.ToArray<double>(), Is.EqualTo(new double[] { 2.5, -2, 4 })); }
        using (var y = m * 0.5) { Assert.That(y.DType, Is.EqualTo(DType.Float32)); Assert.That(y.ToArray<float>(), Is.EqualTo(new float[] { 0.5f, 0, 0.5f })); }
        using var n = Tensor.FromArray(new long[] { 4, 5, 6 });
        using (var y = n - m) { Assert.That(y.DType, Is.EqualTo(DType.Int64)); Assert.That(y.ToArray<long>(), Is.EqualTo(new long[] { 3, 5, 5 })); }
        var ex = Assert.Throws<ArgumentException>(() => m.Add(m))!;
        Assert.That(ex.Message, Does.Contain("Add").And.Contain("bool").And.Contain("LogicalOr"));
        Assert.That(Assert.Throws<ArgumentException>(() => m.Neg())!.Message, Does.Contain("Neg").And.Contain("LogicalNot"));
        Assert.That(Assert.Throws<ArgumentException>(() => m.Mean())!.Message, Does.Contain("Mean").And.Contain("bool"));
    }

    [Test]
    public void Gradients_flow_through_bool_masks()
    {
        using var x = Tensor.FromArray(new double[] { 0.7, -1.3, 2.1, -0.4, 0.2, 1.1 }, [2, 3]).RequiresGrad_();
        Assert.DoesNotThrow(() => GradCheck.Assert(v => v[0] * v[0].Gt(0), [x], name: "x * (x > 0)"));
        Assert.DoesNotThrow(() => GradCheck.Assert(v => Tensor.Where(v[0].Lt(0), v[0].Square(), v[0]), [x], name: "where(bool)"));
        Assert.DoesNotThrow(() => GradCheck.Assert(v => v[0].MaskedFill(v[0].Gt(1), 0.0), [x], name: "masked fill"));
        Assert.DoesNotThrow(() => GradCheck.Assert(v => v[0].Maximum(v[0].Sin()), [x], name: "maximum (bool masks in its rule)"));
    }

    [Test]
    public void Where_and_MaskedFill_take_bool_masks_and_still_take_float_masks()
    {
        ulong seed = FreshSeed();
        var gen = new Generator(seed);
        using var x = Make([3, 4, 5], Layouts.Transposed, gen);
        using var y = Make([4, 1], Layouts.Contiguous, gen);
        using var c = Make([3, 1, 5], Layouts.Strided, gen);
        using var boolCond = c.Gt(0);
        using var floatCond = boolCond.To(DType.Float32);
        using var wb = Tensor.Where(boolCond, x, y);
        using var wf = Tensor.Where(floatCond, x, y);
        var expected = NdArray.Zip(NdArray.Zip(NdArray.From(c), NdArray.From(x), (m, v) => m > 0 ? v : double.NaN), NdArray.From(y), (v, alt) => double.IsNaN(v) ? alt : v);
        Close(wb, expected, 0, 0, $"bool condition seed={seed}");
        Close(wf, expected, 0, 0, $"float condition seed={seed}");
        using var mask = Tensor.FromArray(new[] { false, true, false, true, true });
        using var fb = x.MaskedFill(mask, double.NegativeInfinity);
        using var maskF = mask.To(DType.Float32);
        using var ff = x.MaskedFill(maskF, double.NegativeInfinity);
        Assert.That(fb.ToArray<float>(), Is.EqualTo(ff.ToArray<float>()));
        using var bv = Tensor.Where(mask, mask, Tensor.FromArray(new[] { true, true, false, false, false }));
        Assert.That(bv.DType, Is.EqualTo(DType.Bool));
        Assert.That(bv.ToArray<bool>(), Is.EqualTo(new[] { true, true, false, true, true }));
    }

    [Test]
    public void Logical_ops_follow_their_truth_tables_with_broadcasting()
    {
        using var a = Tensor.FromArray(new[] { false, false, true, true }, [4, 1]);
        using var b = Tensor.FromArray(new[] { false, true }, [2]);
        bool[] Table(Func<bool, bool, bool> f) => [.. from x in new[] { false, false, true, true } from y in new[] { false, true } select f(x, y)];
        using (var r = a.LogicalAnd(b)) Assert.That(r.ToArray<bool>(), Is.EqualTo(Table((x, y) => x && y)));
        using (var r = a.LogicalOr(b)) Assert.That(r.ToArray<bool>(), Is.EqualTo(Table((x, y) => x || y)));
        using (var r = a.LogicalXor(b)) { Assert.That(r.ToArray<bool>(), Is.EqualTo(Table((x, y) => x ^ y))); Assert.That(r.Shape, Is.EqualTo(new[] { 4, 2 })); }
        using (var r = b.LogicalNot()) Assert.That(r.ToArray<bool>(), Is.EqualTo(new[] { true, false }));
        using var f = Tensor.FromArray(new float[] { 0, -2, float.NaN });
        using (var r = f.LogicalNot()) Assert.That(r.ToArray<bool>(), Is.EqualTo(new[] { true, false, false }), "non-zero and NaN are true");
        using (var r = f.LogicalAnd(f)) Assert.That(r.DType, Is.EqualTo(DType.Bool));
    }

    [Test]
    public void Any_All_and_Sum_reduce_masks_as_PyTorch()
    {
        using var m = Tensor.FromArray(new[] { true, false, false, false, true, true }, [2, 3]);
        using (var s = m.Sum()) { Assert.That(s.DType, Is.EqualTo(DType.Int64)); Assert.That(s.Item(), Is.EqualTo(3)); }
        using (var s = m.Sum(1)) Assert.That(s.ToArray<long>(), Is.EqualTo(new long[] { 1, 2 }));
        using (var r = m.Any(1)) { Assert.That(r.DType, Is.EqualTo(DType.Bool)); Assert.That(r.ToArray<bool>(), Is.EqualTo(new[] { true, true })); }
        using (var r = m.All(1)) Assert.That(r.ToArray<bool>(), Is.EqualTo(new[] { false, false }));
        using (var r = m.Any(0, keepDim: true)) { Assert.That(r.Shape, Is.EqualTo(new[] { 1, 3 })); Assert.That(r.ToArray<bool>(), Is.EqualTo(new[] { true, true, true })); }
        using (var r = m.All(0)) Assert.That(r.ToArray<bool>(), Is.EqualTo(new[] { false, false, false }));
        using var allTrue = Tensor.FromArray(new[] { true, true, false, true }, [2, 2]);
        using (var r = allTrue.All(0)) Assert.That(r.ToArray<bool>(), Is.EqualTo(new[] { false, true }));
        using (var r = m.Any()) Assert.That(r.Item(), Is.EqualTo(1));
        using (var r = m.Max(1)) { Assert.That(r.DType, Is.EqualTo(DType.Bool)); Assert.That(r.ToArray<bool>(), Is.EqualTo(new[] { true, true })); }
        using (var r = m.ArgMax(1)) Assert.That(r.ToArray<long>(), Is.EqualTo(new long[] { 0, 1 }));
        // PyTorch 1.13: zeros(0, 3).any(1) -> [], zeros(3, 0).any(1) -> [F, F, F], zeros(3, 0).all(1) -> [T, T, T].
        using var rows = Tensor.Zeros([0, 3], DType.Bool);
        using (var r = rows.Any(1)) Assert.That(r.Shape, Is.EqualTo(new[] { 0 }));
        using var cols = Tensor.Zeros([3, 0], DType.Bool);
        using (var r = cols.Any(1)) Assert.That(r.ToArray<bool>(), Is.EqualTo(new[] { false, false, false }));
        using (var r = cols.All(1)) Assert.That(r.ToArray<bool>(), Is.EqualTo(new[] { true, true, true }));
        using var f = Tensor.FromArray(new float[] { 0, 0.5f });
        using (var r = f.All()) Assert.That(r.Item(), Is.EqualTo(0));
    }

    [Test]
    public void Bool_tensors_print_as_PyTorch()
    {
        using var m = Tensor.FromArray(new[] { true, false, true });
        Assert.That(m.ToString(), Is.EqualTo("tensor([ True, False,  True])"));
        using var e = Tensor.Zeros([0], DType.Bool);
        Assert.That(e.ToString(), Is.EqualTo("tensor([], dtype=bool)"));
    }
}
