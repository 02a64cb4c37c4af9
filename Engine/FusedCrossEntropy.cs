using AttnCore.Kernels.Cpu;

namespace AttnCore;

/// <summary>How a loss combines its per-position values, as torch.nn's <c>reduction</c> argument.</summary>
public enum Reduction
{
    /// <summary>No reduction ('none'): one loss per position.</summary>
    None,
    /// <summary>'mean': the sum divided by the total weight of the counted targets (their number without class weights).</summary>
    Mean,
    /// <summary>'sum': the sum over positions.</summary>
    Sum,
}

// Cross-entropy through one fused kernel per direction (Kernels/Cpu/CrossEntropy.cs, Kernels/Gpu/CrossEntropy.cs):
// the forward keeps lse, rowScale and the 'mean' denominator on the device; the derivative rule in Autograd calls
// CrossEntropyBackward, which recomputes the softmax from lse instead of storing it.
public sealed partial class Tensor
{
    /// <summary>
    /// Cross-entropy of these logits against <paramref name="targets"/>, as torch.nn.functional.cross_entropy.
    /// Logits are [C], [N, C] or [N, C, d1, d2, ...] (classes on dim 1, read in place at their stride). Targets are
    /// either int64 class indices shaped like the logits without the class dim ([] for [C] logits), or class
    /// probabilities shaped like the logits (same dtype; <paramref name="ignoreIndex"/> does not apply to them).
    /// With w the class <paramref name="weight"/> (1 without) and ε = <paramref name="labelSmoothing"/>, a class
    /// target t costs (1−ε)·w_t·(−log p_t) + (ε/C)·Σ_c w_c·(−log p_c), and a target t = ignoreIndex costs 0 and is
    /// not counted; a probability target q costs Σ_c w_c·((1−ε)q_c + ε/C)·(−log p_c).
    /// <see cref="Reduction.Mean"/> (the default) divides the sum by Σ w_t over the counted class targets (NaN when
    /// none is counted), or by the number of positions for probability targets; <see cref="Reduction.Sum"/> sums;
    /// <see cref="Reduction.None"/> returns the per-position losses. Class weights may be negative, as in PyTorch;
    /// they are constants (no gradient flows to them).
    /// </summary>
    /// <exception cref="ArgumentException">Wrong target dtype or shape, weight of the wrong length, dtype or device (or
    /// requiring a gradient), label smoothing outside [0, 1].</exception>
    /// <exception cref="ArgumentOutOfRangeException">On the CPU, a class target outside [0, C) that is not
    /// <paramref name="ignoreIndex"/> (naming its position and value); devices report it at the next synchronisation.</exception>
    public Tensor CrossEntropy(Tensor targets, long ignoreIndex = -100, double labelSmoothing = 0, Tensor? weight = null, Reduction reduction = Reduction.Mean)
    {
        const string op = "CrossEntropy";
        var problem = CrossEntropyProblemOf(op, targets, weight, ignoreIndex, labelSmoothing, reduction);
        // The CPU kernel checks class targets itself; a device kernel skips bad ones and the check reports them.
        if (!problem.ProbabilityTargets && Device != Device.Cpu) CheckIndices(op, targets, problem.Classes, $"the classes of logits {Describe()}", ignoreIndex);
        var positions = CrossEntropyPositionShape();
        using var x = Dense();
        using var t = targets.Dense();
        using var w = weight?.Dense();
        using var lse = EmptyLike(positions);
        using var rowScale = EmptyLike(positions);
        using var denominator = EmptyLike([1]);
        // The loss and the denominator stay where they were computed (no host round trip on a device).
        var loss = EmptyLike(reduction == Reduction.None ? positions : []);
        Backend.CrossEntropyForward(x.Storage, t.Storage, w?.Storage, lse.Storage, rowScale.Storage, loss.Storage, denominator.Storage, problem, reduction);
        // Probability targets are differentiable (as in PyTorch); class indices and weights are not.
        Tensor[] inputs = problem.ProbabilityTargets ? [this, targets] : [this];
        Tensor[] saved = w is null ? [x, t, lse, rowScale, denominator] : [x, t, lse, rowScale, denominator, w];
        return loss.Record(OpKind.CrossEntropy, inputs, saved, labelSmoothing,
            [w is null ? 0 : 1, (int)reduction, (int)ignoreIndex, (int)(ignoreIndex >> 32)]);
    }

