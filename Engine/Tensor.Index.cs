namespace AttnCore;

// Index ops (IndexSelect, Gather, Embedding) and joins (Cat, Stack).
public sealed partial class Tensor
{
    // The CPU stops at the first bad index; a device reports it at its next synchronisation (see IBackend.CheckIndexRange).
    private static void CheckIndices(string op, Tensor index, int size, string what, long? ignoreIndex = null)
    {
        if (index.DType != DType.Int64) throw new ArgumentException($"{op}: indices must be int64, got {index.DType.Name()} {index.Describe()}");
        if (index.Numel == 0) return;
        using var dense = index.Dense();
        index.Backend.CheckIndexRange(dense.Storage, index.Numel, size, ignoreIndex, op, what);
    }

    /// <summary>The slices at <paramref name="index"/> (1-d int64) along <paramref name="dim"/>, as torch.index_select.</summary>
    public Tensor IndexSelect(int dim, Tensor index)
    {
        SameDevice("IndexSelect", this, index);
        int d = AttnCore.Shape.NormalizeAxis("IndexSelect", dim, Rank);
        if (index.Rank > 1) throw new ArgumentException($"IndexSelect: index must be 1-d, got {index.Describe()}");
        if (Rank == 0) throw new ArgumentException("IndexSelect: cannot index a 0-d tensor");
        CheckIndices("IndexSelect", index, Layout.Shape[d], $"dim {d} of {Describe()}");
        var shape = Shape;
        shape[d] = (int)index.Numel;
        var dst = EmptyLike(shape);
        if (dst.Numel == 0) return dst.Record(OpKind.IndexSelect, [this], [index], 0, [d]);
        using var x = Dense();
        using var idx = index.Dense();
        long outer = AttnCore.Shape.Numel(Layout.Shape.AsSpan(0, d)), inner = AttnCore.Shape.Numel(Layout.Shape.AsSpan(d + 1));
        Backend.IndexSelect(x.Storage, outer, Layout.Shape[d], inner, idx.Storage, (int)index.Numel, dst.Storage);
        return dst.Record(OpKind.IndexSelect, [this], [index], 0, [d]);
    }

    /// <summary>Rows of <paramref name="weight"/> [vocab, dim] picked by int64 <paramref name="indices"/> of any shape; result is indices.Shape + [dim].</summary>
    public static Tensor Embedding(Tensor indices, Tensor weight)
    {
        if (weight.Rank != 2) throw new ArgumentException($"Embedding: weight must be 2-d [vocab, dim], got {weight.Describe()}");
        using var flat = indices.Reshape(-1);
        using var rows = weight.IndexSelect(0, flat);
        return rows.Reshape([.. indices.Layout.Shape, weight.Layout.Shape[1]]);
    }

    /// <summary>out[i][j][k] = this[i][index[i][j][k]][k] for dim 1 (and likewise for any dim), as torch.gather.</summary>
    public Tensor Gather(int dim, Tensor index)
    {
        SameDevice("Gather", this, index);
        int d = AttnCore.Shape.NormalizeAxis("Gather", dim, Rank);
        if (index.Rank != Rank) throw new ArgumentException($"Gather: index {index.Describe()} must have the same rank as the input {Describe()}");
        for (int i = 0; i < Rank; i++)
            if (i != d && index.Layout.Shape[i] > Layout.Shape[i])
                throw new ArgumentException($"Gather: index {index.Describe()} is larger than the input {Describe()} in dim {i}");
        CheckIndices("Gather", index, Layout.Shape[d], $"dim {d} of {Describe()}");
        var dst = EmptyLike(index.Layout.Shape);
        if (dst.Numel == 0) return dst.Record(OpKind.Gather, [this], [index], 0, [d]);
        // The kernel wants input and index with the same extent outside dim: narrow the input to the index's extent.
        Tensor view = this;
        for (int i = 0; i < Rank; i++)
            if (i != d && index.Layout.Shape[i] != Layout.Shape[i])
            {
                var next = view.Narrow(i, 0, index.Layout.Shape[i]);
                if (!ReferenceEquals(view, this)) view.Dispose();
                view = next;
            }
        using var x = view.Dense();
        if (!ReferenceEquals(view, this)) view.Dispose();
        using var idx = index.Dense();
        long outer = AttnCore.Shape.Numel(index.Layout.Shape.AsSpan(0, d)), inner = AttnCore.Shape.Numel(index.Layout.Shape.AsSpan(d + 1));
        Backend.Gather(x.Storage, outer, Layout.Shape[d], inner, idx.Storage, index.Layout.Shape[d], dst.Storage);
        return dst.Record(OpKind.Gather, [this], [index], 0, [d]);
    }

