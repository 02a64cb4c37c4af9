namespace AttnCore.Models.Nn;

/// <summary>
/// torch.nn.CrossEntropyLoss: <see cref="Tensor.CrossEntropy"/> with its options held by the module. The class
/// weights, when given, are a buffer (in the state dict as "weight", as PyTorch's), owned by the module.
/// </summary>
public sealed class CrossEntropyLoss : Module
{
    /// <summary>A loss with PyTorch's defaults: no weights, ignore index -100, mean, no smoothing.</summary>
    /// <param name="weight">Per-class weights [C] (taken over by the module), or null.</param>
    /// <param name="ignoreIndex">Class targets with this value cost nothing and are not counted.</param>
    /// <param name="reduction">How the per-position losses combine.</param>
    /// <param name="labelSmoothing">ε in [0, 1].</param>
    public CrossEntropyLoss(Tensor? weight = null, long ignoreIndex = -100, Reduction reduction = Reduction.Mean, double labelSmoothing = 0)
    {
        if (labelSmoothing is < 0 or > 1 || double.IsNaN(labelSmoothing))
            throw new ArgumentException($"CrossEntropyLoss: label smoothing must be in [0, 1], got {labelSmoothing}");
        if (!Enum.IsDefined(reduction)) throw new ArgumentOutOfRangeException(nameof(reduction), reduction, "CrossEntropyLoss: reduction must be None, Mean or Sum");
        if (weight is not null && weight.Rank != 1)
            throw new ArgumentException($"CrossEntropyLoss: weight must be 1-d (one per class), got shape [{string.Join(",", weight.Shape)}]");
        Weight = weight is null ? null : Buffer("weight", weight);
        IgnoreIndex = ignoreIndex;
        Reduction = reduction;
        LabelSmoothing = labelSmoothing;
    }

    /// <summary>The class weights, or null.</summary>
    public Tensor? Weight { get; }
    /// <summary>The ignored class index.</summary>
    public long IgnoreIndex { get; }
    /// <summary>How the per-position losses combine.</summary>
    public Reduction Reduction { get; }
    /// <summary>Label smoothing ε.</summary>
    public double LabelSmoothing { get; }

    /// <summary>The loss of <paramref name="input"/> logits against class-index or probability <paramref name="target"/>.</summary>
    public Tensor Forward(Tensor input, Tensor target) => input.CrossEntropy(target, IgnoreIndex, LabelSmoothing, Weight, Reduction);
}
