namespace AttnCore.Models.Reinforcement;

/// <summary>
/// A box of observations: one float per component, each within [Low[i], High[i]] (Gymnasium's <c>spaces.Box</c>,
/// one-dimensional). Infinite bounds are written as float.MaxValue, as Gymnasium writes np.finfo(float32).max.
/// </summary>
/// <param name="Low">Lower bound of each component.</param>
/// <param name="High">Upper bound of each component.</param>
public sealed record BoxSpace(float[] Low, float[] High)
{
    /// <summary>Number of components of an observation.</summary>
    public int Size => Low.Length;
}

/// <summary>Actions 0 .. Count-1 (Gymnasium's <c>spaces.Discrete</c>).</summary>
/// <param name="Count">Number of actions.</param>
public sealed record DiscreteSpace(int Count);

/// <summary>What one step of an environment returned besides the observation.</summary>
/// <param name="Reward">The reward of the step.</param>
/// <param name="Terminated">The episode ended in a terminal state of the task (no value beyond it).</param>
/// <param name="Truncated">The episode was cut by its time limit (the state still has a value: bootstrap from it).</param>
public readonly record struct StepResult(double Reward, bool Terminated, bool Truncated)
{
    /// <summary>True when the episode is over for either reason.</summary>
    public bool Done => Terminated || Truncated;
}

/// <summary>
/// An episodic environment with a discrete action space, as Gymnasium's <c>Env</c>, written for a loop that
/// does not allocate: observations are written into a span the caller owns. Reset starts an episode (reseeding
/// the environment's random stream when a seed is given, continuing it otherwise); Step advances it and says
/// whether it terminated or was truncated by the time limit. Stepping a finished episode is an error.
/// </summary>
public interface IEnvironment
{
    /// <summary>Short name used in messages and files ("cartpole").</summary>
    string Name { get; }

    /// <summary>The observations.</summary>
    BoxSpace ObservationSpace { get; }

    /// <summary>The actions.</summary>
    DiscreteSpace ActionSpace { get; }

    /// <summary>Steps after which an episode is truncated.</summary>
    int MaxEpisodeSteps { get; }

    /// <summary>Starts an episode and writes its first observation (ObservationSpace.Size floats).</summary>
    void Reset(ulong? seed, Span<float> observation);

    /// <summary>Applies <paramref name="action"/>, writes the next observation and returns the reward and the end flags.</summary>
    StepResult Step(int action, Span<float> observation);
}

/// <summary>Argument checks shared by the environments, so each names itself, the action and the sizes.</summary>
internal static class EnvironmentChecks
{
    public static void Observation(IEnvironment env, string op, Span<float> observation)
    {
        if (observation.Length != env.ObservationSpace.Size)
            throw new ArgumentException($"{env.Name}.{op}: the observation span has {observation.Length} floats, the environment writes {env.ObservationSpace.Size}");
    }

    public static void Action(IEnvironment env, int action)
    {
        if ((uint)action >= (uint)env.ActionSpace.Count)
            throw new ArgumentOutOfRangeException(nameof(action), action, $"{env.Name}.Step: action {action} is outside the action space 0..{env.ActionSpace.Count - 1}");
    }

    public static void Running(IEnvironment env, bool started, bool done)
    {
        if (!started) throw new InvalidOperationException($"{env.Name}.Step: call Reset before the first Step");
        if (done) throw new InvalidOperationException($"{env.Name}.Step: the episode has ended (terminated or truncated); call Reset");
    }
}
