using AttnCore.Kernels;
using AttnCore.Backends;

namespace AttnCore;

// Element-wise ops: unary functions, binary arithmetic with NumPy broadcasting, comparisons, Where.
// Every op returns a new contiguous tensor; inputs may be any view.
public sealed partial class Tensor
{
    // Whether an op takes int64 comes from its declaration (ElementwiseCatalogue), not from each call site.
    private Tensor Map(UnaryOp op, string name, double scalar = 0)
    {
        if (DType == DType.Bool)
        {
            // As PyTorch: arithmetic on a bool tensor computes in the default float dtype (mask * 0.5 is float32);
            // negation has no bool meaning.
            if (op == UnaryOp.Neg) throw new ArgumentException($"Neg: cannot negate the bool tensor {Describe()}; use LogicalNot()");
            using var asFloat = To(DType.Float32);
            return asFloat.Map(op, name, scalar);
        }
        if (!ElementwiseCatalogue.Of(op).Int64) RequireFloat(name);
        var dst = EmptyLike();
        if (Numel > 0) Backend.Unary(op, scalar, Storage, Layout, dst.Storage);
        return dst.Record(op, this, scalar);
    }

    /// <summary>The unary op <paramref name="op"/> by its code (tests run every catalogued op through this).</summary>
    internal Tensor Apply(UnaryOp op, double scalar = 0) => Map(op, op.ToString(), scalar);

    /// <summary>The binary op <paramref name="op"/> by its code (tests run every catalogued op through this).</summary>
    internal Tensor Apply(BinaryOp op, Tensor other) => op switch
    {
        BinaryOp.LogicalAnd or BinaryOp.LogicalOr or BinaryOp.LogicalXor => Logical(other, op, op.ToString()),
        BinaryOp.Pow => Pow(other),
        _ => Zip(other, op, op.ToString()),
    };

    /// <summary>-x</summary>

    public Tensor Neg() => Map(UnaryOp.Neg, "Neg");
    /// <summary>|x|</summary>
    public Tensor Abs() => Map(UnaryOp.Abs, "Abs");
    /// <summary>e^x</summary>
    public Tensor Exp() => Map(UnaryOp.Exp, "Exp");
    /// <summary>Natural log.</summary>
    public Tensor Log() => Map(UnaryOp.Log, "Log");
    /// <summary>Square root.</summary>
    public Tensor Sqrt() => Map(UnaryOp.Sqrt, "Sqrt");
    /// <summary>1/sqrt(x)</summary>
    public Tensor Rsqrt() => Map(UnaryOp.Rsqrt, "Rsqrt");
    /// <summary>Hyperbolic tangent.</summary>
    public Tensor Tanh() => Map(UnaryOp.Tanh, "Tanh");
    /// <summary>Logistic sigmoid.</summary>
    public Tensor Sigmoid() => Map(UnaryOp.Sigmoid, "Sigmoid");
    /// <summary>max(x, 0)</summary>
    public Tensor Relu() => Map(UnaryOp.Relu, "Relu");

    /// <summary>
    /// The gradient of ReLU from its output (torch's threshold_backward(dy, y, 0)): dy where <paramref name="output"/>
    /// &gt; 0, else 0, in one pass (no mask tensor). Same shape, dtype and device for both.
    /// </summary>
    public static Tensor ReluBackward(Tensor gradOutput, Tensor output)
    {
        const string op = "ReluBackward";
        SameDevice(op, gradOutput, output); SameDType(op, gradOutput, output);
        output.RequireFloat(op);
        if (!gradOutput.Layout.Shape.AsSpan().SequenceEqual(output.Layout.Shape))
            throw new ArgumentException($"{op}: gradient {gradOutput.Describe()} and output {output.Describe()} differ in shape");
        using var dy = gradOutput.Dense();
        using var y = output.Dense();
        var dx = y.EmptyLike();
        if (y.Numel > 0) y.Backend.ReluBackward(dy.Storage, y.Storage, dx.Storage, y.Numel);
        return dx;
    }

