using System.Runtime.InteropServices;

namespace AttnCore;

// Creation, device/dtype moves and host access.
public sealed partial class Tensor
{
    /// <summary>A tensor holding a copy of <paramref name="data"/> (float, double, long or bool) with <paramref name="shape"/> (default: 1-d).</summary>
    public static Tensor FromArray<T>(T[] data, int[]? shape = null, Device? device = null) where T : unmanaged
        => FromSpan<T>(data, shape ?? [data.Length], device);

    /// <summary>A tensor holding a copy of <paramref name="data"/> with <paramref name="shape"/>.</summary>
    public static Tensor FromSpan<T>(ReadOnlySpan<T> data, int[] shape, Device? device = null) where T : unmanaged
    {
        long n = AttnCore.Shape.Numel("FromArray", shape);
        if (n != data.Length) throw new ArgumentException($"FromArray: {data.Length} values do not fill shape {AttnCore.Shape.Format(shape)} ({n} elements)");
        var t = Empty((int[])shape.Clone(), DTypeInfo.Of<T>(), device ?? Device.Default, "FromArray");
        t.Backend.Upload(data, t.Storage);
        return t;
    }

    /// <summary>A 0-d tensor holding <paramref name="value"/>.</summary>
    public static Tensor Scalar(double value, DType dtype = DType.Float32, Device? device = null) => Full([], value, dtype, device);

    /// <summary>A tensor of <paramref name="shape"/> filled with <paramref name="value"/>.</summary>
    public static Tensor Full(int[] shape, double value, DType dtype = DType.Float32, Device? device = null) => Filled("Full", shape, value, dtype, device);

    private static Tensor Filled(string op, int[] shape, double value, DType dtype, Device? device)
    {
        var t = Empty((int[])shape.Clone(), dtype, device ?? Device.Default, op);
        t.Backend.Fill(t.Storage, t.Layout, value);
        return t;
    }

    /// <summary>Zeros of <paramref name="shape"/>.</summary>
    public static Tensor Zeros(int[] shape, DType dtype = DType.Float32, Device? device = null) => Filled("Zeros", shape, 0, dtype, device);
    /// <summary>Ones of <paramref name="shape"/>.</summary>
    public static Tensor Ones(int[] shape, DType dtype = DType.Float32, Device? device = null) => Filled("Ones", shape, 1, dtype, device);
    /// <summary>Zeros with this tensor's shape, dtype and device.</summary>
    public Tensor ZerosLike() => Zeros(Layout.Shape, DType, Device);
    /// <summary>Ones with this tensor's shape, dtype and device.</summary>
    public Tensor OnesLike() => Ones(Layout.Shape, DType, Device);
    /// <summary><paramref name="value"/> with this tensor's shape, dtype and device.</summary>
    public Tensor FullLike(double value) => Full(Layout.Shape, value, DType, Device);

    /// <summary>start, start+step, ... below end (as torch.arange).</summary>
    public static Tensor Arange(double start, double end, double step = 1, DType dtype = DType.Float32, Device? device = null)
    {
        if (step == 0 || double.IsNaN(step)) throw new ArgumentException($"Arange: step must be non-zero, got {step}");
        long n = (long)Math.Max(0, Math.Ceiling((end - start) / step));
        if (n > Array.MaxLength) throw new ArgumentException($"Arange: [{start}, {end}) with step {step} has {n} elements, too many");
        return dtype switch
        {
            DType.Float32 => FromArray(Enumerable.Range(0, (int)n).Select(i => (float)(start + i * step)).ToArray(), null, device),
            DType.Float64 => FromArray(Enumerable.Range(0, (int)n).Select(i => start + i * step).ToArray(), null, device),
            _ => FromArray(Enumerable.Range(0, (int)n).Select(i => (long)(start + i * step)).ToArray(), null, device),
        };
    }

    /// <summary>0, 1, ..., end-1.</summary>
    public static Tensor Arange(int end, DType dtype = DType.Float32, Device? device = null) => Arange(0, end, 1, dtype, device);

    private static Tensor Random(int[] shape, DType dtype, Device? device, Generator? gen, Func<Generator, double> draw, string op)
    {
        if (!dtype.IsFloatingPoint()) throw new ArgumentException($"{op}: dtype must be float32 or float64, got {dtype.Name()}");
        gen ??= Generator.Default;
        long n = AttnCore.Shape.StorableNumel(op, shape, dtype, device ?? Device.Default);
        if (dtype == DType.Float32)
        {
            var data = new float[n];
            for (long i = 0; i < n; i++) data[i] = (float)draw(gen);
            return FromArray(data, shape, device);
        }
        var d = new double[n];
        for (long i = 0; i < n; i++) d[i] = draw(gen);
        return FromArray(d, shape, device);
    }

