using AttnCore.Models.Nn;
using AttnCore.Models.TimeSeries;
using AttnCore.Models.Transformers;

namespace AttnCore.Onnx;

/// <summary>
/// ONNX export of the forecasters: x [batch, L, C] (scaled) → forecast [batch, H, C], batch dynamic, L and C the
/// model's (its linear maps are sized by them); the Transformer forecaster also takes x_mark [batch, L, F] and
/// y_mark [batch, labelLen + H, F]. Dropout is the identity and BatchNorm uses its running statistics.
/// <code>
///   DLinear         Transpose, Pad (mode edge, p = (k-1)/2 each end), AveragePool (k, stride 1): the trend;
///                   Sub: the seasonal part; MatMul + Add per component (shared), or MatMul with the [C, L, H]
///                   weights broadcast per channel (individual); Add; Transpose
///   PatchTST        RevIN (ReduceMean, Sqrt of the population variance + ε, Sub, Div, Mul γ, Add β); Transpose,
///                   Reshape to [B·C, L], Gather of the constant patch indices (end padding = the last step's
///                   index repeated), Reshape [B·C, N, P]; W_P (MatMul + Add), Add W_pos; post-norm layers with
///                   BatchNormalization over D (Transpose either side); Reshape, Transpose, Reshape (flatten
///                   d_model major), head, Transpose; RevIN⁻¹ (Sub β, Div (γ + ε²), Mul σ, Add μ)
///   iTransformer    ReduceMean, Sub, Sqrt(ReduceMean(x²) + 1e-5), Div; Transpose; embedding; post-norm encoder
///                   layers; LayerNormalization; projector; Transpose; Mul σ, Add μ
///   Transformer     circular width-3 "convolution": Slice + Concat of the rows before and after, MatMul;
///                   time features MatMul; sinusoidal positions (Range + Gather); encoder, LayerNormalization;
///                   decoder input Concat(Slice of the last labelLen rows, Expand of zeros [batch, H, C]); causal
///                   self-attention and cross-attention; LayerNormalization; projection; Slice of the last H rows
/// </code>
/// </summary>
public static class OnnxForecasting
{
    /// <summary>Registers the forecasting layers in <see cref="OnnxLayers"/> (called by its static constructor).</summary>
    internal static void RegisterLayers()
    {
        OnnxLayers.Register<SequenceBatchNorm>(SequenceBatchNorm);
    }

    /// <summary>Registers the forecaster graph builders in <see cref="OnnxExport"/> (called by its static constructor).</summary>
    internal static void RegisterModels()
    {
        OnnxExport.RegisterModel<DLinear>((m, s, o) => Graph(m, s, o, DLinearBody));
        OnnxExport.RegisterModel<PatchTst>((m, s, o) => Graph(m, s, o, PatchTstBody));
        OnnxExport.RegisterModel<ITransformer>((m, s, o) => Graph(m, s, o, ITransformerBody));
        OnnxExport.RegisterModel<TransformerForecaster>((m, s, o) => Graph(m, s, o, TransformerBody));
    }

    /// <summary>BatchNorm1d over the features of [B, T, D]: Transpose to [B, D, T], BatchNormalization, Transpose back.</summary>
    public static string SequenceBatchNorm(OnnxGraph g, SequenceBatchNorm bn, string path, string x)
    {
        var channelsFirst = g.Transpose(x, path + ".channels_first", 0, 2, 1);
        return g.Transpose(g.BatchNorm(channelsFirst, bn.Weight, bn.Bias, bn.RunningMean, bn.RunningVar, bn.Eps, path + ".norm"), path, 0, 2, 1);
    }

    /// <summary>A <see cref="TransformerEncoderLayer"/> (pre- or post-norm) on x [B, T, D], optionally with a key padding mask.</summary>
    public static string EncoderLayer(OnnxGraph g, TransformerEncoderLayer layer, string p, string h, string? keyPaddingMask = null)
    {
        string Norm(string name, string x) => OnnxLayers.Emit(g, OnnxLayers.Child<LayerNorm>(layer, name), $"{p}.{name}", x);
        string Attend(string x) => OnnxLayers.Attention(g, layer.SelfAttention, p + ".attn", x, null, false, null, out _, keyPaddingMask);
        string FeedForward(string x) => OnnxLayers.Emit(g, OnnxLayers.Child<FeedForward>(layer, "ff"), p + ".ff", x);
        if (layer.PreNorm)
        {
            h = g.Add(h, Attend(Norm("ln1", h)), p + ".attn_residual");
            return g.Add(h, FeedForward(Norm("ln2", h)), p + ".ff_residual");
        }
        h = Norm("ln1", g.Add(h, Attend(h), p + ".attn_residual"));
        return Norm("ln2", g.Add(h, FeedForward(h), p + ".ff_residual"));
    }