    /// <summary>
    /// max(0, this + other) in one pass (a residual add and its ReLU). Records <see cref="OpKind.AddRelu"/>, which saves
    /// only the output; both inputs' gradient is <see cref="ReluBackward"/>. Inputs of different shapes broadcast
    /// through the unfused Add and Relu.
    /// </summary>
    public Tensor AddRelu(Tensor other)
    {
        const string op = "AddRelu";
        SameDevice(op, this, other); SameDType(op, this, other);
        RequireFloat(op);
        if (!Layout.Shape.AsSpan().SequenceEqual(other.Layout.Shape))
        {
            using var sum = this + other;
            return sum.Relu();
        }
        using var a = Dense();
        using var b = other.Dense();
        var y = a.EmptyLike();
        if (y.Numel > 0) Backend.AddRelu(a.Storage, b.Storage, y.Storage, y.Numel);
        return y.Record(OpKind.AddRelu, [this, other]);
    }
    /// <summary>
    /// max(0, this·scale + residual) in one pass: Squeeze-and-Excitation's recalibration of this [N, C, H, W] by
    /// <paramref name="scale"/> [N, C, 1, 1], the residual add and the block's ReLU (Kernels/Cpu/ScaleAddRelu.cs). Records
    /// <see cref="OpKind.ScaleAddRelu"/> (saves this, the scale and the output); its gradient is one pass too. Other
    /// shapes run the unfused <c>(this * scale).AddRelu(residual)</c>.
    /// </summary>
    public Tensor ScaleAddRelu(Tensor scale, Tensor residual)
    {
        const string op = "ScaleAddRelu";
        SameDevice(op, this, scale); SameDevice(op, this, residual); SameDType(op, this, scale); SameDType(op, this, residual);
        RequireFloat(op);
        bool fused = Rank == 4 && scale.Rank == 4 && residual.Layout.Shape.AsSpan().SequenceEqual(Layout.Shape)
            && scale.Size(0) == Size(0) && scale.Size(1) == Size(1) && scale.Size(2) == 1 && scale.Size(3) == 1;
        if (!fused)
        {
            using var scaled = this * scale;
            return scaled.AddRelu(residual);
        }
        using var x = Dense();
        using var s = scale.Dense();
        using var r = residual.Dense();
        var y = x.EmptyLike();
        int runs = Size(0) * Size(1), runLength = Size(2) * Size(3);
        if (y.Numel > 0) Backend.ScaleAddRelu(x.Storage, s.Storage, r.Storage, y.Storage, runs, runLength);
        return y.Record(OpKind.ScaleAddRelu, [this, scale, residual]);
    }

    /// <summary>
    /// The gradient of <see cref="ScaleAddRelu"/> from the output gradient, its saved output y, input x and scale s
    /// [N, C, 1, 1]: with d = dy·[y &gt; 0], dx = d·s, ds = Σ_hw d·x, dresidual = d, each only when wanted (null otherwise).
    /// </summary>
    public static (Tensor? Dx, Tensor? DScale, Tensor? DResidual) ScaleAddReluBackward(Tensor gradOutput, Tensor output, Tensor input, Tensor scale,
        bool wantX = true, bool wantScale = true, bool wantResidual = true)
    {
        const string op = "ScaleAddReluBackward";
        SameDevice(op, gradOutput, output); SameDevice(op, gradOutput, input); SameDevice(op, gradOutput, scale);
        SameDType(op, gradOutput, output); SameDType(op, gradOutput, input); SameDType(op, gradOutput, scale);
        if (input.Rank != 4 || !gradOutput.Layout.Shape.AsSpan().SequenceEqual(input.Layout.Shape) || !output.Layout.Shape.AsSpan().SequenceEqual(input.Layout.Shape)
            || scale.Rank != 4 || scale.Size(0) != input.Size(0) || scale.Size(1) != input.Size(1) || scale.Size(2) != 1 || scale.Size(3) != 1)
            throw new ArgumentException($"{op}: gradient {gradOutput.Describe()}, output {output.Describe()} and input {input.Describe()} must be one [N, C, H, W] shape and scale {scale.Describe()} [N, C, 1, 1]");
        using var dy = gradOutput.Dense();
        using var y = output.Dense();
        using var x = input.Dense();
        using var s = scale.Dense();
        var dx = wantX ? x.EmptyLike() : null;
        var ds = wantScale ? s.EmptyLike() : null;
        var dr = wantResidual ? x.EmptyLike() : null;
        int runs = input.Size(0) * input.Size(1), runLength = input.Size(2) * input.Size(3);
        // Both backends handle empty runs (ds is then an empty sum, 0) and no runs at all.
        x.Backend.ScaleAddReluBackward(dy.Storage, y.Storage, x.Storage, s.Storage, dx?.Storage, ds?.Storage, dr?.Storage, runs, runLength);
        return (dx, ds, dr);
    }

