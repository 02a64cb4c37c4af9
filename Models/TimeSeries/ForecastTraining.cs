using System.Diagnostics;
using AttnCore.Distributed;
using AttnCore.Models.Training;
using AttnCore.Optim;

namespace AttnCore.Models.TimeSeries;

/// <summary>MSE and MAE over every window, step and forecast channel of a split (on the scaled values).</summary>
/// <param name="Mse">Mean squared error.</param>
/// <param name="Mae">Mean absolute error.</param>
/// <param name="Windows">Windows evaluated (all of the split).</param>
public sealed record ForecastMetrics(double Mse, double Mae, int Windows);

/// <summary>Settings of <see cref="ForecastTraining.Train"/>; the defaults are DLinear's ETTh1 script's.</summary>
public sealed record ForecastTrainingOptions
{
    /// <summary>Most epochs.</summary>
    public int Epochs { get; init; } = 10;
    /// <summary>Windows per step.</summary>
    public int BatchSize { get; init; } = 32;
    /// <summary>Adam's initial learning rate.</summary>
    public double LearningRate { get; init; } = 0.005;
    /// <summary>Stop after this many epochs without a lower validation loss.</summary>
    public int Patience { get; init; } = 3;
    /// <summary>Learning-rate rule of the Informer code: type1 (halve each epoch after the first), type3 (PatchTST: 0.9 per epoch after the third), constant.</summary>
    public string LearningRateRule { get; init; } = "type1";
    /// <summary>Cap on the steps of one epoch (0: every training window once per epoch).</summary>
    public int MaxStepsPerEpoch { get; init; }
    /// <summary>Shuffling seed.</summary>
    public ulong Seed { get; init; } = 1;
    /// <summary>Folder handed to the callbacks (loss.png goes there).</summary>
    public string RunDirectory { get; init; } = "runs/forecast";
    /// <summary>Progress display, loss plot (told of every step and the end of the run).</summary>
    public IReadOnlyList<ITrainerCallback> Callbacks { get; init; } = [];
    /// <summary>
    /// Data-parallel training (null: this process alone): every rank draws the same shuffled global batch of
    /// <see cref="BatchSize"/> windows and trains on its contiguous share; gradients are synchronised after each Backward and
    /// the reported loss is the mean over the whole batch, so every rank takes the same steps and stops together.
    /// </summary>
    public DataParallel? DataParallel { get; init; }
    /// <summary>
    /// Wall-time budget of the training in seconds (0: none). When it is spent the epoch in progress ends after its
    /// current step, is validated like a full one, and training stops; the best weights are then tested as usual.
    /// </summary>
    public double MaxSeconds { get; init; }
    /// <summary>
    /// Told after each epoch's validation, while the model still holds that epoch's weights (so on an improvement it
    /// holds the new best ones): a bounded or killed run can keep its progress on disk.
    /// </summary>
    public Action<ForecastEpochEnd>? EpochEnded { get; init; }
}

/// <summary>Why <see cref="ForecastTraining.Train"/> stopped.</summary>
public enum ForecastStop
{
    /// <summary>Every epoch of <see cref="ForecastTrainingOptions.Epochs"/> ran.</summary>
    Epochs,
    /// <summary><see cref="ForecastTrainingOptions.Patience"/> epochs without a lower validation loss.</summary>
    EarlyStopping,
    /// <summary><see cref="ForecastTrainingOptions.MaxSeconds"/> was spent.</summary>
    TimeBudget,
}

/// <summary>The state after one epoch's validation, handed to <see cref="ForecastTrainingOptions.EpochEnded"/>.</summary>
/// <param name="Epoch">The epoch just validated.</param>
/// <param name="Improved">Its validation loss is the lowest so far (the model holds the new best weights).</param>
/// <param name="BestEpoch">The epoch of the lowest validation loss so far.</param>
/// <param name="Epochs">Every epoch so far, this one last.</param>
/// <param name="Steps">Optimizer steps so far.</param>
public sealed record ForecastEpochEnd(ForecastEpoch Epoch, bool Improved, int BestEpoch, IReadOnlyList<ForecastEpoch> Epochs, int Steps);

