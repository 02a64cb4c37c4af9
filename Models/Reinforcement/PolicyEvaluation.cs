namespace AttnCore.Models.Reinforcement;

/// <summary>The attention of a Transformer policy's decisions over one episode.</summary>
/// <param name="Weights">[steps, K]: row t is the attention of the decision at step t (its last query, averaged over heads) over the window's K positions, oldest first.</param>
/// <param name="Observations">The observation of each step, [steps][obs].</param>
/// <param name="Actions">The action taken at each step.</param>
/// <param name="Return">The episode's return (over the recorded steps).</param>
public sealed record EpisodeAttention(float[,] Weights, float[][] Observations, int[] Actions, double Return);

/// <summary>Plays a trained policy: evaluation returns, and the attention picture of one episode.</summary>
public static class PolicyEvaluation
{
    /// <summary>
    /// Plays <paramref name="episodes"/> whole episodes of <paramref name="environment"/> (the first reset seeded with
    /// <paramref name="seed"/>, the following ones continuing its stream), sampling actions from the policy, or taking
    /// the most probable one when <paramref name="greedy"/>; returns each episode's return.
    /// </summary>
    public static double[] Play(ActorCritic policy, IEnvironment environment, int episodes, ulong seed, bool greedy = false)
    {
        if (episodes <= 0) throw new ArgumentOutOfRangeException(nameof(episodes), episodes, "PolicyEvaluation.Play: the number of episodes must be positive");
        var returns = new double[episodes];
        var run = new Runner(policy, environment, seed);
        for (int e = 0; e < episodes; e++)
        {
            run.Start(e == 0 ? seed : null);
            double total = 0;
            for (bool done = false; !done;)
            {
                var r = run.Step(greedy);
                total += r.Reward;
                done = r.Done;
            }
            returns[e] = total;
        }
        return returns;
    }

    /// <summary>
    /// Plays one episode (at most <paramref name="maxSteps"/> steps) with <paramref name="policy"/>'s block
    /// <paramref name="layer"/> keeping its attention weights, and returns them with what happened.
    /// </summary>
    public static EpisodeAttention RecordAttention(TransformerActorCritic policy, IEnvironment environment, ulong seed, int maxSteps, int layer = -1, bool greedy = true)
    {
        if (maxSteps <= 0) throw new ArgumentOutOfRangeException(nameof(maxSteps), maxSteps, "PolicyEvaluation.RecordAttention: maxSteps must be positive");
        int l = layer < 0 ? policy.Layers + layer : layer;
        if (l < 0 || l >= policy.Layers) throw new ArgumentOutOfRangeException(nameof(layer), layer, $"PolicyEvaluation.RecordAttention: the policy has {policy.Layers} blocks");
        var attention = policy.Attention(l);
        attention.KeepWeights = true;
        try
        {
            var rows = new List<float[]>();
            var observations = new List<float[]>();
            var actions = new List<int>();
            double total = 0;
            var run = new Runner(policy, environment, seed);
            run.Start(seed);
            for (bool done = false; !done && rows.Count < maxSteps;)
            {
                observations.Add(run.Observation.ToArray());
                var r = run.Step(greedy);
                using (new NoGrad())
                using (var w = attention.LastWeights!.Select(0, 0))   // [H, K, K]
                using (var last = w.Select(1, policy.Context - 1))      // [H, K]: the decision's query
                using (var mean = last.Mean(0))
                    rows.Add(mean.ToArray<float>());
                actions.Add(r.Action);
                total += r.Reward;
                done = r.Done;
            }
            var weights = new float[rows.Count, policy.Context];
            for (int t = 0; t < rows.Count; t++) for (int j = 0; j < policy.Context; j++) weights[t, j] = rows[t][j];
            return new EpisodeAttention(weights, observations.ToArray(), actions.ToArray(), total);
        }
        finally { attention.KeepWeights = false; }
    }

    // One environment driven by a policy through its observation window.
    private sealed class Runner(ActorCritic policy, IEnvironment env, ulong seed)
    {
        private readonly ObservationHistory _history = new(1, policy.Context, env.ObservationSpace.Size);
        private readonly float[] _obs = new float[env.ObservationSpace.Size];
        private readonly float[] _window = new float[policy.Context * env.ObservationSpace.Size];
        private readonly float[] _mask = new float[policy.Context];
        private readonly Generator _random = new(seed ^ 0xE0A1_0003UL);

        public ReadOnlySpan<float> Observation => _obs;

        public void Start(ulong? resetSeed)
        {
            if (env.ObservationSpace.Size != policy.ObservationSize || env.ActionSpace.Count != policy.ActionCount)
                throw new ArgumentException($"PolicyEvaluation: the policy takes {policy.ObservationSize} observations and {policy.ActionCount} actions, '{env.Name}' has {env.ObservationSpace.Size} and {env.ActionSpace.Count}");
            env.Reset(resetSeed, _obs);
            _history.StartEpisode(0, _obs);
        }

        public (int Action, double Reward, bool Done) Step(bool greedy)
        {
            _history.CopyWindow(0, _window, _mask);
            float[] logp;
            using (new NoGrad())
            using (var scope = new TensorScope())
            {
                var device = policy.Parameters().First().Device;
                var x = Tensor.FromArray(_window, [1, policy.Context, _obs.Length], device);
                var pad = _mask.AsSpan().IndexOfAnyExcept(0f) >= 0 ? Tensor.FromArray(_mask, [1, policy.Context], device) : null;
                var (logits, _) = policy.Forward(x, pad);
                logp = logits.LogSoftmax(-1).ToArray<float>();
            }
            int a = greedy ? Categorical.Mode(logp) : Categorical.Sample(logp, _random);
            var r = env.Step(a, _obs);
            if (!r.Done) _history.Push(0, _obs);
            return (a, r.Reward, r.Done);
        }
    }
}
