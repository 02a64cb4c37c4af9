using AttnCore.Backends;

namespace AttnCore;

// Reductions over any set of axes, with keepDim. The reduced axes are permuted to the back (a view),
// so a backend only ever reduces "the trailing dims".
public sealed partial class Tensor
{
    private (Layout Permuted, int[] KeptShape, int[] KeepDimShape, int[] ReducedDims) PlanReduce(string op, int[]? dims)
    {
        var reduce = new bool[Rank];
        if (dims is null || dims.Length == 0) Array.Fill(reduce, true);
        else
            foreach (int d in dims)
            {
                int a = AttnCore.Shape.NormalizeAxis(op, d, Rank);
                if (Rank == 0) continue;
                if (reduce[a]) throw new ArgumentException($"{op}: dim {a} appears twice in [{string.Join(",", dims)}]");
                reduce[a] = true;
            }
        var order = Enumerable.Range(0, Rank).Where(i => !reduce[i]).Concat(Enumerable.Range(0, Rank).Where(i => reduce[i])).ToArray();
        var shape = order.Select(i => Layout.Shape[i]).ToArray();
        var strides = order.Select(i => Layout.Strides[i]).ToArray();
        var kept = Enumerable.Range(0, Rank).Where(i => !reduce[i]).Select(i => Layout.Shape[i]).ToArray();
        var keepDim = Enumerable.Range(0, Rank).Select(i => reduce[i] ? 1 : Layout.Shape[i]).ToArray();
        var reduced = Enumerable.Range(0, Rank).Where(i => reduce[i]).ToArray();
        return (new Layout(shape, strides, Layout.Offset), kept, keepDim, reduced);
    }

    // As PyTorch: an extremum (max, min, argmax, topk ...) over a reduced dim of size 0 has no value; a sum over it
    // is 0, and an empty dim that is kept just gives an empty result.
    private void RequireNonEmptyReduction(string op, IEnumerable<int> reducedDims)
    {
        foreach (int d in reducedDims)
            if (Layout.Shape[d] == 0)
                throw new ArgumentException($"{op}: expected reduction dim {d} to have non-zero size, got shape {Describe()}");
    }

    private Tensor ReduceOver(ReduceOp op, string name, int[]? dims, bool keepDim)
    {
        if (DType == DType.Bool)
        {
            // As PyTorch: the sum of a mask counts its true elements (int64); its max/min is a bool again.
            using var counts = To(DType.Int64);
            var r = counts.ReduceOver(op, name, dims, keepDim);
            if (op == ReduceOp.Sum) return r;
            using (r) return r.To(DType.Bool);
        }
        var (permuted, kept, keepDimShape, reducedDims) = PlanReduce(name, dims);
        if (op != ReduceOp.Sum) RequireNonEmptyReduction(name, reducedDims);
        var dst = EmptyLike(kept);
        if (dst.Numel > 0) Backend.Reduce(op, Storage, permuted, kept.Length, dst.Storage);
        // Ints: the reduced dims, so backward can unsqueeze and expand the gradient back.
        var kind = op switch { ReduceOp.Sum => OpKind.Sum, ReduceOp.Max => OpKind.Max, _ => OpKind.Min };
        dst.Record(kind, [this], op == ReduceOp.Sum ? null : [this, dst], 0, reducedDims);
        if (!keepDim) return dst;
        using (dst) return dst.View(keepDimShape);
    }

    /// <summary>Sum over <paramref name="dims"/> (all dims when none are given); a bool mask sums to an int64 count.</summary>
    public Tensor Sum(int[]? dims = null, bool keepDim = false) => ReduceOver(ReduceOp.Sum, "Sum", dims, keepDim);
    /// <summary>Sum over one dim.</summary>
    public Tensor Sum(int dim, bool keepDim = false) => Sum([dim], keepDim);

    /// <summary>Largest element over <paramref name="dims"/> (all dims when none are given).</summary>
    public Tensor Max(int[]? dims = null, bool keepDim = false) => ReduceOver(ReduceOp.Max, "Max", dims, keepDim);
    /// <summary>Largest element along one dim.</summary>
    public Tensor Max(int dim, bool keepDim = false) => Max([dim], keepDim);

