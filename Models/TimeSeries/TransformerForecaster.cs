using AttnCore.Models.Nn;
using AttnCore.Models.Transformers;

namespace AttnCore.Models.TimeSeries;

/// <summary>
/// The encoder-decoder Transformer forecaster of the long-horizon benchmarks (Vaswani et al. 2017, as run by Zhou et
/// al., "Informer", AAAI 2021, and the Autoformer code's vanilla Transformer).
/// <para>
/// Embedding of a row t (DataEmbedding, "timeF"): E_t = Conv1d_k3,circular(x)_t + W_time m_t + PE_t, then dropout; the
/// circular convolution of width 3 is a linear map of [x_{t-1}, x_t, x_{t+1}] with wrap-around (weights [D, 3C],
/// no bias), m_t the calendar features (<see cref="TimeFeatures"/>, linear without bias), PE sinusoidal.
///   encoder: E(x) through E post-norm layers (self-attention, GELU feed-forward), then LayerNorm
///   decoder input: the last labelLen rows of x followed by H zero rows, with their calendar features
///   decoder: causal self-attention, cross-attention to the encoder output, feed-forward (post-norm), LayerNorm
///   ŷ = the last H rows of W_out · decoder output     (Linear D → C)
/// </para>
/// Layers are <see cref="TransformerEncoderLayer"/> and <see cref="TransformerDecoderLayer"/>, attention fused.
/// Shapes: x [B, L, C], xMark [B, L, F], yMark [B, labelLen + H, F] → [B, H, C].
/// </summary>
public sealed class TransformerForecaster : Forecaster
{
    private readonly Linear _encValue, _encTime, _decValue, _decTime, _projection;
    private readonly SinusoidalPositionalEncoding _position;
    private readonly Dropout _dropout;
    private readonly ModuleList<TransformerEncoderLayer> _encoder;
    private readonly ModuleList<TransformerDecoderLayer> _decoder;
    private readonly LayerNorm _encNorm, _decNorm;

    /// <summary>The model of <paramref name="config"/> (reads SeqLen, PredLen, Channels, DModel, Heads, Layers, DecoderLayers, DFf, Dropout, LabelLen, TimeFeatures).</summary>
    public TransformerForecaster(ForecasterConfig config, Generator? generator = null, Device? device = null) : base(config)
    {
        if (config.DModel % config.Heads != 0) throw new ArgumentException($"TransformerForecaster: d_model {config.DModel} is not a multiple of {config.Heads} heads");
        if (config.LabelLen < 0 || config.LabelLen > config.SeqLen) throw new ArgumentException($"TransformerForecaster: label_len {config.LabelLen} must be in [0, seq_len {config.SeqLen}]");
        var g = generator ?? Generator.Default;
        int c = config.Channels, d = config.DModel, f = config.TimeFeatures;
        _encValue = Child("enc_value", new Linear(3 * c, d, false, g, device));
        _encTime = Child("enc_time", new Linear(f, d, false, g, device));
        _decValue = Child("dec_value", new Linear(3 * c, d, false, g, device));
        _decTime = Child("dec_time", new Linear(f, d, false, g, device));
        _position = Child("position", new SinusoidalPositionalEncoding(d, Math.Max(config.SeqLen, config.LabelLen + config.PredLen), device));
        _dropout = Child("dropout", new Dropout(config.Dropout, g));
        _encoder = Child("encoder", new ModuleList<TransformerEncoderLayer>(Enumerable.Range(0, config.Layers)
            .Select(_ => new TransformerEncoderLayer(d, config.Heads, config.DFf, config.Dropout, preNorm: false, g, device, relu: false))));
        _decoder = Child("decoder", new ModuleList<TransformerDecoderLayer>(Enumerable.Range(0, config.DecoderLayers)
            .Select(_ => new TransformerDecoderLayer(d, config.Heads, config.DFf, config.Dropout, preNorm: false, g, device, relu: false))));
        _encNorm = Child("enc_norm", new LayerNorm(d, device: device));
        _decNorm = Child("dec_norm", new LayerNorm(d, device: device));
        _projection = Child("projection", new Linear(d, c, true, g, device));
    }

    /// <inheritdoc/>
    public override bool UsesTimeFeatures => true;

    private Tensor Embed(Linear value, Linear time, Tensor x, Tensor mark)
    {
        int t = x.Size(1);
        // Circular padding of the width-3 convolution: the row before the first is the last, and the other way round.
        var previous = Tensor.Cat([x.Narrow(1, t - 1, 1), x.Narrow(1, 0, t - 1)], 1);
        var next = Tensor.Cat([x.Narrow(1, 1, t - 1), x.Narrow(1, 0, 1)], 1);
        var e = value.Forward(Tensor.Cat([previous, x, next], 2)) + time.Forward(mark);
        return _dropout.Forward(_position.Forward(e));
    }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x, Tensor? xMark = null, Tensor? yMark = null)
    {
        CheckInput(x);
        int b = x.Size(0), label = Config.LabelLen, h = Config.PredLen, f = Config.TimeFeatures;
        if (xMark is null || yMark is null || xMark.Rank != 3 || yMark.Rank != 3 || xMark.Size(1) != Config.SeqLen || yMark.Size(1) != label + h
            || xMark.Size(2) != f || yMark.Size(2) != f || xMark.Size(0) != b || yMark.Size(0) != b)
            throw new ArgumentException($"TransformerForecaster: needs time features xMark [{b}, {Config.SeqLen}, {f}] and yMark [{b}, {label + h}, {f}], got "
                + $"{(xMark is null ? "none" : Shape.Format(xMark.Shape))} and {(yMark is null ? "none" : Shape.Format(yMark.Shape))}");
        using var scope = new TensorScope();
        var memory = Embed(_encValue, _encTime, x, xMark);
        foreach (var layer in _encoder.Items) memory = layer.Forward(memory);
        memory = _encNorm.Forward(memory);
        var zeros = Tensor.Zeros([b, h, Config.Channels], x.DType, x.Device);
        var decoderInput = label > 0 ? Tensor.Cat([x.Narrow(1, Config.SeqLen - label, label), zeros], 1) : zeros;
        var y = Embed(_decValue, _decTime, decoderInput, yMark);
        foreach (var layer in _decoder.Items) y = layer.Forward(y, memory);
        var output = _projection.Forward(_decNorm.Forward(y));
        return scope.Keep(output.Narrow(1, label, h).Contiguous());
    }
}
