using AttnCore.Models.Nn;

namespace AttnCore.Models.Transformers;

/// <summary>
/// One encoder layer: self-attention and a feed-forward block, each wrapped in a residual connection with
/// layer normalisation before (pre-norm, as GPT-2 and most modern models) or after (post-norm, as the
/// original paper) the sub-layer.
/// </summary>
public sealed class TransformerEncoderLayer : Module
{
    private readonly MultiHeadAttention _attn;
    private readonly FeedForward _ff;
    private readonly LayerNorm _ln1, _ln2;
    private readonly Dropout _drop;

    /// <summary>A layer of width <paramref name="dim"/>; the feed-forward block uses ReLU when <paramref name="relu"/> (default: post-norm layers, as the original paper), else GELU.</summary>
    public TransformerEncoderLayer(int dim, int heads, int hidden, double dropout = 0.1, bool preNorm = true, Generator? generator = null, Device? device = null, bool? relu = null)
    {
        PreNorm = preNorm;
        _attn = Child("attn", new MultiHeadAttention(dim, heads, false, dropout, true, generator, device));
        _ln1 = Child("ln1", new LayerNorm(dim, device: device));
        _ff = Child("ff", new FeedForward(dim, hidden, dropout, relu: relu ?? !preNorm, generator: generator, device: device));
        _ln2 = Child("ln2", new LayerNorm(dim, device: device));
        _drop = Child("drop", new Dropout(dropout, generator));
    }

    /// <summary>True for pre-norm.</summary>
    public bool PreNorm { get; }
    /// <summary>The self-attention (for attention maps).</summary>
    public MultiHeadAttention SelfAttention => _attn;

    /// <summary>x [B, S, D] with an optional key padding mask [B, S].</summary>
    public Tensor Forward(Tensor x, Tensor? paddingMask = null)
    {
        using var scope = new TensorScope();
        Tensor h;
        if (PreNorm)
        {
            // ln2 adds the attention's output to the stream in its own pass (LayerNorm.Forward(x, residual)).
            var (stream, n2) = _ln2.Forward(x, _drop.Forward(_attn.Forward(_ln1.Forward(x), null, paddingMask)));
            h = stream + _drop.Forward(_ff.Forward(n2));
        }
        else
        {
            h = _ln1.Forward(x, _drop.Forward(_attn.Forward(x, null, paddingMask))).Output;
            h = _ln2.Forward(h, _drop.Forward(_ff.Forward(h))).Output;
        }
        return scope.Keep(h);
    }
}

/// <summary>One decoder layer: causal self-attention, cross-attention to the encoder output, feed-forward.</summary>
public sealed class TransformerDecoderLayer : Module
{
    private readonly MultiHeadAttention _self, _cross;
    private readonly FeedForward _ff;
    private readonly LayerNorm _ln1, _ln2, _ln3;
    private readonly Dropout _drop;

    /// <summary>A layer of width <paramref name="dim"/>; the feed-forward block uses ReLU when <paramref name="relu"/> (default: post-norm layers, as the original paper), else GELU.</summary>
    public TransformerDecoderLayer(int dim, int heads, int hidden, double dropout = 0.1, bool preNorm = true, Generator? generator = null, Device? device = null, bool? relu = null)
    {
        PreNorm = preNorm;
        _self = Child("self_attn", new MultiHeadAttention(dim, heads, false, dropout, true, generator, device));
        _ln1 = Child("ln1", new LayerNorm(dim, device: device));
        _cross = Child("cross_attn", new MultiHeadAttention(dim, heads, true, dropout, true, generator, device));
        _ln2 = Child("ln2", new LayerNorm(dim, device: device));
        _ff = Child("ff", new FeedForward(dim, hidden, dropout, relu: relu ?? !preNorm, generator: generator, device: device));
        _ln3 = Child("ln3", new LayerNorm(dim, device: device));
        _drop = Child("drop", new Dropout(dropout, generator));
    }

    /// <summary>True for pre-norm.</summary>
    public bool PreNorm { get; }
    /// <summary>The cross-attention (for attention maps).</summary>
    public MultiHeadAttention CrossAttention => _cross;
    /// <summary>The causal self-attention.</summary>
    public MultiHeadAttention SelfAttention => _self;

    /// <summary>y [B, T, D] attends causally to itself and to <paramref name="memory"/> [B, S, D].</summary>
    public Tensor Forward(Tensor y, Tensor memory, Tensor? targetPaddingMask = null, Tensor? memoryPaddingMask = null, KeyValueCache? cache = null)
    {
        using var scope = new TensorScope();
        Tensor h;
        if (PreNorm)
        {
            // ln2 and ln3 add the sublayer before them to the stream in their own pass (LayerNorm.Forward(x, residual)).
            var (stream, n2) = _ln2.Forward(y, _drop.Forward(_self.Forward(_ln1.Forward(y), null, targetPaddingMask, causal: true, cache)));
            var (stream2, n3) = _ln3.Forward(stream, _drop.Forward(_cross.Forward(n2, memory, memoryPaddingMask)));
            h = stream2 + _drop.Forward(_ff.Forward(n3));
        }
        else
        {
            h = _ln1.Forward(y, _drop.Forward(_self.Forward(y, null, targetPaddingMask, causal: true, cache))).Output;
            h = _ln2.Forward(h, _drop.Forward(_cross.Forward(h, memory, memoryPaddingMask))).Output;
            h = _ln3.Forward(h, _drop.Forward(_ff.Forward(h))).Output;
        }
        return scope.Keep(h);
    }
}
