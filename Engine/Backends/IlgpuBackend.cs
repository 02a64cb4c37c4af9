using AttnCore.Kernels;
using AttnCore.Kernels.Cpu;
using AttnCore.Kernels.Gpu;
using ILGPU;
using ILGPU.Runtime;

namespace AttnCore.Backends;

/// <summary>
/// The backend of ILGPU devices: the kernels of AttnCore.Kernels.Gpu, compiled once per accelerator and
/// launched on it. Nothing here depends on the kind of accelerator (ILGPU's CPU accelerator, CUDA, OpenCL; see
/// <see cref="IlgpuRuntime.CreateAccelerator"/>). Every op of <see cref="IBackend"/> is implemented for float32,
/// and the integer ops for int64 (index tensors, labels); other dtypes throw <see cref="NotSupportedException"/>
/// naming the op, the dtype and the device. Kernels launch asynchronously; the host waits only in
/// <see cref="Download{T}"/> and <see cref="Synchronize"/>, where device-side check failures (bad indices,
/// integer division by zero) are reported. The op families live in partial files (IlgpuBackend.*.cs).
/// Device memory comes from an <see cref="IlgpuMemoryPool"/>; <see cref="Dispose"/> releases it and the accelerator.
/// </summary>
public sealed partial class IlgpuBackend : IBackend
{
    private readonly Accelerator _acc;
    private readonly IlgpuKernels _k;
    private bool _disposed;

    /// <summary>Creates the accelerator of <paramref name="device"/>; its kernels compile on first use.</summary>
    public IlgpuBackend(Device device)
    {
        Device = device;
        _acc = IlgpuRuntime.CreateAccelerator(device);
        _k = new IlgpuKernels(_acc);
        Memory = new IlgpuMemoryPool(_acc);
    }

    /// <inheritdoc/>
    public Device Device { get; }

    /// <summary>The accelerator's name as ILGPU reports it.</summary>
    public string AcceleratorName => _acc.Name;

    /// <summary>Threads per warp of the accelerator (4 on the CPU accelerator, 32 on NVIDIA GPUs).</summary>
    public int WarpSize => _acc.WarpSize;

    /// <summary>Device memory in bytes, as the driver reports it.</summary>
    public long MemoryBytes => _acc.MemorySize;

    /// <summary>
    /// What the device can run: the compute capability and PTX ISA of a CUDA GPU, the OpenCL C version and device
    /// type of an OpenCL device, "emulated" for the CPU accelerator.
    /// </summary>
    public string Capability => _acc switch
    {
        ILGPU.Runtime.Cuda.CudaAccelerator cuda => $"compute capability {cuda.Architecture}, PTX ISA {cuda.InstructionSet}",
        ILGPU.Runtime.OpenCL.CLAccelerator cl => $"OpenCL C {cl.CVersion}, {cl.DeviceType}",
        _ => "emulated",
    };

    /// <summary>The most threads one group may have (16 on the CPU accelerator as configured).</summary>
    public int MaxGroupSize => _acc.MaxNumThreadsPerGroup;

    /// <summary>The caching allocator of this device (statistics, <see cref="IlgpuMemoryPool.Trim"/>).</summary>
    public IlgpuMemoryPool Memory { get; }

    /// <summary>
    /// Host-to-device copies so far (<see cref="Upload{T}"/> calls). With <see cref="Downloads"/> this is how a test
    /// shows that a training step never waits for the host.
    /// </summary>
    public long Uploads { get; private set; }

    /// <summary>Device-to-host copies so far (<see cref="Download{T}"/> calls: ToArray, Item, printing).</summary>
    public long Downloads { get; private set; }

    /// <summary>Buffers handed out by the driver so far (the caching allocator's misses).</summary>
    public long DriverAllocations => Memory.DriverAllocations;

    private NotSupportedException WrongType(string op, DType dtype) =>
        new($"IlgpuBackend: {op} does not support {dtype.Name()} tensors on {Device} (devices hold float32, and int64 for index and integer ops)");

    private IlgpuStorage S(Storage s, string op) => s is IlgpuStorage g && ReferenceEquals(s.Device, Device)
        ? g : throw new ArgumentException($"IlgpuBackend: {op} got a storage on {s.Device}, expected {Device}");

    private IlgpuStorage Float(Storage s, string op) => s.DType == DType.Float32 ? S(s, op) : throw WrongType(op, s.DType);

    private static void CheckFits(string op, string name, Storage s, Layout l)
    {
        if (l.Numel == 0) return;
        var (lo, hi) = l.Span();
        if (lo < 0 || hi >= s.Length)
            throw new ArgumentException($"IlgpuBackend.{op}: {name} view ({l}) reaches elements [{lo}, {hi}] of a storage of {s.Length}");
    }

    private static void CheckOutput(string op, Storage dst, long needed)
    {
        if (dst.Length < needed) throw new ArgumentException($"IlgpuBackend.{op}: output has {dst.Length} elements, needs {needed}");
    }

    private static Index1D Threads(string op, long n) => n <= int.MaxValue
        ? new Index1D((int)n) : throw new NotSupportedException($"IlgpuBackend.{op}: {n} elements exceed one launch ({int.MaxValue})");

    // ---- Memory -------------------------------------------------------------------------------------------

    /// <inheritdoc/>
    public void Synchronize()
    {
        _acc.Synchronize();
        ReportIndexFaults();
    }

    // ---- Device-side index checks (reported at the next sync, like CUDA's device asserts) -------------------

    private MemoryBuffer1D<long, Stride1D.Dense>? _fault; // [packed value and check id, flag]
    private readonly List<string> _checkSites = []; // distinct (op, what, size) messages with {0} for the value
    private readonly Dictionary<string, int> _checkIds = [];
    private bool _checksPending;