    /// <summary><paramref name="gradOutput"/> · GELU'(<paramref name="input"/>): <see cref="Gelu"/>'s backward in one pass (its rule).</summary>
    internal static Tensor GeluBackward(Tensor gradOutput, Tensor input, bool tanhApproximation = false) =>
        gradOutput.Zip(input, tanhApproximation ? BinaryOp.GeluTanhBackward : BinaryOp.GeluBackward, "GeluBackward");
    /// <summary>GELU: exact erf form by default (PyTorch's default), tanh approximation when <paramref name="tanhApproximation"/>.</summary>
    public Tensor Gelu(bool tanhApproximation = false) => Map(tanhApproximation ? UnaryOp.GeluTanh : UnaryOp.Gelu, "Gelu");
    /// <summary>x * sigmoid(x)</summary>
    public Tensor Silu() => Map(UnaryOp.Silu, "Silu");
    /// <summary>ln(1 + e^x), and x itself above 20 (PyTorch's softplus with beta 1, threshold 20).</summary>
    public Tensor Softplus() => Map(UnaryOp.Softplus, "Softplus");
    /// <summary>Mish: x * tanh(softplus(x)).</summary>
    public Tensor Mish() => Map(UnaryOp.Mish, "Mish");
    /// <summary>ln sigmoid(x) = -softplus(-x), finite for every finite x.</summary>
    public Tensor LogSigmoid() => Map(UnaryOp.LogSigmoid, "LogSigmoid");
    /// <summary>Sine.</summary>
    public Tensor Sin() => Map(UnaryOp.Sin, "Sin");
    /// <summary>Cosine.</summary>
    public Tensor Cos() => Map(UnaryOp.Cos, "Cos");
    /// <summary>x*x</summary>
    public Tensor Square() => Map(UnaryOp.Square, "Square");
    /// <summary>1/x</summary>
    public Tensor Reciprocal() => Map(UnaryOp.Reciprocal, "Reciprocal");
    /// <summary>-1, 0 or 1 (NaN stays NaN).</summary>
    public Tensor Sign() => Map(UnaryOp.Sign, "Sign");
    /// <summary>x ^ exponent</summary>
    public Tensor Pow(double exponent) => Map(UnaryOp.PowScalar, "Pow", exponent);
    /// <summary>Clamps to [min, max]; either bound may be null.</summary>
    public Tensor Clamp(double? min = null, double? max = null)
    {
        if (min is null && max is null) throw new ArgumentException("Clamp: give at least one of min and max");
        if (min is double lo && max is double hi && lo > hi) throw new ArgumentException($"Clamp: min {lo} is greater than max {hi}");
        if (min is null) return Map(UnaryOp.ClampMax, "Clamp", max!.Value);
        var low = Map(UnaryOp.ClampMin, "Clamp", min.Value);
        if (max is null) return low;
        using (low) return low.Map(UnaryOp.ClampMax, "Clamp", max.Value);
    }

