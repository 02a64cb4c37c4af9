namespace AttnCore;

/// <summary>
/// Where a tensor's elements sit in its storage: element [i0, i1, ...] is at
/// <c>Offset + i0*Strides[0] + i1*Strides[1] + ...</c>. Views (transpose, slice, expand) only
/// change the layout; a stride of 0 repeats an element (broadcasting).
/// </summary>
public sealed class Layout
{
    /// <summary>Size of each dimension.</summary>
    public int[] Shape { get; }
    /// <summary>Step in elements between neighbours along each dimension.</summary>
    public long[] Strides { get; }
    /// <summary>Index of element [0, 0, ...] in the storage.</summary>
    public long Offset { get; }

    /// <summary>
    /// Creates a layout; arrays are owned by the layout from now on. Throws <see cref="ArgumentException"/> when a
    /// dimension is negative or the element count overflows a long, so no view of such a shape can exist.
    /// </summary>
    public Layout(int[] shape, long[] strides, long offset)
    {
        if (shape.Length != strides.Length) throw new ArgumentException($"Layout: shape {AttnCore.Shape.Format(shape)} and {strides.Length} strides differ in rank");
        Numel = AttnCore.Shape.Numel("Layout", shape);
        Shape = shape; Strides = strides; Offset = offset;
    }

    /// <summary>A row-major layout of <paramref name="shape"/> starting at <paramref name="offset"/>.</summary>
    public static Layout Contiguous(int[] shape, long offset = 0) => new(shape, AttnCore.Shape.ContiguousStrides(shape), offset);

    /// <summary>Number of dimensions.</summary>
    public int Rank => Shape.Length;

    /// <summary>Number of elements.</summary>
    public long Numel { get; }

    /// <summary>True when the elements are laid out row-major with no gaps (size-1 dims may have any stride).</summary>
    public bool IsContiguous
    {
        get
        {
            long expected = 1;
            for (int i = Shape.Length - 1; i >= 0; i--)
            {
                if (Shape[i] == 1) continue;
                if (Shape[i] == 0) return true;
                if (Strides[i] != expected) return false;
                expected *= Shape[i];
            }
            return true;
        }
    }

    /// <summary>The range of storage elements this layout can touch: [min, max] (empty when numel is 0).</summary>
    public (long Min, long Max) Span()
    {
        long lo = Offset, hi = Offset;
        for (int i = 0; i < Shape.Length; i++)
        {
            if (Shape[i] == 0) return (Offset, Offset - 1);
            long ext = (Shape[i] - 1) * Strides[i];
            if (ext < 0) lo += ext; else hi += ext;
        }
        return (lo, hi);
    }

    /// <summary>This layout broadcast to <paramref name="target"/> (stride 0 on expanded dims); the caller checked compatibility.</summary>
    public Layout BroadcastTo(int[] target)
    {
        int pad = target.Length - Shape.Length;
        var strides = new long[target.Length];
        for (int i = 0; i < target.Length; i++)
        {
            int j = i - pad;
            strides[i] = j < 0 || (Shape[j] == 1 && target[i] != 1) ? 0 : Strides[j];
        }
        return new Layout((int[])target.Clone(), strides, Offset);
    }

    /// <inheritdoc/>
    public override string ToString() => $"shape={AttnCore.Shape.Format(Shape)} strides=[{string.Join(",", Strides)}] offset={Offset}";
}
