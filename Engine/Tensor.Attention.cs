using AttnCore.Kernels;
using AttnCore.Kernels.Cpu;

namespace AttnCore;

// Scaled dot-product attention, the op every attention layer calls.
public sealed partial class Tensor
{
    /// <summary>
    /// softmax(q kᵀ · scale + mask) v for q [B, H, Tq, D], k and v [B, Hkv, Tk, D] (as
    /// torch.nn.functional.scaled_dot_product_attention). Hkv &lt; H is grouped-query attention (H divisible by
    /// Hkv; query head h attends with key/value head h / (H / Hkv), without copying K or V); Hkv = 1 is
    /// multi-query attention. <paramref name="causal"/> hides key j from query i when j &gt; i + (Tk - Tq)
    /// (bottom-right aligned, so a query appended after a key/value cache sees the whole cache);
    /// <paramref name="keyPaddingMask"/> [B, Tk] hides keys where it is non-zero; <paramref name="mask"/> is an
    /// additive float mask broadcastable to [B, H, Tq, Tk] (e.g. [Tq, Tk], [B, 1, Tq, Tk], [B, 1, 1, Tk]):
    /// 0 keeps a score, -inf hides it, other values bias it; it is read through broadcast strides, never
    /// expanded. A float mask that requires gradients is a learned score bias (BoTNet's relative position
    /// logits): it receives dS = P ∘ (dP - rowsum(dO ∘ O)), summed down to its own broadcast shape (not with
    /// dropout). Scale defaults to 1/sqrt(D). A query that sees no key at all (every
    /// score -inf) gets a zero output and passes zero gradient (FlashAttention's convention; PyTorch gives NaN).
    /// </summary>
    public static Tensor ScaledDotProductAttention(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask = null, bool causal = false,
        double dropout = 0, Generator? generator = null, double? scale = null, Tensor? mask = null)
    {
        CheckAttention(q, k, v, keyPaddingMask, mask, dropout);
        double sc = scale ?? 1.0 / Math.Sqrt(q.Size(3));
        if (q.Size(3) <= q.Backend.AttentionMaxDim)
        {
            using var kernelMask = KernelMask(q, mask, keyPaddingMask, q.Size(1), q.Size(2), k.Size(2));
            return FusedAttention.Apply(q, k, v, kernelMask, causal, dropout, generator, sc);
        }
        return AttentionCore(q, k, v, keyPaddingMask, mask, causal, dropout, generator, sc, needWeights: false).Output;
    }

    /// <summary>
    /// The backward pass of the fused <see cref="ScaledDotProductAttention"/> (what Autograd's rule for
    /// <see cref="OpKind.Attention"/> calls): gradients of q, k, v from the output gradient and what the forward
    /// pass saved: q, k, v, the output, the log-sum-exp [B, H, Tq], the additive mask as a [B, H, Tq, Tk] view
    /// (or null) and the shape with the dropout seed. Probabilities are recomputed tile by tile.
    /// </summary>
    public static (Tensor Dq, Tensor Dk, Tensor Dv) ScaledDotProductAttentionBackward(Tensor gradOutput, Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse, Tensor? mask, AttentionShape shape)
    {
        const string op = "ScaledDotProductAttentionBackward";
        SameDevice(op, gradOutput, q); SameDType(op, gradOutput, q);
        if (!gradOutput.Layout.Shape.AsSpan().SequenceEqual(output.Layout.Shape) || !output.Layout.Shape.AsSpan().SequenceEqual(q.Layout.Shape))
            throw new ArgumentException($"{op}: gradient {gradOutput.Describe()}, output {output.Describe()} and q {q.Describe()} must have one shape");
        if (mask is not null) SameDevice(op, q, mask);
        return FusedAttention.Backward(gradOutput, q, k, v, output, lse, mask, shape);
    }

