namespace AttnCore.Models.Reinforcement;

/// <summary>
/// The categorical distribution of a discrete policy, parameterised by logits as torch.distributions.Categorical:
/// log π(a) = log_softmax(logits)[a], entropy H = −Σ_a π(a)·log π(a). Both are built from the engine's LogSoftmax,
/// Gather, Exp and Sum, so they carry gradients to the logits.
/// </summary>
public static class Categorical
{
    /// <summary>log π(actions) for logits [B, A] and actions [B] (int64): [B].</summary>
    public static Tensor LogProb(Tensor logits, Tensor actions)
    {
        Check("Categorical.LogProb", logits);
        if (actions.Rank != 1 || actions.Size(0) != logits.Size(0) || actions.DType != DType.Int64)
            throw new ArgumentException($"Categorical.LogProb: actions must be int64 [{logits.Size(0)}] for logits {Shape.Format(logits.Shape)}, got {actions.DType.Name()} {Shape.Format(actions.Shape)}");
        using var scope = new TensorScope();
        var logp = logits.LogSoftmax(-1);
        var picked = logp.Gather(1, actions.View(actions.Size(0), 1));
        return scope.Keep(picked.Reshape(actions.Size(0)));
    }

    /// <summary>The entropy of each row of logits [B, A]: [B].</summary>
    public static Tensor Entropy(Tensor logits)
    {
        Check("Categorical.Entropy", logits);
        using var scope = new TensorScope();
        var logp = logits.LogSoftmax(-1);
        var plogp = logp.Exp() * logp;
        return scope.Keep(-plogp.Sum(-1));
    }

    /// <summary>
    /// Draws an action from one row of log-probabilities by inverting the cumulative distribution at a uniform
    /// draw of <paramref name="generator"/> (the last action takes any rounding remainder).
    /// </summary>
    public static int Sample(ReadOnlySpan<float> logProbs, Generator generator)
    {
        if (logProbs.Length == 0) throw new ArgumentException("Categorical.Sample: no actions");
        double u = generator.NextDouble(), cumulative = 0;
        for (int a = 0; a < logProbs.Length - 1; a++)
        {
            cumulative += Math.Exp(logProbs[a]);
            if (u < cumulative) return a;
        }
        return logProbs.Length - 1;
    }

    /// <summary>The most probable action of one row (ties: the lowest index).</summary>
    public static int Mode(ReadOnlySpan<float> logProbs)
    {
        if (logProbs.Length == 0) throw new ArgumentException("Categorical.Mode: no actions");
        int best = 0;
        for (int a = 1; a < logProbs.Length; a++) if (logProbs[a] > logProbs[best]) best = a;
        return best;
    }

    private static void Check(string op, Tensor logits)
    {
        if (logits.Rank != 2 || logits.Size(1) == 0) throw new ArgumentException($"{op}: logits must be [B, A] with A > 0, got {Shape.Format(logits.Shape)}");
        if (logits.DType is not (DType.Float32 or DType.Float64)) throw new ArgumentException($"{op}: logits must be float32 or float64, got {logits.DType.Name()}");
    }
}
