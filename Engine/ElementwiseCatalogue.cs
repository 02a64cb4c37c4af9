using System.Reflection;
using AttnCore.Kernels;

namespace AttnCore;

/// <summary>What Engine, Autograd and the tests know of one element-wise op, beside its kernels.</summary>
/// <param name="Name">The op's name (its enum value's), used in messages and test names.</param>
/// <param name="Code">The op code (a <see cref="UnaryOp"/> or <see cref="BinaryOp"/> value as an int).</param>
/// <param name="Differentiable">Whether Tensor records it (as <see cref="OpKind.Unary"/> or <see cref="OpKind.Binary"/>)
/// for Autograd; false for comparisons and derivative helpers such as GeluGrad.</param>
/// <param name="Saves">What its derivative rule reads of its inputs and output (<see cref="GradNode.Saves"/>).</param>
/// <param name="Int64">Whether it is defined on int64 tensors (unary ops; the rest need a float dtype).</param>
/// <param name="PositiveOnly">Whether its real domain is x &gt; 0 (tests draw inputs there).</param>
public readonly record struct ElementwiseOpInfo(string Name, int Code, bool Differentiable, Saves Saves, bool Int64, bool PositiveOnly);

/// <summary>
/// The catalogue of element-wise ops, read once from the <see cref="ElementwiseAttribute"/> on each
/// <see cref="UnaryOp"/> and <see cref="BinaryOp"/> value: recording, <see cref="GradNode"/>'s saved tensors, the
/// ILGPU backend's dtype check and the tests' gradcheck and device-parity tables all come from here, so a new op is
/// described in one place, its declaration.
/// </summary>
public static class ElementwiseCatalogue
{
    /// <summary>The entry of a unary op.</summary>
    public static ElementwiseOpInfo Of(UnaryOp op) => UnaryEntries[(int)op];

    /// <summary>The entry of a binary op.</summary>
    public static ElementwiseOpInfo Of(BinaryOp op) => BinaryEntries[(int)op];

    /// <summary>Every unary op's entry, in <see cref="UnaryOp"/> order.</summary>
    public static IReadOnlyList<ElementwiseOpInfo> Unary => UnaryEntries;

    /// <summary>Every binary op's entry, in <see cref="BinaryOp"/> order.</summary>
    public static IReadOnlyList<ElementwiseOpInfo> Binary => BinaryEntries;

    private static readonly ElementwiseOpInfo[] UnaryEntries = Read<UnaryOp>();
    private static readonly ElementwiseOpInfo[] BinaryEntries = Read<BinaryOp>();

    // The enums are dense from 0 (the kernels index by code), so entry i describes value i.
    private static ElementwiseOpInfo[] Read<TOp>() where TOp : struct, Enum
    {
        var values = Enum.GetValues<TOp>();
        var entries = new ElementwiseOpInfo[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            string name = values[i].ToString();
            int code = Convert.ToInt32(values[i], System.Globalization.CultureInfo.InvariantCulture);
            if (code != i) throw new InvalidOperationException($"{typeof(TOp).Name}.{name} has code {code}, expected {i}: element-wise op codes must be dense from 0");
            var a = typeof(TOp).GetField(name)!.GetCustomAttribute<ElementwiseAttribute>()
                ?? throw new InvalidOperationException($"{typeof(TOp).Name}.{name} has no [Elementwise] attribute: declare what its derivative reads (Kernels/Common/ElementwiseOps.cs)");
            entries[i] = new(name, code, a.Differentiable, a.Differentiable ? a.Reads : Saves.Nothing, a.Int64, a.PositiveOnly);
        }
        return entries;
    }
}
