using AttnCore.Models.Training;
using AttnCore.Presentation;

namespace AttnCore.Cli;

/// <summary>What the CLI's training commands show and draw while a <see cref="Trainer"/> runs.</summary>
public static class TrainingCallbacks
{
    /// <summary>
    /// The progress display (unless <paramref name="showProgress"/> is false: --quiet or --json) and loss.png in the run
    /// folder. The progress display comes first so that it is closed before the plot is drawn.
    /// </summary>
    public static IReadOnlyList<ITrainerCallback> For(CliIO io, bool showProgress) =>
        showProgress ? [new ConsoleProgress(io.Out), new LossCurvePlot()] : [new LossCurvePlot()];
}
