// ElementwiseInt64 (GPU): the int64 ops of index and label tensors (arithmetic, comparisons, where, reductions),
// so that accuracy counts, masks built from token ids and integer bookkeeping stay on the device.
//
// Algorithm: as Elementwise.cs and Reduce.cs (one thread per output element; strided inputs through StridedIndex;
// the op is a code read once per thread), over long. The op set is the CPU backend's for int64: Neg, Abs, Sign,
// Square, AddScalar, MulScalar, RSubScalar, ClampMin, ClampMax; Add, Sub, Mul, Div (truncating), Maximum, Minimum
// and the six comparisons (1 or 0); Sum/Max/Min; ArgMax/ArgMin. Arithmetic wraps on overflow, as in C# and PyTorch.
// Division by zero cannot throw in a kernel: the thread records it in the backend's fault slot (reported at the next
// host sync, like a bad index) and writes 0.
// FLOPs: 1-2 integer ops per element plus the index math. Bytes: 8 per operand read and 8 written. Bound: memory.
// Reference: the SIMD CPU backend's int64 paths (Tests/Gpu/Int64GpuTests.cs).
using ILGPU;

namespace AttnCore.Kernels.Gpu;

/// <summary>Element-wise kernels and reductions over int64 strided views.</summary>
public static class ElementwiseInt64
{
    /// <summary>op(x, s) for the int64 unary codes (UnaryOp); other codes are rejected by the host before launch.</summary>
    public static long ApplyUnary(int op, long x, long s)
    {
        switch ((UnaryOp)op)
        {
            case UnaryOp.Neg: return -x;
            case UnaryOp.Abs: return x < 0 ? -x : x;
            case UnaryOp.Sign: return x > 0 ? 1 : x < 0 ? -1 : 0;
            case UnaryOp.Square: return x * x;
            case UnaryOp.AddScalar: return x + s;
            case UnaryOp.MulScalar: return x * s;
            case UnaryOp.RSubScalar: return s - x;
            case UnaryOp.ClampMin: return x < s ? s : x;
            case UnaryOp.ClampMax: return x > s ? s : x;
            default: return long.MinValue; // the host rejects the float-only codes; never another op's result
        }
    }

    /// <summary>op(a, b) for the int64 binary codes (no Pow; Div truncates and is guarded by the caller for b = 0).</summary>
    public static long ApplyBinary(int op, long a, long b)
    {
        switch ((BinaryOp)op)
        {
            case BinaryOp.Add: return a + b;
            case BinaryOp.Sub: return a - b;
            case BinaryOp.Mul: return a * b;
            case BinaryOp.Div: return b == 0 ? 0 : a / b;
            case BinaryOp.Maximum: return a > b ? a : b;
            case BinaryOp.Minimum: return a < b ? a : b;
            case BinaryOp.Eq: return a == b ? 1 : 0;
            case BinaryOp.Ne: return a != b ? 1 : 0;
            case BinaryOp.Lt: return a < b ? 1 : 0;
            case BinaryOp.Le: return a <= b ? 1 : 0;
            case BinaryOp.Gt: return a > b ? 1 : 0;
            case BinaryOp.Ge: return a >= b ? 1 : 0;
            default: return long.MinValue; // Pow and the logical ops are rejected by the host; never another op's result
        }
    }

    /// <summary>dst[i] = op(src at ls(i), s).</summary>
    public static void UnaryKernel(Index1D i, ArrayView<long> src, StridedIndex ls, ArrayView<long> dst, int op, long s)
        => dst[i] = ApplyUnary(op, src[ls.At(i)], s);

    /// <summary>
    /// dst[i] = op(a at la(i), b at lb(i)); an integer division by zero writes 0 and records the fault
    /// (fault[0] = checkId &lt;&lt; 48, fault[1] = 1; see IndexOps.CheckRangeKernel).
    /// </summary>
    public static void BinaryKernel(Index1D i, ArrayView<long> a, StridedIndex la, ArrayView<long> b, StridedIndex lb, ArrayView<long> dst, int op,
        ArrayView<long> fault, long checkId)
    {
        long bv = b[lb.At(i)];
        if (op == (int)BinaryOp.Div && bv == 0) { fault[0] = checkId << 48; fault[1] = 1; }
        dst[i] = ApplyBinary(op, a[la.At(i)], bv);
    }

    /// <summary>dst[i] = cond != 0 ? a : b, for a float32 condition (int64 conditions are converted first by the host).</summary>
    public static void WhereKernel(Index1D i, ArrayView<float> cond, StridedIndex lc, ArrayView<long> a, StridedIndex la, ArrayView<long> b, StridedIndex lb, ArrayView<long> dst)
        => dst[i] = cond[lc.At(i)] != 0 ? a[la.At(i)] : b[lb.At(i)];

    /// <summary>dst[o] = Sum/Max/Min (op 0/1/2) of the block at kept(o), walked by reduced(j) for j &lt; count &gt; 0.</summary>
    public static void ReduceKernel(Index1D o, ArrayView<long> src, StridedIndex kept, StridedIndex reduced, long count, ArrayView<long> dst, int op)
    {
        long start = kept.At(o);
        long acc = src[start + reduced.At(0)];
        for (long j = 1; j < count; j++)
        {
            long v = src[start + reduced.At(j)];
            acc = op == Reduce.Sum ? acc + v : op == Reduce.Max ? (v > acc ? v : acc) : (v < acc ? v : acc);
        }
        dst[o] = acc;
    }

    /// <summary>dst[o] = index of the max (op 1) or min (op 2) of the row at outer(o); the first index wins ties.</summary>
    public static void ArgReduceKernel(Index1D o, ArrayView<long> src, StridedIndex outer, long length, long stride, ArrayView<long> dst, int op)
    {
        long start = outer.At(o);
        long best = src[start], at = 0;
        for (long j = 1; j < length; j++)
        {
            long v = src[start + j * stride];
            if (op == Reduce.Max ? v > best : v < best) { best = v; at = j; }
        }
        dst[o] = at;
    }
}
