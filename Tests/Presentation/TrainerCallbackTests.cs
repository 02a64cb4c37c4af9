using AttnCore.Models.Nn;
using AttnCore.Models.Training;
using AttnCore.Optim;
using AttnCore.Presentation;
using NUnit.Framework;

namespace AttnCore.Tests.Presentation;

/// <summary>
/// The Trainer reports through <see cref="ITrainerCallback"/> and draws nothing itself; the Presentation callbacks turn
/// the reports into the progress lines and loss.png the CLI shows and writes.
/// </summary>
[TestFixture, Category("Models")]
public class TrainerCallbackTests
{
    string _dir = "";

    [SetUp]
    public void MakeRunFolder() => _dir = Path.Combine(Path.GetTempPath(), "attncore-callbacks-" + Guid.NewGuid().ToString("N"));

    [TearDown]
    public void RemoveRunFolder()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, true);
    }

    sealed class Recorder(string runDirectory, bool throwAtEnd = false) : ITrainerCallback
    {
        public readonly List<string> Events = [];
        public readonly List<TrainerStepReport> Steps = [];
        public TrainerRunStart? Start;
        public TrainerRunEnd? End;
        public bool MetricsWrittenBeforeEnd;

        public void OnRunStart(TrainerRunStart run) { Events.Add("start"); Start = run; }
        public void OnStepEnd(TrainerStepReport step) { Events.Add("step"); Steps.Add(step); }
        public void OnRunEnd(TrainerRunEnd run)
        {
            Events.Add("end");
            End = run;
            MetricsWrittenBeforeEnd = File.Exists(Path.Combine(runDirectory, "metrics.json"));
            if (throwAtEnd) throw new InvalidOperationException("the callback failed too");
        }
    }

    /// <summary>Least squares y = 2x with a 1-input linear layer and plain SGD; <paramref name="alter"/> may change the loss of a (1-based) step.</summary>
    TrainerResult Train(int steps, ITrainerCallback[] callbacks, Func<int, Tensor, Tensor>? alter = null, Action<double, double>? initialWeightAndBias = null, bool resume = false)
    {
        using var model = new Linear(1, 1, generator: new Generator(3));
        using var optimizer = new Sgd(model.Parameters(), 0.01);
        using var x = Tensor.FromArray(new float[] { 1, 2, 3, 4 }, [4, 1]);
        using var y = x * 2.0;
        initialWeightAndBias?.Invoke(model.Weight.ToArray<float>()[0], model.Bias!.ToArray<float>()[0]);
        int step = 0;
        var trainer = new Trainer(model, optimizer, null, new Generator(1), new TrainerOptions
        {
            Steps = steps, EvalEvery = 2, RunDirectory = _dir, TokensPerStep = 4, Callbacks = callbacks, Resume = resume,
        });
        return trainer.Run(() =>
        {
            step++;
            var loss = (model.Forward(x) - y).Square().Mean();
            return alter is null ? loss : alter(step, loss);
        }, () => 0.5);
    }

    [Test]
    public void Callbacks_hear_the_start_every_step_and_a_completed_end_and_the_trainer_draws_nothing()
    {
        var recorder = new Recorder(_dir);
        double w0 = 0, b0 = 0;
        var result = Train(5, [recorder], initialWeightAndBias: (w, b) => (w0, b0) = (w, b));

        Assert.That(recorder.Events, Is.EqualTo(new[] { "start", "step", "step", "step", "step", "step", "end" }));
        Assert.That(recorder.Start, Is.EqualTo(new TrainerRunStart(0, 5, 2, 4, _dir)));
        Assert.That(recorder.Steps.Select(s => s.Step), Is.EqualTo(new[] { 1, 2, 3, 4, 5 }));
        Assert.That(recorder.Steps.All(s => s.TotalSteps == 5 && s.TokensPerSecond > 0 && Math.Abs(s.LearningRate - 0.01) < 1e-12), Is.True);
        // The first step's loss, in float64 from the initial weights: mean over x = 1..4 of (w x + b - 2x)^2.
        double expected = new[] { 1.0, 2, 3, 4 }.Average(x => Math.Pow(w0 * x + b0 - 2 * x, 2));
        Assert.That(recorder.Steps[0].TrainLoss, Is.EqualTo(expected).Within(1e-5).Percent);
        Assert.That(recorder.Steps[1].TrainLoss, Is.LessThan(recorder.Steps[0].TrainLoss), "SGD at a small rate lowers a least-squares loss");
        Assert.That(double.IsNaN(recorder.Steps[0].LastValLoss), Is.True, "no evaluation before step 2");
        Assert.That(recorder.Steps.Skip(1).Select(s => s.LastValLoss), Is.All.EqualTo(0.5));
        Assert.That(recorder.End!.Outcome, Is.EqualTo(TrainerRunOutcome.Completed));
        Assert.That(recorder.End.History, Is.EqualTo(result.History));
        Assert.That(recorder.MetricsWrittenBeforeEnd, Is.True);
        foreach (var metric in result.History)
            Assert.That(metric.TrainLoss, Is.EqualTo(recorder.Steps[metric.Step - 1].TrainLoss), $"step {metric.Step}");
        Assert.That(Directory.GetFiles(_dir, "*.png"), Is.Empty, "the library draws nothing");
    }

    [Test]
    public void A_diverged_run_ends_with_Diverged_after_metrics_json_and_loss_png_shows_the_steps_before_it()
    {
        var recorder = new Recorder(_dir);
        Assert.Throws<TrainingDivergedException>(() => Train(6, [recorder, new LossCurvePlot()], (step, loss) => step == 3 ? loss * double.NaN : loss));
        Assert.That(recorder.Events.Count(e => e == "step"), Is.EqualTo(2), "the diverged step throws before its report");
        Assert.That(recorder.End!.Outcome, Is.EqualTo(TrainerRunOutcome.Diverged));
        Assert.That(recorder.MetricsWrittenBeforeEnd, Is.True);
        Assert.That(recorder.End.History[^1].Step, Is.EqualTo(3));
        Assert.That(double.IsNaN(recorder.End.History[^1].TrainLoss), Is.True);
        AssertPng(Path.Combine(_dir, LossCurvePlot.FileName));
    }

    [Test]
    public void A_failed_run_tells_every_callback_and_throws_its_own_exception_even_when_a_callback_throws()
    {
        var throwing = new Recorder(_dir, throwAtEnd: true);
        var recorder = new Recorder(_dir);
        var ex = Assert.Throws<InvalidDataException>(() =>
            Train(6, [throwing, recorder, new LossCurvePlot()], (step, loss) => step == 2 ? throw new InvalidDataException("a bad batch") : loss));
        Assert.That(ex!.Message, Is.EqualTo("a bad batch"));
        Assert.That(throwing.End!.Outcome, Is.EqualTo(TrainerRunOutcome.Failed));
        Assert.That(recorder.End!.Outcome, Is.EqualTo(TrainerRunOutcome.Failed), "a callback that throws does not keep the next from hearing the end");
        Assert.That(File.Exists(Path.Combine(_dir, LossCurvePlot.FileName)), Is.False, "a failed run has no curve to draw");
    }

    [Test]
    public void A_callback_that_fails_to_start_fails_the_run_and_the_callbacks_before_it_hear_the_end()
    {
        var recorder = new Recorder(_dir);
        var ex = Assert.Throws<InvalidOperationException>(() => Train(3, [recorder, new FailingStart()]));
        Assert.That(ex!.Message, Is.EqualTo("no display"));
        Assert.That(recorder.Events, Is.EqualTo(new[] { "start", "end" }), "a progress bar started before the failure is closed");
        Assert.That(recorder.End!.Outcome, Is.EqualTo(TrainerRunOutcome.Failed));
    }

    sealed class FailingStart : ITrainerCallback
    {
        public void OnRunStart(TrainerRunStart run) => throw new InvalidOperationException("no display");
    }

    [Test]
    public void A_resumed_run_starts_its_reports_at_the_checkpoint_step_and_ends_with_the_whole_history()
    {
        Train(3, []);
        var recorder = new Recorder(_dir);
        var result = Train(5, [recorder], resume: true);
        Assert.That(recorder.Start!.StartStep, Is.EqualTo(3));
        Assert.That(recorder.Steps.Select(s => s.Step), Is.EqualTo(new[] { 4, 5 }));
        Assert.That(recorder.End!.History.Select(h => h.Step), Is.EqualTo(result.History.Select(h => h.Step)));
        Assert.That(recorder.End.History[0].Step, Is.EqualTo(1), "the first part's rows come back from the checkpoint");
    }

    [Test]
    public void A_speedup_chart_is_written_as_a_png_and_no_temporary_file()
    {
        string path = Path.Combine(_dir, "benchmarks.png");
        Plots.SpeedupBars([("SGEMM 1024", 0.8), ("Softmax 4096x1024", 1.3)], "AttnCore", "PyTorch", "title", path);
        AssertPng(path);
        Assert.That(Directory.GetFiles(_dir, "*tmp*"), Is.Empty);
    }

    [Test]
    public void A_completed_run_with_the_loss_curve_callback_writes_a_png_and_no_temporary_file()
    {
        Train(4, [new LossCurvePlot()]);
        AssertPng(Path.Combine(_dir, LossCurvePlot.FileName));
        Assert.That(Directory.GetFiles(_dir, "*tmp*"), Is.Empty);
    }

    [Test]
    public void Without_a_terminal_progress_is_one_line_per_evaluation_interval_and_one_at_the_end()
    {
        var lines = new StringWriter();
        var progress = new ConsoleProgress(lines, interactive: false);
        progress.OnRunStart(new TrainerRunStart(0, 5, 2, 10, _dir));
        for (int step = 1; step <= 5; step++)
            progress.OnStepEnd(new TrainerStepReport(step, 5, 3.0 / step, step < 2 ? double.NaN : 0.25, 10, 1e-3));
        progress.OnRunEnd(new TrainerRunEnd(TrainerRunOutcome.Completed, [], _dir));
        // ETA = steps left x tokens per step / tokens per second: (5 - 2) x 10 / 10 = 3 s after step 2.
        Assert.That(lines.ToString().Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries), Is.EqualTo(new[]
        {
            "step 2/5  loss 1.5000  val 0.2500  10 tok/s  ETA 3s",
            "step 4/5  loss 0.7500  val 0.2500  10 tok/s  ETA 1s",
            "step 5/5  loss 0.6000  val 0.2500  10 tok/s  ETA 0s",
        }));
    }

    [Test]
    public void An_attention_map_needs_a_label_per_row_and_column_and_is_written_as_a_png()
    {
        string path = Path.Combine(_dir, "attention.png");
        var weights = new float[,] { { 0.25f, 0.75f, 0 }, { 1, 0, 0 } };
        var ex = Assert.Throws<ArgumentException>(() => Plots.AttentionMap(weights, ["q"], ["a", "b", "c"], "t", path));
        Assert.That(ex!.Message, Does.Contain("AttentionMap").And.Contain("2x3 weights but 1 query and 3 key labels"));
        Assert.That(File.Exists(path), Is.False);
        Plots.AttentionMap(weights, ["q0", "q1"], ["a", "b", "c"], "t", path);
        AssertPng(path);
    }

    static void AssertPng(string path)
    {
        Assert.That(File.Exists(path), Is.True, path);
        var head = File.ReadAllBytes(path).Take(8).ToArray();
        Assert.That(head, Is.EqualTo(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A }), $"{path} is not a PNG");
    }
}
