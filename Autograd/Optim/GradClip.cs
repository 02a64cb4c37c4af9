namespace AttnCore.Optim;

/// <summary>Gradient clipping, as torch.nn.utils.clip_grad_norm_.</summary>
public static class GradClip
{
    /// <summary>
    /// Scales all gradients in place so that their joint L2 norm is at most <paramref name="maxNorm"/>;
    /// returns the norm before clipping. Scale = maxNorm / (norm + 1e-6), applied only when below 1 (PyTorch's rule).
    /// </summary>
    public static double ClipGradNorm(IEnumerable<Tensor> parameters, double maxNorm)
    {
        if (maxNorm <= 0) throw new ArgumentException($"ClipGradNorm: maxNorm must be positive, got {maxNorm}");
        using var ng = new NoGrad();
        var grads = parameters.Select(p => p.Grad).OfType<Tensor>().ToArray();
        double sumSq = 0;
        foreach (var g in grads)
        {
            using var sq = g.Square();
            using var s = sq.Sum();
            sumSq += s.Item();
        }
        double norm = Math.Sqrt(sumSq);
        double scale = maxNorm / (norm + 1e-6);
        if (scale < 1)
            foreach (var g in grads)
            {
                using var scaled = g * scale;
                g.CopyFrom(scaled);
            }
        return norm;
    }
}
