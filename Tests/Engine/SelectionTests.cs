using AttnCore.Tests.Reference;
using NUnit.Framework;
using static AttnCore.Tests.Reference.Check;

namespace AttnCore.Tests.Engine;

/// <summary>
/// MaxWithIndices/MinWithIndices (torch.max(x, dim)) and TopK (torch.topk) against a float64 reference written
/// here: a stable sort of each row by (value descending, NaN first; index ascending). Gradients flow to the selected
/// elements only (gradcheck in GradCheckTests; the tie case here against PyTorch's value).
/// </summary>
[TestFixture, Category("Engine")]
public class SelectionTests
{
    // The reference order: indices of one row sorted as TopK documents (NaN above every number, ties by index).
    // Max/Min with indices instead treat NaN as the extremum both ways (as ArgMax/ArgMin and PyTorch's min do).
    static int[] ReferenceOrder(double[] row, bool largest, bool nanFirst) => Enumerable.Range(0, row.Length)
        .OrderBy(i => double.IsNaN(row[i]) ? (nanFirst ? 0 : 1) : (nanFirst ? 1 : 0))
        .ThenBy(i => double.IsNaN(row[i]) ? 0 : largest ? -row[i] : row[i])
        .ThenBy(i => i).ToArray();

    // Rows of x along dim, as (row values, position in the result's layout) pairs: result[..., j, ...] for j < k.
    static void CheckSelection(Tensor x, int dim, int k, bool largest, Tensor values, Tensor indices, string ctx, bool? nanFirst = null)
    {
        int d = dim < 0 ? dim + x.Rank : dim;
        var r = NdArray.From(x);
        var perm = Enumerable.Range(0, x.Rank).Where(i => i != d).Append(d).ToArray();
        var moved = r.Permute(perm);
        using var vMoved = values.Permute(perm).Contiguous();
        using var iMoved = indices.Permute(perm).Contiguous();
        var gotV = vMoved.ToArray<double>();
        var gotI = iMoved.ToArray<long>();
        int len = x.Size(d);
        int rows = len == 0 ? 0 : moved.Data.Length / len;
        Assert.That(gotI, Has.Length.EqualTo((long)rows * k), ctx);
        for (int row = 0; row < rows; row++)
        {
            var vals = moved.Data.AsSpan(row * len, len).ToArray();
            var order = ReferenceOrder(vals, largest, nanFirst ?? largest);
            for (int j = 0; j < k; j++)
            {
                Assert.That(gotI[row * k + j], Is.EqualTo(order[j]), $"{ctx}: row {row} pick {j} index");
                double want = vals[order[j]];
                Assert.That(double.IsNaN(want) ? double.IsNaN(gotV[row * k + j]) : gotV[row * k + j] == want, Is.True, $"{ctx}: row {row} pick {j} value {gotV[row * k + j]}, expected {want}");
            }
        }
    }

