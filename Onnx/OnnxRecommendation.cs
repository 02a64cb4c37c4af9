using System.Text.Json;
using AttnCore.Models.Nn;
using AttnCore.Models.Recommendation;

namespace AttnCore.Onnx;

/// <summary>
/// ONNX export of the sequential recommenders (<see cref="SasRec"/>, <see cref="TargetAttentionRecommender"/>):
/// history int64 [batch, MaxLength] (left-padded with 0) → scores. Exported with one sample input (the history)
/// the graph scores every item id, [batch, Items + 1] (column 0 is the padding id), as <c>ScoreAll</c>; with a
/// second sample input, candidates int64 [batch, candidates], it scores those, [batch, candidates], as <c>Score</c>.
/// Batch and the candidate count are dynamic; the history length is the model's (its position table).
/// <code>
///   encoder        Gather of the item table · √d, Add the position table; Equal(history, 0): the key padding
///                  mask, Not + Cast: the item mask m; per block LayerNormalization, attention of the normalised
///                  sequence over the un-normalised one (causal + padding, a query that sees no key gets 0), Add,
///                  LayerNormalization, MatMul-Relu-MatMul feed-forward, Add, Mul m; last LayerNormalization
///   SASRec         Gather of the last position, MatMul with the item table's transpose (all items) or with the
///                  candidates' embeddings (Gather, MatMul, Squeeze)
///   target attn    the candidates' embeddings (all items: Range, Unsqueeze, Expand over the batch), their
///                  LayerNormalization queries the history (padding mask), Add the last state, Mul with the
///                  embeddings, ReduceSum over d
/// </code>
/// </summary>
public static class OnnxRecommendation
{
    /// <summary>Registers the recommender graph builders in <see cref="OnnxExport"/> (called by its static constructor).</summary>
    internal static void RegisterModels()
    {
        OnnxExport.RegisterModel<SasRec>(Graph);
        OnnxExport.RegisterModel<TargetAttentionRecommender>(Graph);
    }

    private static OnnxGraph Graph(SelfAttentiveRecommender model, IReadOnlyList<Tensor> samples, OnnxExportOptions options)
    {
        var c = model.Config;
        string name = model.GetType().Name;
        if (options.KeyValueCache || options.PaddingMasks) throw new NotSupportedException($"ONNX export: {name} takes no key/value cache or padding masks (the history's zeros are its padding)");
        if (samples.Count is < 1 or > 2)
            throw new ArgumentException($"ONNX export: {name} takes history [batch, {c.MaxLength}] and optionally candidates [batch, candidates], got {samples.Count} sample inputs");
        Check(name, "history", samples[0], c.MaxLength, c.Items);
        if (samples.Count == 2)
        {
            Check(name, "candidates", samples[1], null, c.Items);
            if (samples[1].Size(0) != samples[0].Size(0))
                throw new ArgumentException($"ONNX export: {name}: candidates {Shape.Format(samples[1].Shape)} and history {Shape.Format(samples[0].Shape)} differ in batch size");
        }
        var g = new OnnxGraph(model.Name);
        g.Metadata("attncore.config", JsonSerializer.Serialize(c));
        g.Metadata("attncore.model", model.Name);
        var history = g.Input("history", OnnxGraph.ElementType.Int64, "batch", c.MaxLength);
        var candidates = samples.Count == 2 ? g.Input("candidates", OnnxGraph.ElementType.Int64, "batch", "candidates") : null;
        var (features, padding) = Encode(g, model, history);
        var last = g.Gather(features, g.IntScalar("last_position", c.MaxLength - 1), "last_state", axis: 1);   // [B, d]
        var table = g.Weight(model.ItemEmbedding.Weight, "item_emb.weight");
        string scores;
        if (model is SasRec)
            scores = candidates is null
                ? g.MatMul(last, g.Transpose(table, "item_emb.weight_t", 1, 0), "scores_all")
                : g.Squeeze(g.MatMul(g.Gather(table, candidates, "candidate_emb"), g.Unsqueeze(last, "last_column", 2), "candidate_scores"), "scores_candidates", 2);
        else
        {
            // Every item id for every history: [1, Items + 1] expanded over the batch.
            candidates ??= g.Node("Expand", [g.Unsqueeze(g.Range(g.IntScalar("item_first", 0), g.IntScalar("item_end", c.Items + 1), "item_ids"), "item_row", 0),
                g.Concat([g.Unsqueeze(g.Dim(history, 0, "batch_size"), "batch_size1", 0), g.Ints("one_column", 1)], "all_items_shape", 0)], "all_items");
            scores = TargetScores(g, (TargetAttentionRecommender)model, features, padding, last, table, candidates);
        }
        g.Output(scores, "scores", OnnxGraph.ElementType.Float, "batch", samples.Count == 2 ? "candidates" : c.Items + 1);
        return g;
    }

