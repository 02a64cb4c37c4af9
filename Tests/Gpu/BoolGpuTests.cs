using NUnit.Framework;

namespace AttnCore.Tests.Gpu;

/// <summary>
/// Bool masks on ILGPU devices (bytes on the device): comparisons of float32 and int64 views, conversions, logical
/// ops, Where/MaskedFill with a mask, Any/All/Sum and printing give exactly what the SIMD CPU backend gives (which
/// Tests/Engine/BoolTests.cs checks against the relations themselves).
/// </summary>
public class BoolGpuTests(string deviceName) : DeviceFixture<BoolGpuTests>(deviceName)
{
    [Test]
    public void Mask_ops_match_the_cpu_exactly()
    {
        var rng = new Random(3);
        using var f = Tensor.FromArray(Enumerable.Range(0, 24).Select(_ => rng.Next(8) == 0 ? float.NaN : rng.Next(-2, 3) * 0.5f).ToArray(), [2, 3, 4]);
        using var g = Tensor.FromArray(Enumerable.Range(0, 4).Select(_ => rng.Next(-2, 3) * 0.5f).ToArray(), [4]);
        using var n = Tensor.FromArray(Enumerable.Range(0, 12).Select(_ => (long)rng.Next(-3, 4)).ToArray(), [3, 4]);
        using var m = Tensor.FromArray(Enumerable.Range(0, 12).Select(_ => rng.Next(2) == 1).ToArray(), [3, 4]);
        var cases = new (string, Func<Tensor[], Tensor>, Tensor[])[]
        {
            ("Eq", t => t[0].Eq(t[1]), [f, g]), ("Ne", t => t[0].Ne(t[1]), [f, g]), ("Lt", t => t[0].Transpose(1, 2).Lt(t[1].Unsqueeze(1)), [f, g]),
            ("Le", t => t[0].Le(0), [f]), ("Gt", t => t[0].Gt(t[1]), [f, g]), ("Ge", t => t[0].Ge(t[1]), [f, g]),
            ("EqInt64", t => t[0].Eq(t[0].T.Contiguous().T), [n]), ("LtInt64", t => t[0].Lt(1), [n]),
            ("CompareMasks", t => t[0].Lt(t[0].T.Contiguous().T.LogicalNot()), [m]),
            ("FloatToBool", t => t[0].To(DType.Bool), [f]), ("Int64ToBool", t => t[0].To(DType.Bool), [n]),
            ("BoolToFloat", t => t[0].T.To(DType.Float32), [m]), ("BoolToInt64", t => t[0].To(DType.Int64), [m]),
            ("BoolCopyOfView", t => t[0].T.Contiguous(), [m]), ("FullBool", t => Tensor.Full([2, 3], 1, DType.Bool, t[0].Device), [m]),
            ("And", t => t[0].LogicalAnd(t[1].Gt(0)), [m, n]), ("Or", t => t[0].LogicalOr(t[1].Slice(1, 0, 4)), [m, n]),
            ("Xor", t => t[0].LogicalXor(t[0].Select(0, 1)), [m]), ("Not", t => t[0].LogicalNot(), [f]),
            ("WhereBool", t => Tensor.Where(t[0].Gt(0), t[0], t[1]), [f, g]), ("MaskedFillBool", t => t[0].MaskedFill(t[1].Lt(0), -7), [f, g]),
            ("WhereBoolInt64", t => Tensor.Where(t[1], t[0], t[0] * 2), [n, m]),
            ("WhereBoolValues", t => Tensor.Where(t[1].Gt(0), t[0], t[0].LogicalNot()), [m, n]),
            ("Any", t => t[0].Any(1), [m]), ("All", t => t[0].All(0, keepDim: true), [m]), ("SumBool", t => t[0].Sum(), [m]),
            ("MaskTimesFloat", t => t[0].Gt(0) * t[0], [f]), ("MaxBool", t => t[0].Max(1), [m]),
        };
        foreach (var (name, op, inputs) in cases) SameAsCpu.Check(TestDevice, name, op, inputs);
    }

    [Test]
    public void Bool_tensors_upload_download_and_print_on_the_device()
    {
        var values = new[] { true, false, true, true, false };
        using var m = Tensor.FromArray(values, [5], TestDevice);
        Assert.That(m.DType, Is.EqualTo(DType.Bool));
        Assert.That(m.ToArray<bool>(), Is.EqualTo(values));
        Assert.That(m.ToArray<float>(), Is.EqualTo(new float[] { 1, 0, 1, 1, 0 }));
        using var back = m.To(Device.Cpu);
        Assert.That(back.ToArray<bool>(), Is.EqualTo(values));
        Assert.That(m.ToString(), Does.StartWith("tensor([ True, False,  True,  True, False]"));
    }
}
