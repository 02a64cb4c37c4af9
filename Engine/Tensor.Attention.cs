namespace AttnCore;

// Scaled dot-product attention, the op every attention layer calls.
public sealed partial class Tensor
{
    /// <summary>
    /// softmax(q kᵀ · scale + masks) v for q [B, H, Tq, D], k and v [B, H, Tk, D] (as
    /// torch.nn.functional.scaled_dot_product_attention). <paramref name="causal"/> hides key j from query i
    /// when j &gt; i + (Tk - Tq) (bottom-right aligned, so a query appended after a key/value cache sees the
    /// whole cache); <paramref name="keyPaddingMask"/> [B, Tk] hides keys where it is non-zero. Scale defaults
    /// to 1/sqrt(D). A query that sees no key at all gets a zero output.
    /// </summary>
    public static Tensor ScaledDotProductAttention(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask = null, bool causal = false,
        double dropout = 0, Generator? generator = null, double? scale = null)
    {
        CheckAttention(q, k, v, keyPaddingMask);
        if (dropout is < 0 or >= 1) throw new ArgumentException($"Attention: dropout must be in [0, 1), got {dropout}");
        if (q.Size(3) <= FusedMaxDim(q.Device))
            return FusedAttention.Apply(q, k, v, keyPaddingMask, causal, dropout, generator, scale ?? 1.0 / Math.Sqrt(q.Size(3)));
        return AttentionCore(q, k, v, keyPaddingMask, causal, dropout, generator, scale, needWeights: false).Output;
    }

    // The largest head dimension the device's fused kernel takes (0: the device has none; heads above the
    // limit take the composite matmul-softmax-matmul path, as AttentionWithWeights always does).
    private static int FusedMaxDim(Device device) => device.Kind switch
    {
        DeviceKind.Cpu => Kernels.Cpu.Attention.MaxDim,
        DeviceKind.IlgpuCpu or DeviceKind.Cuda or DeviceKind.OpenCL => Kernels.Gpu.Attention.MaxDim,
        _ => 0,
    };

    internal static void CheckAttentionArgs(Tensor q, Tensor k, Tensor v, Tensor? pad) => CheckAttention(q, k, v, pad);

    /// <summary>
    /// Multi-head self-attention from a fused projection <paramref name="qkv"/> [B, T, 3·D] (q, k, v side by side)
    /// to the merged heads [B, T, D], without splitting or merging heads in memory (the fused kernel reads and
    /// writes strided head views). <paramref name="keyPaddingMask"/> is [B, T] with non-zero = hidden.
    /// </summary>
    public static Tensor PackedSelfAttention(Tensor qkv, int heads, Tensor? keyPaddingMask = null, bool causal = false, double dropout = 0, Generator? generator = null)
    {
        qkv.RequireFloat("PackedSelfAttention");
        if (qkv.Rank != 3 || heads <= 0 || qkv.Size(2) % (3 * heads) != 0)
            throw new ArgumentException($"PackedSelfAttention: qkv must be [B, T, 3·D] with D divisible by {heads} heads, got {qkv.Describe()}");
        int b = qkv.Size(0), t = qkv.Size(1), d = qkv.Size(2) / 3;
        if (keyPaddingMask is not null && (keyPaddingMask.Rank != 2 || keyPaddingMask.Size(0) != b || keyPaddingMask.Size(1) != t))
            throw new ArgumentException($"PackedSelfAttention: key padding mask must be [{b},{t}], got {keyPaddingMask.Describe()}");
        if (keyPaddingMask is not null) SameDevice("PackedSelfAttention", qkv, keyPaddingMask);
        if (dropout is < 0 or >= 1) throw new ArgumentException($"PackedSelfAttention: dropout must be in [0, 1), got {dropout}");
        if (d / heads <= FusedMaxDim(qkv.Device))
            return FusedAttention.ApplyPacked(qkv, heads, keyPaddingMask, causal, dropout, generator);
        // Heads too large for the fused kernel: split the heads as views, attend, merge.
        using var scope = new TensorScope();
        var parts = qkv.Reshape(b, t, 3, heads, d / heads).Permute(2, 0, 3, 1, 4);
        var o = ScaledDotProductAttention(parts.Select(0, 0), parts.Select(0, 1), parts.Select(0, 2), keyPaddingMask, causal, dropout, generator);
        return scope.Keep(o.Transpose(1, 2).Reshape(b, t, d));
    }

