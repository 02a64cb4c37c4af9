using NUnit.Framework;

namespace AttnCore.Tests.Reference;

/// <summary>Shared test plumbing: fresh seeds, inputs in several layouts, comparisons with the float64 reference.</summary>
public static class Check
{
    /// <summary>A fresh seed per call (NUnit's randomizer is itself seeded per run); printed on failure.</summary>
    public static ulong FreshSeed() => TestContext.CurrentContext.Random.NextULong();

    /// <summary>How an input tensor is laid out in memory.</summary>
    public enum Layouts { Contiguous, Transposed, Strided }

    /// <summary>
    /// A tensor of <paramref name="shape"/> with values from <paramref name="gen"/>, laid out as asked:
    /// Transposed = a permuted view of a tensor with the dims reversed; Strided = every other element of a bigger tensor.
    /// </summary>
    public static Tensor Make(int[] shape, Layouts layout, Generator gen, DType dtype = DType.Float32, Func<double, double>? shapeValues = null, Device? device = null)
    {
        long n = NdArray.Numel(shape);
        double Draw() => shapeValues is null ? gen.NextNormal() : shapeValues(gen.NextDouble());
        switch (layout)
        {
            case Layouts.Transposed when shape.Length >= 2:
            {
                var rev = shape.Reverse().ToArray();
                using var baseT = Build(rev, Enumerable.Range(0, (int)n).Select(_ => Draw()).ToArray(), dtype, device);
                return baseT.Permute(Enumerable.Range(0, shape.Length).Reverse().ToArray());
            }
            case Layouts.Strided when shape.Length >= 1:
            {
                var big = (int[])shape.Clone();
                big[^1] = shape[^1] * 2 + 1;
                using var baseT = Build(big, Enumerable.Range(0, (int)NdArray.Numel(big)).Select(_ => Draw()).ToArray(), dtype, device);
                return baseT.Slice(-1, 1, 1 + 2 * shape[^1], 2);
            }
            default:
                return Build(shape, Enumerable.Range(0, (int)n).Select(_ => Draw()).ToArray(), dtype, device);
        }
    }

    private static Tensor Build(int[] shape, double[] values, DType dtype, Device? device) => dtype switch
    {
        DType.Float64 => Tensor.FromArray(values, shape, device),
        DType.Float32 => Tensor.FromArray(values.Select(v => (float)v).ToArray(), shape, device),
        _ => Tensor.FromArray(values.Select(v => (long)Math.Floor(v)).ToArray(), shape, device),
    };

    /// <summary>Asserts shape equality and |actual - expected| &lt;= atol + rtol*|expected| element-wise (NaN matches NaN, inf matches inf).</summary>
    public static void Close(Tensor actual, NdArray expected, double rtol, double atol, string context = "")
    {
        Assert.That(actual.Shape, Is.EqualTo(expected.Shape), $"shape mismatch {context}");
        var got = actual.ToArray<double>();
        for (int i = 0; i < got.Length; i++)
        {
            double e = expected.Data[i], g = got[i];
            if (double.IsNaN(e) && double.IsNaN(g)) continue;
            if (double.IsInfinity(e) && e == g) continue;
            double err = Math.Abs(g - e);
            if (!(err <= atol + rtol * Math.Abs(e)))
                Assert.Fail($"element {i} (index [{string.Join(",", NdArray.Unravel(i, expected.Shape))}]): got {g}, expected {e}, error {err:g3} > {atol} + {rtol}*|e| {context}");
        }
    }

    /// <summary>Tolerances for float32 vs the float64 reference of an op with O(1) rounding steps.</summary>
    public static (double Rtol, double Atol) Tol(DType dtype) => dtype == DType.Float64 ? (1e-12, 1e-12) : (2e-6, 2e-6);
}