/// <summary>One finished epoch.</summary>
/// <param name="Epoch">1-based.</param>
/// <param name="TrainLoss">Mean training MSE of its steps.</param>
/// <param name="ValLoss">Validation MSE over every validation window.</param>
/// <param name="LearningRate">The rate the epoch trained with.</param>
/// <param name="Seconds">Wall time since the start of training.</param>
/// <param name="Steps">Steps it trained (fewer than a full epoch when the time budget ran out in it).</param>
public sealed record ForecastEpoch(int Epoch, double TrainLoss, double ValLoss, double LearningRate, double Seconds, int Steps);

/// <summary>What <see cref="ForecastTraining.Train"/> ended with; the model holds the best epoch's weights.</summary>
/// <param name="Epochs">Every epoch run.</param>
/// <param name="BestEpoch">The epoch of the lowest validation loss (its weights are kept).</param>
/// <param name="Test">Test metrics of the best weights.</param>
/// <param name="Steps">Optimizer steps taken.</param>
/// <param name="WallSeconds">Training and evaluation time.</param>
/// <param name="Stop">Why training stopped.</param>
public sealed record ForecastResult(IReadOnlyList<ForecastEpoch> Epochs, int BestEpoch, ForecastMetrics Test, int Steps, double WallSeconds, ForecastStop Stop);

/// <summary>
/// The training protocol of the long-horizon papers (the Informer code's exp_main): Adam on the MSE of the scaled
/// forecast, shuffled training windows, the validation MSE after every epoch, early stopping after
/// <see cref="ForecastTrainingOptions.Patience"/> epochs without improvement, the best epoch's weights restored,
/// then the test metrics over every test window (no window dropped).
/// </summary>
public static class ForecastTraining
{
    /// <summary>The label length the model's decoder reads (0 for models without a decoder).</summary>
    public static int LabelLength(Forecaster model) => model.UsesTimeFeatures ? model.Config.LabelLen : 0;

    /// <summary>The model's forecast of a batch: the last <see cref="ForecastData.OutputChannels"/> channels [B, H, C_out].</summary>
    public static Tensor Predict(Forecaster model, ForecastData data, ForecastBatch batch)
    {
        var y = model.UsesTimeFeatures ? model.Forward(batch.X, batch.XMark, batch.YMark) : model.Forward(batch.X);
        if (data.OutputChannels == data.Channels) return y;
        using (y) return y.Narrow(2, data.Channels - data.OutputChannels, data.OutputChannels);
    }

    /// <summary>MSE loss of one batch (for a training step).</summary>
    public static Tensor Loss(Forecaster model, ForecastData data, ForecastBatch batch)
    {
        using var scope = new TensorScope();
        var prediction = Predict(model, data, batch);
        var target = batch.Y.Narrow(2, data.Channels - data.OutputChannels, data.OutputChannels);
        return scope.Keep((prediction - target).Square().Mean());
    }

