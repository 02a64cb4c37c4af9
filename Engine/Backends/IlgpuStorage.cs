using System.Numerics;
using ILGPU;
using ILGPU.Runtime;

namespace AttnCore.Backends;

/// <summary>
/// Device storage: a byte buffer rented from the backend's <see cref="IlgpuMemoryPool"/>, seen as float32,
/// int64 or bool (byte) elements. The last <see cref="Storage.Release"/> returns the buffer to the pool at once.
/// </summary>
public sealed class IlgpuStorage : Storage
{
    private readonly IlgpuMemoryPool _pool;
    private MemoryBuffer1D<byte, Stride1D.Dense>? _buffer;

    internal IlgpuStorage(Device device, IlgpuMemoryPool pool, DType dtype, long length) : base(device, dtype, length)
    {
        _pool = pool;
        _buffer = pool.Rent(length * dtype.SizeOf());
    }

    private ArrayView<byte> Bytes => (_buffer ?? throw new ObjectDisposedException(nameof(IlgpuStorage), $"{Device} storage was already freed")).View;

    /// <summary>The elements as float32 (exactly <see cref="Storage.Length"/> of them).</summary>
    internal ArrayView<float> Floats => DType == DType.Float32
        ? Bytes.SubView(0, Length * sizeof(float)).Cast<float>()
        : throw new ArgumentException($"IlgpuBackend: expected a float32 storage, got {DType.Name()}");

    /// <summary>The elements as int64 (exactly <see cref="Storage.Length"/> of them).</summary>
    internal ArrayView<long> Longs => DType == DType.Int64
        ? Bytes.SubView(0, Length * sizeof(long)).Cast<long>()
        : throw new ArgumentException($"IlgpuBackend: expected an int64 storage, got {DType.Name()}");

    /// <summary>The elements of a bool storage as bytes, 0 or 1 (exactly <see cref="Storage.Length"/> of them).</summary>
    internal ArrayView<byte> Bools => DType == DType.Bool
        ? Bytes.SubView(0, Length)
        : throw new ArgumentException($"IlgpuBackend: expected a bool storage, got {DType.Name()}");

    /// <inheritdoc/>
    protected override void Free()
    {
        var b = Interlocked.Exchange(ref _buffer, null);
        if (b is not null) _pool.Return(b);
    }
}

/// <summary>
/// A caching allocator for one accelerator: freed buffers wait in size classes, four per power of two (256 bytes and
/// up) and are handed out again, so a training step in steady state asks the driver for nothing.
/// <see cref="Trim"/> gives the cached buffers back to the driver; <see cref="Dispose"/> does too and closes the pool.
/// Buffers still rented when the pool is disposed are freed when their storage is released.
/// </summary>
public sealed class IlgpuMemoryPool : IDisposable
{
    private const int MinClass = 8; // 256 bytes: small tensors share one class instead of one each
    private readonly Accelerator _accelerator;
    private readonly Stack<MemoryBuffer1D<byte, Stride1D.Dense>>?[] _free = new Stack<MemoryBuffer1D<byte, Stride1D.Dense>>?[64 * 4];
    private readonly object _gate = new();
    private bool _disposed;

    internal IlgpuMemoryPool(Accelerator accelerator) => _accelerator = accelerator;

    /// <summary>Buffers the driver handed out so far (the pool's misses).</summary>
    public long DriverAllocations { get; private set; }

    /// <summary>Bytes of the buffers rented out now (whole size classes), i.e. held by live storages.</summary>
    public long BytesInUse { get; private set; }

    /// <summary>Bytes held in free buffers, waiting for reuse.</summary>
    public long CachedBytes { get; private set; }

    // Four classes per power of two: (2^(e-1), 2^e] splits at 1.25, 1.5, 1.75 and 2 times 2^(e-1), so a buffer is
    // at most 25% larger than asked (one class per power of two wasted up to half). Class = 4e + q, q = 0..3.
    private static int SizeClass(long bytes)
    {
        if (bytes <= 1L << MinClass) return 4 * MinClass + 3; // the 256-byte class
        int e = 64 - BitOperations.LeadingZeroCount((ulong)bytes - 1); // 2^(e-1) < bytes <= 2^e
        long quarter = 1L << (e - 3);
        int q = (int)((bytes - (1L << (e - 1)) + quarter - 1) / quarter); // 1..4 quarters above 2^(e-1)
        return 4 * e + q - 1;
    }

    private static long ClassBytes(int cls) => (1L << (cls / 4 - 1)) + (cls % 4 + 1) * (1L << (cls / 4 - 3));

    /// <summary>Bytes a request of <paramref name="bytes"/> occupies (its size class); for tests and statistics.</summary>
    public static long RoundedSize(long bytes) => ClassBytes(SizeClass(bytes));

    internal MemoryBuffer1D<byte, Stride1D.Dense> Rent(long bytes)
    {
        int cls = SizeClass(bytes);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            BytesInUse += ClassBytes(cls);
            var stack = _free[cls];
            if (stack is { Count: > 0 })
            {
                CachedBytes -= ClassBytes(cls);
                return stack.Pop();
            }
            DriverAllocations++;
        }
        try
        {
            return _accelerator.Allocate1D<byte>(ClassBytes(cls));
        }
        catch (Exception e) when (e is OutOfMemoryException or AcceleratorException)
        {
            // Cached buffers of other classes may be what stands in the way: hand them back and try once more.
            Trim();
            try { return _accelerator.Allocate1D<byte>(ClassBytes(cls)); }
            catch { lock (_gate) BytesInUse -= ClassBytes(cls); throw; }
        }
    }

    internal void Return(MemoryBuffer1D<byte, Stride1D.Dense> buffer)
    {
        int cls = SizeClass(buffer.Length);
        lock (_gate)
        {
            BytesInUse -= ClassBytes(cls);
            if (!_disposed)
            {
                (_free[cls] ??= new()).Push(buffer);
                CachedBytes += ClassBytes(cls);
                return;
            }
        }
        buffer.Dispose();
    }

    /// <summary>Releases every cached (free) buffer to the driver; rented buffers are untouched.</summary>
    public void Trim()
    {
        lock (_gate)
        {
            foreach (var stack in _free)
                while (stack is { Count: > 0 }) stack.Pop().Dispose();
            CachedBytes = 0;
        }
    }

    /// <summary>Releases the cached buffers; buffers returned later are freed directly.</summary>
    public void Dispose()
    {
        Trim();
        lock (_gate) _disposed = true;
    }
}
