using AttnCore.Tests.Reference;
using CsCheck;
using NUnit.Framework;
using static AttnCore.Tests.Properties.PropertyGen;

namespace AttnCore.Tests.Properties;

/// <summary>
/// MatMul (1-d operands, batch broadcasting, transposed / strided / expanded views, 0- and 1-sized m, k, n and
/// batch dims, NaN and infinities) and the row ops Softmax, LogSoftmax and LayerNorm (any dim, views, rows with
/// ±inf and NaN) against the float64 reference; gradients against central differences on the same shapes.
/// </summary>
[TestFixture, Category("Engine")]
public class MatMulRowOpsPropertyTests
{
    static readonly double[] NonFinite = [0.0, -0.0, double.PositiveInfinity, double.NegativeInfinity, double.NaN];
    static readonly Gen<DType> Dtype = Gen.Int[0, 1].Select(d => d == 0 ? DType.Float32 : DType.Float64);

    /// <summary>A MatMul problem: operands (1-d or batched matrices, any view) whose product torch.matmul defines.</summary>
    public sealed record MatMulCase(DType Dtype, Operand A, Operand B)
    {
        public override string ToString() => $"{Dtype.Name()} a = {A}; b = {B}";
    }

    static Gen<(Operand A, Operand B)> MatMulOperands(Gen<int> dim, Gen<double> values) =>
        Gen.Select(dim, dim, dim, Shape(0, 2, dim), (m, k, n, batch) => (m, k, n, batch)).SelectMany(p =>
            Gen.Select(Gen.Int[0, 4], Gen.Int[0, 4], BroadcastableTo(p.batch), BroadcastableTo(p.batch), (va, vb, ba, bb) =>
                (A: va == 0 ? new[] { p.k } : [.. ba, p.m, p.k], B: vb == 0 ? new[] { p.k } : [.. bb, p.k, p.n]))
            .SelectMany(s => Operand(s.A, values).SelectMany(a => Operand(s.B, values).Select(b => (a, b)))));

    /// <summary>torch.matmul's definition: 1-d operands promoted to matrices and the added dim removed again.</summary>
    static NdArray MatMulReference(NdArray a, NdArray b)
    {
        var a2 = a.Rank == 1 ? new NdArray([1, a.Shape[0]], a.Data) : a;
        var b2 = b.Rank == 1 ? new NdArray([b.Shape[0], 1], b.Data) : b;
        var c = NdArray.MatMul(a2, b2);
        var shape = c.Shape.ToList();
        if (b.Rank == 1) shape.RemoveAt(shape.Count - 1);
        if (a.Rank == 1) shape.RemoveAt(shape.Count - (b.Rank == 1 ? 1 : 2));
        return new NdArray([.. shape], c.Data);
    }

    [Test]
    public void MatMul_matches_the_float64_reference_on_broadcast_batches_and_views() => MatMulValues(SuiteIterations);

    [Test]
    public void MatMul_gradient_matches_central_differences() => MatMulGradients(SuiteIterations / 5);

    [TestCase(false), TestCase(true)]
    public void Softmax_matches_the_float64_reference_along_any_dim(bool log) => SoftmaxValues(log, SuiteIterations);

    [Test]
    public void LayerNorm_matches_the_float64_reference() => LayerNormValues(SuiteIterations);

    [Test]
    public void Row_op_gradients_match_central_differences() => RowOpGradients(SuiteIterations / 5);

    public static void MatMulValues(int iterations)
    {
        var gen = Gen.Select(Dtype, MatMulOperands(Dim, Values(-3, 3, NonFinite)), (d, ab) => new MatMulCase(d, ab.A, ab.B));
        Run(gen, c =>
        {
            using var scope = new TensorScope();
            var y = c.A.Build(c.Dtype).MatMul(c.B.Build(c.Dtype));
            var (ra, rb) = (c.A.Reference(), c.B.Reference());
            var expected = Rounded(MatMulReference(ra, rb), c.Dtype);
            // Summation error grows with k and with sum |a||b| (not |sum a b|): bound each element by that.
            var magnitude = MatMulReference(ra.Map(Math.Abs), rb.Map(Math.Abs));
            int k = c.A.Shape[^1];
            // Subnormal products round to the subnormal spacing, not to a fraction of their magnitude: a floor of (k + 1) of it.
            double unit = c.Dtype == DType.Float32 ? 6e-8 : 1.2e-16, tiniest = c.Dtype == DType.Float32 ? float.Epsilon : double.Epsilon;
            Close(y, expected, 4 * unit, 1, i => 4 * (k + 1) * unit * magnitude.Data[i] + (k + 1) * tiniest);
        }, iterations);
    }