    /// <inheritdoc/>
    public void DropoutMask(Storage dst, long length, double p, ulong seed)
    {
        var d = Float(dst, "DropoutMask");
        CheckOutput("DropoutMask", dst, length);
        if (length == 0) return;
        _k.DropoutMask.Value(Threads("DropoutMask", length), d.Floats, seed, (float)p, (float)(1 / (1 - p)));
    }

    /// <inheritdoc/>
    public void CheckIndexRange(Storage index, long count, long size, long? ignoreIndex, string op, string what)
    {
        var s = S(index, op);
        if (index.DType != DType.Int64) throw WrongType(op, index.DType);
        if (count == 0) return;
        int id = FaultSite($"{op}: index {{0}} is out of range for {what} of size {size}");
        _k.CheckRange.Value(Threads(op, count), s.Longs, size, ignoreIndex ?? 0, ignoreIndex is null ? 0 : 1, _fault!.View, id);
    }

    // The id of a message a kernel may report through the fault slot ({0}: the value it records); marks a report pending.
    private int FaultSite(string site)
    {
        _fault ??= CreateFaultSlot();
        if (!_checkIds.TryGetValue(site, out int id))
        {
            if (_checkSites.Count == ushort.MaxValue) { _checkSites.Clear(); _checkIds.Clear(); } // ids are 16 bits; sites repeat in practice
            id = _checkSites.Count;
            _checkSites.Add(site);
            _checkIds[site] = id;
        }
        _checksPending = true;
        return id;
    }

    // Called after the accelerator has synchronised: throws for the first index check that failed since the last report.
    private void ReportIndexFaults()
    {
        if (!_checksPending) return;
        _checksPending = false;
        var fault = new long[2];
        _fault!.View.CopyToCPU(fault);
        if (fault[1] == 0) return;
        _fault.MemSetToZero();
        _acc.Synchronize();
        int id = (int)((ulong)fault[0] >> 48);
        long value = fault[0] << 16 >> 16; // sign-extend the low 48 bits
        string shown = Math.Abs(value) == (1L << IndexOps.FaultValueBits) - 1 ? (value < 0 ? "<= " : ">= ") + value : value.ToString(System.Globalization.CultureInfo.InvariantCulture);
        string message = string.Format(System.Globalization.CultureInfo.InvariantCulture, _checkSites[id], shown) + " (found on the device at its next synchronisation)";
        if (_checkSites[id].StartsWith("Div:", StringComparison.Ordinal)) throw new DivideByZeroException(message);
        throw new ArgumentOutOfRangeException("index", message);
    }

    /// <inheritdoc/>
    public Storage Allocate(DType dtype, long length)
    {
        if (dtype is not (DType.Float32 or DType.Int64 or DType.Bool)) throw new NotSupportedException($"IlgpuBackend: Allocate does not support {dtype.Name()} tensors on {Device} (float32, int64 and bool only)");
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new IlgpuStorage(Device, Memory, dtype, length);
    }

    /// <inheritdoc/>
    public void Upload<T>(ReadOnlySpan<T> src, Storage dst) where T : unmanaged
    {
        var d = S(dst, "Upload");
        if (src.Length > dst.Length) throw new ArgumentException($"IlgpuBackend.Upload: {src.Length} elements do not fit a storage of {dst.Length}");
        if (src.IsEmpty) return;
        Uploads++;
        if (typeof(T) == typeof(float)) d.Floats.SubView(0, src.Length).CopyFromCPU(System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(src));
        else if (typeof(T) == typeof(long)) d.Longs.SubView(0, src.Length).CopyFromCPU(System.Runtime.InteropServices.MemoryMarshal.Cast<T, long>(src));
        else if (typeof(T) == typeof(bool)) d.Bools.SubView(0, src.Length).CopyFromCPU(System.Runtime.InteropServices.MemoryMarshal.Cast<T, byte>(src));
        else throw WrongType("Upload", DTypeInfo.Of<T>());
    }

    /// <inheritdoc/>
    public void Download<T>(Storage src, long offset, Span<T> dst) where T : unmanaged
    {
        var s = S(src, "Download");
        if (offset < 0 || offset + dst.Length > src.Length)
            throw new ArgumentException($"IlgpuBackend.Download: elements [{offset}, {offset + dst.Length}) are outside a storage of {src.Length}");
        if (dst.IsEmpty) return;
        Downloads++;
        _acc.Synchronize(); // kernels run asynchronously on the default stream
        ReportIndexFaults();
        if (typeof(T) == typeof(float)) s.Floats.SubView(offset, dst.Length).CopyToCPU(System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(dst));
        else if (typeof(T) == typeof(long)) s.Longs.SubView(offset, dst.Length).CopyToCPU(System.Runtime.InteropServices.MemoryMarshal.Cast<T, long>(dst));
        else if (typeof(T) == typeof(bool)) s.Bools.SubView(offset, dst.Length).CopyToCPU(System.Runtime.InteropServices.MemoryMarshal.Cast<T, byte>(dst));
        else throw WrongType("Download", DTypeInfo.Of<T>());
    }

    /// <inheritdoc/>
    public void Fill(Storage dst, Layout layout, double value)
    {
        var d = S(dst, "Fill");
        CheckFits("Fill", "dst", dst, layout);
        long n = layout.Numel;
        if (n == 0) return;
        Pack(layout.Shape, layout.Strides, layout.Offset, out var ld);
        if (dst.DType == DType.Float32) _k.Fill.Value(Threads("Fill", n), d.Floats, ld, (float)value);
        else if (dst.DType == DType.Bool) _k.FillBool.Value(Threads("Fill", n), d.Bools, ld, value != 0 ? (byte)1 : (byte)0);
        else _k.FillLong.Value(Threads("Fill", n), d.Longs, ld, checked((long)value));
    }