    private Tensor Zip(Tensor other, BinaryOp op, string name)
    {
        SameDevice(name, this, other);
        var (a, b) = Promote(name, op, this, other);
        try
        {
            var shape = AttnCore.Shape.Broadcast(name, a.Layout.Shape, b.Layout.Shape);
            var dst = Empty(shape, IsComparison(op) ? DType.Bool : a.DType, Device, name);
            if (dst.Numel > 0) Backend.Binary(op, a.Storage, a.Layout.BroadcastTo(shape), b.Storage, b.Layout.BroadcastTo(shape), dst.Storage);
            return dst.Record(op, this, other);
        }
        finally
        {
            if (!ReferenceEquals(a, this)) a.Dispose();
            if (!ReferenceEquals(b, other)) b.Dispose();
        }
    }

    private static bool IsComparison(BinaryOp op) => op is >= BinaryOp.Eq and <= BinaryOp.Ge;

    // PyTorch's promotion for a bool operand: next to another dtype it takes that dtype (mask * x is x's dtype);
    // two bools compare as integers. Arithmetic on two bools raises (use the logical ops). Other mixed dtypes raise.
    private static (Tensor A, Tensor B) Promote(string name, BinaryOp op, Tensor a, Tensor b)
    {
        if (a.DType == DType.Bool && b.DType == DType.Bool)
        {
            if (!IsComparison(op))
                throw new ArgumentException($"{name}: both operands are bool ({a.Describe()} and {b.Describe()}); use LogicalAnd/LogicalOr/LogicalXor, or convert one with To(DType)");
            return (a.To(DType.Int64), b.To(DType.Int64));
        }
        if (a.DType == DType.Bool) return (a.To(b.DType), b);
        if (b.DType == DType.Bool) return (a, b.To(a.DType));
        SameDType(name, a, b);
        return (a, b);
    }

    /// <summary>this + other (broadcast)</summary>

    public Tensor Add(Tensor other) => Zip(other, BinaryOp.Add, "Add");
    /// <summary>this - other (broadcast)</summary>
    public Tensor Sub(Tensor other) => Zip(other, BinaryOp.Sub, "Sub");
    /// <summary>this * other (broadcast)</summary>
    public Tensor Mul(Tensor other) => Zip(other, BinaryOp.Mul, "Mul");
    /// <summary>this / other (broadcast)</summary>
    public Tensor Div(Tensor other) => Zip(other, BinaryOp.Div, "Div");
    /// <summary>this ^ other (broadcast)</summary>
    public Tensor Pow(Tensor other) { RequireFloat("Pow"); return Zip(other, BinaryOp.Pow, "Pow"); }
    /// <summary>Element-wise max (NaN propagates).</summary>
    public Tensor Maximum(Tensor other) => Zip(other, BinaryOp.Maximum, "Maximum");
    /// <summary>Element-wise min (NaN propagates).</summary>
    public Tensor Minimum(Tensor other) => Zip(other, BinaryOp.Minimum, "Minimum");
    /// <summary>A bool mask: true where equal (broadcast), as torch.eq.</summary>
    public Tensor Eq(Tensor other) => Zip(other, BinaryOp.Eq, "Eq");
    /// <summary>A bool mask: true where not equal.</summary>
    public Tensor Ne(Tensor other) => Zip(other, BinaryOp.Ne, "Ne");
    /// <summary>A bool mask: true where this &lt; other.</summary>
    public Tensor Lt(Tensor other) => Zip(other, BinaryOp.Lt, "Lt");
    /// <summary>A bool mask: true where this &lt;= other.</summary>
    public Tensor Le(Tensor other) => Zip(other, BinaryOp.Le, "Le");
    /// <summary>A bool mask: true where this &gt; other.</summary>
    public Tensor Gt(Tensor other) => Zip(other, BinaryOp.Gt, "Gt");
    /// <summary>A bool mask: true where this &gt;= other.</summary>
    public Tensor Ge(Tensor other) => Zip(other, BinaryOp.Ge, "Ge");

