namespace AttnCore.Models.Reinforcement;

/// <summary>PPO's settings; the defaults are CleanRL's ppo.py for CartPole-v1.</summary>
public sealed record PpoConfig
{
    /// <summary>Environments stepped together (num_envs).</summary>
    public int Envs { get; init; } = 4;
    /// <summary>Steps per environment per rollout (num_steps).</summary>
    public int RolloutSteps { get; init; } = 128;
    /// <summary>Environment steps in the whole run (total_timesteps); the run does TotalSteps / (Envs × RolloutSteps) iterations.</summary>
    public long TotalSteps { get; init; } = 500_000;
    /// <summary>Adam's learning rate at the start.</summary>
    public double LearningRate { get; init; } = 2.5e-4;
    /// <summary>Decay the learning rate linearly to 0 over the iterations (anneal_lr).</summary>
    public bool AnnealLearningRate { get; init; } = true;
    /// <summary>Adam's epsilon (CleanRL uses 1e-5).</summary>
    public double AdamEpsilon { get; init; } = 1e-5;
    /// <summary>Discount γ.</summary>
    public double Gamma { get; init; } = 0.99;
    /// <summary>GAE's λ.</summary>
    public double Lambda { get; init; } = 0.95;
    /// <summary>Minibatches per epoch (num_minibatches); must divide Envs × RolloutSteps.</summary>
    public int Minibatches { get; init; } = 4;
    /// <summary>Passes over each rollout (update_epochs).</summary>
    public int UpdateEpochs { get; init; } = 4;
    /// <summary>Gradient-norm clip (max_grad_norm).</summary>
    public double MaxGradNorm { get; init; } = 0.5;
    /// <summary>The loss's coefficients.</summary>
    public PpoCoefficients Coefficients { get; init; } = new();
    /// <summary>Bootstrap a truncated episode from the value of its final observation (true), or treat truncation as termination (CleanRL).</summary>
    public bool BootstrapTruncation { get; init; } = true;
    /// <summary>Seed of the environments (environment i gets Seed + i), the action sampling and the minibatch order.</summary>
    public ulong Seed { get; init; } = 1;

    /// <summary>Envs × RolloutSteps.</summary>
    public int BatchSize => Envs * RolloutSteps;
    /// <summary>BatchSize / Minibatches.</summary>
    public int MinibatchSize => BatchSize / Minibatches;
    /// <summary>TotalSteps / BatchSize.</summary>
    public int Iterations => (int)Math.Min(int.MaxValue, TotalSteps / BatchSize);

    /// <summary>Throws an ArgumentException naming the first setting out of range.</summary>
    public void Validate()
    {
        static void Require(bool ok, string message) { if (!ok) throw new ArgumentException($"PpoConfig: {message}"); }
        Require(Envs > 0 && RolloutSteps > 0, $"Envs ({Envs}) and RolloutSteps ({RolloutSteps}) must be positive");
        Require((long)Envs * RolloutSteps <= 1 << 24, $"Envs × RolloutSteps = {(long)Envs * RolloutSteps} is more than 2^24 samples per rollout");
        Require(Minibatches > 0 && BatchSize % Minibatches == 0 && MinibatchSize >= 2, $"Minibatches ({Minibatches}) must divide the batch Envs × RolloutSteps = {BatchSize} into minibatches of at least 2");
        Require(UpdateEpochs > 0, $"UpdateEpochs must be positive, got {UpdateEpochs}");
        Require(TotalSteps >= BatchSize, $"TotalSteps ({TotalSteps}) must be at least one batch (Envs × RolloutSteps = {BatchSize})");
        Require(LearningRate > 0 && double.IsFinite(LearningRate), $"LearningRate must be positive and finite, got {LearningRate}");
        Require(AdamEpsilon >= 0, $"AdamEpsilon must be non-negative, got {AdamEpsilon}");
        Require(Gamma is >= 0 and <= 1 && Lambda is >= 0 and <= 1, $"Gamma ({Gamma}) and Lambda ({Lambda}) must lie in [0, 1]");
        Require(MaxGradNorm > 0, $"MaxGradNorm must be positive, got {MaxGradNorm}");
        Require(Coefficients.ClipCoefficient > 0 && Coefficients.EntropyCoefficient >= 0 && Coefficients.ValueCoefficient >= 0,
            $"the clip coefficient ({Coefficients.ClipCoefficient}) must be positive and the entropy ({Coefficients.EntropyCoefficient}) and value ({Coefficients.ValueCoefficient}) coefficients non-negative");
    }
}

