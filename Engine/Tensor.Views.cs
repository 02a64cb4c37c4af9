namespace AttnCore;

// Views: each returns a tensor that shares this one's storage with a new layout. No data moves,
// except in Contiguous() and in Reshape() of a layout that no strides can describe.
public sealed partial class Tensor
{
    /// <summary>A view with a new shape (one dim may be -1); throws when the strides cannot express it (use <see cref="Reshape"/>).</summary>
    public Tensor View(params int[] shape)
    {
        var target = AttnCore.Shape.InferShape("View", shape, Numel, Layout.Shape);
        var strides = ViewStrides(Layout.Shape, Layout.Strides, target)
            ?? throw new ArgumentException($"View: a tensor of shape {Describe()} with strides [{string.Join(",", Layout.Strides)}] cannot be viewed as {AttnCore.Shape.Format(target)}; call Reshape (copies) or Contiguous() first");
        return ViewOf(new Layout(target, strides, Layout.Offset)).Record(OpKind.View, [this]);
    }

    /// <summary>A tensor with a new shape (one dim may be -1): a view when possible, otherwise a contiguous copy.</summary>
    public Tensor Reshape(params int[] shape)
    {
        var target = AttnCore.Shape.InferShape("Reshape", shape, Numel, Layout.Shape);
        var strides = ViewStrides(Layout.Shape, Layout.Strides, target);
        if (strides is not null) return ViewOf(new Layout(target, strides, Layout.Offset)).Record(OpKind.View, [this]);
        using var c = Clone();
        return c.ViewOf(Layout.Contiguous(target, c.Layout.Offset)).Record(OpKind.View, [this]);
    }

    /// <summary>Merges dims startDim..endDim into one.</summary>
    public Tensor Flatten(int startDim = 0, int endDim = -1)
    {
        if (Rank == 0) return Reshape(1);
        int s = AttnCore.Shape.NormalizeAxis("Flatten", startDim, Rank), e = AttnCore.Shape.NormalizeAxis("Flatten", endDim, Rank);
        if (s > e) throw new ArgumentException($"Flatten: startDim {startDim} comes after endDim {endDim} for shape {Describe()}");
        var shape = new List<int>(Layout.Shape[..s]) { AttnCore.Shape.CheckedDim("Flatten", AttnCore.Shape.Numel(Layout.Shape.AsSpan(s, e - s + 1)), Layout.Shape) };
        shape.AddRange(Layout.Shape[(e + 1)..]);
        return Reshape([.. shape]);
    }

    // PyTorch's rule: a view exists when every run of old dims that the new shape splits or merges is
    // itself contiguous (each dim's stride = next stride * next size). Returns null when it is not.
    private static long[]? ViewStrides(int[] oldShape, long[] oldStrides, int[] newShape)
    {
        var newStrides = new long[newShape.Length];
        if (oldShape.Length == 0 || AttnCore.Shape.Numel(oldShape) == 0) return AttnCore.Shape.ContiguousStrides(newShape);
        int viewD = newShape.Length - 1;
        long chunkBase = oldStrides[^1], tensorNumel = 1, viewNumel = 1;
        for (int d = oldShape.Length - 1; d >= 0; d--)
        {
            tensorNumel *= oldShape[d];
            if (d == 0 || (oldShape[d - 1] != 1 && oldStrides[d - 1] != tensorNumel * chunkBase))
            {
                while (viewD >= 0 && (viewNumel < tensorNumel || newShape[viewD] == 1))
                {
                    newStrides[viewD] = viewNumel * chunkBase;
                    viewNumel *= newShape[viewD];
                    viewD--;
                }
                if (viewNumel != tensorNumel) return null;
                if (d > 0) { chunkBase = oldStrides[d - 1]; tensorNumel = 1; viewNumel = 1; }
            }
        }
        return viewD == -1 ? newStrides : null;
    }

