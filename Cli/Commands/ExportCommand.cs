using System.CommandLine;
using AttnCore.Models.IO;
using AttnCore.Onnx;

namespace AttnCore.Cli.Commands;

/// <summary>
/// <c>attncore export --checkpoint model.safetensors --onnx model.onnx</c>: the model a checkpoint holds as an ONNX
/// model (opset 17, standard operators, dynamic batch). The checkpoint's <c>attncore.model</c> metadata picks the family:
/// GPT (tokens [batch, sequence] → logits, optionally with key/value cache inputs and outputs, --kv-cache), a vision
/// ResNet (image → logits, at the checkpoint's image size), a forecaster (x → forecast) or a recommender (history →
/// scores of every item, or of candidates with --candidates). See docs/onnx.md.
/// </summary>
public static class ExportCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create(CliIO io)
    {
        var ckpt = PathRule.ExistingFile("--checkpoint", "a checkpoint written by 'attncore train gpt', 'train vision', 'train forecast' or 'train recommend'");
        var onnx = PathRule.OutputFile("--onnx", "the ONNX file to write (replaced if it exists)");
        var cache = new Option<bool>("--kv-cache") { Description = "also take past_key_i/past_value_i and return present_key_i/present_value_i, for cached generation" };
        var candidates = new Option<bool>("--candidates") { Description = "recommenders: score the candidates [batch, candidates] given with the history instead of every item" };
        var json = new Option<bool>("--json") { Description = "print the result as one JSON object on the last line" };
        var cmd = new Command("export", "Export a checkpoint (GPT, vision, forecaster, recommender) to ONNX (opset 17, standard operators, dynamic batch)") { ckpt, onnx, cache, candidates, json };
        cmd.SetAction(p =>
        {
            string source = p.GetValue(ckpt)!, target = p.GetValue(onnx)!;
            bool withCache = p.GetValue(cache);
            string? kind;
            using (var file = new SafetensorsFile(source)) kind = file.Metadata.GetValueOrDefault("attncore.model");
            bool isGpt = kind is null or "gpt";
            string? misuse = withCache && !isGpt ? "--kv-cache is for GPT checkpoints"
                : p.GetValue(candidates) && kind is not ("sasrec" or "target-attention") ? "--candidates is for recommender checkpoints" : null;
            if (misuse is not null)
            {
                io.Err.WriteLine($"attncore: export: {misuse}; '{source}' holds a {kind ?? "gpt"} model (see 'attncore export --help')");
                return 2;
            }
            if (!isGpt) return ExportFamily.Run(io, kind!, source, target, p.GetValue(candidates), p.GetValue(json));
            var (model, vocab) = GptCheckpoint.Load(source, Device.Cpu);
            using (model)
            {
                int length = Math.Min(8, model.Config.BlockSize);
                using var sample = Tensor.Zeros([1, length], DType.Int64);
                var graph = OnnxExport.BuildGraph(model, new OnnxExportOptions(withCache), sample);
                // Token i is the i-th character of the vocabulary: what a user needs to encode a prompt.
                graph.Metadata("attncore.vocab", new string(vocab));
                graph.Save(target, $"GPT from '{Path.GetFileName(source)}' exported by attncore export");
                long bytes = new FileInfo(target).Length;
                io.Out.WriteLine($"wrote {target} ({bytes / 1024.0 / 1024.0:F2} MiB): GPT {model.Config.Layers} layers, {model.Config.Heads} heads, width {model.Config.Dim}, vocabulary {model.Config.Vocab}, block {model.Config.BlockSize}; ONNX opset {OnnxGraph.Opset}");
                io.Out.WriteLine($"  inputs  {string.Join(", ", graph.InputNames)}");
                io.Out.WriteLine($"  outputs {string.Join(", ", graph.OutputNames)}");
                if (p.GetValue(json))
                    io.Json(new
                    {
                        onnx = target, checkpoint = source, bytes, opset = OnnxGraph.Opset, kv_cache = withCache,
                        inputs = graph.InputNames.ToArray(), outputs = graph.OutputNames.ToArray(), ops = graph.OpTypes.Order(StringComparer.Ordinal).ToArray(),
                    });
            }
            return 0;
        });
        return cmd;
    }
}
