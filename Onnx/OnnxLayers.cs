using AttnCore.Models.Nn;

namespace AttnCore.Onnx;

/// <summary>
/// Writes one layer's Forward into a graph: the layer, its module path (the prefix of its weights' names),
/// and the name of its input value; returns the name of its output value.
/// </summary>
public delegate string OnnxLayerMapping<in TLayer>(OnnxGraph graph, TLayer layer, string path, string input) where TLayer : Module;

/// <summary>
/// The op-mapping table: how each single-input layer is written with standard ONNX operators. Model
/// exporters (<see cref="OnnxExport"/>) compose these; a model family added later registers its layers
/// here (<see cref="Register{TLayer}"/>) instead of changing the exporter. A layer type that is not in the
/// table fails the export with <see cref="NotSupportedException"/> naming the layer and its path.
/// </summary>
public static class OnnxLayers
{
    private static readonly Dictionary<Type, OnnxLayerMapping<Module>> Table = [];

    static OnnxLayers()
    {
        Register<Linear>(Linear);
        Register<LayerNorm>(LayerNorm);
        Register<Embedding>((g, e, path, ids) => g.Gather(g.Weight(e.Weight, path + ".weight"), ids, path));
        // Inference graphs: dropout is the identity (as in Eval mode).
        Register<Dropout>((g, _, path, x) => g.Node("Identity", [x], path));
        Register<FeedForward>(FeedForward);
        OnnxVision.RegisterLayers();
        OnnxForecasting.RegisterLayers();
    }

    /// <summary>Adds or replaces the mapping of <typeparamref name="TLayer"/>.</summary>
    public static void Register<TLayer>(OnnxLayerMapping<TLayer> mapping) where TLayer : Module
    {
        lock (Table) Table[typeof(TLayer)] = (g, layer, path, input) => mapping(g, (TLayer)layer, path, input);
    }

    /// <summary>The layer types the table maps, by name.</summary>
    public static IReadOnlyList<string> Supported
    {
        get { lock (Table) return Table.Keys.Select(t => t.Name).Order(StringComparer.Ordinal).ToArray(); }
    }

    /// <summary>Whether <paramref name="layer"/>'s type has a mapping.</summary>
    public static bool IsSupported(Module layer) { lock (Table) return Table.ContainsKey(layer.GetType()); }

    /// <summary>Writes <paramref name="layer"/> applied to <paramref name="input"/>; returns the output's name.</summary>
    /// <exception cref="NotSupportedException">The layer's type has no mapping.</exception>
    public static string Emit(OnnxGraph graph, Module layer, string path, string input)
    {
        OnnxLayerMapping<Module>? mapping;
        lock (Table) Table.TryGetValue(layer.GetType(), out mapping);
        if (mapping is null)
            throw new NotSupportedException($"ONNX export: module '{path}' of type {layer.GetType().Name} has no ONNX mapping (mapped layers: {string.Join(", ", Supported)}; models: {string.Join(", ", OnnxExport.SupportedModels)})");
        return mapping(graph, layer, path, input);
    }

    /// <summary>The child module <paramref name="name"/> of <paramref name="parent"/> as a <typeparamref name="T"/>.</summary>
    public static T Child<T>(Module parent, string name) where T : Module =>
        parent.NamedChildren().FirstOrDefault(c => c.Name == name).Module as T
        ?? throw new NotSupportedException($"ONNX export: {parent.GetType().Name} has no child '{name}' of type {typeof(T).Name}; its structure is not the one the exporter maps");

    /// <summary>y = x Wᵀ + b: MatMul with the transposed [out, in] weight (ONNX Runtime folds the Transpose), then Add.</summary>
    public static string Linear(OnnxGraph g, Linear layer, string path, string x)
    {
        var wt = g.Transpose(g.Weight(layer.Weight, path + ".weight"), path + ".weight_t", 1, 0);
        var y = g.MatMul(x, wt, layer.Bias is null ? path : path + ".matmul");
        return layer.Bias is null ? y : g.Add(y, g.Weight(layer.Bias, path + ".bias"), path);
    }

