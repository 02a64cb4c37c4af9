using AttnCore.Models.Nn;

namespace AttnCore.Models.Recommendation;

/// <summary>Sizes of <see cref="SasRec"/> and <see cref="TargetAttentionRecommender"/> (the paper's settings for Amazon Games as defaults).</summary>
/// <param name="Items">Items 1..Items (0 is padding).</param>
/// <param name="MaxLength">n, the positions read.</param>
/// <param name="Dim">d, the embedding width.</param>
/// <param name="Blocks">Self-attention blocks.</param>
/// <param name="Heads">Attention heads (a divisor of <paramref name="Dim"/>).</param>
/// <param name="Dropout">Dropout rate on embeddings, attention weights and the feed-forward.</param>
public sealed record SasRecConfig(int Items, int MaxLength = 50, int Dim = 50, int Blocks = 2, int Heads = 1, double Dropout = 0.5)
{
    /// <summary>Throws naming the bad size.</summary>
    public void Check()
    {
        if (Items < 1 || MaxLength < 1 || Dim < 1 || Blocks < 1 || Heads < 1)
            throw new ArgumentException($"SasRecConfig: every size must be at least 1, got {this}");
        if (Dim % Heads != 0) throw new ArgumentException($"SasRecConfig: Dim {Dim} is not a multiple of Heads {Heads}");
        if (!(Dropout is >= 0 and < 1)) throw new ArgumentException($"SasRecConfig: Dropout must be in [0, 1), got {Dropout}");
    }
}

/// <summary>
/// One SASRec block, as the authors' PyTorch code (pmixer/SASRec.pytorch) arranges it: the layer-normalised
/// sequence queries the un-normalised one under a causal and key-padding mask, the residual adds the normalised
/// query, then a layer-normalised point-wise feed-forward with its own residual; padded positions are zeroed.
/// </summary>
public sealed class SasRecBlock : Module
{
    private readonly LayerNorm _attnLn, _ffnLn;
    private readonly MultiHeadAttention _attn;
    private readonly Linear _conv1, _conv2;
    private readonly Dropout _drop1, _drop2;

    /// <summary>A block of the given sizes.</summary>
    public SasRecBlock(SasRecConfig c, Generator g, Device? device)
    {
        _attnLn = Child("attn_ln", new LayerNorm(c.Dim, 1e-8, device: device));
        _attn = Child("attn", new MultiHeadAttention(c.Dim, c.Heads, crossAttention: true, c.Dropout, bias: true, g, device));
        _ffnLn = Child("ffn_ln", new LayerNorm(c.Dim, 1e-8, device: device));
        _conv1 = Child("conv1", new Linear(c.Dim, c.Dim, true, g, device));
        _conv2 = Child("conv2", new Linear(c.Dim, c.Dim, true, g, device));
        _drop1 = Child("drop1", new Dropout(c.Dropout, g));
        _drop2 = Child("drop2", new Dropout(c.Dropout, g));
    }

    /// <summary>The self-attention (its weights for attention maps).</summary>
    public MultiHeadAttention Attention => _attn;

    /// <summary>x [B, T, d]; <paramref name="padding"/> [B, T] non-zero at padded keys; <paramref name="keep"/> [B, T, 1] 1 at items.</summary>
    public Tensor Forward(Tensor x, Tensor padding, Tensor keep)
    {
        using var scope = new TensorScope();
        var q = _attnLn.Forward(x);
        var h = q + _attn.Forward(q, memory: x, keyPaddingMask: padding, causal: true);
        h = _ffnLn.Forward(h);
        h = h + _drop2.Forward(_conv2.Forward(_drop1.Forward(_conv1.Forward(h)).Relu()));
        return scope.Keep(h * keep);
    }
}