    /// <summary>
    /// A copy of this tensor with <paramref name="source"/>'s slices added at <paramref name="index"/> along
    /// <paramref name="dim"/> (torch.index_add): the adjoint of <see cref="IndexSelect"/>, used for embedding gradients.
    /// </summary>
    public Tensor IndexAdd(int dim, Tensor index, Tensor source)
    {
        SameDevice("IndexAdd", this, source); SameDevice("IndexAdd", this, index); SameDType("IndexAdd", this, source);
        int d = AttnCore.Shape.NormalizeAxis("IndexAdd", dim, Rank);
        if (index.Rank > 1) throw new ArgumentException($"IndexAdd: index must be 1-d, got {index.Describe()}");
        var expected = Shape; expected[d] = (int)index.Numel;
        if (!source.Layout.Shape.AsSpan().SequenceEqual(expected))
            throw new ArgumentException($"IndexAdd: source has shape {source.Describe()}, expected {AttnCore.Shape.Format(expected)} for input {Describe()} and {index.Numel} indices along dim {d}");
        CheckIndices("IndexAdd", index, Layout.Shape[d], $"dim {d} of {Describe()}");
        var dst = Clone();
        if (source.Numel == 0) return dst;
        using var src = source.Dense();
        using var idx = index.Dense();
        long outer = AttnCore.Shape.Numel(Layout.Shape.AsSpan(0, d)), inner = AttnCore.Shape.Numel(Layout.Shape.AsSpan(d + 1));
        Backend.IndexAdd(dst.Storage, outer, Layout.Shape[d], inner, idx.Storage, (int)index.Numel, src.Storage);
        return dst;
    }

    /// <summary>A copy of this tensor with source[o, j, i] added at [o, index[o, j, i], i] along <paramref name="dim"/> (torch.scatter_add): the adjoint of <see cref="Gather"/>.</summary>
    public Tensor ScatterAdd(int dim, Tensor index, Tensor source)
    {
        SameDevice("ScatterAdd", this, source); SameDevice("ScatterAdd", this, index); SameDType("ScatterAdd", this, source);
        int d = AttnCore.Shape.NormalizeAxis("ScatterAdd", dim, Rank);
        if (!index.Layout.Shape.AsSpan().SequenceEqual(source.Layout.Shape) || index.Rank != Rank)
            throw new ArgumentException($"ScatterAdd: index {index.Describe()} and source {source.Describe()} must have the same shape and the input's rank ({Describe()})");
        for (int i = 0; i < Rank; i++)
            if (i != d && index.Layout.Shape[i] != Layout.Shape[i])
                throw new ArgumentException($"ScatterAdd: index {index.Describe()} must match the input {Describe()} outside dim {d}");
        CheckIndices("ScatterAdd", index, Layout.Shape[d], $"dim {d} of {Describe()}");
        var dst = Clone();
        if (source.Numel == 0) return dst;
        using var src = source.Dense();
        using var idx = index.Dense();
        long outer = AttnCore.Shape.Numel(Layout.Shape.AsSpan(0, d)), inner = AttnCore.Shape.Numel(Layout.Shape.AsSpan(d + 1));
        Backend.ScatterAdd(dst.Storage, outer, Layout.Shape[d], inner, idx.Storage, index.Layout.Shape[d], src.Storage);
        return dst;
    }

    /// <summary>Joins tensors along an existing dim; all other dims must match.</summary>
    public static Tensor Cat(IReadOnlyList<Tensor> tensors, int dim = 0)
    {
        if (tensors.Count == 0) throw new ArgumentException("Cat: needs at least one tensor");
        var first = tensors[0];
        if (first.Rank == 0) throw new ArgumentException("Cat: 0-d tensors cannot be concatenated; use Stack");
        int d = AttnCore.Shape.NormalizeAxis("Cat", dim, first.Rank);
        int total = 0;
        foreach (var t in tensors)
        {
            SameDevice("Cat", first, t); SameDType("Cat", first, t);
            if (t.Rank != first.Rank)
                throw new ArgumentException($"Cat: tensors differ in rank: {first.Describe()} and {t.Describe()}");
            for (int i = 0; i < first.Rank; i++)
                if (i != d && t.Layout.Shape[i] != first.Layout.Shape[i])
                    throw new ArgumentException($"Cat: shapes {first.Describe()} and {t.Describe()} differ outside dim {d}");
            total += t.Layout.Shape[d];
        }
        var shape = first.Shape;
        shape[d] = total;
        var dst = first.EmptyLike(shape);
        int at = 0;
        foreach (var t in tensors)
        {
            int len = t.Layout.Shape[d];
            if (len > 0 && t.Numel > 0)
            {
                using var slot = dst.Narrow(d, at, len);
                first.Backend.Copy(t.Storage, t.Layout, dst.Storage, slot.Layout);
            }
            at += len;
        }
        return dst.Record(OpKind.Cat, [.. tensors], null, 0, [d, .. tensors.Select(t => t.Layout.Shape[d])]);
    }

    /// <summary>Joins same-shaped tensors along a new dim.</summary>
    public static Tensor Stack(IReadOnlyList<Tensor> tensors, int dim = 0)
    {
        if (tensors.Count == 0) throw new ArgumentException("Stack: needs at least one tensor");
        int d = AttnCore.Shape.NormalizeAxis("Stack", dim, tensors[0].Rank + 1);
        foreach (var t in tensors)
            if (!t.Layout.Shape.AsSpan().SequenceEqual(tensors[0].Layout.Shape))
                throw new ArgumentException($"Stack: all tensors need the same shape, got {tensors[0].Describe()} and {t.Describe()}");
        var parts = tensors.Select(t => t.Unsqueeze(d)).ToArray();
        try { return Cat(parts, d); }
        finally { foreach (var p in parts) p.Dispose(); }
    }
}
