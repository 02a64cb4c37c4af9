using AttnCore.Models.Nn;

namespace AttnCore.Models.TimeSeries;

/// <summary>
/// PatchTST (supervised): Nie, Nguyen, Sinthong and Kalagnanam, "A Time Series is Worth 64 Words: Long-term
/// Forecasting with Transformers", ICLR 2023.
/// <para>
/// Channel independence: each of the C series of a window is forecast alone by the same weights, so the batch
/// becomes B·C univariate series. Per series x ∈ R^L:
///   x̂ = RevIN(x)                                           (instance normalisation, learned γ, β per channel)
///   pad the end by repeating x̂_L S times; patches P_n = x̂[nS .. nS+P-1], n = 0..N-1, N = ⌊(L-P)/S⌋ + 2
///   U = P W_P + W_pos + dropout        W_P: [P → D], W_pos ∈ R^{N×D} learned, initialised U(-0.02, 0.02)
///   each of E encoder layers (post-norm, BatchNorm over D):
///     Z = BN(U + Dropout(MHA(U)))     Z' = BN(Z + Dropout(W_2 GELU(W_1 Z)))
///   ŷ = W_head · flatten(Zᵀ) (flatten over [D, N], d_model major), then RevIN⁻¹.
/// </para>
/// Attention runs through the fused kernel (<see cref="MultiHeadAttention"/>, scale 1/sqrt(D/heads)): the paper code's
/// <c>res_attention=False</c> variant, and the default here. With <see cref="ForecasterConfig.ResAttention"/> it is the
/// code's default "residual attention" instead: layer e's pre-softmax scores S_e = Q_e K_eᵀ/√(D/heads) + S_{e-1}
/// (S_0 = 0) are handed to the next layer, and attention runs unfused (<see cref="MultiHeadAttention.ForwardResidual"/>). Patching and end padding are one index-select
/// (indices past the end clamp to the last step). Shapes: x [B, L, C] → [B·C, N, P] → [B·C, N, D] →
/// [B, C, D·N] → [B, C, H] → [B, H, C].
/// </summary>
public sealed class PatchTst : Forecaster
{
    private readonly RevIn _revin;
    private readonly Linear _patchEmbedding, _head;
    private readonly Dropout _embeddingDropout, _headDropout;
    private readonly ModuleList<PatchTstEncoderLayer> _layers;
    private readonly Tensor _patchIndex;

    /// <summary>The model of <paramref name="config"/> (reads SeqLen, PredLen, Channels, DModel, Heads, Layers, DFf, Dropout, PatchLen, Stride, FcDropout, HeadDropout).</summary>
    public PatchTst(ForecasterConfig config, Generator? generator = null, Device? device = null) : base(config)
    {
        int l = config.SeqLen, p = config.PatchLen, s = config.Stride, d = config.DModel;
        if (p <= 0 || s <= 0 || p > l) throw new ArgumentException($"PatchTst: patch length {p} and stride {s} must be positive with the patch no longer than seq_len {l}");
        if (d % config.Heads != 0) throw new ArgumentException($"PatchTst: d_model {d} is not a multiple of {config.Heads} heads");
        var g = generator ?? Generator.Default;
        PatchCount = (l - p) / s + 2;
        var index = new long[PatchCount * p];
        for (int n = 0; n < PatchCount; n++)
            for (int j = 0; j < p; j++) index[n * p + j] = Math.Min(n * s + j, l - 1);
        _patchIndex = Tensor.FromArray(index, [index.Length], device);
        _revin = Child("revin_layer", new RevIn(config.Channels, device: device));
        _patchEmbedding = Child("W_P", new Linear(p, d, true, g, device));
        PositionalEncoding = Parameter("W_pos", Init.Uniform([PatchCount, d], 0.02, g, device));
        _embeddingDropout = Child("dropout", new Dropout(config.FcDropout, g));
        _layers = Child("layers", new ModuleList<PatchTstEncoderLayer>(Enumerable.Range(0, config.Layers)
            .Select(_ => new PatchTstEncoderLayer(d, config.Heads, config.DFf, config.Dropout, g, device))));
        _head = Child("head", new Linear(d * PatchCount, config.PredLen, true, g, device));
        _headDropout = Child("head_dropout", new Dropout(config.HeadDropout, g));
    }

