using AttnCore.Tests.Reference;
using NUnit.Framework;
using static AttnCore.Tests.Reference.Check;

namespace AttnCore.Tests.Engine;

[TestFixture, Category("Engine")]
public class MatMulTests
{
    static readonly (int[] A, int[] B)[] Cases =
    [
        ([2, 3], [3, 4]), ([1, 1], [1, 1]), ([7, 13], [13, 5]), ([33, 17], [17, 65]), ([4], [4]), ([3, 4], [4]), ([4], [4, 3]),
        ([2, 3, 4], [4, 5]), ([5, 4], [2, 4, 3]), ([2, 1, 3, 4], [5, 4, 2]), ([3, 2, 5], [3, 5, 2]), ([0, 3], [3, 4]), ([2, 0], [0, 3]),
        ([2, 3, 0], [0, 4]), ([6, 1, 8], [1, 8, 9]),
    ];

    [Test]
    public void MatMul_matches_reference_with_batch_broadcasting_and_transposed_views([Values(DType.Float32, DType.Float64)] DType dtype)
    {
        ulong seed = FreshSeed();
        var gen = new Generator(seed);
        foreach (var (sa, sb) in Cases)
            foreach (var la in Enum.GetValues<Layouts>())
                foreach (var lb in Enum.GetValues<Layouts>())
                {
                    using var a = Make(sa, la, gen, dtype);
                    using var b = Make(sb, lb, gen, dtype);
                    using var c = a.MatMul(b);
                    var ra = NdArray.From(a); var rb = NdArray.From(b);
                    // Promote 1-d operands like torch.matmul, then drop the added dims.
                    var pa = ra.Rank == 1 ? new NdArray([1, ra.Shape[0]], ra.Data) : ra;
                    var pb = rb.Rank == 1 ? new NdArray([rb.Shape[0], 1], rb.Data) : rb;
                    var r = NdArray.MatMul(pa, pb);
                    int[] shape = r.Shape;
                    if (ra.Rank == 1 && rb.Rank == 1) shape = [];
                    else if (ra.Rank == 1) shape = [.. shape[..^2], shape[^1]];
                    else if (rb.Rank == 1) shape = shape[..^1];
                    int k = sa[^1];
                    double tol = dtype == DType.Float64 ? 1e-12 : 1e-5 * Math.Sqrt(Math.Max(k, 1));
                    Close(c, new NdArray(shape, r.Data), tol, tol, $"{Shape.Format(sa)}@{Shape.Format(sb)} {la}/{lb} {dtype} seed={seed}");
                }
    }

    [Test]
    public void MatMul_of_a_transposed_view_reaches_the_gemm_without_a_copy_and_agrees()
    {
        ulong seed = FreshSeed();
        var gen = new Generator(seed);
        using var w = Make([64, 48], Layouts.Contiguous, gen);
        using var x = Make([5, 64], Layouts.Contiguous, gen);
        using var wt = w.T;
        Assert.That(wt.IsContiguous, Is.False);
        using var y = x.MatMul(w);          // [5,48]
        using var y2 = y.MatMul(wt);        // [5,64] via transposed operand
        var r = NdArray.MatMul(NdArray.MatMul(NdArray.From(x), NdArray.From(w)), NdArray.From(w).Permute([1, 0]));
        Close(y2, r, 1e-4, 1e-4, $"seed={seed}");
    }

    // Tensor.Linear against the float64 reference x Wᵀ + b: the fused GEMM (contiguous rows, float32 and float64), a
    // decoder step's few rows (Gemv, adding the bias as it stores), no bias, and an input view whose rows are not contiguous (unfused).
    [Test]
    public void Linear_matches_x_times_w_transposed_plus_bias([Values(DType.Float32, DType.Float64)] DType dtype)
    {
        ulong seed = FreshSeed();
        var gen = new Generator(seed);
        foreach (var (xs, n, layout) in new (int[], int, Layouts)[] { ([2, 37, 50], 70, Layouts.Contiguous), ([3, 50], 40, Layouts.Contiguous), ([50], 33, Layouts.Contiguous),
                     ([40, 50], 16, Layouts.Transposed), ([2, 40, 50], 100, Layouts.Strided) })
            foreach (bool withBias in new[] { true, false })
            {
                int k = xs[^1];
                // Contiguous cases take rows 1.. of a taller tensor: the GEMM then reads A from an offset.
                using var whole = Make(layout == Layouts.Contiguous ? [xs[0] + 1, .. xs[1..]] : xs, layout, gen, dtype);
                using var x = whole.Narrow(0, layout == Layouts.Contiguous ? 1 : 0, xs[0]);
                using var w = Make([n, k], Layouts.Contiguous, gen, dtype);
                using var b = Make([n], Layouts.Contiguous, gen, dtype);
                using var y = Tensor.Linear(x, w, withBias ? b : null);
                var rx = NdArray.From(x);
                var r = NdArray.MatMul(rx.Rank == 1 ? new NdArray([1, k], rx.Data) : rx, NdArray.From(w).Permute([1, 0]));
                var data = (double[])r.Data.Clone();
                if (withBias) for (int i = 0; i < data.Length; i++) data[i] += NdArray.From(b).Data[i % n];
                int[] shape = [.. xs[..^1], n];
                Assert.That(y.Shape, Is.EqualTo(shape));
                double tol = dtype == DType.Float64 ? 1e-12 : 1e-5 * Math.Sqrt(k);
                Close(y, new NdArray(shape, data), tol, tol, $"x {Shape.Format(xs)} {layout} n={n} bias={withBias} {dtype} seed={seed}");
            }
    }

