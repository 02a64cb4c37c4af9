using NUnit.Framework;

namespace AttnCore.Tests.Engine;

/// <summary>
/// The public batch-norm backward op (Tensor.BatchNorm2dBackward, which OpKind.BatchNorm2d's rule calls) against the
/// textbook formula in float64 written here, on a strided input, with and without a weight; and its argument checks.
/// </summary>
[TestFixture, Category("Engine")]
public class BatchNormBackwardTests
{
    // dx = w·invstd·(dy − mean(dy) − x̂·mean(dy·x̂)), dw = Σ dy·x̂, db = Σ dy over N, H, W (x̂ = (x − mean)·invstd).
    static (double[] Dx, double[] Dw, double[] Db, double[] Mean, double[] Invstd) Reference(double[] x, double[] dy, double[]? w, int n, int c, int hw, double eps)
    {
        var (dx, dw, db, mean, inv) = (new double[x.Length], new double[c], new double[c], new double[c], new double[c]);
        double m = (double)n * hw;
        for (int ch = 0; ch < c; ch++)
        {
            IEnumerable<int> At() => Enumerable.Range(0, n).SelectMany(i => Enumerable.Range(0, hw).Select(k => (i * c + ch) * hw + k));
            mean[ch] = At().Sum(i => x[i]) / m;
            inv[ch] = 1 / Math.Sqrt(At().Sum(i => (x[i] - mean[ch]) * (x[i] - mean[ch])) / m + eps);
            double mu = mean[ch], s = inv[ch];
            db[ch] = At().Sum(i => dy[i]);
            dw[ch] = At().Sum(i => dy[i] * (x[i] - mu) * s);
            foreach (int i in At()) dx[i] = (w?[ch] ?? 1) * s * (dy[i] - db[ch] / m - (x[i] - mu) * s * dw[ch] / m);
        }
        return (dx, dw, db, mean, inv);
    }

    [TestCase(true), TestCase(false)]
    public void Backward_op_matches_the_float64_formula_on_a_strided_input(bool withWeight)
    {
        const int n = 3, c = 2, h = 4, wd = 3;
        const double eps = 1e-5;
        var gen = new Generator(7);
        // x is a [N, C, H, W] view of a [N, C, W, H] tensor (transposed last dims): the op must read it at its strides.
        using var raw = Tensor.Randn([n, c, wd, h], gen, DType.Float64);
        using var x = raw.Transpose(2, 3);
        using var dy = Tensor.Randn([n, c, h, wd], gen, DType.Float64);
        double[] w = [1.5, -0.7];
        using var xc = x.Contiguous();
        double[] xs = xc.ToArray<double>();
        var want = Reference(xs, dy.ToArray<double>(), withWeight ? w : null, n, c, h * wd, eps);
        using var mean = Tensor.FromArray(want.Mean);
        using var invstd = Tensor.FromArray(want.Invstd);
        using var weight = withWeight ? Tensor.FromArray(w) : null;

        var (dx, dWeight, dBias) = Tensor.BatchNorm2dBackward(dy, x, mean, invstd, weight, wantWeight: true, wantBias: true);
        using (dx) using (dWeight) using (dBias)
        {
            Assert.That(dx.Shape, Is.EqualTo(new[] { n, c, h, wd }));
            Assert.That(dx.ToArray<double>(), Is.EqualTo(want.Dx).Within(1e-12));
            Assert.That(dWeight!.ToArray<double>(), Is.EqualTo(want.Dw).Within(1e-12));
            Assert.That(dBias!.ToArray<double>(), Is.EqualTo(want.Db).Within(1e-12));
        }
        var (dx2, noWeight, noBias) = Tensor.BatchNorm2dBackward(dy, x, mean, invstd, weight, wantWeight: false, wantBias: false);
        using (dx2)
        {
            Assert.That((noWeight, noBias), Is.EqualTo(((Tensor?)null, (Tensor?)null)), "gradients not asked for are not computed");
            Assert.That(dx2.ToArray<double>(), Is.EqualTo(want.Dx).Within(1e-12));
        }
    }

    [Test]
    public void Batch_norm_records_its_own_op_kind_and_not_a_custom_op()
    {
        using var x = Tensor.Randn([2, 3, 2, 2], 1, DType.Float64).RequiresGrad_();
        using var w = Tensor.Ones([3], DType.Float64).RequiresGrad_();
        using var y = x.BatchNorm2d(null, null, w, null, training: true);
        Assert.That(y.GradFn!.Kind, Is.EqualTo(OpKind.BatchNorm2d));
        Assert.That(y.GradFn.Custom, Is.Null);
        Assert.That(y.GradFn.Inputs, Has.Length.EqualTo(2), "x and the weight; no placeholder for the missing bias");
    }

    [Test]
    public void Bad_arguments_name_the_op_and_the_shapes()
    {
        using var x = Tensor.Randn([2, 3, 2, 2], 1);
        using var dy = Tensor.Randn([2, 3, 2, 2], 2);
        using var stat = Tensor.Ones([3]);
        using var wrongStat = Tensor.Ones([4]);
        using var wrongDy = Tensor.Randn([2, 3, 2, 1], 3);
        using var flat = Tensor.Randn([6, 4], 4);
        using var stat64 = Tensor.Ones([3], DType.Float64);

        var e = Assert.Throws<ArgumentException>(() => Tensor.BatchNorm2dBackward(wrongDy, x, stat, stat, null));
        Assert.That(e!.Message, Does.StartWith("BatchNorm2dBackward: gradient").And.Contain("[2,3,2,1]").And.Contain("[2,3,2,2]"));
        e = Assert.Throws<ArgumentException>(() => Tensor.BatchNorm2dBackward(dy, x, wrongStat, stat, null));
        Assert.That(e!.Message, Does.StartWith("BatchNorm2dBackward: mean must be [3]").And.Contain("[4]"));
        e = Assert.Throws<ArgumentException>(() => Tensor.BatchNorm2dBackward(dy, x, stat, stat, wrongStat));
        Assert.That(e!.Message, Does.StartWith("BatchNorm2dBackward: weight must be [3]"));
        e = Assert.Throws<ArgumentException>(() => Tensor.BatchNorm2dBackward(flat, flat, stat, stat, null));
        Assert.That(e!.Message, Does.StartWith("BatchNorm2dBackward: input must be [N, C, H, W]").And.Contain("[6,4]"));
        e = Assert.Throws<ArgumentException>(() => Tensor.BatchNorm2dBackward(dy, x, stat, stat64, null));
        Assert.That(e!.Message, Does.StartWith("BatchNorm2dBackward").And.Contain("float64"));
    }
}
