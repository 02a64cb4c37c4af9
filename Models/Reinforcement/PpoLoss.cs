namespace AttnCore.Models.Reinforcement;

/// <summary>PPO's coefficients (defaults: CleanRL's ppo.py).</summary>
/// <param name="ClipCoefficient">ε of the clipped surrogate and of the value clipping.</param>
/// <param name="ClipValueLoss">Clip the value update around the old value, as CleanRL's clip_vloss.</param>
/// <param name="EntropyCoefficient">Weight of the entropy bonus.</param>
/// <param name="ValueCoefficient">Weight of the value loss.</param>
/// <param name="NormalizeAdvantages">Standardise the advantages of each minibatch.</param>
public sealed record PpoCoefficients(double ClipCoefficient = 0.2, bool ClipValueLoss = true, double EntropyCoefficient = 0.01, double ValueCoefficient = 0.5, bool NormalizeAdvantages = true);

/// <summary>The terms of one PPO loss evaluation (0-d tensors; Loss carries the gradient, the rest are detached diagnostics).</summary>
/// <param name="Loss">policy loss − c_e·entropy + c_v·value loss.</param>
/// <param name="PolicyLoss">The clipped surrogate, mean over the minibatch.</param>
/// <param name="ValueLoss">0.5 × the (clipped) squared value error, mean.</param>
/// <param name="Entropy">Mean entropy of the policy.</param>
/// <param name="ApproxKl">CleanRL's approx_kl: mean of (ratio − 1) − log ratio.</param>
/// <param name="ClipFraction">Fraction of samples whose |ratio − 1| exceeds ε.</param>
public readonly record struct PpoLossTerms(Tensor Loss, Tensor PolicyLoss, Tensor ValueLoss, Tensor Entropy, Tensor ApproxKl, Tensor ClipFraction);

/// <summary>
/// The PPO objective (Schulman et al. 2017, "Proximal Policy Optimization Algorithms") as CleanRL's ppo.py computes it
/// for a minibatch:
/// <code>
/// Â        = (A − mean A) / (std A + 1e-8)                       (when normalising; std unbiased, as torch.std)
/// r        = exp(log π_new(a) − log π_old(a))
/// L_pi     = mean max(−Â·r, −Â·clip(r, 1−ε, 1+ε))
/// L_v      = 0.5 · mean max((V − R)², (V_old + clip(V − V_old, −ε, ε) − R)²)   (or 0.5 · mean (V − R)²)
/// L        = L_pi − c_e · mean H(π_new) + c_v · L_v
/// </code>
/// </summary>
public static class PpoLoss
{
    /// <summary>
    /// The loss for logits [B, A], new values [B], actions [B] (int64) and the rollout's old log-probabilities,
    /// advantages, returns and old values (each [B], the dtype of the logits).
    /// </summary>
    public static PpoLossTerms Compute(Tensor logits, Tensor values, Tensor actions, Tensor oldLogProbs, Tensor advantages, Tensor returns, Tensor oldValues, PpoCoefficients c)
    {
        int b = logits.Rank == 2 ? logits.Size(0) : -1;
        foreach (var (name, t) in new[] { ("values", values), ("oldLogProbs", oldLogProbs), ("advantages", advantages), ("returns", returns), ("oldValues", oldValues) })
            if (t.Rank != 1 || t.Size(0) != b)
                throw new ArgumentException($"PpoLoss.Compute: {name} must be [B] = [{b}] for logits {Shape.Format(logits.Shape)}, got {Shape.Format(t.Shape)}");
        if (b < 2 && c.NormalizeAdvantages) throw new ArgumentException($"PpoLoss.Compute: normalising advantages needs a minibatch of at least 2, got {b}");
        double eps = c.ClipCoefficient;
        using var scope = new TensorScope();
        var newLogProbs = Categorical.LogProb(logits, actions);
        var logRatio = newLogProbs - oldLogProbs;
        var ratio = logRatio.Exp();
        var adv = advantages;
        if (c.NormalizeAdvantages) adv = (advantages - advantages.Mean()) / (advantages.Var().Sqrt() + 1e-8);
        var unclipped = -adv * ratio;
        var clipped = -adv * ratio.Clamp(1 - eps, 1 + eps);
        var policyLoss = unclipped.Maximum(clipped).Mean();
        Tensor valueLoss;
        var err = (values - returns).Square();
        if (c.ClipValueLoss)
        {
            var vClipped = oldValues + (values - oldValues).Clamp(-eps, eps);
            valueLoss = 0.5 * err.Maximum((vClipped - returns).Square()).Mean();
        }
        else valueLoss = 0.5 * err.Mean();
        var entropy = Categorical.Entropy(logits).Mean();
        var loss = policyLoss - c.EntropyCoefficient * entropy + c.ValueCoefficient * valueLoss;
        Tensor approxKl, clipFraction;
        using (new NoGrad())
        {
            approxKl = ((ratio - 1) - logRatio).Mean().Detach();
            clipFraction = (ratio - 1).Abs().Gt(eps).To(logits.DType).Mean().Detach();
        }
        return new PpoLossTerms(scope.Keep(loss), scope.Keep(policyLoss.Detach()), scope.Keep(valueLoss.Detach()), scope.Keep(entropy.Detach()), scope.Keep(approxKl), scope.Keep(clipFraction));
    }
}
