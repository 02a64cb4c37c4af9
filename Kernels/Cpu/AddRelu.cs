// Residual add + ReLU fused: y = max(0, a + b) in one pass (the end of every ResNet block: the branch plus the
// shortcut, then the ReLU), instead of writing a + b and reading it back for the ReLU.
// NaN stays NaN (Vector.Max and T.Max propagate it), as the ReLU op. The gradient of both inputs is the ReLU's,
// dy·[y > 0] from the saved output (BatchNorm.ReluBackward), computed once for the two. Both kernels run on
// the two-span driver Zip (Zip.cs).
// FLOPs: 2 per element. Bytes per float element: 12 (reads a and b, writes y) against 12 + 8 unfused.
// Bound: memory bandwidth. Reference: the scalar loop in Tests/Kernels/BatchNormReluTests.cs at every length 0..33.
using System.Numerics;
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
