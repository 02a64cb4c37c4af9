using AttnCore.Backends;

namespace AttnCore;

/// <summary>
/// An n-dimensional array on a <see cref="AttnCore.Device"/>: a <see cref="Storage"/> plus a <see cref="AttnCore.Layout"/>.
/// Views (Reshape, Transpose, Slice, Expand ...) share the storage; every op checks its inputs and
/// dispatches to the device's <see cref="IBackend"/>. Dispose a tensor (or the <see cref="TensorScope"/>
/// it was made in) to give its memory back to the pool at once; using a disposed tensor throws.
/// </summary>
public sealed partial class Tensor : IDisposable
{
    private Storage? _storage;

    /// <summary>Wraps storage the caller owns one reference of (the reference moves to the tensor).</summary>
    internal Tensor(Storage storage, Layout layout, bool register = true)
    {
        _storage = storage;
        Layout = layout;
        if (register) TensorScope.Register(this);
    }

    /// <summary>A new tensor sharing this one's storage with another layout (a view).</summary>
    internal Tensor ViewOf(Layout layout)
    {
        var s = Storage;
        s.AddRef();
        return new Tensor(s, layout);
    }

    /// <summary>The storage, or ObjectDisposedException once disposed.</summary>
    internal Storage Storage => _storage ?? throw new ObjectDisposedException(nameof(Tensor), $"Tensor {AttnCore.Shape.Format(Layout.Shape)} was disposed");

    /// <summary>Shape, strides and offset into the storage.</summary>
    public Layout Layout { get; }

    /// <summary>The size of each dimension (a copy).</summary>
    public int[] Shape => (int[])Layout.Shape.Clone();

    /// <summary>The step of each dimension, in elements (a copy).</summary>
    public long[] Strides => (long[])Layout.Strides.Clone();

    /// <summary>Number of dimensions.</summary>
    public int Rank => Layout.Rank;

    /// <summary>Number of elements.</summary>
    public long Numel => Layout.Numel;

    /// <summary>The element type.</summary>
    public DType DType => Storage.DType;

    /// <summary>Where the tensor lives.</summary>
    public Device Device => Storage.Device;

    /// <summary>True when the elements are row-major with no gaps.</summary>
    public bool IsContiguous => Layout.IsContiguous;

    /// <summary>True once disposed.</summary>
    public bool IsDisposed => _storage is null;

    /// <summary>Size of dimension <paramref name="dim"/> (negative counts from the end).</summary>
    public int Size(int dim) => Layout.Shape[AttnCore.Shape.NormalizeAxis("Size", dim, Rank)];

    internal IBackend Backend => Storage.Device.Backend;

    /// <summary>Releases this tensor's reference to its storage; the last reference returns the memory to the pool.</summary>
    public void Dispose()
    {
        var s = Interlocked.Exchange(ref _storage, null);
        s?.Release();
    }

    // ---- helpers shared by the op files ----

    /// <summary>
    /// A fresh contiguous tensor of <paramref name="shape"/> on <paramref name="device"/>; contents undefined. The
    /// element count is checked (negative dims, overflow, what one storage holds) and errors name <paramref name="op"/>.
    /// </summary>
    internal static Tensor Empty(int[] shape, DType dtype, Device device, string op = "Empty")
    {
        long numel = AttnCore.Shape.StorableNumel(op, shape, dtype, device);
        return new Tensor(device.Backend.Allocate(dtype, numel), Layout.Contiguous(shape));
    }

    internal Tensor EmptyLike(int[]? shape = null, DType? dtype = null) => Empty(shape ?? Layout.Shape, dtype ?? DType, Device);

    internal static void SameDevice(string op, Tensor a, Tensor b)
    {
        if (a.Device != b.Device)
            throw new ArgumentException($"{op}: tensors are on different devices: {a.Device} {a.Describe()} and {b.Device} {b.Describe()}; move one with To(device)");
    }

    internal static void SameDType(string op, Tensor a, Tensor b)
    {
        if (a.DType != b.DType)
            throw new ArgumentException($"{op}: dtypes differ: {a.DType.Name()} {a.Describe()} and {b.DType.Name()} {b.Describe()}; convert one with To(DType)");
    }

    internal void RequireFloat(string op)
    {
        if (!DType.IsFloatingPoint()) throw new ArgumentException($"{op}: needs a floating-point tensor, got {DType.Name()} {Describe()}");
    }

    /// <summary>Shape and dtype as error messages show them: [2,3] float32.</summary>
    internal string Describe() => AttnCore.Shape.Format(Layout.Shape);
}
