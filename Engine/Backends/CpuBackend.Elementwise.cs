using AttnCore.Kernels;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using AttnCore.Kernels.Cpu;

namespace AttnCore.Backends;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void Unary(UnaryOp op, double scalar, Storage src, Layout srcLayout, Storage dst)
    {
        switch (src.DType)
        {
            case DType.Float32: UnaryFloat(op, (float)scalar, Data<float>(src), srcLayout, Data<float>(dst)); break;
            case DType.Float64: UnaryFloat(op, scalar, Data<double>(src), srcLayout, Data<double>(dst)); break;
            case DType.Int64: UnaryInt(op, (long)scalar, Data<long>(src), srcLayout, Data<long>(dst)); break;
            default: throw new NotSupportedException($"{op}: not defined for {src.DType.Name()} tensors");
        }
    }

    // A switch expression with no discard arm: a UnaryOp without its kernel here is a compile error (CS8509 under
    // warnings-as-errors), never a silent fall-through; a value outside the enum throws.
    private static unsafe void UnaryFloat<T>(UnaryOp op, T s, T[] x, Layout l, T[] d) where T : unmanaged, IFloatingPointIeee754<T>
    {
#pragma warning disable CS8524 // unnamed enum values: they throw SwitchExpressionException, named ones are all listed
        delegate*<T[], Layout, T[], T, void> map = op switch
        {
            UnaryOp.Neg => &Map<T, NegOp<T>>,
            UnaryOp.Abs => &Map<T, AbsOp<T>>,
            UnaryOp.Exp => &Map<T, ExpOp<T>>,
            UnaryOp.Log => &Map<T, LogOp<T>>,
            UnaryOp.Sqrt => &Map<T, SqrtOp<T>>,
            UnaryOp.Rsqrt => &Map<T, RsqrtOp<T>>,
            UnaryOp.Tanh => &Map<T, TanhOp<T>>,
            UnaryOp.Sigmoid => &Map<T, SigmoidOp<T>>,
            UnaryOp.Relu => &Map<T, ReluOp<T>>,
            UnaryOp.Gelu => &Map<T, GeluOp<T>>,
            UnaryOp.GeluTanh => &Map<T, GeluTanhOp<T>>,
            UnaryOp.Silu => &Map<T, SiluOp<T>>,
            UnaryOp.Sin => &Map<T, SinOp<T>>,
            UnaryOp.Cos => &Map<T, CosOp<T>>,
            UnaryOp.Square => &Map<T, SquareOp<T>>,
            UnaryOp.Reciprocal => &Map<T, ReciprocalOp<T>>,
            UnaryOp.Sign => &Map<T, SignOp<T>>,
            UnaryOp.AddScalar => &Map<T, AddScalarOp<T>>,
            UnaryOp.MulScalar => &Map<T, MulScalarOp<T>>,
            UnaryOp.PowScalar => &Map<T, PowScalarOp<T>>,
            UnaryOp.RSubScalar => &Map<T, RSubScalarOp<T>>,
            UnaryOp.RDivScalar => &Map<T, RDivScalarOp<T>>,
            UnaryOp.ClampMin => &Map<T, ClampMinOp<T>>,
            UnaryOp.ClampMax => &Map<T, ClampMaxOp<T>>,
            UnaryOp.GeluGrad => &Map<T, GeluGradOp<T>>,
            UnaryOp.GeluTanhGrad => &Map<T, GeluTanhGradOp<T>>,
            UnaryOp.Softplus => &Map<T, SoftplusOp<T>>,
            UnaryOp.Mish => &Map<T, MishOp<T>>,
            UnaryOp.LogSigmoid => &Map<T, LogSigmoidOp<T>>,
        };
#pragma warning restore CS8524
        map(x, l, d, s);
    }

    private static void UnaryInt(UnaryOp op, long s, long[] x, Layout l, long[] d)
    {
        switch (op)
        {
            case UnaryOp.Neg: Map<long, NegOp<long>>(x, l, d, s); break;
            case UnaryOp.Abs: Map<long, AbsOp<long>>(x, l, d, s); break;
            case UnaryOp.Sign: Map<long, SignOp<long>>(x, l, d, s); break;
            case UnaryOp.Square: Map<long, SquareOp<long>>(x, l, d, s); break;
            case UnaryOp.AddScalar: Map<long, AddScalarOp<long>>(x, l, d, s); break;
            case UnaryOp.MulScalar: Map<long, MulScalarOp<long>>(x, l, d, s); break;
            case UnaryOp.RSubScalar: Map<long, RSubScalarOp<long>>(x, l, d, s); break;
            case UnaryOp.ClampMin: Map<long, ClampMinOp<long>>(x, l, d, s); break;
            case UnaryOp.ClampMax: Map<long, ClampMaxOp<long>>(x, l, d, s); break;
            default: throw new NotSupportedException($"{op}: not defined for int64 tensors; convert with To(DType.Float32) first");
        }
    }

    // Below this many elements an element-wise op stays on the calling thread: waking the pool costs more.
    private const long ParallelElements = 128 * 1024;

    // How a large element-wise op's strided loop is split over the worker pool: whole runs per chunk, or, when
    // there are fewer runs than chunks (one long contiguous run), an equal piece of every run per chunk.
    private struct RunChunks
    {
        private StridedLoop _loop;
        private long _runs, _runsPerChunk;
        private int _runLength;
        public int Chunks;

        public static RunChunks Plan(StridedLoop loop, long numel)
        {
            var plan = new RunChunks { _loop = loop, _runs = loop.RunCount, _runLength = loop.RunLength };
            plan.Chunks = WorkerPool.ChunkCount(numel, ParallelElements / 4, 2);
            plan._runsPerChunk = Math.Max(1, (plan._runs + plan.Chunks - 1) / plan.Chunks);
            return plan;
        }

        /// <summary>The loop positioned at <paramref name="chunk"/>'s runs and the slice of each run it covers; false when the chunk is empty.</summary>
        public readonly bool Select(int chunk, out StridedLoop loop, out int start, out int length)
        {
            loop = _loop;
            if (_runs >= Chunks)
            {
                long r0 = chunk * _runsPerChunk;
                (start, length) = (0, _runLength);
                if (r0 >= _runs) return false;
                loop.Seek(r0, Math.Min(_runsPerChunk, _runs - r0));
                return true;
            }
            int per = (_runLength + Chunks - 1) / Chunks;
            start = chunk * per;
            length = Math.Min(per, _runLength - start);
            return start < _runLength;
        }
    }

    // One pass of an element-wise op, copy or reduction over a strided loop: Runs does the slice start .. start + length
    // of each run the loop yields. RunSplit runs it on the calling thread, or split over the pool when it is large.
    private interface IRunsPass
    {
        void Runs(ref StridedLoop loop, int start, int length);
    }

    private struct SplitJob<TPass> where TPass : unmanaged, IRunsPass
    {
        public TPass Pass;
        public RunChunks Plan;
    }

    /// <summary>
    /// <paramref name="pass"/> over every run of <paramref name="loop"/>; with <paramref name="work"/> (elements touched)
    /// of <see cref="ParallelElements"/> or more and several threads, split into <see cref="RunChunks"/> over the pool.
    /// </summary>
    private static unsafe void RunSplit<TPass>(TPass pass, StridedLoop loop, long work) where TPass : unmanaged, IRunsPass
    {
        if (work >= ParallelElements && WorkerPool.ThreadCount > 1)
        {
            var job = new SplitJob<TPass> { Pass = pass, Plan = RunChunks.Plan(loop, work) };
            WorkerPool.For(job.Plan.Chunks, &SplitChunk<TPass>, (nint)(&job));
            return;
        }
        if (work > 0) pass.Runs(ref loop, 0, loop.RunLength);
    }

    private static unsafe void SplitChunk<TPass>(int chunk, nint state) where TPass : unmanaged, IRunsPass
    {
        ref var job = ref *(SplitJob<TPass>*)state;
        if (job.Plan.Select(chunk, out var loop, out int start, out int length)) job.Pass.Runs(ref loop, start, length);
    }

    // Storage arrays come from CpuMemoryPool and are pinned: the passes (and the pool's workers) hold raw pointers.
    private unsafe struct MapPass<T, TOp> : IRunsPass where T : unmanaged where TOp : IUnaryOperator<T>
    {
        public T* X, D; public T S;
        public readonly void Runs(ref StridedLoop loop, int start, int length) => MapRuns<T, TOp>(X, D, S, ref loop, start, length);
    }

    private static unsafe T* Ptr<T>(T[] a) where T : unmanaged => (T*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(a));

    /// <summary>d (contiguous) = TOp(x (strided), s); large tensors are split over the worker pool by runs (or within one long run).</summary>
    private static unsafe void Map<T, TOp>(T[] x, Layout l, T[] d, T s) where T : unmanaged where TOp : IUnaryOperator<T>
    {
        var loop = new StridedLoop(l.Shape, l.Strides, l.Offset, Shape.ContiguousStrides(l.Shape), 0);
        RunSplit(new MapPass<T, TOp> { X = Ptr(x), D = Ptr(d), S = s }, loop, (long)loop.RunLength * loop.RunCount);
    }

    private static unsafe void MapRuns<T, TOp>(T* x, T* d, T s, ref StridedLoop loop, int start, int length) where T : unmanaged where TOp : IUnaryOperator<T>
    {
        long xi = loop.Inner0;
        while (loop.Next(out long xo, out long dofs, out _))
        {
            var dst = new Span<T>(d + dofs + start, length);
            if (xi == 1) TOp.Run(new ReadOnlySpan<T>(x + xo + start, length), s, dst);
            else for (int i = 0; i < length; i++) dst[i] = TOp.Apply(x[xo + (start + i) * xi], s);
        }
    }

    /// <inheritdoc/>
    public void Binary(BinaryOp op, Storage a, Layout aLayout, Storage b, Layout bLayout, Storage dst)
    {
        if (dst.DType == DType.Bool)
        {
            BinaryToBool(op, a, aLayout, b, bLayout, Data<bool>(dst));
            return;
        }
        switch (a.DType)
        {
            case DType.Float32: BinaryFloat(op, Data<float>(a), aLayout, Data<float>(b), bLayout, Data<float>(dst)); break;
            case DType.Float64: BinaryFloat(op, Data<double>(a), aLayout, Data<double>(b), bLayout, Data<double>(dst)); break;
            case DType.Int64:
                if (op is BinaryOp.Pow or BinaryOp.GeluBackward or BinaryOp.GeluTanhBackward) throw new NotSupportedException($"{op}: not defined for int64 tensors; convert with To(DType.Float32) first");
                BinaryNumber(op, Data<long>(a), aLayout, Data<long>(b), bLayout, Data<long>(dst));
                break;
            default: throw new NotSupportedException($"{op}: not defined for {a.DType.Name()} tensors");
        }
    }

    private static void BinaryFloat<T>(BinaryOp op, T[] a, Layout la, T[] b, Layout lb, T[] d) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (op == BinaryOp.Pow) Zip<T, PowOp<T>>(a, la, b, lb, d);
        else if (op == BinaryOp.GeluBackward) Zip<T, GeluBackwardOp<T>>(a, la, b, lb, d);
        else if (op == BinaryOp.GeluTanhBackward) Zip<T, GeluTanhBackwardOp<T>>(a, la, b, lb, d);
        else BinaryNumber(op, a, la, b, lb, d);
    }

    private static void BinaryNumber<T>(BinaryOp op, T[] a, Layout la, T[] b, Layout lb, T[] d) where T : unmanaged, INumber<T>
    {
        switch (op)
        {
            case BinaryOp.Add: Zip<T, AddOp<T>>(a, la, b, lb, d); break;
            case BinaryOp.Sub: Zip<T, SubOp<T>>(a, la, b, lb, d); break;
            case BinaryOp.Mul: Zip<T, MulOp<T>>(a, la, b, lb, d); break;
            case BinaryOp.Div:
                if (typeof(T) == typeof(long)) CheckNoZeroDivisor((long[])(object)b, lb);
                Zip<T, DivOp<T>>(a, la, b, lb, d);
                break;
            case BinaryOp.Maximum: Zip<T, MaximumOp<T>>(a, la, b, lb, d); break;
            case BinaryOp.Minimum: Zip<T, MinimumOp<T>>(a, la, b, lb, d); break;
            case BinaryOp.Eq: Zip<T, CompareOp<T, EqRel<T>>>(a, la, b, lb, d); break;
            case BinaryOp.Ne: Zip<T, CompareOp<T, NeRel<T>>>(a, la, b, lb, d); break;
            case BinaryOp.Lt: Zip<T, CompareOp<T, LtRel<T>>>(a, la, b, lb, d); break;
            case BinaryOp.Le: Zip<T, CompareOp<T, LeRel<T>>>(a, la, b, lb, d); break;
            case BinaryOp.Gt: Zip<T, CompareOp<T, GtRel<T>>>(a, la, b, lb, d); break;
            case BinaryOp.Ge: Zip<T, CompareOp<T, GeRel<T>>>(a, la, b, lb, d); break;
            default: throw new NotSupportedException($"CpuBackend.Binary: {op} is not implemented");
        }
    }

    // Comparisons of two tensors of one dtype, or the logical ops of two bool tensors, into a contiguous bool mask.
    private static void BinaryToBool(BinaryOp op, Storage a, Layout la, Storage b, Layout lb, bool[] d)
    {
        if (a.DType != b.DType) throw new ArgumentException($"{op}: operands differ in dtype ({a.DType.Name()} and {b.DType.Name()})");
        if (op is BinaryOp.LogicalAnd or BinaryOp.LogicalOr or BinaryOp.LogicalXor)
        {
            if (a.DType != DType.Bool) throw new ArgumentException($"{op}: operands must be bool, got {a.DType.Name()}");
            LogicalRuns(op - BinaryOp.LogicalAnd, Data<bool>(a), la, Data<bool>(b), lb, d);
            return;
        }
        switch (a.DType)
        {
            case DType.Float32: CompareToBool(op, Data<float>(a), la, Data<float>(b), lb, d); break;
            case DType.Float64: CompareToBool(op, Data<double>(a), la, Data<double>(b), lb, d); break;
            case DType.Int64: CompareToBool(op, Data<long>(a), la, Data<long>(b), lb, d); break;
            default: throw new NotSupportedException($"{op}: comparisons of {a.DType.Name()} tensors give no bool mask on {Device.Cpu}; convert with To(DType.Int64)");
        }
    }

    private static void CompareToBool<T>(BinaryOp op, T[] a, Layout la, T[] b, Layout lb, bool[] d) where T : unmanaged, INumber<T>
    {
        switch (op)
        {
            case BinaryOp.Eq: CompareRuns<T, EqRel<T>>(a, la, b, lb, d); break;
            case BinaryOp.Ne: CompareRuns<T, NeRel<T>>(a, la, b, lb, d); break;
            case BinaryOp.Lt: CompareRuns<T, LtRel<T>>(a, la, b, lb, d); break;
            case BinaryOp.Le: CompareRuns<T, LeRel<T>>(a, la, b, lb, d); break;
            case BinaryOp.Gt: CompareRuns<T, GtRel<T>>(a, la, b, lb, d); break;
            case BinaryOp.Ge: CompareRuns<T, GeRel<T>>(a, la, b, lb, d); break;
            default: throw new ArgumentException($"{op}: is not a comparison; only comparisons and logical ops write a bool output");
        }
    }

    private unsafe struct ComparePass<T, TRel> : IRunsPass where T : unmanaged where TRel : IRelation<T>
    {
        public T* A, B; public bool* D;
        public readonly void Runs(ref StridedLoop loop, int start, int length) => CompareSlices<T, TRel>(A, B, D, ref loop, start, length);
    }

    /// <summary>d (a contiguous mask) = TRel(a, b) with a and b strided/broadcast to d's shape; large ones split over the pool.</summary>
    private static unsafe void CompareRuns<T, TRel>(T[] a, Layout la, T[] b, Layout lb, bool[] d) where T : unmanaged where TRel : IRelation<T>
    {
        var loop = new StridedLoop(la.Shape, la.Strides, la.Offset, lb.Strides, lb.Offset, Shape.ContiguousStrides(la.Shape), 0);
        RunSplit(new ComparePass<T, TRel> { A = Ptr(a), B = Ptr(b), D = Ptr(d) }, loop, (long)loop.RunLength * loop.RunCount);
    }

    private static unsafe void CompareSlices<T, TRel>(T* a, T* b, bool* d, ref StridedLoop loop, int start, int n) where T : unmanaged where TRel : IRelation<T>
    {
        long ai = loop.Inner0, bi = loop.Inner1;
        while (loop.Next(out long ao, out long bo, out long dofs))
        {
            ao += start * ai; bo += start * bi;
            var dst = new Span<bool>(d + dofs + start, n);
            if (ai == 1 && bi == 1) MaskKernels.Compare<T, TRel>(new ReadOnlySpan<T>(a + ao, n), new ReadOnlySpan<T>(b + bo, n), dst);
            else if (ai == 1 && bi == 0) MaskKernels.CompareScalarRight<T, TRel>(new ReadOnlySpan<T>(a + ao, n), b[bo], dst);
            else for (int i = 0; i < n; i++) dst[i] = TRel.Holds(a[ao + i * ai], b[bo + i * bi]);
        }
    }

    private static void LogicalRuns(int op, bool[] a, Layout la, bool[] b, Layout lb, bool[] d)
    {
        var loop = new StridedLoop(la.Shape, la.Strides, la.Offset, lb.Strides, lb.Offset, Shape.ContiguousStrides(la.Shape), 0);
        int n = loop.RunLength;
        long ai = loop.Inner0, bi = loop.Inner1;
        while (loop.Next(out long ao, out long bo, out long dofs))
        {
            var dst = d.AsSpan((int)dofs, n);
            if (ai == 1 && bi == 1) MaskKernels.Logical(op, a.AsSpan((int)ao, n), b.AsSpan((int)bo, n), dst);
            else
                for (int i = 0; i < n; i++)
                {
                    bool x = a[ao + i * ai], y = b[bo + i * bi];
                    dst[i] = op == 0 ? x & y : op == 1 ? x | y : x ^ y;
                }
        }
    }

    private static void CheckNoZeroDivisor(long[] b, Layout lb)
    {
        var loop = new StridedLoop(lb.Shape, lb.Strides, lb.Offset);
        int n = loop.RunLength; long bi = loop.Inner0;
        while (loop.Next(out long o, out _, out _))
            for (int i = 0; i < n; i++)
                if (b[o + i * bi] == 0) throw new DivideByZeroException("Div: integer division by zero in an int64 tensor");
    }

    private unsafe struct ZipPass<T, TOp> : IRunsPass where T : unmanaged where TOp : IBinaryOperator<T>
    {
        public T* A, B, D;
        public readonly void Runs(ref StridedLoop loop, int start, int length) => ZipRuns<T, TOp>(A, B, D, ref loop, start, length);
    }

    /// <summary>d (contiguous) = TOp(a, b) with a and b strided/broadcast to d's shape; large ones split over the pool.</summary>
    private static unsafe void Zip<T, TOp>(T[] a, Layout la, T[] b, Layout lb, T[] d) where T : unmanaged where TOp : IBinaryOperator<T>
    {
        var loop = new StridedLoop(la.Shape, la.Strides, la.Offset, lb.Strides, lb.Offset, Shape.ContiguousStrides(la.Shape), 0);
        RunSplit(new ZipPass<T, TOp> { A = Ptr(a), B = Ptr(b), D = Ptr(d) }, loop, (long)loop.RunLength * loop.RunCount);
    }

    private static unsafe void ZipRuns<T, TOp>(T* a, T* b, T* d, ref StridedLoop loop, int start, int n) where T : unmanaged where TOp : IBinaryOperator<T>
    {
        long ai = loop.Inner0, bi = loop.Inner1;
        while (loop.Next(out long ao, out long bo, out long dofs))
        {
            ao += start * ai; bo += start * bi;
            var dst = new Span<T>(d + dofs + start, n);
            if (ai == 1 && bi == 1) TOp.Run(new ReadOnlySpan<T>(a + ao, n), new ReadOnlySpan<T>(b + bo, n), dst);
            else if (ai == 1 && bi == 0) TOp.RunScalarRight(new ReadOnlySpan<T>(a + ao, n), b[bo], dst);
            else if (ai == 0 && bi == 1) TOp.RunScalarLeft(a[ao], new ReadOnlySpan<T>(b + bo, n), dst);
            else for (int i = 0; i < n; i++) dst[i] = TOp.Apply(a[ao + i * ai], b[bo + i * bi]);
        }
    }

    /// <inheritdoc/>
    public void Where(Storage cond, Layout condLayout, Storage a, Layout aLayout, Storage b, Layout bLayout, Storage dst)
    {
        switch (a.DType)
        {
            case DType.Float32: WhereT(cond, condLayout, Data<float>(a), aLayout, Data<float>(b), bLayout, Data<float>(dst)); break;
            case DType.Float64: WhereT(cond, condLayout, Data<double>(a), aLayout, Data<double>(b), bLayout, Data<double>(dst)); break;
            case DType.Int64: WhereT(cond, condLayout, Data<long>(a), aLayout, Data<long>(b), bLayout, Data<long>(dst)); break;
            case DType.Bool: WhereT(cond, condLayout, Data<bool>(a), aLayout, Data<bool>(b), bLayout, Data<bool>(dst)); break;
            default: throw new NotSupportedException($"Where: dtype {a.DType.Name()} is not supported on {Device.Cpu}");
        }
    }

    private static void WhereT<T>(Storage cond, Layout lc, T[] a, Layout la, T[] b, Layout lb, T[] d) where T : unmanaged
    {
        // d = b first, then overwrite where the condition is non-zero: three operands per pass, no scratch mask.
        var dl = Layout.Contiguous(la.Shape);
        CopyT(b, lb, d, dl);
        switch (cond.DType)
        {
            case DType.Float32: Select(Data<float>(cond), lc, a, la, d, dl); break;
            case DType.Float64: Select(Data<double>(cond), lc, a, la, d, dl); break;
            case DType.Int64: Select(Data<long>(cond), lc, a, la, d, dl); break;
            case DType.Bool: SelectWhereTrue(Data<bool>(cond), lc, a, la, d, dl); break;
            default: throw new NotSupportedException($"Where: a {cond.DType.Name()} condition is not supported on {Device.Cpu}");
        }
    }

    private static void SelectWhereTrue<T>(bool[] c, Layout lc, T[] a, Layout la, T[] d, Layout dl) where T : unmanaged
    {
        var loop = new StridedLoop(la.Shape, lc.Strides, lc.Offset, la.Strides, la.Offset, dl.Strides, 0);
        int n = loop.RunLength;
        long ci = loop.Inner0, ai = loop.Inner1, di = loop.Inner2;
        while (loop.Next(out long co, out long ao, out long dofs))
            for (int i = 0; i < n; i++)
                if (c[co + i * ci]) d[dofs + i * di] = a[ao + i * ai];
    }

    private static void Select<TC, T>(TC[] c, Layout lc, T[] a, Layout la, T[] d, Layout dl) where TC : unmanaged, INumber<TC> where T : unmanaged
    {
        var loop = new StridedLoop(la.Shape, lc.Strides, lc.Offset, la.Strides, la.Offset, dl.Strides, 0);
        int n = loop.RunLength;
        long ci = loop.Inner0, ai = loop.Inner1, di = loop.Inner2;
        while (loop.Next(out long co, out long ao, out long dofs))
            for (int i = 0; i < n; i++)
                if (c[co + i * ci] != TC.Zero) d[dofs + i * di] = a[ao + i * ai];
    }
}
