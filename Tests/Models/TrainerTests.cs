using System.Text.Json;
using AttnCore.Models.Nn;
using AttnCore.Models.Training;
using AttnCore.Optim;
using NUnit.Framework;

namespace AttnCore.Tests.Models;

/// <summary>
/// The no-lost-run guarantees of <see cref="Trainer"/>: a non-finite loss or gradient norm never updates the model,
/// stops (or is skipped) with a message naming the step, and every failure leaves the last good files and no temporary ones.
/// </summary>
[TestFixture, Category("Models")]
public class TrainerTests
{
    string _dir = "";

    [SetUp]
    public void MakeRunFolder() => _dir = Path.Combine(Path.GetTempPath(), "attncore-trainer-" + Guid.NewGuid().ToString("N"));

    [TearDown]
    public void RemoveRunFolder()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, true);
    }

    /// <summary>
    /// Least squares on a 3-input linear layer; the poison function says, per 1-based step, how that step's
    /// loss goes wrong: "nan" multiplies it by NaN, "inf" by infinity, "grad" keeps the value but makes the
    /// gradient NaN (d sqrt(x)/dx at 0 is infinite, times 0), anything else leaves it alone.
    /// </summary>
    sealed class TinyRun : IDisposable
    {
        public readonly Linear Model = new(3, 1, generator: new Generator(5));
        public readonly AdamW Optimizer;
        public readonly WarmupCosine Schedule;
        public readonly Generator Data = new(9);
        public readonly List<float[]> WeightsBeforeStep = [];
        readonly Tensor _x = Tensor.Randn([16, 3], 11);
        readonly Tensor _y;
        readonly Func<int, string?> _poison;
        int _step;

        public TinyRun(Func<int, string?> poison, int steps)
        {
            Optimizer = new AdamW(Model.Parameters(), 0.05);
            Schedule = new WarmupCosine(Optimizer, 2, steps, 0.1);
            using var w = Tensor.FromArray(new float[] { 1, -2, 0.5f }, [3, 1]);
            _y = _x.MatMul(w);
            _poison = poison;
        }

        public Trainer Trainer(TrainerOptions options) => new(Model, Optimizer, Schedule, Data, options);

        public Tensor Loss()
        {
            _step++;
            WeightsBeforeStep.Add(Model.Weight.ToArray<float>());
            Data.NextInt64(0, 100); // the data generator advances as a real batch sampler would
            var loss = (Model.Forward(_x) - _y).Square().Mean();
            return _poison(_step) switch
            {
                "nan" => loss * double.NaN,
                "inf" => loss * double.PositiveInfinity,
                "grad" => loss + (Model.Weight * 0.0).Sqrt().Sum(),
                _ => loss,
            };
        }

        public void Dispose() { Optimizer.Dispose(); Model.Dispose(); _x.Dispose(); _y.Dispose(); }
    }

    TrainerOptions Options(int steps, int checkpointEvery = 0, double clip = 0, NonFinitePolicy policy = NonFinitePolicy.Stop, int maxSkips = 10) => new()
    {
        Steps = steps, EvalEvery = 4, CheckpointEvery = checkpointEvery, RunDirectory = _dir, ClipNorm = clip,
        OnNonFinite = policy, MaxConsecutiveSkips = maxSkips,
    };

    void AssertNoTemporaryFiles() =>
        Assert.That(Directory.Exists(_dir) ? Directory.GetFiles(_dir, "*tmp*", SearchOption.AllDirectories) : [], Is.Empty, "temporary files left in the run folder");

    JsonElement[] Metrics()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, "metrics.json")));
        return doc.RootElement.EnumerateArray().Select(e => e.Clone()).ToArray();
    }

    [Test]
    public void A_nan_loss_stops_the_run_at_that_step_and_keeps_the_last_good_checkpoint()
    {
        using var run = new TinyRun(step => step == 7 ? "nan" : null, 20);
        var ex = Assert.Throws<TrainingDivergedException>(() => run.Trainer(Options(20, checkpointEvery: 5)).Run(run.Loss, () => 0.5));
        Assert.That(ex!.Step, Is.EqualTo(7));
        Assert.That(double.IsNaN(ex.Loss), Is.True);
        Assert.That(ex.Message, Does.Contain("step 7 of 20").And.Contain("loss is NaN").And.Contain("step 5").And.Contain("checkpoint.bin"));
        Assert.That(ex.Message, Does.Not.Contain("\n"));
        // Step 7 did not touch the weights: they are what step 7 started from.
        Assert.That(run.Model.Weight.ToArray<float>(), Is.EqualTo(run.WeightsBeforeStep[6]));
        Assert.That(run.Optimizer.StepCount, Is.EqualTo(6));
        AssertNoTemporaryFiles();

        var metrics = Metrics();
        Assert.That(metrics[^1].GetProperty("Step").GetInt32(), Is.EqualTo(7));
        Assert.That(metrics[^1].GetProperty("TrainLoss").ValueKind, Is.EqualTo(JsonValueKind.Null), "JSON has no NaN: written as null");
        Assert.That(metrics[0].GetProperty("TrainLoss").ValueKind, Is.EqualTo(JsonValueKind.Number));

        // The checkpoint of step 5 loads and holds the weights that step 6 started from.
        using var resumed = new TinyRun(_ => null, 5);
        var result = resumed.Trainer(Options(5) with { Resume = true }).Run(resumed.Loss, () => 0.5);
        Assert.That(resumed.WeightsBeforeStep, Is.Empty, "the run was already complete at step 5");
        Assert.That(resumed.Model.Weight.ToArray<float>(), Is.EqualTo(run.WeightsBeforeStep[5]));
        Assert.That(resumed.Optimizer.StepCount, Is.EqualTo(5));
        Assert.That(result.History.Select(h => h.Step), Does.Contain(1).And.Contain(4));
    }

    [Test]
    public void An_infinite_loss_without_any_checkpoint_yet_says_so()
    {
        using var run = new TinyRun(step => step == 2 ? "inf" : null, 10);
        var ex = Assert.Throws<TrainingDivergedException>(() => run.Trainer(Options(10)).Run(run.Loss, () => 0.5));
        Assert.That(ex!.Message, Does.Contain("step 2 of 10").And.Contain("Infinity").And.Contain("no checkpoint was written"));
        Assert.That(File.Exists(Path.Combine(_dir, "checkpoint.bin")), Is.False);
        Assert.That(Metrics()[^1].GetProperty("TrainLoss").ValueKind, Is.EqualTo(JsonValueKind.Null));
        AssertNoTemporaryFiles();
    }

    [Test]
    public void A_nan_gradient_under_clipping_stops_even_when_the_loss_is_finite()
    {
        using var run = new TinyRun(step => step == 3 ? "grad" : null, 10);
        var ex = Assert.Throws<TrainingDivergedException>(() => run.Trainer(Options(10, clip: 1.0)).Run(run.Loss, () => 0.5));
        Assert.That(ex!.Step, Is.EqualTo(3));
        Assert.That(double.IsFinite(ex.Loss), Is.True);
        Assert.That(ex.GradientNorm, Is.NaN);
        Assert.That(ex.Message, Does.Contain("gradient norm is NaN"));
        Assert.That(run.Model.Weight.ToArray<float>(), Is.EqualTo(run.WeightsBeforeStep[2]));
        Assert.That(run.Model.Weight.ToArray<float>().All(float.IsFinite), Is.True);
    }

    [Test]
    public void Skip_policy_skips_bad_steps_without_touching_parameters_or_optimizer_state_and_counts_them()
    {
        using var run = new TinyRun(step => step is 4 or 9 ? "nan" : null, 12);
        var result = run.Trainer(Options(12, checkpointEvery: 3, policy: NonFinitePolicy.Skip)).Run(run.Loss, () => 0.5);
        Assert.That(result.SkippedSteps, Is.EqualTo(2));
        Assert.That(run.Optimizer.StepCount, Is.EqualTo(10), "AdamW's step count (bias correction) advances only on applied steps");
        Assert.That(run.WeightsBeforeStep[4], Is.EqualTo(run.WeightsBeforeStep[3]), "step 4 was skipped");
        Assert.That(run.WeightsBeforeStep[3], Is.Not.EqualTo(run.WeightsBeforeStep[2]), "step 3 was applied");
        Assert.That(run.Model.Weight.ToArray<float>().All(float.IsFinite), Is.True);
        Assert.That(double.IsFinite(result.TrainLoss), Is.True);

        var metrics = Metrics();
        var skippedRows = metrics.Where(m => m.GetProperty("TrainLoss").ValueKind == JsonValueKind.Null).Select(m => m.GetProperty("Step").GetInt32());
        Assert.That(skippedRows, Is.EqualTo(new[] { 4, 9 }), "every skipped step has its row");
        Assert.That(metrics[^1].GetProperty("SkippedSteps").GetInt32(), Is.EqualTo(2));
        Assert.That(result.History.Single(h => h.Step == 9).SkippedSteps, Is.EqualTo(2));
        AssertNoTemporaryFiles();

        // The checkpoint of step 12 holds a history with NaN losses; it still loads (null reads back as NaN).
        using var resumed = new TinyRun(_ => null, 12);
        var again = resumed.Trainer(Options(12, policy: NonFinitePolicy.Skip) with { Resume = true }).Run(resumed.Loss, () => 0.5);
        Assert.That(again.History.Single(h => h.Step == 4).TrainLoss, Is.NaN);
        Assert.That(again.SkippedSteps, Is.EqualTo(2));
    }

    [Test]
    public void Skip_policy_stops_after_the_limit_of_skips_in_a_row()
    {
        using var run = new TinyRun(step => step >= 3 ? "inf" : null, 20);
        var ex = Assert.Throws<TrainingDivergedException>(() => run.Trainer(Options(20, policy: NonFinitePolicy.Skip, maxSkips: 3)).Run(run.Loss, () => 0.5));
        Assert.That(ex!.Step, Is.EqualTo(5));
        Assert.That(ex.Message, Does.Contain("3 skipped steps in a row"));
        Assert.That(run.Optimizer.StepCount, Is.EqualTo(2));
        Assert.That(Metrics()[^1].GetProperty("SkippedSteps").GetInt32(), Is.EqualTo(3));
        AssertNoTemporaryFiles();
    }

    [Test]
    public void Files_that_cannot_be_written_leave_no_temporary_file_behind()
    {
        // A folder in the place of the target makes its rename fail; unlike a read-only folder this works for root too.
        string checkpoint = Path.Combine(_dir, "checkpoint.bin"), metrics = Path.Combine(_dir, "metrics.json");
        Directory.CreateDirectory(checkpoint);
        using (var blocked = new TinyRun(_ => null, 3))
            Assert.That(() => blocked.Trainer(Options(3)).Run(blocked.Loss, () => 0.5), Throws.InstanceOf<IOException>().Or.InstanceOf<UnauthorizedAccessException>());
        AssertNoTemporaryFiles();
        Directory.Delete(checkpoint);

        using (var first = new TinyRun(_ => null, 6)) first.Trainer(Options(3)).Run(first.Loss, () => 0.5);
        File.Delete(metrics);
        Directory.CreateDirectory(metrics);
        using (var more = new TinyRun(_ => null, 6))
            Assert.That(() => more.Trainer(Options(6) with { Resume = true }).Run(more.Loss, () => 0.5), Throws.InstanceOf<IOException>().Or.InstanceOf<UnauthorizedAccessException>());
        AssertNoTemporaryFiles();

        // The checkpoint written before metrics.json failed is whole: resuming from it finds the run complete.
        Directory.Delete(metrics);
        using var resumed = new TinyRun(_ => null, 6);
        var result = resumed.Trainer(Options(6) with { Resume = true }).Run(resumed.Loss, () => 0.5);
        Assert.That(resumed.WeightsBeforeStep, Is.Empty);
        Assert.That(resumed.Optimizer.StepCount, Is.EqualTo(6));
        Assert.That(result.History.Max(h => h.Step), Is.EqualTo(6));
        Assert.That(Metrics(), Is.Not.Empty);
    }

    [Test]
    public void Metric_numbers_that_are_not_finite_are_written_as_null_and_read_back_as_nan()
    {
        var rows = new List<TrainerMetric> { new(1, double.NaN, double.PositiveInfinity, 1e-3, 10, 0.5, 1), new(2, 0.25, null, double.NegativeInfinity, 10, 1, 1) };
        string json = JsonSerializer.Serialize(rows);
        Assert.That(json, Does.Not.Contain("NaN").And.Not.Contain("Infinity"));
        using (var doc = JsonDocument.Parse(json))
        {
            Assert.That(doc.RootElement[0].GetProperty("TrainLoss").ValueKind, Is.EqualTo(JsonValueKind.Null));
            Assert.That(doc.RootElement[0].GetProperty("ValLoss").ValueKind, Is.EqualTo(JsonValueKind.Null));
            Assert.That(doc.RootElement[1].GetProperty("TrainLoss").GetDouble(), Is.EqualTo(0.25));
        }
        var back = JsonSerializer.Deserialize<List<TrainerMetric>>(json)!;
        Assert.That(back[0].TrainLoss, Is.NaN);
        Assert.That(back[0].ValLoss, Is.Null);
        Assert.That(back[1].LearningRate, Is.NaN);
        Assert.That(back[1] with { LearningRate = 0 }, Is.EqualTo(rows[1] with { LearningRate = 0 }));
    }

    [Test]
    public void Options_out_of_range_are_rejected_before_anything_is_written()
    {
        using var run = new TinyRun(_ => null, 5);
        foreach (var (bad, name) in new (TrainerOptions, string)[]
                 {
                     (Options(0), "Steps"), (Options(5) with { EvalEvery = 0 }, "EvalEvery"), (Options(5, checkpointEvery: -1), "CheckpointEvery"),
                     (Options(5, clip: double.NaN), "ClipNorm"), (Options(5, clip: -1), "ClipNorm"), (Options(5, maxSkips: 0), "MaxConsecutiveSkips"),
                 })
        {
            var ex = Assert.Throws<ArgumentException>(() => run.Trainer(bad).Run(run.Loss, () => 0.5), name);
            Assert.That(ex!.Message, Does.Contain(name));
        }
        Assert.That(Directory.Exists(_dir), Is.False);
    }
}