    /// <summary>A <see cref="TransformerDecoderLayer"/> on y [B, T, D]: causal self-attention, cross-attention to <paramref name="memory"/>, feed-forward.</summary>
    public static string DecoderLayer(OnnxGraph g, TransformerDecoderLayer layer, string p, string h, string memory, string? targetPaddingMask = null, string? memoryPaddingMask = null)
    {
        string Norm(string name, string x) => OnnxLayers.Emit(g, OnnxLayers.Child<LayerNorm>(layer, name), $"{p}.{name}", x);
        string Self(string x) => OnnxLayers.Attention(g, layer.SelfAttention, p + ".self_attn", x, null, true, null, out _, targetPaddingMask);
        string Cross(string x) => OnnxLayers.Attention(g, layer.CrossAttention, p + ".cross_attn", x, memory, false, null, out _, memoryPaddingMask);
        string FeedForward(string x) => OnnxLayers.Emit(g, OnnxLayers.Child<FeedForward>(layer, "ff"), p + ".ff", x);
        if (layer.PreNorm)
        {
            h = g.Add(h, Self(Norm("ln1", h)), p + ".self_residual");
            h = g.Add(h, Cross(Norm("ln2", h)), p + ".cross_residual");
            return g.Add(h, FeedForward(Norm("ln3", h)), p + ".ff_residual");
        }
        h = Norm("ln1", g.Add(h, Self(h), p + ".self_residual"));
        h = Norm("ln2", g.Add(h, Cross(h), p + ".cross_residual"));
        return Norm("ln3", g.Add(h, FeedForward(h), p + ".ff_residual"));
    }

    private delegate string Body<TModel>(OnnxGraph g, TModel model, string x, string? xMark, string? yMark);

    // The inputs every forecaster shares (x, and the calendar features when the model reads them), checked against
    // the samples, then the model's body and the forecast output.
    private static OnnxGraph Graph<TModel>(TModel model, IReadOnlyList<Tensor> samples, OnnxExportOptions options, Body<TModel> body) where TModel : Forecaster
    {
        var c = model.Config;
        string name = model.GetType().Name;
        if (options.KeyValueCache || options.PaddingMasks) throw new NotSupportedException($"ONNX export: {name} takes no key/value cache or padding masks");
        var expected = model.UsesTimeFeatures
            ? new (string Name, int Length, int Width)[] { ("x", c.SeqLen, c.Channels), ("x_mark", c.SeqLen, c.TimeFeatures), ("y_mark", c.LabelLen + c.PredLen, c.TimeFeatures) }
            : [("x", c.SeqLen, c.Channels)];
        if (samples.Count != expected.Length)
            throw new ArgumentException($"ONNX export: {name} takes {expected.Length} input(s) ({string.Join(", ", expected.Select(e => $"{e.Name} [batch, {e.Length}, {e.Width}]"))}), got {samples.Count} sample inputs");
        for (int i = 0; i < expected.Length; i++)
        {
            var (input, length, width) = expected[i];
            var s = samples[i];
            if (s.DType != DType.Float32 || s.Rank != 3 || s.Size(0) < 1 || s.Size(1) != length || s.Size(2) != width)
                throw new ArgumentException($"ONNX export: {name}: {input} must be Float32 [batch, {length}, {width}], got {s.DType} {Shape.Format(s.Shape)}");
            if (s.Size(0) != samples[0].Size(0))
                throw new ArgumentException($"ONNX export: {name}: {input} {Shape.Format(s.Shape)} and x {Shape.Format(samples[0].Shape)} differ in batch size");
        }
        var g = new OnnxGraph(c.Model);
        g.Metadata("attncore.config", c.ToJson());
        var names = expected.Select(e => g.Input(e.Name, OnnxGraph.ElementType.Float, "batch", e.Length, e.Width)).ToArray();
        var y = body(g, model, names[0], names.Length > 1 ? names[1] : null, names.Length > 2 ? names[2] : null);
        g.Output(y, "forecast", OnnxGraph.ElementType.Float, "batch", c.PredLen, c.Channels);
        return g;
    }

