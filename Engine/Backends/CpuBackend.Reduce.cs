using System.Numerics;
using System.Numerics.Tensors;
using AttnCore.Kernels.Cpu;

namespace AttnCore.Backends;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void Reduce(ReduceOp op, Storage src, Layout layout, int keptRank, Storage dst)
    {
        switch (src.DType)
        {
            case DType.Float32: ReduceT(op, Data<float>(src), layout, keptRank, Data<float>(dst)); break;
            case DType.Float64: ReduceT(op, Data<double>(src), layout, keptRank, Data<double>(dst)); break;
            case DType.Int64: ReduceT(op, Data<long>(src), layout, keptRank, Data<long>(dst)); break;
            default: throw new NotSupportedException($"{op}: cannot reduce {src.DType.Name()} tensors; convert with To(DType.Int64)");
        }
    }

    // Two strategies, picked by where the unit stride is:
    // - the reduced block is one contiguous run (sum over the last dim of a row-major tensor):
    //   each output element is a TensorPrimitives reduction of that run;
    // - otherwise (sum over the batch of [N, C]): start from the identity and fold each reduced slice
    //   into the output with the vectorised binary kernel, so the contiguous kept dim stays the SIMD dim.
    private static void ReduceT<T>(ReduceOp op, T[] x, Layout l, int keptRank, T[] d) where T : unmanaged, INumber<T>, IMinMaxValue<T>
    {
        int[] kept = l.Shape[..keptRank], red = l.Shape[keptRank..];
        long outCount = Shape.Numel(kept), redCount = Shape.Numel(red);
        if (outCount == 0) return;
        var dOut = d.AsSpan(0, (int)outCount);
        var redLayout = new Layout(red, l.Strides[keptRank..], 0);
        if (redCount == 0)
        {
            if (op != ReduceOp.Sum) throw new ArgumentException($"{op}: cannot reduce over a zero-size dimension (shape {Shape.Format(l.Shape)})");
            dOut.Clear();
            return;
        }
        if (redLayout.IsContiguous)
        {
            // Output k = the reduction of the run at x's kept offset; the second operand of the loop walks d.
            int[] keptShape = kept.Length == 0 ? [1] : kept;
            var keptLoop = new StridedLoop(keptShape, kept.Length == 0 ? [0L] : l.Strides[..keptRank], l.Offset, Shape.ContiguousStrides(keptShape), 0);
            // SE's squeeze and CBAM's pools reduce a whole activation: large ones split their outputs over the pool.
            unsafe { RunSplit(new ReducePass<T> { X = Ptr(x), D = Ptr(d), Op = op, Length = (int)redCount }, keptLoop, outCount * redCount); }
            return;
        }
        var keptLayout = new Layout(kept, l.Strides[..keptRank], l.Offset);
        var outLayout = Layout.Contiguous(kept);
        var redLoop = new StridedLoop(red, redLayout.Strides, 0);
        int rn = redLoop.RunLength; long rs = redLoop.Inner0;
        bool first = true;
        while (redLoop.Next(out long ro, out _, out _))
            for (int j = 0; j < rn; j++)
            {
                var slice = new Layout(kept, keptLayout.Strides, l.Offset + ro + j * rs);
                if (first) { CopyT(x, slice, d, outLayout); first = false; continue; }
                switch (op)
                {
                    case ReduceOp.Sum: Zip<T, AddOp<T>>(d, outLayout, x, slice, d); break;
                    case ReduceOp.Max: Zip<T, MaximumOp<T>>(d, outLayout, x, slice, d); break;
                    default: Zip<T, MinimumOp<T>>(d, outLayout, x, slice, d); break;
                }
            }
    }

    private unsafe struct ReducePass<T> : IRunsPass where T : unmanaged, INumber<T>, IMinMaxValue<T>
    {
        public T* X, D;
        public ReduceOp Op;
        public int Length;
        public readonly void Runs(ref StridedLoop loop, int start, int length) => ReduceRuns(Op, X, D, Length, ref loop, start, length);
    }

    // d[k] = op over the len contiguous values at each kept offset, for the outputs start .. start + n of each run.
    private static unsafe void ReduceRuns<T>(ReduceOp op, T* x, T* d, int len, ref StridedLoop loop, int start, int n) where T : unmanaged, INumber<T>, IMinMaxValue<T>
    {
        long ki = loop.Inner0;
        while (loop.Next(out long o, out long k, out _))
            for (int i = start; i < start + n; i++)
            {
                var run = new ReadOnlySpan<T>(x + o + i * ki, len);
                d[k + i] = op switch
                {
                    ReduceOp.Sum => TensorPrimitives.Sum(run),
                    ReduceOp.Max => TensorPrimitives.Max(run),
                    _ => TensorPrimitives.Min(run),
                };
            }
    }

    /// <inheritdoc/>
    public void ArgReduce(ReduceOp op, Storage src, Layout layout, Storage dst)
    {
        switch (src.DType)
        {
            case DType.Float32: ArgT(op, Data<float>(src), layout, Data<long>(dst)); break;
            case DType.Float64: ArgT(op, Data<double>(src), layout, Data<long>(dst)); break;
            case DType.Int64: ArgT(op, Data<long>(src), layout, Data<long>(dst)); break;
            default: throw new NotSupportedException($"Arg{op}: not defined for {src.DType.Name()} tensors; convert with To(DType.Int64)");
        }
    }

    private static void ArgT<T>(ReduceOp op, T[] x, Layout l, long[] d) where T : unmanaged, INumber<T>
    {
        int len = l.Shape[^1];
        long stride = l.Strides[^1];
        if (len == 0) throw new ArgumentException($"Arg{op}: cannot reduce over a zero-size dimension (shape {Shape.Format(l.Shape)})");
        int[] outer = l.Shape[..^1];
        var loop = new StridedLoop(outer.Length == 0 ? [1] : outer, outer.Length == 0 ? [0L] : l.Strides[..^1], l.Offset);
        int n = loop.RunLength; long oi = loop.Inner0; long k = 0;
        bool max = op == ReduceOp.Max;
        while (loop.Next(out long o, out _, out _))
            for (int i = 0; i < n; i++, k++)
            {
                long baseIdx = o + i * oi;
                T best = x[baseIdx]; long bestAt = 0;
                for (int j = 1; j < len && !T.IsNaN(best); j++)
                {
                    T v = x[baseIdx + j * stride];
                    if (T.IsNaN(v) || (max ? v > best : v < best)) { best = v; bestAt = j; }
                }
                d[k] = bestAt;
            }
    }
}

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void TopK(Storage src, Layout layout, int k, bool largest, Storage dst)
    {
        switch (src.DType)
        {
            case DType.Float32: TopKT(Data<float>(src), layout, k, largest, Data<long>(dst)); break;
            case DType.Float64: TopKT(Data<double>(src), layout, k, largest, Data<long>(dst)); break;
            case DType.Int64: TopKT(Data<long>(src), layout, k, largest, Data<long>(dst)); break;
            default: throw new NotSupportedException($"TopK: not defined for {src.DType.Name()} tensors");
        }
    }

    // The order TopK emits: larger (smaller) values first, NaN above every number, ties by lower index.
    private readonly struct TopKOrder<T>(T[] row, bool largest) : IComparer<int> where T : INumber<T>
    {
        public int Compare(int a, int b)
        {
            T va = row[a], vb = row[b];
            bool na = T.IsNaN(va), nb = T.IsNaN(vb);
            int c = na || nb ? (na == nb ? 0 : na ? 1 : -1) : va.CompareTo(vb);
            if (largest) c = -c;
            return c != 0 ? c : a.CompareTo(b);
        }
    }

    // Each row is copied to a dense scratch row, its indices sorted by TopKOrder (O(n log n) per row) and the
    // first k kept. Scratch is allocated once per call, not per row.
    private static void TopKT<T>(T[] x, Layout l, int k, bool largest, long[] d) where T : unmanaged, INumber<T>
    {
        int len = l.Shape[^1];
        long stride = l.Strides[^1];
        int[] outer = l.Shape[..^1];
        var row = new T[len];
        var order = new int[len];
        var comparer = new TopKOrder<T>(row, largest);
        var loop = new StridedLoop(outer.Length == 0 ? [1] : outer, outer.Length == 0 ? [0L] : l.Strides[..^1], l.Offset);
        int n = loop.RunLength; long oi = loop.Inner0; long r = 0;
        while (loop.Next(out long o, out _, out _))
            for (int i = 0; i < n; i++, r++)
            {
                long start = o + i * oi;
                for (int j = 0; j < len; j++) { row[j] = x[start + j * stride]; order[j] = j; }
                order.AsSpan().Sort(comparer);
                for (int j = 0; j < k; j++) d[r * k + j] = order[j];
            }
    }
}
