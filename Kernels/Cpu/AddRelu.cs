// Residual add + ReLU fused: y = max(0, a + b) in one pass (the end of every ResNet block: the branch plus the
// shortcut, then the ReLU), instead of writing a + b and reading it back for the ReLU.
// NaN stays NaN (Vector.Max and T.Max propagate it), as the ReLU op. The gradient of both inputs is the ReLU's,
// dy·[y > 0] from the saved output (BatchNorm.ReluBackward), computed once for the two.
// FLOPs: 2 per element. Bytes per float element: 12 (reads a and b, writes y) against 12 + 8 unfused.
// Bound: memory bandwidth. Reference: the scalar loop in Tests/Kernels/BatchNormReluTests.cs at every length 0..33.
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttnCore.Kernels.Cpu;

/// <summary>The fused residual add and ReLU, y = max(0, a + b), over contiguous spans.</summary>
public static unsafe class AddRelu
{
    /// <summary>y = max(0, a + b) element by element; the three spans have one length (y may alias a or b).</summary>
    public static void Forward<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (a.Length != y.Length || b.Length != y.Length)
            throw new ArgumentException($"AddRelu.Forward: a has {a.Length} elements, b {b.Length} and y {y.Length}; all must be equal");
        fixed (T* pa = a) fixed (T* pb = b) fixed (T* py = y) Run(pa, pb, py, y.Length);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Run<T>(T* a, T* b, T* y, int len) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated && Vector512<T>.IsSupported)
            for (; i + Vector512<T>.Count <= len; i += Vector512<T>.Count)
                Vector512.Max(Vector512.Load(a + i) + Vector512.Load(b + i), Vector512<T>.Zero).Store(y + i);
        else if (Vector256.IsHardwareAccelerated && Vector256<T>.IsSupported)
            for (; i + Vector256<T>.Count <= len; i += Vector256<T>.Count)
                Vector256.Max(Vector256.Load(a + i) + Vector256.Load(b + i), Vector256<T>.Zero).Store(y + i);
        for (; i < len; i++) y[i] = T.Max(a[i] + b[i], T.Zero);
    }
}
