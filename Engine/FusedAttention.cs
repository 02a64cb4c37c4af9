using AttnCore.Kernels.Cpu;

namespace AttnCore;

/// <summary>
/// Scaled dot-product attention through the fused FlashAttention-style kernels: the forward pass keeps
/// only O and the log-sum-exp, and this op's <see cref="Backward"/> recomputes the probabilities tile by
/// tile. Recorded as a custom autograd op; q, k, v may be views whose last dim is contiguous
/// (e.g. heads split out of a fused [B, L, 3, H, D] projection) and reach the kernel without a copy.
/// </summary>
internal sealed class FusedAttention : ICustomOp
{
    private readonly AttentionShape _shape;
    private readonly bool _pad;

    private FusedAttention(AttentionShape shape, bool pad) { _shape = shape; _pad = pad; }

    public string Name => "ScaledDotProductAttention";

    private static Tensor LastDimContiguous(Tensor t)
    {
        if (t.Layout.Strides[^1] == 1 || t.Layout.Shape[^1] == 1) return t.Detach();
        using var c = t.Contiguous();
        return c.Detach();
    }

    // The padding mask as the kernels take it: float32, dense [B, Lk] from element 0, on the mask's device
    // (no host round trip). Null when there is none.
    private static Tensor? DenseMask(Tensor? pad)
    {
        if (pad is null) return null;
        using var detached = pad.Detach();
        using var f = detached.To(DType.Float32);
        return f.Dense();
    }

    private static AttentionOperand Operand(Tensor t)
    {
        var st = t.Layout.Strides;
        return new AttentionOperand(t.Layout.Offset, st[0], st[1], t.Layout.Shape[2] == 1 ? t.Layout.Shape[3] : st[2]);
    }

    public static Tensor Apply(Tensor q, Tensor k, Tensor v, Tensor? pad, bool causal, double dropout, Generator? generator, double scale)
    {
        int b = q.Size(0), h = q.Size(1), lq = q.Size(2), lk = k.Size(2), d = q.Size(3);
        ulong seed = dropout > 0 ? (generator ?? Generator.Default).NextUInt64() : 0;
        var shape = new AttentionShape(b, h, lq, lk, d, (float)scale, causal, (float)dropout, seed);
        using var mask = DenseMask(pad);
        using var qd = LastDimContiguous(q);
        using var kd = LastDimContiguous(k);
        using var vd = LastDimContiguous(v);
        var o = Tensor.Empty([b, h, lq, d], q.DType, q.Device);
        using var lse = Tensor.Empty([b, h, lq], q.DType, q.Device);
        if (o.Numel > 0)
            q.Backend.AttentionForward(shape, qd.Storage, Operand(qd), kd.Storage, Operand(kd), vd.Storage, Operand(vd), o.Storage, Operand(o), lse.Storage, mask?.Storage);
        return o.RecordCustom(new FusedAttention(shape, mask is not null), [q, k, v], mask is null ? [qd, kd, vd, o, lse] : [qd, kd, vd, o, lse, mask]);
    }

    public Tensor?[] Backward(GradNode node, Tensor gradOutput)
    {
        var (q, k, v, o, lse) = (node.Saved[0], node.Saved[1], node.Saved[2], node.Saved[3], node.Saved[4]);
        using var g = LastDimContiguous(gradOutput);
        var dq = Tensor.Empty(q.Shape, q.DType, q.Device);
        var dk = Tensor.Empty(k.Shape, k.DType, k.Device);
        var dv = Tensor.Empty(v.Shape, v.DType, v.Device);
        if (o.Numel > 0)
            q.Backend.AttentionBackward(_shape, q.Storage, Operand(q), k.Storage, Operand(k), v.Storage, Operand(v), o.Storage, Operand(o), g.Storage, Operand(g),
                lse.Storage, _pad ? node.Saved[5].Storage : null, dq.Storage, Operand(dq), dk.Storage, Operand(dk), dv.Storage, Operand(dv));
        else { dk.Fill_(0); dv.Fill_(0); }
        return [dq, dk, dv];
    }

    /// <summary>
    /// Self-attention straight from a fused projection qkv [B, T, 3·D] (q, k, v side by side in the last dim)
    /// to the merged output [B, T, D]: the kernel reads the heads as strided views of qkv and writes each head's
    /// output into its slot of [B, T, H·Dh], and the backward pass writes dq, dk, dv into one [B, T, 3·D]
    /// gradient. No head split, merge or zero-filled slice gradients are materialised.
    /// </summary>
    public static Tensor ApplyPacked(Tensor qkv, int heads, Tensor? pad, bool causal, double dropout, Generator? generator)
    {
        int b = qkv.Size(0), t = qkv.Size(1), d = qkv.Size(2) / 3, dh = d / heads;
        ulong seed = dropout > 0 ? (generator ?? Generator.Default).NextUInt64() : 0;
        var shape = new AttentionShape(b, heads, t, t, dh, (float)(1.0 / Math.Sqrt(dh)), causal, (float)dropout, seed);
        using var mask = DenseMask(pad);
        using var x = LastDimContiguous(qkv);
        var o = Tensor.Empty([b, t, d], qkv.DType, qkv.Device);
        using var lse = Tensor.Empty([b, heads, t], qkv.DType, qkv.Device);
        if (o.Numel > 0)
        {
            var (q, k, v) = PackedOperands(x, d, dh);
            qkv.Backend.AttentionForward(shape, x.Storage, q, x.Storage, k, x.Storage, v, o.Storage, Merged(o, dh), lse.Storage, mask?.Storage);
        }
        return o.RecordCustom(new PackedAttention(shape, mask is not null, d), [qkv], mask is null ? [x, o, lse] : [x, o, lse, mask]);
    }

    // Heads of q, k, v as strided views of [B, T, 3D]: head h of q starts at column h·Dh, of k at D + h·Dh ...
    private static (AttentionOperand Q, AttentionOperand K, AttentionOperand V) PackedOperands(Tensor qkv, int d, int dh)
    {
        var st = qkv.Layout.Strides;
        long off = qkv.Layout.Offset;
        return (new(off, st[0], dh, st[1]), new(off + d, st[0], dh, st[1]), new(off + 2 * d, st[0], dh, st[1]));
    }

    // [B, T, H·Dh] read or written as [B, H, T, Dh].
    private static AttentionOperand Merged(Tensor t, int dh) => new(t.Layout.Offset, t.Layout.Strides[0], dh, t.Layout.Strides[1]);

    private sealed class PackedAttention(AttentionShape shape, bool pad, int d) : ICustomOp
    {
        public string Name => "PackedSelfAttention";

        public Tensor?[] Backward(GradNode node, Tensor gradOutput)
        {
            var (x, o, lse) = (node.Saved[0], node.Saved[1], node.Saved[2]);
            using var g = LastDimContiguous(gradOutput);
            var dqkv = Tensor.Empty(x.Shape, x.DType, x.Device);
            if (o.Numel > 0)
            {
                var (q, k, v) = PackedOperands(x, d, shape.Dim);
                var (dq, dk, dv) = PackedOperands(dqkv, d, shape.Dim);
                x.Backend.AttentionBackward(shape, x.Storage, q, x.Storage, k, x.Storage, v, o.Storage, Merged(o, shape.Dim), g.Storage, Merged(g, shape.Dim),
                    lse.Storage, pad ? node.Saved[3].Storage : null, dqkv.Storage, dq, dqkv.Storage, dk, dqkv.Storage, dv);
            }
            return [dqkv];
        }
    }
}
