namespace AttnCore;

/// <summary>Shape and stride arithmetic shared by every op: broadcasting, contiguous strides, formatting.</summary>
public static class Shape
{
    /// <summary>Number of elements of a shape (1 for a scalar, 0 if any dimension is 0).</summary>
    public static long Numel(ReadOnlySpan<int> shape)
    {
        long n = 1;
        foreach (int d in shape) n *= d;
        return n;
    }

    /// <summary>Row-major (C-order) strides of a shape, in elements.</summary>
    public static long[] ContiguousStrides(ReadOnlySpan<int> shape)
    {
        var strides = new long[shape.Length];
        long s = 1;
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            strides[i] = s;
            s *= Math.Max(shape[i], 1);
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

    /// <summary>Resolves one -1 entry of a requested shape against a known element count.</summary>
    public static int[] InferShape(string op, ReadOnlySpan<int> requested, long numel, ReadOnlySpan<int> from)
    {
        var shape = requested.ToArray();
        int infer = -1;
        long known = 1;
        for (int i = 0; i < shape.Length; i++)
        {
            if (shape[i] == -1)
            {
                if (infer >= 0) throw new ArgumentException($"{op}: only one dimension can be -1, got {Format(requested)}");
                infer = i;
            }
            else if (shape[i] < 0) throw new ArgumentException($"{op}: invalid dimension {shape[i]} in {Format(requested)}");
            else known *= shape[i];
        }
        if (infer >= 0)
        {
            if (known == 0 || numel % known != 0)
                throw new ArgumentException($"{op}: cannot reshape {Format(from)} ({numel} elements) into {Format(requested)}");
            shape[infer] = (int)(numel / known);
        }
        else if (known != numel)
            throw new ArgumentException($"{op}: cannot reshape {Format(from)} ({numel} elements) into {Format(requested)} ({known} elements)");
        return shape;
    }
}