    /// <summary>N, patches per series (with the end padding).</summary>
    public int PatchCount { get; }
    /// <summary>W_pos [N, D].</summary>
    public Tensor PositionalEncoding { get; }
    /// <summary>The encoder layers (for attention maps: set <see cref="MultiHeadAttention.KeepWeights"/>).</summary>
    public IReadOnlyList<PatchTstEncoderLayer> Layers => _layers.Items;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x, Tensor? xMark = null, Tensor? yMark = null)
    {
        CheckInput(x);
        int b = x.Size(0), c = Config.Channels, d = Config.DModel;
        using var scope = new TensorScope();
        var normalized = _revin.Normalize(x);
        var series = normalized.Transpose(1, 2).Reshape(b * c, Config.SeqLen);
        var patches = series.IndexSelect(1, _patchIndex).View(b * c, PatchCount, Config.PatchLen);
        var u = _embeddingDropout.Forward(_patchEmbedding.Forward(patches) + PositionalEncoding);
        Tensor? scores = null;
        foreach (var layer in _layers.Items)
            if (Config.ResAttention) u = layer.Forward(u, scores, out scores);
            else u = layer.Forward(u);
        var flat = u.View(b, c, PatchCount, d).Transpose(2, 3).Reshape(b, c, d * PatchCount);
        var y = _headDropout.Forward(_head.Forward(flat)).Transpose(1, 2);
        return scope.Keep(_revin.Denormalize(y));
    }

    /// <inheritdoc/>
    public override void Dispose() { _patchIndex.Dispose(); base.Dispose(); }
}

/// <summary>
/// PatchTST's encoder layer (TSTEncoderLayer with pre_norm=False, BatchNorm): Z = BN(U + Dropout(MHA(U))),
/// out = BN(Z + Dropout(W_2 Dropout(GELU(W_1 Z)))). The attention output passes the projection's dropout and the
/// layer's (two dropouts of p in a row, as the paper's code).
/// </summary>
public sealed class PatchTstEncoderLayer : Module
{
    private readonly MultiHeadAttention _attn;
    private readonly Dropout _projDropout, _attnDropout, _ffnDropout;
    private readonly SequenceBatchNorm _normAttn, _normFfn;
    private readonly FeedForward _ff;

    /// <summary>A layer of width <paramref name="dim"/>.</summary>
    public PatchTstEncoderLayer(int dim, int heads, int hidden, double dropout, Generator? generator = null, Device? device = null)
    {
        _attn = Child("self_attn", new MultiHeadAttention(dim, heads, false, 0, true, generator, device));
        _projDropout = Child("proj_dropout", new Dropout(dropout, generator));
        _attnDropout = Child("dropout_attn", new Dropout(dropout, generator));
        _normAttn = Child("norm_attn", new SequenceBatchNorm(dim, device: device));
        _ff = Child("ff", new FeedForward(dim, hidden, dropout, relu: false, generator: generator, device: device));
        _ffnDropout = Child("dropout_ffn", new Dropout(dropout, generator));
        _normFfn = Child("norm_ffn", new SequenceBatchNorm(dim, device: device));
    }

    /// <summary>The self-attention (its weights can be kept for a picture).</summary>
    public MultiHeadAttention SelfAttention => _attn;

    /// <summary>u [B·C, N, D] → [B·C, N, D].</summary>
    public Tensor Forward(Tensor u)
    {
        using var scope = new TensorScope();
        return scope.Keep(AfterAttention(u, _attn.Forward(u)));
    }

    /// <summary>
    /// With residual attention: the previous layer's pre-softmax scores <paramref name="previousScores"/> [B·C, heads, N, N]
    /// (null in the first layer) are added to this layer's, which come back in <paramref name="scores"/>.
    /// </summary>
    public Tensor Forward(Tensor u, Tensor? previousScores, out Tensor scores)
    {
        using var scope = new TensorScope();
        var attended = _attn.ForwardResidual(u, previousScores, out scores);
        scope.Keep(scores);
        return scope.Keep(AfterAttention(u, attended));
    }

    private Tensor AfterAttention(Tensor u, Tensor attended)
    {
        var z = _normAttn.Forward(u + _attnDropout.Forward(_projDropout.Forward(attended)));
        return _normFfn.Forward(z + _ffnDropout.Forward(_ff.Forward(z)));
    }
}
