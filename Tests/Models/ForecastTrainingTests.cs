using AttnCore.Models.TimeSeries;
using NUnit.Framework;

namespace AttnCore.Tests.Models;

/// <summary>The metrics over every test window, the learning-rate rules and a short real-data DLinear run on ETTh1.</summary>
[TestFixture, Category("Models")]
public class ForecastTrainingTests
{
    [Test]
    public void Metrics_cover_every_window_step_and_channel()
    {
        // A DLinear with zero weights forecasts 0, so MSE and MAE are the mean square and mean absolute scaled target
        // over every window (the last partial batch included), computed here from the table in float64.
        var table = ForecastDataTests.Synthetic(400, 2);
        using var data = new ForecastData(table, 16, 8);
        using var model = new DLinear(new ForecasterConfig("dlinear", 16, 8, 2, MovingAverage: 5));
        using (new NoGrad()) foreach (var p in model.Parameters()) p.Fill_(0);
        var metrics = ForecastTraining.Evaluate(model, data, ForecastSplit.Test, batchSize: 7);
        int n = data.WindowCount(ForecastSplit.Test), start = data.SplitStart(ForecastSplit.Test);
        double sq = 0, abs = 0;
        for (int w = 0; w < n; w++)
            for (int t = 0; t < 8; t++)
                for (int c = 0; c < 2; c++)
                {
                    double v = (table[start + w + 16 + t, c] - data.Scaler.Mean[c]) / data.Scaler.Scale[c];
                    sq += v * v; abs += Math.Abs(v);
                }
        Assert.That(metrics.Windows, Is.EqualTo(n));
        Assert.That(metrics.Mse, Is.EqualTo(sq / (n * 16)).Within(1e-5 * sq / (n * 16)));
        Assert.That(metrics.Mae, Is.EqualTo(abs / (n * 16)).Within(1e-5 * abs / (n * 16)));
    }

    [Test]
    public void Learning_rate_rules_follow_the_informer_adjust_learning_rate()
    {
        Assert.That(Enumerable.Range(1, 5).Select(e => ForecastTraining.LearningRateAt("type1", 1.0, e)), Is.EqualTo(new[] { 1.0, 1.0, 0.5, 0.25, 0.125 }));
        Assert.That(Enumerable.Range(1, 5).Select(e => ForecastTraining.LearningRateAt("type3", 1.0, e)), Is.EqualTo(new[] { 1.0, 1.0, 1.0, 1.0, 0.9 }).Within(1e-12));
        Assert.Throws<ArgumentException>(() => ForecastTraining.LearningRateAt("cosine", 1.0, 1));
    }

    [Test]
    public void Decomposition_is_an_edge_replicated_moving_average()
    {
        // Row t of the matrix averages x[clamp(t+j)] for j in [-2, 2]: at t = 0 that is x0 three times, x1 and x2.
        var a = DLinear.MovingAverageMatrix(6, 5);
        Assert.That(a.Take(6), Is.EqualTo(new[] { 3f / 5, 1f / 5, 1f / 5, 0, 0, 0 }).Within(1e-7));
        Assert.That(a.Skip(2 * 6).Take(6), Is.EqualTo(new[] { 1f / 5, 1f / 5, 1f / 5, 1f / 5, 1f / 5, 0 }).Within(1e-7));
        Assert.Throws<ArgumentException>(() => new DLinear(new ForecasterConfig("dlinear", 16, 8, 2, MovingAverage: 4)));
    }

    [Test]
    public void DLinear_trained_one_epoch_on_ETTh1_beats_the_stated_test_mse()
    {
        // DLinear's ETTh1 settings (L 336, H 96, batch 32, Adam 0.005), one epoch of 257 steps. PyTorch's DLinear with the
        // same settings measured a test MSE of 0.428 after one epoch here (the paper: 0.375 after early stopping); repeating
        // the last value scores 1.294 and forecasting the training mean 1.110. Bar: 0.45, a margin of 0.022 over PyTorch's epoch.
        using var data = ForecastData.FromCsv(ForecastDataTests.EttPath(), 336, 96);
        using var model = Forecaster.Create(new ForecasterConfig("dlinear", 336, 96, data.Channels), new Generator(1));
        var result = ForecastTraining.Train(model, data, new ForecastTrainingOptions { Epochs = 1, BatchSize = 32, LearningRate = 0.005, Seed = 1 });
        TestContext.Out.WriteLine($"DLinear one epoch: val {result.Epochs[0].ValLoss:F4} test MSE {result.Test.Mse:F4} MAE {result.Test.Mae:F4}, {result.WallSeconds:F1} s");
        Assert.That(result.Steps, Is.EqualTo(257));
        Assert.That(result.Test.Windows, Is.EqualTo(2785));
        Assert.That(result.Test.Mse, Is.LessThan(0.45));
    }

