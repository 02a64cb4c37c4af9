namespace AttnCore;

/// <summary>
/// Cross-entropy through the fused kernel (log-softmax and NLL in one pass per row, lse kept for backward),
/// recorded as a custom autograd op whose backward writes (softmax − smoothed one-hot)·g/count in one pass.
/// </summary>
internal sealed class FusedCrossEntropy : ICustomOp
{
    private readonly long _ignoreIndex;
    private readonly double _smoothing;

    private FusedCrossEntropy(long ignoreIndex, double smoothing) { _ignoreIndex = ignoreIndex; _smoothing = smoothing; }

    public string Name => "CrossEntropy";

    public static Tensor Apply(Tensor logits, Tensor targets, long ignoreIndex, double smoothing)
    {
        int rows = logits.Size(0), classes = logits.Size(1);
        using var x = logits.Dense();
        using var t = targets.Dense();
        using var lse = Tensor.Empty([rows], logits.DType, logits.Device);
        // The loss and the kept-row count stay where they were computed (no host round trip on a device).
        var result = Tensor.Empty([], logits.DType, logits.Device);
        var count = Tensor.Empty([1], DType.Float32, logits.Device);
        logits.Backend.CrossEntropyForward(x.Storage, t.Storage, lse.Storage, result.Storage, count.Storage, rows, classes, ignoreIndex, smoothing);
        return result.RecordCustom(new FusedCrossEntropy(ignoreIndex, smoothing), [logits], [x, t, lse, count]);
    }

    public Tensor?[] Backward(GradNode node, Tensor gradOutput)
    {
        var (x, t, lse, count) = (node.Saved[0], node.Saved[1], node.Saved[2], node.Saved[3]);
        var dx = x.EmptyLike();
        using var g = gradOutput.Dense();
        if (x.Numel > 0)
            x.Backend.CrossEntropyBackward(x.Storage, t.Storage, lse.Storage, dx.Storage, x.Size(0), x.Size(1), _ignoreIndex, _smoothing, g.Storage, count.Storage);
        return [dx];
    }
}
