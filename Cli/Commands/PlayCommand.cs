using System.CommandLine;
using System.Globalization;
using AttnCore.Models.Reinforcement;

namespace AttnCore.Cli.Commands;

/// <summary><c>attncore play</c>: evaluates a policy saved by <c>attncore train rl</c> over whole episodes and prints the mean and spread of the returns.</summary>
public static class PlayCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create(CliIO io)
    {
        var common = new CommonOptions();
        var ckpt = PathRule.ExistingFile("--checkpoint", "policy-seed<N>.safetensors written by 'attncore train rl'");
        var episodes = NumericOption.Int("--episodes", "episodes to play", 100, 1, 1_000_000);
        var greedy = new Option<bool>("--greedy") { Description = "take the most probable action instead of sampling from the policy" };
        var cmd = common.AddTo(new Command("play", "Play a trained PPO policy for --episodes episodes and print the mean and spread of its returns") { ckpt, episodes, greedy });
        cmd.SetAction(p =>
        {
            var device = common.Apply(p);
            string path = p.GetValue(ckpt)!;
            var (policy, envName) = PolicyCheckpoint.Load(path, device);
            using (policy)
            {
                var entry = EnvironmentCatalogue.Get(envName);
                int n = p.GetValue(episodes);
                var clock = System.Diagnostics.Stopwatch.StartNew();
                var returns = PolicyEvaluation.Play(policy, entry.Create(), n, p.GetValue(common.Seed), p.GetValue(greedy));
                double mean = returns.Average();
                double std = n > 1 ? Math.Sqrt(returns.Sum(r => (r - mean) * (r - mean)) / (n - 1)) : 0;
                double? success = entry.Name == "memory" ? returns.Count(r => r > 0) / (double)n : null;
                io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{policy.Kind} policy on {entry.Name}: mean return {mean:F1} +- {std:F1} (sd) over {n} episodes, min {returns.Min():F1}, max {returns.Max():F1}{(success is double s ? $", {100 * s:F0}% reach the rewarding end" : "")} ({clock.Elapsed.TotalSeconds:F1} s)"));
                if (p.GetValue(common.Json))
                    io.Json(new { env = entry.Name, policy = policy.Kind, episodes = n, mean_return = mean, std_return = std, min_return = returns.Min(), max_return = returns.Max(), success_rate = success, greedy = p.GetValue(greedy) });
            }
            return 0;
        });
        return cmd;
    }
}