    /// <inheritdoc/>
    public void Copy(Storage src, Layout srcLayout, Storage dst, Layout dstLayout)
    {
        var (s, d) = (S(src, "Copy"), S(dst, "Copy"));
        if (!srcLayout.Shape.AsSpan().SequenceEqual(dstLayout.Shape))
            throw new ArgumentException($"IlgpuBackend.Copy: shapes {Shape.Format(srcLayout.Shape)} and {Shape.Format(dstLayout.Shape)} differ");
        CheckFits("Copy", "src", src, srcLayout);
        CheckFits("Copy", "dst", dst, dstLayout);
        long n = srcLayout.Numel;
        if (n == 0) return;
        Pack(srcLayout.Shape, srcLayout.Strides, srcLayout.Offset, dstLayout.Strides, dstLayout.Offset, out var ls, out var ld);
        var count = Threads("Copy", n);
        switch (src.DType, dst.DType)
        {
            case (DType.Float32, DType.Float32): _k.Copy.Value(count, s.Floats, ls, d.Floats, ld); break;
            case (DType.Int64, DType.Int64): _k.CopyLong.Value(count, s.Longs, ls, d.Longs, ld); break;
            case (DType.Int64, DType.Float32): _k.LongToFloat.Value(count, s.Longs, ls, d.Floats, ld); break;
            case (DType.Float32, DType.Int64): _k.FloatToLong.Value(count, s.Floats, ls, d.Longs, ld); break;
            case (DType.Bool, DType.Bool): _k.CopyBool.Value(count, s.Bools, ls, d.Bools, ld); break;
            case (DType.Bool, DType.Float32): _k.BoolToFloat.Value(count, s.Bools, ls, d.Floats, ld); break;
            case (DType.Bool, DType.Int64): _k.BoolToLong.Value(count, s.Bools, ls, d.Longs, ld); break;
            case (DType.Float32, DType.Bool): _k.FloatToBool.Value(count, s.Floats, ls, d.Bools, ld); break;
            case (DType.Int64, DType.Bool): _k.LongToBool.Value(count, s.Longs, ls, d.Bools, ld); break;
            default: throw WrongType("Copy", src.DType is DType.Float32 or DType.Int64 or DType.Bool ? dst.DType : src.DType);
        }
    }

    // ---- Element-wise -------------------------------------------------------------------------------------

    /// <inheritdoc/>
    public void Unary(UnaryOp op, double scalar, Storage src, Layout srcLayout, Storage dst)
    {
        string name = op.ToString();
        var (s, d) = (S(src, name), S(dst, name));
        if (src.DType != dst.DType || src.DType is not (DType.Float32 or DType.Int64)) throw WrongType(name, src.DType != DType.Float32 ? src.DType : dst.DType);
        if (src.DType == DType.Int64 && !UnaryOpCatalogue.Of(op).Int64)
            throw new NotSupportedException($"{op}: not defined for int64 tensors; convert with To(DType.Float32) first");
        CheckFits(name, "src", src, srcLayout);
        long n = srcLayout.Numel;
        CheckOutput(name, dst, n);
        if (n == 0) return;
        Pack(srcLayout.Shape, srcLayout.Strides, srcLayout.Offset, out var ls);
        if (src.DType == DType.Int64) _k.UnaryLong.Value(Threads(name, n), s.Longs, ls, d.Longs, (int)op, (long)scalar);
        else _k.Unary.Value(Threads(name, n), s.Floats, ls, d.Floats, (int)op, (float)scalar);
    }

    /// <inheritdoc/>
    public void Binary(BinaryOp op, Storage a, Layout aLayout, Storage b, Layout bLayout, Storage dst)
    {
        string name = op.ToString();
        if (dst.DType == DType.Bool)
        {
            BinaryToBool(op, a, aLayout, b, bLayout, dst);
            return;
        }
        if (op is BinaryOp.LogicalAnd or BinaryOp.LogicalOr or BinaryOp.LogicalXor)
            throw new NotSupportedException($"{op}: takes bool tensors and writes a bool mask, got {a.DType.Name()} and {b.DType.Name()} into {dst.DType.Name()}");
        bool isLong = a.DType == DType.Int64 && b.DType == DType.Int64 && dst.DType == DType.Int64;
        if (isLong && op == BinaryOp.Pow) throw new NotSupportedException("Pow: not defined for int64 tensors; convert with To(DType.Float32) first");
        var (sa, sb, d) = isLong ? (S(a, name), S(b, name), S(dst, name)) : (Float(a, name), Float(b, name), Float(dst, name));
        long n = PackBinary(name, a, aLayout, b, bLayout, dst, out var la, out var lb);
        if (n == 0) return;
        if (!isLong)
        {
            _k.Binary.Value(Threads(name, n), sa.Floats, la, sb.Floats, lb, d.Floats, (int)op);
            return;
        }
        // Integer division by zero cannot throw in a kernel: it is recorded and reported at the next sync.
        int id = op == BinaryOp.Div ? FaultSite("Div: integer division by zero in an int64 tensor") : 0;
        _fault ??= CreateFaultSlot();
        _k.BinaryLong.Value(Threads(name, n), sa.Longs, la, sb.Longs, lb, d.Longs, (int)op, _fault.View, id);
    }

    // Comparisons of two float32 or int64 views, or the logical ops of two masks, into a contiguous bool mask.
    private void BinaryToBool(BinaryOp op, Storage a, Layout aLayout, Storage b, Layout bLayout, Storage dst)
    {
        string name = op.ToString();
        var (sa, sb, d) = (S(a, name), S(b, name), S(dst, name));
        bool logical = op is BinaryOp.LogicalAnd or BinaryOp.LogicalOr or BinaryOp.LogicalXor;
        bool comparison = op is >= BinaryOp.Eq and <= BinaryOp.Ge;
        if (a.DType != b.DType || (logical && a.DType != DType.Bool) || (comparison && a.DType is not (DType.Float32 or DType.Int64)) || !(logical || comparison))
            throw new ArgumentException($"IlgpuBackend.{name}: a bool output takes a comparison of two float32 or int64 views or a logical op of two bool views, got {name} of {a.DType.Name()} and {b.DType.Name()}");
        long n = PackBinary(name, a, aLayout, b, bLayout, dst, out var la, out var lb);
        if (n == 0) return;
        var count = Threads(name, n);
        if (logical) _k.Logical.Value(count, sa.Bools, la, sb.Bools, lb, d.Bools, (int)op);
        else if (a.DType == DType.Int64) _k.CompareLong.Value(count, sa.Longs, la, sb.Longs, lb, d.Bools, (int)op);
        else _k.Compare.Value(count, sa.Floats, la, sb.Floats, lb, d.Bools, (int)op);
    }

