using System.Numerics;
using AttnCore.Kernels.Gpu;
using ILGPU;
using ILGPU.Runtime;

namespace AttnCore.Backends;

/// <summary>
/// The backend of ILGPU devices: the kernels of AttnCore.Kernels.Gpu, compiled once per accelerator by
/// ILGPU and launched on it. Now: element-wise ops, reductions and the tiled GEMM in float32 (and int64
/// copies and fills); the remaining ops arrive with the GPU backend issue and say so when called.
/// Device memory comes from a caching allocator: freed buffers wait in power-of-two size classes and are
/// handed out again, so a steady-state step asks the driver for nothing; <see cref="Dispose"/> releases all.
/// </summary>
public sealed class IlgpuBackend : IBackend
{
    private readonly Accelerator _acc;
    private readonly Dictionary<(DType, int), Stack<MemoryBuffer>> _free = [];
    private readonly object _gate = new();

    private readonly Lazy<Action<Index1D, ArrayView<float>, StridedIndex, ArrayView<float>, int, float>> _unary;
    private readonly Lazy<Action<Index1D, ArrayView<float>, StridedIndex, ArrayView<float>, StridedIndex, ArrayView<float>, int>> _binary;
    private readonly Lazy<Action<Index1D, ArrayView<float>, StridedIndex, ArrayView<float>, StridedIndex, ArrayView<float>, StridedIndex, ArrayView<float>>> _where;
    private readonly Lazy<Action<Index1D, ArrayView<float>, StridedIndex, float>> _fill;
    private readonly Lazy<Action<Index1D, ArrayView<long>, StridedIndex, long>> _fillLong;
    private readonly Lazy<Action<Index1D, ArrayView<float>, StridedIndex, ArrayView<float>, StridedIndex>> _copy;
    private readonly Lazy<Action<Index1D, ArrayView<long>, StridedIndex, ArrayView<long>, StridedIndex>> _copyLong;
    private readonly Lazy<Action<Index1D, ArrayView<long>, StridedIndex, ArrayView<float>, StridedIndex>> _longToFloat;
    private readonly Lazy<Action<Index1D, ArrayView<float>, StridedIndex, ArrayView<long>, StridedIndex>> _floatToLong;
    private readonly Lazy<Action<Index1D, ArrayView<float>, StridedIndex, StridedIndex, long, ArrayView<float>, int>> _reduce;
    private readonly Lazy<Action<Index1D, ArrayView<float>, StridedIndex, long, long, ArrayView<long>, int>> _argReduce;
    private readonly Lazy<Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs>> _gemm;

    /// <summary>Creates the accelerator of <paramref name="device"/> and prepares (lazily) its kernels.</summary>
    public IlgpuBackend(Device device)
    {
        Device = device;
        _acc = IlgpuRuntime.CreateAccelerator(device);
        _unary = new(() => _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, StridedIndex, ArrayView<float>, int, float>(Elementwise.UnaryKernel));
        _binary = new(() => _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, StridedIndex, ArrayView<float>, StridedIndex, ArrayView<float>, int>(Elementwise.BinaryKernel));
        _where = new(() => _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, StridedIndex, ArrayView<float>, StridedIndex, ArrayView<float>, StridedIndex, ArrayView<float>>(Elementwise.WhereKernel));
        _fill = new(() => _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, StridedIndex, float>(Elementwise.FillKernel));
        _fillLong = new(() => _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<long>, StridedIndex, long>(Elementwise.FillLongKernel));
        _copy = new(() => _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, StridedIndex, ArrayView<float>, StridedIndex>(Elementwise.CopyKernel));
        _copyLong = new(() => _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<long>, StridedIndex, ArrayView<long>, StridedIndex>(Elementwise.CopyLongKernel));
        _longToFloat = new(() => _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<long>, StridedIndex, ArrayView<float>, StridedIndex>(Elementwise.LongToFloatKernel));
        _floatToLong = new(() => _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, StridedIndex, ArrayView<long>, StridedIndex>(Elementwise.FloatToLongKernel));
        _reduce = new(() => _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, StridedIndex, StridedIndex, long, ArrayView<float>, int>(Kernels.Gpu.Reduce.ReduceKernel));
        _argReduce = new(() => _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, StridedIndex, long, long, ArrayView<long>, int>(Kernels.Gpu.Reduce.ArgReduceKernel));
        _gemm = new(() => _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs>(Kernels.Gpu.Gemm.TiledKernel));
    }

    /// <inheritdoc/>
    public Device Device { get; }

    /// <summary>The accelerator's name as ILGPU reports it.</summary>
    public string AcceleratorName => _acc.Name;

    /// <summary>Buffers handed out by the driver so far (the caching allocator's misses).</summary>
    public long DriverAllocations { get; private set; }

