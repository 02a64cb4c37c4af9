using System.Diagnostics;
using System.Globalization;
using System.Runtime.ExceptionServices;
using System.Text.Json;
using System.Text.Json.Serialization;
using AttnCore.Distributed;
using AttnCore.Models.IO;
using AttnCore.Models.Nn;
using AttnCore.Optim;

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
    /// <summary>Folder for checkpoint, model.safetensors and metrics.json (and what callbacks write, such as loss.png).</summary>
    public string RunDirectory { get; init; } = "runs/run";
    /// <summary>Continue from the checkpoint in <see cref="RunDirectory"/> when there is one.</summary>
    public bool Resume { get; init; }
    /// <summary>Clip the gradient norm to this (0 = off).</summary>
    public double ClipNorm { get; init; }
    /// <summary>Told of the run's start, each step and its end (progress bars, plots, logging); none by default.</summary>
    public IReadOnlyList<ITrainerCallback> Callbacks { get; init; } = [];
    /// <summary>Tokens (or samples) processed per step, for throughput.</summary>
    public long TokensPerStep { get; init; } = 1;
    /// <summary>What a step with a NaN or infinite loss (or gradient norm, when clipping) does; the default stops the run.</summary>
    public NonFinitePolicy OnNonFinite { get; init; } = NonFinitePolicy.Stop;
    /// <summary>With <see cref="NonFinitePolicy.Skip"/>: stop after this many skipped steps in a row (a run that has diverged, not a bad batch).</summary>
    public int MaxConsecutiveSkips { get; init; } = 10;
    /// <summary>
    /// Data-parallel training over several processes (null: this process alone). Gradients are synchronised after each
    /// Backward, the reported loss is the mean over ranks, and only rank 0 writes the checkpoint, model.safetensors and
    /// metrics.json; every rank resumes from the same checkpoint file.
    /// </summary>
    public DataParallel? DataParallel { get; init; }
}

/// <summary>
/// One line of metrics.json. JSON has no NaN or infinity: a non-finite number is written as null (and read
/// back as NaN), so a train loss of null marks a step whose loss was not finite.
/// <paramref name="SkippedSteps"/> counts the steps skipped so far under <see cref="NonFinitePolicy.Skip"/>.
/// </summary>
public sealed record TrainerMetric(
    int Step,
    [property: JsonConverter(typeof(NonFiniteAsNullConverter))] double TrainLoss,
    [property: JsonConverter(typeof(OptionalNonFiniteAsNullConverter))] double? ValLoss,
    [property: JsonConverter(typeof(NonFiniteAsNullConverter))] double LearningRate,
    [property: JsonConverter(typeof(NonFiniteAsNullConverter))] double TokensPerSecond,
    double ElapsedSeconds,
    int SkippedSteps = 0);

/// <summary>What a run ended with; <paramref name="SkippedSteps"/> counts the steps skipped for a non-finite loss.</summary>
public sealed record TrainerResult(int Steps, double TrainLoss, double ValLoss, double WallSeconds, IReadOnlyList<TrainerMetric> History, int SkippedSteps = 0);

/// <summary>
/// The one training loop of every model: step, clip, optimise, schedule; evaluate every N steps; write
/// checkpoints atomically (a crash leaves the last good one) that resume exactly (model, optimizer,
/// schedule, data generator and step); metrics.json in the run folder; progress and the end of the run reported to
/// <see cref="TrainerOptions.Callbacks"/> (the library draws nothing itself). A step whose loss or gradient norm is NaN or
/// infinite never updates the model: the run stops or skips the step (<see cref="TrainerOptions.OnNonFinite"/>).
/// </summary>
public sealed class Trainer(Module model, Optimizer optimizer, LRScheduler? scheduler, Generator dataGenerator, TrainerOptions options)
{
    private const string CheckpointName = "checkpoint.bin";
    private int _lastCheckpointStep;

