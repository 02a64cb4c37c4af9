using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using AttnCore.Models.Reinforcement;
using AttnCore.Models.Training;
using AttnCore.Presentation;

namespace AttnCore.Cli.Commands;

/// <summary>
/// <c>attncore train rl</c>: PPO (CleanRL's ppo.py settings) with an MLP or a causal-Transformer policy on CartPole-v1,
/// stateless CartPole or the memory task; one run per seed (--runs), each writing its policy, and together
/// metrics.json, learning_curve.png and (Transformer) attention.png in --out.
/// </summary>
public static class TrainRlCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create(CliIO commandIO)
    {
        var common = new CommonOptions();
        var distributed = new DistributedOptions();
        var env = new Option<string>("--env") { Description = "environment", DefaultValueFactory = _ => "cartpole" }
            .AcceptOnlyFromAmong(EnvironmentCatalogue.All.Select(e => e.Name).ToArray());
        var policy = new Option<string>("--policy") { Description = "mlp: CleanRL's 64-64 tanh actor and critic on the current observation; transformer: a causal Transformer over the last --context observations", DefaultValueFactory = _ => "mlp" }
            .AcceptOnlyFromAmong("mlp", "transformer");
        var steps = NumericOption.Int("--steps", "environment steps per run (total_timesteps)", 500_000, 1);
        var envs = NumericOption.Int("--envs", "environments stepped together", 4, 1, 4096);
        var rollout = NumericOption.Int("--rollout", "steps per environment per rollout", 128, 1, 1 << 16);
        var minibatches = NumericOption.Int("--minibatches", "minibatches per epoch, a divisor of --envs x --rollout", 4, 1, 1 << 16);
        var epochs = NumericOption.Int("--epochs", "update epochs per rollout", 4, 1, 1000);
        var lr = NumericOption.Number("--lr", "Adam learning rate (annealed linearly to 0)", 2.5e-4, 0, 1, minExclusive: true);
        var entropy = NumericOption.Number("--entropy", "entropy bonus coefficient", 0.01, 0, 10);
        var context = NumericOption.Int("--context", "transformer: observations per decision (K)", 16, 1, 1024);
        var dim = NumericOption.Int("--dim", "transformer: width", 64, 1, 4096);
        var heads = NumericOption.Int("--heads", "transformer: attention heads, a divisor of --dim", 4, 1, 64);
        var layers = NumericOption.Int("--layers", "transformer: blocks", 1, 1, 64);
        var runs = NumericOption.Int("--runs", "runs with seeds --seed, --seed+1, ... (the learning curve shades their spread)", 1, 1, 100);
        var output = PathRule.OutputFolder("--out", "run folder: policy-seed<N>.safetensors, metrics.json, learning_curve.png, attention.png", Path.Combine("runs", "rl"));
        var quiet = new Option<bool>("--quiet") { Description = "no progress display" };
        var baseline = PathRule.ExistingFile("--baseline", "metrics.json of an earlier 'train rl' on the same environment, drawn in the same learning_curve.png (e.g. the MLP next to the Transformer)");
        baseline.Required = false;
        var cmd = distributed.AddTo(common.AddTo(new Command("rl", "PPO on cartpole, stateless-cartpole or memory with an MLP or Transformer policy (CleanRL's ppo.py settings)")
            { env, policy, steps, envs, rollout, minibatches, epochs, lr, entropy, context, dim, heads, layers, runs, output, quiet, baseline }));
        cmd.AddRule(r =>
        {
            long batch = (long)r.GetValue(envs) * r.GetValue(rollout);
            if (batch % r.GetValue(minibatches) != 0 || batch / r.GetValue(minibatches) < 2)
                return $"--minibatches {r.GetValue(minibatches)} must divide --envs x --rollout = {batch} into minibatches of at least 2";
            if (r.GetValue(steps) < batch) return $"--steps {r.GetValue(steps)} must be at least one rollout, --envs x --rollout = {batch}";
            if (r.GetValue(dim) % r.GetValue(heads) != 0) return $"--dim {r.GetValue(dim)} must be a multiple of --heads {r.GetValue(heads)}";
            if (batch * r.GetValue(context) * r.GetValue(dim) * 4 > Array.MaxLength)
                return $"--envs x --rollout x --context x 4 --dim = {batch} x {r.GetValue(context)} x {4 * r.GetValue(dim)} is more than {Array.MaxLength:N0} elements";
            return null;
        });
        cmd.SetAction(p =>
        {
            var device = common.Apply(p);
            using var distributedRun = distributed.Begin(p, commandIO, "train rl");
            var io = distributedRun.IO;
            var share = RankShare(distributedRun, p.GetValue(envs), p.GetValue(rollout), p.GetValue(minibatches), p.GetValue(steps));
            bool json = p.GetValue(common.Json);
            var entry = EnvironmentCatalogue.Get(p.GetValue(env)!);
            string kind = p.GetValue(policy)!, outDir = p.GetValue(output)!;
            var baselineSeries = p.GetValue(baseline) is string bp ? ReadBaseline(bp, entry.Name) : null;
            PathRule.PrepareOutputFolder("train rl", "--out", outDir);
            ulong seed0 = p.GetValue(common.Seed);
            var probe = entry.Create();
            int obsSize = probe.ObservationSpace.Size, actionCount = probe.ActionSpace.Count;
            ActorCritic Make(ulong seed) => kind == "mlp"
                ? new MlpActorCritic(obsSize, actionCount, new Generator(seed), device: device)
                : new TransformerActorCritic(obsSize, actionCount, p.GetValue(context), new Generator(seed), p.GetValue(dim), p.GetValue(heads), p.GetValue(layers), device);
            var results = new List<(ulong Seed, PpoResult Result, long? Solved)>();
            // Rewritten after every run and, with the run in progress marked unfinished, every 50 iterations, so that a long run that is stopped keeps its curve so far.
            string WriteMetrics((ulong Seed, PpoResult Result)? running = null)
            {
                string metrics = Path.Combine(outDir, "metrics.json");
                AtomicFile.Write(metrics, tmp => File.WriteAllText(tmp, JsonSerializer.Serialize(new
                {
                    env = entry.Name, policy = kind, solved_rule = entry.SolvedRule,
                    runs = results.Select(r => (r.Seed, r.Result, r.Solved, Finished: true))
                        .Concat(running is { } u ? [(u.Seed, u.Result, entry.StepsToSolve(u.Result.Episodes), Finished: false)] : []).Select(r => new
                    {
                        seed = r.Seed, finished = r.Finished, steps = r.Result.Steps, wall_s = r.Result.WallSeconds, mean_return_100 = r.Result.MeanReturn100, success_rate_100 = entry.SuccessRate100(r.Result.Episodes),
                        steps_to_solve = r.Solved, iterations = r.Result.Reports, episodes = r.Result.Episodes.Select(e => new[] { e.EndStep, e.Return, e.Length }),
                    }),
                }, MetricsJson)));
                return metrics;
            }
            TransformerActorCritic? lastTransformer = null;
            if (!json) io.Out.WriteLine($"PPO on {entry.Name} with the {kind} policy: {p.GetValue(steps):N0} steps x {p.GetValue(runs)} run(s); solved = {entry.SolvedRule}");
            for (int run = 0; run < p.GetValue(runs); run++)
            {
                ulong seed = seed0 + (ulong)run;
                var net = Make(seed);
                distributedRun.Attach(net, p.GetValue(envs), "--envs");
                var cfg = new PpoConfig
                {
                    Envs = share.Envs, RolloutSteps = p.GetValue(rollout), TotalSteps = share.TotalSteps, Minibatches = p.GetValue(minibatches),
                    UpdateEpochs = p.GetValue(epochs), LearningRate = p.GetValue(lr), Seed = seed + (ulong)share.FirstEnv,
                    Coefficients = new PpoCoefficients(EntropyCoefficient: p.GetValue(entropy)),
                };
                var trainer = new PpoTrainer(net, _ => entry.Create(), cfg) { DataParallel = distributedRun.DataParallel };
                string ckpt = Path.Combine(outDir, $"policy-seed{seed}.safetensors");
                var meta = new Dictionary<string, string> { ["attncore.seed"] = seed.ToString(CultureInfo.InvariantCulture) };
                var soFar = new List<PpoIterationReport>(cfg.Iterations);
                var result = RlProgress.Run(io.Out, !json && !p.GetValue(quiet), $"seed {seed}", cfg.Iterations, report => trainer.Train(r =>
                {
                    report(r);
                    soFar.Add(r);
                    // every 50 iterations a checkpoint and the curve so far, so that a long run that is stopped leaves both
                    if (r.Iteration % 50 == 0 && distributedRun.IsPrimary)
                    {
                        PolicyCheckpoint.Save(ckpt, net, entry.Name, meta);
                        WriteMetrics((seed, new PpoResult(soFar, trainer.Environments.Episodes, r.Steps, r.RolloutSeconds + r.UpdateSeconds)));
                    }
                }));
                if (!distributedRun.IsPrimary)
                {
                    net.Dispose();
                    continue;
                }
                PolicyCheckpoint.Save(ckpt, net, entry.Name, meta);
                long? solved = entry.StepsToSolve(result.Episodes);
                results.Add((seed, result, solved));
                WriteMetrics();
                if (!json)
                    io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"seed {seed}: mean return (last 100 episodes) {result.MeanReturn100:F1}{Success(entry, result)}, solved at {(solved is long s ? s.ToString("N0", CultureInfo.InvariantCulture) + " steps" : "-")}, {result.Steps:N0} steps in {result.WallSeconds:F1} s ({result.Steps / result.WallSeconds:F0} steps/s, {result.Reports[^1].CpuSeconds:F1} s of processor time; environments alone {result.Reports[^1].EnvironmentStepsPerSecond:F0} steps/s)"));
                if (run == p.GetValue(runs) - 1 && net is TransformerActorCritic t) lastTransformer = t; else net.Dispose();
            }
            if (!distributedRun.IsPrimary)
            {
                distributedRun.Complete();
                return 0;
            }
            var written = new List<string>();
            string curve = Path.Combine(outDir, "learning_curve.png");
            var series = new List<LearningCurveSeries> { new($"{kind} on {entry.Name}", results.Select(r => r.Result.Episodes).ToArray()) };
            if (baselineSeries is not null) series.Add(baselineSeries);
            RlPlots.LearningCurve(series, curve, $"PPO on {entry.Name}", entry.Name == "memory" ? null : CartPole.SolvedMeanReturn);
            written.Add(curve);
            if (lastTransformer is not null)
            {
                using (lastTransformer)
                {
                    string attention = Path.Combine(outDir, "attention.png");
                    DrawAttention(lastTransformer, entry, results[^1].Seed, attention);
                    written.Add(attention);
                }
            }
            string metrics = WriteMetrics();
            written.Add(metrics);
            io.Out.WriteLine($"wrote {string.Join(", ", written.Prepend(Path.Combine(outDir, $"policy-seed{seed0}.safetensors")))}");
            var solvedSteps = results.Select(r => r.Solved).ToArray();
            if (json)
                io.Json(new
                {
                    env = entry.Name, policy = kind,
                    mean_return_100 = results.Average(r => r.Result.MeanReturn100),
                    steps_to_solve = Median(solvedSteps),
                    steps = p.GetValue(steps),
                    wall_s = results.Sum(r => r.Result.WallSeconds),
                    runs = results.Count, solved_runs = solvedSteps.Count(s => s is not null),
                    success_rate_100 = entry.SuccessRate100(results[^1].Result.Episodes),
                    env_steps_per_s = results[^1].Result.Reports[^1].EnvironmentStepsPerSecond,
                    ranks = distributedRun.Size,
                });
            distributedRun.Complete();
            return 0;
        });
        return cmd;
    }

    /// <summary>This rank's part of a distributed run: its environments and its environment steps.</summary>
    private sealed record RankWork(int Envs, int FirstEnv, long TotalSteps);

    // --envs, --steps and --minibatches describe the whole run: each of the p ranks steps --envs / p environments (global
    // indices FirstEnv.., so seeded --seed + index as one process would seed them, and with its own action draws) for the same
    // number of iterations, and updates on minibatches of its own rollout, whose gradients are averaged over the ranks.
    private static RankWork RankShare(DistributedRun run, int envs, int rollout, int minibatches, int steps)
    {
        int p = run.Size, iterations = steps / (envs * rollout);
        if (envs % p != 0)
            throw new ArgumentException($"train rl: --envs {envs} does not split evenly over the {p} ranks; use a multiple of {p}");
        int perRank = envs / p;
        if (perRank * rollout % minibatches != 0 || perRank * rollout / minibatches < 2)
            throw new ArgumentException($"train rl: each of the {p} ranks collects --envs / ranks x --rollout = {perRank} x {rollout} = {perRank * rollout} samples a rollout, which --minibatches {minibatches} must divide into minibatches of at least 2");
        return new RankWork(perRank, run.Rank * perRank, (long)iterations * perRank * rollout);
    }

    private static readonly JsonSerializerOptions MetricsJson = new() { WriteIndented = false, Converters = { new NonFiniteAsNullConverter() } };

    // The runs of an earlier metrics.json as one more curve; it must come from the same environment.
    private static LearningCurveSeries ReadBaseline(string path, string env)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var root = doc.RootElement;
            string baseEnv = root.GetProperty("env").GetString() ?? "", basePolicy = root.GetProperty("policy").GetString() ?? "";
            if (baseEnv != env) throw new ArgumentException($"train rl: --baseline '{path}' was trained on {baseEnv}, this run is on {env}");
            var runs = root.GetProperty("runs").EnumerateArray().Select(r => (IReadOnlyList<EpisodeRecord>)r.GetProperty("episodes").EnumerateArray()
                .Select(e => new EpisodeRecord(e[1].GetDouble(), (int)e[2].GetDouble(), (long)e[0].GetDouble(), false)).ToList()).ToArray();
            return new LearningCurveSeries($"{basePolicy} on {baseEnv} (baseline)", runs);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or IndexOutOfRangeException or FormatException)
        {
            throw new InvalidDataException($"train rl: --baseline '{path}' is not a metrics.json written by 'attncore train rl': {e.Message}", e);
        }
    }

    private static string Success(EnvironmentEntry entry, PpoResult r) =>
        entry.SuccessRate100(r.Episodes) is double s ? string.Create(CultureInfo.InvariantCulture, $", {100 * s:F0}% reach the rewarding end") : "";

    // The median over runs, an unsolved run counting as never: null when half or more of the runs never solved.
    private static long? Median(long?[] steps)
    {
        var sorted = steps.Select(s => s ?? long.MaxValue).Order().ToArray();
        long m = sorted[(sorted.Length - 1) / 2];
        return m == long.MaxValue ? null : m;
    }

    private static void DrawAttention(TransformerActorCritic policy, EnvironmentEntry entry, ulong seed, string path)
    {
        var episode = PolicyEvaluation.RecordAttention(policy, entry.Create(), seed + 1000, maxSteps: entry.Name == "memory" ? 16 : 32);
        int k = policy.Context;
        var keys = Enumerable.Range(0, k).Select(j => j == k - 1 ? "now" : $"-{k - 1 - j}").ToArray();
        var rows = Enumerable.Range(0, episode.Actions.Length).Select(t => entry.Name == "memory"
            ? $"t{t} {(episode.Observations[t][0] != 0 ? (episode.Observations[t][0] > 0 ? "goal L" : "goal R") : "")} {(episode.Actions[t] == 1 ? "->" : "<-")}"
            : $"t{t} {(episode.Actions[t] == 1 ? "->" : "<-")}").ToArray();
        Plots.AttentionMap(episode.Weights, rows, keys, $"{entry.Name}: attention over past observations", path);
    }
}