    /// <summary>Smallest element over <paramref name="dims"/> (all dims when none are given).</summary>
    public Tensor Min(int[]? dims = null, bool keepDim = false) => ReduceOver(ReduceOp.Min, "Min", dims, keepDim);
    /// <summary>Smallest element along one dim.</summary>
    public Tensor Min(int dim, bool keepDim = false) => Min([dim], keepDim);

    private long CountOver(string op, int[]? dims)
    {
        var (permuted, kept, _, _) = PlanReduce(op, dims);
        return AttnCore.Shape.Numel(permuted.Shape.AsSpan(kept.Length));
    }

    /// <summary>True where any element over <paramref name="dims"/> (all dims when none are given) is true (non-zero); false over zero elements, as torch.any.</summary>
    public Tensor Any(int[]? dims = null, bool keepDim = false)
    {
        using var mask = AsBool();
        using var count = mask.Sum(dims, keepDim);
        return count.Ne(0);
    }
    /// <summary>True where any element along one dim is true.</summary>
    public Tensor Any(int dim, bool keepDim = false) => Any([dim], keepDim);

    /// <summary>True where every element over <paramref name="dims"/> (all dims when none are given) is true (non-zero); true over zero elements, as torch.all.</summary>
    public Tensor All(int[]? dims = null, bool keepDim = false)
    {
        using var falses = LogicalNot();
        using var count = falses.Sum(dims, keepDim);
        return count.Eq(0);
    }
    /// <summary>True where every element along one dim is true.</summary>
    public Tensor All(int dim, bool keepDim = false) => All([dim], keepDim);

    /// <summary>Mean over <paramref name="dims"/> (all dims when none are given); NaN over zero elements.</summary>
    public Tensor Mean(int[]? dims = null, bool keepDim = false)
    {
        RequireFloat("Mean");
        long n = CountOver("Mean", dims);
        using var s = Sum(dims, keepDim);
        return s * (1.0 / n);
    }
    /// <summary>Mean along one dim.</summary>
    public Tensor Mean(int dim, bool keepDim = false) => Mean([dim], keepDim);

    /// <summary>Variance over <paramref name="dims"/> with Bessel's correction by default (correction = 1), as torch.var.</summary>
    public Tensor Var(int[]? dims = null, bool keepDim = false, int correction = 1)
    {
        RequireFloat("Var");
        long n = CountOver("Var", dims);
        using var mean = Mean(dims, keepDim: true);
        using var centered = this - mean;
        using var sq = centered.Square();
        using var ss = sq.Sum(dims, keepDim);
        return ss * (1.0 / Math.Max(0, n - correction));
    }
    /// <summary>Variance along one dim.</summary>
    public Tensor Var(int dim, bool keepDim = false, int correction = 1) => Var([dim], keepDim, correction);

    private Tensor ArgReduce(ReduceOp op, string name, int? dim, bool keepDim)
    {
        if (DType == DType.Bool)
        {
            using var asInt = To(DType.Int64);
            return asInt.ArgReduce(op, name, dim, keepDim);
        }
        if (dim is null)
        {
            using var flat = Reshape(-1);
            return flat.ArgReduce(op, name, 0, false);
        }
        int d = AttnCore.Shape.NormalizeAxis(name, dim.Value, Rank);
        if (Rank == 0) return Zeros([], DType.Int64, Device);
        RequireNonEmptyReduction(name, [d]);
        var order = Enumerable.Range(0, Rank).Where(i => i != d).Append(d).ToArray();
        using var moved = Permute(order);
        var kept = moved.Layout.Shape[..^1];
        var dst = Empty(kept, DType.Int64, Device);
        if (dst.Numel > 0) Backend.ArgReduce(op, Storage, moved.Layout, dst.Storage);
        if (!keepDim) return dst;
        using (dst) return dst.Unsqueeze(d);
    }

    /// <summary>Index (int64) of the largest element along <paramref name="dim"/>, or of the flattened tensor when null; first wins ties, NaN counts as largest.</summary>
    public Tensor ArgMax(int? dim = null, bool keepDim = false) => ArgReduce(ReduceOp.Max, "ArgMax", dim, keepDim);
    /// <summary>Index (int64) of the smallest element along <paramref name="dim"/>, or of the flattened tensor when null.</summary>
    public Tensor ArgMin(int? dim = null, bool keepDim = false) => ArgReduce(ReduceOp.Min, "ArgMin", dim, keepDim);
}

