using System.Text.Json;
using AttnCore.Models.IO;
using AttnCore.Models.Transformers;

namespace AttnCore.Cli.Commands;

/// <summary>Loads what <c>train gpt</c> saved: weights, config and vocabulary in one safetensors file.</summary>
internal static class GptCheckpoint
{
    public static (Gpt Model, char[] Vocabulary) Load(string path, Device device)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"no checkpoint at '{path}'", path);
        var (tensors, meta) = Safetensors.Load(path);
        try
        {
            if (!meta.TryGetValue("attncore.config", out var cfgJson) || !meta.TryGetValue("attncore.vocab", out var vocab))
                throw new InvalidDataException($"'{path}' is not a GPT checkpoint written by 'attncore train gpt' (no config/vocabulary metadata)");
            var cfg = JsonSerializer.Deserialize<GptConfig>(cfgJson) ?? throw new InvalidDataException($"'{path}': unreadable config");
            var model = new Gpt(cfg, new Generator(0), device);
            model.LoadStateDict(tensors);
            model.Eval();
            return (model, vocab.ToCharArray());
        }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
    }
}
