using AttnCore.Models.Nn;

namespace AttnCore.Models.Vision;

/// <summary>
/// Multi-head self-attention over the H·W positions of a feature map with 2-d relative position logits
/// (Srinivas et al., "Bottleneck Transformers for Visual Recognition", CVPR 2021), usable in place of a 3x3
/// convolution. For x [N, C, H, W], n heads of d = C/n, positions p = (i_h, i_w), keys p' = (j_h, j_w):
/// <code>
///   [q; k; v]   = W_qkv x                                    a 1x1 convolution C -> 3C, no bias ("qkv")
///   r_{p,p'}    = R_h[j_h - i_h] + R_w[j_w - i_w]            learned relative embeddings, R_h, R_w ∈ R^{(2M-1) × d}
///   logit_{pp'} = q_p·k_{p'} / √d + q_p·r_{p,p'}             content-content plus content-position
///   y_p         = Σ_{p'} softmax_{p'}(logit_p) v_{p'}        heads concatenated back to C channels
/// </code>
/// The content-position term q·r is a [N, n, HW, HW] additive score bias computed with differentiable ops
/// (an embedding gather of R_h, R_w by relative offset and two batched products with q, as the paper's
/// rel_to_abs); the attention itself is the fused kernel (<see cref="Tensor.ScaledDotProductAttention"/>), which
/// returns the bias's gradient (OpKind.AttentionBias). R_h and R_w hold offsets -(M-1)..M-1, so any map up to
/// M x M (<see cref="MaxExtent"/>) is taken; they are drawn N(0, d^-½) as the reference implementations.
/// </summary>
public sealed class BotMhsa2d : Module<Tensor, Tensor>
{
    private readonly Conv2d _qkv;
    private Tensor? _last;
    private (int H, int W, Device Device, Tensor Rows, Tensor Cols)? _offsets;

    /// <summary>Self-attention over <paramref name="channels"/> channels in <paramref name="heads"/> heads, for maps up to <paramref name="maxExtent"/> on a side.</summary>
    public BotMhsa2d(int channels, int heads = 4, int maxExtent = 16, Generator? generator = null, Device? device = null)
    {
        if (channels <= 0 || heads <= 0 || channels % heads != 0 || maxExtent <= 0)
            throw new ArgumentException($"BotMhsa2d: channels {channels} must be a positive multiple of heads {heads}, max extent {maxExtent} positive");
        var g = generator ?? Generator.Default;
        Channels = channels; Heads = heads; MaxExtent = maxExtent;
        int d = channels / heads;
        _qkv = Child("qkv", new Conv2d(channels, 3 * channels, 1, bias: false, generator: g, device: device));
        RelHeight = Parameter("rel_height", Init.Normal([2 * maxExtent - 1, d], 1 / Math.Sqrt(d), g, device));
        RelWidth = Parameter("rel_width", Init.Normal([2 * maxExtent - 1, d], 1 / Math.Sqrt(d), g, device));
    }