    /// <summary>Uniform in [0, 1).</summary>
    public static Tensor Rand(int[] shape, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
        => Random(shape, dtype, device, generator, g => g.NextDouble(), "Rand");
    /// <summary>Uniform in [0, 1) from a fresh generator seeded with <paramref name="seed"/>.</summary>
    public static Tensor Rand(int[] shape, ulong seed, DType dtype = DType.Float32, Device? device = null) => Rand(shape, new Generator(seed), dtype, device);

    /// <summary>
    /// The dropout keep-mask of <paramref name="shape"/>: 1/(1-p) where an element is kept (probability 1-p), 0 where
    /// it is dropped, drawn on the tensor's device from one seed taken from <paramref name="generator"/> (a
    /// counter-based hash, so the CPU and every device draw the same mask for the same seed, and no data crosses
    /// from the host).
    /// </summary>
    public static Tensor DropoutMask(int[] shape, double p, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    {
        if (p is < 0 or >= 1) throw new ArgumentException($"DropoutMask: p must be in [0, 1), got {p}");
        if (!dtype.IsFloatingPoint()) throw new ArgumentException($"DropoutMask: dtype must be float32 or float64, got {dtype.Name()}");
        ulong seed = (generator ?? Generator.Default).NextUInt64();
        var t = Empty(shape, dtype, device ?? Device.Default, "DropoutMask");
        t.Backend.DropoutMask(t.Storage, t.Numel, p, seed);
        return t;
    }

    /// <summary>Standard normal.</summary>
    public static Tensor Randn(int[] shape, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
        => Random(shape, dtype, device, generator, g => g.NextNormal(), "Randn");
    /// <summary>Standard normal from a fresh generator seeded with <paramref name="seed"/>.</summary>
    public static Tensor Randn(int[] shape, ulong seed, DType dtype = DType.Float32, Device? device = null) => Randn(shape, new Generator(seed), dtype, device);

    /// <summary>Uniform integers in [low, high) as int64.</summary>
    public static Tensor RandInt(long low, long high, int[] shape, Generator? generator = null, Device? device = null)
    {
        if (high <= low) throw new ArgumentException($"RandInt: empty range [{low}, {high})");
        var g = generator ?? Generator.Default;
        var data = new long[AttnCore.Shape.StorableNumel("RandInt", shape, DType.Int64, device ?? Device.Default)];
        for (int i = 0; i < data.Length; i++) data[i] = g.NextInt64(low, high);
        return FromArray(data, shape, device);
    }

    /// <summary>Uniform integers in [low, high) from a fresh generator seeded with <paramref name="seed"/>.</summary>
    public static Tensor RandInt(long low, long high, int[] shape, ulong seed, Device? device = null) => RandInt(low, high, shape, new Generator(seed), device);

    /// <summary>The n x n identity matrix.</summary>
    public static Tensor Eye(int n, DType dtype = DType.Float32, Device? device = null)
    {
        if (n < 0) throw new ArgumentException($"Eye: size must be non-negative, got {n}");
        using var i = Arange(0, n, 1, DType.Int64, device);
        using var row = i.Unsqueeze(1);
        using var col = i.Unsqueeze(0);
        using var eq = row.Eq(col);
        return eq.To(dtype);
    }

    // Keeps the elements whose (column - row) over the last two dims satisfies the band test, zero elsewhere.
    private Tensor Band(string op, int diagonal, bool upper)
    {
        if (Rank < 2) throw new ArgumentException($"{op}: needs at least 2 dims, got {Describe()}");
        int rows = Layout.Shape[^2], cols = Layout.Shape[^1];
        // Row and column numbers in this tensor's dtype (exact for any realistic size), so the whole mask is
        // computed with float ops that every device has.
        var indexType = DType.IsFloatingPoint() ? DType : DType.Int64;
        using var r = Arange(0, rows, 1, indexType, Device);
        using var c = Arange(0, cols, 1, indexType, Device);
        using var rr = r.Unsqueeze(1);
        using var cc = c.Unsqueeze(0);
        using var diff = cc - rr;
        using var keep = upper ? diff.Ge(diagonal) : diff.Le(diagonal);
        using var zero = Zeros([], DType, Device);
        return Where(keep, this, zero);
    }

    /// <summary>The upper triangle (elements with column - row &gt;= <paramref name="diagonal"/>), zeros elsewhere; over the last two dims.</summary>
    public Tensor Triu(int diagonal = 0) => Band("Triu", diagonal, upper: true);

    /// <summary>The lower triangle (elements with column - row &lt;= <paramref name="diagonal"/>), zeros elsewhere; over the last two dims.</summary>
    public Tensor Tril(int diagonal = 0) => Band("Tril", diagonal, upper: false);

    /// <summary>A copy on <paramref name="device"/> (this tensor, as a new reference, if it is already there).</summary>
    public Tensor To(Device device)
    {
        if (device == Device) return ViewOf(Layout);
        using var src = Contiguous();
        var dst = Empty(Layout.Shape, DType, device);
        switch (DType)
        {
            case DType.Float32: dst.Backend.Upload<float>(src.HostCopy<float>(), dst.Storage); break;
            case DType.Float64: dst.Backend.Upload<double>(src.HostCopy<double>(), dst.Storage); break;
            case DType.Int64: dst.Backend.Upload<long>(src.HostCopy<long>(), dst.Storage); break;
            case DType.Bool: dst.Backend.Upload<bool>(src.HostCopy<bool>(), dst.Storage); break;
            default: throw new NotSupportedException($"To: cannot move {DType.Name()} tensors between devices");
        }
        return dst;
    }

    /// <summary>A copy converted to <paramref name="dtype"/> (this tensor, as a new reference, if it already has it).</summary>
    public Tensor To(DType dtype)
    {
        if (dtype == DType) return ViewOf(Layout).Record(OpKind.Copy, [this]);
        var dst = EmptyLike(dtype: dtype);
        Backend.Copy(Storage, Layout, dst.Storage, dst.Layout);
        return dtype.IsFloatingPoint() ? dst.Record(OpKind.ToDType, [this]) : dst;
    }

    private T[] HostCopy<T>() where T : unmanaged
    {
        var data = new T[Numel];
        if (data.Length > 0) Backend.Download<T>(Storage, Layout.Offset, data);
        return data;
    }

    /// <summary>The elements in row-major order, copied to a new host array of <typeparamref name="T"/> (converting the dtype if needed).</summary>
    public T[] ToArray<T>() where T : unmanaged
    {
        var want = DTypeInfo.Of<T>();
        if (Device != Device.Cpu && want != DType)
        {
            // Convert on the host: a device may not hold the wanted dtype (no float64 on ILGPU devices).
            using var host = To(Device.Cpu);
            return host.ToArray<T>();
        }
        using var converted = To(want);
        using var c = converted.Contiguous();
        return c.HostCopy<T>();
    }

    /// <summary>The value of a one-element tensor.</summary>
    public double Item()
    {
        if (Numel != 1) throw new ArgumentException($"Item: needs a tensor with exactly one element, got shape {Describe()}");
        return DType switch
        {
            DType.Float32 => ToArray<float>()[0],
            DType.Float64 => ToArray<double>()[0],
            DType.Bool => ToArray<bool>()[0] ? 1 : 0,
            _ => ToArray<long>()[0],
        };
    }

    /// <summary>Overwrites this tensor's elements (through its view) with <paramref name="src"/>, broadcast to this shape and converted to this dtype.</summary>
    public Tensor CopyFrom(Tensor src)
    {
        SameDevice("CopyFrom", this, src);
        var srcLayout = BroadcastLayout("CopyFrom", src, Layout.Shape);
        Backend.Copy(src.Storage, srcLayout, Storage, Layout);
        Storage.BumpVersion();
        return this;
    }

    /// <summary>Sets every element (through this view) to <paramref name="value"/>.</summary>
    public Tensor Fill_(double value)
    {
        Backend.Fill(Storage, Layout, value);
        Storage.BumpVersion();
        return this;
    }

    internal static Layout BroadcastLayout(string op, Tensor t, int[] shape)
    {
        var b = AttnCore.Shape.Broadcast(op, t.Layout.Shape, shape);
        if (!b.AsSpan().SequenceEqual(shape))
            throw new ArgumentException($"{op}: shape {t.Describe()} cannot be broadcast to {AttnCore.Shape.Format(shape)}");
        return t.Layout.BroadcastTo(shape);
    }
}
