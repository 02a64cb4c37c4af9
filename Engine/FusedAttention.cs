using AttnCore.Kernels;
using AttnCore.Kernels.Cpu;

namespace AttnCore;

/// <summary>
/// Scaled dot-product attention through the fused FlashAttention-style kernels: the forward pass keeps only O
/// and the log-sum-exp and is recorded as <see cref="OpKind.Attention"/> (or <see cref="OpKind.PackedAttention"/>);
/// the backward ops recompute the probabilities tile by tile, and Autograd's rule table calls them. q, k, v
/// may be views whose last dim is contiguous (heads split out of a fused [B, L, 3, H, D] projection) and reach
/// the kernel without a copy; the mask is an additive [B, H, Lq, Lk] view whose broadcast dims have stride 0.
/// </summary>
internal static class FusedAttention
{
    private static Tensor LastDimContiguous(Tensor t)
    {
        if (t.Layout.Strides[^1] == 1 || t.Layout.Shape[^1] == 1) return t.Detach();
        using var c = t.Contiguous();
        return c.Detach();
    }

    private static AttentionOperand Operand(Tensor t)
    {
        var st = t.Layout.Strides;
        return new AttentionOperand(t.Layout.Offset, st[0], st[1], t.Layout.Shape[2] == 1 ? t.Layout.Shape[3] : st[2]);
    }

    // A [B, H, Lq, Lk] mask view as the kernels read it (strides of size-1 dims are irrelevant: index 0 only).
    internal static AttentionMaskOperand MaskOperand(Tensor? mask)
    {
        if (mask is null) return default;
        var st = mask.Layout.Strides;
        long S(int d) => mask.Layout.Shape[d] == 1 ? 0 : st[d];
        return new AttentionMaskOperand(mask.Layout.Offset, S(0), S(1), S(2), S(3));
    }

    private static ulong Seed(double dropout, Generator? generator) => dropout > 0 ? (generator ?? Generator.Default).NextUInt64() : 0;

    /// <summary>O for q [B, H, Lq, D], k and v [B, Hkv, Lk, D], mask null or the kernel mask of <see cref="Tensor"/>'s attention ops.</summary>
    public static Tensor Apply(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, double dropout, Generator? generator, double scale)
    {
        int b = q.Size(0), h = q.Size(1), lq = q.Size(2), lk = k.Size(2), d = q.Size(3);
        var shape = new AttentionShape(b, h, lq, lk, d, scale, causal, (float)dropout, Seed(dropout, generator), k.Size(1));
        using var qd = LastDimContiguous(q);
        using var kd = LastDimContiguous(k);
        using var vd = LastDimContiguous(v);
        var o = Tensor.Empty([b, h, lq, d], q.DType, q.Device);
        using var lse = Tensor.Empty([b, h, lq], q.DType, q.Device);
        if (o.Numel > 0)
            q.Backend.AttentionForward(shape, qd.Storage, Operand(qd), kd.Storage, Operand(kd), vd.Storage, Operand(vd), o.Storage, Operand(o), lse.Storage, mask?.Storage, MaskOperand(mask));
        if (mask is not null && mask.RequiresGrad) // a learned score bias: a fourth input with its own gradient
            return o.Record(OpKind.AttentionBias, [q, k, v, mask], [qd, kd, vd, o, lse, mask], ints: shape.ToInts());
        return o.Record(OpKind.Attention, [q, k, v], mask is null ? [qd, kd, vd, o, lse] : [qd, kd, vd, o, lse, mask], ints: shape.ToInts());
    }

    /// <summary>dQ, dK, dV (fresh tensors of the shapes of q, k, v) from the output gradient and what <see cref="Apply"/> saved.</summary>
    public static (Tensor Dq, Tensor Dk, Tensor Dv) Backward(Tensor gradOutput, Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse, Tensor? mask, in AttentionShape shape)
    {
        using var g = LastDimContiguous(gradOutput);
        using var qd = LastDimContiguous(q);
        using var kd = LastDimContiguous(k);
        using var vd = LastDimContiguous(v);
        using var od = LastDimContiguous(o);
        var dq = Tensor.Empty(q.Shape, q.DType, q.Device);
        var dk = Tensor.Empty(k.Shape, k.DType, k.Device);
        var dv = Tensor.Empty(v.Shape, v.DType, v.Device);
        if (o.Numel > 0)
            q.Backend.AttentionBackward(shape, qd.Storage, Operand(qd), kd.Storage, Operand(kd), vd.Storage, Operand(vd), od.Storage, Operand(od), g.Storage, Operand(g),
                lse.Storage, mask?.Storage, MaskOperand(mask), dq.Storage, Operand(dq), dk.Storage, Operand(dk), dv.Storage, Operand(dv));
        else { dk.Fill_(0); dv.Fill_(0); }
        return (dq, dk, dv);
    }