    /// <summary>Swaps two dims.</summary>
    public Tensor Transpose(int dim0, int dim1)
    {
        int a = AttnCore.Shape.NormalizeAxis("Transpose", dim0, Rank), b = AttnCore.Shape.NormalizeAxis("Transpose", dim1, Rank);
        if (Rank == 0) return ViewOf(Layout).Record(OpKind.View, [this]);
        var perm = Enumerable.Range(0, Rank).ToArray();
        (perm[a], perm[b]) = (perm[b], perm[a]);
        return Permute(perm);
    }

    /// <summary>The transpose of a matrix (the last two dims swapped for rank &gt;= 2; a 1-d tensor is returned as is).</summary>
    public Tensor T => Rank < 2 ? ViewOf(Layout).Record(OpKind.View, [this]) : Transpose(-2, -1);

    /// <summary>Reorders dims: result dim i is this tensor's dim <c>dims[i]</c>.</summary>
    public Tensor Permute(params int[] dims)
    {
        if (dims.Length != Rank) throw new ArgumentException($"Permute: {dims.Length} dims given for a tensor of shape {Describe()} (rank {Rank})");
        var seen = new bool[Rank];
        var shape = new int[Rank];
        var strides = new long[Rank];
        for (int i = 0; i < Rank; i++)
        {
            int d = AttnCore.Shape.NormalizeAxis("Permute", dims[i], Rank);
            if (seen[d]) throw new ArgumentException($"Permute: dim {d} repeats in [{string.Join(",", dims)}]");
            seen[d] = true;
            shape[i] = Layout.Shape[d];
            strides[i] = Layout.Strides[d];
        }
        return ViewOf(new Layout(shape, strides, Layout.Offset)).Record(OpKind.Permute, [this], null, 0, dims.Select(x => AttnCore.Shape.NormalizeAxis("Permute", x, Rank)).ToArray());
    }

    /// <summary>Elements start, start+step, ... before end along <paramref name="dim"/> (Python slice rules: negatives count from the end, bounds clamp).</summary>
    public Tensor Slice(int dim, int start, int end, int step = 1)
    {
        int d = AttnCore.Shape.NormalizeAxis("Slice", dim, Rank);
        if (Rank == 0) throw new ArgumentException("Slice: cannot slice a 0-d tensor");
        if (step <= 0) throw new ArgumentException($"Slice: step must be positive, got {step}");
        int size = Layout.Shape[d];
        int s = Math.Clamp(start < 0 ? start + size : start, 0, size);
        int e = Math.Clamp(end < 0 ? end + size : end, 0, size);
        int len = e > s ? (e - s + step - 1) / step : 0;
        var shape = Shape; var strides = Strides;
        shape[d] = len;
        strides[d] = Layout.Strides[d] * step;
        return ViewOf(new Layout(shape, strides, Layout.Offset + (len > 0 ? s * Layout.Strides[d] : 0))).Record(OpKind.Narrow, [this], null, 0, [d, s, step]);
    }

    /// <summary><paramref name="length"/> elements from <paramref name="start"/> along <paramref name="dim"/>; throws when out of range.</summary>
    public Tensor Narrow(int dim, int start, int length)
    {
        int d = AttnCore.Shape.NormalizeAxis("Narrow", dim, Rank);
        if (Rank == 0) throw new ArgumentException("Narrow: cannot narrow a 0-d tensor");
        int size = Layout.Shape[d];
        if (start < 0) start += size;
        if (start < 0 || length < 0 || start + length > size)
            throw new ArgumentOutOfRangeException(nameof(start), $"Narrow: start {start} length {length} is out of range for dim {d} of size {size} (shape {Describe()})");
        var shape = Shape;
        shape[d] = length;
        return ViewOf(new Layout(shape, Strides, Layout.Offset + start * Layout.Strides[d])).Record(OpKind.Narrow, [this], null, 0, [d, start, 1]);
    }