    // Checks two operands broadcast to one shape, that they fit their storages and that dst holds the result; packs
    // their layouts when there is anything to compute. Returns the element count.
    private static long PackBinary(string name, Storage a, Layout aLayout, Storage b, Layout bLayout, Storage dst, out StridedIndex la, out StridedIndex lb)
    {
        CheckBroadcast(name, aLayout, bLayout);
        CheckFits(name, "a", a, aLayout);
        CheckFits(name, "b", b, bLayout);
        long n = aLayout.Numel;
        CheckOutput(name, dst, n);
        la = lb = default;
        if (n > 0) Pack(aLayout.Shape, aLayout.Strides, aLayout.Offset, bLayout.Strides, bLayout.Offset, out la, out lb);
        return n;
    }

    private MemoryBuffer1D<long, Stride1D.Dense> CreateFaultSlot()
    {
        var f = _acc.Allocate1D<long>(2);
        f.MemSetToZero();
        return f;
    }

    /// <inheritdoc/>
    public void Where(Storage cond, Layout condLayout, Storage a, Layout aLayout, Storage b, Layout bLayout, Storage dst)
    {
        if (a.DType != b.DType || a.DType != dst.DType || a.DType is not (DType.Float32 or DType.Int64 or DType.Bool)) throw WrongType("Where", a.DType == DType.Float32 ? b.DType : a.DType);
        var (sa, sb, d) = (S(a, "Where"), S(b, "Where"), S(dst, "Where"));
        CheckBroadcast("Where", aLayout, condLayout);
        CheckBroadcast("Where", aLayout, bLayout);
        CheckFits("Where", "cond", cond, condLayout);
        CheckFits("Where", "a", a, aLayout);
        CheckFits("Where", "b", b, bLayout);
        long n = aLayout.Numel;
        CheckOutput("Where", dst, n);
        if (n == 0) return;
        if (cond.DType == DType.Bool && a.DType == DType.Float32)
        {
            // The common case (attention and padding masks): read the mask bytes in place.
            Pack(aLayout.Shape, condLayout.Strides, condLayout.Offset, aLayout.Strides, aLayout.Offset, bLayout.Strides, bLayout.Offset, out var lm, out var lx, out var ly);
            _k.WhereMask.Value(Threads("Where", n), S(cond, "Where").Bools, lm, sa.Floats, lx, sb.Floats, ly, d.Floats);
            return;
        }
        // The other kernels read a float32 condition; an int64 one (or a mask choosing int64 or bool values) is converted first.
        Storage? converted = null;
        if (cond.DType is DType.Int64 or DType.Bool)
        {
            converted = Allocate(DType.Float32, n);
            var dense = Layout.Contiguous(aLayout.Shape);
            Copy(cond, condLayout, converted, dense);
            (cond, condLayout) = (converted, dense);
        }
        try
        {
            var sc = Float(cond, "Where");
            Pack(aLayout.Shape, condLayout.Strides, condLayout.Offset, aLayout.Strides, aLayout.Offset, bLayout.Strides, bLayout.Offset, out var lc, out var la, out var lb);
            if (a.DType == DType.Int64) _k.WhereLong.Value(Threads("Where", n), sc.Floats, lc, sa.Longs, la, sb.Longs, lb, d.Longs);
            else if (a.DType == DType.Bool) _k.WhereBoolValues.Value(Threads("Where", n), sc.Floats, lc, sa.Bools, la, sb.Bools, lb, d.Bools);
            else _k.Where.Value(Threads("Where", n), sc.Floats, lc, sa.Floats, la, sb.Floats, lb, d.Floats);
        }
        finally { converted?.Release(); }
    }

    private static void CheckBroadcast(string op, Layout a, Layout b)
    {
        if (!a.Shape.AsSpan().SequenceEqual(b.Shape))
            throw new ArgumentException($"IlgpuBackend.{op}: operand layouts must arrive broadcast to one shape, got {Shape.Format(a.Shape)} and {Shape.Format(b.Shape)}");
    }

    // ---- Reductions ---------------------------------------------------------------------------------------

    /// <inheritdoc/>
    public void Reduce(ReduceOp op, Storage src, Layout layout, int keptRank, Storage dst)
    {
        string name = op.ToString();
        bool isLong = src.DType == DType.Int64 && dst.DType == DType.Int64;
        var (s, d) = isLong ? (S(src, name), S(dst, name)) : (Float(src, name), Float(dst, name));
        if (keptRank < 0 || keptRank > layout.Rank) throw new ArgumentException($"IlgpuBackend.{name}: keptRank {keptRank} is outside [0, {layout.Rank}]");
        CheckFits(name, "src", src, layout);
        var shape = layout.Shape.AsSpan();
        long outCount = Shape.Numel(shape[..keptRank]), count = Shape.Numel(shape[keptRank..]);
        CheckOutput(name, dst, outCount);
        if (outCount == 0) return;
        if (count == 0)
        {
            if (op != ReduceOp.Sum) throw new ArgumentException($"{op}: cannot reduce over a zero-size dimension (shape {Shape.Format(layout.Shape)})");
            var all = StridedIndex.Create([(int)outCount], [1L], 0);
            if (isLong) _k.FillLong.Value(Threads(name, outCount), d.Longs, all, 0L);
            else _k.Fill.Value(Threads(name, outCount), d.Floats, all, 0f);
            return;
        }
        var strides = layout.Strides.AsSpan();
        Pack(shape[..keptRank], strides[..keptRank], layout.Offset, out var kept);
        Pack(shape[keptRank..], strides[keptRank..], 0, out var reduced);
        // int64 reductions (counts, label sums) are small: one thread per output.
        if (isLong) _k.ReduceLong.Value(Threads(name, outCount), s.Longs, kept, reduced, count, d.Longs, (int)op);
        // A group per output pays off when each block is long enough to keep the group busy.
        else if (count >= 4 * _k.GroupSize)
            _k.ReduceGroups.Value(new KernelConfig(Threads(name, outCount), new Index1D(_k.GroupSize)), s.Floats, kept, reduced, count, d.Floats, (int)op);
        else
            _k.ReduceThreads.Value(Threads(name, outCount), s.Floats, kept, reduced, count, d.Floats, (int)op);
    }