    /// <summary>
    /// Multi-head self-attention from a fused projection <paramref name="qkv"/> [B, T, (H + 2·Hkv)·Dh] (q, k, v
    /// side by side; Hkv = <paramref name="kvHeads"/>, 0 meaning H: the usual [B, T, 3·D]) to the merged heads
    /// [B, T, H·Dh], without splitting or merging heads in memory (the fused kernel reads and writes strided head
    /// views). <paramref name="keyPaddingMask"/> is [B, T] with non-zero = hidden; <paramref name="mask"/> is an
    /// additive mask broadcastable to [B, H, T, T], as in <see cref="ScaledDotProductAttention"/>.
    /// </summary>
    public static Tensor PackedSelfAttention(Tensor qkv, int heads, Tensor? keyPaddingMask = null, bool causal = false, double dropout = 0, Generator? generator = null,
        Tensor? mask = null, int kvHeads = 0)
    {
        const string op = "PackedSelfAttention";
        qkv.RequireFloat(op);
        int hkv = kvHeads == 0 ? heads : kvHeads;
        if (qkv.Rank != 3 || heads <= 0 || hkv <= 0 || heads % hkv != 0 || qkv.Size(2) % (heads + 2 * hkv) != 0)
            throw new ArgumentException($"{op}: qkv must be [B, T, (H + 2·Hkv)·Dh] with H = {heads} a multiple of Hkv = {hkv}, got {qkv.Describe()}");
        int b = qkv.Size(0), t = qkv.Size(1), dh = qkv.Size(2) / (heads + 2 * hkv);
        if (keyPaddingMask is not null && (keyPaddingMask.Rank != 2 || keyPaddingMask.Size(0) != b || keyPaddingMask.Size(1) != t))
            throw new ArgumentException($"{op}: key padding mask must be [{b},{t}], got {keyPaddingMask.Describe()}");
        if (keyPaddingMask is not null) SameDevice(op, qkv, keyPaddingMask);
        CheckMask(op, qkv, mask, b, heads, t, t);
        if (IsLearnedBias(mask))
            throw new ArgumentException($"{op}: the mask {mask!.Describe()} requires gradients; a learned score bias goes through ScaledDotProductAttention");
        if (dropout is < 0 or >= 1) throw new ArgumentException($"{op}: dropout must be in [0, 1), got {dropout}");
        if (dh <= qkv.Backend.AttentionMaxDim)
        {
            using var kernelMask = KernelMask(qkv, mask, keyPaddingMask, heads, t, t);
            return FusedAttention.ApplyPacked(qkv, heads, hkv, kernelMask, causal, dropout, generator);
        }
        // Heads too large for the fused kernel: split the heads as views, attend, merge.
        using var scope = new TensorScope();
        Tensor Heads(int first, int count) => qkv.Narrow(2, first * dh, count * dh).Reshape(b, t, count, dh).Transpose(1, 2);
        var o = ScaledDotProductAttention(Heads(0, heads), Heads(heads, hkv), Heads(heads + hkv, hkv), keyPaddingMask, causal, dropout, generator, mask: mask);
        return scope.Keep(o.Transpose(1, 2).Reshape(b, t, heads * dh));
    }

    /// <summary>
    /// One inference step of causal self-attention with a key/value cache: the keys and values of the packed
    /// projection <paramref name="qkv"/> [B, T, (H + 2·Hkv)·Dh] (as in <see cref="PackedSelfAttention"/>) are written
    /// in place into <paramref name="keyCache"/> and <paramref name="valueCache"/> [B, Hkv, Max, Dh] at positions
    /// [<paramref name="cached"/>, cached + T), then query i attends to positions [0, cached + i]; returns the merged
    /// heads [B, T, H·Dh]. The heads are read as strided views of qkv and of the caches, so nothing is split,
    /// concatenated or copied besides the T new keys and values. Records nothing: it refuses a qkv that requires
    /// gradients while gradients are being recorded (training goes through <see cref="ScaledDotProductAttention"/>).
    /// </summary>
    public static Tensor CachedSelfAttention(Tensor qkv, int heads, Tensor keyCache, Tensor valueCache, int cached, int kvHeads = 0)
    {
        const string op = "CachedSelfAttention";
        qkv.RequireFloat(op);
        SameDevice(op, qkv, keyCache); SameDevice(op, qkv, valueCache); SameDType(op, qkv, keyCache); SameDType(op, qkv, valueCache);
        int hkv = kvHeads == 0 ? heads : kvHeads;
        if (qkv.Rank != 3 || heads <= 0 || hkv <= 0 || heads % hkv != 0 || qkv.Size(2) % (heads + 2 * hkv) != 0)
            throw new ArgumentException($"{op}: qkv must be [B, T, (H + 2·Hkv)·Dh] with H = {heads} a multiple of Hkv = {hkv}, got {qkv.Describe()}");
        int b = qkv.Size(0), t = qkv.Size(1), dh = qkv.Size(2) / (heads + 2 * hkv);
        foreach (var cache in new[] { keyCache, valueCache })
            if (cache.Rank != 4 || cache.Size(0) != b || cache.Size(1) != hkv || cache.Size(3) != dh || cache.Layout.Strides[3] != 1)
                throw new ArgumentException($"{op}: caches must be [B, Hkv, Max, Dh] = [{b}, {hkv}, Max, {dh}] with a contiguous last dim for qkv {qkv.Describe()}, got keys {keyCache.Describe()} and values {valueCache.Describe()}");
        if (!keyCache.Layout.Shape.AsSpan().SequenceEqual(valueCache.Layout.Shape))
            throw new ArgumentException($"{op}: key cache {keyCache.Describe()} and value cache {valueCache.Describe()} differ in shape");
        if (cached < 0 || (long)cached + t > keyCache.Size(2))
            throw new ArgumentOutOfRangeException(nameof(cached), cached, $"{op}: {cached} cached + {t} new positions must fit the cache capacity {keyCache.Size(2)} (qkv {qkv.Describe()})");
        if (GradMode.IsEnabled && qkv.RequiresGrad)
            throw new ArgumentException($"{op}: qkv {qkv.Describe()} requires gradients; the cached step is inference-only (open a NoGrad or InferenceMode scope)");
        if (dh <= qkv.Backend.AttentionMaxDim) return FusedAttention.ApplyCached(qkv, heads, hkv, keyCache, valueCache, cached);
        // Heads too large for the fused kernel: store the new keys and values, attend over views of the caches, merge.
        using var scope = new TensorScope();
        FusedAttention.StoreKeyValues(qkv, heads, hkv, keyCache, valueCache, cached);
        var q = qkv.Narrow(2, 0, heads * dh).Reshape(b, t, heads, dh).Transpose(1, 2);
        var o = ScaledDotProductAttention(q, keyCache.Narrow(2, 0, cached + t), valueCache.Narrow(2, 0, cached + t), causal: true);
        return scope.Keep(o.Transpose(1, 2).Reshape(b, t, heads * dh));
    }