    /// <summary>
    /// Runs to <see cref="TrainerOptions.Steps"/>. <paramref name="trainLoss"/> builds the loss of one step
    /// (it draws its batch from the data generator); <paramref name="evaluate"/> returns the validation loss.
    /// Throws <see cref="TrainingDivergedException"/> when the loss stops being finite (see <see cref="NonFinitePolicy"/>),
    /// after writing metrics.json for the steps so far and telling the callbacks.
    /// </summary>
    public TrainerResult Run(Func<Tensor> trainLoss, Func<double> evaluate)
    {
        CheckOptions();
        Directory.CreateDirectory(options.RunDirectory);
        var history = new List<TrainerMetric>();
        int start = 0;
        double elapsedBefore = 0;
        if (options.Resume && File.Exists(CheckpointPath))
        {
            (start, elapsedBefore) = LoadCheckpoint(history);
            _lastCheckpointStep = start;
        }
        options.DataParallel?.CheckAgreement($"the step to start from (the checkpoint in '{options.RunDirectory}' must be readable by every rank)", start);
        var clock = Stopwatch.StartNew();
        double lastLoss = double.NaN, lastVal = history.LastOrDefault(h => h.ValLoss is not null)?.ValLoss ?? double.NaN;
        int skipped = history.Count > 0 ? history[^1].SkippedSteps : 0, skippedInARow = 0;
        var parameters = model.Parameters().ToArray();

        void Body()
        {
            var window = Stopwatch.StartNew();
            int windowSteps = 0;
            for (int step = start; step < options.Steps; step++)
            {
                model.Train();
                bool skippedNow = false;
                using (var scope = new TensorScope())
                {
                    optimizer.ZeroGrad();
                    var loss = trainLoss();
                    loss.Backward();
                    options.DataParallel?.SynchronizeGradients();
                    var norm = options.ClipNorm > 0 ? GradClip.ClipGradNorm(parameters, options.ClipNorm) : null;
                    double? gradNorm;
                    (lastLoss, gradNorm) = ReadLossAndNorm(loss, norm);
                    // The mean over ranks: every rank then takes the same decision about a non-finite step.
                    if (options.DataParallel is { } dp) lastLoss = dp.AverageOverRanks(lastLoss);
                    if (double.IsFinite(lastLoss) && (gradNorm is null || double.IsFinite(gradNorm.Value)))
                    {
                        optimizer.Step();
                        skippedInARow = 0;
                    }
                    else
                    {
                        skippedNow = true;
                        skipped++; skippedInARow++;
                        if (options.OnNonFinite == NonFinitePolicy.Stop || skippedInARow >= options.MaxConsecutiveSkips)
                        {
                            history.Add(new TrainerMetric(step + 1, lastLoss, null, optimizer.ParamGroups[0].LearningRate, 0, elapsedBefore + clock.Elapsed.TotalSeconds, skipped));
                            throw Diverged(step + 1, lastLoss, gradNorm, skippedInARow);
                        }
                    }
                    scheduler?.Step();
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
                if (evalNow || step % 10 == 0 || skippedNow)
                    history.Add(new TrainerMetric(step + 1, lastLoss, val, lr, tps, elapsedBefore + clock.Elapsed.TotalSeconds, skipped));
                if (options.CheckpointEvery > 0 && (step + 1) % options.CheckpointEvery == 0 || step + 1 == options.Steps)
                    SaveCheckpoint(step + 1, elapsedBefore + clock.Elapsed.TotalSeconds, history);
                var stepReport = new TrainerStepReport(step + 1, options.Steps, lastLoss, lastVal, tps, lr);
                foreach (var callback in options.Callbacks) callback.OnStepEnd(stepReport);
                if (window.Elapsed.TotalSeconds > 5) { window.Restart(); windowSteps = 0; }
            }
        }

        ExceptionDispatchInfo? diverged = null;
        try
        {
            foreach (var callback in options.Callbacks)
                callback.OnRunStart(new TrainerRunStart(start, options.Steps, options.EvalEvery, options.TokensPerStep, options.RunDirectory));
            try { Body(); }
            catch (TrainingDivergedException e) { diverged = ExceptionDispatchInfo.Capture(e); }
            // After a divergence too: the steps up to the failure are what the user needs to see what went wrong.
            WriteMetrics(history);
        }
        catch (Exception)
        {
            foreach (var callback in options.Callbacks)
            {
                // The run's own exception is the one to report (see ITrainerCallback.OnRunEnd); a callback's is dropped.
                try { callback.OnRunEnd(new TrainerRunEnd(TrainerRunOutcome.Failed, history, options.RunDirectory)); }
                catch (Exception) { }
            }
            throw;
        }
        double wall = elapsedBefore + clock.Elapsed.TotalSeconds;
        var end = new TrainerRunEnd(diverged is null ? TrainerRunOutcome.Completed : TrainerRunOutcome.Diverged, history, options.RunDirectory);
        foreach (var callback in options.Callbacks) callback.OnRunEnd(end);
        diverged?.Throw();
        return new TrainerResult(options.Steps, lastLoss, lastVal, wall, history, skipped);
    }

    // The loop always read the loss once a step (one wait for the device, one download); it now reads it before the
    // update instead of after, with the clip norm riding along in the same download, so checking both costs nothing more.
    private static (double Loss, double? GradNorm) ReadLossAndNorm(Tensor loss, Tensor? norm)
    {
        if (norm is null || norm.Device != loss.Device || loss.DType != DType.Float32 || norm.DType != DType.Float32)
            return (loss.Item(), norm?.Item());
        using var noGrad = new NoGrad();
        using var both = Tensor.Stack([loss, norm]);
        var values = both.ToArray<float>();
        return (values[0], values[1]);
    }

    private void CheckOptions()
    {
        void Require(bool ok, string what)
        {
            if (!ok) throw new ArgumentException($"Trainer: {what}");
        }
        Require(options.Steps >= 1, $"Steps must be at least 1, got {options.Steps}");
        Require(options.EvalEvery >= 1, $"EvalEvery must be at least 1, got {options.EvalEvery}");
        Require(options.CheckpointEvery >= 0, $"CheckpointEvery must be 0 (only at the end) or positive, got {options.CheckpointEvery}");
        Require(double.IsFinite(options.ClipNorm) && options.ClipNorm >= 0, $"ClipNorm must be 0 (off) or a positive finite number, got {options.ClipNorm.ToString(CultureInfo.InvariantCulture)}");
        Require(options.MaxConsecutiveSkips >= 1, $"MaxConsecutiveSkips must be at least 1, got {options.MaxConsecutiveSkips}");
        Require(Enum.IsDefined(options.OnNonFinite), $"OnNonFinite must be Stop or Skip, got {options.OnNonFinite}");
    }

    private TrainingDivergedException Diverged(int step, double loss, double? gradNorm, int inARow)
    {
        string Num(double v) => v.ToString("G6", CultureInfo.InvariantCulture);
        string what = double.IsFinite(loss) ? $"the gradient norm is {Num(gradNorm!.Value)} (loss {Num(loss)})"
            : $"the loss is {Num(loss)}" + (gradNorm is double g ? $" (gradient norm {Num(g)})" : "");
        string why = options.OnNonFinite == NonFinitePolicy.Stop
            ? "stopped without updating the model"
            : $"stopped after {inARow} skipped steps in a row (the limit)";
        string last = _lastCheckpointStep > 0
            ? $"the last good checkpoint (step {_lastCheckpointStep}) is '{CheckpointPath}'; resume from it with a lower learning rate"
            : "no checkpoint was written before it";
        return new TrainingDivergedException(
            $"training diverged at step {step} of {options.Steps}: {what}; {why}; {last}; metrics.json has the steps so far",
            step, loss, gradNorm);
    }

    private string CheckpointPath => Path.Combine(options.RunDirectory, CheckpointName);

    private bool WritesFiles => options.DataParallel is not { Communicator.IsPrimary: false };

    private void SaveCheckpoint(int step, double elapsed, List<TrainerMetric> history)
    {
        if (!WritesFiles) { _lastCheckpointStep = step; return; }
        AtomicFile.Write(CheckpointPath, tmp =>
        {
            using var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None);
            using var w = new BinaryWriter(fs);
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
            w.Flush();
            fs.Flush(flushToDisk: true);
        });
        Safetensors.Save(Path.Combine(options.RunDirectory, "model.safetensors"), model, new Dictionary<string, string> { ["step"] = step.ToString(CultureInfo.InvariantCulture) });
        _lastCheckpointStep = step;
    }

    private (int Step, double Elapsed) LoadCheckpoint(List<TrainerMetric> history)
    {
        var (step, elapsed, saved) = TrainerCheckpoint.Load(CheckpointPath, model, optimizer, scheduler, dataGenerator);
        history.AddRange(saved);
        return (step, elapsed);
    }

    private void WriteMetrics(List<TrainerMetric> history)
    {
        if (WritesFiles) AtomicFile.Write(Path.Combine(options.RunDirectory, "metrics.json"),
            tmp => File.WriteAllText(tmp, JsonSerializer.Serialize(history, new JsonSerializerOptions { WriteIndented = true })));
    }
}