    /// <summary>
    /// The cross-entropy backward pass (one fused kernel): the gradient of the logits from the output gradient
    /// (per position for <see cref="Reduction.None"/>, a scalar otherwise) and what <see cref="CrossEntropy"/> saved:
    /// lse and rowScale per position and the 'mean' denominator.
    /// </summary>
    public static Tensor CrossEntropyBackward(Tensor gradOutput, Tensor logits, Tensor targets, Tensor? weight, Tensor lse, Tensor rowScale, Tensor denominator,
        long ignoreIndex, double labelSmoothing, Reduction reduction)
    {
        const string op = "CrossEntropyBackward";
        var problem = logits.CrossEntropyProblemOf(op, targets, weight, ignoreIndex, labelSmoothing, reduction);
        var positions = logits.CrossEntropyPositionShape();
        var gradShape = reduction == Reduction.None ? positions : [];
        foreach (var (tensor, name, shape) in new[] { (gradOutput, "gradient", gradShape), (lse, "lse", positions), (rowScale, "rowScale", positions), (denominator, "denominator", new[] { 1 }) })
        {
            SameDevice(op, logits, tensor); SameDType(op, logits, tensor);
            if (tensor.Numel != AttnCore.Shape.Numel(shape))
                throw new ArgumentException($"{op}: {name} has shape {tensor.Describe()}, expected {AttnCore.Shape.Format(shape)} for logits {logits.Describe()} and reduction {reduction}");
        }
        using var g = gradOutput.Dense();
        using var x = logits.Dense();
        using var t = targets.Dense();
        using var w = weight?.Dense();
        using var l = lse.Dense();
        using var k = rowScale.Dense();
        using var d = denominator.Dense();
        var dx = logits.EmptyLike();
        if (logits.Numel > 0)
            logits.Backend.CrossEntropyBackward(x.Storage, t.Storage, w?.Storage, l.Storage, k.Storage, g.Storage, d.Storage, dx.Storage, problem, reduction);
        return dx;
    }

    /// <summary>
    /// Negative log-likelihood of log-probabilities (this tensor: [C], [N, C] or [N, C, d1, ...], classes on dim 1)
    /// against int64 class targets, as torch.nn.functional.nll_loss: loss = −w_t·input[t], 0 for targets equal to
    /// <paramref name="ignoreIndex"/>; <see cref="Reduction.Mean"/> divides the sum by Σ w_t over the counted targets.
    /// <c>x.LogSoftmax(1).NllLoss(t)</c> is <c>x.CrossEntropy(t)</c>; the fused CrossEntropy is the faster way there.
    /// Built from Gather and element-wise ops, so its gradient comes from their rules.
    /// </summary>
    public Tensor NllLoss(Tensor targets, Tensor? weight = null, long ignoreIndex = -100, Reduction reduction = Reduction.Mean)
    {
        const string op = "NllLoss";
        if (targets.DType != DType.Int64)
            throw new ArgumentException($"{op}: targets must be int64 class indices, got {targets.DType.Name()} {targets.Describe()} (probability targets are for CrossEntropy)");
        var problem = CrossEntropyProblemOf(op, targets, weight, ignoreIndex, 0, reduction);
        using var dense = targets.Dense();
        if (Device == Device.Cpu) Kernels.Cpu.CrossEntropy.CheckTargets(Backends.CpuBackend.Data<long>(dense.Storage).AsSpan(0, (int)problem.Positions), problem);
        else CheckIndices(op, targets, problem.Classes, $"the classes of input {Describe()}", ignoreIndex);
        using var scope = new TensorScope();
        int classDim = Rank == 1 ? 0 : 1;
        var kept = targets.Ne(ignoreIndex);
        var safe = Where(kept, targets, Zeros([], DType.Int64, Device));
        var picked = Gather(classDim, safe.Unsqueeze(classDim)).Squeeze(classDim);
        var keptWeight = kept.To(DType);
        var w = weight is null ? keptWeight : weight.IndexSelect(0, safe.Reshape(-1)).Reshape(safe.Shape) * keptWeight;
        // Where, not a product with the 0 weight: an ignored position gets an exact 0 gradient even when the
        // mean's denominator is 0 (all ignored: the loss is NaN and the gradient 0, as PyTorch's).
        var losses = Where(kept, -(picked * w), Zeros([], DType, Device));
        var result = reduction switch { Reduction.None => losses, Reduction.Sum => losses.Sum(), _ => losses.Sum() / w.Sum() };
        return scope.Keep(result);
    }

