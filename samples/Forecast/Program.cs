// DLinear (a moving-average trend plus two linear maps along time) learns a CSV time series for a few epochs,
// reports its test error next to a naive forecast's, and forecasts the steps after the last row.
//   dotnet run -- [csv: a date column, then numbers; default a synthetic hourly series it writes] [target column] [epochs]
using System.Globalization;
using AttnCore;
using AttnCore.Models.TimeSeries;

string csv = args.Length > 0 ? args[0] : WriteSyntheticCsv("synthetic.csv");
string target = args.Length > 1 ? args[1] : "OT";
int epochs = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 3;
const int Lookback = 96, Horizon = 24;

// The target column alone (S), scaled with the training rows' mean and deviation; 70/10/20 split (12/4/4 months for ETTh*).
using var data = ForecastData.FromCsv(csv, Lookback, Horizon, ForecastFeatures.S, target);
var config = new ForecasterConfig("dlinear", Lookback, Horizon, data.Channels, MovingAverage: 25);
using var model = Forecaster.Create(config, new Generator(42));
var result = ForecastTraining.Train(model, data, new ForecastTrainingOptions { Epochs = epochs, BatchSize = 32, LearningRate = 0.005, MaxStepsPerEpoch = 100, Seed = 1 });
foreach (var e in result.Epochs)
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"epoch {e.Epoch}: train mse {e.TrainLoss:F4}, validation mse {e.ValLoss:F4}"));
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"test mse {result.Test.Mse:F4} mae {result.Test.Mae:F4} over {result.Test.Windows} windows; repeating the last value: mse {NaiveMse(data):F4}"));

// The next Horizon steps after the file's last row, in the file's units.
var (times, columns, values) = ForecastCheckpoint.ForecastNext(model, ForecastCheckpoint.InfoOf(model, data), data.Table);
Console.WriteLine($"forecast of {columns[0]} after {data.Table.Timestamps[^1]:yyyy-MM-dd HH:mm}:");
for (int t = 0; t < times.Length; t++)
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{times[t]:yyyy-MM-dd HH:mm} {values[t, 0]:F3}"));

// The baseline every forecaster must beat: each test window's last known value held for the whole horizon (scaled units).
static double NaiveMse(ForecastData data)
{
    var series = data.Series.ToArray<float>();   // [rows, 1], scaled
    int first = data.SplitStart(ForecastSplit.Test), windows = data.WindowCount(ForecastSplit.Test);
    double sum = 0;
    for (int start = first; start < first + windows; start++)
        for (int h = 0; h < Horizon; h++)
        {
            double d = series[start + Lookback + h] - series[start + Lookback - 1];
            sum += d * d;
        }
    return sum / ((double)windows * Horizon);
}

// Two years of hourly data: a daily and a weekly cycle, a slow trend and noise, in columns "load" and "OT".
static string WriteSyntheticCsv(string path)
{
    var random = new Random(3);
    using var writer = new StreamWriter(path);
    writer.WriteLine("date,load,OT");
    var start = new DateTime(2024, 1, 1);
    for (int t = 0; t < 2 * 365 * 24; t++)
    {
        double daily = Math.Sin(2 * Math.PI * t / 24), weekly = Math.Sin(2 * Math.PI * t / 168);
        double ot = 10 + 3 * daily + 1.5 * weekly + t / 5000.0 + 0.3 * (random.NextDouble() - 0.5);
        writer.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{start.AddHours(t):yyyy-MM-dd HH:mm:ss},{20 + 5 * daily + random.NextDouble():F3},{ot:F3}"));
    }
    return path;
}
