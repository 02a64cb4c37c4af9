using System.Text.Json;
using AttnCore.Models.Nn;

namespace AttnCore.Models.TimeSeries;

/// <summary>
/// Sizes and options of a forecaster; <see cref="Forecaster.Create"/> builds the model it names. Defaults are each
/// paper's ETTh1 settings where one model reads the field (see the model classes).
/// </summary>
/// <param name="Model">dlinear | patchtst | itransformer | transformer.</param>
/// <param name="SeqLen">Look-back L.</param>
/// <param name="PredLen">Horizon H.</param>
/// <param name="Channels">Input channels C (the model forecasts all of them).</param>
/// <param name="DModel">Width of the attention models.</param>
/// <param name="Heads">Attention heads.</param>
/// <param name="Layers">Encoder layers.</param>
/// <param name="DFf">Feed-forward width.</param>
/// <param name="Dropout">Dropout probability.</param>
/// <param name="PatchLen">PatchTST patch length.</param>
/// <param name="Stride">PatchTST patch stride.</param>
/// <param name="FcDropout">PatchTST dropout after the patch embedding and positions.</param>
/// <param name="HeadDropout">PatchTST dropout after the flatten head.</param>
/// <param name="MovingAverage">DLinear moving-average kernel (odd).</param>
/// <param name="Individual">DLinear: one linear layer pair per channel instead of one shared.</param>
/// <param name="DecoderLayers">Transformer forecaster decoder layers.</param>
/// <param name="LabelLen">Transformer forecaster: known input rows the decoder starts from.</param>
/// <param name="TimeFeatures">Calendar features per row (Transformer forecaster).</param>
/// <param name="ResAttention">PatchTST: residual attention (each layer adds the previous layer's pre-softmax scores), the paper code's default.</param>
public sealed record ForecasterConfig(string Model, int SeqLen, int PredLen, int Channels,
    int DModel = 16, int Heads = 4, int Layers = 3, int DFf = 128, double Dropout = 0.3,
    int PatchLen = 16, int Stride = 8, double FcDropout = 0.3, double HeadDropout = 0,
    int MovingAverage = 25, bool Individual = false,
    int DecoderLayers = 1, int LabelLen = 48, int TimeFeatures = 4, bool ResAttention = false)
{
    /// <summary>The models <see cref="Forecaster.Create"/> knows.</summary>
    public static readonly string[] Models = ["dlinear", "patchtst", "itransformer", "transformer"];

    /// <summary>JSON (stored in a checkpoint's metadata).</summary>
    public string ToJson() => JsonSerializer.Serialize(this);

    /// <summary>Reads <see cref="ToJson"/>'s text.</summary>
    public static ForecasterConfig FromJson(string json) =>
        JsonSerializer.Deserialize<ForecasterConfig>(json) ?? throw new InvalidDataException("ForecasterConfig: the JSON is null");
}

/// <summary>
/// A long-horizon forecaster: look-back window x [B, L, C] (scaled) to forecast [B, H, C]. Models that read
/// calendar features (the Transformer forecaster) take them in <c>xMark</c> [B, L, F] and <c>yMark</c> [B, labelLen + H, F].
/// </summary>
public abstract class Forecaster : Module
{
    /// <summary>Records the configuration.</summary>
    protected Forecaster(ForecasterConfig config)
    {
        if (config.SeqLen <= 0 || config.PredLen <= 0 || config.Channels <= 0)
            throw new ArgumentException($"{GetType().Name}: seq_len {config.SeqLen}, pred_len {config.PredLen} and channels {config.Channels} must be positive");
        Config = config;
    }

    /// <summary>The configuration.</summary>
    public ForecasterConfig Config { get; }

    /// <summary>Whether <see cref="Forward"/> reads the time features.</summary>
    public virtual bool UsesTimeFeatures => false;

    /// <summary>The forecast [B, H, C] of x [B, L, C].</summary>
    public abstract Tensor Forward(Tensor x, Tensor? xMark = null, Tensor? yMark = null);

    /// <summary>Checks x is [B, L, C] for this model.</summary>
    protected void CheckInput(Tensor x)
    {
        if (x.Rank != 3 || x.Size(1) != Config.SeqLen || x.Size(2) != Config.Channels)
            throw new ArgumentException($"{GetType().Name}: input must be [B, {Config.SeqLen}, {Config.Channels}] (batch, seq_len, channels), got {Shape.Format(x.Shape)}");
    }

    /// <summary>Builds the model <paramref name="config"/> names.</summary>
    public static Forecaster Create(ForecasterConfig config, Generator? generator = null, Device? device = null) => config.Model switch
    {
        "dlinear" => new DLinear(config, generator, device),
        "patchtst" => new PatchTst(config, generator, device),
        "itransformer" => new ITransformer(config, generator, device),
        "transformer" => new TransformerForecaster(config, generator, device),
        _ => throw new ArgumentException($"Forecaster.Create: unknown model '{config.Model}'; use one of {string.Join(", ", ForecasterConfig.Models)}"),
    };
}

