namespace AttnCore.Models.IO;

/// <summary>
/// Widening conversions of the safetensors dtypes the engine has no storage for. Each is exact: every
/// half and bfloat16 value (subnormals, +-0, +-inf and NaN included) is a float32, and every int32/uint8
/// an int64. bfloat16 is the upper half of a float32's bits, so its conversion is a shift.
/// </summary>
internal static class SafetensorsConvert
{
    /// <summary>IEEE binary16 to float32.</summary>
    public static float[] HalfToSingle(ReadOnlySpan<Half> source)
    {
        var result = GC.AllocateUninitializedArray<float>(source.Length);
        for (int i = 0; i < source.Length; i++) result[i] = (float)source[i];
        return result;
    }

    /// <summary>bfloat16 (given as its 16 bits) to float32: the bits become the float's upper half.</summary>
    public static float[] BFloat16ToSingle(ReadOnlySpan<ushort> source)
    {
        var result = GC.AllocateUninitializedArray<float>(source.Length);
        for (int i = 0; i < source.Length; i++) result[i] = BitConverter.Int32BitsToSingle(source[i] << 16);
        return result;
    }

    /// <summary>int32 to int64.</summary>
    public static long[] Widen(ReadOnlySpan<int> source)
    {
        var result = GC.AllocateUninitializedArray<long>(source.Length);
        for (int i = 0; i < source.Length; i++) result[i] = source[i];
        return result;
    }

    /// <summary>uint8 to int64.</summary>
    public static long[] Widen(ReadOnlySpan<byte> source)
    {
        var result = GC.AllocateUninitializedArray<long>(source.Length);
        for (int i = 0; i < source.Length; i++) result[i] = source[i];
        return result;
    }
}
