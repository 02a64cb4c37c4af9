using System.Diagnostics;
using AttnCore.Distributed;
using AttnCore.Optim;

namespace AttnCore.Models.Reinforcement;

/// <summary>
/// Proximal Policy Optimization (Schulman et al. 2017) as CleanRL's ppo.py runs it, one iteration at a time:
/// <list type="number">
/// <item>Rollout: <see cref="PpoConfig.RolloutSteps"/> steps of every environment, actions sampled from the policy
/// (no gradient), storing each decision's observation window, action, log-probability and value. An episode cut by
/// the time limit gets the value of its final observation (its window with that observation appended) for
/// bootstrapping; a terminated one gets none.</item>
/// <item>Advantages by <see cref="Gae"/> (γ, λ) and value targets R = A + V.</item>
/// <item><see cref="PpoConfig.UpdateEpochs"/> passes over the rollout in shuffled minibatches: <see cref="PpoLoss"/>,
/// backward, gradient-norm clipping, an Adam step (ε 1e-5); the learning rate decays linearly to 0 over the run.</item>
/// </list>
/// Deterministic for a seed: the environments, the action draws and the minibatch order each have their own
/// seeded stream, and the kernels reduce in a fixed order. Host buffers are allocated once; a step allocates only
/// the engine's tensors of its forward pass.
/// </summary>
public sealed class PpoTrainer
{
    private readonly ActorCritic _policy;
    private readonly PpoConfig _cfg;
    private readonly Device _device;
    private readonly ObservationHistory _history;
    private readonly int _k, _obs, _actions, _window;

    /// <summary>A trainer for <paramref name="policy"/> on environments made by <paramref name="makeEnvironment"/> (called with 0 .. Envs-1).</summary>
    public PpoTrainer(ActorCritic policy, Func<int, IEnvironment> makeEnvironment, PpoConfig config)
    {
        config.Validate();
        _policy = policy; _cfg = config;
        Environments = new VectorEnvironment(Enumerable.Range(0, config.Envs).Select(makeEnvironment).ToArray());
        if (Environments.ObservationSize != policy.ObservationSize || Environments.ActionCount != policy.ActionCount)
            throw new ArgumentException($"PpoTrainer: the policy takes {policy.ObservationSize} observations and {policy.ActionCount} actions, the environment '{Environments.Environments[0].Name}' has {Environments.ObservationSize} and {Environments.ActionCount}");
        _device = policy.Parameters().First().Device;
        (_k, _obs, _actions) = (policy.Context, Environments.ObservationSize, Environments.ActionCount);
        _window = _k * _obs;
        _history = new ObservationHistory(config.Envs, _k, _obs);
    }

    /// <summary>The environments being stepped.</summary>
    public VectorEnvironment Environments { get; }

    /// <summary>
    /// Data-parallel training (null: this process alone). Each rank steps its own environments (give each rank its own
    /// <see cref="PpoConfig.Seed"/>) and updates on minibatches of its own rollout; the gradients of every minibatch are
    /// averaged over the ranks before clipping and the Adam step, so the ranks keep one policy. Every rank must run the same
    /// number of iterations, epochs and minibatches.
    /// </summary>
    public DataParallel? DataParallel { get; init; }

