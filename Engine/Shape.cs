namespace AttnCore;

/// <summary>Shape and stride arithmetic shared by every op: broadcasting, contiguous strides, formatting.</summary>
public static class Shape
{
    /// <summary>
    /// Number of elements of a shape (1 for a scalar, 0 if any dimension is 0). Throws <see cref="ArgumentException"/>
    /// when a dimension is negative or the product overflows a long (PyTorch: "numel: integer multiplication
    /// overflow"); a zero dimension makes the count 0 whatever the others are, as in PyTorch.
    /// </summary>
    public static long Numel(ReadOnlySpan<int> shape) => Numel("Numel", shape);

    /// <summary>
    /// The checked element count every creation, view, reshape, expand and broadcast goes through: throws
    /// <see cref="ArgumentException"/> naming <paramref name="op"/> and the shape when a dimension is negative or
    /// the count overflows a long.
    /// </summary>
    public static long Numel(string op, ReadOnlySpan<int> shape)
    {
        bool zero = false;
        foreach (int d in shape)
        {
            if (d < 0) throw new ArgumentException($"{op}: negative dimension {d} in shape {Format(shape)}");
            zero |= d == 0;
        }
        if (zero) return 0;
        long n = 1;
        foreach (int d in shape)
            if (!TryMultiply(n, d, out n))
                throw new ArgumentException($"{op}: shape {Format(shape)} has more elements than a long can count (numel: integer multiplication overflow)");
        return n;
    }

    private static bool TryMultiply(long a, long b, out long product)
    {
        long high = Math.BigMul(a, b, out long low);
        product = low;
        return (high == 0 && low >= 0) || (high == -1 && low < 0);
    }

    /// <summary>
    /// The most elements one storage of <paramref name="dtype"/> can hold on <paramref name="device"/>, as its
    /// backend states it (<see cref="Backends.IBackend.MaxElements"/>).
    /// </summary>
    public static long MaxElements(DType dtype, Device device) => device.Backend.MaxElements(dtype);

    /// <summary>
    /// <see cref="Numel(string, ReadOnlySpan{int})"/> for a tensor about to be allocated: also throws
    /// <see cref="ArgumentException"/> naming the op, the shape, the dtype and the device when the count does not
    /// fit one storage (<see cref="MaxElements"/>).
    /// </summary>
    public static long StorableNumel(string op, ReadOnlySpan<int> shape, DType dtype, Device device)
    {
        long n = Numel(op, shape);
        long max = MaxElements(dtype, device);
        if (n > max)
            throw new ArgumentException($"{op}: shape {Format(shape)} has {n} elements; one {dtype.Name()} storage on {device} holds at most {max}");
        return n;
    }

    /// <summary>
    /// A dimension size computed from others (a flattened or inferred dim): throws naming the op and shape when it
    /// does not fit the int that a dimension is.
    /// </summary>
    public static int CheckedDim(string op, long size, ReadOnlySpan<int> shape)
        => size is >= 0 and <= int.MaxValue ? (int)size
            : throw new ArgumentException($"{op}: a dimension of {size} elements (from shape {Format(shape)}) exceeds the largest dimension size {int.MaxValue}");

    /// <summary>
    /// Row-major (C-order) strides of a shape, in elements. Only a shape with a zero dim (no elements, so no stride
    /// is ever used to address one) can have strides past a long: those saturate at long.MaxValue instead of
    /// wrapping (PyTorch wraps them to 0).
    /// </summary>
    public static long[] ContiguousStrides(ReadOnlySpan<int> shape)
    {
        var strides = new long[shape.Length];
        long s = 1;
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            strides[i] = s;
            if (!TryMultiply(s, Math.Max(shape[i], 1), out s)) s = long.MaxValue;
        }
        return strides;
    }

    /// <summary>Formats a shape the way error messages show it: [2,3,4].</summary>
    public static string Format(ReadOnlySpan<int> shape) => "[" + string.Join(",", shape.ToArray()) + "]";

    /// <summary>NumPy broadcasting of two shapes; throws naming <paramref name="op"/> when they do not broadcast.</summary>
    public static int[] Broadcast(string op, ReadOnlySpan<int> a, ReadOnlySpan<int> b)
    {
        int rank = Math.Max(a.Length, b.Length);
        var result = new int[rank];
        for (int i = 0; i < rank; i++)
        {
            int da = i < rank - a.Length ? 1 : a[i - (rank - a.Length)];
            int db = i < rank - b.Length ? 1 : b[i - (rank - b.Length)];
            if (da != db && da != 1 && db != 1)
                throw new ArgumentException($"{op}: shapes {Format(a)} and {Format(b)} cannot be broadcast (dimension {i}: {da} vs {db})");
            result[i] = da == 1 ? db : da;
        }
        Numel(op, result);
        return result;
    }

    /// <summary>Resolves a possibly negative axis against a rank; throws naming the op when out of range.</summary>
    public static int NormalizeAxis(string op, int axis, int rank)
    {
        int r = Math.Max(rank, 1);
        if (axis < -r || axis >= r)
            throw new ArgumentOutOfRangeException(nameof(axis), $"{op}: dimension {axis} is out of range for a tensor of rank {rank} (expected [{-r}, {r - 1}])");
        return axis < 0 ? axis + r : axis;
    }

    /// <summary>Resolves one -1 entry of a requested shape against a known element count (all counts checked).</summary>
    public static int[] InferShape(string op, ReadOnlySpan<int> requested, long numel, ReadOnlySpan<int> from)
    {
        var shape = requested.ToArray();
        int infer = -1;
        for (int i = 0; i < shape.Length; i++)
        {
            if (shape[i] == -1)
            {
                if (infer >= 0) throw new ArgumentException($"{op}: only one dimension can be -1, got {Format(requested)}");
                infer = i;
            }
            else if (shape[i] < 0) throw new ArgumentException($"{op}: invalid dimension {shape[i]} in {Format(requested)}");
        }
        if (infer >= 0)
        {
            shape[infer] = 1;
            long known = Numel(op, shape);
            if (known == 0 || numel % known != 0)
                throw new ArgumentException($"{op}: cannot reshape {Format(from)} ({numel} elements) into {Format(requested)}");
            shape[infer] = CheckedDim(op, numel / known, requested);
        }
        else
        {
            long known = Numel(op, shape);
            if (known != numel)
                throw new ArgumentException($"{op}: cannot reshape {Format(from)} ({numel} elements) into {Format(requested)} ({known} elements)");
        }
        return shape;
    }
}
