using NUnit.Framework;

namespace AttnCore.Tests.Gpu;

/// <summary>
/// TopK, MaxWithIndices/MinWithIndices and reductions of empty tensors on ILGPU devices give exactly the SIMD CPU
/// backend's indices and values (the CPU is checked against a float64 reference in Tests/Engine/SelectionTests.cs),
/// over strided views with ties and NaN.
/// </summary>
public class SelectionGpuTests(string deviceName) : DeviceFixture<SelectionGpuTests>(deviceName)
{
    static Tensor TiesAndNaN(int[] shape, int seed)
    {
        var rng = new Random(seed);
        var data = Enumerable.Range(0, shape.Aggregate(1, (a, b) => a * b))
            .Select(_ => rng.Next(10) == 0 ? float.NaN : rng.Next(-3, 4) * 0.5f).ToArray();
        return Tensor.FromArray(data, shape);
    }

    static void SameOnDevice(string what, Tensor cpuX, Func<Tensor, (Tensor Values, Tensor Indices)> op)
    {
        var (cv, ci) = op(cpuX);
        using var dx = cpuX.To(TestDevice);
        var (gv, gi) = op(dx);
        using (cv) using (ci) using (gv) using (gi)
        {
            Assert.That(gv.Device, Is.EqualTo(TestDevice), what);
            Assert.That(gi.ToArray<long>(), Is.EqualTo(ci.ToArray<long>()), what + " indices");
            Assert.That(gv.ToArray<float>(), Is.EqualTo(cv.ToArray<float>()), what + " values");
        }
    }

    [Test]
    public void TopK_and_extrema_with_indices_match_the_cpu_exactly()
    {
        using var x = TiesAndNaN([3, 4, 9], 11);
        using var t = x.Transpose(0, 2); // [9, 4, 3], strided
        foreach (var (name, input) in new[] { ("contiguous", x), ("transposed", t) })
            for (int dim = 0; dim < 3; dim++)
            {
                int size = input.Size(dim);
                foreach (int k in new[] { 1, (size + 1) / 2, size })
                {
                    SameOnDevice($"TopK {name} dim={dim} k={k}", input, v => v.TopK(k, dim));
                    SameOnDevice($"TopK smallest {name} dim={dim} k={k}", input, v => v.TopK(k, dim, largest: false));
                }
                SameOnDevice($"MaxWithIndices {name} dim={dim}", input, v => v.MaxWithIndices(dim));
                SameOnDevice($"MinWithIndices {name} dim={dim}", input, v => v.MinWithIndices(dim, keepDim: true));
            }
    }

    [Test]
    public void TopK_gradient_reaches_the_selected_elements_on_the_device()
    {
        using var x = Tensor.FromArray(new float[] { 1, 2, 2, 0, 5, -1 }, [2, 3], TestDevice).RequiresGrad_();
        var (v, i) = x.TopK(2, 1);
        using (v) using (i)
        {
            using var s = v.Sum();
            s.Backward();
        }
        Assert.That(x.Grad!.ToArray<float>(), Is.EqualTo(new float[] { 0, 1, 1, 1, 1, 0 }));
    }

    [Test]
    public void Reductions_of_empty_tensors_behave_as_PyTorch_on_the_device()
    {
        using var rows = Tensor.Zeros([0, 3], device: TestDevice);
        using (var m = rows.Max(1)) Assert.That(m.Shape, Is.EqualTo(new[] { 0 }));
        using (var a = rows.ArgMax(1)) Assert.That(a.Shape, Is.EqualTo(new[] { 0 }));
        using var cols = Tensor.Zeros([3, 0], device: TestDevice);
        using (var s = cols.Sum(1)) Assert.That(s.ToArray<float>(), Is.EqualTo(new float[] { 0, 0, 0 }));
        Assert.That(Assert.Throws<ArgumentException>(() => cols.Max(1))!.Message, Does.Contain("dim 1"));
    }
}
