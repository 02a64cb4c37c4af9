using AttnCore.Tests.Reference;
using NUnit.Framework;
using static AttnCore.Tests.Reference.Check;

namespace AttnCore.Tests.Engine;

[TestFixture, Category("Engine")]
public class ElementwiseTests
{
    public record UnaryCase(string Name, Func<Tensor, Tensor> Op, Func<double, double> Ref, Func<double, double>? Domain = null, double Tol = 0)
    {
        public override string ToString() => Name;
    }

    static readonly Func<double, double> Positive = u => 0.05 + 4 * u;
    public static readonly UnaryCase[] Unary =
    [
        new("Neg", t => -t, x => -x),
        new("Abs", t => t.Abs(), Math.Abs),
        new("Exp", t => t.Exp(), Math.Exp),
        new("Log", t => t.Log(), Math.Log, Positive),
        new("Sqrt", t => t.Sqrt(), Math.Sqrt, Positive),
        new("Rsqrt", t => t.Rsqrt(), x => 1 / Math.Sqrt(x), Positive),
        new("Tanh", t => t.Tanh(), Math.Tanh),
        new("Sigmoid", t => t.Sigmoid(), x => 1 / (1 + Math.Exp(-x))),
        new("Relu", t => t.Relu(), x => Math.Max(x, 0)),
        new("Gelu", t => t.Gelu(), x => 0.5 * x * (1 + NdArray.Erf(x / Math.Sqrt(2))), null, 3e-7),
        new("GeluTanh", t => t.Gelu(tanhApproximation: true), x => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)))),
        new("Silu", t => t.Silu(), x => x / (1 + Math.Exp(-x))),
        new("Softplus", t => t.Softplus(), SoftplusRef),
        new("SoftplusPastThreshold", t => t.Softplus(), SoftplusRef, u => 60 * u - 30),
        new("Mish", t => t.Mish(), MishRef),
        new("LogSigmoid", t => t.LogSigmoid(), LogSigmoidRef),
        new("LogSigmoidLarge", t => t.LogSigmoid(), LogSigmoidRef, u => 200 * u - 100),
        new("Sin", t => t.Sin(), Math.Sin),
        new("Cos", t => t.Cos(), Math.Cos),
        new("Square", t => t.Square(), x => x * x),
        new("Reciprocal", t => t.Reciprocal(), x => 1 / x, Positive),
        new("Sign", t => t.Sign(), x => Math.Sign(x)),
        new("Pow2.5", t => t.Pow(2.5), x => Math.Pow(x, 2.5), Positive),
        new("PowSquare", t => t.Pow(2), x => x * x),
        new("AddScalar", t => t + 1.5, x => x + 1.5),
        new("ScalarSub", t => 2.0 - t, x => 2 - x),
        new("MulScalar", t => t * -3.0, x => x * -3),
        new("DivScalar", t => t / 4.0, x => x / 4),
        new("ScalarDiv", t => 2.0 / t, x => 2 / x, Positive),
        new("Clamp", t => t.Clamp(-0.5, 0.7), x => Math.Clamp(x, -0.5, 0.7)),
    ];

    // ln(1 + e) in float64: the series below 1e-4, where ln(1 + e) would round away e's low digits.
    static double Log1p(double e) => e < 1e-4 ? e - e * e / 2 + e * e * e / 3 : Math.Log(1 + e);
    /// <summary>PyTorch's softplus (beta 1, threshold 20) in float64.</summary>
    public static double SoftplusRef(double x) => x > 20 ? x : Log1p(Math.Exp(x));
    /// <summary>Mish x tanh(ln(1 + e^x)) in float64.</summary>
    public static double MishRef(double x) => x * Math.Tanh(Log1p(Math.Exp(x)));
    /// <summary>ln(1 / (1 + e^-x)) in float64, split by sign so e^-x never overflows.</summary>
    public static double LogSigmoidRef(double x) => x >= 0 ? -Log1p(Math.Exp(-x)) : x - Log1p(Math.Exp(x));

    static readonly int[][] Shapes = [[], [1], [7], [16], [17], [33], [3, 5], [2, 3, 4], [0, 3], [4, 1, 6]];

    [TestCaseSource(nameof(Unary))]
    public void Unary_op_matches_float64_reference_in_every_layout_and_dtype(UnaryCase c)
    {
        ulong seed = FreshSeed();
        var gen = new Generator(seed);
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
            foreach (var shape in Shapes)
                foreach (var layout in Enum.GetValues<Layouts>())
                {
                    using var x = Make(shape, layout, gen, dtype, c.Domain);
                    using var y = c.Op(x);
                    var expected = NdArray.From(x).Map(c.Ref);
                    var (rtol, atol) = Tol(dtype);
                    Close(y, expected, Math.Max(rtol, c.Tol), Math.Max(atol, c.Tol), $"{c.Name} {dtype} {Shape.Format(shape)} {layout} seed={seed}");
                    Assert.That(y.IsContiguous, Is.True);
                }
    }

    public record BinaryCase(string Name, Func<Tensor, Tensor, Tensor> Op, Func<double, double, double> Ref)
    {
        public override string ToString() => Name;
    }

    public static readonly BinaryCase[] Binary =
    [
        new("Add", (a, b) => a + b, (x, y) => x + y),
        new("Sub", (a, b) => a - b, (x, y) => x - y),
        new("Mul", (a, b) => a * b, (x, y) => x * y),
        new("Div", (a, b) => a / b, (x, y) => x / y),
        new("Maximum", (a, b) => a.Maximum(b), Math.Max),
        new("Minimum", (a, b) => a.Minimum(b), Math.Min),
        new("Pow", (a, b) => a.Abs().Pow(b), (x, y) => Math.Pow(Math.Abs(x), y)),
        new("Eq", (a, b) => a.Eq(b), (x, y) => x == y ? 1 : 0),
        new("Ne", (a, b) => a.Ne(b), (x, y) => x != y ? 1 : 0),
        new("Lt", (a, b) => a.Lt(b), (x, y) => x < y ? 1 : 0),
        new("Le", (a, b) => a.Le(b), (x, y) => x <= y ? 1 : 0),
        new("Gt", (a, b) => a.Gt(b), (x, y) => x > y ? 1 : 0),
        new("Ge", (a, b) => a.Ge(b), (x, y) => x >= y ? 1 : 0),
        // Gelu's backward in one pass: the gradient a times GELU'(b) (erf and tanh forms)
        new("GeluBackward", (a, b) => Tensor.GeluBackward(a, b), (g, x) => g * GeluGrad(x)),
        new("GeluTanhBackward", (a, b) => Tensor.GeluBackward(a, b, tanhApproximation: true), (g, x) => g * GeluTanhGrad(x)),
    ];

    internal static double GeluGrad(double x) => 0.5 * (1 + NdArray.Erf(x / Math.Sqrt(2))) + x * Math.Exp(-0.5 * x * x) / Math.Sqrt(2 * Math.PI);

    internal static double GeluTanhGrad(double x)
    {
        const double c = 0.044715, k = 0.7978845608028654; // sqrt(2/pi)
        double t = Math.Tanh(k * (x + c * x * x * x));
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * c * x * x);
    }

    static readonly (int[] A, int[] B)[] BroadcastPairs =
    [
        ([5], [5]), ([3, 4], [3, 4]), ([3, 1, 5], [4, 5]), ([1], [4, 1]), ([], [2, 3]), ([2, 3], []),
        ([4, 1], [1, 6]), ([2, 1, 3, 1], [5, 1, 7]), ([0, 3], [1, 3]), ([3, 0], [3, 1]), ([17], [1]), ([2, 33], [33]),
    ];

    [TestCaseSource(nameof(Binary))]
    public void Binary_op_broadcasts_like_numpy_and_matches_reference(BinaryCase c)
    {
        ulong seed = FreshSeed();
        var gen = new Generator(seed);
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
            foreach (var (sa, sb) in BroadcastPairs)
                foreach (var la in Enum.GetValues<Layouts>())
                {
                    using var a = Make(sa, la, gen, dtype);
                    using var b = Make(sb, Layouts.Strided, gen, dtype);
                    // Make some values equal so comparisons see ties.
                    using var y = c.Op(a, b);
                    var expected = NdArray.Zip(NdArray.From(a), NdArray.From(b), c.Ref);
                    var (rtol, atol) = Tol(dtype);
                    Close(y, expected, rtol * 4, atol * 4, $"{c.Name} {dtype} {Shape.Format(sa)} op {Shape.Format(sb)} {la} seed={seed}");
                }
    }

    [Test]
    public void Comparisons_see_ties_and_scalar_forms_work()
    {
        using var a = Tensor.FromArray(new float[] { 1, 2, 3, 2 });
        using var b = Tensor.FromArray(new float[] { 2, 2, 2, 2 });
        Assert.That(a.Eq(b).ToArray<float>(), Is.EqualTo(new float[] { 0, 1, 0, 1 }));
        Assert.That(a.Le(b).ToArray<float>(), Is.EqualTo(new float[] { 1, 1, 0, 1 }));
        Assert.That(a.Gt(2).ToArray<float>(), Is.EqualTo(new float[] { 0, 0, 1, 0 }));
        Assert.That(a.Ne(2).ToArray<float>(), Is.EqualTo(new float[] { 1, 0, 1, 0 }));
    }

    [Test]
    public void Where_and_MaskedFill_match_reference_with_broadcast_masks()
    {
        ulong seed = FreshSeed();
        var gen = new Generator(seed);
        using var x = Make([3, 4, 5], Layouts.Transposed, gen);
        using var y = Make([4, 1], Layouts.Contiguous, gen);
        using var cond = Make([3, 1, 5], Layouts.Strided, gen).Gt(0);
        using var w = Tensor.Where(cond, x, y);
        var c = NdArray.From(cond); var rx = NdArray.From(x); var ry = NdArray.From(y);
        var expected = NdArray.Zip(NdArray.Zip(c, rx, (m, v) => m != 0 ? v : double.NaN), ry, (v, alt) => double.IsNaN(v) ? alt : v);
        Close(w, expected, 0, 0, $"seed={seed}");

        using var mask = Tensor.FromArray(new float[] { 0, 1, 0, 1, 1 });
        using var filled = x.MaskedFill(mask, double.NegativeInfinity);
        var exp2 = NdArray.Zip(rx, NdArray.From(mask), (v, m) => m != 0 ? double.NegativeInfinity : v);
        Close(filled, exp2, 0, 0, $"seed={seed}");
    }

    [Test]
    public void Int64_tensors_support_index_arithmetic_but_not_float_functions()
    {
        using var i = Tensor.FromArray(new long[] { 1, 5, -3 });
        using var j = i + 2.0;
        Assert.That(j.ToArray<long>(), Is.EqualTo(new long[] { 3, 7, -1 }));
        using var k = i * i;
        Assert.That(k.ToArray<long>(), Is.EqualTo(new long[] { 1, 25, 9 }));
        var ex = Assert.Throws<ArgumentException>(() => i.Exp());
        Assert.That(ex!.Message, Does.Contain("Exp").And.Contain("int64"));
        Assert.Throws<DivideByZeroException>(() => i.Div(Tensor.FromArray(new long[] { 1, 0, 1 })));
    }

    [Test]
    public void Special_values_propagate_like_pytorch()
    {
        using var x = Tensor.FromArray(new float[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity, -0f, 1000f });
        Assert.That(x.Relu().ToArray<float>()[0], Is.NaN);
        Assert.That(x.Exp().ToArray<float>()[1], Is.EqualTo(float.PositiveInfinity));
        Assert.That(x.Exp().ToArray<float>()[2], Is.EqualTo(0f));
        Assert.That(x.Sigmoid().ToArray<float>()[4], Is.EqualTo(1f));
        using var other = Tensor.FromArray(new float[] { 1, 1, 1, 1, 1 });
        Assert.That(x.Maximum(other).ToArray<float>()[0], Is.NaN);
    }

    [Test]
    public void Large_ops_split_over_the_worker_pool_cover_every_element_once()
    {
        // Above 128K elements Map/Zip split their strided loop over the pool: whole runs per chunk when there are
        // many runs, equal pieces of the run when there is one long run. Each chunk must write exactly its part.
        int saved = AttnCore.Kernels.Cpu.WorkerPool.ThreadCount;
        AttnCore.Kernels.Cpu.WorkerPool.ThreadCount = 2;
        try
        {
            var g = new Generator(11);
            using var flat = Tensor.Randn([300_001], g);                 // one long contiguous run
            using var wide = Tensor.Randn([700, 400], g);
            using var transposed = wide.T;                              // 400 runs of 700 strided elements
            using var col = Tensor.Randn([700, 1], g);
            using var row = Tensor.Randn([1, 400], g);
            using var e1 = flat.Exp();
            using var e2 = transposed.Tanh();
            using var sum = col + row;                                  // broadcast: 700 runs of 400
            float[] f = flat.ToArray<float>(), w = wide.ToArray<float>(), c = col.ToArray<float>(), r = row.ToArray<float>();
            float[] y1 = e1.ToArray<float>(), y2 = e2.ToArray<float>(), y3 = sum.ToArray<float>();
            for (int i = 0; i < f.Length; i++)
                if (Math.Abs(y1[i] - Math.Exp(f[i])) > 1e-6 * (1 + Math.Exp(f[i]))) Assert.Fail($"Exp element {i}: {y1[i]} vs {Math.Exp(f[i])}");
            for (int i = 0; i < 400; i++)
                for (int j = 0; j < 700; j++)
                    if (Math.Abs(y2[i * 700 + j] - Math.Tanh(w[j * 400 + i])) > 1e-6) Assert.Fail($"Tanh of the transposed view at [{i},{j}]");
            for (int i = 0; i < 700; i++)
                for (int j = 0; j < 400; j++)
                    if (y3[i * 400 + j] != c[i] + r[j]) Assert.Fail($"broadcast Add at [{i},{j}]");
        }
        finally { AttnCore.Kernels.Cpu.WorkerPool.ThreadCount = saved; }
    }

    [Test]
    public void Binary_ops_reject_mismatched_shapes_and_dtypes_naming_the_op()
    {
        using var a = Tensor.Zeros([2, 3]);
        using var b = Tensor.Zeros([4, 3]);
        var ex = Assert.Throws<ArgumentException>(() => _ = a + b);
        Assert.That(ex!.Message, Does.Contain("Add").And.Contain("[2,3]").And.Contain("[4,3]"));
        using var d = Tensor.Zeros([2, 3], DType.Float64);
        ex = Assert.Throws<ArgumentException>(() => _ = a * d);
        Assert.That(ex!.Message, Does.Contain("Mul").And.Contain("float32").And.Contain("float64"));
        ex = Assert.Throws<ArgumentException>(() => a.MaskedFill(Tensor.Zeros([3, 3]), 1));
        Assert.That(ex!.Message, Does.Contain("MaskedFill"));
        Assert.Throws<ArgumentException>(() => a.Clamp(2, 1));
    }
}