    // The fused op gives the bits of the product followed by the add it replaces, forward and backward: on the
    // blocked GEMM (100 rows) and on Gemv (3 rows, a decoder step).
    [TestCase(4, 25)]
    [TestCase(1, 3)]
    public void Linear_equals_matmul_then_add_bit_for_bit_with_its_gradients(int batch, int rows)
    {
        ulong seed = FreshSeed();
        var gen = new Generator(seed);
        using var x0 = Make([batch, rows, 96], Layouts.Contiguous, gen);
        using var w0 = Make([130, 96], Layouts.Contiguous, gen);
        using var b0 = Make([130], Layouts.Contiguous, gen);
        using var g = Make([batch, rows, 130], Layouts.Contiguous, gen);
        Tensor[] Run(bool fused)
        {
            var (x, w, b) = (x0.Clone().RequiresGrad_(), w0.Clone().RequiresGrad_(), b0.Clone().RequiresGrad_());
            Tensor y;
            if (fused) y = Tensor.Linear(x, w, b);
            else { using var wt = w.T; using var p = x.MatMul(wt); y = p + b; }
            y.Backward(g);
            return [y, x.Grad!, w.Grad!, b.Grad!];
        }
        var f = Run(true); var u = Run(false);
        string[] names = ["y", "dx", "dW", "db"];
        for (int i = 0; i < 4; i++)
            Assert.That(f[i].ToArray<float>(), Is.EqualTo(u[i].ToArray<float>()), $"{names[i]} seed={seed}");
    }

    [Test]
    public void Linear_errors_name_the_op_and_the_shapes()
    {
        using var x = Tensor.Zeros([2, 3]);
        using var w = Tensor.Zeros([4, 5]);
        Assert.That(Assert.Throws<ArgumentException>(() => Tensor.Linear(x, w))!.Message, Does.Contain("Linear").And.Contain("[2,3]").And.Contain("[4,5]"));
        using var w2 = Tensor.Zeros([4, 3]);
        using var b = Tensor.Zeros([5]);
        Assert.That(Assert.Throws<ArgumentException>(() => Tensor.Linear(x, w2, b))!.Message, Does.Contain("Linear").And.Contain("bias").And.Contain("[5]"));
        using var b64 = Tensor.Zeros([4], DType.Float64);
        Assert.That(Assert.Throws<ArgumentException>(() => Tensor.Linear(x, w2, b64))!.Message, Does.Contain("Linear"));
    }

    [Test]
    public void MatMul_errors_name_op_and_shapes()
    {
        using var a = Tensor.Zeros([2, 3]);
        using var b = Tensor.Zeros([4, 5]);
        var ex = Assert.Throws<ArgumentException>(() => a.MatMul(b));
        Assert.That(ex!.Message, Is.EqualTo("MatMul: inner dimensions differ: [2,3] @ [4,5]"));
        using var s = Tensor.Scalar(1);
        Assert.That(Assert.Throws<ArgumentException>(() => s.MatMul(a))!.Message, Does.Contain("MatMul"));
        using var c = Tensor.Zeros([2, 3, 4]);
        using var d = Tensor.Zeros([3, 4, 5]);
        Assert.That(Assert.Throws<ArgumentException>(() => c.MatMul(d))!.Message, Does.Contain("MatMul").And.Contain("broadcast"));
        using var i = Tensor.Zeros([3, 3], DType.Int64);
        Assert.That(Assert.Throws<ArgumentException>(() => i.MatMul(i))!.Message, Does.Contain("MatMul").And.Contain("int64"));
    }
}