    public static void MatMulGradients(int iterations)
    {
        Run(MatMulOperands(Gen.Int[0, 3], Values(-2, 2)), t =>
        {
            using var scope = new TensorScope();
            var a = t.A.Leaf(DType.Float64).RequiresGrad_();
            var b = t.B.Leaf(DType.Float64).RequiresGrad_();
            GradCheck.Assert(v => t.A.ViewOf(v[0]).MatMul(t.B.ViewOf(v[1])), [a, b], name: "MatMul");
        }, iterations, t => $"a = {t.A}; b = {t.B}");
    }

    /// <summary>The dims of an operand's shape an op may be asked for, negative ones included.</summary>
    static Gen<int> AnyDim(int rank) => rank == 0 ? Gen.Int[-1, 0] : Gen.Int[-rank, rank - 1];

    static NdArray AlongLastDim(NdArray x, int dim, Func<double[], double[]> row)
    {
        if (x.Rank == 0) return new NdArray([], row(x.Data));
        int d = dim < 0 ? dim + x.Rank : dim;
        var perm = Enumerable.Range(0, x.Rank).ToArray();
        (perm[d], perm[^1]) = (perm[^1], perm[d]);
        return x.Permute(perm).Rows(row).Permute(perm);   // a swap is its own inverse
    }

    public static void SoftmaxValues(bool log, int iterations)
    {
        var gen = Gen.Select(Dtype, Operand(Shape(0, 3), Values(-30, 30, NonFinite.Concat([1e30, -1e30]).ToArray())), (d, x) => (Dtype: d, X: x))
            .SelectMany(t => AnyDim(t.X.Shape.Length).Select(dim => (t.Dtype, t.X, Dim: dim)));
        Run(gen, t =>
        {
            using var scope = new TensorScope();
            var x = t.X.Build(t.Dtype);
            var y = log ? x.LogSoftmax(t.Dim) : x.Softmax(t.Dim);
            var expected = Rounded(AlongLastDim(t.X.Reference(), t.Dim, log ? NdArray.LogSoftmax : NdArray.Softmax), t.Dtype);
            double tol = t.Dtype == DType.Float32 ? 2e-6 : 1e-13;
            Close(y, expected, 4 * tol, tol);
        }, iterations, t => $"{(log ? "LogSoftmax" : "Softmax")} {t.Dtype.Name()} dim {t.Dim} x = {t.X}");
    }

    /// <summary>A layer-norm problem: input, how many trailing dims are normalised, optional weight and bias.</summary>
    public sealed record LayerNormCase(DType Dtype, Operand X, int Dims, Operand? Weight, Operand? Bias)
    {
        public int[] Normalized => X.Shape[^Dims..];
        public override string ToString() => $"{Dtype.Name()} over {Dims} dim(s) x = {X}; weight = {Weight?.ToString() ?? "none"}; bias = {Bias?.ToString() ?? "none"}";
    }

    static Gen<LayerNormCase> LayerNormCases(Gen<int> dim, Gen<double> values) =>
        Gen.Select(Dtype, Operand(Shape(1, 3, dim), values), (d, x) => (d, x)).SelectMany(t =>
            Gen.Int[1, Math.Min(2, t.x.Shape.Length)].SelectMany(nd =>
            {
                var normalized = t.x.Shape[^nd..];
                var affine = Gen.Int[0, 2].SelectMany(present => present == 0 ? Gen.Const((Operand?)null) : Operand(normalized, Values(-2, 2)).Select(o => (Operand?)o));
                return Gen.Select(affine, affine, (w, b) => new LayerNormCase(t.d, t.x, nd, w, b));
            }));