    private Tensor ZipScalar(double value, BinaryOp op, string name)
    {
        // A bool tensor meets a number as float32 (mask.Gt(0.5) compares 0/1 with 0.5, not with true).
        using var s = Full([], value, DType == DType.Bool ? DType.Float32 : DType, Device);
        return Zip(s, op, name);
    }

    /// <summary>A bool mask: true where equal to <paramref name="value"/>.</summary>
    public Tensor Eq(double value) => ZipScalar(value, BinaryOp.Eq, "Eq");
    /// <summary>A bool mask: true where not equal to <paramref name="value"/>.</summary>
    public Tensor Ne(double value) => ZipScalar(value, BinaryOp.Ne, "Ne");
    /// <summary>A bool mask: true where less than <paramref name="value"/>.</summary>
    public Tensor Lt(double value) => ZipScalar(value, BinaryOp.Lt, "Lt");
    /// <summary>A bool mask: true where at most <paramref name="value"/>.</summary>
    public Tensor Le(double value) => ZipScalar(value, BinaryOp.Le, "Le");
    /// <summary>A bool mask: true where greater than <paramref name="value"/>.</summary>
    public Tensor Gt(double value) => ZipScalar(value, BinaryOp.Gt, "Gt");
    /// <summary>A bool mask: true where at least <paramref name="value"/>.</summary>
    public Tensor Ge(double value) => ZipScalar(value, BinaryOp.Ge, "Ge");

    // The logical ops read any dtype as PyTorch does (non-zero is true) and give bool.
    private Tensor Logical(Tensor other, BinaryOp op, string name)
    {
        SameDevice(name, this, other);
        using var a = AsBool();
        using var b = other.AsBool();
        var shape = AttnCore.Shape.Broadcast(name, a.Layout.Shape, b.Layout.Shape);
        var dst = Empty(shape, DType.Bool, Device, name);
        if (dst.Numel > 0) Backend.Binary(op, a.Storage, a.Layout.BroadcastTo(shape), b.Storage, b.Layout.BroadcastTo(shape), dst.Storage);
        return dst;
    }

    private Tensor AsBool() => DType == DType.Bool ? ViewOf(Layout) : To(DType.Bool);

    /// <summary>Element-wise and of two masks (broadcast; non-zero counts as true), as torch.logical_and.</summary>
    public Tensor LogicalAnd(Tensor other) => Logical(other, BinaryOp.LogicalAnd, "LogicalAnd");
    /// <summary>Element-wise or of two masks (broadcast; non-zero counts as true).</summary>
    public Tensor LogicalOr(Tensor other) => Logical(other, BinaryOp.LogicalOr, "LogicalOr");
    /// <summary>Element-wise exclusive or of two masks (broadcast; non-zero counts as true).</summary>
    public Tensor LogicalXor(Tensor other) => Logical(other, BinaryOp.LogicalXor, "LogicalXor");
    /// <summary>A bool mask: true where this is zero (false), as torch.logical_not.</summary>
    public Tensor LogicalNot()
    {
        using var yes = Full([], 1, DType.Bool, Device);
        return Logical(yes, BinaryOp.LogicalXor, "LogicalNot");
    }
    /// <summary>max(this, value)</summary>
    public Tensor Maximum(double value) => Map(UnaryOp.ClampMin, "Maximum", value);
    /// <summary>min(this, value)</summary>
    public Tensor Minimum(double value) => Map(UnaryOp.ClampMax, "Minimum", value);

    /// <summary>this + value</summary>

    public Tensor Add(double value) => Map(UnaryOp.AddScalar, "Add", value);
    /// <summary>this * value</summary>
    public Tensor Mul(double value) => Map(UnaryOp.MulScalar, "Mul", value);

