namespace AttnCore.Models.Reinforcement;

/// <summary>
/// An environment the command line knows by name, with its "solved" rule: CartPole-v1's mean return of at least
/// 475 over 100 consecutive episodes (also applied to the stateless variant), and for the memory task at least 90%
/// of 100 consecutive episodes reaching the rewarding end (a positive return).
/// </summary>
/// <param name="Name">The name on the command line and in checkpoints.</param>
/// <param name="Create">Makes a fresh environment.</param>
/// <param name="SolvedRule">The rule in words.</param>
public sealed record EnvironmentEntry(string Name, Func<IEnvironment> Create, string SolvedRule)
{
    /// <summary>The step at which the rule was first met over 100 consecutive episodes (the step the last of them ended), or null.</summary>
    public long? StepsToSolve(IReadOnlyList<EpisodeRecord> episodes) => Name == "memory"
        ? EpisodeStatistics.StepsToReach(SuccessIndicators(episodes), 0.9)
        : EpisodeStatistics.StepsToReach(episodes, CartPole.SolvedMeanReturn);

    /// <summary>The fraction of the last 100 episodes that reached the rewarding end (memory task), or null for other environments.</summary>
    public double? SuccessRate100(IReadOnlyList<EpisodeRecord> episodes) =>
        Name == "memory" && episodes.Count > 0 ? EpisodeStatistics.MeanOfLast(SuccessIndicators(episodes), 100) : null;

    private static List<EpisodeRecord> SuccessIndicators(IReadOnlyList<EpisodeRecord> episodes) =>
        episodes.Select(e => e with { Return = e.Return > 0 ? 1 : 0 }).ToList();
}

/// <summary>The environments of <c>attncore train rl</c> and <c>attncore play</c>.</summary>
public static class EnvironmentCatalogue
{
    /// <summary>cartpole, stateless-cartpole, memory.</summary>
    public static IReadOnlyList<EnvironmentEntry> All { get; } =
    [
        new("cartpole", () => new CartPole(), "mean return >= 475 over 100 consecutive episodes"),
        new("stateless-cartpole", () => new StatelessCartPole(), "mean return >= 475 over 100 consecutive episodes"),
        new("memory", () => new ProofOfMemory(), ">= 90% of 100 consecutive episodes reach the rewarding end"),
    ];

    /// <summary>The entry named <paramref name="name"/>.</summary>
    public static EnvironmentEntry Get(string name) => All.FirstOrDefault(e => e.Name == name)
        ?? throw new ArgumentException($"EnvironmentCatalogue: unknown environment '{name}'; known: {string.Join(", ", All.Select(e => e.Name))}");
}
