using System.Globalization;
using AttnCore.Models.Training;
using Spectre.Console;

namespace AttnCore.Presentation;

/// <summary>
/// A <see cref="Trainer"/> callback that shows progress: on an interactive terminal a Spectre.Console progress bar
/// (step, loss, validation loss, tokens/s, ETA); otherwise (redirected output, CI logs) one line per evaluation
/// interval and one at the end, written to <paramref name="lines"/>.
/// </summary>
/// <param name="lines">Where the plain lines go when there is no interactive terminal.</param>
/// <param name="interactive">Draw the bar (true) or the lines (false); by default, whether the console is interactive.</param>
public sealed class ConsoleProgress(TextWriter lines, bool? interactive = null) : ITrainerCallback
{
    private readonly bool _bar = interactive ?? AnsiConsole.Profile.Capabilities.Interactive;
    private int _evalEvery = 1;
    private long _tokensPerStep = 1;
    private ProgressTask? _task;
    private Thread? _renderer;
    private Exception? _renderFailure;
    private readonly ManualResetEventSlim _started = new(), _finished = new();

    /// <inheritdoc/>
    public void OnRunStart(TrainerRunStart run)
    {
        _evalEvery = Math.Max(1, run.EvalEvery);
        _tokensPerStep = run.TokensPerStep;
        if (!_bar) return;
        _started.Reset(); _finished.Reset();
        // Spectre's progress display lives inside a callback for its whole duration, while the trainer calls back once a
        // step; the display gets a thread of its own that waits for the end of the run (task updates are thread-safe).
        _renderFailure = null;
        _renderer = new Thread(() =>
        {
            try
            {
                AnsiConsole.Progress()
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                    .Start(ctx =>
                    {
                        _task = ctx.AddTask("training", maxValue: run.TotalSteps);
                        _task.Value = run.StartStep;
                        _started.Set();
                        _finished.Wait();
                    });
            }
            catch (Exception e)
            {
                // Reported on the trainer's thread: an exception left on this one would end the process.
                _renderFailure = e;
                _started.Set();
            }
        })
        { IsBackground = true, Name = "AttnCore progress bar" };
        _renderer.Start();
        _started.Wait();
        if (_renderFailure is { } failure)
        {
            _renderer.Join();
            _renderer = null;
            throw new InvalidOperationException($"ConsoleProgress: the progress bar could not start: {failure.Message}", failure);
        }
    }

    /// <inheritdoc/>
    public void OnStepEnd(TrainerStepReport step)
    {
        if (_task is not null)
        {
            _task.Value = step.Step;
            _task.Description = string.Create(CultureInfo.InvariantCulture,
                $"step {step.Step}/{step.TotalSteps} loss {step.TrainLoss:F4} val {step.LastValLoss:F4} {step.TokensPerSecond:F0} tok/s");
        }
        else if (!_bar && (step.Step % _evalEvery == 0 || step.Step == step.TotalSteps))
            lines.WriteLine(PlainLine(step, _tokensPerStep));
    }

    /// <inheritdoc/>
    public void OnRunEnd(TrainerRunEnd run)
    {
        if (_renderer is null) return;
        _finished.Set();
        _renderer.Join();
        _renderer = null;
        _task = null;
    }

    /// <summary>The line printed for <paramref name="step"/> without a terminal: step, loss, validation loss, throughput and ETA in seconds.</summary>
    public static string PlainLine(TrainerStepReport step, long tokensPerStep)
    {
        double eta = (step.TotalSteps - step.Step) * tokensPerStep / Math.Max(1, step.TokensPerSecond);
        return string.Create(CultureInfo.InvariantCulture,
            $"step {step.Step}/{step.TotalSteps}  loss {step.TrainLoss:F4}  val {step.LastValLoss:F4}  {step.TokensPerSecond:F0} tok/s  ETA {eta:F0}s");
    }
}
