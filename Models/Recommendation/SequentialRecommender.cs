using AttnCore.Models.Nn;

namespace AttnCore.Models.Recommendation;

/// <summary>
/// A model that scores items from a user's history: int64 item ids, left-padded with 0 to <see cref="MaxLength"/>.
/// Trained with <see cref="Loss"/> on <see cref="SequenceBatch"/>es; ranked by <see cref="Score"/> (sampled
/// candidates) or <see cref="ScoreAll"/> (every item).
/// </summary>
public abstract class SequentialRecommender : Module
{
    /// <summary>Positions the model reads (older items are cut).</summary>
    public abstract int MaxLength { get; }
    /// <summary>Items 1..ItemCount (0 is padding).</summary>
    public abstract int ItemCount { get; }
    /// <summary>The model's name in checkpoints and reports ("sasrec", "target-attention").</summary>
    public abstract string Name { get; }

    /// <summary>
    /// The training loss for histories, next items and sampled negatives, each int64 [B, T]: binary cross-entropy of
    /// every non-padded position's positive (label 1) and negative (label 0) logit, averaged over those positions.
    /// </summary>
    public abstract Tensor Loss(Tensor history, Tensor positives, Tensor negatives);

    /// <summary>Scores [B, C] of candidate items [B, C] (int64) after histories [B, T].</summary>
    public abstract Tensor Score(Tensor history, Tensor candidates);

    /// <summary>Scores [B, ItemCount + 1] of every item id (column 0 is the padding id) after histories [B, T].</summary>
    public abstract Tensor ScoreAll(Tensor history);

    /// <summary>
    /// Attention weights [T, T] of one history (int64 [T]) in the last self-attention block: row i is how position i
    /// spread its attention over positions 0..i (padding rows and columns are 0).
    /// </summary>
    public abstract float[,] SelfAttentionWeights(Tensor history);

    /// <summary>Checks that ids are int64 [B, <see cref="MaxLength"/>] (history) and in 0..ItemCount.</summary>
    protected void CheckHistory(string op, Tensor history)
    {
        if (history.DType != DType.Int64 || history.Rank != 2 || history.Size(1) != MaxLength)
            throw new ArgumentException($"{Name}.{op}: history must be int64 [B, {MaxLength}] (left-padded with 0), got {history.DType.Name()} [{string.Join(",", history.Shape)}]");
    }

    /// <summary>The BCE loss of positive and negative logits [B, T], counting only positions where <paramref name="positives"/> is not 0.</summary>
    protected static Tensor SampledBinaryLoss(Tensor positiveLogits, Tensor negativeLogits, Tensor positives)
    {
        using var scope = new TensorScope();
        var weight = positives.Ne(0).To(positiveLogits.DType);
        var ones = Tensor.Ones(positiveLogits.Shape, positiveLogits.DType, positiveLogits.Device);
        var zeros = Tensor.Zeros(negativeLogits.Shape, negativeLogits.DType, negativeLogits.Device);
        var total = positiveLogits.BinaryCrossEntropyWithLogits(ones, weight, Reduction.Sum) + negativeLogits.BinaryCrossEntropyWithLogits(zeros, weight, Reduction.Sum);
        // as the authors' code: each BCE is a mean over the non-padded positions (at least one per sampled row)
        var count = weight.Sum().Clamp(min: 1);
        return scope.Keep(total / count);
    }
}