    /// <summary>Channels in and out.</summary>
    public int Channels { get; }
    /// <summary>Attention heads.</summary>
    public int Heads { get; }
    /// <summary>Largest height and width taken (the relative tables cover offsets up to MaxExtent - 1).</summary>
    public int MaxExtent { get; }
    /// <summary>The 1x1 projection to q, k, v (weight [3C, C, 1, 1]).</summary>
    public Conv2d Qkv => _qkv;
    /// <summary>R_h [2M-1, d]: row M-1+δ embeds a vertical offset δ = j_h - i_h.</summary>
    public Tensor RelHeight { get; }
    /// <summary>R_w [2M-1, d]: row M-1+δ embeds a horizontal offset δ = j_w - i_w.</summary>
    public Tensor RelWidth { get; }
    /// <summary>When set, each forward pass keeps detached attention weights in <see cref="LastAttention"/>.</summary>
    public bool CaptureAttention { get; set; }
    /// <summary>The last attention weights [N, heads, H·W, H·W] (query position, key position), when <see cref="CaptureAttention"/> was set.</summary>
    public Tensor? LastAttention => _last;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x)
    {
        if (x.Rank != 4 || x.Size(1) != Channels) throw new ArgumentException($"BotMhsa2d: input must be [N, {Channels}, H, W], got {Shape.Format(x.Shape)}");
        int n = x.Size(0), h = x.Size(2), w = x.Size(3), d = Channels / Heads;
        if (h > MaxExtent || w > MaxExtent)
            throw new ArgumentException($"BotMhsa2d: a {h}x{w} map exceeds the relative position tables' {MaxExtent}x{MaxExtent} (input {Shape.Format(x.Shape)})");
        using var scope = new TensorScope();
        var qkv = _qkv.Forward(x).Reshape(n, 3, Heads, d, h * w);
        var q = qkv.Select(1, 0).Transpose(-1, -2); // [N, heads, HW, d]
        var k = qkv.Select(1, 1).Transpose(-1, -2);
        var v = qkv.Select(1, 2).Transpose(-1, -2);
        var bias = RelativeLogits(q, h, w);
        var o = Tensor.ScaledDotProductAttention(q, k, v, mask: bias);
        if (CaptureAttention) CaptureWeights(q, k, v, bias);
        return scope.Keep(o.Transpose(-1, -2).Reshape(n, Channels, h, w));
    }

    /// <summary>q·r for every query and key position: [N, heads, H·W, H·W] from q [N, heads, H·W, d] of an h x w map.</summary>
    public Tensor RelativeLogits(Tensor q, int h, int w)
    {
        int n = q.Size(0), d = q.Size(3);
        if (q.Rank != 4 || q.Size(1) != Heads || q.Size(2) != h * w || d != Channels / Heads || h > MaxExtent || w > MaxExtent)
            throw new ArgumentException($"BotMhsa2d.RelativeLogits: q must be [N, {Heads}, {h}·{w}, {Channels / Heads}] with h, w ≤ {MaxExtent}, got {Shape.Format(q.Shape)}");
        var (rows, cols) = Offsets(h, w, q.Device);
        using var scope = new TensorScope();
        var q5 = q.Reshape(n, Heads, h, w, d);
        var rh = Tensor.Embedding(rows, RelHeight).Transpose(1, 2);          // [H_i, d, H_j]
        var byRow = q5.MatMul(rh);                                          // [N, n, H_i, W_i, H_j]
        var rw = Tensor.Embedding(cols, RelWidth).Transpose(1, 2);          // [W_i, d, W_j]
        var byCol = q5.Transpose(2, 3).MatMul(rw).Transpose(2, 3);          // [N, n, H_i, W_i, W_j]
        var sum = byRow.Unsqueeze(-1) + byCol.Unsqueeze(-2);                // [N, n, H_i, W_i, H_j, W_j]
        return scope.Keep(sum.Reshape(n, Heads, h * w, h * w));
    }

    // Index tables M-1 + j - i for rows [h, h] and columns [w, w], kept for the last map size and device.
    private (Tensor Rows, Tensor Cols) Offsets(int h, int w, Device device)
    {
        if (_offsets is { } o && o.H == h && o.W == w && o.Device == device) return (o.Rows, o.Cols);
        if (_offsets is { } old) { old.Rows.Dispose(); old.Cols.Dispose(); }
        Tensor Table(int size)
        {
            var idx = new long[size * size];
            for (int i = 0; i < size; i++)
                for (int j = 0; j < size; j++) idx[i * size + j] = MaxExtent - 1 + j - i;
            return Tensor.FromArray(idx, [size, size], device);
        }
        var outer = TensorScope.Suspend();
        try { _offsets = (h, w, device, Table(h), Table(w)); }
        finally { TensorScope.Resume(outer); }
        return (_offsets.Value.Rows, _offsets.Value.Cols);
    }

    private void CaptureWeights(Tensor q, Tensor k, Tensor v, Tensor bias)
    {
        using var ng = new NoGrad();
        using var scope = new TensorScope();
        var (_, weights) = Tensor.AttentionWithWeights(q.Detach(), k.Detach(), v.Detach(), mask: bias.Detach());
        _last?.Dispose();
        _last = Captured.DetachedCopy(weights);
    }

    /// <inheritdoc/>
    public override void Dispose()
    {
        _last?.Dispose();
        if (_offsets is { } o) { o.Rows.Dispose(); o.Cols.Dispose(); }
        base.Dispose();
    }
}
