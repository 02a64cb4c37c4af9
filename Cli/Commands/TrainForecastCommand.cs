using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using AttnCore.Models.TimeSeries;
using AttnCore.Models.Training;
using AttnCore.Presentation;

namespace AttnCore.Cli.Commands;

/// <summary>
/// <c>attncore train forecast</c>: trains a long-horizon forecaster on a time-series CSV with the protocol of the
/// papers (ETT 12/4/4-month split for ETTh files, 70/10/20 otherwise; scaler fitted on the training rows; early
/// stopping on the validation MSE; test MSE/MAE over every test window). Unset sizes take the chosen model's defaults.
/// </summary>
public static class TrainForecastCommand
{
    /// <summary>Per-model defaults: the ETTh1 settings of each paper's scripts (sizes), and the epoch budget used here.</summary>
    private sealed record Defaults(int SeqLen, int DModel, int Heads, int Layers, int DFf, double Dropout, double LearningRate, int Batch, int Epochs, int Patience, string LrRule);

    private static Defaults For(string model) => model switch
    {
        "dlinear" => new(336, 16, 4, 3, 128, 0, 0.005, 32, 10, 3, "type1"),
        "patchtst" => new(336, 16, 4, 3, 128, 0.3, 1e-4, 128, 100, 10, "type3"),
        "itransformer" => new(96, 256, 8, 2, 256, 0.1, 1e-4, 32, 10, 3, "type1"),
        _ => new(96, 512, 8, 2, 2048, 0.05, 1e-4, 32, 10, 3, "type1"),
    };

