namespace AttnCore.Models.Training;

/// <summary>
/// Hooks into a <see cref="Trainer"/> run, for what the library itself does not do: draw progress bars, plot
/// curves, log to a tracking service. Every method has an empty default, so a callback implements only what it needs.
/// Callbacks are called in the order of <see cref="TrainerOptions.Callbacks"/>, on the thread that runs the trainer; an
/// exception from one fails the run (at the end of a completed or diverged run it propagates and later callbacks are not called).
/// The library packages never write to the console or draw; AttnCore.Presentation has the console progress bar and
/// the loss-curve PNG as callbacks, and the CLI passes them in.
/// </summary>
public interface ITrainerCallback
{
    /// <summary>Once, before the first step (after a resumed run's checkpoint is loaded).</summary>
    void OnRunStart(TrainerRunStart run) { }

    /// <summary>After every optimizer step (or skipped step), with the values the step produced.</summary>
    void OnStepEnd(TrainerStepReport step) { }

    /// <summary>
    /// Once, when the run ends for any reason, after metrics.json is written (when it is). A run that failed
    /// with an exception other than <see cref="TrainingDivergedException"/> reports <see cref="TrainerRunOutcome.Failed"/>; an
    /// exception a callback throws then is dropped so that the caller sees the original failure.
    /// </summary>
    void OnRunEnd(TrainerRunEnd run) { }
}

/// <summary>How a <see cref="Trainer"/> run ended.</summary>
public enum TrainerRunOutcome
{
    /// <summary>All steps ran; <see cref="Trainer.Run"/> returns.</summary>
    Completed,
    /// <summary>The loss or gradient norm stopped being finite; <see cref="Trainer.Run"/> throws <see cref="TrainingDivergedException"/> after the callbacks.</summary>
    Diverged,
    /// <summary>Any other exception (an I/O error, a bad batch); it propagates after the callbacks.</summary>
    Failed,
}

/// <summary>What a run is about to do: steps <paramref name="StartStep"/>+1 to <paramref name="TotalSteps"/> (a resumed run starts past 0).</summary>
public sealed record TrainerRunStart(int StartStep, int TotalSteps, int EvalEvery, long TokensPerStep, string RunDirectory);

/// <summary>
/// One finished step (1-based <paramref name="Step"/>): its train loss (NaN or infinite for a skipped step), the latest
/// validation loss (NaN before the first evaluation), throughput over the recent window and the learning rate after the step.
/// </summary>
public sealed record TrainerStepReport(int Step, int TotalSteps, double TrainLoss, double LastValLoss, double TokensPerSecond, double LearningRate);

/// <summary>How a run ended and the metrics it recorded (the rows of metrics.json, including those of a resumed run's earlier part).</summary>
public sealed record TrainerRunEnd(TrainerRunOutcome Outcome, IReadOnlyList<TrainerMetric> History, string RunDirectory);
