using AttnCore.Memory;

namespace AttnCore.Backends;

/// <summary>CPU storage: a pinned array rented from <see cref="CpuMemoryPool"/>.</summary>
public sealed class CpuStorage<T> : Storage where T : unmanaged
{
    private T[]? _array;

    internal CpuStorage(Device device, long length) : base(device, DTypeInfo.Of<T>(), length)
    {
        _array = length == 0 ? [] : CpuMemoryPool.Rent<T>(length);
    }

    /// <summary>The backing array (may be longer than <see cref="Storage.Length"/>).</summary>
    public T[] Array => _array ?? throw new ObjectDisposedException(nameof(CpuStorage<T>), "CPU storage was already freed");

    /// <summary>The elements as a span of exactly <see cref="Storage.Length"/>.</summary>
    public Span<T> Span => Array.AsSpan(0, (int)Length);

    /// <inheritdoc/>
    protected override void Free()
    {
        var a = Interlocked.Exchange(ref _array, null);
        if (a is { Length: > 0 }) CpuMemoryPool.Return(a);
    }
}
