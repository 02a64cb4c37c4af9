// Elementwise, bool (GPU): masks of one byte per element (0 or 1), as DType.Bool holds them.
//
// Algorithm: one thread per output element, as the float kernels of Elementwise.cs: comparisons of two float32
// or int64 views write a contiguous byte mask (the op code selects the relation, mirroring BinaryOp), the logical
// ops combine two masks, and fills and conversions move between masks and float32/int64 views (any non-zero
// value, NaN included, is true, as PyTorch's bool(x)). WhereMaskKernel selects float32 values by a mask read in
// place; for int64 and mask values the backend converts the mask to the float32 condition those kernels read.
// FLOPs: 1 per element. Bytes: 1 per mask element plus 4 or 8 per number. Bound: memory bandwidth.
// Reference: the SIMD CPU backend (Tests/Gpu/BoolGpuTests.cs compares exactly), itself checked against float64.
using ILGPU;

namespace AttnCore.Kernels.Gpu;

/// <summary>Kernels that make, combine and convert bool masks (bytes 0/1) over strided views.</summary>
public static class ElementwiseBool
{
    /// <summary>dst[i] = relation op (BinaryOp.Eq .. Ge) of the float32 a and b at la(i), lb(i).</summary>
    public static void CompareKernel(Index1D i, ArrayView<float> a, StridedIndex la, ArrayView<float> b, StridedIndex lb, ArrayView<byte> dst, int op)
        => dst[i] = Elementwise.ApplyBinary(op, a[la.At(i)], b[lb.At(i)]) != 0 ? (byte)1 : (byte)0;

    /// <summary>dst[i] = relation op of the int64 a and b at la(i), lb(i).</summary>
    public static void CompareLongKernel(Index1D i, ArrayView<long> a, StridedIndex la, ArrayView<long> b, StridedIndex lb, ArrayView<byte> dst, int op)
        => dst[i] = ElementwiseInt64.ApplyBinary(op, a[la.At(i)], b[lb.At(i)]) != 0 ? (byte)1 : (byte)0;

    /// <summary>dst[i] = a and / or / xor b (op BinaryOp.LogicalAnd, LogicalOr, LogicalXor) of two masks.</summary>
    public static void LogicalKernel(Index1D i, ArrayView<byte> a, StridedIndex la, ArrayView<byte> b, StridedIndex lb, ArrayView<byte> dst, int op)
    {
        int x = a[la.At(i)], y = b[lb.At(i)];
        int r = op == (int)BinaryOp.LogicalAnd ? x & y : op == (int)BinaryOp.LogicalOr ? x | y : x ^ y;
        dst[i] = (byte)r;
    }

    /// <summary>dst[i] = mask at lc(i) ? a at la(i) : b at lb(i) (float32 values).</summary>
    public static void WhereMaskKernel(Index1D i, ArrayView<byte> cond, StridedIndex lc, ArrayView<float> a, StridedIndex la, ArrayView<float> b, StridedIndex lb, ArrayView<float> dst)
        => dst[i] = cond[lc.At(i)] != 0 ? a[la.At(i)] : b[lb.At(i)];

    /// <summary>dst[i] = cond at lc(i) != 0 ? a at la(i) : b at lb(i) (mask values, a float32 condition).</summary>
    public static void WhereBoolValuesKernel(Index1D i, ArrayView<float> cond, StridedIndex lc, ArrayView<byte> a, StridedIndex la, ArrayView<byte> b, StridedIndex lb, ArrayView<byte> dst)
        => dst[i] = cond[lc.At(i)] != 0 ? a[la.At(i)] : b[lb.At(i)];

    /// <summary>dst[ld(i)] = value (0 or 1).</summary>
    public static void FillKernel(Index1D i, ArrayView<byte> dst, StridedIndex ld, byte value) => dst[ld.At(i)] = value;

    /// <summary>dst[ld(i)] = src[ls(i)] (mask to mask).</summary>
    public static void CopyKernel(Index1D i, ArrayView<byte> src, StridedIndex ls, ArrayView<byte> dst, StridedIndex ld) => dst[ld.At(i)] = src[ls.At(i)];

    /// <summary>dst[ld(i)] = 1 or 0 (float32) from the mask.</summary>
    public static void BoolToFloatKernel(Index1D i, ArrayView<byte> src, StridedIndex ls, ArrayView<float> dst, StridedIndex ld) => dst[ld.At(i)] = src[ls.At(i)] != 0 ? 1f : 0f;

    /// <summary>dst[ld(i)] = 1 or 0 (int64) from the mask.</summary>
    public static void BoolToLongKernel(Index1D i, ArrayView<byte> src, StridedIndex ls, ArrayView<long> dst, StridedIndex ld) => dst[ld.At(i)] = src[ls.At(i)] != 0 ? 1L : 0L;

    /// <summary>dst[ld(i)] = src[ls(i)] != 0 (NaN is true).</summary>
    public static void FloatToBoolKernel(Index1D i, ArrayView<float> src, StridedIndex ls, ArrayView<byte> dst, StridedIndex ld) => dst[ld.At(i)] = src[ls.At(i)] != 0 ? (byte)1 : (byte)0;

    /// <summary>dst[ld(i)] = src[ls(i)] != 0.</summary>
    public static void LongToBoolKernel(Index1D i, ArrayView<long> src, StridedIndex ls, ArrayView<byte> dst, StridedIndex ld) => dst[ld.At(i)] = src[ls.At(i)] != 0 ? (byte)1 : (byte)0;
}