    /// <summary>
    /// The backward pass of the fused <see cref="PackedSelfAttention"/> (Autograd's rule for
    /// <see cref="OpKind.PackedAttention"/>): the gradient of qkv from the output gradient, qkv, the output, the
    /// log-sum-exp, the additive mask view (or null) and the shape the forward pass saved.
    /// </summary>
    public static Tensor PackedSelfAttentionBackward(Tensor gradOutput, Tensor qkv, Tensor output, Tensor lse, Tensor? mask, AttentionShape shape)
    {
        const string op = "PackedSelfAttentionBackward";
        SameDevice(op, gradOutput, qkv); SameDType(op, gradOutput, qkv);
        if (!gradOutput.Layout.Shape.AsSpan().SequenceEqual(output.Layout.Shape))
            throw new ArgumentException($"{op}: gradient {gradOutput.Describe()} and output {output.Describe()} differ in shape");
        if (mask is not null) SameDevice(op, qkv, mask);
        return FusedAttention.BackwardPacked(gradOutput, qkv, output, lse, mask, shape);
    }

    /// <summary>As <see cref="ScaledDotProductAttention"/>, also returning the attention weights [B, H, Tq, Tk] (materialises them).</summary>
    public static (Tensor Output, Tensor Weights) AttentionWithWeights(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask = null, bool causal = false,
        double dropout = 0, Generator? generator = null, double? scale = null, Tensor? mask = null)
    {
        CheckAttention(q, k, v, keyPaddingMask, mask, dropout);
        var (o, w) = AttentionCore(q, k, v, keyPaddingMask, mask, causal, dropout, generator, scale ?? 1.0 / Math.Sqrt(q.Size(3)), needWeights: true);
        return (o, w!);
    }

    /// <summary>
    /// The additive form of an attention mask, in <paramref name="dtype"/>: the one place a mask's element type is
    /// interpreted. A float mask is additive already (0 keeps a score, -inf hides it). A boolean mask (true = takes
    /// part, as PyTorch's attn_mask) maps to 0 / -inf, as <c>Where(mask, 0, -inf)</c>, at the mask's own (broadcast) shape.
    /// </summary>
    public static Tensor AdditiveAttentionMask(Tensor mask, DType dtype)
    {
        using var detached = mask.Detach();
        return mask.DType switch
        {
            DType.Float32 or DType.Float64 => detached.To(dtype),
            // PyTorch's boolean attn_mask: true takes part, false is hidden (0 / -inf)
            DType.Bool => BoolMaskToAdditive(detached, dtype),
            _ => throw new ArgumentException($"Attention: the mask must be a bool mask (true takes part) or an additive float mask (0 keeps, -inf hides), got {mask.DType.Name()} {mask.Describe()}"),
        };
    }

