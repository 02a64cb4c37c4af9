namespace AttnCore.Models.Reinforcement;

/// <summary>One finished episode: its return, its length and the runner's step count when it ended.</summary>
/// <param name="Return">Sum of the episode's rewards.</param>
/// <param name="Length">Steps in the episode.</param>
/// <param name="EndStep">Total environment steps (over all environments) when it ended.</param>
/// <param name="Truncated">Ended by the time limit rather than by termination.</param>
public readonly record struct EpisodeRecord(double Return, int Length, long EndStep, bool Truncated);

/// <summary>
/// N environments stepped together, as Gymnasium's SyncVectorEnv with same-step auto-reset (the semantics CleanRL's
/// ppo.py relies on): an environment whose episode ends is reset at once, <see cref="Observations"/> holds the first
/// observation of its new episode, and the last observation of the finished episode is kept in
/// <see cref="FinalObservations"/>, which a learner needs to bootstrap the value of a truncated episode.
/// Buffers are allocated once; a step allocates nothing but the record of an episode that ended.
/// </summary>
public sealed class VectorEnvironment
{
    private readonly IEnvironment[] _envs;
    private readonly double[] _episodeReturn;
    private readonly int[] _episodeLength;
    private bool _reset;

    /// <summary>Runs <paramref name="environments"/> (at least one, all with the same spaces).</summary>
    public VectorEnvironment(IReadOnlyList<IEnvironment> environments)
    {
        if (environments.Count == 0) throw new ArgumentException("VectorEnvironment: needs at least one environment");
        _envs = environments.ToArray();
        var first = _envs[0];
        foreach (var e in _envs)
            if (e.ObservationSpace.Size != first.ObservationSpace.Size || e.ActionSpace.Count != first.ActionSpace.Count)
                throw new ArgumentException($"VectorEnvironment: '{e.Name}' has {e.ObservationSpace.Size} observations and {e.ActionSpace.Count} actions, '{first.Name}' {first.ObservationSpace.Size} and {first.ActionSpace.Count}");
        Count = _envs.Length;
        ObservationSize = first.ObservationSpace.Size;
        ActionCount = first.ActionSpace.Count;
        Observations = new float[Count * ObservationSize];
        FinalObservations = new float[Count * ObservationSize];
        Rewards = new double[Count];
        Terminated = new bool[Count];
        Truncated = new bool[Count];
        _episodeReturn = new double[Count];
        _episodeLength = new int[Count];
    }

    /// <summary>Number of environments.</summary>
    public int Count { get; }
    /// <summary>Floats per observation.</summary>
    public int ObservationSize { get; }
    /// <summary>Number of actions.</summary>
    public int ActionCount { get; }
    /// <summary>The environments.</summary>
    public IReadOnlyList<IEnvironment> Environments => _envs;
    /// <summary>[Count × ObservationSize]: each environment's current observation (the new episode's first after a reset).</summary>
    public float[] Observations { get; }
    /// <summary>[Count × ObservationSize]: the last observation of an episode that ended in the last step (valid where Terminated or Truncated).</summary>
    public float[] FinalObservations { get; }
    /// <summary>Rewards of the last step.</summary>
    public double[] Rewards { get; }
    /// <summary>Which episodes terminated in the last step.</summary>
    public bool[] Terminated { get; }
    /// <summary>Which episodes were truncated in the last step (a truncated episode may also be terminated).</summary>
    public bool[] Truncated { get; }
    /// <summary>Environment steps taken so far, over all environments.</summary>
    public long TotalSteps { get; private set; }
    /// <summary>Every episode finished so far, in the order they ended.</summary>
    public List<EpisodeRecord> Episodes { get; } = [];

    /// <summary>The observation of environment <paramref name="env"/> in <paramref name="buffer"/> (Observations or FinalObservations).</summary>
    public Span<float> Row(float[] buffer, int env) => buffer.AsSpan(env * ObservationSize, ObservationSize);

    /// <summary>Resets every environment, environment i with seed <paramref name="seed"/> + i (as Gymnasium's vector reset).</summary>
    public void Reset(ulong seed)
    {
        for (int i = 0; i < Count; i++)
        {
            _envs[i].Reset(seed + (ulong)i, Row(Observations, i));
            _episodeReturn[i] = 0; _episodeLength[i] = 0;
        }
        Array.Clear(Terminated); Array.Clear(Truncated); Array.Clear(Rewards);
        _reset = true;
    }

    /// <summary>Steps environment i with <paramref name="actions"/>[i]; ended episodes are recorded and reset (continuing their random streams).</summary>
    public void Step(ReadOnlySpan<int> actions)
    {
        if (!_reset) throw new InvalidOperationException("VectorEnvironment.Step: call Reset first");
        if (actions.Length != Count) throw new ArgumentException($"VectorEnvironment.Step: got {actions.Length} actions for {Count} environments");
        for (int i = 0; i < Count; i++)
        {
            var r = _envs[i].Step(actions[i], Row(Observations, i));
            TotalSteps++;
            Rewards[i] = r.Reward; Terminated[i] = r.Terminated; Truncated[i] = r.Truncated;
            _episodeReturn[i] += r.Reward;
            _episodeLength[i]++;
            if (!r.Done) continue;
            Episodes.Add(new EpisodeRecord(_episodeReturn[i], _episodeLength[i], TotalSteps, r.Truncated && !r.Terminated));
            Row(Observations, i).CopyTo(Row(FinalObservations, i));
            _envs[i].Reset(null, Row(Observations, i));
            _episodeReturn[i] = 0; _episodeLength[i] = 0;
        }
    }
}
