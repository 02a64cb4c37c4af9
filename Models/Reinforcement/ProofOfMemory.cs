namespace AttnCore.Models.Reinforcement;

/// <summary>
/// The memory task of CleanRL's Transformer-XL PPO example ("ProofofMemory-v0", after Marco Pleines' PoM
/// environment), with its rules and constants:
/// <list type="bullet">
/// <item>A corridor of 11 cells at positions -1.0, -0.8, ..., 1.0. The agent starts on one of -0.4, -0.2, 0, 0.2, 0.4
/// (uniform). One end holds the rewarding goal, the other the punishing one (which is which: a fair coin).</item>
/// <item>Observation (left goal, position, right goal): the goals read +1 (rewarding) or -1 (punishing) in the first
/// observation and the two steps after it, during which the agent is frozen (its action is ignored, reward 0);
/// from then on they read 0, so the agent must remember which side was +1.</item>
/// <item>Afterwards action 1 moves right and 0 left by 0.2. Reaching an end terminates the episode with reward
/// +1.6 at the rewarding goal and -1.6 at the other (1 plus the 6-step minimum times the 0.1 time penalty);
/// any other move costs 0.1.</item>
/// <item>Episodes are truncated after 16 steps. A successful episode (the rewarding end reached) has a positive
/// return (at least 1.6 - 13 × 0.1 = 0.3); a truncated or wrong one a negative return.</item>
/// </list>
/// Positions are kept as integer cells, so the observation is exactly the rounded position CleanRL's float
/// arithmetic produces.
/// </summary>
public sealed class ProofOfMemory : IEnvironment
{
    /// <summary>Cells on each side of the centre: positions run from -Ends·0.2 to +Ends·0.2.</summary>
    public const int Ends = 5;
    /// <summary>Distance moved per step.</summary>
    public const double StepSize = 0.2;
    /// <summary>Cost of each move that does not end the episode.</summary>
    public const double TimePenalty = 0.1;
    /// <summary>Steps after the first observation during which the goals are shown and the agent is frozen.</summary>
    public const int ShowSteps = 2;
    /// <summary>The goal's reward: 1 + 6 × 0.1, as CleanRL (6 = the minimum number of moves plus one).</summary>
    public const double GoalReward = 1.0 + 6 * TimePenalty;
    /// <summary>CleanRL's time limit for the task.</summary>
    public const int DefaultMaxEpisodeSteps = 16;

    private readonly Generator _random = new(0);
    private int _cell, _rewardingSide, _steps;   // _rewardingSide: -1 left, +1 right
    private bool _started, _done;

    /// <summary>A memory task truncated after <paramref name="maxEpisodeSteps"/> steps.</summary>
    public ProofOfMemory(int maxEpisodeSteps = DefaultMaxEpisodeSteps)
    {
        if (maxEpisodeSteps <= 0) throw new ArgumentOutOfRangeException(nameof(maxEpisodeSteps), maxEpisodeSteps, "ProofOfMemory: the time limit must be positive");
        MaxEpisodeSteps = maxEpisodeSteps;
    }

    /// <inheritdoc/>
    public string Name => "memory";

    /// <inheritdoc/>
    public BoxSpace ObservationSpace { get; } = new([-1f, -1f, -1f], [1f, 1f, 1f]);

    /// <inheritdoc/>
    public DiscreteSpace ActionSpace { get; } = new(2);

    /// <inheritdoc/>
    public int MaxEpisodeSteps { get; }

    /// <summary>-1 when the rewarding goal is on the left, +1 on the right.</summary>
    public int RewardingSide => _rewardingSide;

    /// <summary>The agent's cell, -5 .. 5 (position = cell × 0.2).</summary>
    public int Cell => _cell;

    /// <inheritdoc/>
    public void Reset(ulong? seed, Span<float> observation)
    {
        EnvironmentChecks.Observation(this, "Reset", observation);
        if (seed is ulong s) _random.Reseed(s);
        _cell = (int)_random.NextInt64(-2, 3);
        _rewardingSide = _random.NextInt64(0, 2) == 0 ? -1 : 1;
        _steps = 0; _started = true; _done = false;
        Observe(observation, showGoals: true);
    }

    /// <inheritdoc/>
    public StepResult Step(int action, Span<float> observation)
    {
        EnvironmentChecks.Observation(this, "Step", observation);
        EnvironmentChecks.Action(this, action);
        EnvironmentChecks.Running(this, _started, _done);
        bool frozen = _steps < ShowSteps;
        _steps++;
        double reward = 0;
        bool terminated = false;
        if (!frozen)
        {
            _cell += action == 1 ? 1 : -1;
            if (Math.Abs(_cell) == Ends)
            {
                reward = Math.Sign(_cell) == _rewardingSide ? GoalReward : -GoalReward;
                terminated = true;
            }
            else reward = -TimePenalty;
        }
        bool truncated = _steps >= MaxEpisodeSteps;
        _done = terminated || truncated;
        Observe(observation, showGoals: frozen);
        return new StepResult(reward, terminated, truncated);
    }

    private void Observe(Span<float> observation, bool showGoals)
    {
        observation[0] = showGoals ? -_rewardingSide : 0f;
        observation[1] = (float)Math.Round(_cell * StepSize, 2);
        observation[2] = showGoals ? _rewardingSide : 0f;
    }
}
