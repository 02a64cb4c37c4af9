using AttnCore.Kernels;
using NUnit.Framework;

namespace AttnCore.Tests.Autograd;

/// <summary>Every differentiable op, checked by central differences in float64 (tolerances in GradCheck).</summary>
[TestFixture, Category("Autograd")]
public class GradCheckTests
{
    public record Case(string Name, int[][] Shapes, Func<Tensor[], Tensor> F, Func<double, double>? Domain = null)
    {
        public override string ToString() => Name;
    }

    static readonly Func<double, double> Positive = u => 0.2 + 2 * u;
    static readonly Func<double, double> AwayFromZero = u => (u < 0.5 ? -1 : 1) * (0.3 + u);

    // Constants inside a case are built as float32 and cast to the input's dtype, so the same case also runs in
    // float32 on ILGPU devices (Tests/Gpu/EveryOpOnDeviceTests.cs), where float64 tensors do not exist.
    public static readonly Case[] Cases =
    [
        new("Neg", [[3, 4]], x => -x[0]),
        new("Abs", [[3, 4]], x => x[0].Abs(), AwayFromZero),
        new("Exp", [[3, 4]], x => x[0].Exp()),
        new("Log", [[3, 4]], x => x[0].Log(), Positive),
        new("Sqrt", [[3, 4]], x => x[0].Sqrt(), Positive),
        new("Rsqrt", [[3, 4]], x => x[0].Rsqrt(), Positive),
        new("Tanh", [[3, 4]], x => x[0].Tanh()),
        new("Sigmoid", [[3, 4]], x => x[0].Sigmoid()),
        new("Relu", [[3, 4]], x => x[0].Relu(), AwayFromZero),
        new("Gelu", [[3, 4]], x => x[0].Gelu()),
        new("GeluTanh", [[3, 4]], x => x[0].Gelu(tanhApproximation: true)),
        new("Silu", [[3, 4]], x => x[0].Silu()),
        new("Softplus", [[3, 4]], x => x[0].Softplus()),
        new("Mish", [[3, 4]], x => x[0].Mish()),
        new("LogSigmoid", [[3, 4]], x => x[0].LogSigmoid()),
        new("Sin", [[5]], x => x[0].Sin()),
        new("Cos", [[5]], x => x[0].Cos()),
        new("Square", [[5]], x => x[0].Square()),
        new("Reciprocal", [[5]], x => x[0].Reciprocal(), AwayFromZero),
        new("Sign", [[5]], x => x[0].Sign() + x[0], AwayFromZero),
        new("ScalarOps", [[2, 3]], x => (2.0 - x[0] * 3.0 + 1.5) / 4.0),
        new("PowScalar", [[2, 3]], x => x[0].Pow(2.5), Positive),
        new("RDivScalar", [[2, 3]], x => 2.0 / x[0], AwayFromZero),
        new("Clamp", [[4, 4]], x => x[0].Clamp(-0.5, 0.5)),
        new("AddBroadcast", [[2, 3], [3]], x => x[0] + x[1]),
        new("SubBroadcast", [[2, 1, 3], [4, 1]], x => x[0] - x[1]),
        new("MulBroadcast", [[2, 3], [2, 1]], x => x[0] * x[1]),
        new("DivBroadcast", [[2, 3], [3]], x => x[0] / x[1], AwayFromZero),
        new("PowTensor", [[2, 3], [2, 3]], x => x[0].Pow(x[1]), Positive),
        new("Maximum", [[3, 4], [4]], x => x[0].Maximum(x[1])),
        new("Minimum", [[3, 4], [3, 1]], x => x[0].Minimum(x[1])),
        new("Where", [[3, 4], [4]], x => Tensor.Where(x[0].Gt(0), x[0], x[1])),
        new("MaskedFill", [[3, 4]], x => x[0].MaskedFill(Tensor.FromArray(new float[] { 0, 1, 0, 1 }).To(x[0].DType), -2.0)),
        new("SumAll", [[3, 4]], x => x[0].Sum()),
        new("SumDims", [[2, 3, 4]], x => x[0].Sum([0, 2], keepDim: true)),
        new("Mean", [[2, 3, 4]], x => x[0].Mean(1)),
        new("Var", [[3, 5]], x => x[0].Var(1)),
        new("Max", [[3, 5]], x => x[0].Max(1)),
        new("MinAll", [[3, 5]], x => x[0].Min()),
        new("MaxWithIndices", [[3, 5]], x => x[0].MaxWithIndices(1).Values),
        new("MinWithIndicesKeepDim", [[3, 5]], x => x[0].MinWithIndices(0, keepDim: true).Values),
        new("TopK", [[3, 6]], x => x[0].TopK(3, 1).Values),
        new("TopKSmallestDim0", [[5, 2, 3]], x => x[0].TopK(2, 0, largest: false).Values),
        new("MatMul", [[3, 4], [4, 5]], x => x[0].MatMul(x[1])),
        new("MatMulBatchedBroadcast", [[2, 3, 4], [4, 2]], x => x[0].MatMul(x[1])),
        new("MatMulVector", [[4], [4, 3]], x => x[0].MatMul(x[1])),
        new("MatMulTransposedView", [[4, 3], [4, 5]], x => x[0].T.MatMul(x[1])),
        new("Softmax", [[3, 5]], x => x[0].Softmax(-1)),
        new("SoftmaxDim0", [[3, 5]], x => x[0].Softmax(0)),
        new("LogSoftmax", [[2, 3, 4]], x => x[0].LogSoftmax(1)),
        new("LayerNormAffine", [[3, 6], [6], [6]], x => x[0].LayerNorm([6], x[1], x[2])),
        new("LayerNormTwoDims", [[2, 3, 4]], x => x[0].LayerNorm([3, 4])),
        // The sum also flows past the norm, as a residual stream does; Backward then adds its gradient in the norm's pass.
        new("AddLayerNorm", [[3, 6], [3, 6], [6], [6]], x => { var (sum, y) = x[0].AddLayerNorm(x[1], [6], x[2], x[3]); return y * sum; }),
        new("AddLayerNormBroadcast", [[3, 6], [6]], x => { var (sum, y) = x[0].AddLayerNorm(x[1], [6]); return y + sum; }),
        new("LayerNormOnAResidualPath", [[3, 6], [6], [6]], x => x[0] + x[0].LayerNorm([6], x[1], x[2]).Tanh()),
        new("Embedding", [[5, 3]], x => Tensor.Embedding(Tensor.FromArray(new long[] { 1, 4, 1, 0 }, [2, 2]), x[0])),
        new("Gather", [[3, 4]], x => x[0].Gather(1, Tensor.FromArray(new long[] { 0, 3, 3, 1, 2, 2 }, [3, 2]))),
        new("GatherPrefix", [[3, 4]], x => x[0].Gather(0, Tensor.FromArray(new long[] { 2, 0 }, [1, 2]))),
        new("Cat", [[2, 3], [2, 2]], x => Tensor.Cat([x[0], x[1]], 1)),
        new("Stack", [[2, 3], [2, 3]], x => Tensor.Stack([x[0], x[1]], 0)),
        new("ReshapePermute", [[2, 3, 4]], x => x[0].Reshape(6, 4).T.Permute(1, 0).Reshape(2, 12)),
        new("ReshapeOfTransposed", [[3, 4]], x => x[0].T.Reshape(-1)),
        new("SliceNarrowSelect", [[4, 6]], x => x[0].Slice(1, 1, 6, 2).Narrow(0, 1, 2).Select(0, 1)),
        new("SplitChunk", [[6, 2]], x => x[0].Split(4)[1] * x[0].Chunk(3)[0]),
        new("ExpandSqueeze", [[3, 1]], x => x[0].Expand(2, 3, 4).Sum(-1).Unsqueeze(0).Squeeze()),
        new("ContiguousClone", [[3, 4]], x => x[0].T.Contiguous().Clone()),
        new("ToFloat32AndBack", [[3]], x => x[0] * 2.0),
        new("IndexSelect", [[4, 3]], x => x[0].IndexSelect(1, Tensor.FromArray(new long[] { 2, 2, 0 }))),
        new("Conv2d", [[2, 3, 5, 4], [4, 3, 3, 3], [4]], x => x[0].Conv2d(x[1], x[2], stride: 1, padding: 1)),
        new("Conv2dStridedDilatedGrouped", [[1, 4, 7, 7], [4, 2, 3, 3]], x => x[0].Conv2d(x[1], null, (2, 1), (1, 2), (2, 2), groups: 2)),
        new("Conv2dPointwise", [[2, 3, 3, 3], [5, 3, 1, 1]], x => x[0].Conv2d(x[1])),
        new("MaxPool2d", [[2, 2, 6, 5]], x => x[0].MaxPool2d(2)),
        new("MaxPool2dPadded", [[1, 2, 5, 5]], x => x[0].MaxPool2d(3, 2, 1)),
        new("AvgPool2d", [[1, 3, 5, 6]], x => x[0].AvgPool2d(3, 2, 1)),
        new("MaxPool2dRectangularDilatedCeil", [[1, 2, 7, 6]], x => x[0].MaxPool2d((3, 2), (2, 1), (1, 1), (2, 1), ceilMode: true)),
        new("AvgPool2dRectangularCeilExcludePad", [[2, 1, 6, 7]], x => x[0].AvgPool2d((3, 2), (2, 2), (1, 1), ceilMode: true, countIncludePad: false)),
        new("AvgPool2dCeilIncludePad", [[1, 2, 5, 5]], x => x[0].AvgPool2d(3, 2, 1, ceilMode: true)),
        new("Conv2dRectangularStride2", [[1, 2, 6, 7], [3, 2, 2, 3], [3]], x => x[0].Conv2d(x[1], x[2], (2, 3), (1, 0), (1, 2))),
        new("BatchNorm2dTraining", [[3, 2, 3, 2], [2], [2]], x => x[0].BatchNorm2d(null, null, x[1], x[2], training: true)),
        new("BatchNorm2dTrainingNoAffine", [[2, 3, 2, 2]], x => x[0].BatchNorm2d(null, null, null, null, training: true)),
        new("BatchNorm2dTrainingWeightOnlyStridedInput", [[2, 2, 3, 2], [2]], x => x[0].Permute(0, 1, 3, 2).BatchNorm2d(null, null, x[1], null, training: true)),
        new("BatchNorm2dTrainingBiasOnly", [[3, 2, 1, 2], [2]], x => x[0].BatchNorm2d(null, null, null, x[1], training: true)),
        new("BatchNorm2dEval", [[2, 2, 2, 2], [2], [2]], x => x[0].BatchNorm2d(Tensor.FromArray(new float[] { 0.5f, -1 }).To(x[0].DType), Tensor.FromArray(new float[] { 2, 0.5f }).To(x[0].DType), x[1], x[2], training: false)),
        // bnrelu: fused BatchNorm2d + ReLU (OpKind.BatchNorm2dRelu), and its evaluation mode with gradients (recorded ops)
        new("BatchNorm2dReluTraining", [[3, 2, 3, 2], [2], [2]], x => x[0].BatchNorm2dRelu(null, null, x[1], x[2], training: true)),
        new("BatchNorm2dReluTrainingStridedNoAffine", [[2, 3, 2, 2]], x => x[0].Permute(0, 1, 3, 2).BatchNorm2dRelu(null, null, null, null, training: true)),
        new("AddRelu", [[2, 3, 4], [2, 3, 4]], x => x[0].AddRelu(x[1])),
        // y = x Wᵀ + b in one GEMM (OpKind.Linear): batched rows, one row (rank 1), no bias, a transposed input (unfused)
        new("Linear", [[2, 3, 4], [5, 4], [5]], x => Tensor.Linear(x[0], x[1], x[2])),
        new("LinearVector", [[4], [3, 4], [3]], x => Tensor.Linear(x[0], x[1], x[2])),
        new("LinearNoBias", [[3, 4], [2, 4]], x => Tensor.Linear(x[0], x[1])),
        new("LinearStrided", [[4, 3], [2, 4], [2]], x => Tensor.Linear(x[0].T, x[1], x[2])),
        new("AddReluStrided", [[3, 2], [2, 3]], x => x[0].Transpose(0, 1).AddRelu(x[1])),
        new("ScaleAddRelu", [[2, 3, 2, 3], [2, 3, 1, 1], [2, 3, 2, 3]], x => x[0].ScaleAddRelu(x[1], x[2])),
        new("BatchNorm2dReluEval", [[2, 2, 2, 2], [2], [2]], x => x[0].BatchNorm2dRelu(Tensor.FromArray(new float[] { 0.5f, -1 }).To(x[0].DType), Tensor.FromArray(new float[] { 2, 0.5f }).To(x[0].DType), x[1], x[2], training: false)),
    ];

