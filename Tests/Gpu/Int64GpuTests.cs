using NUnit.Framework;

namespace AttnCore.Tests.Gpu;

/// <summary>
/// int64 tensors on ILGPU devices (token ids, labels, counts): arithmetic, comparisons, where, reductions and
/// arg-reductions give exactly the SIMD CPU backend's values, over strided and broadcast views.
/// </summary>
public class Int64GpuTests(string deviceName) : DeviceFixture<Int64GpuTests>(deviceName)
{

    [Test]
    public void Int64_ops_match_the_cpu_exactly()
    {
        var rng = new Random(5);
        using var a = Tensor.FromArray(Enumerable.Range(0, 24).Select(_ => (long)rng.Next(-9, 10)).ToArray(), [2, 3, 4]);
        using var b = Tensor.FromArray(Enumerable.Range(0, 4).Select(_ => (long)rng.Next(1, 6) * (rng.Next(2) * 2 - 1)).ToArray(), [4]);
        using var f = Tensor.FromArray(Enumerable.Range(0, 24).Select(_ => (float)rng.NextDouble()).ToArray(), [2, 3, 4]);
        var cases = new (string, Func<Tensor[], Tensor>)[]
        {
            ("Neg", t => -t[0]), ("Abs", t => t[0].Abs()), ("Sign", t => t[0].Sign()), ("Square", t => t[0].Square()),
            ("Scalars", t => (t[0] * 3 + 2) - 7), ("RSub", t => 4.0 - t[0]), ("Clamp", t => t[0].Clamp(-3, 4)),
            ("AddBroadcast", t => t[0] + t[1]), ("SubTransposed", t => t[0].Transpose(0, 2).Contiguous() - t[0].Transpose(0, 2)),
            ("Mul", t => t[0] * t[1]), ("DivTruncates", t => t[0] / t[1]), ("Maximum", t => t[0].Maximum(t[1])), ("Minimum", t => t[0].Minimum(t[1])),
            ("Eq", t => t[0].Eq(t[1])), ("Ne", t => t[0].Ne(t[1])), ("Lt", t => t[0].Lt(t[1])), ("Le", t => t[0].Le(t[1])),
            ("Gt", t => t[0].Gt(t[1])), ("Ge", t => t[0].Ge(t[1])),
            ("WhereInt64Cond", t => Tensor.Where(t[0].Gt(0), t[0], t[1])),
            ("WhereFloatValuesInt64Cond", t => Tensor.Where(t[0].Gt(t[1]), t[2], t[2] * 2)),
            ("Sum", t => t[0].Sum()), ("SumDims", t => t[0].Sum([0, 2])), ("Max", t => t[0].Max(1)), ("Min", t => t[0].Min()),
            ("ArgMax", t => t[0].ArgMax(2)), ("ArgMinOfTransposed", t => t[0].Transpose(1, 2).ArgMin(-1)),
            ("Accuracy", t => t[0].ArgMax(2).Eq(t[0].ArgMin(2)).Sum()),
        };
        foreach (var (name, op) in cases) SameAsCpu.Check(TestDevice, name, op, a, b, f);
    }

    [Test]
    public void Integer_division_by_zero_on_the_device_is_reported_at_the_next_synchronisation()
    {
        using var a = Tensor.FromArray(new long[] { 4, 5, 6 }, null, TestDevice);
        using var b = Tensor.FromArray(new long[] { 2, 0, 3 }, null, TestDevice);
        using var q = a / b;
        var ex = Assert.Throws<DivideByZeroException>(() => q.ToArray<long>());
        Assert.That(ex!.Message, Does.StartWith("Div: integer division by zero in an int64 tensor"));
        using var ok = a / a;
        Assert.That(ok.ToArray<long>(), Is.EqualTo(new long[] { 1, 1, 1 }), "the device is usable afterwards");
        var ns = Assert.Throws<ArgumentException>(() => _ = a.Exp());
        Assert.That(ns!.Message, Is.EqualTo("Exp: needs a floating-point tensor, got int64 [3]"), "as on the CPU");
    }
}
