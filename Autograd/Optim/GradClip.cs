namespace AttnCore.Optim;

/// <summary>Gradient clipping, as torch.nn.utils.clip_grad_norm_.</summary>
public static class GradClip
{
    /// <summary>
    /// Scales all gradients in place so that their joint L2 norm is at most <paramref name="maxNorm"/> and returns
    /// the norm before clipping as a 0-d tensor on the gradients' device (PyTorch's rule: every gradient is
    /// multiplied by min(1, maxNorm / (norm + 1e-6))). Everything stays on the device: reading the norm
    /// (<c>Item()</c>) is the caller's choice, so a training step need not wait for the host.
    /// </summary>
    public static Tensor ClipGradNorm(IEnumerable<Tensor> parameters, double maxNorm)
    {
        if (maxNorm <= 0) throw new ArgumentException($"ClipGradNorm: maxNorm must be positive, got {maxNorm}");
        using var ng = new NoGrad();
        var grads = parameters.Select(p => p.Grad).OfType<Tensor>().ToArray();
        if (grads.Length == 0) return Tensor.Zeros([]);
        var device = grads[0].Device;
        Tensor? sumSq = null;
        foreach (var g in grads)
        {
            using var sq = g.Square();
            using var s = sq.Sum();
            using var here = s.Device == device ? null : s.To(device);
            var next = sumSq is null ? (here ?? s).Clone() : sumSq + (here ?? s);
            sumSq?.Dispose();
            sumSq = next;
        }
        var norm = sumSq!.Sqrt();
        sumSq.Dispose();
        using var denom = norm + 1e-6;
        using var ratio = maxNorm / denom;
        using var coef = ratio.Minimum(1.0);
        foreach (var g in grads)
        {
            using var c = coef.Device == g.Device ? null : coef.To(g.Device);
            using var scaled = g * (c ?? coef);
            g.CopyFrom(scaled);
        }
        return norm;
    }
}
