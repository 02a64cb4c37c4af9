using System.Collections.Concurrent;
using System.Numerics;

namespace AttnCore.Memory;

/// <summary>
/// The CPU memory pool: arrays in power-of-two size classes, pinned (allocated on the pinned object
/// heap) so kernels can hand raw pointers to worker threads without <c>fixed</c>. A training step that
/// reuses shapes rents and returns the same arrays and allocates nothing new.
/// </summary>
public static class CpuMemoryPool
{
    private const int MinClass = 6;               // 64 elements: tiny tensors share one class
    private const int MaxRetainedPerClass = 64;   // bounds what an idle pool holds on to

    private static readonly ConcurrentBag<Array>[][] Classes = CreateClasses();
    private static long _bytesAllocated, _bytesInUse, _rents, _allocations;

    /// <summary>Bytes the pool ever asked the runtime for (grows only when a request finds no free array).</summary>
    public static long BytesAllocated => Interlocked.Read(ref _bytesAllocated);
    /// <summary>Bytes rented out and not yet returned.</summary>
    public static long BytesInUse => Interlocked.Read(ref _bytesInUse);
    /// <summary>Number of rents served.</summary>
    public static long Rents => Interlocked.Read(ref _rents);
    /// <summary>Number of rents that had to allocate a new array.</summary>
    public static long Allocations => Interlocked.Read(ref _allocations);

    private static ConcurrentBag<Array>[][] CreateClasses()
    {
        var byType = new ConcurrentBag<Array>[4][];
        for (int t = 0; t < byType.Length; t++)
        {
            byType[t] = new ConcurrentBag<Array>[32];
            for (int c = 0; c < 32; c++) byType[t][c] = new ConcurrentBag<Array>();
        }
        return byType;
    }

    // One set of classes per element type, so a rented array always has the type asked for.
    private static int TypeSlot<T>() => typeof(T) == typeof(float) ? 0 : typeof(T) == typeof(double) ? 1 : typeof(T) == typeof(long) ? 2
        : typeof(T) == typeof(bool) ? 3 : throw new NotSupportedException($"CpuMemoryPool: no size classes for element type {typeof(T).Name}");

    private static int ClassOf(long length)
    {
        if (length > Array.MaxLength) throw new OutOfMemoryException($"CpuMemoryPool: {length} elements exceed the largest array .NET allows ({Array.MaxLength})");
        int c = length <= 1L << MinClass ? MinClass : 64 - BitOperations.LeadingZeroCount((ulong)length - 1);
        return c;
    }

    /// <summary>Rents an array of at least <paramref name="length"/> elements. Contents are undefined.</summary>
    public static T[] Rent<T>(long length) where T : unmanaged
    {
        Interlocked.Increment(ref _rents);
        int c = ClassOf(length);
        long size = Math.Min(1L << c, Array.MaxLength);
        long bytes = size * System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        Interlocked.Add(ref _bytesInUse, bytes);
        if (Classes[TypeSlot<T>()][c].TryTake(out var found)) return (T[])found;
        Interlocked.Increment(ref _allocations);
        Interlocked.Add(ref _bytesAllocated, bytes);
        return GC.AllocateUninitializedArray<T>((int)size, pinned: true);
    }

    /// <summary>Gives an array back to its size class.</summary>
    public static void Return<T>(T[] array) where T : unmanaged
    {
        int c = ClassOf(array.Length);
        Interlocked.Add(ref _bytesInUse, -(long)array.Length * System.Runtime.CompilerServices.Unsafe.SizeOf<T>());
        var bag = Classes[TypeSlot<T>()][c];
        if (bag.Count < MaxRetainedPerClass) bag.Add(array);
    }

    /// <summary>Drops every retained array (for tests and for handing memory back to the OS).</summary>
    public static void Trim()
    {
        foreach (var byType in Classes)
            foreach (var bag in byType)
                while (bag.TryTake(out _)) { }
    }
}