    /// <inheritdoc/>
    public void ArgReduce(ReduceOp op, Storage src, Layout layout, Storage dst)
    {
        string name = "Arg" + op;
        var s = S(src, name);
        if (src.DType is not (DType.Float32 or DType.Int64)) throw WrongType(name, src.DType);
        var d = S(dst, name);
        if (dst.DType != DType.Int64) throw new ArgumentException($"IlgpuBackend.{name}: the output must be int64, got {dst.DType.Name()}");
        if (op == ReduceOp.Sum) throw new ArgumentException($"IlgpuBackend.ArgReduce: Sum has no index");
        CheckFits(name, "src", src, layout);
        var shape = layout.Shape.AsSpan();
        var strides = layout.Strides.AsSpan();
        // A scalar is a row of one element.
        int length = layout.Rank == 0 ? 1 : shape[^1];
        long stride = layout.Rank == 0 ? 0 : strides[^1];
        var outerShape = layout.Rank == 0 ? shape : shape[..^1];
        long outCount = Shape.Numel(outerShape);
        CheckOutput(name, dst, outCount);
        if (outCount == 0) return;
        if (length == 0) throw new ArgumentException($"{name}: cannot reduce over a zero-size dimension (shape {Shape.Format(layout.Shape)})");
        Pack(outerShape, layout.Rank == 0 ? strides : strides[..^1], layout.Offset, out var outer);
        if (src.DType == DType.Int64) _k.ArgReduceLong.Value(Threads(name, outCount), s.Longs, outer, length, stride, d.Longs, (int)op);
        else _k.ArgReduce.Value(Threads(name, outCount), s.Floats, outer, length, stride, d.Longs, (int)op);
    }

    /// <inheritdoc/>
    public void TopK(Storage src, Layout layout, int k, bool largest, Storage dst)
    {
        var (s, d) = (Float(src, "TopK"), S(dst, "TopK"));
        if (dst.DType != DType.Int64) throw new ArgumentException($"IlgpuBackend.TopK: the output must be int64, got {dst.DType.Name()}");
        if (layout.Rank == 0 || k <= 0 || k > layout.Shape[^1])
            throw new ArgumentOutOfRangeException(nameof(k), $"IlgpuBackend.TopK: k = {k} is outside [1, {(layout.Rank == 0 ? 0 : layout.Shape[^1])}] for a layout of shape {Shape.Format(layout.Shape)}");
        CheckFits("TopK", "src", src, layout);
        var outerShape = layout.Shape.AsSpan(0, layout.Rank - 1);
        long rows = Shape.Numel(outerShape);
        CheckOutput("TopK", dst, rows * k);
        if (rows == 0) return;
        Pack(outerShape, layout.Strides.AsSpan(0, layout.Rank - 1), layout.Offset, out var outer);
        _k.TopK.Value(Threads("TopK", rows), s.Floats, outer, layout.Shape[^1], layout.Strides[^1], k, largest ? 1 : 0, d.Longs);
    }

    // ---- Matrix product and rows --------------------------------------------------------------------------

    /// <inheritdoc/>
    public void MatMul(Storage a, MatrixOperand aOp, Storage b, MatrixOperand bOp, Storage c, int batch, int m, int n, int k)
    {
        var (sa, sb, sc) = (Float(a, "MatMul"), Float(b, "MatMul"), Float(c, "MatMul"));
        if (batch < 0 || m < 0 || n < 0 || k < 0) throw new ArgumentException($"IlgpuBackend.MatMul: negative size batch={batch} m={m} n={n} k={k}");
        CheckOutput("MatMul", c, (long)batch * m * n);
        if (batch == 0 || m == 0 || n == 0) return;
        CheckOperand("a", a, aOp, batch, m, k);
        CheckOperand("b", b, bOp, batch, k, n);
        var args = new GemmArgs
        {
            M = m, N = n, K = k, Lda = aOp.Ld, Ldb = bOp.Ld, TransA = aOp.Transposed ? 1 : 0, TransB = bOp.Transposed ? 1 : 0,
            OffsetA = aOp.Offset, OffsetB = bOp.Offset, BatchStrideA = aOp.BatchStride, BatchStrideB = bOp.BatchStride,
        };
        // Grid z carries the batch: at most 65535 on CUDA.
        if (batch > 65535) throw new NotSupportedException($"IlgpuBackend.MatMul: batch {batch} exceeds one launch (65535) for {m}x{k} @ {k}x{n}");
        int t = _k.GemmTile;
        if (RegisterTiled(batch, m, n))
        {
            int block = _k.GemmBlock;
            var config = new KernelConfig(new Index3D((n + block - 1) / block, (m + block - 1) / block, batch), new Index3D(t, t, 1));
            _k.GemmRegisterTiled.Value(config, sa.Floats, sb.Floats, sc.Floats, args);
        }
        else
        {
            var config = new KernelConfig(new Index3D((n + t - 1) / t, (m + t - 1) / t, batch), new Index3D(t, t, 1));
            _k.Gemm.Value(config, sa.Floats, sb.Floats, sc.Floats, args);
        }
    }

