// StridedIndex: how a GPU thread finds its element in a strided (view, broadcast) tensor.
//
// ILGPU kernels cannot take managed arrays, so a layout of up to 6 dims travels as a struct of scalars.
// Shapes are left-padded to 6 dims (size 1, stride 0), so the offset of linear index i is straight-line
// code: peel the innermost index with i % size, step by its stride, divide, repeat. No loops, which
// matters because ILGPU 1.5.3 does not unroll them.
using System.Runtime.CompilerServices;

namespace AttnCore.Kernels.Gpu;

/// <summary>A strided layout of up to 6 dims as kernel arguments (dim 5 is the innermost).</summary>
public struct StridedIndex
{
    /// <summary>Storage offset (in elements) of element [0, ..., 0].</summary>
    public long Offset;
    /// <summary>Sizes of dims 0..5; dims added by left-padding have size 1.</summary>
    public int S0, S1, S2, S3, S4, S5;
    /// <summary>Strides of dims 0..5 in elements; 0 on padded and broadcast dims.</summary>
    public long T0, T1, T2, T3, T4, T5;

    /// <summary>Maximum rank a kernel layout carries.</summary>
    public const int MaxRank = 6;

    /// <summary>Packs a shape and strides (rank at most 6) into kernel arguments.</summary>
    public static StridedIndex Create(ReadOnlySpan<int> shape, ReadOnlySpan<long> strides, long offset)
    {
        if (shape.Length > MaxRank) throw new NotSupportedException($"StridedIndex: GPU kernels take layouts of rank up to {MaxRank}, got rank {shape.Length}");
        Span<int> s = stackalloc int[MaxRank];
        Span<long> t = stackalloc long[MaxRank];
        s.Fill(1); t.Clear();
        int pad = MaxRank - shape.Length;
        for (int i = 0; i < shape.Length; i++) { s[pad + i] = shape[i]; t[pad + i] = strides[i]; }
        return new StridedIndex
        {
            Offset = offset, S0 = s[0], S1 = s[1], S2 = s[2], S3 = s[3], S4 = s[4], S5 = s[5],
            T0 = t[0], T1 = t[1], T2 = t[2], T3 = t[3], T4 = t[4], T5 = t[5],
        };
    }

    /// <summary>Storage offset of the element with row-major linear index <paramref name="i"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly long At(long i)
    {
        long o = Offset;
        o += (i % S5) * T5; i /= S5;
        o += (i % S4) * T4; i /= S4;
        o += (i % S3) * T3; i /= S3;
        o += (i % S2) * T2; i /= S2;
        o += (i % S1) * T1; i /= S1;
        o += (i % S0) * T0;
        return o;
    }
}