    private static int SizeClass(long length) => length <= 1 ? 0 : 64 - BitOperations.LeadingZeroCount((ulong)length - 1);

    /// <inheritdoc/>
    public Storage Allocate(DType dtype, long length)
    {
        if (dtype is not (DType.Float32 or DType.Int64))
            throw new NotSupportedException($"IlgpuBackend: {dtype.Name()} tensors are not supported on {Device} (float32 and int64 are)");
        int cls = SizeClass(length);
        MemoryBuffer? buffer = null;
        lock (_gate)
            if (_free.TryGetValue((dtype, cls), out var stack) && stack.Count > 0) buffer = stack.Pop();
        if (buffer is null)
        {
            long capacity = 1L << cls;
            buffer = dtype == DType.Float32 ? _acc.Allocate1D<float>(capacity) : _acc.Allocate1D<long>(capacity);
            DriverAllocations++;
        }
        return new IlgpuStorage(this, dtype, length, buffer);
    }

    internal void Return(DType dtype, MemoryBuffer buffer)
    {
        lock (_gate)
        {
            int cls = SizeClass(buffer.Length);
            if (!_free.TryGetValue((dtype, cls), out var stack)) _free[(dtype, cls)] = stack = new Stack<MemoryBuffer>();
            stack.Push(buffer);
        }
    }

    private static IlgpuStorage S(Storage s) => s as IlgpuStorage ?? throw new ArgumentException($"IlgpuBackend: storage on {s.Device} passed to an ILGPU backend");

    private NotSupportedException Unsupported(string op, DType dtype) =>
        new($"{op}: {dtype.Name()} is not supported on {Device} yet (float32 element-wise ops, reductions and MatMul are; the rest arrives with the GPU backend)");

    private static StridedIndex Index(Layout l) => StridedIndex.Create(l.Shape, l.Strides, l.Offset);

    /// <inheritdoc/>
    public void Upload<T>(ReadOnlySpan<T> src, Storage dst) where T : unmanaged
    {
        if (src.IsEmpty) return;
        var s = S(dst);
        if (typeof(T) == typeof(float)) s.Floats.SubView(0, src.Length).CopyFromCPU(System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(src));
        else if (typeof(T) == typeof(long)) s.Longs.SubView(0, src.Length).CopyFromCPU(System.Runtime.InteropServices.MemoryMarshal.Cast<T, long>(src));
        else throw Unsupported("Upload", DTypeInfo.Of<T>());
    }

    /// <inheritdoc/>
    public void Download<T>(Storage src, long offset, Span<T> dst) where T : unmanaged
    {
        if (dst.IsEmpty) return;
        _acc.Synchronize();
        var s = S(src);
        if (typeof(T) == typeof(float)) s.Floats.SubView(offset, dst.Length).CopyToCPU(System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(dst));
        else if (typeof(T) == typeof(long)) s.Longs.SubView(offset, dst.Length).CopyToCPU(System.Runtime.InteropServices.MemoryMarshal.Cast<T, long>(dst));
        else throw Unsupported("Download", DTypeInfo.Of<T>());
    }

    /// <inheritdoc/>
    public void Fill(Storage dst, Layout layout, double value)
    {
        long n = layout.Numel;
        if (n == 0) return;
        var s = S(dst);
        if (dst.DType == DType.Float32) _fill.Value((Index1D)n, s.Floats, Index(layout), (float)value);
        else _fillLong.Value((Index1D)n, s.Longs, Index(layout), checked((long)value));
    }

    /// <inheritdoc/>
    public void Copy(Storage src, Layout srcLayout, Storage dst, Layout dstLayout)
    {
        long n = srcLayout.Numel;
        if (n == 0) return;
        var (a, b) = (S(src), S(dst));
        switch (src.DType, dst.DType)
        {
            case (DType.Float32, DType.Float32): _copy.Value((Index1D)n, a.Floats, Index(srcLayout), b.Floats, Index(dstLayout)); break;
            case (DType.Int64, DType.Int64): _copyLong.Value((Index1D)n, a.Longs, Index(srcLayout), b.Longs, Index(dstLayout)); break;
            case (DType.Int64, DType.Float32): _longToFloat.Value((Index1D)n, a.Longs, Index(srcLayout), b.Floats, Index(dstLayout)); break;
            case (DType.Float32, DType.Int64): _floatToLong.Value((Index1D)n, a.Floats, Index(srcLayout), b.Longs, Index(dstLayout)); break;
            default: throw Unsupported("Copy", dst.DType);
        }
    }

    /// <inheritdoc/>
    public void Unary(UnaryOp op, double scalar, Storage src, Layout srcLayout, Storage dst)
    {
        if (src.DType != DType.Float32) throw Unsupported(op.ToString(), src.DType);
        _unary.Value((Index1D)srcLayout.Numel, S(src).Floats, Index(srcLayout), S(dst).Floats, (int)op, (float)scalar);
    }