    // The last element operand op touches must lie inside its storage (a GPU would read out of bounds silently).
    private static void CheckOperand(string name, Storage s, MatrixOperand op, int batch, int rows, int cols)
    {
        if (rows == 0 || cols == 0) return;
        long storedRows = op.Transposed ? cols : rows, storedCols = op.Transposed ? rows : cols;
        if (op.Ld < storedCols && storedRows > 1)
            throw new ArgumentException($"IlgpuBackend.MatMul: {name} has ld={op.Ld} < {storedCols} columns as stored ({rows}x{cols}, transposed={op.Transposed})");
        long last = op.Offset + (batch - 1) * op.BatchStride + (storedRows - 1) * op.Ld + storedCols - 1;
        long first = op.Offset + Math.Min(0, (batch - 1) * op.BatchStride);
        if (first < 0 || last >= s.Length)
            throw new ArgumentException($"IlgpuBackend.MatMul: {name} ({rows}x{cols}, batch={batch}, {op}) reaches elements [{first}, {last}] of a storage of {s.Length}");
    }

    /// <inheritdoc/>
    public void Softmax(Storage src, Storage dst, int rows, int cols, bool log)
    {
        string name = log ? "LogSoftmax" : "Softmax";
        var (s, d) = (Float(src, name), Float(dst, name));
        if (rows < 0 || cols < 0) throw new ArgumentException($"IlgpuBackend.{name}: negative size rows={rows} cols={cols}");
        long n = (long)rows * cols;
        if (src.Length < n || dst.Length < n) throw new ArgumentException($"IlgpuBackend.{name}: {rows}x{cols} needs {n} elements, src has {src.Length}, dst {dst.Length}");
        if (n == 0) return;
        bool warp = WarpRows(cols);
        _k.SoftmaxRows.For(warp)(RowLaunch(name, rows, warp), s.Floats, d.Floats, rows, cols, log ? 1 : 0);
    }

    // ---- Row kernels, index ops, optimizer --------------------------------------------------------------

    /// <inheritdoc/>
    public void LayerNorm(Storage x, Storage? gamma, Storage? beta, Storage y, Storage mean, Storage rstd, int rows, int cols, double eps)
    {
        if (x.DType != DType.Float32) throw WrongType("LayerNorm", x.DType);
        var xv = S(x, "LayerNorm").Floats;
        if (rows == 0) return;
        bool warp = WarpRows(cols);
        // Absent gamma/beta: any valid view stands in; the kernel does not read it.
        _k.LayerNormForward.For(warp)(RowLaunch("LayerNorm", rows, warp), xv, gamma is null ? xv : S(gamma, "LayerNorm").Floats, beta is null ? xv : S(beta, "LayerNorm").Floats,
            S(y, "LayerNorm").Floats, S(mean, "LayerNorm").Floats, S(rstd, "LayerNorm").Floats,
            new LayerNormArgs { Rows = rows, Cols = cols, Eps = (float)eps, HasGamma = gamma is null ? 0 : 1, HasBeta = beta is null ? 0 : 1 });
    }
    /// <inheritdoc/>
    public void LayerNormBackward(Storage dy, Storage x, Storage mean, Storage rstd, Storage? gamma, Storage dx, Storage? dgamma, Storage? dbeta, int rows, int cols)
    {
        if (x.DType != DType.Float32) throw WrongType("LayerNormBackward", x.DType);
        const string op = "LayerNormBackward";
        var (dyv, xv, mv, rv) = (S(dy, op).Floats, S(x, op).Floats, S(mean, op).Floats, S(rstd, op).Floats);
        bool warp = WarpRows(cols);
        if (rows > 0)
            _k.LayerNormBackward.For(warp)(RowLaunch(op, rows, warp), dyv, xv, mv, rv, gamma is null ? xv : S(gamma, op).Floats, S(dx, op).Floats,
                new LayerNormArgs { Rows = rows, Cols = cols, HasGamma = gamma is null ? 0 : 1 });
        if ((dgamma is null && dbeta is null) || cols == 0) return;
        // About 64K threads in stage 1 (enough to fill a GPU), at least 32 rows per chunk; chosen from the shape
        // alone, so every device adds in the same order.
        int chunks = (int)Math.Clamp(65536L / cols, 1, Math.Max(1, (rows + 31) / 32));
        int chunk = Math.Max(1, (rows + chunks - 1) / chunks);
        chunks = rows == 0 ? 1 : (rows + chunk - 1) / chunk;
        var partial = Allocate(DType.Float32, 2L * chunks * cols);
        try
        {
            var pv = S(partial, op).Floats;
            if (rows == 0) _k.Fill.Value(Threads(op, 2L * cols), pv, StridedIndex.Create([2 * cols], [1L], 0), 0f);
            else _k.LayerNormParamsPartial.Value(Threads(op, (long)chunks * cols), dyv, xv, mv, rv, pv, rows, cols, chunk);
            _k.LayerNormParamsFinish.Value(Threads(op, cols), pv, dgamma is null ? xv : S(dgamma, op).Floats, dbeta is null ? xv : S(dbeta, op).Floats,
                chunks, cols, dgamma is null ? 0 : 1, dbeta is null ? 0 : 1);
        }
        finally { partial.Release(); }
    }
    /// <inheritdoc/>
    public void CrossEntropyForward(Storage logits, Storage targets, Storage? weight, Storage lse, Storage rowScale, Storage loss, Storage denominator,
        CrossEntropyProblem problem, Reduction reduction)
    {
        const string op = "CrossEntropy";
        var args = CrossEntropyKernelArgs(op, problem, weight, reduction);
        int positions = (int)problem.Positions;
        CheckOutput(op, loss, reduction == Reduction.None ? positions : 1);
        CheckOutput(op, lse, positions);
        CheckOutput(op, rowScale, positions);
        CheckOutput(op, denominator, 1);
        var (classTargets, probTargets, w, placeholder) = CrossEntropyInputs(op, logits, targets, weight, problem);
        // 'none' writes the losses straight into the output; the reductions sum a scratch buffer on the device.
        var rowLoss = reduction == Reduction.None ? null : Allocate(DType.Float32, Math.Max(positions, 1));
        var rowWeight = Allocate(DType.Float32, Math.Max(positions, 1));
        try
        {
            var lossView = rowLoss is null ? Float(loss, op).Floats : S(rowLoss, op).Floats;
            if (positions > 0)
            {
                bool warp = WarpRows(problem.Classes);
                _k.CrossEntropyForward.For(warp)(RowLaunch(op, positions, warp), Float(logits, op).Floats, classTargets, probTargets, w,
                    Float(lse, op).Floats, lossView, S(rowWeight, op).Floats, Float(rowScale, op).Floats, args);
            }
            int mode = reduction switch { Reduction.Mean => Kernels.Gpu.CrossEntropy.Mean, Reduction.Sum => Kernels.Gpu.CrossEntropy.Sum, _ => Kernels.Gpu.CrossEntropy.DenominatorOnly };
            _k.CrossEntropyReduce.Value(new KernelConfig(new Index1D(1), new Index1D(_k.GroupSize)), lossView, S(rowWeight, op).Floats, positions,
                Float(loss, op).Floats, Float(denominator, op).Floats, mode);
        }
        finally { rowLoss?.Release(); rowWeight.Release(); placeholder?.Release(); } // the pool hands buffers out again only to later launches on this stream
    }

