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
    /// <remarks>A device storage is one buffer whose size in bytes is a long, and its element-wise kernels launch
    /// one thread per element, so at most int.MaxValue elements.</remarks>
    public long MaxElements(DType dtype) => Math.Min(int.MaxValue, long.MaxValue / dtype.SizeOf());

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
        if (src.DType == DType.Int64 && !ElementwiseCatalogue.Of(op).Int64)
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