    /// <summary>
    /// Picks <paramref name="a"/> where <paramref name="condition"/> is true, else <paramref name="b"/> (all broadcast).
    /// The condition is a bool mask, or (as before bool existed) a float or int64 tensor read as non-zero = true.
    /// </summary>
    public static Tensor Where(Tensor condition, Tensor a, Tensor b)
    {
        SameDevice("Where", condition, a);
        SameDevice("Where", a, b);
        SameDType("Where", a, b);
        var shape = AttnCore.Shape.Broadcast("Where", AttnCore.Shape.Broadcast("Where", condition.Layout.Shape, a.Layout.Shape), b.Layout.Shape);
        var dst = a.EmptyLike(shape);
        if (dst.Numel > 0)
            a.Backend.Where(condition.Storage, condition.Layout.BroadcastTo(shape), a.Storage, a.Layout.BroadcastTo(shape), b.Storage, b.Layout.BroadcastTo(shape), dst.Storage);
        return dst.Record(OpKind.Where, [a, b], [condition]);
    }

    /// <summary>This tensor with <paramref name="value"/> wherever <paramref name="mask"/> (broadcast to this shape; bool, or non-zero numbers) is true.</summary>
    public Tensor MaskedFill(Tensor mask, double value)
    {
        var shape = AttnCore.Shape.Broadcast("MaskedFill", Layout.Shape, mask.Layout.Shape);
        if (!shape.AsSpan().SequenceEqual(Layout.Shape))
            throw new ArgumentException($"MaskedFill: mask {mask.Describe()} does not broadcast to the tensor's shape {Describe()}");
        using var fill = Full([], value, DType, Device);
        return Where(mask, fill, this);
    }

    /// <summary>Element-wise a + b with broadcasting, as <see cref="Add(Tensor)"/>.</summary>
    public static Tensor operator +(Tensor a, Tensor b) => a.Add(b);
    /// <summary>Element-wise a - b with broadcasting, as <see cref="Sub(Tensor)"/>.</summary>
    public static Tensor operator -(Tensor a, Tensor b) => a.Sub(b);
    /// <summary>Element-wise a * b with broadcasting, as <see cref="Mul(Tensor)"/>.</summary>
    public static Tensor operator *(Tensor a, Tensor b) => a.Mul(b);
    /// <summary>Element-wise a / b with broadcasting, as <see cref="Div(Tensor)"/>.</summary>
    public static Tensor operator /(Tensor a, Tensor b) => a.Div(b);
    /// <summary>-a, as <see cref="Neg"/>.</summary>
    public static Tensor operator -(Tensor a) => a.Neg();
    /// <summary>a + s for every element; keeps a's dtype (int64 too).</summary>
    public static Tensor operator +(Tensor a, double s) => a.Map(UnaryOp.AddScalar, "Add", s);
    /// <summary>s + a for every element; keeps a's dtype.</summary>
    public static Tensor operator +(double s, Tensor a) => a.Map(UnaryOp.AddScalar, "Add", s);
    /// <summary>a - s for every element; keeps a's dtype.</summary>
    public static Tensor operator -(Tensor a, double s) => a.Map(UnaryOp.AddScalar, "Sub", -s);
    /// <summary>s - a for every element; keeps a's dtype.</summary>
    public static Tensor operator -(double s, Tensor a) => a.Map(UnaryOp.RSubScalar, "Sub", s);
    /// <summary>a · s for every element; keeps a's dtype.</summary>
    public static Tensor operator *(Tensor a, double s) => a.Map(UnaryOp.MulScalar, "Mul", s);
    /// <summary>s · a for every element; keeps a's dtype.</summary>
    public static Tensor operator *(double s, Tensor a) => a.Map(UnaryOp.MulScalar, "Mul", s);
    /// <summary>a / s for every element: an int64 tensor divides as <see cref="Div(Tensor)"/> does, a float tensor multiplies by 1/s.</summary>
    public static Tensor operator /(Tensor a, double s) => a.DType == DType.Int64 ? a.ZipScalar(s, BinaryOp.Div, "Div") : a.Map(UnaryOp.MulScalar, "Div", 1.0 / s);
    /// <summary>s / a for every element (a float tensor).</summary>
    public static Tensor operator /(double s, Tensor a) => a.Map(UnaryOp.RDivScalar, "Div", s);
}