    /// <summary>LayerNormalization (opset 17) over the last dim; without affine weights the scale is a constant 1.</summary>
    public static string LayerNorm(OnnxGraph g, LayerNorm layer, string path, string x)
    {
        var scale = layer.Weight is null ? g.Floats(path + ".ones", Enumerable.Repeat(1f, layer.Dim).ToArray(), layer.Dim) : g.Weight(layer.Weight, path + ".weight");
        var bias = layer.Bias is null ? null : g.Weight(layer.Bias, path + ".bias");
        return g.LayerNorm(x, scale, bias, layer.Eps, path);
    }

    /// <summary>Linear → GELU (erf, expanded) or ReLU → Linear; dropout is the identity.</summary>
    public static string FeedForward(OnnxGraph g, FeedForward layer, string path, string x)
    {
        var h = Linear(g, Child<Linear>(layer, "fc"), path + ".fc", x);
        h = layer.UsesRelu ? g.Node("Relu", [h], path + ".relu") : g.Gelu(h, path + ".gelu");
        return Linear(g, layer.Projection, path + ".proj", h);
    }

    /// <summary>
    /// Multi-head attention with standard operators: the packed (or q and kv) projections, Split into q, k, v,
    /// Reshape + Transpose to [B, heads, T, Dh], MatMul for the scores, Mul by 1/√Dh, the causal mask as
    /// Where(Trilu(...), scores, -inf), Softmax, MatMul with v, and the heads merged back before the output
    /// projection. With <paramref name="past"/> (key/value cache inputs [B, Hkv, P, Dh]) the new keys and values
    /// are appended to the past ones (Concat) and returned in <paramref name="present"/>. Grouped-query heads
    /// are matched by broadcasting q [B, Hkv, G, Tq, Dh] against k [B, Hkv, 1, Tk, Dh], so K and V are not copied.
    /// <paramref name="keyPaddingMask"/> (bool [B, Tk], true hides the key) joins the causal mask; a query left with
    /// no key gets zero weights (Where after the Softmax), the engine's convention, where a bare Softmax gives NaN.
    /// </summary>
    public static string Attention(OnnxGraph g, MultiHeadAttention attn, string path, string x, string? memory, bool causal,
        (string Key, string Value)? past, out (string Key, string Value) present, string? keyPaddingMask = null)
        => Attention(g, attn, path, x, memory, causal, past, out present, out _, keyPaddingMask, previousScores: null);

