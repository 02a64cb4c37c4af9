using AttnCore.Kernels.Gpu;
using ILGPU;
using ILGPU.Runtime;

namespace AttnCore.Backends;

// Reductions on ILGPU devices: sums, means, extrema (thread or group per output), arg-reductions and top-k
// (the kernels: Kernels/Gpu/Reduce.cs, ElementwiseInt64.cs).
public sealed partial class IlgpuBackend
{
    /// <inheritdoc/>
    public void Reduce(ReduceOp op, Storage src, Layout layout, int keptRank, Storage dst)
    {
        string name = op.ToString();
        bool isLong = src.DType == DType.Int64 && dst.DType == DType.Int64;
        var (s, d) = isLong ? (S(src, name), S(dst, name)) : (Float(src, name), Float(dst, name));
        if (keptRank < 0 || keptRank > layout.Rank) throw new ArgumentException($"IlgpuBackend.{name}: keptRank {keptRank} is outside [0, {layout.Rank}]");
        CheckFits(name, "src", src, layout);
        var shape = layout.Shape.AsSpan();
        long outCount = Shape.Numel(shape[..keptRank]), count = Shape.Numel(shape[keptRank..]);
        CheckOutput(name, dst, outCount);
        if (outCount == 0) return;
        if (count == 0)
        {
            if (op != ReduceOp.Sum) throw new ArgumentException($"{op}: cannot reduce over a zero-size dimension (shape {Shape.Format(layout.Shape)})");
            var all = StridedIndex.Create([(int)outCount], [1L], 0);
            if (isLong) _k.FillLong.Value(Threads(name, outCount), d.Longs, all, 0L);
            else _k.Fill.Value(Threads(name, outCount), d.Floats, all, 0f);
            return;
        }
        var strides = layout.Strides.AsSpan();
        Pack(shape[..keptRank], strides[..keptRank], layout.Offset, out var kept);
        Pack(shape[keptRank..], strides[keptRank..], 0, out var reduced);
        // int64 reductions (counts, label sums) are small: one thread per output.
        if (isLong) _k.ReduceLong.Value(Threads(name, outCount), s.Longs, kept, reduced, count, d.Longs, (int)op);
        // A group per output pays off when each block is long enough to keep the group busy.
        else if (count >= 4 * _k.GroupSize)
            _k.ReduceGroups.Value(new KernelConfig(Threads(name, outCount), new Index1D(_k.GroupSize)), s.Floats, kept, reduced, count, d.Floats, (int)op);
        else
            _k.ReduceThreads.Value(Threads(name, outCount), s.Floats, kept, reduced, count, d.Floats, (int)op);
    }

    /// <inheritdoc/>
    public void ArgReduce(ReduceOp op, Storage src, Layout layout, Storage dst)
    {
        string name = "Arg" + op;
        var s = S(src, name);
        if (src.DType is not (DType.Float32 or DType.Int64)) throw WrongType(name, src.DType);
        var d = S(dst, name);
        if (dst.DType != DType.Int64) throw new ArgumentException($"IlgpuBackend.{name}: the output must be int64, got {dst.DType.Name()}");
        if (op == ReduceOp.Sum) throw new ArgumentException($"IlgpuBackend.ArgReduce: Sum has no index");
        CheckFits(name, "src", src, layout);
        var shape = layout.Shape.AsSpan();
        var strides = layout.Strides.AsSpan();
        // A scalar is a row of one element.
        int length = layout.Rank == 0 ? 1 : shape[^1];
        long stride = layout.Rank == 0 ? 0 : strides[^1];
        var outerShape = layout.Rank == 0 ? shape : shape[..^1];
        long outCount = Shape.Numel(outerShape);
        CheckOutput(name, dst, outCount);
        if (outCount == 0) return;
        if (length == 0) throw new ArgumentException($"{name}: cannot reduce over a zero-size dimension (shape {Shape.Format(layout.Shape)})");
        Pack(outerShape, layout.Rank == 0 ? strides : strides[..^1], layout.Offset, out var outer);
        if (src.DType == DType.Int64) _k.ArgReduceLong.Value(Threads(name, outCount), s.Longs, outer, length, stride, d.Longs, (int)op);
        else _k.ArgReduce.Value(Threads(name, outCount), s.Floats, outer, length, stride, d.Longs, (int)op);
    }

    /// <inheritdoc/>
    public void TopK(Storage src, Layout layout, int k, bool largest, Storage dst)
    {
        var (s, d) = (Float(src, "TopK"), S(dst, "TopK"));
        if (dst.DType != DType.Int64) throw new ArgumentException($"IlgpuBackend.TopK: the output must be int64, got {dst.DType.Name()}");
        if (layout.Rank == 0 || k <= 0 || k > layout.Shape[^1])
            throw new ArgumentOutOfRangeException(nameof(k), $"IlgpuBackend.TopK: k = {k} is outside [1, {(layout.Rank == 0 ? 0 : layout.Shape[^1])}] for a layout of shape {Shape.Format(layout.Shape)}");
        CheckFits("TopK", "src", src, layout);
        var outerShape = layout.Shape.AsSpan(0, layout.Rank - 1);
        long rows = Shape.Numel(outerShape);
        CheckOutput("TopK", dst, rows * k);
        if (rows == 0) return;
        Pack(outerShape, layout.Strides.AsSpan(0, layout.Rank - 1), layout.Offset, out var outer);
        _k.TopK.Value(Threads("TopK", rows), s.Floats, outer, layout.Shape[^1], layout.Strides[^1], k, largest ? 1 : 0, d.Longs);
    }
}
