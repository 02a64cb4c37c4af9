using System.Text.Json;
using AttnCore.Models.Nn;
using AttnCore.Models.Recommendation;
using AttnCore.Models.TimeSeries;
using AttnCore.Onnx;

namespace AttnCore.Cli.Commands;

/// <summary>
/// <c>attncore export</c> for the vision, forecasting and recommendation checkpoints: each is loaded by its own
/// checked reader (<see cref="VisionCheckpoint"/>, <see cref="ForecastCheckpoint"/>, <see cref="RecommenderCheckpoint"/>),
/// exported for zero-valued sample inputs of batch 1 (the graph's batch axis is dynamic), and the metadata a
/// consumer needs to prepare inputs and read outputs (class names and normalisation; columns and scaler) is stored
/// in the ONNX file.
/// </summary>
internal static class ExportFamily
{
    /// <summary>Exports the <paramref name="kind"/> checkpoint at <paramref name="source"/> to <paramref name="target"/>; returns the exit code.</summary>
    public static int Run(CliIO io, string kind, string source, string target, bool candidates, bool json)
    {
        var (model, samples, describe, metadata) = kind switch
        {
            "vision" => Vision(source),
            "forecaster" => Forecast(source),
            "sasrec" or "target-attention" => Recommender(source, candidates),
            _ => throw new InvalidDataException($"export: '{source}' holds a '{kind}' model; attncore export takes GPT, vision, forecaster and recommender (sasrec, target-attention) checkpoints"),
        };
        using (model)
        {
            try
            {
                var graph = OnnxExport.BuildGraph(model, new OnnxExportOptions(), samples);
                foreach (var (key, value) in metadata) graph.Metadata(key, value);
                graph.Save(target, $"{describe} from '{Path.GetFileName(source)}' exported by attncore export");
                long bytes = new FileInfo(target).Length;
                io.Out.WriteLine($"wrote {target} ({bytes / 1024.0 / 1024.0:F2} MiB): {describe}; ONNX opset {OnnxGraph.Opset}");
                io.Out.WriteLine($"  inputs  {string.Join(", ", graph.InputNames)}");
                io.Out.WriteLine($"  outputs {string.Join(", ", graph.OutputNames)}");
                if (json)
                    io.Json(new
                    {
                        onnx = target, checkpoint = source, model = kind, bytes, opset = OnnxGraph.Opset, kv_cache = false,
                        inputs = graph.InputNames.ToArray(), outputs = graph.OutputNames.ToArray(), ops = graph.OpTypes.Order(StringComparer.Ordinal).ToArray(),
                    });
            }
            finally { foreach (var s in samples) s.Dispose(); }
        }
        return 0;
    }

    private static (Module, Tensor[], string, Dictionary<string, string>) Vision(string source)
    {
        var loaded = VisionCheckpoint.Load(source, Device.Cpu);
        var sample = Tensor.Zeros([1, loaded.Channels, loaded.Height, loaded.Width], DType.Float32);
        var metadata = new Dictionary<string, string>
        {
            ["attncore.vision.model"] = loaded.ModelName,
            ["attncore.vision.classes"] = JsonSerializer.Serialize(loaded.Classes),
            ["attncore.vision.mean"] = JsonSerializer.Serialize(loaded.Normalization.Mean),
            ["attncore.vision.std"] = JsonSerializer.Serialize(loaded.Normalization.Std),
        };
        return (loaded.Model, [sample], $"{loaded.ModelName}, image [batch, {loaded.Channels}, {loaded.Height}, {loaded.Width}] → logits of {loaded.Classes.Length} classes", metadata);
    }

    private static (Module, Tensor[], string, Dictionary<string, string>) Forecast(string source)
    {
        var (model, info) = ForecastCheckpoint.Load(source, Device.Cpu);
        var c = model.Config;
        Tensor[] samples = model.UsesTimeFeatures
            ? [Tensor.Zeros([1, c.SeqLen, c.Channels], DType.Float32), Tensor.Zeros([1, c.SeqLen, c.TimeFeatures], DType.Float32), Tensor.Zeros([1, c.LabelLen + c.PredLen, c.TimeFeatures], DType.Float32)]
            : [Tensor.Zeros([1, c.SeqLen, c.Channels], DType.Float32)];
        // The scaler and columns: inputs are scaled as (value - mean) / scale per channel, forecasts scaled back.
        var metadata = new Dictionary<string, string> { ["attncore.forecast"] = JsonSerializer.Serialize(info) };
        return (model, samples, $"{c.Model}, x [batch, {c.SeqLen}, {c.Channels}] → forecast [batch, {c.PredLen}, {c.Channels}]", metadata);
    }

    private static (Module, Tensor[], string, Dictionary<string, string>) Recommender(string source, bool candidates)
    {
        var model = RecommenderCheckpoint.Load(source, Device.Cpu);
        var c = model.Config;
        Tensor[] samples = candidates
            ? [Tensor.Zeros([1, c.MaxLength], DType.Int64), Tensor.Ones([1, 1], DType.Int64)]
            : [Tensor.Zeros([1, c.MaxLength], DType.Int64)];
        string scores = candidates ? "scores [batch, candidates] of candidates [batch, candidates]" : $"scores [batch, {c.Items + 1}] of every item id";
        return (model, samples, $"{model.Name}, history [batch, {c.MaxLength}] → {scores}", []);
    }
}
