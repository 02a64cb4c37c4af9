namespace AttnCore;

/// <summary>
/// Cross-entropy through the fused kernel (log-softmax and NLL in one pass per row, lse kept for backward),
/// recorded as a custom autograd op whose backward writes (softmax − smoothed one-hot)·g/count in one pass.
/// </summary>
internal sealed class FusedCrossEntropy : ICustomOp
{
    private readonly long _ignoreIndex;
    private readonly double _smoothing;
    private readonly int _count;

    private FusedCrossEntropy(long ignoreIndex, double smoothing, int count) { _ignoreIndex = ignoreIndex; _smoothing = smoothing; _count = count; }

    public string Name => "CrossEntropy";

    public static Tensor Apply(Tensor logits, Tensor targets, long ignoreIndex, double smoothing)
    {
        int rows = logits.Size(0), classes = logits.Size(1);
        using var x = logits.Dense();
        using var t = targets.Dense();
        using var lse = Tensor.Empty([rows], logits.DType, logits.Device);
        var (loss, count) = logits.Backend.CrossEntropyForward(x.Storage, t.Storage, lse.Storage, rows, classes, ignoreIndex, smoothing);
        var result = Tensor.Scalar(loss, logits.DType, logits.Device);
        return result.RecordCustom(new FusedCrossEntropy(ignoreIndex, smoothing, count), [logits], [x, t, lse]);
    }

    public Tensor?[] Backward(GradNode node, Tensor gradOutput)
    {
        var (x, t, lse) = (node.Saved[0], node.Saved[1], node.Saved[2]);
        var dx = x.EmptyLike();
        if (x.Numel > 0)
            x.Backend.CrossEntropyBackward(x.Storage, t.Storage, lse.Storage, dx.Storage, x.Size(0), x.Size(1), _ignoreIndex, _smoothing, gradOutput.Item(), _count);
        return [dx];
    }
}