    private static Tensor BoolMaskToAdditive(Tensor keep, DType dtype)
    {
        using var zero = Zeros([], dtype, keep.Device);
        using var hidden = Full([], double.NegativeInfinity, dtype, keep.Device);
        return Where(keep, zero, hidden);
    }

    // The mask the fused kernels read: the additive mask plus the key padding mask as 0 / -inf, in q's dtype, as a
    // [B, H, Tq, Tk] view whose broadcast dims have stride 0 (only a sum of both masks is materialised, at their
    // broadcast shape). Null when there is neither. A learned bias stays in the graph, so its gradient flows back
    // through the expand (summed to the bias's shape).
    private static Tensor? KernelMask(Tensor q, Tensor? mask, Tensor? keyPaddingMask, int heads, int tq, int tk)
    {
        if (mask is null && keyPaddingMask is null) return null;
        bool learned = IsLearnedBias(mask);
        using var noGrad = learned ? null : new NoGrad();
        using var scope = new TensorScope();
        var additive = mask is null ? null : learned ? mask.To(q.DType) : AdditiveAttentionMask(mask, q.DType);
        if (keyPaddingMask is not null)
        {
            var hidden = keyPaddingMask.Detach().Ne(0);
            var padding = Where(hidden, Full([], double.NegativeInfinity, q.DType, q.Device), Zeros([], q.DType, q.Device)).View(keyPaddingMask.Size(0), 1, 1, tk);
            additive = additive is null ? padding : additive + padding;
        }
        return scope.Keep(additive!.Expand(q.Size(0), heads, tq, tk));
    }

    private static void CheckMask(string op, Tensor q, Tensor? mask, int b, int h, int tq, int tk)
    {
        if (mask is null) return;
        SameDevice(op, q, mask);
        int[] target = [b, h, tq, tk];
        bool fits = mask.Rank <= 4;
        for (int i = 0; fits && i < mask.Rank; i++)
        {
            int size = mask.Size(i), want = target[4 - mask.Rank + i];
            fits = size == want || size == 1;
        }
        if (!fits) throw new ArgumentException($"{op}: mask {mask.Describe()} does not broadcast to [B, H, Tq, Tk] = {AttnCore.Shape.Format(target)}");
        if (mask.RequiresGrad && GradMode.IsEnabled && mask.DType == DType.Bool)
            throw new ArgumentException($"{op}: a boolean attention mask {mask.Describe()} cannot take a gradient; a learned bias must be a float mask");
    }

    // A float mask in the graph: an additive score bias whose gradient is wanted.
    private static bool IsLearnedBias(Tensor? mask) => mask is not null && mask.RequiresGrad && GradMode.IsEnabled && mask.DType.IsFloatingPoint();

    /// <summary>
    /// The gradient of the additive score bias of the fused <see cref="ScaledDotProductAttention"/> (Autograd's rule
    /// for <see cref="OpKind.AttentionBias"/>), at the full [B, H, Tq, Tk]: dS = P ∘ (dO Vᵀ - rowsum(dO ∘ O)), the
    /// softmax-backward output, with P = exp(scale·Q Kᵀ + bias - lse) recomputed from the saved log-sum-exp; causally
    /// hidden and fully hidden entries get 0. Built from MatMul, Exp and element-wise ops, so it runs on every backend.
    /// </summary>
    public static Tensor ScaledDotProductAttentionBiasBackward(Tensor gradOutput, Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse, Tensor mask, AttentionShape shape)
    {
        const string op = "ScaledDotProductAttentionBiasBackward";
        SameDevice(op, gradOutput, q); SameDType(op, gradOutput, q); SameDevice(op, q, mask);
        int[] scores = [shape.Batch, shape.Heads, shape.QueryLength, shape.KeyLength];
        if (!mask.Layout.Shape.AsSpan().SequenceEqual(scores) || !gradOutput.Layout.Shape.AsSpan().SequenceEqual(output.Layout.Shape))
            throw new ArgumentException($"{op}: mask {mask.Describe()} must be the [B, H, Tq, Tk] = {AttnCore.Shape.Format(scores)} kernel view and gradient {gradOutput.Describe()} the output's shape {output.Describe()}");
        if (shape.Dropout > 0) throw new ArgumentException($"{op}: a learned attention bias is not supported with dropout ({shape.Dropout})");
        using var noGrad = new NoGrad();
        using var scope = new TensorScope();
        int group = shape.GroupSize;
        Tensor Repeat(Tensor x) => group == 1 ? x : x.Unsqueeze(2).Expand(x.Size(0), x.Size(1), group, x.Size(2), x.Size(3)).Reshape(x.Size(0), shape.Heads, x.Size(2), x.Size(3));
        var s = q.MatMul(Repeat(k).Transpose(-1, -2)) * shape.Scale + mask;
        var p = (s - lse.Unsqueeze(-1)).Exp();
        if (shape.Causal)
        {
            using var ones = Ones([shape.QueryLength, shape.KeyLength], q.DType, q.Device);
            p = p.MaskedFill(ones.Triu(shape.CausalShift + 1), 0);
        }
        p = p.MaskedFill(p.Ne(p), 0); // rows with every key hidden (lse = -inf) pass zero gradient
        var dp = gradOutput.MatMul(Repeat(v).Transpose(-1, -2));
        var rowDot = (gradOutput * output).Sum(-1, keepDim: true);
        return scope.Keep(p * (dp - rowDot));
    }