/// <summary>
/// The self-attentive sequence encoder both recommenders share (Kang and McAuley 2018, "Self-Attentive Sequential
/// Recommendation", section III). For a left-padded history s of n item ids:
/// <code>
///   E_t = M[s_t]·sqrt(d) + P_t                     item embedding M [|I|+1, d] (row 0 padding), positions P [n, d]
///   S⁰ = dropout(E) ⊙ m                            m_t = 1 where s_t is an item, 0 at padding
///   per block b:  Q = LN(Sᵇ)
///                 A = softmax(Q W_q (Sᵇ W_k)ᵀ / sqrt(d) + causal + padding) Sᵇ W_v  W_o   (fused attention kernel)
///                 H = LN(Q + A)
///                 Sᵇ⁺¹ = (H + dropout(W₂ dropout(ReLU(W₁ H + b₁)) + b₂)) ⊙ m
///   F = LN(S^B)                                    [B, n, d]; F_t is the user's state after item s_t
/// </code>
/// Shapes through <see cref="Encode"/>: history [B, n] int64 → E [B, n, d] → blocks → F [B, n, d]. Every layer norm
/// has ε = 1e-8, as the authors'. Parameter names follow pmixer/SASRec.pytorch one-to-one except that its
/// MultiheadAttention's in_proj is split into attn.q and attn.kv, out_proj is attn.proj, and its kernel-1 Conv1d
/// layers are Linear (Tests/Fixtures/make_sasrec.py maps them).
/// </summary>
public abstract class SelfAttentiveRecommender : SequentialRecommender
{
    private readonly Dropout _embDrop;
    private readonly ModuleList<SasRecBlock> _blocks;
    private readonly LayerNorm _lastLn;

    /// <summary>Builds the encoder and initialises it as the authors' code: Xavier-normal matrices, zero attention biases.</summary>
    protected SelfAttentiveRecommender(SasRecConfig config, Generator? generator, Device? device)
    {
        config.Check();
        Config = config;
        Device = device ?? Device.Cpu;
        Generator = generator ?? AttnCore.Generator.Default;
        ItemEmbedding = Child("item_emb", new Embedding(config.Items + 1, config.Dim, Generator, device));
        PositionEmbedding = Child("pos_emb", new Embedding(config.MaxLength, config.Dim, Generator, device));
        _embDrop = Child("emb_drop", new Dropout(config.Dropout, Generator));
        _blocks = Child("blocks", new ModuleList<SasRecBlock>(Enumerable.Range(0, config.Blocks).Select(_ => new SasRecBlock(config, Generator, device))));
        _lastLn = Child("last_ln", new LayerNorm(config.Dim, 1e-8, device: device));
    }

    /// <summary>
    /// Re-initialises every matrix Xavier-normal (std sqrt(2 / (fan_in + fan_out))) and every attention bias to 0, as
    /// the authors' code; the attention's q and kv are drawn as one [3d, d] in-projection would be. Subclasses call it
    /// after registering their own layers.
    /// </summary>
    protected void InitialiseAsAuthors()
    {
        using var ng = new NoGrad();
        int d = Config.Dim;
        foreach (var (name, p) in NamedParameters())
        {
            if (p.Rank == 2)
            {
                bool inProjection = name.EndsWith(".q.weight", StringComparison.Ordinal) || name.EndsWith(".kv.weight", StringComparison.Ordinal);
                double std = inProjection ? Math.Sqrt(2.0 / (d + 3 * d)) : Math.Sqrt(2.0 / (p.Size(0) + p.Size(1)));
                using var init = Init.Normal(p.Shape, std, Generator, p.Device);
                p.CopyFrom(init);
            }
            else if (name.Contains("attn.", StringComparison.Ordinal) && name.EndsWith(".bias", StringComparison.Ordinal)) p.Fill_(0);
        }
    }

    /// <summary>The sizes.</summary>
    public SasRecConfig Config { get; }
    /// <summary>Where the weights live.</summary>
    public Device Device { get; }
    /// <summary>The generator of dropout masks and initial weights.</summary>
    protected Generator Generator { get; }
    /// <summary>M: [Items + 1, d], shared by input and output.</summary>
    public Embedding ItemEmbedding { get; }
    /// <summary>P: [MaxLength, d].</summary>
    public Embedding PositionEmbedding { get; }
    /// <summary>The self-attention blocks.</summary>
    public IReadOnlyList<SasRecBlock> Blocks => _blocks.Items;

    /// <inheritdoc/>
    public override int MaxLength => Config.MaxLength;
    /// <inheritdoc/>
    public override int ItemCount => Config.Items;

    /// <summary>F [B, n, d] for histories [B, n], and the key-padding mask [B, n] (1 at padding) it was computed with.</summary>
    public (Tensor Features, Tensor Padding) Encode(Tensor history)
    {
        CheckHistory("Encode", history);
        using var scope = new TensorScope();
        int t = history.Size(1);
        var isItem = history.Ne(0).To(DType.Float32);
        var padding = history.Eq(0).To(DType.Float32);
        var keep = isItem.Unsqueeze(-1);
        var x = ItemEmbedding.Forward(history) * Math.Sqrt(Config.Dim) + PositionEmbedding.Weight.Narrow(0, 0, t);
        x = _embDrop.Forward(x) * keep;
        foreach (var block in _blocks.Items) x = block.Forward(x, padding, keep);
        return (scope.Keep(_lastLn.Forward(x)), scope.Keep(padding));
    }