    [TestCaseSource(nameof(Cases))]
    public void Analytic_gradient_matches_central_differences(Case c)
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var gen = new Generator(seed);
        var inputs = c.Shapes.Select(s =>
        {
            long n = s.Aggregate(1L, (a, b) => a * b);
            var data = new double[n];
            for (int i = 0; i < n; i++) data[i] = c.Domain is null ? gen.NextNormal() : c.Domain(gen.NextDouble());
            return Tensor.FromArray(data, s).RequiresGrad_();
        }).ToArray();
        Assert.DoesNotThrow(() => GradCheck.Assert(c.F, inputs, seed, name: c.Name), $"seed={seed}");
    }

    // Every unary op the catalogue records, generated from it so a new op is checked without a hand-written case:
    // the scalar 2 keeps PowScalar and RDivScalar smooth and ClampMin/ClampMax away from their kink at 2, and inputs
    // stay off 0 (the kink of Abs, Relu, Sign) or above it where the catalogue says the op needs x > 0.
    public static readonly Case[] CatalogueCases = ElementwiseCatalogue.Unary.Where(e => e.Differentiable)
        .Select(e => new Case($"Catalogue {e.Name}", [[2, 3]], x => x[0].Apply((UnaryOp)e.Code, 2), e.PositiveOnly ? Positive : AwayFromZero)).ToArray();

    // Every differentiable binary op, broadcast [2,3] with [3] so the rule's sum back to each shape is checked too;
    // positive inputs keep Pow's ln a defined, and continuous draws make a tie of Maximum/Minimum improbable.
    public static readonly Case[] BinaryCatalogueCases = ElementwiseCatalogue.Binary.Where(e => e.Differentiable)
        .Select(e => new Case($"Catalogue {e.Name}", [[2, 3], [3]], x => x[0].Apply((BinaryOp)e.Code, x[1]), Positive)).ToArray();

    [TestCaseSource(nameof(BinaryCatalogueCases))]
    public void Every_catalogued_binary_op_matches_central_differences(Case c) => Analytic_gradient_matches_central_differences(c);

    [TestCaseSource(nameof(CatalogueCases))]
    public void Every_catalogued_unary_op_matches_central_differences(Case c) => Analytic_gradient_matches_central_differences(c);

    [Test]
    public void Every_OpKind_has_a_derivative_rule()
    {
        var missing = Enum.GetValues<OpKind>().Where(k => k != OpKind.Custom && !DerivativeRules.HasRule(k)).ToArray();
        Assert.That(missing, Is.Empty);
    }

    [Test]
    public void GradCheck_catches_a_wrong_rule()
    {
        // A custom op whose backward is deliberately off by a factor: GradCheck must fail.
        using var x = Tensor.FromArray(new double[] { 0.3, -1.2, 2.0 }).RequiresGrad_();
        var ex = Assert.Throws<InvalidOperationException>(() => GradCheck.Assert(v => WrongDouble.Apply(v[0]), [x]));
        Assert.That(ex!.Message, Does.Contain("analytic"));
    }

    [Test]
    public void A_user_defined_custom_op_differentiates_through_its_own_backward()
    {
        // ICustomOp is the public extension point for ops AttnCore does not have: y = x³ with dy/dx = 3x², defined here,
        // outside Engine, composed with built-in ops on both sides.
        using var x = Tensor.FromArray(new double[] { 0.3, -1.2, 2.0, 0.7, -0.4, 1.1 }, [2, 3]).RequiresGrad_();
        Assert.DoesNotThrow(() => GradCheck.Assert(v => UserCube.Apply(v[0].Sin()).Sum(1), [x]));
        using var y = UserCube.Apply(x);
        Assert.That(y.GradFn!.Kind, Is.EqualTo(OpKind.Custom));
        Assert.That(y.GradFn.Custom, Is.InstanceOf<UserCube>());
    }

    private sealed class UserCube : ICustomOp
    {
        public string Name => "UserCube";
        public static Tensor Apply(Tensor x)
        {
            Tensor y;
            using (new NoGrad()) { using var xx = x * x; y = xx * x; }
            return y.RecordCustom(new UserCube(), [x], [x]);
        }
        public Tensor?[] Backward(GradNode node, Tensor g)
        {
            var x = node.Saved[0];
            using var x2 = x.Square();
            using var d = x2 * 3.0;
            return [g * d];
        }
    }

    private sealed class WrongDouble : ICustomOp
    {
        public string Name => "WrongDouble";
        public static Tensor Apply(Tensor x)
        {
            Tensor y;
            using (new NoGrad()) y = x * 2.0;
            return y.RecordCustom(new WrongDouble(), [x], []);
        }
        public Tensor?[] Backward(GradNode node, Tensor g) => [g * 3.0];
    }
}