    /// <summary>The slice at <paramref name="index"/> along <paramref name="dim"/>, with that dim removed.</summary>
    public Tensor Select(int dim, int index)
    {
        int d = AttnCore.Shape.NormalizeAxis("Select", dim, Rank);
        if (Rank == 0) throw new ArgumentException("Select: cannot index a 0-d tensor");
        int size = Layout.Shape[d];
        int i = index < 0 ? index + size : index;
        if (i < 0 || i >= size) throw new ArgumentOutOfRangeException(nameof(index), $"Select: index {index} is out of range for dim {d} of size {size} (shape {Describe()})");
        var shape = Layout.Shape.Where((_, k) => k != d).ToArray();
        var strides = Layout.Strides.Where((_, k) => k != d).ToArray();
        return ViewOf(new Layout(shape, strides, Layout.Offset + i * Layout.Strides[d])).Record(OpKind.Select, [this], null, 0, [d, i]);
    }

    /// <summary>Shorthand for <see cref="Select"/> along dim 0.</summary>
    [System.Runtime.CompilerServices.IndexerName("At")]
    public Tensor this[int index] => Select(0, index);

    /// <summary>Broadcasts size-1 dims (and new leading dims) to <paramref name="sizes"/> without copying; -1 keeps a dim.</summary>
    public Tensor Expand(params int[] sizes)
    {
        if (sizes.Length < Rank) throw new ArgumentException($"Expand: the target {AttnCore.Shape.Format(sizes)} has fewer dims than the tensor {Describe()}");
        int pad = sizes.Length - Rank;
        var target = new int[sizes.Length];
        for (int i = 0; i < sizes.Length; i++)
        {
            int cur = i < pad ? 1 : Layout.Shape[i - pad];
            int want = sizes[i] == -1 ? cur : sizes[i];
            if (i < pad && sizes[i] == -1) throw new ArgumentException($"Expand: -1 is not allowed for the new leading dim {i} in {AttnCore.Shape.Format(sizes)}");
            if (want < 0 || (cur != 1 && cur != want))
                throw new ArgumentException($"Expand: cannot expand {Describe()} to {AttnCore.Shape.Format(sizes)} (dim {i}: {cur} to {want}; only size-1 dims expand)");
            target[i] = want;
        }
        AttnCore.Shape.Numel("Expand", target);
        return ViewOf(Layout.BroadcastTo(target)).Record(OpKind.Expand, [this]);
    }

    /// <summary>Broadcasts to <paramref name="shape"/> by NumPy rules (a view).</summary>
    public Tensor BroadcastTo(params int[] shape)
    {
        var s = AttnCore.Shape.Broadcast("BroadcastTo", Layout.Shape, shape);
        if (!s.AsSpan().SequenceEqual(shape)) throw new ArgumentException($"BroadcastTo: {Describe()} cannot be broadcast to {AttnCore.Shape.Format(shape)}");
        return Expand(shape);
    }

    /// <summary>Removes every size-1 dim.</summary>
    public Tensor Squeeze()
    {
        var keep = Enumerable.Range(0, Rank).Where(i => Layout.Shape[i] != 1).ToArray();
        return ViewOf(new Layout(keep.Select(i => Layout.Shape[i]).ToArray(), keep.Select(i => Layout.Strides[i]).ToArray(), Layout.Offset)).Record(OpKind.View, [this]);
    }

    /// <summary>Removes <paramref name="dim"/> if its size is 1 (otherwise returns a view of the same shape, as PyTorch does).</summary>
    public Tensor Squeeze(int dim)
    {
        if (Rank == 0) return ViewOf(Layout).Record(OpKind.View, [this]);
        int d = AttnCore.Shape.NormalizeAxis("Squeeze", dim, Rank);
        if (Layout.Shape[d] != 1) return ViewOf(Layout).Record(OpKind.View, [this]);
        return ViewOf(new Layout(Layout.Shape.Where((_, k) => k != d).ToArray(), Layout.Strides.Where((_, k) => k != d).ToArray(), Layout.Offset)).Record(OpKind.View, [this]);
    }