// Selections along one dim that return values and their indices (torch.max(x, dim), torch.topk). The backend
// only finds the indices; the values are a Gather of them, so the gradient flows to the selected elements
// through Gather's rule (which saves nothing but the indices).
public sealed partial class Tensor
{
    private (Tensor Values, Tensor Indices) SelectAlong(int dim, Tensor indicesKeepDim, bool keepDim)
    {
        var values = Gather(dim, indicesKeepDim);
        if (keepDim) return (values, indicesKeepDim);
        using (values)
        using (indicesKeepDim)
            return (values.Squeeze(dim), indicesKeepDim.Squeeze(dim).Contiguous());
    }

    // A 0-d tensor is its own extremum at index 0 (as PyTorch).
    private (Tensor Values, Tensor Indices) ScalarSelection() => (ViewOf(Layout).Record(OpKind.Copy, [this]), Zeros([], DType.Int64, Device));

    /// <summary>
    /// The largest element along <paramref name="dim"/> and its index (int64), as torch.max(x, dim). The first
    /// occurrence wins ties and NaN counts as the largest (as <see cref="ArgMax"/>); the gradient flows to the
    /// selected element only. Raises when the dim has size 0. (<see cref="Max(int, bool)"/> is torch.amax: values
    /// only, its gradient shared by tied elements.)
    /// </summary>
    public (Tensor Values, Tensor Indices) MaxWithIndices(int dim, bool keepDim = false)
    {
        int d = AttnCore.Shape.NormalizeAxis("MaxWithIndices", dim, Rank);
        if (Rank == 0) return ScalarSelection();
        return SelectAlong(d, ArgReduce(ReduceOp.Max, "MaxWithIndices", d, keepDim: true), keepDim);
    }

    /// <summary>The smallest element along <paramref name="dim"/> and its index (int64), as torch.min(x, dim); see <see cref="MaxWithIndices"/>.</summary>
    public (Tensor Values, Tensor Indices) MinWithIndices(int dim, bool keepDim = false)
    {
        int d = AttnCore.Shape.NormalizeAxis("MinWithIndices", dim, Rank);
        if (Rank == 0) return ScalarSelection();
        return SelectAlong(d, ArgReduce(ReduceOp.Min, "MinWithIndices", d, keepDim: true), keepDim);
    }

    /// <summary>
    /// The <paramref name="k"/> largest (or, with <paramref name="largest"/> false, smallest) elements along
    /// <paramref name="dim"/> and their indices (int64), as torch.topk. The result is always sorted (largest first,
    /// or smallest first), whatever <paramref name="sorted"/> says (PyTorch leaves the order unspecified then); tied
    /// values come in index order and NaN counts as larger than every number. The gradient flows to the selected
    /// elements. Throws <see cref="ArgumentOutOfRangeException"/> when k is outside [0, size of dim].
    /// </summary>
    public (Tensor Values, Tensor Indices) TopK(int k, int dim = -1, bool largest = true, bool sorted = true)
    {
        _ = sorted;
        int d = AttnCore.Shape.NormalizeAxis("TopK", dim, Rank);
        int size = Rank == 0 ? 1 : Layout.Shape[d];
        if (k < 0 || k > size || (Rank == 0 && k != 1))
            throw new ArgumentOutOfRangeException(nameof(k), $"TopK: k = {k} is out of range for dim {d} of size {size} (shape {Describe()}); expected 0 <= k <= {size}{(Rank == 0 ? " (1 for a 0-d tensor)" : "")}");
        if (Rank == 0) return ScalarSelection();
        var order = Enumerable.Range(0, Rank).Where(i => i != d).Append(d).ToArray();
        var inverse = new int[Rank];
        for (int i = 0; i < Rank; i++) inverse[order[i]] = i;
        using var moved = Permute(order);
        using var keys = DType == DType.Bool ? moved.To(DType.Int64) : moved.ViewOf(moved.Layout);
        var shape = moved.Shape;
        shape[^1] = k;
        using var found = Empty(shape, DType.Int64, Device, "TopK");
        if (found.Numel > 0) Backend.TopK(keys.Storage, keys.Layout, k, largest, found.Storage);
        using var back = found.Permute(inverse);
        return SelectAlong(d, back.Contiguous(), keepDim: true);
    }
}
