using AttnCore.Models.IO;
using AttnCore.Models.Transformers;

namespace AttnCore.Cli.Commands;

/// <summary>
/// Loads what <c>train gpt</c> saved: weights, config and vocabulary in one safetensors file. Everything is
/// checked before the model is built: the file (<see cref="Safetensors.Load"/>), the config JSON (exact
/// member names, sizes positive, heads dividing the width, dropout in [0, 1)), the vocabulary (as many
/// distinct characters as the config says), float32 weights, and a config no larger than the weights
/// the file holds (so a corrupted size cannot make it allocate more than the file). Any failure raises
/// <see cref="CheckpointFormatException"/> naming the file and the problem.
/// </summary>
internal static class GptCheckpoint
{
    private const string Reader = "GPT checkpoint";


    public static (Gpt Model, char[] Vocabulary) Load(string path, Device device)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"no checkpoint at '{path}'", path);
        CheckpointFormatException Bad(string problem, Exception? inner = null) => new(Reader, path, problem, inner);
        var (tensors, meta) = Safetensors.Load(path);
        try
        {
            if (!meta.TryGetValue("attncore.config", out var cfgJson) || !meta.TryGetValue("attncore.vocab", out var vocab))
                throw Bad("not a GPT checkpoint written by 'attncore train gpt' (no config/vocabulary metadata)");
            var cfg = CheckpointConfig.Read<GptConfig>(cfgJson, Reader, path);
            Check(cfg, vocab, tensors, Bad);
            var model = new Gpt(cfg, new Generator(0), device);
            try
            {
                model.LoadStateDict(tensors);
                model.Eval();
                return (model, vocab.ToCharArray());
            }
            catch (ArgumentException e)
            {
                model.Dispose();
                throw Bad($"the weights do not fit the config: {e.Message}", e);
            }
        }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
    }

    private static void Check(GptConfig c, string vocab, Dictionary<string, Tensor> tensors, Func<string, Exception?, CheckpointFormatException> bad)
    {
        if (c.Vocab < 1 || c.BlockSize < 1 || c.Layers < 1 || c.Heads < 1 || c.Dim < 1)
            throw bad($"the config {c} has a size below 1", null);
        if (c.Dim % c.Heads != 0) throw bad($"the config's width {c.Dim} is not a multiple of its {c.Heads} heads", null);
        if (!(c.Dropout is >= 0 and < 1)) throw bad($"the config's dropout {c.Dropout} is not in [0, 1)", null);
        if (vocab.Length != c.Vocab || vocab.Distinct().Count() != vocab.Length)
            throw bad($"the vocabulary has {vocab.Length} characters ({vocab.Distinct().Count()} distinct), the config says {c.Vocab}", null);
        if (tensors.FirstOrDefault(t => t.Value.DType != DType.Float32) is { Key: { } name, Value: { } odd })
            throw bad($"tensor '{name}' is {odd.DType}; a GPT's weights are Float32", null);
        // Embeddings plus 12·Dim² per block (qkv 3, projection 1, MLP 8) is less than the model's count.
        double atLeast = ((double)c.Vocab + c.BlockSize) * c.Dim + 12.0 * c.Layers * c.Dim * c.Dim;
        long held = tensors.Values.Sum(t => t.Numel);
        if (atLeast > held) throw bad($"the config {c} needs at least {atLeast:0} weights, the file holds {held}", null);
    }
}
