using System.Diagnostics;
using System.Text.Json;
using AttnCore.Models.IO;
using AttnCore.Models.Nn;
using AttnCore.Optim;
using Spectre.Console;

namespace AttnCore.Models.Training;

/// <summary>Settings of a <see cref="Trainer"/> run.</summary>
public sealed record TrainerOptions
{
    /// <summary>Optimizer steps in total.</summary>
    public int Steps { get; init; } = 1000;
    /// <summary>Evaluate every N steps (and at the end).</summary>
    public int EvalEvery { get; init; } = 250;
    /// <summary>Write a checkpoint every N steps (and at the end); 0 = only at the end.</summary>
    public int CheckpointEvery { get; init; }
    /// <summary>Folder for checkpoint, metrics.json and loss.png.</summary>
    public string RunDirectory { get; init; } = "runs/run";
    /// <summary>Continue from the checkpoint in <see cref="RunDirectory"/> when there is one.</summary>
    public bool Resume { get; init; }
    /// <summary>Clip the gradient norm to this (0 = off).</summary>
    public double ClipNorm { get; init; }
    /// <summary>Draw a live progress bar (off for tests and --json runs).</summary>
    public bool ShowProgress { get; init; } = true;
    /// <summary>Tokens (or samples) processed per step, for throughput.</summary>
    public long TokensPerStep { get; init; } = 1;
}

/// <summary>One line of metrics.json.</summary>
public sealed record TrainerMetric(int Step, double TrainLoss, double? ValLoss, double LearningRate, double TokensPerSecond, double ElapsedSeconds);

/// <summary>What a run ended with.</summary>
public sealed record TrainerResult(int Steps, double TrainLoss, double ValLoss, double WallSeconds, IReadOnlyList<TrainerMetric> History);

/// <summary>
/// The one training loop of every model: step, clip, optimise, schedule; evaluate every N steps; write
/// checkpoints atomically (a crash leaves the last good one) that resume exactly (model, optimizer,
/// schedule, data generator and step); a Spectre.Console progress bar with loss, tokens/s and ETA;
/// metrics.json and a loss-curve PNG in the run folder.
/// </summary>
public sealed class Trainer(Module model, Optimizer optimizer, LRScheduler? scheduler, Generator dataGenerator, TrainerOptions options)
{
    private const string CheckpointName = "checkpoint.bin";

