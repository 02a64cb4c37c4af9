using System.Globalization;
using System.Text.Json;
using AttnCore.Models.IO;
using AttnCore.Models.Training;

namespace AttnCore.Models.Recommendation;

/// <summary>
/// A trained recommender in one safetensors file: the weights plus metadata naming the model
/// (<c>attncore.model</c>: sasrec or target-attention), its <see cref="SasRecConfig"/> as JSON and the epoch.
/// <see cref="Load"/> checks the metadata and the weights before returning a model, raising
/// <see cref="CheckpointFormatException"/> naming the file and the problem.
/// </summary>
public static class RecommenderCheckpoint
{
    private const string Reader = "Recommender checkpoint";


    /// <summary>The model names <see cref="Create"/> knows.</summary>
    public static readonly string[] Models = ["sasrec", "target-attention"];

    /// <summary>A fresh model named <paramref name="name"/> (one of <see cref="Models"/>).</summary>
    public static SelfAttentiveRecommender Create(string name, SasRecConfig config, Generator? generator = null, Device? device = null) => name switch
    {
        "sasrec" => new SasRec(config, generator, device),
        "target-attention" => new TargetAttentionRecommender(config, generator, device),
        _ => throw new ArgumentException($"Recommender: unknown model '{name}' (known: {string.Join(", ", Models)})"),
    };

    /// <summary>Writes <paramref name="model"/> to <paramref name="path"/> (atomically, through a temporary file).</summary>
    public static void Save(string path, SelfAttentiveRecommender model, int epoch) =>
        AtomicFile.Write(path, tmp => Safetensors.Save(tmp, model, new Dictionary<string, string>
        {
            ["attncore.model"] = model.Name,
            ["attncore.config"] = JsonSerializer.Serialize(model.Config),
            ["attncore.epoch"] = epoch.ToString(CultureInfo.InvariantCulture),
        }));

    /// <summary>Overload for the base type the trainer holds.</summary>
    public static void Save(string path, SequentialRecommender model, int epoch) =>
        Save(path, model as SelfAttentiveRecommender ?? throw new ArgumentException($"RecommenderCheckpoint: cannot save a {model.GetType().Name}"), epoch);

    /// <summary>Loads a model saved by <see cref="Save(string, SelfAttentiveRecommender, int)"/>, in evaluation mode, on <paramref name="device"/>.</summary>
    public static SelfAttentiveRecommender Load(string path, Device? device = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{Reader}: no checkpoint at '{path}'", path);
        CheckpointFormatException Bad(string problem, Exception? inner = null) => new(Reader, path, problem, inner);
        var (tensors, meta) = Safetensors.Load(path);
        try
        {
            if (!meta.TryGetValue("attncore.model", out var name) || !meta.TryGetValue("attncore.config", out var json))
                throw Bad("not a recommender checkpoint written by 'attncore train recommend' (no model/config metadata)");
            if (!Models.Contains(name)) throw Bad($"unknown model '{name}' (known: {string.Join(", ", Models)})");
            var config = CheckpointConfig.Read<SasRecConfig>(json, Reader, path);
            try { config.Check(); }
            catch (ArgumentException e) { throw Bad(e.Message, e); }
            // the item table alone is (Items + 1)·Dim weights: a config larger than the file cannot be honest
            long held = tensors.Values.Sum(t => t.Numel);
            if (((double)config.Items + 1 + config.MaxLength) * config.Dim > held)
                throw Bad($"the config {config} needs more weights than the file's {held}");
            var model = Create(name, config, new Generator(0), device);
            try
            {
                model.LoadStateDict(tensors);
                model.Eval();
                return model;
            }
            catch (ArgumentException e)
            {
                model.Dispose();
                throw Bad($"the weights do not fit the config: {e.Message}", e);
            }
        }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
    }
}