/// <summary>
/// Reversible instance normalisation (Kim et al., ICLR 2022, "RevIN"), as PatchTST's layers/RevIN.py: per series and
/// channel, μ = mean_t x, σ = sqrt(var_t x + ε) (population variance, both detached from the graph),
/// x̂ = (x - μ)/σ · γ + β on the way in and y = (ŷ - β)/(γ + ε²) · σ + μ on the way out. Without affine, γ = 1, β = 0.
/// </summary>
public sealed class RevIn : Module
{
    private Tensor? _mean, _stdev;

    /// <summary>Statistics over dim 1 of [B, T, C] inputs, with learned γ, β [C] when <paramref name="affine"/>.</summary>
    public RevIn(int channels, bool affine = true, double eps = 1e-5, Device? device = null)
    {
        Eps = eps;
        if (affine)
        {
            Weight = Parameter("affine_weight", Tensor.Ones([channels], DType.Float32, device));
            Bias = Parameter("affine_bias", Tensor.Zeros([channels], DType.Float32, device));
        }
    }

    /// <summary>ε.</summary>
    public double Eps { get; }
    /// <summary>γ [C] or null.</summary>
    public Tensor? Weight { get; }
    /// <summary>β [C] or null.</summary>
    public Tensor? Bias { get; }

    /// <summary>Normalises x [B, T, C] and remembers μ, σ for <see cref="Denormalize"/>.</summary>
    public Tensor Normalize(Tensor x)
    {
        using var scope = new TensorScope();
        var mean = x.Mean(1, keepDim: true).Detach();
        var std = (x.Var(1, keepDim: true, correction: 0) + Eps).Sqrt().Detach();
        Remember(scope.Keep(mean), scope.Keep(std));
        var y = (x - mean) / std;
        if (Weight is not null) y = y * Weight + Bias!;
        return scope.Keep(y);
    }

    /// <summary>Maps y [B, H, C] back with the statistics of the last <see cref="Normalize"/>.</summary>
    public Tensor Denormalize(Tensor y)
    {
        if (_mean is null || _stdev is null) throw new InvalidOperationException("RevIn.Denormalize: call Normalize first");
        using var scope = new TensorScope();
        if (Weight is not null) y = (y - Bias!) / (Weight + Eps * Eps);
        return scope.Keep(y * _stdev + _mean);
    }

    private void Remember(Tensor mean, Tensor std)
    {
        _mean?.Dispose(); _stdev?.Dispose();
        (_mean, _stdev) = (mean, std);
    }

    /// <inheritdoc/>
    public override void Dispose() { _mean?.Dispose(); _stdev?.Dispose(); base.Dispose(); }
}

/// <summary>
/// Batch normalisation over the feature dim of [B, T, D] sequences, as PatchTST's
/// <c>nn.Sequential(Transpose(1,2), nn.BatchNorm1d(d_model), Transpose(1,2))</c>: statistics over every (b, t) per
/// feature, running mean/variance (momentum 0.1, unbiased running variance) for evaluation. Runs through the
/// fused <see cref="Tensor.BatchNorm2d"/> op on a [B·T, D, 1, 1] view of the rows: the same statistics (over every
/// (b, t) per feature) without the transposes, which made the op copy its input and gradient in and out.
/// </summary>
public sealed class SequenceBatchNorm : Module<Tensor, Tensor>
{
    /// <summary>A layer over <paramref name="features"/> features.</summary>
    public SequenceBatchNorm(int features, double eps = 1e-5, double momentum = 0.1, Device? device = null)
    {
        Eps = eps; Momentum = momentum;
        Weight = Parameter("weight", Tensor.Ones([features], DType.Float32, device));
        Bias = Parameter("bias", Tensor.Zeros([features], DType.Float32, device));
        RunningMean = Buffer("running_mean", Tensor.Zeros([features], DType.Float32, device));
        RunningVar = Buffer("running_var", Tensor.Ones([features], DType.Float32, device));
    }

    /// <summary>ε.</summary>
    public double Eps { get; }
    /// <summary>Running-statistics momentum.</summary>
    public double Momentum { get; }
    /// <summary>γ [D].</summary>
    public Tensor Weight { get; }
    /// <summary>β [D].</summary>
    public Tensor Bias { get; }
    /// <summary>Running mean [D].</summary>
    public Tensor RunningMean { get; }
    /// <summary>Running variance [D].</summary>
    public Tensor RunningVar { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x)
    {
        if (x.Rank != 3 || x.Size(2) != Weight.Size(0))
            throw new ArgumentException($"SequenceBatchNorm: input must be [B, T, {Weight.Size(0)}], got {Shape.Format(x.Shape)}");
        using var scope = new TensorScope();
        var rows = x.Reshape(x.Size(0) * x.Size(1), x.Size(2), 1, 1);
        var y = rows.BatchNorm2d(RunningMean, RunningVar, Weight, Bias, Training, Momentum, Eps);
        return scope.Keep(y.View(x.Size(0), x.Size(1), x.Size(2)));
    }
}