    /// <summary>
    /// The float64 layer norm, and each output's condition number (1 + max|x| / std) · (1 + |w|): a row offset far
    /// from zero relative to its spread is ill-conditioned, and any float32 kernel loses that many ulps on it.
    /// </summary>
    static (NdArray Y, double[] Condition) LayerNormReference(LayerNormCase c, double eps)
    {
        var x = c.X.Reference();
        int cols = (int)NdArray.Numel(c.Normalized);
        var w = c.Weight?.Reference().Data; var b = c.Bias?.Reference().Data;
        var y = new double[x.Data.Length];
        var condition = new double[y.Length];
        for (int r = 0; cols > 0 && r < y.Length / cols; r++)
        {
            var row = x.Data.AsSpan(r * cols, cols).ToArray();
            double mean = row.Average(), variance = row.Select(v => (v - mean) * (v - mean)).Average();
            double rstd = 1 / Math.Sqrt(variance + eps), maxAbs = row.Max(Math.Abs);
            for (int j = 0; j < cols; j++)
            {
                y[r * cols + j] = (row[j] - mean) * rstd * (w?[j] ?? 1) + (b?[j] ?? 0);
                condition[r * cols + j] = (1 + maxAbs * rstd) * (1 + Math.Abs(w?[j] ?? 1));
            }
        }
        return (new NdArray(x.Shape, y), condition);
    }

    public static void LayerNormValues(int iterations)
    {
        // Rows offset by up to 1e3 from zero test the variance for cancellation; NaN and inf poison their row only.
        var offsetValues = Gen.Select(Values(-3, 3), Gen.Int[0, 2], (v, offset) => (double)(float)(v + offset * 500));
        var nonFinite = Gen.Int[0, NonFinite.Length - 1].Select(i => NonFinite[i]);
        var values = Gen.Int[0, 9].SelectMany(k => k == 0 ? nonFinite : offsetValues);
        Run(LayerNormCases(Dim, values), c =>
        {
            using var scope = new TensorScope();
            var y = c.X.Build(c.Dtype).LayerNorm(c.Normalized, c.Weight?.Build(c.Dtype), c.Bias?.Build(c.Dtype));
            var (reference, condition) = LayerNormReference(c, 1e-5);
            double tol = c.Dtype == DType.Float32 ? 1e-6 : 1e-14;
            Close(y, Rounded(reference, c.Dtype), tol, tol, i => condition[i]);
        }, iterations);
    }

    public static void RowOpGradients(int iterations)
    {
        var small = Gen.Int[0, 3];
        var softmax = Gen.Select(Operand(Shape(0, 3, small), Values(-3, 3)), Gen.Int[0, 1], (x, log) => (x, log)).SelectMany(t =>
            AnyDim(t.x.Shape.Length).Select(dim => (t.x, Log: t.log == 1, Dim: dim)));
        Run(softmax, t =>
        {
            using var scope = new TensorScope();
            var leaf = t.x.Leaf(DType.Float64).RequiresGrad_();
            GradCheck.Assert(v => t.Log ? t.x.ViewOf(v[0]).LogSoftmax(t.Dim) : t.x.ViewOf(v[0]).Softmax(t.Dim), [leaf], name: t.Log ? "LogSoftmax" : "Softmax");
        }, iterations, t => $"{(t.Log ? "LogSoftmax" : "Softmax")} dim {t.Dim} x = {t.x}");

        Run(LayerNormCases(small, Values(-3, 3)), c =>
        {
            using var scope = new TensorScope();
            var leaves = new[] { c.X, c.Weight, c.Bias }.Where(o => o is not null).Select(o => o!.Leaf(DType.Float64).RequiresGrad_()).ToArray();
            GradCheck.Assert(v =>
            {
                int i = 0;
                var x = c.X.ViewOf(v[i++]);
                var w = c.Weight is null ? null : c.Weight.ViewOf(v[i++]);
                var b = c.Bias is null ? null : c.Bias.ViewOf(v[i++]);
                return x.LayerNorm(c.Normalized, w, b);
            }, leaves, name: "LayerNorm");
        }, iterations, c => c.ToString());
    }
}
