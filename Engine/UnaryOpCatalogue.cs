using AttnCore.Kernels;

namespace AttnCore;

/// <summary>
/// What Engine, Autograd and the tests know of one unary element-wise op, beside its kernels.
/// </summary>
/// <param name="Op">The op code the CPU and GPU kernels switch on.</param>
/// <param name="Kind">The OpKind Tensor records for it (its derivative rule's key in Autograd), or null for a
/// derivative helper (GeluGrad) that is never differentiated.</param>
/// <param name="Saves">What its derivative rule reads of its input and output (<see cref="GradNode.SavesOf"/>).</param>
/// <param name="Int64">Whether it is defined on int64 tensors (the rest need a float dtype).</param>
/// <param name="PositiveOnly">Whether its real domain is x &gt; 0 (tests draw inputs there).</param>
public readonly record struct UnaryOpInfo(UnaryOp Op, OpKind? Kind, Saves Saves, bool Int64 = false, bool PositiveOnly = false);

/// <summary>
/// The catalogue of unary element-wise ops: one entry per <see cref="UnaryOp"/>, read by recording
/// (<see cref="Tensor"/> maps each op to its OpKind), by <see cref="GradNode.SavesOf"/>, by the ILGPU backend (which
/// codes int64 takes) and by the tests, which build their gradcheck and device-parity cases from <see cref="All"/>.
/// </summary>
public static class UnaryOpCatalogue
{
    /// <summary>The entry of <paramref name="op"/>.</summary>
    public static UnaryOpInfo Of(UnaryOp op) => Entries[(int)op];

    /// <summary>Every entry, in <see cref="UnaryOp"/> order.</summary>
    public static IReadOnlyList<UnaryOpInfo> All => Entries;

    /// <summary>What the rule of a unary <paramref name="kind"/> reads, or null when no unary op records that kind.</summary>
    public static Saves? SavesOfKind(OpKind kind) => SavesByKind.TryGetValue(kind, out var saves) ? saves : null;

    private static readonly UnaryOpInfo[] Entries = Enum.GetValues<UnaryOp>().Select(Describe).ToArray();
    private static readonly Dictionary<OpKind, Saves> SavesByKind = Entries.Where(e => e.Kind is not null).ToDictionary(e => e.Kind!.Value, e => e.Saves);

    // A switch expression with no discard arm: a UnaryOp missing here fails to compile (CS8509, warnings are errors).
#pragma warning disable CS8524 // a value outside the enum throws SwitchExpressionException
    private static UnaryOpInfo Describe(UnaryOp op) => op switch
    {
        UnaryOp.Neg => new(op, OpKind.Neg, Saves.Nothing, Int64: true),
        UnaryOp.Abs => new(op, OpKind.Abs, Saves.Input0, Int64: true),
        UnaryOp.Exp => new(op, OpKind.Exp, Saves.Output),
        UnaryOp.Log => new(op, OpKind.Log, Saves.Input0, PositiveOnly: true),
        UnaryOp.Sqrt => new(op, OpKind.Sqrt, Saves.Output, PositiveOnly: true),
        UnaryOp.Rsqrt => new(op, OpKind.Rsqrt, Saves.Output, PositiveOnly: true),
        UnaryOp.Tanh => new(op, OpKind.Tanh, Saves.Output),
        UnaryOp.Sigmoid => new(op, OpKind.Sigmoid, Saves.Output),
        UnaryOp.Relu => new(op, OpKind.Relu, Saves.Input0),
        UnaryOp.Gelu => new(op, OpKind.Gelu, Saves.Input0),
        UnaryOp.GeluTanh => new(op, OpKind.GeluTanh, Saves.Input0),
        UnaryOp.Silu => new(op, OpKind.Silu, Saves.Input0),
        UnaryOp.Sin => new(op, OpKind.Sin, Saves.Input0),
        UnaryOp.Cos => new(op, OpKind.Cos, Saves.Input0),
        UnaryOp.Square => new(op, OpKind.Square, Saves.Input0, Int64: true),
        UnaryOp.Reciprocal => new(op, OpKind.Reciprocal, Saves.Output, PositiveOnly: true),
        UnaryOp.Sign => new(op, OpKind.Sign, Saves.Nothing, Int64: true),
        UnaryOp.AddScalar => new(op, OpKind.AddScalar, Saves.Nothing, Int64: true),
        UnaryOp.MulScalar => new(op, OpKind.MulScalar, Saves.Nothing, Int64: true),
        UnaryOp.PowScalar => new(op, OpKind.PowScalar, Saves.Input0),
        UnaryOp.RSubScalar => new(op, OpKind.RSubScalar, Saves.Nothing, Int64: true),
        UnaryOp.RDivScalar => new(op, OpKind.RDivScalar, Saves.Input0, PositiveOnly: true),
        UnaryOp.ClampMin => new(op, OpKind.ClampMin, Saves.Input0, Int64: true),
        UnaryOp.ClampMax => new(op, OpKind.ClampMax, Saves.Input0, Int64: true),
        UnaryOp.GeluGrad => new(op, null, Saves.Nothing),
        UnaryOp.GeluTanhGrad => new(op, null, Saves.Nothing),
        UnaryOp.Softplus => new(op, OpKind.Softplus, Saves.Input0),
        UnaryOp.Mish => new(op, OpKind.Mish, Saves.Input0),
        UnaryOp.LogSigmoid => new(op, OpKind.LogSigmoid, Saves.Input0),
    };
#pragma warning restore CS8524
}