    /// <inheritdoc/>
    public void Binary(BinaryOp op, Storage a, Layout aLayout, Storage b, Layout bLayout, Storage dst)
    {
        if (a.DType != DType.Float32) throw Unsupported(op.ToString(), a.DType);
        _binary.Value((Index1D)aLayout.Numel, S(a).Floats, Index(aLayout), S(b).Floats, Index(bLayout), S(dst).Floats, (int)op);
    }

    /// <inheritdoc/>
    public void Where(Storage cond, Layout condLayout, Storage a, Layout aLayout, Storage b, Layout bLayout, Storage dst)
    {
        if (a.DType != DType.Float32 || cond.DType != DType.Float32) throw Unsupported("Where", a.DType != DType.Float32 ? a.DType : cond.DType);
        _where.Value((Index1D)aLayout.Numel, S(cond).Floats, Index(condLayout), S(a).Floats, Index(aLayout), S(b).Floats, Index(bLayout), S(dst).Floats);
    }

    /// <inheritdoc/>
    public void Reduce(ReduceOp op, Storage src, Layout layout, int keptRank, Storage dst)
    {
        if (src.DType != DType.Float32) throw Unsupported(op.ToString(), src.DType);
        var kept = new Layout(layout.Shape[..keptRank], layout.Strides[..keptRank], layout.Offset);
        var reduced = new Layout(layout.Shape[keptRank..], layout.Strides[keptRank..], 0);
        long outCount = kept.Numel, count = reduced.Numel;
        if (outCount == 0) return;
        if (count == 0)
        {
            if (op != ReduceOp.Sum) throw new ArgumentException($"{op}: cannot reduce over a zero-size dimension (shape {Shape.Format(layout.Shape)})");
            Fill(dst, Layout.Contiguous(kept.Shape), 0);
            return;
        }
        _reduce.Value((Index1D)outCount, S(src).Floats, Index(kept), Index(reduced), count, S(dst).Floats, (int)op);
    }

    /// <inheritdoc/>
    public void ArgReduce(ReduceOp op, Storage src, Layout layout, Storage dst)
    {
        if (src.DType != DType.Float32) throw Unsupported("Arg" + op, src.DType);
        var outer = new Layout(layout.Shape[..^1], layout.Strides[..^1], layout.Offset);
        _argReduce.Value((Index1D)outer.Numel, S(src).Floats, Index(outer), layout.Shape[^1], layout.Strides[^1], S(dst).Longs, (int)op);
    }

    /// <inheritdoc/>
    public void MatMul(Storage a, MatrixOperand aOp, Storage b, MatrixOperand bOp, Storage c, int batch, int m, int n, int k)
    {
        if (a.DType != DType.Float32) throw Unsupported("MatMul", a.DType);
        var args = new GemmArgs
        {
            M = m, N = n, K = k, Lda = aOp.Ld, Ldb = bOp.Ld, TransA = aOp.Transposed ? 1 : 0, TransB = bOp.Transposed ? 1 : 0,
            OffsetA = aOp.Offset, OffsetB = bOp.Offset, BatchStrideA = aOp.BatchStride, BatchStrideB = bOp.BatchStride,
        };
        int t = Kernels.Gpu.Gemm.Tile;
        var config = new KernelConfig(new Index3D((n + t - 1) / t, (m + t - 1) / t, batch), new Index3D(t, t, 1));
        _gemm.Value(config, S(a).Floats, S(b).Floats, S(c).Floats, args);
    }

