using System.Text.Json;
using AttnCore.Models.Nn;
using AttnCore.Models.Transformers;

namespace AttnCore.Onnx;

/// <summary>What to export besides the model's plain Forward.</summary>
/// <param name="KeyValueCache">
/// GPT only: the graph also takes the keys and values of earlier positions (<c>past_key_i</c>,
/// <c>past_value_i</c> [batch, heads, past_sequence, head_dim] per block) and returns them with the new
/// positions appended (<c>present_key_i</c>, <c>present_value_i</c>), so generation feeds one token per
/// step instead of recomputing the whole sequence. A past of length 0 makes it the plain prompt pass.
/// </param>
/// <param name="PaddingMasks">
/// Transformer only: the graph also takes <c>source_padding_mask</c> bool [batch, source_sequence] and
/// <c>target_padding_mask</c> bool [batch, target_sequence], true where a token is padding (the engine's key padding
/// masks), so batches of unequal lengths run padded.
/// </param>
public sealed record OnnxExportOptions(bool KeyValueCache = false, bool PaddingMasks = false);

/// <summary>
/// <c>module.ExportOnnx(path, sampleInputs)</c>: writes an ONNX model (opset <see cref="OnnxGraph.Opset"/>,
/// standard operators only, weights as initializers under their state-dict names, dynamic batch and sequence
/// axes) that computes the module's inference Forward (dropout off). Models are mapped by their own graph
/// builders (GPT, the encoder-decoder Transformer; others register with <see cref="RegisterModel{TModel}"/>),
/// single-input layers through the op-mapping table <see cref="OnnxLayers"/>. The sample inputs are checked
/// against what the graph declares (dtype, rank, sizes within the model's limits); anything without a mapping
/// fails with <see cref="NotSupportedException"/> naming it. The file is written to a temporary name and renamed.
/// </summary>
public static class OnnxExport
{
    private delegate OnnxGraph ModelBuilder(Module model, IReadOnlyList<Tensor> samples, OnnxExportOptions options);
    private static readonly Dictionary<Type, ModelBuilder> Builders = [];

    static OnnxExport()
    {
        RegisterModel<Gpt>(GptGraph);
        RegisterModel<Transformer>(TransformerGraph);
        OnnxVision.RegisterModels();
        OnnxForecasting.RegisterModels();
        OnnxRecommendation.RegisterModels();
    }

    /// <summary>Adds or replaces the graph builder of a model type.</summary>
    public static void RegisterModel<TModel>(Func<TModel, IReadOnlyList<Tensor>, OnnxExportOptions, OnnxGraph> builder) where TModel : Module
    {
        lock (Builders) Builders[typeof(TModel)] = (m, s, o) => builder((TModel)m, s, o);
    }

    /// <summary>The model types with a graph builder, by name.</summary>
    public static IReadOnlyList<string> SupportedModels
    {
        get { lock (Builders) return Builders.Keys.Select(t => t.Name).Order(StringComparer.Ordinal).ToArray(); }
    }

    /// <summary>Exports the module's inference Forward for inputs like <paramref name="sampleInputs"/> to <paramref name="path"/>.</summary>
    public static void ExportOnnx(this Module module, string path, params Tensor[] sampleInputs) => module.ExportOnnx(path, new OnnxExportOptions(), sampleInputs);

