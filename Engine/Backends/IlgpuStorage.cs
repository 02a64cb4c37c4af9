using ILGPU;
using ILGPU.Runtime;

namespace AttnCore.Backends;

/// <summary>Device storage: an ILGPU buffer from the backend's caching allocator, returned to it on free.</summary>
public sealed class IlgpuStorage : Storage
{
    private readonly IlgpuBackend _owner;
    private MemoryBuffer? _buffer;

    internal IlgpuStorage(IlgpuBackend owner, DType dtype, long length, MemoryBuffer buffer) : base(owner.Device, dtype, length)
    {
        _owner = owner; _buffer = buffer;
    }

    internal MemoryBuffer Buffer => _buffer ?? throw new ObjectDisposedException(nameof(IlgpuStorage), $"{Device} storage was already freed");

    internal ArrayView<float> Floats => Buffer is MemoryBuffer1D<float, Stride1D.Dense> b
        ? b.View.SubView(0, Math.Max(1, Length)).AsContiguous()
        : throw new ArgumentException($"IlgpuBackend: expected float32 storage, got {DType.Name()}");

    internal ArrayView<long> Longs => Buffer is MemoryBuffer1D<long, Stride1D.Dense> b
        ? b.View.SubView(0, Math.Max(1, Length)).AsContiguous()
        : throw new ArgumentException($"IlgpuBackend: expected int64 storage, got {DType.Name()}");

    /// <inheritdoc/>
    protected override void Free()
    {
        var b = Interlocked.Exchange(ref _buffer, null);
        if (b is not null) _owner.Return(DType, b);
    }
}