    /// <summary>Builds <c>train forecast</c>.</summary>
    public static Command Create(CliIO commandIO)
    {
        var common = new CommonOptions();
        var distributed = new DistributedOptions();
        var data = PathRule.ExistingFile("--data", "a CSV time series: a date column and numeric columns (e.g. ETTh1.csv)");
        var model = new Option<string>("--model") { Description = "the forecaster", DefaultValueFactory = _ => "patchtst" }.AcceptOnlyFromAmong(ForecasterConfig.Models);
        var seqLen = NumericOption.OptionalInt("--seq-len", "look-back window L (default: 336 for patchtst/dlinear, 96 for itransformer/transformer)", 1, 100_000);
        var predLen = NumericOption.Int("--pred-len", "forecast horizon H", 96, 1, 100_000);
        var features = new Option<string>("--features") { Description = "M: all columns in and out; S: the target only; MS: all in, the target out", DefaultValueFactory = _ => "M" }
            .AcceptOnlyFromAmong("M", "S", "MS");
        var target = new Option<string>("--target") { Description = "target column for S and MS", DefaultValueFactory = _ => "OT" };
        var epochs = NumericOption.OptionalInt("--epochs", "most epochs (default per model)", 1, 100_000);
        var patience = NumericOption.OptionalInt("--patience", "stop after this many epochs without a lower validation loss", 1, 100_000);
        var batch = NumericOption.OptionalInt("--batch", "windows per step", 1, NumericOption.MaxSize);
        var lr = new NumericRange(0, 10, Integer: false, MinExclusive: true).On(new Option<double?>("--lr") { Description = "Adam learning rate (default per model)" });
        var lrRule = new Option<string?>("--lradj") { Description = "learning-rate rule: type1 (halve per epoch), type3 (0.9 per epoch after 3), constant" }.AcceptOnlyFromAmong("type1", "type3", "constant");
        var maxSteps = NumericOption.Int("--max-steps-per-epoch", "cap on the steps of an epoch, 0 = every training window", 0, 0);
        var maxMinutes = NumericOption.Number("--max-minutes", "wall-time budget of the training (0 = none): the epoch in progress is cut short and validated, then the best weights are tested", 0, 0, 1e6);
        var dModel = NumericOption.OptionalInt("--d-model", "model width", 1, 65536);
        var heads = NumericOption.OptionalInt("--heads", "attention heads, a divisor of --d-model", 1, 1024);
        var layers = NumericOption.OptionalInt("--layers", "encoder layers", 1, 1024);
        var dff = NumericOption.OptionalInt("--d-ff", "feed-forward width", 1, 1 << 20);
        var dropout = new NumericRange(0, 1, Integer: false, MaxExclusive: true).On(new Option<double?>("--dropout") { Description = "dropout probability" });
        var individual = new Option<bool>("--individual") { Description = "dlinear: one linear pair per channel" };
        var resAttention = new Option<bool>("--res-attention") { Description = "patchtst: residual attention, each layer adding the previous layer's pre-softmax scores (the paper code's default; unfused, slower)" };
        var output = PathRule.OutputFolder("--out", "run folder: model.safetensors, metrics.json, loss.png, forecast.png (attention.png for patchtst)", Path.Combine("runs", "forecast"));
        var quiet = new Option<bool>("--quiet") { Description = "no progress bar" };
        var cmd = distributed.AddTo(common.AddTo(new Command("forecast", "Long-horizon forecaster (PatchTST, DLinear, iTransformer, Transformer) on a CSV time series")
            { data, model, seqLen, predLen, features, target, epochs, patience, batch, lr, lrRule, maxSteps, maxMinutes, dModel, heads, layers, dff, dropout, individual, resAttention, output, quiet }));
        cmd.AddRule(r =>
        {
            var d = For(r.GetValue(model)!);
            int width = r.GetValue(dModel) ?? d.DModel, h = r.GetValue(heads) ?? d.Heads;
            return r.GetValue(model) != "dlinear" && width % h != 0 ? $"--d-model {width} must be a multiple of --heads {h}" : null;
        });
        cmd.AddRule(r => r.GetValue(resAttention) && r.GetValue(model) != "patchtst" ? $"--res-attention is a patchtst option, not {r.GetValue(model)}'s" : null);
        cmd.AddRule(r => r.GetResult(target) is { Implicit: false } ? TargetNotInHeader(r.GetValue(data)!, r.GetValue(target)!) : null);
        cmd.SetAction(p =>
        {
            var device = common.Apply(p);
            using var run = distributed.Begin(p, commandIO, "train forecast");
            var io = run.IO;
            bool json = p.GetValue(common.Json);
            string name = p.GetValue(model)!, dataPath = p.GetValue(data)!, outDir = p.GetValue(output)!;
            var d = For(name);
            int l = p.GetValue(seqLen) ?? d.SeqLen, h = p.GetValue(predLen);
            var feat = Enum.Parse<ForecastFeatures>(p.GetValue(features)!);
            PathRule.PrepareOutputFolder("train forecast", "--out", outDir);
            using var ds = ForecastData.FromCsv(dataPath, l, h, feat, p.GetValue(target)!, device);
            var config = new ForecasterConfig(name, l, h, ds.Channels, p.GetValue(dModel) ?? d.DModel, p.GetValue(heads) ?? d.Heads, p.GetValue(layers) ?? d.Layers,
                p.GetValue(dff) ?? d.DFf, p.GetValue(dropout) ?? d.Dropout, FcDropout: p.GetValue(dropout) ?? d.Dropout, Individual: p.GetValue(individual),
                LabelLen: l / 2, TimeFeatures: ds.TimeFeatureCount, ResAttention: p.GetValue(resAttention));
            ulong seed = p.GetValue(common.Seed);
            using var net = Forecaster.Create(config, new Generator(seed), device);
            run.Attach(net, p.GetValue(batch) ?? d.Batch);
            string checkpoint = Path.Combine(outDir, "model.safetensors"), metricsPath = Path.Combine(outDir, "metrics.json");
            var info = ForecastCheckpoint.InfoOf(net, ds);
            var options = new ForecastTrainingOptions
            {
                Epochs = p.GetValue(epochs) ?? d.Epochs, Patience = p.GetValue(patience) ?? d.Patience, BatchSize = p.GetValue(batch) ?? d.Batch, DataParallel = run.DataParallel,
                LearningRate = p.GetValue(lr) ?? d.LearningRate, LearningRateRule = p.GetValue(lrRule) ?? d.LrRule, MaxStepsPerEpoch = p.GetValue(maxSteps),
                Seed = seed, RunDirectory = outDir, Callbacks = run.CallbacksFor(TrainingCallbacks.For(io, showProgress: !json && !p.GetValue(quiet))),
                MaxSeconds = p.GetValue(maxMinutes) * 60,
                // Progress on disk after every epoch, the best weights as soon as they improve: a run stopped from
                // outside still leaves its best checkpoint and its validation curve (rank 0 alone writes).
                EpochEnded = e =>
                {
                    if (!run.IsPrimary) return;
                    if (e.Improved) ForecastCheckpoint.Save(checkpoint, net, info);
                    WriteMetrics(metricsPath, config, seed, e.Epochs, e.BestEpoch, e.Steps, null);
                },
            };
            if (!json)
                io.Out.WriteLine($"{name}: L {l}, H {h}, {ds.Channels} channels ({feat}), {net.ParameterCount():N0} parameters; windows train {ds.WindowCount(ForecastSplit.Train):N0} / val {ds.WindowCount(ForecastSplit.Validation):N0} / test {ds.WindowCount(ForecastSplit.Test):N0}");
            var result = ForecastTraining.Train(net, ds, options);
            if (!run.IsPrimary)
            {
                run.Complete();
                return 0;
            }
            ForecastCheckpoint.Save(checkpoint, net, info);
            WriteMetrics(metricsPath, config, seed, result.Epochs, result.BestEpoch, result.Steps, result);
            DrawTestForecasts(net, ds, Path.Combine(outDir, "forecast.png"));
            var written = new List<string> { checkpoint, metricsPath, Path.Combine(outDir, LossCurvePlot.FileName), Path.Combine(outDir, "forecast.png") };
            if (net is PatchTst patchTst)
            {
                DrawPatchAttention(patchTst, ds, Path.Combine(outDir, "attention.png"));
                written.Add(Path.Combine(outDir, "attention.png"));
            }
            io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"best epoch {result.BestEpoch} of {result.Epochs.Count}  val MSE {result.Epochs[result.BestEpoch - 1].ValLoss:F4}  test MSE {result.Test.Mse:F4}  MAE {result.Test.Mae:F4} ({result.Test.Windows} windows)  {result.WallSeconds:F1} s  (stopped: {StopName(result.Stop)})"));
            io.Out.WriteLine($"wrote {string.Join(", ", written)}");
            if (json) io.Json(new { model = name, seq_len = l, pred_len = h, test_mse = result.Test.Mse, test_mae = result.Test.Mae, epochs = result.Epochs.Count, wall_s = result.WallSeconds });
            run.Complete();
            return 0;
        });
        return cmd;
    }

    // A --target that is not a column of --data is a usage error, found from the header line before anything runs.
    private static string? TargetNotInHeader(string dataPath, string target)
    {
        string? header;
        try { header = File.ReadLines(dataPath).FirstOrDefault(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; } // the run reports the file itself
        var columns = (header ?? "").Split(',').Select(c => c.Trim().Trim('"')).ToArray();
        return columns.Contains(target) ? null : $"--target '{target}' is not a column of --data '{dataPath}' (its header: {string.Join(", ", columns.Take(20))})";
    }

    private static string StopName(ForecastStop stop) => stop switch
    {
        ForecastStop.EarlyStopping => "early_stopping",
        ForecastStop.TimeBudget => "time_budget",
        _ => "epochs",
    };

    // Written after every epoch with status "training" and no test figures, and once more at the end with them.
    private static void WriteMetrics(string path, ForecasterConfig config, ulong seed, IReadOnlyList<ForecastEpoch> epochs, int bestEpoch, int steps, ForecastResult? result)
    {
        var doc = new
        {
            config, seed, status = result is null ? "training" : "done", stopped = result is null ? null : StopName(result.Stop),
            best_epoch = bestEpoch, steps, wall_s = result?.WallSeconds ?? epochs[^1].Seconds,
            test_mse = result?.Test.Mse, test_mae = result?.Test.Mae, test_windows = result?.Test.Windows,
            epochs = epochs.Select(e => new { epoch = e.Epoch, train_loss = e.TrainLoss, val_loss = e.ValLoss, lr = e.LearningRate, seconds = e.Seconds, steps = e.Steps }),
        };
        AtomicFile.Write(path, tmp => File.WriteAllText(tmp, JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true })));
    }

    // History, truth and forecast of three channels (the last, the target in ETT, first) of two test windows.
    private static void DrawTestForecasts(Forecaster model, ForecastData data, string path)
    {
        int n = data.WindowCount(ForecastSplit.Test);
        int[] windows = n > 1 ? [0, n / 2] : [0];
        var channels = Enumerable.Range(0, data.OutputChannels).Select(j => data.Channels - 1 - j).Take(3).ToArray();
        var panels = new List<ForecastPanel>();
        model.Eval();
        using (new NoGrad())
        using (var scope = new TensorScope())
        {
            var batch = data.Batch(ForecastSplit.Test, windows, ForecastTraining.LabelLength(model));
            var predicted = (model.UsesTimeFeatures ? model.Forward(batch.X, batch.XMark, batch.YMark) : model.Forward(batch.X)).ToArray<float>();
            var x = batch.X.Contiguous().ToArray<float>();
            var y = batch.Y.Contiguous().ToArray<float>();
            int l = data.SeqLen, h = data.PredLen, c = data.Channels;
            for (int w = 0; w < windows.Length; w++)
                foreach (int ch in channels)
                {
                    double Unscale(float v) => data.Scaler.Inverse(v, ch);
                    panels.Add(new ForecastPanel($"test window {windows[w]}, {data.Table.Columns[data.ColumnIndices[ch]]}",
                        Enumerable.Range(0, l).Select(t => Unscale(x[(w * l + t) * c + ch])).ToArray(),
                        Enumerable.Range(0, h).Select(t => Unscale(predicted[(w * h + t) * c + ch])).ToArray(),
                        Enumerable.Range(0, h).Select(t => Unscale(y[(w * h + t) * c + ch])).ToArray()));
                }
        }
        ForecastPlots.Panels(panels, channels.Length, $"{model.Config.Model}: L {data.SeqLen}, H {data.PredLen}", path);
    }

    // The last encoder layer's attention between patches, averaged over heads, for the first test window's last channel.
    private static void DrawPatchAttention(PatchTst model, ForecastData data, string path)
    {
        var attention = model.Layers[^1].SelfAttention;
        model.Eval();
        attention.KeepWeights = true;
        try
        {
            using (new NoGrad())
            using (var scope = new TensorScope())
            {
                var batch = data.Batch(ForecastSplit.Test, [0]);
                model.Forward(batch.X);
                int n = model.PatchCount, c = data.Channels;
                var weights = attention.LastWeights!.Select(0, c - 1).Mean(0).ToArray<float>();   // [N, N] of series c-1
                var grid = new float[n, n];
                for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) grid[i, j] = weights[i * n + j];
                ForecastPlots.PatchAttention(grid, $"PatchTST patch attention, {data.Table.Columns[data.ColumnIndices[c - 1]]}", path);
            }
        }
        finally { attention.KeepWeights = false; }
    }
}