    [Test]
    public void TopK_matches_the_reference_on_views_ties_and_NaN([Values(DType.Float32, DType.Float64)] DType dtype)
    {
        ulong seed = FreshSeed();
        var gen = new Generator(seed);
        // Values from a small set, so rows have ties; some NaN.
        Func<double, double> coarse = v => Math.Round(v * 2) / 2;
        foreach (var shape in new[] { new[] { 7 }, new[] { 3, 9 }, new[] { 2, 5, 4 }, new[] { 4, 1, 6 } })
            foreach (var layout in Enum.GetValues<Layouts>())
                for (int dim = -1; dim < shape.Length; dim++)
                {
                    using var x0 = Make(shape, layout, gen, dtype, coarse);
                    using var nanMask = Tensor.Rand(shape, gen, dtype).Lt(0.1);
                    using var nan = Tensor.Full([], double.NaN, dtype);
                    using var x = Tensor.Where(nanMask, nan, x0);
                    int size = x.Size(dim);
                    foreach (int k in new[] { 0, 1, size / 2, size })
                        foreach (bool largest in new[] { true, false })
                        {
                            var (v, i) = x.TopK(k, dim, largest);
                            using (v) using (i)
                            {
                                Assert.That(i.DType, Is.EqualTo(DType.Int64));
                                Assert.That(v.DType, Is.EqualTo(dtype));
                                var expectShape = x.Shape; expectShape[dim < 0 ? dim + x.Rank : dim] = k;
                                Assert.That(v.Shape, Is.EqualTo(expectShape));
                                CheckSelection(x, dim, k, largest, v, i, $"TopK {Shape.Format(shape)} {layout} dim={dim} k={k} largest={largest} seed={seed}");
                            }
                        }
                    foreach (bool max in new[] { true, false })
                        foreach (bool keepDim in new[] { true, false })
                        {
                            var (v, i) = max ? x.MaxWithIndices(dim, keepDim) : x.MinWithIndices(dim, keepDim);
                            using (v) using (i)
                            {
                                using var vk = keepDim ? v.Contiguous() : v.Unsqueeze(dim < 0 ? dim + x.Rank : dim);
                                using var ik = keepDim ? i.Contiguous() : i.Unsqueeze(dim < 0 ? dim + x.Rank : dim);
                                CheckSelection(x, dim, 1, max, vk, ik, $"{(max ? "Max" : "Min")}WithIndices {Shape.Format(shape)} {layout} dim={dim} keepDim={keepDim} seed={seed}", nanFirst: true);
                                using var am = max ? x.ArgMax(dim, keepDim) : x.ArgMin(dim, keepDim);
                                Assert.That(i.ToArray<long>(), Is.EqualTo(am.ToArray<long>()), "agrees with ArgMax/ArgMin");
                            }
                        }
                }
    }

    [Test]
    public void Gradient_goes_to_the_selected_element_only_as_PyTorch()
    {
        // PyTorch 1.13: x = [1, 2, 2, 0]; x.max(0).values.backward() -> [0, 1, 0, 0];
        // x.topk(3).values.sum().backward() -> indices [1, 2, 0], grad [1, 1, 1, 0].
        using var x = Tensor.FromArray(new double[] { 1, 2, 2, 0 }).RequiresGrad_();
        var (v, i) = x.MaxWithIndices(0);
        using (v) using (i)
        {
            Assert.That(i.Item(), Is.EqualTo(1));
            v.Backward();
        }
        Assert.That(x.Grad!.ToArray<double>(), Is.EqualTo(new double[] { 0, 1, 0, 0 }));
        x.Grad.Dispose(); x.Grad = null;
        var (tv, ti) = x.TopK(3);
        using (tv) using (ti)
        {
            Assert.That(ti.ToArray<long>(), Is.EqualTo(new long[] { 1, 2, 0 }));
            using var s = tv.Sum();
            s.Backward();
        }
        Assert.That(x.Grad!.ToArray<double>(), Is.EqualTo(new double[] { 1, 1, 1, 0 }));
    }

    [Test]
    public void Bad_k_and_empty_dims_raise_as_PyTorch()
    {
        using var x = Tensor.Zeros([3, 2]);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => x.TopK(3, 1))!;
        Assert.That(ex.Message, Does.Contain("TopK").And.Contain("k = 3").And.Contain("dim 1").And.Contain("[3,2]"));
        Assert.Throws<ArgumentOutOfRangeException>(() => x.TopK(-1));
        using var e = Tensor.Zeros([0, 3]);
        Assert.That(Assert.Throws<ArgumentException>(() => e.MaxWithIndices(0))!.Message, Does.Contain("dim 0"));
        var (v, i) = e.MaxWithIndices(1);
        using (v) using (i) Assert.That(v.Shape, Is.EqualTo(new[] { 0 }));
        var (tv, ti) = e.TopK(2, 1);
        using (tv) using (ti) Assert.That(ti.Shape, Is.EqualTo(new[] { 0, 2 }));
        using var s = Tensor.Scalar(3);
        var (sv, si) = s.TopK(1);
        using (sv) using (si) Assert.That((sv.Item(), si.Item(), sv.Rank), Is.EqualTo((3.0, 0.0, 0)));
    }
}
