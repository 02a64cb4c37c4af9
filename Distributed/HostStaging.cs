namespace AttnCore.Distributed;

// Gradients cross between a tensor's device and the pinned host buckets here, without a temporary array per copy.
internal static class HostStaging
{
    public static void CopyToHost<T>(this Tensor t, Span<T> destination) where T : unmanaged
    {
        if (t.DType != DTypeInfo.Of<T>() || t.Numel != destination.Length)
            throw new ArgumentException($"DataParallel: cannot stage a {t.DType.Name()} tensor {Shape.Format(t.Shape)} into {destination.Length} {DTypeInfo.Of<T>().Name()} elements");
        if (t.IsContiguous) { t.Backend.Download(t.Storage, t.Layout.Offset, destination); return; }
        using var ng = new NoGrad();
        using var dense = t.Contiguous();
        dense.Backend.Download(dense.Storage, dense.Layout.Offset, destination);
    }

    // Overwrites the gradient in place when it is a dense tensor of its own; otherwise (no gradient on this rank, or a
    // view) a new one is made outside any TensorScope, as Backward makes a leaf's gradient.
    public static void SetGradFromHost<T>(this Tensor parameter, ReadOnlySpan<T> source) where T : unmanaged
    {
        var g = parameter.Grad;
        if (g is not null && g.IsContiguous && g.Layout.Offset == 0 && g.DType == DTypeInfo.Of<T>())
        {
            g.Backend.Upload(source, g.Storage);
            g.Storage.BumpVersion();
            return;
        }
        var outer = TensorScope.Suspend();
        try
        {
            var fresh = Tensor.FromSpan(source, parameter.Shape, parameter.Device);
            g?.Dispose();
            parameter.Grad = fresh;
        }
        finally { TensorScope.Resume(outer); }
    }
}