    /// <summary>
    /// <see cref="Attention(OnnxGraph, MultiHeadAttention, string, string, string?, bool, ValueTuple{string, string}?, out ValueTuple{string, string}, string?)"/>
    /// with residual attention (<see cref="MultiHeadAttention.ForwardResidual"/>): <paramref name="previousScores"/>, when
    /// given, is added to the scaled scores before any mask, and <paramref name="scores"/> names that sum for the next layer.
    /// </summary>
    public static string Attention(OnnxGraph g, MultiHeadAttention attn, string path, string x, string? memory, bool causal,
        (string Key, string Value)? past, out (string Key, string Value) present, out string scores, string? keyPaddingMask, string? previousScores)
    {
        if (attn.IsCrossAttention != memory is not null)
            throw new ArgumentException($"ONNX export: attention '{path}' is {(attn.IsCrossAttention ? "cross" : "self")}-attention but was given {(memory is null ? "no" : "a")} memory");
        int dh = attn.Dim / attn.Heads, kvDim = attn.KvHeads * dh, groups = attn.Heads / attn.KvHeads;
        string q, k, v;
        if (attn.IsCrossAttention)
        {
            q = Linear(g, Child<Linear>(attn, "q"), path + ".q", x);
            var kv = Linear(g, Child<Linear>(attn, "kv"), path + ".kv", memory!);
            var s = g.SplitLast(kv, path + ".kv_split", kvDim, kvDim);
            (k, v) = (s[0], s[1]);
        }
        else
        {
            var qkv = Linear(g, Child<Linear>(attn, "qkv"), path + ".qkv", x);
            var s = g.SplitLast(qkv, path + ".qkv_split", attn.Dim, kvDim, kvDim);
            (q, k, v) = (s[0], s[1], s[2]);
        }
        // [B, T, n·Dh] -> [B, n, T, Dh]
        string Heads(string t, int n, string name) => g.Transpose(g.Reshape(t, $"{path}.{name}_heads", 0, 0, n, dh), $"{path}.{name}", 0, 2, 1, 3);
        (q, k, v) = (Heads(q, attn.Heads, "query"), Heads(k, attn.KvHeads, "key"), Heads(v, attn.KvHeads, "value"));
        if (past is { } p)
        {
            k = g.Concat([p.Key, k], path + ".present_key", 2);
            v = g.Concat([p.Value, v], path + ".present_value", 2);
        }
        present = (k, v);
        long[] swapLast = [0, 1, 3, 2];
        if (groups > 1)
        {
            q = g.Reshape(q, path + ".query_groups", 0, attn.KvHeads, groups, -1, dh);
            k = g.Unsqueeze(k, path + ".key_groups", 2);
            v = g.Unsqueeze(v, path + ".value_groups", 2);
            swapLast = [0, 1, 2, 4, 3];
        }
        scores = g.Mul(g.MatMul(q, g.Transpose(k, path + ".key_t", swapLast), path + ".qk"), g.Scalar(path + ".scale", (float)(1 / Math.Sqrt(dh))), path + ".scores");
        if (previousScores is not null) scores = g.Add(scores, previousScores, path + ".residual_scores");
        var unmasked = scores;
        string? keep = causal ? g.CausalMask(scores, path + ".causal") : null;
        if (keyPaddingMask is not null)
        {
            // [B, Tk] -> [B, 1, 1, Tk] (or [B, 1, 1, 1, Tk] with grouped heads), true where the key is visible.
            var visible = g.Node("Not", [keyPaddingMask], path + ".visible");
            visible = g.Unsqueeze(visible, path + ".visible_keys", groups > 1 ? new long[] { 1, 2, 3 } : new long[] { 1, 2 });
            keep = keep is null ? visible : g.Node("And", [keep, visible], path + ".keep");
        }
        var masked = keep is not null ? g.MaskScores(unmasked, keep, path + ".masked") : unmasked;
        var weights = g.Softmax(masked, path + ".weights");
        if (keyPaddingMask is not null) weights = g.Node("Where", [keep!, weights, g.Scalar(path + ".zero", 0f)], path + ".visible_weights");
        var output = g.MatMul(weights, v, path + ".context");
        if (groups > 1) output = g.Reshape(output, path + ".context_heads", 0, attn.Heads, -1, dh);
        var merged = g.Reshape(g.Transpose(output, path + ".context_t", 0, 2, 1, 3), path + ".merged", 0, 0, attn.Dim);
        return Linear(g, Child<Linear>(attn, "proj"), path + ".proj", merged);
    }

    /// <summary>
    /// x [B, T, D] plus rows offset..offset+T-1 of a position table [maxLength, D] (Range + Gather, so T and the
    /// offset may be dynamic); <paramref name="offset"/> is an int64 scalar value.
    /// </summary>
    public static string AddPositions(OnnxGraph g, string x, string table, string offset, string path)
    {
        var length = g.Dim(x, 1, path + ".length");
        var positions = g.Range(offset, g.Add(offset, length, path + ".end"), path + ".positions");
        return g.Add(x, g.Gather(table, positions, path + ".rows"), path);
    }
}