    /// <inheritdoc/>
    public void Softmax(Storage src, Storage dst, int rows, int cols, bool log) => throw Unsupported(log ? "LogSoftmax" : "Softmax", src.DType);
    /// <inheritdoc/>
    public void LayerNorm(Storage x, Storage? gamma, Storage? beta, Storage y, Storage mean, Storage rstd, int rows, int cols, double eps) => throw Unsupported("LayerNorm", x.DType);
    /// <inheritdoc/>
    public void LayerNormBackward(Storage dy, Storage x, Storage mean, Storage rstd, Storage? gamma, Storage dx, Storage? dgamma, Storage? dbeta, int rows, int cols) => throw Unsupported("LayerNormBackward", x.DType);
    /// <inheritdoc/>
    public (double Loss, int Count) CrossEntropyForward(Storage logits, Storage targets, Storage lse, int rows, int classes, long ignoreIndex, double labelSmoothing) => throw Unsupported("CrossEntropy", logits.DType);
    /// <inheritdoc/>
    public void CrossEntropyBackward(Storage logits, Storage targets, Storage lse, Storage dlogits, int rows, int classes, long ignoreIndex, double labelSmoothing, double gradOutput, int count) => throw Unsupported("CrossEntropy", logits.DType);
    /// <inheritdoc/>
    public void Conv2dForward(Storage x, Storage w, Storage? bias, Storage y, in AttnCore.Kernels.Cpu.Conv2dShape shape) => throw Unsupported("Conv2d", x.DType);
    /// <inheritdoc/>
    public void Conv2dBackward(Storage dy, Storage x, Storage w, Storage? dx, Storage? dw, Storage? dbias, in AttnCore.Kernels.Cpu.Conv2dShape shape) => throw Unsupported("Conv2d", x.DType);
    /// <inheritdoc/>
    public void Pool2dForward(bool max, Storage x, Storage y, Storage? argmax, in AttnCore.Kernels.Cpu.Pool2dShape shape) => throw Unsupported(max ? "MaxPool2d" : "AvgPool2d", x.DType);
    /// <inheritdoc/>
    public void Pool2dBackward(bool max, Storage dy, Storage? argmax, Storage dx, in AttnCore.Kernels.Cpu.Pool2dShape shape) => throw Unsupported(max ? "MaxPool2d" : "AvgPool2d", dy.DType);
    /// <inheritdoc/>
    public void BatchNormForward(bool training, Storage x, Storage? gamma, Storage? beta, Storage y, Storage mean, Storage invstd, Storage? runningMean, Storage? runningVar,
        int n, int c, int hw, double momentum, double eps) => throw Unsupported("BatchNorm2d", x.DType);
    /// <inheritdoc/>
    public void BatchNormBackward(Storage dy, Storage x, Storage mean, Storage invstd, Storage? gamma, Storage dx, Storage? dgamma, Storage? dbeta, int n, int c, int hw) => throw Unsupported("BatchNorm2d", x.DType);
    /// <inheritdoc/>
    public void IndexSelect(Storage src, long outer, int axisSize, long inner, Storage index, int count, Storage dst) => throw Unsupported("IndexSelect", src.DType);
    /// <inheritdoc/>
    public void Gather(Storage src, long outer, int axisSize, long inner, Storage index, int count, Storage dst) => throw Unsupported("Gather", src.DType);
    /// <inheritdoc/>
    public void IndexAdd(Storage dst, long outer, int axisSize, long inner, Storage index, int count, Storage src) => throw Unsupported("IndexAdd", src.DType);
    /// <inheritdoc/>
    public void ScatterAdd(Storage dst, long outer, int axisSize, long inner, Storage index, int count, Storage src) => throw Unsupported("ScatterAdd", src.DType);
    /// <inheritdoc/>
    public void AttentionForward(in AttnCore.Kernels.Cpu.AttentionShape shape, Storage q, in AttnCore.Kernels.Cpu.AttentionOperand qo, Storage k, in AttnCore.Kernels.Cpu.AttentionOperand ko,
        Storage v, in AttnCore.Kernels.Cpu.AttentionOperand vo, Storage o, in AttnCore.Kernels.Cpu.AttentionOperand oo, Storage lse, ReadOnlySpan<byte> keyPaddingMask) => throw Unsupported("Attention", q.DType);
    /// <inheritdoc/>
    public void AttentionBackward(in AttnCore.Kernels.Cpu.AttentionShape shape, Storage q, in AttnCore.Kernels.Cpu.AttentionOperand qo, Storage k, in AttnCore.Kernels.Cpu.AttentionOperand ko,
        Storage v, in AttnCore.Kernels.Cpu.AttentionOperand vo, Storage o, in AttnCore.Kernels.Cpu.AttentionOperand oo, Storage dout, in AttnCore.Kernels.Cpu.AttentionOperand doo,
        Storage lse, ReadOnlySpan<byte> keyPaddingMask, Storage dq, in AttnCore.Kernels.Cpu.AttentionOperand dqo, Storage dk, in AttnCore.Kernels.Cpu.AttentionOperand dko,
        Storage dv, in AttnCore.Kernels.Cpu.AttentionOperand dvo) => throw Unsupported("Attention", q.DType);
    /// <inheritdoc/>
    public void AdamUpdate(Storage param, Storage grad, Storage expAvg, Storage expAvgSq, long length, AdamHyper hyper) => throw Unsupported("AdamUpdate", param.DType);
    /// <inheritdoc/>
    public void SgdUpdate(Storage param, Storage grad, Storage? momentumBuffer, long length, SgdHyper hyper) => throw Unsupported("SgdUpdate", param.DType);

    /// <summary>Releases every cached buffer and the accelerator.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var stack in _free.Values) while (stack.Count > 0) stack.Pop().Dispose();
            _free.Clear();
        }
        _acc.Dispose();
    }
}