    /// <summary>
    /// Self-attention straight from a fused projection qkv [B, T, (H + 2·Hkv)·Dh] (q, k, v side by side in the last
    /// dim) to the merged output [B, T, H·Dh]: the kernel reads the heads as strided views of qkv and writes each
    /// head's output into its slot of [B, T, H·Dh], and the backward pass writes dq, dk, dv into one gradient of
    /// qkv's shape. No head split, merge or zero-filled slice gradients are materialised.
    /// </summary>
    public static Tensor ApplyPacked(Tensor qkv, int heads, int kvHeads, Tensor? mask, bool causal, double dropout, Generator? generator)
    {
        int b = qkv.Size(0), t = qkv.Size(1), dh = qkv.Size(2) / (heads + 2 * kvHeads);
        var shape = new AttentionShape(b, heads, t, t, dh, 1.0 / Math.Sqrt(dh), causal, (float)dropout, Seed(dropout, generator), kvHeads);
        using var x = LastDimContiguous(qkv);
        var o = Tensor.Empty([b, t, heads * dh], qkv.DType, qkv.Device);
        using var lse = Tensor.Empty([b, heads, t], qkv.DType, qkv.Device);
        if (o.Numel > 0)
        {
            var (q, k, v) = PackedOperands(x, shape);
            qkv.Backend.AttentionForward(shape, x.Storage, q, x.Storage, k, x.Storage, v, o.Storage, Merged(o, dh), lse.Storage, mask?.Storage, MaskOperand(mask));
        }
        return o.Record(OpKind.PackedAttention, [qkv], mask is null ? [x, o, lse] : [x, o, lse, mask], ints: shape.ToInts());
    }

    /// <summary>The gradient of qkv (fresh, qkv's shape) from the output gradient and what <see cref="ApplyPacked"/> saved.</summary>
    public static Tensor BackwardPacked(Tensor gradOutput, Tensor qkv, Tensor o, Tensor lse, Tensor? mask, in AttentionShape shape)
    {
        using var g = LastDimContiguous(gradOutput);
        using var x = LastDimContiguous(qkv);
        using var od = LastDimContiguous(o);
        var dqkv = Tensor.Empty(qkv.Shape, qkv.DType, qkv.Device);
        if (od.Numel > 0)
        {
            var (q, k, v) = PackedOperands(x, shape);
            var (dq, dk, dv) = PackedOperands(dqkv, shape);
            x.Backend.AttentionBackward(shape, x.Storage, q, x.Storage, k, x.Storage, v, od.Storage, Merged(od, shape.Dim), g.Storage, Merged(g, shape.Dim),
                lse.Storage, mask?.Storage, MaskOperand(mask), dqkv.Storage, dq, dqkv.Storage, dk, dqkv.Storage, dv);
        }
        else dqkv.Fill_(0);
        return dqkv;
    }

    /// <summary>
    /// <see cref="Tensor.CachedSelfAttention"/> after its checks: stores the new keys and values, then runs the forward
    /// kernel with q read from qkv and k, v from the caches' first cached + T positions; the causal shift
    /// (Lk - Lq = cached) lets query i see keys up to cached + i.
    /// </summary>
    public static Tensor ApplyCached(Tensor qkv, int heads, int kvHeads, Tensor keyCache, Tensor valueCache, int cached)
    {
        int b = qkv.Size(0), t = qkv.Size(1), dh = qkv.Size(2) / (heads + 2 * kvHeads);
        var shape = new AttentionShape(b, heads, t, cached + t, dh, 1.0 / Math.Sqrt(dh), Causal: true, KvHeads: kvHeads);
        using var x = LastDimContiguous(qkv);
        var o = Tensor.Empty([b, t, heads * dh], qkv.DType, qkv.Device);
        if (o.Numel == 0) return o;
        StoreKeyValues(x, heads, kvHeads, keyCache, valueCache, cached);
        using var lse = Tensor.Empty([b, heads, t], qkv.DType, qkv.Device);
        var (q, _, _) = PackedOperands(x, shape);
        qkv.Backend.AttentionForward(shape, x.Storage, q, keyCache.Storage, Operand(keyCache), valueCache.Storage, Operand(valueCache), o.Storage, Merged(o, dh), lse.Storage, null, default);
        return o;
    }

    /// <summary>Copies the T key and value rows of qkv [B, T, (H + 2·Hkv)·Dh] into the caches [B, Hkv, Max, Dh] at positions [cached, cached + T).</summary>
    public static void StoreKeyValues(Tensor qkv, int heads, int kvHeads, Tensor keyCache, Tensor valueCache, int cached)
    {
        int b = qkv.Size(0), t = qkv.Size(1), dh = qkv.Size(2) / (heads + 2 * kvHeads);
        if ((long)b * t * dh == 0) return;
        var st = qkv.Layout.Strides;
        int[] rows = [b, kvHeads, t, dh];
        void Store(long column, Tensor cache)
        {
            var cs = cache.Layout.Strides;
            qkv.Backend.Copy(qkv.Storage, new Layout(rows, [st[0], dh * st[2], st[1], st[2]], qkv.Layout.Offset + column),
                cache.Storage, new Layout(rows, [cs[0], cs[1], cs[2], cs[3]], cache.Layout.Offset + cached * cs[2]));
        }
        Store((long)heads * dh * st[2], keyCache);
        Store((long)(heads + kvHeads) * dh * st[2], valueCache);
    }

    // Heads of q, k, v as strided views of [B, T, (H + 2·Hkv)·Dh]: query head h starts at column h·Dh, key head
    // hk at H·Dh + hk·Dh, value head hk at (H + Hkv)·Dh + hk·Dh.
    private static (AttentionOperand Q, AttentionOperand K, AttentionOperand V) PackedOperands(Tensor qkv, in AttentionShape s)
    {
        var st = qkv.Layout.Strides;
        long off = qkv.Layout.Offset, dh = s.Dim;
        return (new(off, st[0], dh, st[1]), new(off + s.Heads * dh, st[0], dh, st[1]), new(off + (s.Heads + s.KeyValueHeads) * dh, st[0], dh, st[1]));
    }

    // [B, T, H·Dh] read or written as [B, H, T, Dh].
    private static AttentionOperand Merged(Tensor t, int dh) => new(t.Layout.Offset, t.Layout.Strides[0], dh, t.Layout.Strides[1]);
}