    /// <summary>The embeddings of item ids of any shape: [..., d].</summary>
    protected Tensor Embed(Tensor items) => ItemEmbedding.Forward(items);

    /// <inheritdoc/>
    public override float[,] SelfAttentionWeights(Tensor history)
    {
        if (history.DType != DType.Int64 || history.Rank != 1 || history.Size(0) != MaxLength)
            throw new ArgumentException($"{Name}.SelfAttentionWeights: history must be int64 [{MaxLength}], got {history.DType.Name()} [{string.Join(",", history.Shape)}]");
        var attention = _blocks.Items[^1].Attention;
        bool wasTraining = Training;
        Eval();
        attention.KeepWeights = true;
        try
        {
            using var ng = new NoGrad();
            using var scope = new TensorScope();
            Encode(history.Unsqueeze(0));
            // [1, H, T, T] averaged over heads
            var w = attention.LastWeights!.Mean([0, 1]).ToArray<float>();
            int n = MaxLength;
            var result = new float[n, n];
            for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) result[i, j] = w[i * n + j];
            return result;
        }
        finally
        {
            attention.KeepWeights = false;
            Train(wasTraining);
        }
    }
}

/// <summary>
/// SASRec (Kang and McAuley 2018): the relevance of item i after position t is r_{i,t} = F_t · M_i, the output
/// embedding shared with the input one; training is binary cross-entropy of each position's next item (label 1)
/// and one sampled negative (label 0), padding ignored:
/// <code>  L = −Σ_t m_t [ln σ(r_{o_t,t}) + ln(1 − σ(r_{j_t,t}))] / Σ_t m_t   </code>
/// Ranking scores use the last position: s_i = F_n · M_i.
/// </summary>
public sealed class SasRec : SelfAttentiveRecommender
{
    /// <summary>A model of the given sizes, initialised from <paramref name="generator"/> as the authors' code.</summary>
    public SasRec(SasRecConfig config, Generator? generator = null, Device? device = null) : base(config, generator, device) => InitialiseAsAuthors();

    /// <inheritdoc/>
    public override string Name => "sasrec";

    /// <summary>Logits [B, T] of the positive and negative items at every position (the authors' forward).</summary>
    public (Tensor Positive, Tensor Negative) Logits(Tensor history, Tensor positives, Tensor negatives)
    {
        if (!positives.Shape.SequenceEqual(history.Shape) || !negatives.Shape.SequenceEqual(history.Shape) || positives.DType != DType.Int64 || negatives.DType != DType.Int64)
            throw new ArgumentException($"{Name}.Logits: positives {positives.DType.Name()} {AttnCore.Shape.Format(positives.Shape)} and negatives {negatives.DType.Name()} {AttnCore.Shape.Format(negatives.Shape)} must be int64 of the history's shape {AttnCore.Shape.Format(history.Shape)}");
        using var scope = new TensorScope();
        var (f, _) = Encode(history);
        int b = history.Size(0), t = history.Size(1);
        // One gather for positives and negatives: the item table then receives one dense [items + 1, d] gradient
        // for both instead of two that backward must allocate and add (a third of the step's time at the Games size).
        var candidates = Embed(Tensor.Cat([positives, negatives], 0)).Reshape(2, b, t, Config.Dim);
        var logits = (f.Unsqueeze(0) * candidates).Sum(-1);
        return (scope.Keep(logits.Select(0, 0)), scope.Keep(logits.Select(0, 1)));
    }

    /// <inheritdoc/>
    public override Tensor Loss(Tensor history, Tensor positives, Tensor negatives)
    {
        using var scope = new TensorScope();
        var (pos, neg) = Logits(history, positives, negatives);
        return scope.Keep(SampledBinaryLoss(pos, neg, positives));
    }

    /// <inheritdoc/>
    public override Tensor Score(Tensor history, Tensor candidates)
    {
        using var scope = new TensorScope();
        var last = LastState(history);
        return scope.Keep(Embed(candidates).MatMul(last.Unsqueeze(-1)).Squeeze(-1));
    }

    /// <inheritdoc/>
    public override Tensor ScoreAll(Tensor history)
    {
        using var scope = new TensorScope();
        return scope.Keep(LastState(history).MatMul(ItemEmbedding.Weight.T));
    }

    // F_n [B, d]: the state after the newest item.
    private Tensor LastState(Tensor history)
    {
        var (f, _) = Encode(history);
        return f.Select(1, f.Size(1) - 1);
    }
}