    private static void Check(string model, string what, Tensor t, int? length, int items)
    {
        if (t.DType != DType.Int64 || t.Rank != 2 || t.Size(0) < 1 || (length is int n && t.Size(1) != n))
            throw new ArgumentException($"ONNX export: {model}: {what} must be Int64 [batch, {(length is int m ? m.ToString(System.Globalization.CultureInfo.InvariantCulture) : what)}], got {t.DType} {Shape.Format(t.Shape)}");
        var ids = t.ToArray<long>();
        if (ids.Length > 0 && (ids.Min() < 0 || ids.Max() > items))
            throw new ArgumentException($"ONNX export: {model}: {what} {Shape.Format(t.Shape)} holds ids in [{ids.Min()}, {ids.Max()}], outside [0, {items}] (0 is padding)");
    }

    // SelfAttentiveRecommender.Encode: F [B, n, d] and the key padding mask (bool [B, n], true at padding).
    private static (string Features, string Padding) Encode(OnnxGraph g, SelfAttentiveRecommender model, string history)
    {
        var padding = g.Node("Equal", [history, g.IntScalar("padding_id", 0)], "padding");
        var keep = g.Unsqueeze(g.Node("Cast", [g.Node("Not", [padding], "is_item")], "item_mask", OnnxGraph.Attribute.Int("to", (long)OnnxGraph.ElementType.Float)), "keep", 2);
        var embedded = g.Mul(OnnxLayers.Emit(g, model.ItemEmbedding, "item_emb", history), g.Scalar("embed_scale", (float)Math.Sqrt(model.Config.Dim)), "item_emb.scaled");
        // The history is always MaxLength long, so the whole position table is added.
        var x = g.Mul(g.Add(embedded, g.Weight(model.PositionEmbedding.Weight, "pos_emb.weight"), "embedded"), keep, "embedded_items");
        for (int i = 0; i < model.Blocks.Count; i++)
        {
            var block = model.Blocks[i];
            string p = $"blocks.{i}";
            var q = OnnxLayers.Emit(g, OnnxLayers.Child<LayerNorm>(block, "attn_ln"), p + ".attn_ln", x);
            var h = g.Add(q, OnnxLayers.Attention(g, block.Attention, p + ".attn", q, x, true, null, out _, padding), p + ".attn_residual");
            h = OnnxLayers.Emit(g, OnnxLayers.Child<LayerNorm>(block, "ffn_ln"), p + ".ffn_ln", h);
            var inner = g.Relu(OnnxLayers.Emit(g, OnnxLayers.Child<Linear>(block, "conv1"), p + ".conv1", h), p + ".relu");
            h = g.Add(h, OnnxLayers.Emit(g, OnnxLayers.Child<Linear>(block, "conv2"), p + ".conv2", inner), p + ".ffn_residual");
            x = g.Mul(h, keep, p);
        }
        return (OnnxLayers.Emit(g, OnnxLayers.Child<LayerNorm>(model, "last_ln"), "last_ln", x), padding);
    }

    // r_i = (F_n + attention(LN(M_i) over F)) · M_i for candidates [B, C].
    private static string TargetScores(OnnxGraph g, TargetAttentionRecommender model, string features, string padding, string last, string table, string candidates)
    {
        var e = g.Gather(table, candidates, "candidate_emb");                                                    // [B, C, d]
        var query = OnnxLayers.Emit(g, OnnxLayers.Child<LayerNorm>(model, "target_ln"), "target_ln", e);
        var interest = OnnxLayers.Attention(g, OnnxLayers.Child<MultiHeadAttention>(model, "target_attn"), "target_attn", query, features, false, null, out _, padding);
        var state = g.Add(g.Unsqueeze(last, "last_row", 1), interest, "target_state");
        return g.ReduceSum(g.Mul(state, e, "target_products"), "target_scores", false, -1);
    }
}
