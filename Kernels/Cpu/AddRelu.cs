// Residual add + ReLU fused: y = max(0, a + b) in one pass (the end of every ResNet block: the branch plus the
// shortcut, then the ReLU), instead of writing a + b and reading it back for the ReLU.
// NaN stays NaN (Vector.Max and T.Max propagate it), as the ReLU op. The gradient of both inputs is the ReLU's,
// dy·[y > 0] from the saved output (BatchNorm.ReluBackward), computed once for the two. Both kernels run on
// the two-span driver Zip below.
// FLOPs: 2 per element. Bytes per float element: 12 (reads a and b, writes y) against 12 + 8 unfused.
// Bound: memory bandwidth. Reference: the scalar loop in Tests/Kernels/BatchNormReluTests.cs at every length 0..33.
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;

/// <summary>The fused residual add and ReLU, y = max(0, a + b), over contiguous spans.</summary>
public static class AddRelu
{
    /// <summary>y = max(0, a + b) element by element; the three spans have one length (y may alias a or b).</summary>
    public static void Forward<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
        => Zip.Run<T, AddReluLanes<T>>("AddRelu.Forward", ("a", "b", "y"), a, b, y);

    private readonly struct AddReluLanes<T> : Zip.IOp<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public static Vector512<T> Apply(Vector512<T> a, Vector512<T> b) => Vector512.Max(a + b, Vector512<T>.Zero);
        public static Vector256<T> Apply(Vector256<T> a, Vector256<T> b) => Vector256.Max(a + b, Vector256<T>.Zero);
        public static T Apply(T a, T b) => T.Max(a + b, T.Zero);
    }
}

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