    /// <inheritdoc/>
    public void CrossEntropyBackward(Storage logits, Storage targets, Storage? weight, Storage lse, Storage rowScale, Storage gradOutput, Storage denominator,
        Storage dlogits, CrossEntropyProblem problem, Reduction reduction)
    {
        const string op = "CrossEntropyBackward";
        var args = CrossEntropyKernelArgs(op, problem, weight, reduction);
        CheckOutput(op, dlogits, problem.Logits);
        CheckOutput(op, gradOutput, reduction == Reduction.None ? problem.Positions : 1);
        if (problem.Logits == 0) return;
        var (classTargets, probTargets, w, placeholder) = CrossEntropyInputs(op, logits, targets, weight, problem);
        try
        {
            _k.CrossEntropyBackward.Value(Threads(op, problem.Logits), Float(logits, op).Floats, classTargets, probTargets, w, Float(lse, op).Floats,
                Float(rowScale, op).Floats, Float(gradOutput, op).Floats, Float(denominator, op).Floats, Float(dlogits, op).Floats, args);
        }
        finally { placeholder?.Release(); }
    }

    private CrossEntropyArgs CrossEntropyKernelArgs(string op, CrossEntropyProblem p, Storage? weight, Reduction reduction)
    {
        if (p.Positions > int.MaxValue) throw new NotSupportedException($"IlgpuBackend.{op}: {p.Positions} positions exceed one launch ({int.MaxValue})");
        return new CrossEntropyArgs
        {
            Outer = p.Outer, Classes = p.Classes, Inner = p.Inner, IgnoreIndex = p.IgnoreIndex, Smoothing = (float)p.LabelSmoothing,
            Probabilities = p.ProbabilityTargets ? 1 : 0, Weighted = weight is null ? 0 : 1,
            PerPosition = reduction == Reduction.None ? 1 : 0, Divide = reduction == Reduction.Mean ? 1 : 0,
        };
    }

    // The kernels take both kinds of target and a weight view: the unused ones are stood in for by the logits, or by
    // a one-element int64 placeholder (released by the caller) when there are no class targets.
    private (ArrayView<long> Classes, ArrayView<float> Probabilities, ArrayView<float> Weight, Storage? Placeholder) CrossEntropyInputs(
        string op, Storage logits, Storage targets, Storage? weight, CrossEntropyProblem p)
    {
        void Need(string op, string name, Storage s, long n)
        {
            if (s.Length < n) throw new ArgumentException($"IlgpuBackend.{op}: {name} has {s.Length} elements, [{p.Outer}, {p.Classes}, {p.Inner}] needs {n}");
        }
        Need(op, "logits", logits, p.Logits);
        var x = Float(logits, op).Floats;
        if (weight is not null) Need(op, "weight", weight, p.Classes);
        var w = weight is null ? x : Float(weight, op).Floats;
        if (p.ProbabilityTargets)
        {
            Need(op, "probability targets", targets, p.Logits);
            var placeholder = Allocate(DType.Int64, 1);
            return (S(placeholder, op).Longs, Float(targets, op).Floats, w, placeholder);
        }
        if (targets.DType != DType.Int64) throw WrongType(op, targets.DType);
        Need(op, "class targets", targets, p.Positions);
        return (S(targets, op).Longs, x, w, null);
    }

