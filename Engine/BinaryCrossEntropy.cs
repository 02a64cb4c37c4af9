namespace AttnCore;

// Binary cross-entropy on logits, as torch.nn.functional.binary_cross_entropy_with_logits. The loss of a logit x
// against a target y is −[y·ln σ(x) + (1 − y)·ln σ(−x)] = (1 − y)·x − ln σ(x), and ln σ(x) = min(x, 0) − ln(1 + e^−|x|)
// (the LogSigmoid kernel) never overflows, so neither does the loss: a logit of ±1000 costs 0 or 1000, not inf − inf.
// The forward is three element-wise kernels of the backend in use (CPU or ILGPU) run without recording; the op records
// one node, OpKind.BinaryCrossEntropyWithLogits, whose rule in Autograd calls BinaryCrossEntropyWithLogitsBackward:
// dx = w·(σ(x) − y)·g, dy = −w·x·g, so the graph keeps x, y and w only (no intermediate).
public sealed partial class Tensor
{
    /// <summary>
    /// Binary cross-entropy of these logits against <paramref name="targets"/> (same shape and dtype, values in
    /// [0, 1]), as torch.nn.functional.binary_cross_entropy_with_logits: loss = w·((1 − y)·x − ln σ(x)), computed
    /// without overflow for any finite logit. <paramref name="weight"/> (same shape and dtype, or null for 1) scales
    /// each position; a weight of 0 masks a position out (padding). <see cref="Reduction.Mean"/> divides the sum by the
    /// number of elements (PyTorch's rule, whatever the weights), <see cref="Reduction.Sum"/> sums,
    /// <see cref="Reduction.None"/> keeps one loss per element. Gradients flow to the logits and, when they require
    /// it, to the targets; the weight is a constant.
    /// </summary>
    /// <exception cref="ArgumentException">Shapes, dtypes or devices that differ, a non-float dtype, or a weight that
    /// requires a gradient.</exception>
    public Tensor BinaryCrossEntropyWithLogits(Tensor targets, Tensor? weight = null, Reduction reduction = Reduction.Mean)
    {
        const string op = "BinaryCrossEntropyWithLogits";
        CheckBinaryCrossEntropy(op, this, targets, weight, reduction);
        Tensor loss;
        using (new NoGrad())
        using (var scope = new TensorScope())
        {
            var elementwise = (1.0 - targets) * this - LogSigmoid();
            if (weight is not null) elementwise = elementwise * weight;
            loss = scope.Keep(reduction switch
            {
                Reduction.None => elementwise,
                Reduction.Sum => elementwise.Sum(),
                _ => elementwise.Sum() / Math.Max(1, Numel),
            });
        }
        Tensor[] saved = weight is null ? [this, targets] : [this, targets, weight];
        return loss.Record(OpKind.BinaryCrossEntropyWithLogits, [this, targets], saved, 0, [(int)reduction, weight is null ? 0 : 1]);
    }

    /// <summary>
    /// The backward pass of <see cref="BinaryCrossEntropyWithLogits"/> (Autograd's rule for
    /// <see cref="OpKind.BinaryCrossEntropyWithLogits"/>): from the output gradient (per element for
    /// <see cref="Reduction.None"/>, a scalar otherwise), dLogits = w·(σ(x) − y)·g and dTargets = −w·x·g, each
    /// computed only when asked for (null otherwise); 'mean' divides g by the element count.
    /// </summary>
    public static (Tensor? DLogits, Tensor? DTargets) BinaryCrossEntropyWithLogitsBackward(Tensor gradOutput, Tensor logits, Tensor targets, Tensor? weight,
        Reduction reduction, bool logitsGradient = true, bool targetsGradient = false)
    {
        const string op = "BinaryCrossEntropyWithLogitsBackward";
        CheckBinaryCrossEntropy(op, logits, targets, weight, reduction, checkWeightGrad: false);
        SameDevice(op, logits, gradOutput); SameDType(op, logits, gradOutput);
        bool perElement = reduction == Reduction.None;
        if (perElement ? !gradOutput.Layout.Shape.AsSpan().SequenceEqual(logits.Layout.Shape) : gradOutput.Numel != 1)
            throw new ArgumentException($"{op}: gradient {gradOutput.Describe()} must be {(perElement ? logits.Describe() + " (reduction None)" : "a scalar (reduction " + reduction + ")")} for logits {logits.Describe()}");
        using var noGrad = new NoGrad();
        using var scope = new TensorScope();
        var g = reduction == Reduction.Mean ? gradOutput / Math.Max(1, logits.Numel) : gradOutput.Detach();
        if (weight is not null) g = g * weight;
        Tensor? dx = null, dy = null;
        if (logitsGradient) dx = scope.Keep((logits.Sigmoid() - targets) * g);
        if (targetsGradient) dy = scope.Keep(-(logits * g));
        return (dx, dy);
    }

    private static void CheckBinaryCrossEntropy(string op, Tensor logits, Tensor targets, Tensor? weight, Reduction reduction, bool checkWeightGrad = true)
    {
        logits.RequireFloat(op);
        if (!Enum.IsDefined(reduction)) throw new ArgumentOutOfRangeException(nameof(reduction), reduction, $"{op}: reduction must be None, Mean or Sum");
        (Tensor Tensor, string Name)[] others = weight is null ? [(targets, "targets")] : [(targets, "targets"), (weight, "weight")];
        foreach (var (other, name) in others)
        {
            SameDevice(op, logits, other);
            if (other.DType != logits.DType || !other.Layout.Shape.AsSpan().SequenceEqual(logits.Layout.Shape))
                throw new ArgumentException($"{op}: {name} must be {logits.DType.Name()} {logits.Describe()} like the logits, got {other.DType.Name()} {other.Describe()}");
        }
        if (checkWeightGrad && weight is not null && weight.RequiresGrad && GradMode.IsEnabled)
            throw new ArgumentException($"{op}: the weight {weight.Describe()} requires a gradient, which this loss does not compute; pass weight.Detach()");
    }
}