    private static string DLinearBody(OnnxGraph g, DLinear model, string x, string? xMark, string? yMark)
    {
        var c = model.Config;
        int p = (c.MovingAverage - 1) / 2;
        var series = g.Transpose(x, "series", 0, 2, 1);                                     // [B, C, L]
        // series_decomp: repeat the first and last steps p times, then a moving average of width k.
        var padded = g.Node("Pad", [series, g.Ints("decomp.pads", 0, 0, p, 0, 0, p)], "decomp.padded", OnnxGraph.Attribute.String("mode", "edge"));
        var trend = g.Node("AveragePool", [padded], "decomp.trend", OnnxGraph.Attribute.Ints("kernel_shape", c.MovingAverage), OnnxGraph.Attribute.Ints("strides", 1));
        var seasonal = g.Sub(series, trend, "decomp.seasonal");
        string y;
        if (!c.Individual)
            y = g.Add(OnnxLayers.Emit(g, OnnxLayers.Child<Linear>(model, "Linear_Seasonal"), "Linear_Seasonal", seasonal),
                      OnnxLayers.Emit(g, OnnxLayers.Child<Linear>(model, "Linear_Trend"), "Linear_Trend", trend), "components");
        else
        {
            // [B, C, 1, L] @ [C, L, H] + [C, 1, H]: each channel's own map, broadcast over the batch.
            string PerChannel(string part, Tensor weight, Tensor bias, string name) =>
                g.Add(g.MatMul(g.Unsqueeze(part, name + ".rows", 2), g.Transpose(g.Weight(weight, name + "_weight"), name + "_weight_t", 0, 2, 1), name + ".matmul"), g.Weight(bias, name + "_bias"), name);
            var sum = g.Add(PerChannel(seasonal, model.SeasonalWeight!, model.SeasonalBias!, "Linear_Seasonal"), PerChannel(trend, model.TrendWeight!, model.TrendBias!, "Linear_Trend"), "components");
            y = g.Squeeze(sum, "components_rows", 2);
        }
        return g.Transpose(y, "forecast_t", 0, 2, 1);
    }

    private static string PatchTstBody(OnnxGraph g, PatchTst model, string x, string? xMark, string? yMark)
    {
        var c = model.Config;
        var revin = OnnxLayers.Child<RevIn>(model, "revin_layer");
        var (mean, centered, std) = g.MeanAndStd(x, 1, revin.Eps, "revin");
        var normalized = g.Div(centered, std, "revin.normalized");
        if (revin.Weight is not null)
            normalized = g.Add(g.Mul(normalized, g.Weight(revin.Weight, "revin_layer.affine_weight"), "revin.scaled"), g.Weight(revin.Bias!, "revin_layer.affine_bias"), "revin.affine");
        var series = g.Reshape(g.Transpose(normalized, "series_t", 0, 2, 1), "series", -1, c.SeqLen);   // [B·C, L]
        // Patch n covers steps nS .. nS+P-1; steps past the end repeat the last one (the end padding).
        var index = new long[model.PatchCount * c.PatchLen];
        for (int n = 0; n < model.PatchCount; n++)
            for (int j = 0; j < c.PatchLen; j++) index[n * c.PatchLen + j] = Math.Min(n * c.Stride + j, c.SeqLen - 1);
        var patches = g.Reshape(g.Gather(series, g.Ints("patch_index", index), "patch_steps", axis: 1), "patches", -1, model.PatchCount, c.PatchLen);
        var u = g.Add(OnnxLayers.Emit(g, OnnxLayers.Child<Linear>(model, "W_P"), "W_P", patches), g.Weight(model.PositionalEncoding, "W_pos"), "embedded");
        string? scores = null;   // residual attention: the previous layer's pre-softmax scores
        for (int i = 0; i < model.Layers.Count; i++)
        {
            var layer = model.Layers[i];
            string p = $"layers.{i}";
            var attended = OnnxLayers.Attention(g, layer.SelfAttention, p + ".self_attn", u, null, false, null, out _, out var layerScores, null, c.ResAttention ? scores : null);
            scores = layerScores;
            var z = g.Add(u, attended, p + ".attn_residual");
            z = OnnxLayers.Emit(g, OnnxLayers.Child<SequenceBatchNorm>(layer, "norm_attn"), p + ".norm_attn", z);
            var ff = g.Add(z, OnnxLayers.Emit(g, OnnxLayers.Child<FeedForward>(layer, "ff"), p + ".ff", z), p + ".ff_residual");
            u = OnnxLayers.Emit(g, OnnxLayers.Child<SequenceBatchNorm>(layer, "norm_ffn"), p + ".norm_ffn", ff);
        }
        // [B·C, N, D] -> [B, C, D, N] -> [B, C, D·N]: flattened d_model major, as the head was trained.
        var grid = g.Transpose(g.Reshape(u, "encoded", -1, c.Channels, model.PatchCount, c.DModel), "encoded_t", 0, 1, 3, 2);
        var flat = g.Reshape(grid, "flat", -1, c.Channels, (long)c.DModel * model.PatchCount);
        var y = g.Transpose(OnnxLayers.Emit(g, OnnxLayers.Child<Linear>(model, "head"), "head", flat), "head_t", 0, 2, 1);
        if (revin.Weight is not null)
            y = g.Div(g.Sub(y, g.Weight(revin.Bias!, "revin_layer.affine_bias"), "revin.unshifted"),
                      g.Add(g.Weight(revin.Weight, "revin_layer.affine_weight"), g.Scalar("revin.eps2", (float)(revin.Eps * revin.Eps)), "revin.gamma_eps"), "revin.unscaled");
        return g.Add(g.Mul(y, std, "revin.times_std"), mean, "revin.denormalized");
    }