    // [N, d1, ...]: one loss per position ([] for [C] logits).
    private int[] CrossEntropyPositionShape() => Rank == 1 ? [] : [Layout.Shape[0], .. Layout.Shape[2..]];

    private CrossEntropyProblem CrossEntropyProblemOf(string op, Tensor targets, Tensor? weight, long ignoreIndex, double labelSmoothing, Reduction reduction)
    {
        RequireFloat(op);
        SameDevice(op, this, targets);
        if (Rank == 0) throw new ArgumentException($"{op}: logits must have a class dim ([C], [N, C] or [N, C, d1, ...]), got a 0-d tensor");
        if (!Enum.IsDefined(reduction)) throw new ArgumentOutOfRangeException(nameof(reduction), reduction, $"{op}: reduction must be None, Mean or Sum");
        if (labelSmoothing is < 0 or > 1 || double.IsNaN(labelSmoothing)) throw new ArgumentException($"{op}: label smoothing must be in [0, 1], got {labelSmoothing}");
        int classDim = Rank == 1 ? 0 : 1, classes = Layout.Shape[classDim];
        if (classes == 0) throw new ArgumentException($"{op}: logits {Describe()} have no classes (dim {classDim} is 0)");
        var positions = CrossEntropyPositionShape();
        bool probabilities = targets.DType.IsFloatingPoint();
        if (probabilities && (targets.DType != DType || !targets.Layout.Shape.AsSpan().SequenceEqual(Layout.Shape)))
            throw new ArgumentException($"{op}: probability targets must be {DType.Name()} {Describe()} like the logits, got {targets.DType.Name()} {targets.Describe()}");
        if (!probabilities && (targets.DType != DType.Int64 || !targets.Layout.Shape.AsSpan().SequenceEqual(positions)))
            throw new ArgumentException($"{op}: class-index targets must be int64 {AttnCore.Shape.Format(positions)} (logits {Describe()} without the class dim {classDim}), " +
                $"or probabilities {DType.Name()} {Describe()}; got {targets.DType.Name()} {targets.Describe()}");
        if (weight is not null)
        {
            SameDevice(op, this, weight);
            if (weight.DType != DType || weight.Rank != 1 || weight.Size(0) != classes)
                throw new ArgumentException($"{op}: weight must be {DType.Name()} [{classes}] (one per class of logits {Describe()}), got {weight.DType.Name()} {weight.Describe()}");
            if (weight.RequiresGrad && GradMode.IsEnabled)
                throw new ArgumentException($"{op}: the class weights {weight.Describe()} require a gradient, which cross-entropy does not compute (as PyTorch's nll_loss); pass weight.Detach()");
        }
        int outer = Rank == 1 ? 1 : Layout.Shape[0];
        int inner = (int)AttnCore.Shape.Numel(Layout.Shape.AsSpan(Math.Min(2, Rank)));
        return new CrossEntropyProblem(outer, classes, inner, probabilities, ignoreIndex, labelSmoothing);
    }
}