/// <summary>What one PPO iteration (a rollout and its update) reports.</summary>
/// <param name="Iteration">1-based iteration.</param>
/// <param name="Iterations">Iterations in the run.</param>
/// <param name="Steps">Environment steps so far.</param>
/// <param name="MeanReturn100">Mean return of the last 100 finished episodes (NaN before the first).</param>
/// <param name="Episodes">Episodes finished so far.</param>
/// <param name="PolicyLoss">Mean clipped-surrogate loss over the iteration's minibatches.</param>
/// <param name="ValueLoss">Mean value loss.</param>
/// <param name="Entropy">Mean policy entropy.</param>
/// <param name="ApproxKl">Mean approximate KL between the rollout policy and the updated one.</param>
/// <param name="ClipFraction">Mean fraction of clipped ratios.</param>
/// <param name="LearningRate">The learning rate used in this iteration.</param>
/// <param name="StepsPerSecond">Environment steps per wall-clock second over the run so far (rollouts and updates).</param>
/// <param name="EnvironmentStepsPerSecond">Environment steps per second spent inside the environments' Step alone.</param>
/// <param name="RolloutSeconds">Wall time spent collecting rollouts so far (policy forward passes, sampling, environments).</param>
/// <param name="UpdateSeconds">Wall time spent in the updates so far (advantages, forward, backward, clipping, Adam).</param>
/// <param name="ActSeconds">Of the rollouts, wall time in the policy's forward passes without gradients (including the bootstrap values).</param>
/// <param name="ForwardSeconds">Of the updates, wall time in the minibatches' forward passes and losses.</param>
/// <param name="BackwardSeconds">Of the updates, wall time in backward.</param>
/// <param name="OptimizerSeconds">Of the updates, wall time in gradient-norm clipping and the Adam steps.</param>
/// <param name="CpuSeconds">Processor time of the whole process over the run so far (all threads); on a machine shared with other jobs
/// it measures the run's own work where wall time also counts the waiting.</param>
public sealed record PpoIterationReport(int Iteration, int Iterations, long Steps, double MeanReturn100, int Episodes, double PolicyLoss, double ValueLoss,
    double Entropy, double ApproxKl, double ClipFraction, double LearningRate, double StepsPerSecond, double EnvironmentStepsPerSecond,
    double RolloutSeconds, double UpdateSeconds, double ActSeconds = 0, double ForwardSeconds = 0, double BackwardSeconds = 0, double OptimizerSeconds = 0,
    double CpuSeconds = 0);

/// <summary>The outcome of a PPO run.</summary>
/// <param name="Reports">One report per iteration.</param>
/// <param name="Episodes">Every finished episode.</param>
/// <param name="Steps">Environment steps taken.</param>
/// <param name="WallSeconds">Wall-clock time of the run.</param>
public sealed record PpoResult(IReadOnlyList<PpoIterationReport> Reports, IReadOnlyList<EpisodeRecord> Episodes, long Steps, double WallSeconds)
{
    /// <summary>Mean return of the last 100 episodes (NaN if none finished).</summary>
    public double MeanReturn100 => EpisodeStatistics.MeanOfLast(Episodes, 100);
}

/// <summary>Statistics of episode records.</summary>
public static class EpisodeStatistics
{
    /// <summary>Mean return of the last <paramref name="count"/> episodes (NaN when there are none).</summary>
    public static double MeanOfLast(IReadOnlyList<EpisodeRecord> episodes, int count)
    {
        int n = Math.Min(count, episodes.Count);
        if (n == 0) return double.NaN;
        double s = 0;
        for (int i = episodes.Count - n; i < episodes.Count; i++) s += episodes[i].Return;
        return s / n;
    }

    /// <summary>
    /// The environment step at which the mean return of 100 consecutive episodes first reached <paramref name="threshold"/>
    /// (the step the 100th of them ended), or null if it never did.
    /// </summary>
    public static long? StepsToReach(IReadOnlyList<EpisodeRecord> episodes, double threshold, int window = 100)
    {
        double s = 0;
        for (int i = 0; i < episodes.Count; i++)
        {
            s += episodes[i].Return;
            if (i >= window) s -= episodes[i - window].Return;
            if (i >= window - 1 && s / window >= threshold) return episodes[i].EndStep;
        }
        return null;
    }
}