    /// <summary>Exports with <paramref name="options"/> (e.g. a GPT graph that carries a key/value cache).</summary>
    public static void ExportOnnx(this Module module, string path, OnnxExportOptions options, params Tensor[] sampleInputs)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var graph = BuildGraph(module, options, sampleInputs);
        graph.Save(path, $"{module.GetType().Name} exported by AttnCore for inputs shaped {string.Join(", ", sampleInputs.Select(s => Shape.Format(s.Shape)))}");
    }

    /// <summary>The graph <see cref="ExportOnnx(Module, string, OnnxExportOptions, Tensor[])"/> writes.</summary>
    public static OnnxGraph BuildGraph(Module module, OnnxExportOptions options, params Tensor[] sampleInputs)
    {
        ModelBuilder? builder;
        lock (Builders) Builders.TryGetValue(module.GetType(), out builder);
        if (builder is not null) return builder(module, sampleInputs, options);
        if (options.KeyValueCache) throw new NotSupportedException($"ONNX export: a key/value cache graph is exported for Gpt only, not for {module.GetType().Name}");
        if (options.PaddingMasks) throw new NotSupportedException($"ONNX export: padding mask inputs are exported for Transformer only, not for {module.GetType().Name}");
        if (OnnxLayers.IsSupported(module)) return LayerGraph(module, sampleInputs);
        throw new NotSupportedException($"ONNX export: {module.GetType().Name} has no ONNX mapping (models: {string.Join(", ", SupportedModels)}; layers: {string.Join(", ", OnnxLayers.Supported)})");
    }

    // A mapped layer alone: one input, every dim dynamic except the feature dim of a float input.
    private static OnnxGraph LayerGraph(Module layer, IReadOnlyList<Tensor> samples)
    {
        string name = layer.GetType().Name;
        if (samples.Count != 1) throw new ArgumentException($"ONNX export: {name} takes one input, got {samples.Count} sample inputs");
        var sample = samples[0];
        var type = sample.DType switch
        {
            DType.Float32 => OnnxGraph.ElementType.Float,
            DType.Int64 => OnnxGraph.ElementType.Int64,
            _ => throw new NotSupportedException($"ONNX export: {name}: sample input {Shape.Format(sample.Shape)} is {sample.DType}; inputs may be Float32 or Int64"),
        };
        var dims = sample.Shape.Select((d, i) => type == OnnxGraph.ElementType.Float && i == sample.Rank - 1 ? (object)d : $"dim{i}").ToArray();
        var g = new OnnxGraph(name);
        var input = g.Input("input", type, dims);
        g.Output(OnnxLayers.Emit(g, layer, name.ToLowerInvariant(), input), "output", OnnxGraph.ElementType.Float, null);
        return g;
    }

    private static void CheckTokens(string model, string what, Tensor t, long vocab, int maxLength)
    {
        if (t.DType != DType.Int64 || t.Rank != 2)
            throw new ArgumentException($"ONNX export: {model}: {what} must be Int64 [batch, sequence], got {t.DType} {Shape.Format(t.Shape)}");
        if (t.Size(1) > maxLength)
            throw new ArgumentException($"ONNX export: {model}: {what} {Shape.Format(t.Shape)} has {t.Size(1)} positions, more than the model's {maxLength}");
        var ids = t.ToArray<long>();
        if (ids.Length > 0 && (ids.Min() < 0 || ids.Max() >= vocab))
            throw new ArgumentException($"ONNX export: {model}: {what} holds ids in [{ids.Min()}, {ids.Max()}], outside the vocabulary [0, {vocab})");
    }

    /// <summary>
    /// GPT: tokens [batch, sequence] → logits [batch, sequence, vocab]. Token and position embeddings (Gather),
    /// pre-norm blocks (LayerNormalization, causal attention, GELU MLP), final norm, head tied to the token
    /// embedding (MatMul with its transpose; the table is stored once).
    /// </summary>
    private static OnnxGraph GptGraph(Gpt gpt, IReadOnlyList<Tensor> samples, OnnxExportOptions options)
    {
        var c = gpt.Config;
        if (options.PaddingMasks) throw new NotSupportedException("ONNX export: padding mask inputs are exported for Transformer only, not for Gpt (its Forward takes no mask)");
        if (samples.Count != 1) throw new ArgumentException($"ONNX export: Gpt takes one input (tokens [batch, sequence]), got {samples.Count} sample inputs");
        CheckTokens("Gpt", "tokens", samples[0], c.Vocab, c.BlockSize);
        int dh = c.Dim / c.Heads;
        var g = new OnnxGraph(options.KeyValueCache ? "gpt_with_cache" : "gpt");
        g.Metadata("attncore.config", JsonSerializer.Serialize(c));
        var tokens = g.Input("tokens", OnnxGraph.ElementType.Int64, "batch", "sequence");
        var pasts = new (string Key, string Value)[c.Layers];
        for (int i = 0; i < c.Layers && options.KeyValueCache; i++)
        {
            int kvHeads = gpt.Blocks[i].Attention.KvHeads;
            pasts[i] = (g.Input($"past_key_{i}", OnnxGraph.ElementType.Float, "batch", kvHeads, "past_sequence", dh),
                        g.Input($"past_value_{i}", OnnxGraph.ElementType.Float, "batch", kvHeads, "past_sequence", dh));
        }
        var wte = OnnxLayers.Child<Embedding>(gpt, "wte");
        var wpe = OnnxLayers.Child<LearnedPositionalEncoding>(gpt, "wpe");
        var h = OnnxLayers.Emit(g, wte, "wte", tokens);
        var offset = options.KeyValueCache ? g.Dim(pasts[0].Key, 2, "past_length") : g.IntScalar("position_start", 0);
        h = OnnxLayers.AddPositions(g, h, g.Weight(wpe.Weight, "wpe.weight"), offset, "embed");
        var presents = new (string Key, string Value)[c.Layers];
        for (int i = 0; i < c.Layers; i++)
        {
            var block = gpt.Blocks[i];
            string p = $"blocks.{i}";
            var a = OnnxLayers.Attention(g, block.Attention, p + ".attn", OnnxLayers.Emit(g, OnnxLayers.Child<LayerNorm>(block, "ln1"), p + ".ln1", h),
                null, causal: true, options.KeyValueCache ? pasts[i] : null, out presents[i]);
            h = g.Add(h, a, p + ".attn_residual");
            var m = OnnxLayers.Emit(g, OnnxLayers.Child<FeedForward>(block, "mlp"), p + ".mlp", OnnxLayers.Emit(g, OnnxLayers.Child<LayerNorm>(block, "ln2"), p + ".ln2", h));
            h = g.Add(h, m, p + ".mlp_residual");
        }
        h = OnnxLayers.Emit(g, OnnxLayers.Child<LayerNorm>(gpt, "ln_f"), "ln_f", h);
        var logits = g.MatMul(h, g.Transpose(g.Weight(wte.Weight, "wte.weight"), "wte.weight_t", 1, 0), "head");
        g.Output(logits, "logits", OnnxGraph.ElementType.Float, "batch", "sequence", c.Vocab);
        for (int i = 0; i < c.Layers && options.KeyValueCache; i++)
        {
            int kvHeads = gpt.Blocks[i].Attention.KvHeads;
            g.Output(presents[i].Key, $"present_key_{i}", OnnxGraph.ElementType.Float, "batch", kvHeads, "total_sequence", dh);
            g.Output(presents[i].Value, $"present_value_{i}", OnnxGraph.ElementType.Float, "batch", kvHeads, "total_sequence", dh);
        }
        return g;
    }

    /// <summary>
    /// The encoder-decoder Transformer: source [batch, source_sequence] and target [batch, target_sequence] →
    /// logits [batch, target_sequence, target_vocab] (teacher forcing; padding masks with <see cref="OnnxExportOptions.PaddingMasks"/>). Embeddings scaled by
    /// √D plus the sinusoidal table's rows, pre- or post-norm layers, causal self-attention and cross-attention
    /// in the decoder.
    /// </summary>
    private static OnnxGraph TransformerGraph(Transformer model, IReadOnlyList<Tensor> samples, OnnxExportOptions options)
    {
        var c = model.Config;
        if (options.KeyValueCache) throw new NotSupportedException("ONNX export: a key/value cache graph is exported for Gpt only, not for Transformer");
        if (samples.Count != 2) throw new ArgumentException($"ONNX export: Transformer takes two inputs (source [batch, source_sequence], target [batch, target_sequence]), got {samples.Count} sample inputs");
        CheckTokens("Transformer", "source", samples[0], c.SourceVocab, c.MaxLength);
        CheckTokens("Transformer", "target", samples[1], c.TargetVocab, c.MaxLength);
        if (samples[0].Size(0) != samples[1].Size(0))
            throw new ArgumentException($"ONNX export: Transformer: source {Shape.Format(samples[0].Shape)} and target {Shape.Format(samples[1].Shape)} differ in batch size");
        var g = new OnnxGraph("transformer");
        g.Metadata("attncore.config", JsonSerializer.Serialize(c));
        var source = g.Input("source", OnnxGraph.ElementType.Int64, "batch", "source_sequence");
        var target = g.Input("target", OnnxGraph.ElementType.Int64, "batch", "target_sequence");
        var sourcePadding = options.PaddingMasks ? g.Input("source_padding_mask", OnnxGraph.ElementType.Bool, "batch", "source_sequence") : null;
        var targetPadding = options.PaddingMasks ? g.Input("target_padding_mask", OnnxGraph.ElementType.Bool, "batch", "target_sequence") : null;
        var table = g.Weight(OnnxLayers.Child<SinusoidalPositionalEncoding>(model, "pos").Table, "pos.pe");
        var scale = g.Scalar("embed_scale", (float)Math.Sqrt(c.Dim));
        var start = g.IntScalar("position_start", 0);
        string Embed(string name, string ids) =>
            OnnxLayers.AddPositions(g, g.Mul(OnnxLayers.Emit(g, OnnxLayers.Child<Embedding>(model, name), name, ids), scale, name + ".scaled"), table, start, name + ".positions");
        string Norm(Module parent, string name, string prefix, string x) => OnnxLayers.Emit(g, OnnxLayers.Child<LayerNorm>(parent, name), prefix.Length == 0 ? name : $"{prefix}.{name}", x);

        var h = Embed("src_embed", source);
        for (int i = 0; i < model.EncoderLayers.Count; i++)
        {
            var layer = model.EncoderLayers[i];
            string p = $"encoder.{i}";
            var ff = OnnxLayers.Child<FeedForward>(layer, "ff");
            if (layer.PreNorm)
            {
                h = g.Add(h, OnnxLayers.Attention(g, layer.SelfAttention, p + ".attn", Norm(layer, "ln1", p, h), null, false, null, out _, sourcePadding), p + ".attn_residual");
                h = g.Add(h, OnnxLayers.Emit(g, ff, p + ".ff", Norm(layer, "ln2", p, h)), p + ".ff_residual");
            }
            else
            {
                h = Norm(layer, "ln1", p, g.Add(h, OnnxLayers.Attention(g, layer.SelfAttention, p + ".attn", h, null, false, null, out _, sourcePadding), p + ".attn_residual"));
                h = Norm(layer, "ln2", p, g.Add(h, OnnxLayers.Emit(g, ff, p + ".ff", h), p + ".ff_residual"));
            }
        }
        var memory = c.PreNorm ? Norm(model, "enc_norm", "", h) : h;

        h = Embed("tgt_embed", target);
        for (int i = 0; i < model.DecoderLayers.Count; i++)
        {
            var layer = model.DecoderLayers[i];
            string p = $"decoder.{i}";
            var ff = OnnxLayers.Child<FeedForward>(layer, "ff");
            if (layer.PreNorm)
            {
                h = g.Add(h, OnnxLayers.Attention(g, layer.SelfAttention, p + ".self_attn", Norm(layer, "ln1", p, h), null, true, null, out _, targetPadding), p + ".self_residual");
                h = g.Add(h, OnnxLayers.Attention(g, layer.CrossAttention, p + ".cross_attn", Norm(layer, "ln2", p, h), memory, false, null, out _, sourcePadding), p + ".cross_residual");
                h = g.Add(h, OnnxLayers.Emit(g, ff, p + ".ff", Norm(layer, "ln3", p, h)), p + ".ff_residual");
            }
            else
            {
                h = Norm(layer, "ln1", p, g.Add(h, OnnxLayers.Attention(g, layer.SelfAttention, p + ".self_attn", h, null, true, null, out _, targetPadding), p + ".self_residual"));
                h = Norm(layer, "ln2", p, g.Add(h, OnnxLayers.Attention(g, layer.CrossAttention, p + ".cross_attn", h, memory, false, null, out _, sourcePadding), p + ".cross_residual"));
                h = Norm(layer, "ln3", p, g.Add(h, OnnxLayers.Emit(g, ff, p + ".ff", h), p + ".ff_residual"));
            }
        }
        if (c.PreNorm) h = Norm(model, "dec_norm", "", h);
        var logits = OnnxLayers.Emit(g, OnnxLayers.Child<Linear>(model, "head"), "head", h);
        g.Output(logits, "logits", OnnxGraph.ElementType.Float, "batch", "target_sequence", c.TargetVocab);
        return g;
    }
}