    /// <summary>Runs every iteration; <paramref name="onIteration"/> sees each report as it is made.</summary>
    public PpoResult Train(Action<PpoIterationReport>? onIteration = null)
    {
        int n = _cfg.Envs, steps = _cfg.RolloutSteps, batch = _cfg.BatchSize, mb = _cfg.MinibatchSize, iterations = _cfg.Iterations;
        var windows = new float[batch * _window];
        var masks = new float[batch * _k];
        var actions = new int[batch];
        var logProbs = new double[batch];
        var values = new double[batch];
        var rewards = new double[batch];
        var terminated = new bool[batch];
        var truncated = new bool[batch];
        var finalValues = new double[batch];
        var advantages = new double[batch];
        var returns = new double[batch];
        var nextValues = new double[n];
        var actWindows = new float[n * _window];
        var actMasks = new float[n * _k];
        var actLogProbs = new float[n * _actions];
        var actValues = new float[n];
        var truncatedEnvs = new int[n];
        var order = new int[batch];
        var mbWindows = new float[mb * _window];
        var mbMasks = new float[mb * _k];
        var mbActions = new long[mb];
        var mbOldLogProbs = new float[mb];
        var mbAdvantages = new float[mb];
        var mbReturns = new float[mb];
        var mbOldValues = new float[mb];

        var actionRandom = new Generator(_cfg.Seed ^ 0xA5A5_0001UL);
        var shuffleRandom = new Generator(_cfg.Seed ^ 0x5A5A_0002UL);
        var parameters = _policy.Parameters().ToArray();
        using var optimizer = new Adam(parameters, _cfg.LearningRate, 0.9, 0.999, _cfg.AdamEpsilon);
        var vec = Environments;
        vec.Reset(_cfg.Seed);
        for (int i = 0; i < n; i++) _history.StartEpisode(i, vec.Row(vec.Observations, i));

        var reports = new List<PpoIterationReport>(iterations);
        var clock = Stopwatch.StartNew();
        var cpuStart = ProcessorTime();
        double envSeconds = 0, rolloutSeconds = 0, updateSeconds = 0, actSeconds = 0, forwardSeconds = 0, backwardSeconds = 0, optimizerSeconds = 0;
        _policy.Train();
        for (int iteration = 1; iteration <= iterations; iteration++)
        {
            double lr = _cfg.AnnealLearningRate ? (1.0 - (iteration - 1.0) / iterations) * _cfg.LearningRate : _cfg.LearningRate;
            foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
            long rolloutStart = Stopwatch.GetTimestamp();

            for (int t = 0; t < steps; t++)
            {
                int first = t * n;
                for (int i = 0; i < n; i++)
                    _history.CopyWindow(i, windows.AsSpan((first + i) * _window, _window), masks.AsSpan((first + i) * _k, _k));
                long actStart = Stopwatch.GetTimestamp();
                Act(windows.AsSpan(first * _window, n * _window), masks.AsSpan(first * _k, n * _k), n, actLogProbs, actValues);
                actSeconds += Stopwatch.GetElapsedTime(actStart).TotalSeconds;
                for (int i = 0; i < n; i++)
                {
                    var row = actLogProbs.AsSpan(i * _actions, _actions);
                    int a = Categorical.Sample(row, actionRandom);
                    actions[first + i] = a;
                    logProbs[first + i] = row[a];
                    values[first + i] = actValues[i];
                }
                long envStart = Stopwatch.GetTimestamp();
                vec.Step(actions.AsSpan(first, n));
                envSeconds += Stopwatch.GetElapsedTime(envStart).TotalSeconds;
                int truncatedCount = 0;
                for (int i = 0; i < n; i++)
                {
                    int k = first + i;
                    rewards[k] = vec.Rewards[i];
                    terminated[k] = vec.Terminated[i];
                    // Without bootstrapping, a time limit ends the trace like a failure (CleanRL's next_done).
                    truncated[k] = vec.Truncated[i] && !vec.Terminated[i] && _cfg.BootstrapTruncation;
                    if (vec.Truncated[i] && !_cfg.BootstrapTruncation) terminated[k] = true;
                    finalValues[k] = 0;
                    if (vec.Terminated[i] || vec.Truncated[i])
                    {
                        if (truncated[k])
                        {
                            _history.Push(i, vec.Row(vec.FinalObservations, i));
                            int j = truncatedCount++;
                            _history.CopyWindow(i, actWindows.AsSpan(j * _window, _window), actMasks.AsSpan(j * _k, _k));
                            truncatedEnvs[j] = i;
                        }
                        _history.StartEpisode(i, vec.Row(vec.Observations, i));
                    }
                    else _history.Push(i, vec.Row(vec.Observations, i));
                }
                if (truncatedCount > 0)
                {
                    long bootstrapStart = Stopwatch.GetTimestamp();
                    Act(actWindows.AsSpan(0, truncatedCount * _window), actMasks.AsSpan(0, truncatedCount * _k), truncatedCount, actLogProbs, actValues);
                    actSeconds += Stopwatch.GetElapsedTime(bootstrapStart).TotalSeconds;
                    for (int j = 0; j < truncatedCount; j++) finalValues[first + truncatedEnvs[j]] = actValues[j];
                }
            }
            for (int i = 0; i < n; i++) _history.CopyWindow(i, actWindows.AsSpan(i * _window, _window), actMasks.AsSpan(i * _k, _k));
            Act(actWindows, actMasks, n, actLogProbs, actValues);
            for (int i = 0; i < n; i++) nextValues[i] = actValues[i];
            long updateStart = Stopwatch.GetTimestamp();
            rolloutSeconds += Stopwatch.GetElapsedTime(rolloutStart, updateStart).TotalSeconds;
            Gae.Compute(steps, n, rewards, values, terminated, truncated, finalValues, nextValues, _cfg.Gamma, _cfg.Lambda, advantages, returns);

            double policyLoss = 0, valueLoss = 0, entropy = 0, kl = 0, clipFraction = 0;
            int updates = 0;
            for (int i = 0; i < batch; i++) order[i] = i;
            for (int epoch = 0; epoch < _cfg.UpdateEpochs; epoch++)
            {
                for (int i = batch - 1; i > 0; i--)
                {
                    int j = (int)shuffleRandom.NextInt64(0, i + 1);
                    (order[i], order[j]) = (order[j], order[i]);
                }
                for (int start = 0; start < batch; start += mb)
                {
                    for (int r = 0; r < mb; r++)
                    {
                        int s = order[start + r];
                        windows.AsSpan(s * _window, _window).CopyTo(mbWindows.AsSpan(r * _window, _window));
                        masks.AsSpan(s * _k, _k).CopyTo(mbMasks.AsSpan(r * _k, _k));
                        mbActions[r] = actions[s];
                        mbOldLogProbs[r] = (float)logProbs[s];
                        mbAdvantages[r] = (float)advantages[s];
                        mbReturns[r] = (float)returns[s];
                        mbOldValues[r] = (float)values[s];
                    }
                    long forwardStart = Stopwatch.GetTimestamp();
                    using var scope = new TensorScope();
                    var x = Tensor.FromArray(mbWindows, [mb, _k, _obs], _device);
                    var pad = AnyHidden(mbMasks) ? Tensor.FromArray(mbMasks, [mb, _k], _device) : null;
                    var (logits, newValues) = _policy.Forward(x, pad);
                    var terms = PpoLoss.Compute(logits, newValues, Tensor.FromArray(mbActions, [mb], _device), Tensor.FromArray(mbOldLogProbs, [mb], _device),
                        Tensor.FromArray(mbAdvantages, [mb], _device), Tensor.FromArray(mbReturns, [mb], _device), Tensor.FromArray(mbOldValues, [mb], _device), _cfg.Coefficients);
                    double loss = terms.Loss.Item();
                    // Over the ranks, so that a non-finite loss anywhere stops every rank rather than leaving the others waiting.
                    if (DataParallel is { } dp) loss = dp.AverageOverRanks(loss);
                    if (!double.IsFinite(loss))
                        throw new InvalidOperationException($"PPO: the loss is {loss} in iteration {iteration}, epoch {epoch + 1}, minibatch {start / mb + 1} (after {vec.TotalSteps} environment steps); lower the learning rate");
                    long backwardStart = Stopwatch.GetTimestamp();
                    forwardSeconds += Stopwatch.GetElapsedTime(forwardStart, backwardStart).TotalSeconds;
                    optimizer.ZeroGrad();
                    terms.Loss.Backward();
                    DataParallel?.SynchronizeGradients();
                    long optimizerStart = Stopwatch.GetTimestamp();
                    backwardSeconds += Stopwatch.GetElapsedTime(backwardStart, optimizerStart).TotalSeconds;
                    GradClip.ClipGradNorm(parameters, _cfg.MaxGradNorm).Dispose();
                    optimizer.Step();
                    optimizerSeconds += Stopwatch.GetElapsedTime(optimizerStart).TotalSeconds;
                    policyLoss += terms.PolicyLoss.Item(); valueLoss += terms.ValueLoss.Item(); entropy += terms.Entropy.Item();
                    kl += terms.ApproxKl.Item(); clipFraction += terms.ClipFraction.Item();
                    updates++;
                }
            }
            optimizer.ZeroGrad();
            updateSeconds += Stopwatch.GetElapsedTime(updateStart).TotalSeconds;
            double elapsed = clock.Elapsed.TotalSeconds;
            var report = new PpoIterationReport(iteration, iterations, vec.TotalSteps, EpisodeStatistics.MeanOfLast(vec.Episodes, 100), vec.Episodes.Count,
                policyLoss / updates, valueLoss / updates, entropy / updates, kl / updates, clipFraction / updates, lr,
                vec.TotalSteps / Math.Max(1e-9, elapsed), vec.TotalSteps / Math.Max(1e-9, envSeconds), rolloutSeconds, updateSeconds,
                actSeconds, forwardSeconds, backwardSeconds, optimizerSeconds, (ProcessorTime() - cpuStart).TotalSeconds);
            reports.Add(report);
            onIteration?.Invoke(report);
        }
        return new PpoResult(reports, vec.Episodes, vec.TotalSteps, clock.Elapsed.TotalSeconds);
    }

    private static TimeSpan ProcessorTime()
    {
        using var process = Process.GetCurrentProcess();
        return process.TotalProcessorTime;
    }

    private static bool AnyHidden(ReadOnlySpan<float> mask) => mask.IndexOfAnyExcept(0f) >= 0;

    // Log-probabilities [count, A] and values [count] of the policy for count windows, without gradients.
    private void Act(ReadOnlySpan<float> windows, ReadOnlySpan<float> masks, int count, float[] logProbs, float[] values)
    {
        using var noGrad = new NoGrad();
        using var scope = new TensorScope();
        var x = Tensor.FromSpan(windows, [count, _k, _obs], _device);
        var pad = AnyHidden(masks) ? Tensor.FromSpan(masks, [count, _k], _device) : null;
        var (logits, v) = _policy.Forward(x, pad);
        logits.LogSoftmax(-1).ToArray<float>().CopyTo(logProbs, 0);
        v.ToArray<float>().CopyTo(values, 0);
    }
}
