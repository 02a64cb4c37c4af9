using System.Globalization;
using System.Text.Json;
using AttnCore.Models.Data.Vision;
using AttnCore.Models.IO;
using AttnCore.Models.Vision;

namespace AttnCore.Cli.Commands;

/// <summary>
/// The model file of <c>train vision</c>: the ResNet's weights in safetensors with what <c>classify</c> needs to use
/// them in the metadata: the model name, the input shape [C, H, W], the class names and the normalisation.
/// </summary>
internal static class VisionCheckpoint
{
    private const string Reader = "vision checkpoint";

    public static void Save(string path, ResNet model, string modelName, ImageSet train, Normalization norm, int epochs) =>
        Safetensors.Save(path, model, new Dictionary<string, string>
        {
            ["attncore.model"] = "vision",
            ["attncore.vision.model"] = modelName,
            ["attncore.vision.input"] = JsonSerializer.Serialize(new[] { train.Channels, train.Height, train.Width }),
            ["attncore.vision.classes"] = JsonSerializer.Serialize(train.ClassNames),
            ["attncore.vision.mean"] = JsonSerializer.Serialize(norm.Mean),
            ["attncore.vision.std"] = JsonSerializer.Serialize(norm.Std),
            ["attncore.vision.epochs"] = epochs.ToString(CultureInfo.InvariantCulture),
        });

    public sealed record Loaded(ResNet Model, string ModelName, int Channels, int Height, int Width, string[] Classes, Normalization Normalization);

    public static Loaded Load(string path, Device device)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"no checkpoint at '{path}'", path);
        CheckpointFormatException Bad(string problem, Exception? inner = null) => new(Reader, path, problem, inner);
        var (tensors, meta) = Safetensors.Load(path);
        try
        {
            string Need(string key) => meta.TryGetValue(key, out var v) ? v
                : throw Bad($"not a vision checkpoint written by 'attncore train vision' (no {key} metadata)");
            T Json<T>(string key)
            {
                try { return JsonSerializer.Deserialize<T>(Need(key)) ?? throw Bad($"{key} is null"); }
                catch (JsonException e) { throw Bad($"{key} is not valid ({e.Message})", e); }
            }
            string name = Need("attncore.vision.model");
            var input = Json<int[]>("attncore.vision.input");
            var classes = Json<string[]>("attncore.vision.classes");
            var norm = new Normalization(Json<double[]>("attncore.vision.mean"), Json<double[]>("attncore.vision.std"));
            if (input.Length != 3 || input.Any(d => d < 1)) throw Bad($"the input shape [{string.Join(",", input)}] is not a positive [C,H,W]");
            if (classes.Length < 1) throw Bad("no class names");
            try { norm.Check(input[0], Reader); }
            catch (ArgumentException e) { throw Bad(e.Message, e); }
            ResNet model;
            try { model = VisionModels.Create(name, input[0], classes.Length, new Generator(0), device); }
            catch (ArgumentException e) { throw Bad(e.Message, e); }
            try
            {
                model.LoadStateDict(tensors);
                model.Eval();
                return new Loaded(model, name, input[0], input[1], input[2], classes, norm);
            }
            catch (ArgumentException e)
            {
                model.Dispose();
                throw Bad($"the weights do not fit {name} with {classes.Length} classes: {e.Message}", e);
            }
        }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
    }
}
