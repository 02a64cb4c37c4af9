using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using AttnCore.Models.Recommendation;
using AttnCore.Models.Training;
using AttnCore.Presentation;

namespace AttnCore.Cli.Commands;

/// <summary>
/// <c>attncore train recommend</c> (SASRec or target attention on user-item interactions, the SASRec protocol) and
/// <c>attncore recommend</c> (top items from a trained checkpoint for a history or a user of the data).
/// </summary>
public static class RecommendCommand
{
    private static readonly string[] Formats = ["auto", "user-item", "csv"];

    /// <summary>Builds <c>train recommend</c>.</summary>
    public static Command Train(CliIO commandIO)
    {
        var common = new CommonOptions();
        var distributed = new DistributedOptions();
        var data = PathRule.ExistingFile("--data", "interactions: 'user item' lines in time order (SASRec's format) or user,item,timestamp CSV");
        var format = new Option<string>("--format") { Description = "input format (auto: csv for a .csv file, else user-item)", DefaultValueFactory = _ => "auto" }.AcceptOnlyFromAmong(Formats);
        var model = new Option<string>("--model") { Description = "the model", DefaultValueFactory = _ => "sasrec" }.AcceptOnlyFromAmong(RecommenderCheckpoint.Models);
        var epochs = NumericOption.Int("--epochs", "epochs at most (early stopping may end sooner; the authors' code runs 201)", 201, 1, 1_000_000);
        var stepsPerEpoch = NumericOption.OptionalInt("--steps-per-epoch", "batches per epoch (default: users / --batch, as the SASRec code)", 1, 100_000_000);
        var batch = NumericOption.Int("--batch", "sequences per step", 128, 1, 65_536);
        var maxLen = NumericOption.Int("--max-len", "positions of history read (n)", 50, 1, 4096);
        var dim = NumericOption.Int("--dim", "embedding width (d)", 50, 1, 4096);
        var blocks = NumericOption.Int("--blocks", "self-attention blocks", 2, 1, 64);
        var heads = NumericOption.Int("--heads", "attention heads, a divisor of --dim", 1, 1, 64);
        var dropout = NumericOption.Number("--dropout", "dropout rate", 0.5, 0, 1, maxExclusive: true);
        var lr = NumericOption.Number("--lr", "Adam learning rate", 1e-3, 0, minExclusive: true);
        var beta2 = NumericOption.Number("--beta2", "Adam beta2", 0.98, 0, 1, maxExclusive: true);
        var evalEvery = NumericOption.Int("--eval-every", "epochs between validation evaluations", 20, 1, 1_000_000);
        var patience = NumericOption.Int("--patience", "evaluations without a better validation NDCG@10 before stopping", 3, 1, 1_000_000);
        var maxMinutes = NumericOption.Number("--max-minutes", "training budget in minutes (0: none): when it runs out the model is evaluated and the best one tested", 0, 0, 1_000_000);
        var evalUsers = NumericOption.Int("--eval-users", "users sampled for evaluation at most (the protocol: 10000)", 10_000, 1, 100_000_000);
        var output = PathRule.OutputFolder("--out", "run folder: model.safetensors (best), metrics.json, validation.png, attention.png", Path.Combine("runs", "recommend"));
        var quiet = new Option<bool>("--quiet") { Description = "no per-epoch lines" };
        var cmd = distributed.AddTo(common.AddTo(new Command("recommend", "Sequential recommendation: SASRec or target attention, HR@10/NDCG@10 by the SASRec protocol")
            { data, format, model, epochs, stepsPerEpoch, batch, maxLen, dim, blocks, heads, dropout, lr, beta2, evalEvery, patience, maxMinutes, evalUsers, output, quiet }));
        cmd.AddRule(r =>
        {
            int d = r.GetValue(dim), h = r.GetValue(heads), b = r.GetValue(batch), t = r.GetValue(maxLen);
            if (d % h != 0) return $"--dim {d} must be a multiple of --heads {h}";
            if ((long)b * t * d * 4 > Array.MaxLength) return $"--batch {b}, --max-len {t} and --dim {d} make a feed-forward activation of more than {Array.MaxLength:N0} elements";
            return null;
        });
        cmd.SetAction(p =>
        {
            var device = common.Apply(p);
            using var run = distributed.Begin(p, commandIO, "train recommend");
            var io = run.IO;
            bool json = p.GetValue(common.Json), talk = !json && !p.GetValue(quiet);
            string path = p.GetValue(data)!, name = p.GetValue(model)!;
            var split = new LeaveOneOutSplit(Read(path, p.GetValue(format)!));
            string outDir = p.GetValue(output)!;
            PathRule.PrepareOutputFolder("train recommend", "--out", outDir);
            var config = new SasRecConfig(split.ItemCount, p.GetValue(maxLen), p.GetValue(dim), p.GetValue(blocks), p.GetValue(heads), p.GetValue(dropout));
            ulong seed = p.GetValue(common.Seed);
            using var net = RecommenderCheckpoint.Create(name, config, new Generator(seed), device);
            run.Attach(net, p.GetValue(batch));
            string checkpoint = Path.Combine(outDir, "model.safetensors");
            if (!json)
                io.Out.WriteLine($"{name}: {split.UserCount:N0} users, {split.ItemCount:N0} items, {split.Data.Count:N0} interactions; {net.ParameterCount():N0} parameters; " +
                    $"n {config.MaxLength}, d {config.Dim}, {config.Blocks} blocks, {config.Heads} heads, dropout {config.Dropout.ToString(CultureInfo.InvariantCulture)}");
            var options = new RecommenderTrainingOptions
            {
                Epochs = p.GetValue(epochs), BatchSize = p.GetValue(batch), LearningRate = p.GetValue(lr), Beta2 = p.GetValue(beta2),
                StepsPerEpoch = p.GetValue(stepsPerEpoch), EvalEvery = p.GetValue(evalEvery), Patience = p.GetValue(patience), EvalUsers = p.GetValue(evalUsers),
                Seed = unchecked((int)seed), CheckpointPath = run.IsPrimary ? checkpoint : null, DataParallel = run.DataParallel,
                MaxMinutes = p.GetValue(maxMinutes) is > 0 and var m ? m : null,
            };
            string metrics = Path.Combine(outDir, "metrics.json"), curve = Path.Combine(outDir, "validation.png"), attention = Path.Combine(outDir, "attention.png");
            object Settings() => new { options.Epochs, options.BatchSize, options.LearningRate, options.Beta2, steps_per_epoch = options.StepsPerEpoch, options.EvalEvery, options.Patience, options.EvalUsers, max_minutes = options.MaxMinutes };
            static object Epochs(IEnumerable<RecommenderEpoch> h) => h.Select(e => new { epoch = e.Epoch, steps = e.Steps, train_loss = e.TrainLoss, val_hr10 = e.Validation?.HitRate, val_ndcg10 = e.Validation?.Ndcg, wall_s = e.WallSeconds }).ToArray();
            var progress = new List<RecommenderEpoch>();
            options = options with
            {
                OnEpoch = e =>
                {
                    // metrics.json after every epoch, so a run that is stopped from outside still leaves its curve (the best model is saved as it improves)
                    if (!run.IsPrimary) return;
                    progress.Add(e);
                    var best = progress.Where(r => r.Validation is not null).MaxBy(r => r.Validation!.Ndcg);
                    AtomicFile.Write(metrics, tmp => File.WriteAllText(tmp, JsonSerializer.Serialize(new
                    {
                        model = name, data = Path.GetFullPath(path), config, seed, options = Settings(), status = "training", history = Epochs(progress),
                        best_epoch = best?.Epoch, validation = best is null ? null : new { hr10 = best.Validation!.HitRate, ndcg10 = best.Validation.Ndcg, users = best.Validation.Users },
                    }, new JsonSerializerOptions { WriteIndented = true })));
                    if (!talk) return;
                    string val = e.Validation is { } v ? string.Create(CultureInfo.InvariantCulture, $"  valid NDCG@10 {v.Ndcg:F4} HR@10 {v.HitRate:F4}") : "";
                    io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"epoch {e.Epoch}  loss {e.TrainLoss:F4}{val}  {e.WallSeconds:F0} s"));
                },
            };
            var result = RecommenderTraining.Run(net, split, options, device);
            if (!run.IsPrimary)
            {
                run.Complete();
                return 0;
            }
            var test = result.Test;
            int epochsRun = result.History.Count;
            AtomicFile.Write(metrics, tmp => File.WriteAllText(tmp, JsonSerializer.Serialize(new
            {
                model = name, data = Path.GetFullPath(path), config, seed, options = Settings(), status = "done", stop_reason = result.StopReason, history = Epochs(result.History),
                best_epoch = result.BestEpoch, validation = new { hr10 = result.BestValidation.HitRate, ndcg10 = result.BestValidation.Ndcg, users = result.BestValidation.Users },
                test = new { hr10 = test.HitRate, ndcg10 = test.Ndcg, full_hr10 = test.FullHitRate, full_ndcg10 = test.FullNdcg, users = test.Users },
                wall_s = result.WallSeconds,
            }, new JsonSerializerOptions { WriteIndented = true })));
            RecommendationPlots.ValidationCurve(result.History, name, curve);
            DrawAttention(net, split, attention);
            io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"best epoch {result.BestEpoch} of {epochsRun} (stopped: {result.StopReason}): test HR@10 {test.HitRate:F4} NDCG@10 {test.Ndcg:F4} (100 sampled negatives, {test.Users:N0} users); full ranking HR@10 {test.FullHitRate:F4} NDCG@10 {test.FullNdcg:F4}; {result.WallSeconds:F1} s"));
            io.Out.WriteLine($"wrote {checkpoint}, {metrics}, {curve}, {attention}");
            if (json) io.Json(new { model = name, hr10 = test.HitRate, ndcg10 = test.Ndcg, full_hr10 = test.FullHitRate, full_ndcg10 = test.FullNdcg, epochs = epochsRun, wall_s = result.WallSeconds, best_epoch = result.BestEpoch, users = test.Users, ranks = run.Size, stop_reason = result.StopReason });
            run.Complete();
            return 0;
        });
        return cmd;
    }

    /// <summary>Builds <c>recommend</c>.</summary>
    public static Command Create(CliIO io)
    {
        var common = new CommonOptions();
        var checkpoint = PathRule.ExistingFile("--checkpoint", "model.safetensors written by 'attncore train recommend'");
        var history = new Option<string>("--history") { Description = "item ids, oldest first, separated by spaces or commas (e.g. \"12 87 5\")" };
        history.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string>() is string text && ParseItems(text) is null)
                r.AddError($"--history must be positive item ids separated by spaces or commas, got '{text}'");
        });
        var data = PathRule.ExistingFile("--data", "the interaction file the model was trained on (with --user)");
        data.Required = false;
        var format = new Option<string>("--format") { Description = "format of --data (auto: csv for a .csv file)", DefaultValueFactory = _ => "auto" }.AcceptOnlyFromAmong(Formats);
        var user = NumericOption.OptionalInt("--user", "recommend for this user of --data, after all their interactions", 1);
        var top = NumericOption.Int("--top", "how many items to list", 10, 1, 100_000);
        var cmd = common.AddTo(new Command("recommend", "Top items from a trained recommender for a history (--history) or a user of the data (--data --user)")
            { checkpoint, history, data, format, user, top });
        cmd.AddRule(r =>
        {
            bool byHistory = r.GetValue(history) is not null, byUser = r.GetValue(user) is not null;
            if (byHistory == byUser) return "give either --history or --user (with --data), not both or neither";
            if (byUser && r.GetValue(data) is null) return "--user needs --data (the interaction file)";
            return null;
        });
        cmd.SetAction(p =>
        {
            var device = common.Apply(p);
            using var net = RecommenderCheckpoint.Load(p.GetValue(checkpoint)!, device);
            long[] items;
            int? who = p.GetValue(user);
            if (who is int u)
            {
                var interactions = Read(p.GetValue(data)!, p.GetValue(format)!);
                if (u > interactions.UserCount) throw new ArgumentException($"recommend: --user {u} is not in '{p.GetValue(data)}' (users 1..{interactions.UserCount})");
                items = interactions.ByUser[u].Select(i => (long)i).ToArray();
                if (items.Length == 0) throw new ArgumentException($"recommend: user {u} has no interactions in '{p.GetValue(data)}'");
            }
            else items = ParseItems(p.GetValue(history)!)!;
            var bad = items.FirstOrDefault(i => i > net.ItemCount);
            if (bad != 0) throw new ArgumentException($"recommend: item {bad} of the history is not one of the model's items 1..{net.ItemCount}");
            int k = Math.Min(p.GetValue(top), net.ItemCount);
            var row = new long[net.MaxLength];
            int take = Math.Min(items.Length, net.MaxLength);
            Array.Copy(items, items.Length - take, row, net.MaxLength - take, take);
            float[] scores;
            using (new NoGrad())
            using (var scope = new TensorScope())
                scores = net.ScoreAll(Tensor.FromArray(row, [1, net.MaxLength], device)).ToArray<float>();
            // the history's own items and the padding id are not recommended
            var seen = new HashSet<long>(items) { 0 };
            var ranked = Enumerable.Range(0, scores.Length).Where(i => !seen.Contains(i)).OrderByDescending(i => scores[i]).ThenBy(i => i).Take(k).ToArray();
            io.Out.WriteLine($"{net.Name}: top {ranked.Length} after {items.Length} items{(who is int w ? $" of user {w}" : "")} (the model reads the last {take})");
            for (int r = 0; r < ranked.Length; r++)
                io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{r + 1,4}  item {ranked[r],-8} score {scores[ranked[r]]:F4}"));
            if (p.GetValue(common.Json)) io.Json(new { model = net.Name, user = who, history_length = items.Length, items = ranked, scores = ranked.Select(i => scores[i]) });
            return 0;
        });
        return cmd;
    }

    private static Interactions Read(string path, string format) =>
        format == "csv" || (format == "auto" && path.EndsWith(".csv", StringComparison.OrdinalIgnoreCase)) ? Interactions.ReadCsv(path) : Interactions.ReadUserItem(path);

    // Positive ids separated by spaces or commas; null when any is not one (or there is none).
    private static long[]? ParseItems(string text)
    {
        var parts = text.Split([' ', ',', '\t'], StringSplitOptions.RemoveEmptyEntries);
        var ids = new long[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!long.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out ids[i]) || ids[i] < 1) return null;
        return ids.Length == 0 ? null : ids;
    }

    // The attention map of the evaluated user with the longest history (their test-time history).
    private static void DrawAttention(SelfAttentiveRecommender net, LeaveOneOutSplit split, string path)
    {
        int user = Enumerable.Range(1, split.UserCount).Where(u => split.Test[u] != 0).DefaultIfEmpty(1).MaxBy(u => Math.Min(split.Train[u].Length, 20));
        var evaluator = new RankingEvaluator(split, net.MaxLength, 0, maxUsers: 1);
        var row = evaluator.HistoryRow(user, test: true);
        // at most the last 20 items, so the labels stay readable
        int first = Math.Max(0, Array.FindIndex(row, i => i != 0));
        float[,] weights;
        using (var h = Tensor.FromArray(row, [net.MaxLength], net.Device)) weights = net.SelfAttentionWeights(h);
        int from = Math.Max(first, net.MaxLength - 20), n = net.MaxLength - from;
        var cut = new float[n, n];
        for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) cut[i, j] = weights[from + i, from + j];
        RecommendationPlots.HistoryAttention(cut, row[from..], $"{net.Name}: user {user}, last block's attention over their last {n} items", path);
    }
}
