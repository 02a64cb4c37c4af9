using System.Numerics.Tensors;
using AttnCore.Tests.Reference;
using NUnit.Framework;
using SnTensor = System.Numerics.Tensors.Tensor;

namespace AttnCore.Tests.Engine;

[TestFixture, Category("Engine")]
public class CreationInteropTests
{
    [Test]
    public void Arange_Zeros_Ones_Full_have_the_expected_values()
    {
        Assert.That(Tensor.Arange(5).ToArray<float>(), Is.EqualTo(new float[] { 0, 1, 2, 3, 4 }));
        Assert.That(Tensor.Arange(1, 2, 0.25).ToArray<float>(), Is.EqualTo(new float[] { 1, 1.25f, 1.5f, 1.75f }));
        Assert.That(Tensor.Arange(5, 0, -2, DType.Int64).ToArray<long>(), Is.EqualTo(new long[] { 5, 3, 1 }));
        Assert.That(Tensor.Zeros([2, 2]).ToArray<float>(), Is.All.EqualTo(0f));
        Assert.That(Tensor.Ones([3], DType.Float64).ToArray<double>(), Is.All.EqualTo(1.0));
        Assert.That(Tensor.Full([2, 0], 7).Numel, Is.EqualTo(0));
        Assert.That(Tensor.Full([1, 2], 7).ToArray<float>(), Is.All.EqualTo(7f));
        Assert.Throws<ArgumentException>(() => Tensor.Arange(0, 1, 0));
        Assert.Throws<ArgumentException>(() => Tensor.Zeros([2, -1]));
    }

    [Test]
    public void Eye_Triu_Tril_build_identity_and_triangles()
    {
        Assert.That(Tensor.Eye(3).ToArray<float>(), Is.EqualTo(new float[] { 1, 0, 0, 0, 1, 0, 0, 0, 1 }));
        using var x = Tensor.Arange(1, 7).Reshape(2, 3);
        Assert.That(x.Triu().ToArray<float>(), Is.EqualTo(new float[] { 1, 2, 3, 0, 5, 6 }));
        Assert.That(x.Triu(1).ToArray<float>(), Is.EqualTo(new float[] { 0, 2, 3, 0, 0, 6 }));
        Assert.That(x.Tril().ToArray<float>(), Is.EqualTo(new float[] { 1, 0, 0, 4, 5, 0 }));
        Assert.That(x.Tril(-1).ToArray<float>(), Is.EqualTo(new float[] { 0, 0, 0, 4, 0, 0 }));
        Assert.Throws<ArgumentException>(() => Tensor.Arange(3).Triu());
    }

    [Test]
    public void Seeded_random_tensors_repeat_and_have_the_right_distribution()
    {
        ulong seed = Check.FreshSeed();
        var a = Tensor.Randn([20000], seed).ToArray<float>();
        var b = Tensor.Randn([20000], seed).ToArray<float>();
        Assert.That(a, Is.EqualTo(b), "same seed, same numbers");
        double mean = a.Average(v => (double)v), var_ = a.Average(v => (v - mean) * (v - mean));
        Assert.That(mean, Is.EqualTo(0).Within(0.04), $"seed={seed}");
        Assert.That(var_, Is.EqualTo(1).Within(0.05), $"seed={seed}");
        var u = Tensor.Rand([20000], seed + 1, DType.Float64).ToArray<double>();
        Assert.That(u.Min(), Is.GreaterThanOrEqualTo(0));
        Assert.That(u.Max(), Is.LessThan(1));
        Assert.That(u.Average(), Is.EqualTo(0.5).Within(0.02), $"seed={seed}");
        var ints = Tensor.RandInt(-3, 4, [5000], seed).ToArray<long>();
        Assert.That(ints.Distinct().OrderBy(v => v), Is.EqualTo(new long[] { -3, -2, -1, 0, 1, 2, 3 }));
        Assert.That(Tensor.Randn([5], seed + 7).ToArray<float>(), Is.Not.EqualTo(Tensor.Randn([5], seed + 8).ToArray<float>()));
    }

    [Test]
    public void Float_arrays_and_dtype_conversion_round_trip()
    {
        var data = new float[] { 1.5f, -2, 3.25f, 4, 5, 6 };
        using var t = Tensor.FromArray(data, [2, 3]);
        Assert.That(t.ToArray<float>(), Is.EqualTo(data));
        using var d = t.To(DType.Float64);
        Assert.That(d.DType, Is.EqualTo(DType.Float64));
        Assert.That(d.ToArray<double>(), Is.EqualTo(data.Select(v => (double)v)));
        using var l = t.To(DType.Int64);
        Assert.That(l.ToArray<long>(), Is.EqualTo(new long[] { 1, -2, 3, 4, 5, 6 }));
        Assert.That(Tensor.Scalar(2.5).Item(), Is.EqualTo(2.5));
        Assert.Throws<ArgumentException>(() => Tensor.FromArray(data, [4, 2]));
        Assert.Throws<ArgumentException>(() => t.Item());
    }

    [Test]
    public void System_Numerics_Tensors_interop_keeps_shape_and_values()
    {
        var data = Enumerable.Range(0, 24).Select(i => i * 0.5f).ToArray();
        var sys = SnTensor.Create(data, [2, 3, 4]);
        using var t = Tensor.FromSystemTensor(sys);
        Assert.That(t.Shape, Is.EqualTo(new[] { 2, 3, 4 }));
        Assert.That(t.ToArray<float>(), Is.EqualTo(data));
        using var tt = t.Transpose(0, 2);
        var back = tt.ToSystemTensor();
        Assert.That(back.Lengths.ToArray(), Is.EqualTo(new nint[] { 4, 3, 2 }));
        Assert.That(back[1, 2, 1], Is.EqualTo(data[1 * 12 + 2 * 4 + 1]));
        var dest = SnTensor.Create(new float[24], [4, 3, 2]);
        tt.CopyTo(dest.AsTensorSpan());
        Assert.That(dest[3, 0, 1], Is.EqualTo(data[12 + 3]));
        Assert.Throws<ArgumentException>(() => t.CopyTo(SnTensor.Create(new float[24], [24]).AsTensorSpan()));
    }

    [Test]
    public void ToString_prints_like_pytorch()
    {
        Assert.That(Tensor.FromArray(new float[] { 1, 2.5f, -3 }).ToString(), Is.EqualTo("tensor([ 1.0000,  2.5000, -3.0000])"));
        Assert.That(Tensor.FromArray(new float[] { 1, 2, 3, 4 }, [2, 2]).ToString(), Is.EqualTo("tensor([[1., 2.],\n        [3., 4.]])"));
        Assert.That(Tensor.Scalar(0.5).ToString(), Is.EqualTo("tensor(0.5000)"));
        Assert.That(Tensor.FromArray(new long[] { 3, 1 }).ToString(), Is.EqualTo("tensor([3, 1])"));
        Assert.That(Tensor.FromArray(new double[] { 1.5 }).ToString(), Is.EqualTo("tensor([1.5000], dtype=float64)"));
        var big = Tensor.Arange(2000).ToString();
        Assert.That(big, Does.StartWith("tensor([   0.,    1.,    2., ..., 1997., 1998., 1999.])"));
        Assert.That(Tensor.Zeros([2, 0]).ToString(), Is.EqualTo("tensor([], size=[2,0])"));
    }
}