    /// <summary>Inserts a size-1 dim at <paramref name="dim"/> (in [-rank-1, rank]).</summary>
    public Tensor Unsqueeze(int dim)
    {
        int d = AttnCore.Shape.NormalizeAxis("Unsqueeze", dim, Rank + 1);
        var shape = new List<int>(Layout.Shape);
        var strides = new List<long>(Layout.Strides);
        long stride = d < Rank ? Layout.Strides[d] * Layout.Shape[d] : 1;
        shape.Insert(d, 1);
        strides.Insert(d, stride);
        return ViewOf(new Layout([.. shape], [.. strides], Layout.Offset)).Record(OpKind.View, [this]);
    }

    /// <summary>This tensor if it is contiguous (a new reference), otherwise a contiguous copy.</summary>
    public Tensor Contiguous()
    {
        if (IsContiguous) return ViewOf(Layout).Record(OpKind.Copy, [this]);
        var dst = EmptyLike();
        Backend.Copy(Storage, Layout, dst.Storage, dst.Layout);
        return dst.Record(OpKind.Copy, [this]);
    }

    /// <summary>
    /// This tensor if its elements fill its storage from element 0 in row-major order, else a copy that does:
    /// what a backend kernel that takes "a contiguous storage" needs.
    /// </summary>
    internal Tensor Dense() => IsContiguous && Layout.Offset == 0 ? ViewOf(Layout) : Clone();

    /// <summary>A contiguous copy that shares nothing with this tensor.</summary>
    public Tensor Clone()
    {
        var dst = EmptyLike();
        Backend.Copy(Storage, Layout, dst.Storage, dst.Layout);
        return dst.Record(OpKind.Copy, [this]);
    }

    /// <summary>Views of consecutive pieces of <paramref name="splitSize"/> along <paramref name="dim"/> (the last may be shorter).</summary>
    public Tensor[] Split(int splitSize, int dim = 0)
    {
        int d = AttnCore.Shape.NormalizeAxis("Split", dim, Rank);
        if (splitSize <= 0) throw new ArgumentException($"Split: split size must be positive, got {splitSize}");
        int size = Layout.Shape[d];
        int count = Math.Max(1, (size + splitSize - 1) / splitSize);
        var parts = new Tensor[count];
        for (int i = 0; i < count; i++) parts[i] = Narrow(d, i * splitSize, Math.Min(splitSize, size - i * splitSize));
        return parts;
    }

    /// <summary>Views of pieces with the given sizes along <paramref name="dim"/>; the sizes must add up to the dim.</summary>
    public Tensor[] Split(int[] sizes, int dim = 0)
    {
        int d = AttnCore.Shape.NormalizeAxis("Split", dim, Rank);
        if (sizes.Any(s => s < 0) || sizes.Sum() != Layout.Shape[d])
            throw new ArgumentException($"Split: sizes [{string.Join(",", sizes)}] do not add up to dim {d} of size {Layout.Shape[d]} (shape {Describe()})");
        var parts = new Tensor[sizes.Length];
        int start = 0;
        for (int i = 0; i < sizes.Length; i++) { parts[i] = Narrow(d, start, sizes[i]); start += sizes[i]; }
        return parts;
    }

    /// <summary>Splits into <paramref name="chunks"/> views of equal size along <paramref name="dim"/> (the last may be smaller), as PyTorch's chunk.</summary>
    public Tensor[] Chunk(int chunks, int dim = 0)
    {
        if (chunks <= 0) throw new ArgumentException($"Chunk: chunks must be positive, got {chunks}");
        int d = AttnCore.Shape.NormalizeAxis("Chunk", dim, Rank);
        int size = Layout.Shape[d];
        return Split(Math.Max(1, (size + chunks - 1) / chunks), d);
    }
}