    [Test]
    public void Time_budget_cuts_the_epoch_short_validates_it_and_tests_the_best_weights()
    {
        // 400 rows, L 16, H 8: 257 training windows, 33 steps of 8 per epoch. A budget of a microsecond is spent by the
        // first step, so training ends after it: one epoch of one step, validated, its weights tested on every window.
        using var data = new ForecastData(ForecastDataTests.Synthetic(400, 2), 16, 8);
        using var model = new DLinear(new ForecasterConfig("dlinear", 16, 8, 2, MovingAverage: 5));
        var ended = new List<ForecastEpochEnd>();
        var result = ForecastTraining.Train(model, data, new ForecastTrainingOptions { Epochs = 5, BatchSize = 8, MaxSeconds = 1e-6, EpochEnded = ended.Add });
        Assert.That(result.Stop, Is.EqualTo(ForecastStop.TimeBudget));
        Assert.That((result.Epochs.Count, result.Epochs[0].Steps, result.Steps, result.BestEpoch), Is.EqualTo((1, 1, 1, 1)));
        Assert.That(result.Test.Windows, Is.EqualTo(data.WindowCount(ForecastSplit.Test)));
        Assert.That(ended, Has.Count.EqualTo(1));
        Assert.That(ended[0].Improved && double.IsFinite(ended[0].Epoch.ValLoss));
        Assert.That(result.Test.Mse, Is.EqualTo(ForecastTraining.Evaluate(model, data, ForecastSplit.Test).Mse).Within(1e-9));

        // Without a budget the same settings run every step of every epoch.
        using var unbounded = new DLinear(new ForecasterConfig("dlinear", 16, 8, 2, MovingAverage: 5));
        var full = ForecastTraining.Train(unbounded, data, new ForecastTrainingOptions { Epochs = 2, BatchSize = 8, Patience = 5 });
        Assert.That((full.Stop, full.Steps, full.Epochs[1].Steps), Is.EqualTo((ForecastStop.Epochs, 66, 33)));
        Assert.Throws<ArgumentException>(() => ForecastTraining.Train(unbounded, data, new ForecastTrainingOptions { MaxSeconds = -1 }));
    }

    [Test]
    public void Each_epoch_is_reported_with_the_best_weights_in_the_model_when_it_improves()
    {
        // The callback runs after each validation; on an improvement the model holds the new best weights, which are the
        // ones the run ends with. Improved must match "lower than every earlier validation loss".
        using var data = new ForecastData(ForecastDataTests.Synthetic(400, 2), 16, 8);
        using var model = new DLinear(new ForecasterConfig("dlinear", 16, 8, 2, MovingAverage: 5));
        var ended = new List<(ForecastEpochEnd End, float[] Weights)>();
        var result = ForecastTraining.Train(model, data, new ForecastTrainingOptions
        {
            Epochs = 4, BatchSize = 8, Patience = 4, LearningRate = 0.05, LearningRateRule = "constant",
            EpochEnded = e => ended.Add((e, model.Parameters().SelectMany(p => p.Detach().Contiguous().ToArray<float>()).ToArray())),
        });
        Assert.That(ended.Select(e => e.End.Epoch.Epoch), Is.EqualTo(new[] { 1, 2, 3, 4 }));
        double lowest = double.PositiveInfinity;
        foreach (var (end, _) in ended)
        {
            Assert.That(end.Improved, Is.EqualTo(end.Epoch.ValLoss < lowest), $"epoch {end.Epoch.Epoch}");
            lowest = Math.Min(lowest, end.Epoch.ValLoss);
            Assert.That(end.Epochs[^1], Is.EqualTo(end.Epoch));
            Assert.That(end.Steps, Is.EqualTo(33 * end.Epoch.Epoch));
        }
        var bestReport = ended.Last(e => e.End.Improved);
        Assert.That(bestReport.End.Epoch.Epoch, Is.EqualTo(result.BestEpoch));
        Assert.That(model.Parameters().SelectMany(p => p.Detach().Contiguous().ToArray<float>()), Is.EqualTo(bestReport.Weights));
    }
}