    private static void CheckAttention(Tensor q, Tensor k, Tensor v, Tensor? pad, Tensor? mask, double dropout)
    {
        SameDevice("Attention", q, k); SameDevice("Attention", q, v); SameDType("Attention", q, k); SameDType("Attention", q, v);
        q.RequireFloat("Attention");
        if (q.Rank != 4 || k.Rank != 4 || v.Rank != 4)
            throw new ArgumentException($"Attention: q, k, v must be [B, H, T, D], got {q.Describe()}, {k.Describe()}, {v.Describe()}");
        if (k.Size(0) != q.Size(0) || k.Size(3) != q.Size(3) || !k.Layout.Shape.AsSpan().SequenceEqual(v.Layout.Shape))
            throw new ArgumentException($"Attention: shapes do not agree: q {q.Describe()}, k {k.Describe()}, v {v.Describe()} (k and v must match, and share B and D with q)");
        if (k.Size(1) == 0 ? q.Size(1) != 0 : q.Size(1) % k.Size(1) != 0)
            throw new ArgumentException($"Attention: q has {q.Size(1)} heads, not a multiple of the {k.Size(1)} key/value heads of k and v (grouped-query attention needs H % Hkv == 0): q {q.Describe()}, k {k.Describe()}");
        if (pad is not null) SameDevice("Attention", q, pad);
        if (pad is not null && (pad.Rank != 2 || pad.Size(0) != q.Size(0) || pad.Size(1) != k.Size(2)))
            throw new ArgumentException($"Attention: key padding mask must be [B, Tk] = [{q.Size(0)},{k.Size(2)}], got {pad.Describe()}");
        CheckMask("Attention", q, mask, q.Size(0), q.Size(1), q.Size(2), k.Size(2));
        if (dropout is < 0 or >= 1) throw new ArgumentException($"Attention: dropout must be in [0, 1), got {dropout}");
        if (dropout > 0 && IsLearnedBias(mask))
            throw new ArgumentException($"Attention: a learned score bias (mask {mask!.Describe()} requiring gradients) is not supported with dropout {dropout}");
    }

    // The composite matmul-softmax-matmul (materialises the weights): heads above the fused kernels' limit and
    // AttentionWithWeights. Grouped-query k and v are repeated per query head here (a copy; the fused path has none).
    private static (Tensor Output, Tensor? Weights) AttentionCore(Tensor q, Tensor k, Tensor v, Tensor? pad, Tensor? mask, bool causal, double dropout, Generator? generator, double sc, bool needWeights)
    {
        int tq = q.Size(2), tk = k.Size(2), heads = q.Size(1), kvHeads = k.Size(1);
        using var scope = new TensorScope();
        if (kvHeads != heads)
        {
            Tensor Repeat(Tensor x) => x.Unsqueeze(2).Expand(x.Size(0), kvHeads, heads / kvHeads, tk, x.Size(3)).Reshape(x.Size(0), heads, tk, x.Size(3));
            (k, v) = (Repeat(k), Repeat(v));
        }
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
        if (mask is not null)
        {
            var additive = IsLearnedBias(mask) ? mask.To(q.DType) : AdditiveAttentionMask(mask, q.DType);
            s = s + additive;
            // -inf entries join the hidden set, so a fully hidden row's NaN softmax gradient is cut below as for padding.
            var minusInf = additive.Eq(double.NegativeInfinity);
            hidden = hidden is null ? minusInf : hidden.Maximum(minusInf);
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
