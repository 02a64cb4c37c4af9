using AttnCore.Models.Nn;
using AttnCore.Models.Transformers;

namespace AttnCore.Models.TimeSeries;

/// <summary>
/// iTransformer: Liu, Hu, Zhang, Wu, Wang, Ma and Long, "iTransformer: Inverted Transformers Are Effective for Time
/// Series Forecasting", ICLR 2024.
/// <para>
/// The Transformer is inverted: each variate's whole look-back series is one token, and attention runs across
/// variates. With the non-stationary normalisation of the paper's code (Liu et al. 2022),
///   μ = mean_t x (detached), σ = sqrt(var_t(x - μ) + 1e-5), x̂ = (x - μ)/σ
///   h⁰_c = W_e x̂_{:,c} + b_e                             (inverted embedding, Linear L → D, then dropout)
///   hˡ = LN(h' + FFN(h')), h' = LN(hˡ⁻¹ + MHA(hˡ⁻¹))      (post-norm, GELU feed-forward, E layers)
///   ŷ_{:,c} = W_p LN(h^E)_c + b_p                          (projection D → H), ŷ · σ + μ
/// </para>
/// The encoder layers are <see cref="TransformerEncoderLayer"/> (post-norm, GELU) with the fused attention kernel;
/// attention dropout is the model's dropout, as the paper's FullAttention. Calendar features as extra tokens (the
/// paper's code appends them when given) are not used. Shapes: x [B, L, C] → [B, C, L] → [B, C, D] → [B, C, H] → [B, H, C].
/// </summary>
public sealed class ITransformer : Forecaster
{
    private readonly Linear _embedding, _projector;
    private readonly Dropout _dropout;
    private readonly ModuleList<TransformerEncoderLayer> _layers;
    private readonly LayerNorm _norm;

    /// <summary>The model of <paramref name="config"/> (reads SeqLen, PredLen, Channels, DModel, Heads, Layers, DFf, Dropout).</summary>
    public ITransformer(ForecasterConfig config, Generator? generator = null, Device? device = null) : base(config)
    {
        if (config.DModel % config.Heads != 0) throw new ArgumentException($"ITransformer: d_model {config.DModel} is not a multiple of {config.Heads} heads");
        var g = generator ?? Generator.Default;
        _embedding = Child("enc_embedding", new Linear(config.SeqLen, config.DModel, true, g, device));
        _dropout = Child("dropout", new Dropout(config.Dropout, g));
        _layers = Child("layers", new ModuleList<TransformerEncoderLayer>(Enumerable.Range(0, config.Layers)
            .Select(_ => new TransformerEncoderLayer(config.DModel, config.Heads, config.DFf, config.Dropout, preNorm: false, g, device, relu: false))));
        _norm = Child("norm", new LayerNorm(config.DModel, device: device));
        _projector = Child("projector", new Linear(config.DModel, config.PredLen, true, g, device));
    }

    /// <summary>The encoder layers (attention between variates).</summary>
    public IReadOnlyList<TransformerEncoderLayer> Layers => _layers.Items;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x, Tensor? xMark = null, Tensor? yMark = null)
    {
        CheckInput(x);
        using var scope = new TensorScope();
        var mean = x.Mean(1, keepDim: true).Detach();
        var centered = x - mean;
        var std = (centered.Var(1, keepDim: true, correction: 0) + 1e-5).Sqrt();
        var h = _dropout.Forward(_embedding.Forward((centered / std).Transpose(1, 2)));
        foreach (var layer in _layers.Items) h = layer.Forward(h);
        var y = _projector.Forward(_norm.Forward(h)).Transpose(1, 2);
        return scope.Keep(y * std + mean);
    }
}