    /// <inheritdoc/>
    public void IndexSelect(Storage src, long outer, int axisSize, long inner, Storage index, int count, Storage dst) =>
        LaunchIndex("IndexSelect", _k.IndexSelect, src, index, dst, outer * count * inner, axisSize, inner, count);
    /// <inheritdoc/>
    public void Gather(Storage src, long outer, int axisSize, long inner, Storage index, int count, Storage dst) =>
        LaunchIndex("Gather", _k.Gather, src, index, dst, outer * count * inner, axisSize, inner, count);
    /// <inheritdoc/>
    public void IndexAdd(Storage dst, long outer, int axisSize, long inner, Storage index, int count, Storage src)
    {
        // Few indices: every destination scans them all. Many: sort them once, then each destination reads its own run.
        if (count <= SortedIndexAddThreshold)
        {
            LaunchIndex("IndexAdd", _k.IndexAdd, src, index, dst, outer * axisSize * inner, axisSize, inner, count);
            return;
        }
        const string op = "IndexAdd";
        if (src.DType != DType.Float32 || dst.DType != DType.Float32) throw WrongType(op, src.DType != DType.Float32 ? src.DType : dst.DType);
        if (index.DType != DType.Int64) throw WrongType(op, index.DType);
        long n = outer * axisSize * inner;
        if (n == 0) return;
        int padded = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)count);
        var keys = Allocate(DType.Int64, padded);
        try
        {
            var kv = S(keys, op).Longs;
            _k.SortKeys.Value(new Index1D(padded), S(index, op).Longs, kv, count);
            for (int k = 2; k <= padded; k <<= 1)
                for (int j = k >> 1; j > 0; j >>= 1)
                    _k.BitonicStep.Value(new Index1D(padded / 2), kv, j, k);
            _k.IndexAddSorted.Value(Threads(op, n), S(src, op).Floats, kv, S(dst, op).Floats, axisSize, inner, count);
        }
        finally { keys.Release(); }
    }

    /// <summary>IndexAdd (the embedding adjoint) sorts its indices above this many (a setting for tests and benchmarks).</summary>
    public int SortedIndexAddThreshold { get; set; } = 64;
    /// <inheritdoc/>
    public void ScatterAdd(Storage dst, long outer, int axisSize, long inner, Storage index, int count, Storage src) =>
        LaunchIndex("ScatterAdd", _k.ScatterAdd, src, index, dst, outer * axisSize * inner, axisSize, inner, count);

    // The Engine has checked the indices and sizes; float32 data and int64 indices only.
    private void LaunchIndex(string op, Lazy<Action<Index1D, ArrayView<float>, ArrayView<long>, ArrayView<float>, long, long, int>> kernel,
        Storage src, Storage index, Storage dst, long n, int axisSize, long inner, int count)
    {
        if (src.DType != DType.Float32 || dst.DType != DType.Float32) throw WrongType(op, src.DType != DType.Float32 ? src.DType : dst.DType);
        if (index.DType != DType.Int64) throw WrongType(op, index.DType);
        if (n == 0) return;
        kernel.Value(Threads(op, n), S(src, op).Floats, S(index, op).Longs, S(dst, op).Floats, axisSize, inner, count);
    }
    /// <inheritdoc/>
    public void AdamUpdate(Storage param, Storage grad, Storage expAvg, Storage expAvgSq, long length, AdamHyper h)
    {
        const string op = "AdamUpdate";
        if (param.DType != DType.Float32) throw WrongType(op, param.DType);
        float bc1 = 1 - MathF.Pow((float)h.Beta1, h.Step), bc2 = 1 - MathF.Pow((float)h.Beta2, h.Step);
        _k.Adam.Value(Threads(op, length), S(param, op).Floats, S(grad, op).Floats, S(expAvg, op).Floats, S(expAvgSq, op).Floats,
            (float)h.LearningRate, (float)h.Beta1, (float)h.Beta2, (float)h.Eps, (float)h.WeightDecay, (float)h.LearningRate / bc1, 1 / MathF.Sqrt(bc2), h.Decoupled ? 1 : 0);
    }
    /// <summary>Waits for every launched kernel, then releases the cached buffers and the accelerator.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _acc.Synchronize();
        _fault?.Dispose();
        Memory.Dispose();
        _acc.Dispose();
    }

    // ---- Layouts as kernel arguments ----------------------------------------------------------------------

    // Packs up to three views of one shape into StridedIndex arguments. Size-1 dims are dropped and
    // neighbouring dims merged wherever every operand steps through them as one run (stride[i] ==
    // stride[i+1] * size[i+1]); the row-major order of elements is unchanged, so a contiguous output still
    // matches index i. Merging lets views of rank above StridedIndex.MaxRank through, and saves index math.
    private static void Pack(ReadOnlySpan<int> shape, ReadOnlySpan<long> strides, long offset, out StridedIndex a)
        => Pack(shape, strides, offset, default, 0, default, 0, 1, out a, out _, out _);

    private static void Pack(ReadOnlySpan<int> shape, ReadOnlySpan<long> sa, long offA, ReadOnlySpan<long> sb, long offB, out StridedIndex a, out StridedIndex b)
        => Pack(shape, sa, offA, sb, offB, default, 0, 2, out a, out b, out _);

    private static void Pack(ReadOnlySpan<int> shape, ReadOnlySpan<long> sa, long offA, ReadOnlySpan<long> sb, long offB, ReadOnlySpan<long> sc, long offC,
        out StridedIndex a, out StridedIndex b, out StridedIndex c)
        => Pack(shape, sa, offA, sb, offB, sc, offC, 3, out a, out b, out c);

    private static void Pack(ReadOnlySpan<int> shape, ReadOnlySpan<long> sa, long offA, ReadOnlySpan<long> sb, long offB, ReadOnlySpan<long> sc, long offC,
        int operands, out StridedIndex a, out StridedIndex b, out StridedIndex c)
    {
        int rank = shape.Length;
        Span<int> size = stackalloc int[rank];
        Span<long> ta = stackalloc long[rank], tb = stackalloc long[rank], tc = stackalloc long[rank];
        int r = 0; // merged dims, innermost first
        for (int i = rank - 1; i >= 0; i--)
        {
            if (shape[i] == 1) continue;
            if (r > 0)
            {
                long run = size[r - 1];
                bool merge = sa[i] == ta[r - 1] * run
                    && (operands < 2 || sb[i] == tb[r - 1] * run)
                    && (operands < 3 || sc[i] == tc[r - 1] * run);
                if (merge) { size[r - 1] *= shape[i]; continue; }
            }
            size[r] = shape[i];
            ta[r] = sa[i];
            if (operands >= 2) tb[r] = sb[i];
            if (operands >= 3) tc[r] = sc[i];
            r++;
        }
        size[..r].Reverse(); ta[..r].Reverse(); tb[..r].Reverse(); tc[..r].Reverse();
        a = StridedIndex.Create(size[..r], ta[..r], offA);
        b = operands >= 2 ? StridedIndex.Create(size[..r], tb[..r], offB) : default;
        c = operands >= 3 ? StridedIndex.Create(size[..r], tc[..r], offC) : default;
    }
}
