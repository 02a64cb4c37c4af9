using AttnCore.Tests.Reference;
using CsCheck;
using NUnit.Framework;
using static AttnCore.Tests.Properties.PropertyGen;

namespace AttnCore.Tests.Properties;

/// <summary>
/// Every element-wise unary and binary op against the float64 reference on generated shapes (0- and 1-sized
/// dims, ranks 0 to 3), non-contiguous views (transposed, strided, expanded), broadcasting, and the IEEE specials
/// the op defines (±0, ±inf, NaN, huge, tiny, subnormal); gradients against central differences (GradCheck) on
/// the same shapes and views. Float32 results are compared with the reference rounded to float32.
/// </summary>
[TestFixture, Category("Engine")]
public class ElementwisePropertyTests
{
    /// <summary>An op, its float64 definition, the values it is tried on, and its float32 tolerance.</summary>
    public sealed record UnaryCase(string Name, Func<Tensor, Tensor> Op, Func<double, double> Reference, Gen<double> Values, Gen<double> GradValues, double Atol32 = 0, double Rtol32 = 4e-6, double Atol64 = 1e-300)
    {
        public override string ToString() => Name;
    }

    static readonly Gen<double> Moderate = Values(-3, 3);
    static readonly Gen<double> Positive = Values(0.2, 3);
    static readonly Gen<double> AwayFromZero = Values(-3, 3).Select(v => v >= 0 ? v + 0.2 : v - 0.2);
    static readonly double[] NoHuge = [0.0, -0.0, double.PositiveInfinity, double.NegativeInfinity, double.NaN, 1e-30, -1e-30, 1e-40, -1e-40];
    // Static fields initialise in order: these come before the tables that use them.
    // Maximum and Minimum have a kink where a = b, Clamp at its bounds ±0.5: gradients are checked away from kinks.
    static readonly Gen<double> QuarterGrid = Gen.Int[-3, 3].Select(i => i + 0.25);
    static readonly Gen<double> ThreeQuarterGrid = Gen.Int[-3, 3].Select(i => i + 0.75);

