using AttnCore.Models.Nn;

namespace AttnCore.Models.TimeSeries;

/// <summary>
/// DLinear: Zeng, Chen, Zhang and Xu, "Are Transformers Effective for Time Series Forecasting?", AAAI 2023.
/// <para>
/// Decomposition (the paper's series_decomp): with an odd kernel k and p = (k-1)/2, the input is padded at both
/// ends by repeating its first and last row p times (edge replication) and averaged,
///   trend_t = (1/k) Σ_{j=-p..p} x_{clamp(t+j, 0, L-1)},   seasonal = x - trend.
/// Then one linear map along time per component, shared by every channel or one per channel (individual),
///   ŷ = W_s · seasonal + b_s + W_t · trend + b_t,   W: [H, L].
/// </para>
/// The moving average is a fixed [L, L] matrix A (A[t, s] = how many times s falls in t's padded window, / k), so
/// trend = x Aᵀ along time is one matrix product (its gradient g A). Shapes: x [B, L, C] → transposed [B, C, L] →
/// trend, seasonal [B, C, L] → [B, C, H] → [B, H, C]. Parameter names follow the paper's code with the per-channel
/// ModuleLists stacked: <c>Linear_Seasonal.weight</c> [H, L] (shared) or [C, H, L] (individual), likewise bias and trend.
/// </summary>
public sealed class DLinear : Forecaster
{
    private readonly Tensor _average;
    private readonly Linear? _seasonal, _trend;

    /// <summary>The model of <paramref name="config"/> (reads SeqLen, PredLen, Channels, MovingAverage, Individual).</summary>
    public DLinear(ForecasterConfig config, Generator? generator = null, Device? device = null) : base(config)
    {
        int k = config.MovingAverage, l = config.SeqLen, h = config.PredLen, c = config.Channels;
        if (k <= 0 || k % 2 == 0) throw new ArgumentException($"DLinear: the moving-average kernel must be a positive odd number, got {k}");
        var g = generator ?? Generator.Default;
        _average = Tensor.FromArray(MovingAverageMatrix(l, k), [l, l], device);
        if (config.Individual)
        {
            // torch.nn.Linear's default initialisation per channel: uniform ±1/sqrt(L) for weights and biases.
            SeasonalWeight = Parameter("Linear_Seasonal_weight", Init.KaimingUniform([c, h, l], l, g, device));
            SeasonalBias = Parameter("Linear_Seasonal_bias", Init.KaimingUniform([c, 1, h], l, g, device));
            TrendWeight = Parameter("Linear_Trend_weight", Init.KaimingUniform([c, h, l], l, g, device));
            TrendBias = Parameter("Linear_Trend_bias", Init.KaimingUniform([c, 1, h], l, g, device));
        }
        else
        {
            _seasonal = Child("Linear_Seasonal", new Linear(l, h, true, g, device));
            _trend = Child("Linear_Trend", new Linear(l, h, true, g, device));
        }
    }

    /// <summary>Individual mode: seasonal weights [C, H, L] (null when shared).</summary>
    public Tensor? SeasonalWeight { get; }
    /// <summary>Individual mode: seasonal biases [C, 1, H].</summary>
    public Tensor? SeasonalBias { get; }
    /// <summary>Individual mode: trend weights [C, H, L].</summary>
    public Tensor? TrendWeight { get; }
    /// <summary>Individual mode: trend biases [C, 1, H].</summary>
    public Tensor? TrendBias { get; }

    /// <summary>
    /// The moving average with edge replication as a row-major [L, L] matrix: row t holds 1/k at every s that
    /// clamp(t+j, 0, L-1) reaches for j in [-p, p] (several times at the edges).
    /// </summary>
    public static float[] MovingAverageMatrix(int length, int kernel)
    {
        int p = (kernel - 1) / 2;
        var a = new float[length * length];
        for (int t = 0; t < length; t++)
            for (int j = -p; j <= p; j++) a[t * length + Math.Clamp(t + j, 0, length - 1)] += 1f / kernel;
        return a;
    }

    /// <summary>The trend and seasonal parts of x [B, L, C], each [B, C, L] (channel-major, as the linear maps read them).</summary>
    public (Tensor Trend, Tensor Seasonal) Decompose(Tensor x)
    {
        CheckInput(x);
        using var series = x.Transpose(1, 2);
        using var averageT = _average.T;
        // [B·C, L] @ Aᵀ: one GEMM with the batch folded into its rows.
        var trend = series.MatMul(averageT);
        return (trend, series - trend);
    }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x, Tensor? xMark = null, Tensor? yMark = null)
    {
        using var scope = new TensorScope();
        var (t, s) = Decompose(x);
        Tensor y;
        if (_seasonal is not null) y = _seasonal.Forward(s) + _trend!.Forward(t);
        else
        {
            // [B, C, 1, L] @ [C, L, H] -> [B, C, 1, H]: one GEMM per channel, batched.
            var ys = s.Unsqueeze(2).MatMul(SeasonalWeight!.Transpose(1, 2)) + SeasonalBias!;
            var yt = t.Unsqueeze(2).MatMul(TrendWeight!.Transpose(1, 2)) + TrendBias!;
            y = (ys + yt).Squeeze(2);
        }
        return scope.Keep(y.Transpose(1, 2));
    }

    /// <inheritdoc/>
    public override void Dispose() { _average.Dispose(); base.Dispose(); }
}
