using System.Numerics;
using AttnCore.Kernels.Cpu;

namespace AttnCore.Backends;

/// <summary>
/// The CPU backend: pooled pinned arrays and the hand-written SIMD kernels of AttnCore.Kernels.Cpu.
/// Layout handling lives here (see <see cref="StridedLoop"/>); every contiguous run is handed to a kernel.
/// Element types dispatch once per call to a generic method, so float32 and float64 share one code path.
/// </summary>
public sealed partial class CpuBackend : IBackend
{
    /// <summary>Creates the backend of <paramref name="device"/> (use <see cref="Device.Cpu"/>).</summary>
    public CpuBackend(Device device) => Device = device;

    /// <inheritdoc/>
    public Device Device { get; }

    /// <inheritdoc/>
    public void Synchronize() { }

    /// <inheritdoc/>
    /// <remarks>A CPU storage is one .NET array: <see cref="Array.MaxLength"/> elements.</remarks>
    public long MaxElements(DType dtype) => Array.MaxLength;

    /// <inheritdoc/>
    public Storage Allocate(DType dtype, long length) => dtype switch
    {
        DType.Float32 => new CpuStorage<float>(Device, length),
        DType.Float64 => new CpuStorage<double>(Device, length),
        DType.Int64 => new CpuStorage<long>(Device, length),
        DType.Bool => new CpuStorage<bool>(Device, length),
        _ => throw new NotSupportedException($"CpuBackend.Allocate: dtype {dtype} is not supported"),
    };

    internal static T[] Data<T>(Storage s) where T : unmanaged => s switch
    {
        CpuStorage<T> c => c.Array,
        _ => throw new ArgumentException($"CpuBackend: expected {DTypeInfo.Of<T>().Name()} storage on cpu, got {s.DType.Name()} storage on {s.Device}"),
    };

    /// <inheritdoc/>
    public void Upload<T>(ReadOnlySpan<T> src, Storage dst) where T : unmanaged => src.CopyTo(Data<T>(dst));

    /// <inheritdoc/>
    public void Download<T>(Storage src, long offset, Span<T> dst) where T : unmanaged =>
        Data<T>(src).AsSpan((int)offset, dst.Length).CopyTo(dst);

    /// <inheritdoc/>
    public void Fill(Storage dst, Layout layout, double value)
    {
        switch (dst.DType)
        {
            case DType.Float32: FillT(Data<float>(dst), layout, (float)value); break;
            case DType.Float64: FillT(Data<double>(dst), layout, value); break;
            case DType.Int64: FillT(Data<long>(dst), layout, checked((long)value)); break;
            case DType.Bool: FillT(Data<bool>(dst), layout, value != 0); break; // NaN is true, as bool(nan) in PyTorch
            default: throw new NotSupportedException($"Fill: dtype {dst.DType.Name()} is not supported on {Device}");
        }
    }

    // Split over the pool when large, as the element-wise ops are (PyTorch's fill_ is a parallel loop too): a backward
    // seed of ones or a zeroed buffer of megabytes was one thread's work while the others waited.
    private static unsafe void FillT<T>(T[] data, Layout layout, T value) where T : unmanaged
    {
        var loop = new StridedLoop(layout.Shape, layout.Strides, layout.Offset);
        RunSplit(new FillPass<T> { D = Ptr(data), Value = value }, loop, (long)loop.RunLength * loop.RunCount);
    }

    private unsafe struct FillPass<T> : IRunsPass where T : unmanaged
    {
        public T* D; public T Value;
        public readonly void Runs(ref StridedLoop loop, int start, int length)
        {
            long inner = loop.Inner0;
            while (loop.Next(out long o, out _, out _))
            {
                if (inner == 1) new Span<T>(D + o + start, length).Fill(Value);
                else for (int i = start; i < start + length; i++) D[o + i * inner] = Value;
            }
        }
    }

    /// <inheritdoc/>
    public void Copy(Storage src, Layout srcLayout, Storage dst, Layout dstLayout)
    {
        if (src.DType == DType.Bool || dst.DType == DType.Bool)
        {
            CopyBool(src, srcLayout, dst, dstLayout);
            return;
        }
        switch (src.DType, dst.DType)
        {
            case (DType.Float32, DType.Float32): CopyT(Data<float>(src), srcLayout, Data<float>(dst), dstLayout); break;
            case (DType.Float64, DType.Float64): CopyT(Data<double>(src), srcLayout, Data<double>(dst), dstLayout); break;
            case (DType.Int64, DType.Int64): CopyT(Data<long>(src), srcLayout, Data<long>(dst), dstLayout); break;
            case (DType.Float32, DType.Float64): Convert<float, double>(Data<float>(src), srcLayout, Data<double>(dst), dstLayout); break;
            case (DType.Float64, DType.Float32): Convert<double, float>(Data<double>(src), srcLayout, Data<float>(dst), dstLayout); break;
            case (DType.Int64, DType.Float32): Convert<long, float>(Data<long>(src), srcLayout, Data<float>(dst), dstLayout); break;
            case (DType.Int64, DType.Float64): Convert<long, double>(Data<long>(src), srcLayout, Data<double>(dst), dstLayout); break;
            case (DType.Float32, DType.Int64): Convert<float, long>(Data<float>(src), srcLayout, Data<long>(dst), dstLayout); break;
            case (DType.Float64, DType.Int64): Convert<double, long>(Data<double>(src), srcLayout, Data<long>(dst), dstLayout); break;
        }
    }