    /// <summary>
    /// Runs to <see cref="TrainerOptions.Steps"/>. <paramref name="trainLoss"/> builds the loss of one step
    /// (it draws its batch from the data generator); <paramref name="evaluate"/> returns the validation loss.
    /// </summary>
    public TrainerResult Run(Func<Tensor> trainLoss, Func<double> evaluate)
    {
        Directory.CreateDirectory(options.RunDirectory);
        var history = new List<TrainerMetric>();
        int start = 0;
        double elapsedBefore = 0;
        if (options.Resume && File.Exists(CheckpointPath))
            (start, elapsedBefore) = LoadCheckpoint(history);
        var clock = Stopwatch.StartNew();
        double lastLoss = double.NaN, lastVal = history.LastOrDefault(h => h.ValLoss is not null)?.ValLoss ?? double.NaN;
        var parameters = model.Parameters().ToArray();

        void Body(Action<int, double, double>? report)
        {
            var window = Stopwatch.StartNew();
            int windowSteps = 0;
            for (int step = start; step < options.Steps; step++)
            {
                model.Train();
                using (var scope = new TensorScope())
                {
                    optimizer.ZeroGrad();
                    var loss = trainLoss();
                    loss.Backward();
                    if (options.ClipNorm > 0) GradClip.ClipGradNorm(parameters, options.ClipNorm);
                    optimizer.Step();
                    scheduler?.Step();
                    lastLoss = loss.Item();
                }
                windowSteps++;
                double tps = options.TokensPerStep * windowSteps / Math.Max(1e-9, window.Elapsed.TotalSeconds);
                bool evalNow = (step + 1) % Math.Max(1, options.EvalEvery) == 0 || step + 1 == options.Steps;
                double? val = null;
                if (evalNow)
                {
                    model.Eval();
                    using (new NoGrad()) val = lastVal = evaluate();
                    model.Train();
                }
                double lr = optimizer.ParamGroups[0].LearningRate;
                if (evalNow || step % 10 == 0)
                    history.Add(new TrainerMetric(step + 1, lastLoss, val, lr, tps, elapsedBefore + clock.Elapsed.TotalSeconds));
                if (options.CheckpointEvery > 0 && (step + 1) % options.CheckpointEvery == 0 || step + 1 == options.Steps)
                    SaveCheckpoint(step + 1, elapsedBefore + clock.Elapsed.TotalSeconds, history);
                report?.Invoke(step + 1, lastLoss, tps);
                if (window.Elapsed.TotalSeconds > 5) { window.Restart(); windowSteps = 0; }
            }
        }

        if (options.ShowProgress && AnsiConsole.Profile.Capabilities.Interactive)
            AnsiConsole.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("training", maxValue: options.Steps);
                    task.Value = start;
                    Body((step, loss, tps) =>
                    {
                        task.Value = step;
                        task.Description = $"step {step}/{options.Steps} loss {loss:F4} val {lastVal:F4} {tps:F0} tok/s";
                    });
                });
        else if (options.ShowProgress)
            Body((step, loss, tps) =>
            {
                if (step % Math.Max(1, options.EvalEvery) == 0 || step == options.Steps)
                {
                    double eta = (options.Steps - step) * options.TokensPerStep / Math.Max(1, tps);
                    Console.WriteLine($"step {step}/{options.Steps}  loss {loss:F4}  val {lastVal:F4}  {tps:F0} tok/s  ETA {eta:F0}s");
                }
            });
        else Body(null);

        double wall = elapsedBefore + clock.Elapsed.TotalSeconds;
        WriteMetrics(history);
        Plots.LossCurve(history, Path.Combine(options.RunDirectory, "loss.png"));
        return new TrainerResult(options.Steps, lastLoss, lastVal, wall, history);
    }

    private string CheckpointPath => Path.Combine(options.RunDirectory, CheckpointName);

    private void SaveCheckpoint(int step, double elapsed, List<TrainerMetric> history)
    {
        string tmp = CheckpointPath + $".tmp-{Environment.ProcessId}";
        using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
        using (var w = new BinaryWriter(fs))
        {
            w.Write("AttnCore.Checkpoint/1"); w.Write(step); w.Write(elapsed);
            var state = model.StateDict();
            w.Write(state.Count);
            foreach (var (name, t) in state.OrderBy(p => p.Key, StringComparer.Ordinal)) { w.Write(name); TensorIO.Write(w, t); }
            optimizer.SaveState(w);
            w.Write(scheduler is not null);
            scheduler?.SaveState(w);
            var (s0, s1, s2, s3, spare) = dataGenerator.State;
            w.Write(s0); w.Write(s1); w.Write(s2); w.Write(s3); w.Write(spare);
            w.Write(JsonSerializer.Serialize(history));
            fs.Flush(flushToDisk: true);
        }
        File.Move(tmp, CheckpointPath, overwrite: true);
        Safetensors.Save(Path.Combine(options.RunDirectory, "model.safetensors"), model, new Dictionary<string, string> { ["step"] = step.ToString(System.Globalization.CultureInfo.InvariantCulture) });
    }

    private (int Step, double Elapsed) LoadCheckpoint(List<TrainerMetric> history)
    {
        var (step, elapsed, saved) = TrainerCheckpoint.Load(CheckpointPath, model, optimizer, scheduler, dataGenerator);
        history.AddRange(saved);
        return (step, elapsed);
    }

    private void WriteMetrics(List<TrainerMetric> history)
    {
        string path = Path.Combine(options.RunDirectory, "metrics.json");
        File.WriteAllText(path + ".tmp", JsonSerializer.Serialize(history, new JsonSerializerOptions { WriteIndented = true }));
        File.Move(path + ".tmp", path, overwrite: true);
    }
}
