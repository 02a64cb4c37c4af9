using AttnCore.Models.Training;

namespace AttnCore.Presentation;

/// <summary>
/// A <see cref="Trainer"/> callback that draws the run's loss curve to <c>loss.png</c> in the run folder when the run
/// completes or diverges (a diverged run's curve shows the steps up to the failure); written atomically.
/// </summary>
public sealed class LossCurvePlot : ITrainerCallback
{
    /// <summary>The file name written in the run folder.</summary>
    public const string FileName = "loss.png";

    /// <inheritdoc/>
    public void OnRunEnd(TrainerRunEnd run)
    {
        if (run.Outcome is TrainerRunOutcome.Completed or TrainerRunOutcome.Diverged)
            Plots.LossCurve(run.History, Path.Combine(run.RunDirectory, FileName));
    }
}