    // Conversions to and from bool as PyTorch: true is 1, and any non-zero value (NaN included) is true.
    private static void CopyBool(Storage src, Layout sl, Storage dst, Layout dl)
    {
        switch (src.DType, dst.DType)
        {
            case (DType.Bool, DType.Bool): CopyT(Data<bool>(src), sl, Data<bool>(dst), dl); break;
            case (DType.Bool, DType.Float32): FromBool(Data<bool>(src), sl, Data<float>(dst), dl); break;
            case (DType.Bool, DType.Float64): FromBool(Data<bool>(src), sl, Data<double>(dst), dl); break;
            case (DType.Bool, DType.Int64): FromBool(Data<bool>(src), sl, Data<long>(dst), dl); break;
            case (DType.Float32, DType.Bool): ToBool(Data<float>(src), sl, Data<bool>(dst), dl); break;
            case (DType.Float64, DType.Bool): ToBool(Data<double>(src), sl, Data<bool>(dst), dl); break;
            case (DType.Int64, DType.Bool): ToBool(Data<long>(src), sl, Data<bool>(dst), dl); break;
            default: throw new NotSupportedException($"Copy: no conversion from {src.DType.Name()} to {dst.DType.Name()}");
        }
    }

    // Copies and mask conversions of large tensors are split over the worker pool as the element-wise ops are
    // (RunSplit in CpuBackend.Elementwise.cs): whole runs per chunk, or a piece of one long run.
    private unsafe struct CopyPass<TFrom, TTo> : IRunsPass where TFrom : unmanaged where TTo : unmanaged
    {
        public TFrom* S; public TTo* D;
        public delegate*<TFrom*, TTo*, ref StridedLoop, int, int, void> Copy;
        public readonly void Runs(ref StridedLoop loop, int start, int length) => Copy(S, D, ref loop, start, length);
    }

    private static unsafe void RunCopy<TFrom, TTo>(TFrom[] src, Layout sl, TTo[] dst, Layout dl, delegate*<TFrom*, TTo*, ref StridedLoop, int, int, void> runs)
        where TFrom : unmanaged where TTo : unmanaged
    {
        var loop = new StridedLoop(sl.Shape, sl.Strides, sl.Offset, dl.Strides, dl.Offset);
        RunSplit(new CopyPass<TFrom, TTo> { S = Ptr(src), D = Ptr(dst), Copy = runs }, loop, (long)loop.RunLength * loop.RunCount);
    }

    private static unsafe void FromBool<T>(bool[] src, Layout sl, T[] dst, Layout dl) where T : unmanaged, INumber<T>
        => RunCopy(src, sl, dst, dl, &FromBoolRuns<T>);

    private static unsafe void FromBoolRuns<T>(bool* src, T* dst, ref StridedLoop loop, int start, int n) where T : unmanaged, INumber<T>
    {
        long si = loop.Inner0, di = loop.Inner1;
        while (loop.Next(out long so, out long doff, out _))
        {
            so += start * si; doff += start * di;
            if (si == 1 && di == 1) MaskKernels.ToNumbers<T>(new ReadOnlySpan<bool>(src + so, n), new Span<T>(dst + doff, n));
            else for (int i = 0; i < n; i++) dst[doff + i * di] = src[so + i * si] ? T.One : T.Zero;
        }
    }

    private static void ToBool<T>(T[] src, Layout sl, bool[] dst, Layout dl) where T : unmanaged, INumber<T>
    {
        var loop = new StridedLoop(sl.Shape, sl.Strides, sl.Offset, dl.Strides, dl.Offset);
        int n = loop.RunLength;
        long si = loop.Inner0, di = loop.Inner1;
        while (loop.Next(out long so, out long doff, out _))
            for (int i = 0; i < n; i++) dst[doff + i * di] = src[so + i * si] != T.Zero;
    }

    private static unsafe void CopyT<T>(T[] src, Layout sl, T[] dst, Layout dl) where T : unmanaged
        => RunCopy(src, sl, dst, dl, &CopyRuns<T>);

    private static unsafe void CopyRuns<T>(T* src, T* dst, ref StridedLoop loop, int start, int n) where T : unmanaged
    {
        long si = loop.Inner0, di = loop.Inner1;
        while (loop.Next(out long so, out long doff, out _))
        {
            so += start * si; doff += start * di;
            if (si == 1 && di == 1) new ReadOnlySpan<T>(src + so, n).CopyTo(new Span<T>(dst + doff, n));
            else if (si == 0 && di == 1) new Span<T>(dst + doff, n).Fill(src[so]);   // a broadcast (Expand) made contiguous: one value per run
            else for (int i = 0; i < n; i++) dst[doff + i * di] = src[so + i * si];
        }
    }

    private static void Convert<TFrom, TTo>(TFrom[] src, Layout sl, TTo[] dst, Layout dl)
        where TFrom : unmanaged, INumber<TFrom> where TTo : unmanaged, INumber<TTo>
    {
        var loop = new StridedLoop(sl.Shape, sl.Strides, sl.Offset, dl.Strides, dl.Offset);
        int n = loop.RunLength;
        long si = loop.Inner0, di = loop.Inner1;
        while (loop.Next(out long so, out long doff, out _))
            for (int i = 0; i < n; i++) dst[doff + i * di] = TTo.CreateTruncating(src[so + i * si]);
    }

    /// <inheritdoc/>
    public void Dispose() { }
}