    /// <summary>As <see cref="ScaledDotProductAttention"/>, also returning the attention weights [B, H, Tq, Tk] (materialises them).</summary>
    public static (Tensor Output, Tensor Weights) AttentionWithWeights(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask = null, bool causal = false,
        double dropout = 0, Generator? generator = null, double? scale = null)
    {
        var (o, w) = AttentionCore(q, k, v, keyPaddingMask, causal, dropout, generator, scale, needWeights: true);
        return (o, w!);
    }

    private static void CheckAttention(Tensor q, Tensor k, Tensor v, Tensor? pad)
    {
        SameDevice("Attention", q, k); SameDevice("Attention", q, v); SameDType("Attention", q, k); SameDType("Attention", q, v);
        q.RequireFloat("Attention");
        if (q.Rank != 4 || k.Rank != 4 || v.Rank != 4)
            throw new ArgumentException($"Attention: q, k, v must be [B, H, T, D], got {q.Describe()}, {k.Describe()}, {v.Describe()}");
        if (k.Size(0) != q.Size(0) || k.Size(1) != q.Size(1) || k.Size(3) != q.Size(3) || !k.Layout.Shape.AsSpan().SequenceEqual(v.Layout.Shape))
            throw new ArgumentException($"Attention: shapes do not agree: q {q.Describe()}, k {k.Describe()}, v {v.Describe()} (k and v must match, and share B, H, D with q)");
        if (pad is not null) SameDevice("Attention", q, pad);
        if (pad is not null && (pad.Rank != 2 || pad.Size(0) != q.Size(0) || pad.Size(1) != k.Size(2)))
            throw new ArgumentException($"Attention: key padding mask must be [B, Tk] = [{q.Size(0)},{k.Size(2)}], got {pad.Describe()}");
    }

    private static (Tensor Output, Tensor? Weights) AttentionCore(Tensor q, Tensor k, Tensor v, Tensor? pad, bool causal, double dropout, Generator? generator, double? scale, bool needWeights)
    {
        CheckAttention(q, k, v, pad);
        if (dropout is < 0 or >= 1) throw new ArgumentException($"Attention: dropout must be in [0, 1), got {dropout}");
        int tq = q.Size(2), tk = k.Size(2);
        double sc = scale ?? 1.0 / Math.Sqrt(q.Size(3));
        using var scope = new TensorScope();
        var kt = k.Transpose(-1, -2);
        var s = q.MatMul(kt) * sc;
        Tensor? hidden = null;
        if (causal)
        {
            using var ones = Ones([tq, tk], q.DType, q.Device);
            hidden = ones.Triu(tk - tq + 1);
        }
        if (pad is not null)
        {
            var p = pad.To(q.DType).View(pad.Size(0), 1, 1, tk);
            hidden = hidden is null ? p : hidden.Maximum(p);
        }
        if (hidden is not null) s = s.MaskedFill(hidden, double.NegativeInfinity);
        var w = s.Softmax(-1);
        if (hidden is not null)
        {
            // Rows with every key hidden are all-NaN after softmax: give them zero weight (zero output).
            var nan = w.Ne(w);
            w = w.MaskedFill(nan, 0);
        }
        var wd = w;
        if (dropout > 0)
        {
            var u = Rand(w.Shape, generator ?? Generator.Default, w.DType, w.Device);
            wd = w * (u.Ge(dropout).To(w.DType) * (1.0 / (1 - dropout)));
        }
        var o = wd.MatMul(v);
        scope.Keep(o);
        if (needWeights) scope.Keep(w);
        return (o, needWeights ? w : null);
    }
}