    private static string ITransformerBody(OnnxGraph g, ITransformer model, string x, string? xMark, string? yMark)
    {
        var (mean, centered, std) = g.MeanAndStd(x, 1, 1e-5, "normalize");
        var tokens = g.Transpose(g.Div(centered, std, "normalized"), "variates", 0, 2, 1);            // [B, C, L]
        var h = OnnxLayers.Emit(g, OnnxLayers.Child<Linear>(model, "enc_embedding"), "enc_embedding", tokens);
        for (int i = 0; i < model.Layers.Count; i++) h = EncoderLayer(g, model.Layers[i], $"layers.{i}", h);
        h = OnnxLayers.Emit(g, OnnxLayers.Child<LayerNorm>(model, "norm"), "norm", h);
        var y = g.Transpose(OnnxLayers.Emit(g, OnnxLayers.Child<Linear>(model, "projector"), "projector", h), "projector_t", 0, 2, 1);
        return g.Add(g.Mul(y, std, "times_std"), mean, "denormalized");
    }

    private static string TransformerBody(OnnxGraph g, TransformerForecaster model, string x, string? xMark, string? yMark)
    {
        var c = model.Config;
        var table = g.Weight(OnnxLayers.Child<SinusoidalPositionalEncoding>(model, "position").Table, "position.pe");
        var start = g.IntScalar("position_start", 0);
        // DataEmbedding: the circular width-3 convolution as a linear map of [x_{t-1}, x_t, x_{t+1}] (wrapping round),
        // plus the linear map of the calendar features, plus the sinusoidal positions.
        string Embed(string prefix, string series, int length, string mark)
        {
            var previous = g.Concat([g.Slice(series, prefix + ".last", 1, length - 1, length), g.Slice(series, prefix + ".head", 1, 0, length - 1)], prefix + ".previous", 1);
            var next = g.Concat([g.Slice(series, prefix + ".tail", 1, 1, length), g.Slice(series, prefix + ".first", 1, 0, 1)], prefix + ".next", 1);
            var window = g.Concat([previous, series, next], prefix + ".window", 2);
            var value = OnnxLayers.Emit(g, OnnxLayers.Child<Linear>(model, prefix + "_value"), prefix + "_value", window);
            var time = OnnxLayers.Emit(g, OnnxLayers.Child<Linear>(model, prefix + "_time"), prefix + "_time", mark);
            return OnnxLayers.AddPositions(g, g.Add(value, time, prefix + ".embedded"), table, start, prefix + ".positions");
        }
        var memory = Embed("enc", x, c.SeqLen, xMark!);
        var encoder = OnnxLayers.Child<ModuleList<TransformerEncoderLayer>>(model, "encoder");
        for (int i = 0; i < encoder.Count; i++) memory = EncoderLayer(g, encoder[i], $"encoder.{i}", memory);
        memory = OnnxLayers.Emit(g, OnnxLayers.Child<LayerNorm>(model, "enc_norm"), "enc_norm", memory);
        // The decoder starts from the last labelLen known rows followed by H rows of zeros.
        var zeros = g.BatchOf(x, g.Floats("decoder.zero", [0f], 1, 1, 1), "decoder.zeros", c.PredLen, c.Channels);
        var decoderInput = c.LabelLen > 0 ? g.Concat([g.Slice(x, "decoder.known", 1, c.SeqLen - c.LabelLen, c.SeqLen), zeros], "decoder.input", 1) : zeros;
        var y = Embed("dec", decoderInput, c.LabelLen + c.PredLen, yMark!);
        var decoder = OnnxLayers.Child<ModuleList<TransformerDecoderLayer>>(model, "decoder");
        for (int i = 0; i < decoder.Count; i++) y = DecoderLayer(g, decoder[i], $"decoder.{i}", y, memory);
        y = OnnxLayers.Emit(g, OnnxLayers.Child<Linear>(model, "projection"), "projection", OnnxLayers.Emit(g, OnnxLayers.Child<LayerNorm>(model, "dec_norm"), "dec_norm", y));
        return g.Slice(y, "horizon", 1, c.LabelLen, c.LabelLen + c.PredLen);
    }
}