    /// <summary>MSE and MAE of <paramref name="model"/> (in evaluation mode, no gradients) over every window of <paramref name="split"/>.</summary>
    public static ForecastMetrics Evaluate(Forecaster model, ForecastData data, ForecastSplit split, int batchSize = 128)
    {
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "ForecastTraining.Evaluate: the batch size must be positive");
        bool wasTraining = model.Training;
        model.Eval();
        try
        {
            using var noGrad = new NoGrad();
            int n = data.WindowCount(split);
            double squared = 0, absolute = 0;
            var indices = new int[batchSize];
            for (int start = 0; start < n; start += batchSize)
            {
                int b = Math.Min(batchSize, n - start);
                for (int i = 0; i < b; i++) indices[i] = start + i;
                using var scope = new TensorScope();
                var batch = data.Batch(split, indices.AsSpan(0, b), LabelLength(model));
                var error = Predict(model, data, batch) - batch.Y.Narrow(2, data.Channels - data.OutputChannels, data.OutputChannels);
                squared += error.Square().Sum().Item();
                absolute += error.Abs().Sum().Item();
            }
            double count = (double)n * data.PredLen * data.OutputChannels;
            return new ForecastMetrics(squared / count, absolute / count, n);
        }
        finally { model.Train(wasTraining); }
    }

    /// <summary>The learning rate of epoch <paramref name="epoch"/> (1-based) under <paramref name="rule"/> (see <see cref="ForecastTrainingOptions.LearningRateRule"/>).</summary>
    public static double LearningRateAt(string rule, double initial, int epoch) => rule switch
    {
        // adjust_learning_rate(optimizer, epoch + 1) runs after each epoch and sets the next one's rate.
        "type1" => epoch <= 2 ? initial : initial * Math.Pow(0.5, epoch - 2),
        "type3" => epoch <= 3 ? initial : initial * Math.Pow(0.9, epoch - 4),
        "constant" => initial,
        _ => throw new ArgumentException($"ForecastTraining: unknown learning-rate rule '{rule}'; use type1, type3 or constant"),
    };

    /// <summary>Trains <paramref name="model"/> on <paramref name="data"/>; on return it holds the best epoch's weights.</summary>
    public static ForecastResult Train(Forecaster model, ForecastData data, ForecastTrainingOptions options)
    {
        if (options.Epochs <= 0 || options.BatchSize <= 0 || options.Patience <= 0 || options.MaxStepsPerEpoch < 0 || !(options.LearningRate > 0) || !(options.MaxSeconds >= 0) || double.IsInfinity(options.MaxSeconds))
            throw new ArgumentException($"ForecastTraining: epochs {options.Epochs}, batch {options.BatchSize}, patience {options.Patience} and learning rate {options.LearningRate} must be positive (max steps per epoch {options.MaxStepsPerEpoch} and max seconds {options.MaxSeconds} finite and non-negative)");
        LearningRateAt(options.LearningRateRule, options.LearningRate, 1);
        var clock = Stopwatch.StartNew();
        int windows = data.WindowCount(ForecastSplit.Train);
        int stepsPerEpoch = (windows + options.BatchSize - 1) / options.BatchSize;
        if (options.MaxStepsPerEpoch > 0) stepsPerEpoch = Math.Min(stepsPerEpoch, options.MaxStepsPerEpoch);
        int totalSteps = stepsPerEpoch * options.Epochs;
        using var optimizer = new Adam(model.Parameters(), options.LearningRate);
        var random = new Random(unchecked((int)options.Seed ^ (int)(options.Seed >> 32)));
        var order = Enumerable.Range(0, windows).ToArray();
        var epochs = new List<ForecastEpoch>();
        var history = new List<TrainerMetric>();
        Dictionary<string, Tensor>? best = null;
        double bestVal = double.PositiveInfinity, lastVal = double.NaN; // NaN: no validation yet, as the step reports expect
        int bestEpoch = 0, sinceBest = 0, step = 0;
        foreach (var callback in options.Callbacks) callback.OnRunStart(new TrainerRunStart(0, totalSteps, stepsPerEpoch, (long)options.BatchSize * data.PredLen, options.RunDirectory));
        var outcome = TrainerRunOutcome.Failed;
        var stop = ForecastStop.Epochs;
        // Under data parallelism the ranks agree on a spent budget (DataParallel.AnyRank).
        bool TimeSpent() => options.MaxSeconds > 0 && (options.DataParallel?.AnyRank(clock.Elapsed.TotalSeconds >= options.MaxSeconds) ?? clock.Elapsed.TotalSeconds >= options.MaxSeconds);
        try
        {
            for (int epoch = 1; epoch <= options.Epochs && stop == ForecastStop.Epochs; epoch++)
            {
                double lr = LearningRateAt(options.LearningRateRule, options.LearningRate, epoch);
                foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;
                random.Shuffle(order);
                model.Train();
                double lossSum = 0;
                int epochSteps = 0;
                for (int s = 0; s < stepsPerEpoch; s++)
                {
                    int b = Math.Min(options.BatchSize, windows - s * options.BatchSize);
                    var rows = order.AsSpan(s * options.BatchSize, b);
                    if (options.DataParallel is { } share)
                    {
                        var (at, count) = share.ShareOf(b);
                        rows = rows.Slice(at, count);
                    }
                    double loss = 0;
                    using (var scope = new TensorScope())
                    {
                        optimizer.ZeroGrad();
                        // A rank whose share of a short last batch is empty still joins the gradient all-reduce.
                        if (rows.Length > 0)
                        {
                            var batch = data.Batch(ForecastSplit.Train, rows, LabelLength(model));
                            var l = Loss(model, data, batch);
                            l.Backward();
                            loss = l.Item();
                        }
                        if (options.DataParallel is { } dp)
                        {
                            dp.SynchronizeGradients();
                            loss = dp.BatchMean(loss, rows.Length, b);
                        }
                        if (!double.IsFinite(loss))
                            throw new TrainingDivergedException($"train forecast: the loss of epoch {epoch} step {s + 1} is {loss}; lower the learning rate", step + 1, loss, null);
                        optimizer.Step();
                    }
                    lossSum += loss;
                    step++;
                    epochSteps++;
                    double tps = (double)step * options.BatchSize * data.PredLen / Math.Max(1e-9, clock.Elapsed.TotalSeconds);
                    var report = new TrainerStepReport(step, totalSteps, loss, lastVal, tps, lr);
                    foreach (var callback in options.Callbacks) callback.OnStepEnd(report);
                    if (s % 10 == 0) history.Add(new TrainerMetric(step, loss, null, lr, tps, clock.Elapsed.TotalSeconds));
                    // At least one step runs, so every epoch recorded has a training loss and a validation.
                    if (TimeSpent()) { stop = ForecastStop.TimeBudget; break; }
                }
                double val = lastVal = Evaluate(model, data, ForecastSplit.Validation).Mse;
                double train = lossSum / epochSteps;
                var record = new ForecastEpoch(epoch, train, val, lr, clock.Elapsed.TotalSeconds, epochSteps);
                epochs.Add(record);
                history.Add(new TrainerMetric(step, train, val, lr, 0, clock.Elapsed.TotalSeconds));
                bool improved = val < bestVal;
                if (improved)
                {
                    (bestVal, bestEpoch, sinceBest) = (val, epoch, 0);
                    DisposeAll(best);
                    best = Snapshot(model);
                }
                else if (++sinceBest >= options.Patience && stop == ForecastStop.Epochs) stop = ForecastStop.EarlyStopping;
                options.EpochEnded?.Invoke(new ForecastEpochEnd(record, improved, bestEpoch, epochs.ToArray(), step));
                if (stop == ForecastStop.Epochs && epoch < options.Epochs && TimeSpent()) stop = ForecastStop.TimeBudget;
            }
            outcome = TrainerRunOutcome.Completed;
        }
        catch (TrainingDivergedException) { outcome = TrainerRunOutcome.Diverged; throw; }
        finally
        {
            var end = new TrainerRunEnd(outcome, history, options.RunDirectory);
            foreach (var callback in options.Callbacks)
            {
                try { callback.OnRunEnd(end); }
                catch (Exception) when (outcome != TrainerRunOutcome.Completed) { }
            }
            if (outcome != TrainerRunOutcome.Completed) DisposeAll(best);
        }
        if (best is not null)
        {
            model.LoadStateDict(best);
            DisposeAll(best);
        }
        var test = Evaluate(model, data, ForecastSplit.Test);
        return new ForecastResult(epochs, bestEpoch, test, step, clock.Elapsed.TotalSeconds, stop);
    }

    private static Dictionary<string, Tensor> Snapshot(Forecaster model)
    {
        using var noGrad = new NoGrad();
        var suspended = TensorScope.Suspend();
        try { return model.StateDict().ToDictionary(p => p.Key, p => p.Value.Detach().Clone()); }
        finally { TensorScope.Resume(suspended); }
    }

    private static void DisposeAll(Dictionary<string, Tensor>? state)
    {
        if (state is null) return;
        foreach (var t in state.Values) t.Dispose();
    }
}
