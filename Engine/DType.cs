namespace AttnCore;

/// <summary>The element type of a tensor.</summary>
/// <remarks>
/// Float32 runs on every device; Float64 on the CPU (gradient checks and references need it);
/// Int64 holds indices (Embedding, Gather, ArgMax, RandInt) and supports creation, copies, views,
/// comparisons, integer arithmetic and conversion. Bool (one byte per element, C# bool) holds masks: comparisons
/// return it, Where/MaskedFill take it, the logical ops combine it, Sum counts it (int64); in arithmetic with
/// another dtype it is promoted to that dtype as in PyTorch. New types (Float16, BFloat16) slot in here: ops
/// dispatch on this enum in one place per backend.
/// </remarks>
public enum DType
{
    /// <summary>32-bit IEEE float (C# float).</summary>
    Float32,
    /// <summary>64-bit IEEE float (C# double).</summary>
    Float64,
    /// <summary>64-bit signed integer (C# long), for indices.</summary>
    Int64,
    /// <summary>True/false in one byte (C# bool), for masks and comparison results.</summary>
    Bool,
}

/// <summary>Facts about <see cref="DType"/> values.</summary>
public static class DTypeInfo
{
    /// <summary>Bytes per element.</summary>
    public static int SizeOf(this DType dtype) => dtype switch
    {
        DType.Float32 => 4,
        DType.Float64 => 8,
        DType.Int64 => 8,
        DType.Bool => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>True for the floating-point types.</summary>
    public static bool IsFloatingPoint(this DType dtype) => dtype is DType.Float32 or DType.Float64;

    /// <summary>The lower-case name PyTorch uses (float32, float64, int64, bool).</summary>
    public static string Name(this DType dtype) => dtype switch
    {
        DType.Float32 => "float32",
        DType.Float64 => "float64",
        DType.Int64 => "int64",
        DType.Bool => "bool",
        _ => dtype.ToString(),
    };

    /// <summary>The dtype of a C# element type.</summary>
    public static DType Of<T>() where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return DType.Float32;
        if (typeof(T) == typeof(double)) return DType.Float64;
        if (typeof(T) == typeof(long)) return DType.Int64;
        if (typeof(T) == typeof(bool)) return DType.Bool;
        throw new NotSupportedException($"AttnCore has no dtype for element type {typeof(T).Name}; use float, double, long or bool");
    }
}