    static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));
    static double GeluTanh(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

    public static readonly UnaryCase[] Unary =
    [
        new("Neg", x => -x, x => -x, Values(-1e3, 1e3, Extremes), Moderate),
        new("Abs", x => x.Abs(), Math.Abs, Values(-1e3, 1e3, Extremes), AwayFromZero),
        new("Exp", x => x.Exp(), Math.Exp, Values(-90, 90, Extremes), Moderate),
        new("Log", x => x.Log(), Math.Log, Values(1e-3, 1e3, Extremes), Positive, Atol32: 2e-7),
        new("Sqrt", x => x.Sqrt(), Math.Sqrt, Values(0, 1e4, Extremes), Positive),
        new("Rsqrt", x => x.Rsqrt(), x => 1 / Math.Sqrt(x), Values(1e-3, 1e3, Extremes), Positive),
        new("Tanh", x => x.Tanh(), Math.Tanh, Values(-20, 20, Extremes), Moderate),
        new("Sigmoid", x => x.Sigmoid(), Sigmoid, Values(-50, 50, Extremes), Moderate, Atol32: 1e-7),
        new("Relu", x => x.Relu(), x => double.IsNaN(x) ? x : Math.Max(x, 0), Values(-1e3, 1e3, Extremes), AwayFromZero),
        new("Gelu", x => x.Gelu(), x => x * 0.5 * (1 + NdArray.Erf(x / Math.Sqrt(2))), Values(-10, 10, Extremes), Moderate, Atol32: 1e-6, Atol64: 1e-14),
        new("GeluTanh", x => x.Gelu(tanhApproximation: true), GeluTanh, Values(-10, 10, Extremes), Moderate, Atol32: 1e-6, Atol64: 1e-14),
        new("Silu", x => x.Silu(), x => x * Sigmoid(x), Values(-50, 50, Extremes), Moderate, Atol32: 1e-6, Atol64: 1e-14),
        new("Softplus", x => x.Softplus(), Engine.ElementwiseTests.SoftplusRef, Values(-50, 50, Extremes), Moderate, Atol32: 1e-7, Atol64: 1e-14),
        new("Mish", x => x.Mish(), Engine.ElementwiseTests.MishRef, Values(-50, 50, Extremes), Moderate, Atol32: 1e-6, Atol64: 1e-14),
        new("LogSigmoid", x => x.LogSigmoid(), Engine.ElementwiseTests.LogSigmoidRef, Values(-100, 100, Extremes), Moderate, Atol32: 1e-7, Atol64: 1e-14),
        new("Sin", x => x.Sin(), Math.Sin, Values(-100, 100, NoHuge), Moderate, Atol32: 2e-6),
        new("Cos", x => x.Cos(), Math.Cos, Values(-100, 100, NoHuge), Moderate, Atol32: 2e-6),
        new("Square", x => x.Square(), x => x * x, Values(-1e3, 1e3, Extremes), Moderate),
        new("Reciprocal", x => x.Reciprocal(), x => 1 / x, Values(-1e3, 1e3, Extremes), AwayFromZero),
        new("Sign", x => x.Sign(), x => double.IsNaN(x) ? x : Math.Sign(x), Values(-1e3, 1e3, Extremes), AwayFromZero),
        new("AddScalar", x => x + 2.5, x => x + 2.5, Values(-1e3, 1e3, Extremes), Moderate),
        new("MulScalar", x => x * -1.5, x => x * -1.5, Values(-1e3, 1e3, Extremes), Moderate),
        new("PowScalar", x => x.Pow(2.5), x => Math.Pow(x, 2.5), Values(0, 1e3, Extremes), Positive),
        new("PowScalarOddInteger", x => x.Pow(3), x => Math.Pow(x, 3), Values(-1e3, 1e3, Extremes), Moderate),
        new("RSubScalar", x => 2.5 - x, x => 2.5 - x, Values(-1e3, 1e3, Extremes), Moderate),
        new("RDivScalar", x => 2.5 / x, x => 2.5 / x, Values(-1e3, 1e3, Extremes), AwayFromZero),
        new("ClampMin", x => x.Clamp(min: -0.5), x => Math.Max(x, -0.5), Values(-3, 3, Extremes), QuarterGrid),
        new("ClampMax", x => x.Clamp(max: 0.5), x => Math.Min(x, 0.5), Values(-3, 3, Extremes), QuarterGrid),
        new("ClampBoth", x => x.Clamp(-0.5, 0.5), x => Math.Min(Math.Max(x, -0.5), 0.5), Values(-3, 3, Extremes), QuarterGrid),
    ];

    /// <summary>A binary op and its float64 definition; comparisons give 1 or 0.</summary>
    public sealed record BinaryCase(string Name, Func<Tensor, Tensor, Tensor> Op, Func<double, double, double> Reference, Gen<double>? GradA = null, Gen<double>? GradB = null, double Rtol32 = 0)
    {
        public override string ToString() => Name;
    }

    static double Bool(bool b) => b ? 1 : 0;


    public static readonly BinaryCase[] Binary =
    [
        new("Add", (a, b) => a + b, (a, b) => a + b, Moderate, Moderate),
        new("Sub", (a, b) => a - b, (a, b) => a - b, Moderate, Moderate),
        new("Mul", (a, b) => a * b, (a, b) => a * b, Moderate, Moderate),
        new("Div", (a, b) => a / b, (a, b) => a / b, Moderate, AwayFromZero),
        new("Pow", (a, b) => a.Pow(b), Math.Pow, Positive, Moderate, Rtol32: 4e-6),
        new("Maximum", (a, b) => a.Maximum(b), Math.Max, QuarterGrid, ThreeQuarterGrid),
        new("Minimum", (a, b) => a.Minimum(b), Math.Min, QuarterGrid, ThreeQuarterGrid),
        new("Eq", (a, b) => a.Eq(b), (a, b) => Bool(a == b)),
        new("Ne", (a, b) => a.Ne(b), (a, b) => Bool(a != b)),
        new("Lt", (a, b) => a.Lt(b), (a, b) => Bool(a < b)),
        new("Le", (a, b) => a.Le(b), (a, b) => Bool(a <= b)),
        new("Gt", (a, b) => a.Gt(b), (a, b) => Bool(a > b)),
        new("Ge", (a, b) => a.Ge(b), (a, b) => Bool(a >= b)),
    ];

    public static readonly DType[] Dtypes = [DType.Float32, DType.Float64];

    [TestCaseSource(nameof(Unary))]
    public void Unary_op_matches_the_float64_reference(UnaryCase c) => UnaryValues(c, SuiteIterations);

    [TestCaseSource(nameof(Binary))]
    public void Binary_op_matches_the_float64_reference_with_broadcasting(BinaryCase c) => BinaryValues(c, SuiteIterations);

    [TestCaseSource(nameof(Unary))]
    public void Unary_op_gradient_matches_central_differences(UnaryCase c) => UnaryGradients(c, SuiteIterations / 5);

    /// <summary>The binary ops with a gradient (comparisons have none).</summary>
    public static IEnumerable<BinaryCase> Differentiable => Binary.Where(c => c.GradA is not null);

    [TestCaseSource(nameof(Differentiable))]
    public void Binary_op_gradient_matches_central_differences(BinaryCase c) => BinaryGradients(c, SuiteIterations / 5);

    public static void UnaryValues(UnaryCase c, int iterations)
    {
        var gen = Gen.Select(Gen.Int[0, 1], Operand(Shape(), c.Values), (d, x) => (Dtype: Dtypes[d], X: x));
        Run(gen, t =>
        {
            using var scope = new TensorScope();
            var y = c.Op(t.X.Build(t.Dtype));
            var x = t.X.Reference();
            var expected = Rounded(x.Map(v => c.Reference(t.Dtype == DType.Float32 ? (float)v : v)), t.Dtype);
            var (rtol, atol) = t.Dtype == DType.Float32 ? (c.Rtol32, c.Atol32) : (1e-12, c.Atol64);
            // An absolute tolerance is relative to the input's size (gelu(x) = x (1 + erf) / 2 cancels where erf ~ -1).
            Close(y, expected, rtol, atol, i => double.IsFinite(x.Data[i]) ? Math.Max(1, Math.Abs(x.Data[i])) : 1);
        }, iterations, t => $"{c.Name} {t.Dtype.Name()} x = {t.X}");
    }

    public static void BinaryValues(BinaryCase c, int iterations)
    {
        var gen = Gen.Int[0, 1].SelectMany(d => Shape(0, 3).SelectMany(s =>
            Operand(BroadcastableTo(s), Values(-1e3, 1e3, Extremes)).SelectMany(a =>
                Operand(BroadcastableTo(s), Values(-1e3, 1e3, Extremes)).Select(b => (Dtype: Dtypes[d], A: a, B: b)))));
        Run(gen, t =>
        {
            using var scope = new TensorScope();
            var y = c.Op(t.A.Build(t.Dtype), t.B.Build(t.Dtype));
            var expected = Rounded(NdArray.Zip(t.A.Reference(), t.B.Reference(), c.Reference), t.Dtype);
            Close(y, expected, t.Dtype == DType.Float32 ? c.Rtol32 : 1e-12, 1e-300);
        }, iterations, t => $"{c.Name} {t.Dtype.Name()} a = {t.A}; b = {t.B}");
    }

    public static void UnaryGradients(UnaryCase c, int iterations)
    {
        Run(Operand(Shape(0, 3, SmallDim), c.GradValues), x =>
        {
            using var scope = new TensorScope();
            var leaf = x.Leaf(DType.Float64).RequiresGrad_();
            GradCheck.Assert(v => c.Op(x.ViewOf(v[0])), [leaf], name: c.Name);
        }, iterations, x => $"{c.Name} x = {x}");
    }

    public static void BinaryGradients(BinaryCase c, int iterations)
    {
        var gen = Shape(0, 3, SmallDim).SelectMany(s =>
            Operand(BroadcastableTo(s), c.GradA!).SelectMany(a => Operand(BroadcastableTo(s), c.GradB!).Select(b => (A: a, B: b))));
        Run(gen, t =>
        {
            using var scope = new TensorScope();
            var a = t.A.Leaf(DType.Float64).RequiresGrad_();
            var b = t.B.Leaf(DType.Float64).RequiresGrad_();
            GradCheck.Assert(v => c.Op(t.A.ViewOf(v[0]), t.B.ViewOf(v[1])), [a, b], name: c.Name);
        }, iterations, t => $"{c.Name} a = {t.A}; b = {t.B}");
    }

    /// <summary>Gradient checks perturb every element twice: dims up to 3 keep them fast.</summary>
    static readonly Gen<int> SmallDim = Gen.Int[0, 3];
}
