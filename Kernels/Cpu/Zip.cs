// Zip: the driver of element-wise kernels over two equal-length spans, y[i] = f(a[i], b[i]), for fused kernels
// whose lane function TensorPrimitives does not have (AddRelu.Forward, BatchNorm.ReluBackward).
// Algorithm: the widest hardware vectors (Vector512, else Vector256) over the whole-vector prefix, then a scalar tail.
// Bound: memory bandwidth (12 bytes per float element). Reference: each kernel's scalar loop in its tests, at every
// length around the vector widths.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;

/// <summary>One driver for element-wise kernels of two equal-length spans: the widest vectors, then a scalar tail.</summary>
internal static unsafe class Zip
{
    /// <summary>The lane function of a two-input element-wise kernel, at each vector width and for one element.</summary>
    internal interface IOp<T> where T : unmanaged
    {
        static abstract Vector512<T> Apply(Vector512<T> a, Vector512<T> b);
        static abstract Vector256<T> Apply(Vector256<T> a, Vector256<T> b);
        static abstract T Apply(T a, T b);
    }

    /// <summary>y[i] = TOp(a[i], b[i]); <paramref name="names"/> name the spans in the length error of <paramref name="op"/>.</summary>
    internal static void Run<T, TOp>(string op, (string A, string B, string Y) names, ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y)
        where T : unmanaged where TOp : IOp<T>
    {
        if (a.Length != y.Length || b.Length != y.Length)
            throw new ArgumentException($"{op}: {names.A} has {a.Length} elements, {names.B} {b.Length} and {names.Y} {y.Length}; all must be equal");
        fixed (T* pa = a) fixed (T* pb = b) fixed (T* py = y) Loop<T, TOp>(pa, pb, py, y.Length);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Loop<T, TOp>(T* a, T* b, T* y, int len) where T : unmanaged where TOp : IOp<T>
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated && Vector512<T>.IsSupported)
            for (; i + Vector512<T>.Count <= len; i += Vector512<T>.Count)
                TOp.Apply(Vector512.Load(a + i), Vector512.Load(b + i)).Store(y + i);
        else if (Vector256.IsHardwareAccelerated && Vector256<T>.IsSupported)
            for (; i + Vector256<T>.Count <= len; i += Vector256<T>.Count)
                TOp.Apply(Vector256.Load(a + i), Vector256.Load(b + i)).Store(y + i);
        for (; i < len; i++) y[i] = TOp.Apply(a[i], b[i]);
    }
}
