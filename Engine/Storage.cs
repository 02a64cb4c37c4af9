namespace AttnCore;

/// <summary>
/// A block of elements on one device, shared by a tensor and all its views through a reference count.
/// The last <see cref="Release"/> hands the memory back to the device's pool; nothing waits for the GC.
/// </summary>
public abstract class Storage
{
    private int _refs = 1;

    /// <summary>Creates storage that starts with one reference (its creator's).</summary>
    protected Storage(Device device, DType dtype, long length)
    {
        Device = device; DType = dtype; Length = length;
    }

    /// <summary>The device the memory lives on.</summary>
    public Device Device { get; }
    /// <summary>The element type.</summary>
    public DType DType { get; }
    /// <summary>Number of elements.</summary>
    public long Length { get; }
    private long _version;

    /// <summary>Counts in-place writes, so autograd can tell a saved tensor was overwritten.</summary>
    public long Version => Interlocked.Read(ref _version);

    /// <summary>Marks an in-place write.</summary>
    public void BumpVersion() => Interlocked.Increment(ref _version);

    /// <summary>True once the memory went back to the pool.</summary>
    public bool IsFreed => Volatile.Read(ref _refs) <= 0;

    /// <summary>Adds a reference (a new tensor viewing this storage).</summary>
    public void AddRef()
    {
        int now = Interlocked.Increment(ref _refs);
        if (now <= 1) throw new ObjectDisposedException(GetType().Name, "Storage was already freed");
    }

    /// <summary>True when exactly one tensor holds this storage (no view of it, saved or not, is alive).</summary>
    internal bool HasOneReference => Volatile.Read(ref _refs) == 1;

    /// <summary>Drops a reference; the last one frees the memory.</summary>
    public void Release()
    {
        int now = Interlocked.Decrement(ref _refs);
        if (now == 0) Free();
    }

    /// <summary>Returns the memory to its pool. Called exactly once.</summary>
    protected abstract void Free();
}
