using System.Globalization;
using System.Text.Json;
using AttnCore.Tests.Models;
using NUnit.Framework;

namespace AttnCore.Tests.Cli;

/// <summary>`attncore train forecast` and `attncore forecast`: the JSON line, the run's files, the forecast CSV and the errors.</summary>
[TestFixture, Category("Cli"), NonParallelizable]
public class ForecastCliTests
{
    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = AttnCore.Cli.Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    static JsonElement LastJson(string stdout) => JsonDocument.Parse(stdout.TrimEnd().Split('\n').Last()).RootElement;

    static string TempDir(string name) => Path.Combine(Path.GetTempPath(), $"attncore-{name}-" + Guid.NewGuid().ToString("N"));

    // ForecastDataTests.Synthetic(300, columns) as a CSV (columns a, b, c, ...) in a new folder dir.
    static string SyntheticCsv(string dir, int columns)
    {
        Directory.CreateDirectory(dir);
        string csv = Path.Combine(dir, "series.csv");
        var table = ForecastDataTests.Synthetic(300, columns);
        File.WriteAllLines(csv, new[] { "date," + string.Join(",", table.Columns) }.Concat(Enumerable.Range(0, table.Rows).Select(r =>
            table.Timestamps[r].ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture) + "," +
            string.Join(",", Enumerable.Range(0, columns).Select(c => table[r, c].ToString("R", CultureInfo.InvariantCulture))))));
        return csv;
    }

    [Test]
    public void Train_forecast_on_ETTh1_reports_json_writes_its_files_and_forecast_continues_the_timestamps()
    {
        string etth1 = ForecastDataTests.EttPath();
        string dir = TempDir("forecast-cli"), next = TempDir("forecast-next");
        try
        {
            var (code, stdout, stderr) = Run("train", "forecast", "--data", etth1, "--model", "dlinear", "--seq-len", "48", "--pred-len", "24",
                "--epochs", "2", "--max-steps-per-epoch", "5", "--out", dir, "--json", "--threads", "2");
            Assert.That(code, Is.EqualTo(0), stderr);
            var j = LastJson(stdout);
            Assert.That(j.EnumerateObject().Select(p => p.Name), Is.EqualTo(new[] { "model", "seq_len", "pred_len", "test_mse", "test_mae", "epochs", "wall_s" }));
            Assert.That(j.GetProperty("model").GetString(), Is.EqualTo("dlinear"));
            Assert.That((j.GetProperty("seq_len").GetInt32(), j.GetProperty("pred_len").GetInt32(), j.GetProperty("epochs").GetInt32()), Is.EqualTo((48, 24, 2)));
            Assert.That(j.GetProperty("test_mse").GetDouble(), Is.InRange(0.0, 3.0));
            Assert.That(j.GetProperty("test_mae").GetDouble(), Is.InRange(0.0, 3.0));
            foreach (var f in new[] { "model.safetensors", "metrics.json", "loss.png", "forecast.png" })
                Assert.That(File.Exists(Path.Combine(dir, f)), $"{f} written");
            Assert.That(Directory.GetFiles(dir, ".*"), Is.Empty, "no temporary files left");
            var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "metrics.json"))).RootElement;
            // ETT test split: rows [11520 - 48, 14400), so 2880 - 24 + 1 windows, every one evaluated.
            Assert.That(metrics.GetProperty("test_windows").GetInt32(), Is.EqualTo(2857));
            Assert.That(metrics.GetProperty("steps").GetInt32(), Is.EqualTo(10));
            Assert.That(metrics.GetProperty("test_mse").GetDouble(), Is.EqualTo(j.GetProperty("test_mse").GetDouble()));

            (code, stdout, stderr) = Run("forecast", "--checkpoint", Path.Combine(dir, "model.safetensors"), "--data", etth1, "--out", next, "--json");
            Assert.That(code, Is.EqualTo(0), stderr);
            var lines = File.ReadAllLines(Path.Combine(next, "forecast.csv"));
            Assert.That(lines[0], Is.EqualTo("date,HUFL,HULL,MUFL,MULL,LUFL,LULL,OT"));
            Assert.That(lines, Has.Length.EqualTo(25));
            // ETTh1 ends at 2018-06-26 19:00:00; the forecast continues hourly.
            Assert.That(lines[1], Does.StartWith("2018-06-26 20:00:00,"));
            Assert.That(lines[24], Does.StartWith("2018-06-27 19:00:00,"));
            var ot = lines.Skip(1).Select(l => double.Parse(l.Split(',')[7], CultureInfo.InvariantCulture)).ToArray();
            Assert.That(ot.All(double.IsFinite) && ot.Average() is > -20 and < 60, $"OT in degrees, not scaled units: {string.Join(", ", ot.Take(5))}");
            Assert.That(File.Exists(Path.Combine(next, "forecast.png")));
            Assert.That(LastJson(stdout).GetProperty("steps").GetInt32(), Is.EqualTo(24));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
            if (Directory.Exists(next)) Directory.Delete(next, true);
        }
    }

    [Test]
    public void Train_forecast_patchtst_draws_the_attention_between_patches()
    {
        string dir = TempDir("forecast-patchtst");
        try
        {
            string csv = SyntheticCsv(dir, 3);
            string run = Path.Combine(dir, "run");
            var (code, stdout, stderr) = Run("train", "forecast", "--data", csv, "--model", "patchtst", "--seq-len", "32", "--pred-len", "8",
                "--d-model", "8", "--heads", "2", "--layers", "1", "--d-ff", "16", "--epochs", "1", "--max-steps-per-epoch", "3", "--target", "c", "--out", run, "--json");
            Assert.That(code, Is.EqualTo(0), stderr);
            Assert.That(LastJson(stdout).GetProperty("model").GetString(), Is.EqualTo("patchtst"));
            Assert.That(File.Exists(Path.Combine(run, "attention.png")));
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Test]
    public void Max_minutes_stops_training_and_still_tests_and_writes_the_run()
    {
        string dir = TempDir("forecast-budget");
        try
        {
            string csv = SyntheticCsv(dir, 2);
            string run = Path.Combine(dir, "run");
            // A budget of 6e-8 minutes is spent by the first step: one epoch of one step, then the test.
            var (code, stdout, stderr) = Run("train", "forecast", "--data", csv, "--model", "dlinear", "--seq-len", "24", "--pred-len", "8",
                "--epochs", "5", "--max-minutes", "0.00000006", "--out", run, "--json");
            Assert.That(code, Is.EqualTo(0), stderr);
            Assert.That(LastJson(stdout).GetProperty("epochs").GetInt32(), Is.EqualTo(1));
            var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json"))).RootElement;
            Assert.That(metrics.GetProperty("status").GetString(), Is.EqualTo("done"));
            Assert.That(metrics.GetProperty("stopped").GetString(), Is.EqualTo("time_budget"));
            Assert.That(metrics.GetProperty("steps").GetInt32(), Is.EqualTo(1));
            Assert.That(metrics.GetProperty("epochs")[0].GetProperty("steps").GetInt32(), Is.EqualTo(1));
            Assert.That(metrics.GetProperty("test_mse").GetDouble(), Is.EqualTo(LastJson(stdout).GetProperty("test_mse").GetDouble()));
            Assert.That(File.Exists(Path.Combine(run, "model.safetensors")));
            (code, _, stderr) = Run("train", "forecast", "--data", csv, "--model", "dlinear", "--max-minutes", "-1", "--out", run);
            Assert.That(code, Is.EqualTo(2), stderr);
            Assert.That(stderr, Does.Contain("--max-minutes"));
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Test]
    public void Bad_input_is_a_usage_error_or_a_failed_run_naming_the_problem()
    {
        string dir = TempDir("forecast-bad");
        try
        {
            Directory.CreateDirectory(dir);
            string csv = Path.Combine(dir, "bad.csv");
            File.WriteAllText(csv, "date,a\n2020-01-01 00:00:00,1\n2020-01-01 01:00:00,oops\n");
            var (code, _, stderr) = Run("train", "forecast", "--data", csv, "--model", "dlinear", "--out", Path.Combine(dir, "run"));
            Assert.That(code, Is.EqualTo(1));
            Assert.That(stderr, Does.Contain("line 3, column 'a': 'oops' is not a finite number"));
            (code, _, stderr) = Run("train", "forecast", "--data", csv, "--model", "itransformer", "--d-model", "10", "--heads", "4");
            Assert.That(code, Is.EqualTo(2));
            Assert.That(stderr, Does.Contain("--d-model 10 must be a multiple of --heads 4"));
            (code, _, stderr) = Run("train", "forecast", "--data", csv, "--model", "arima");
            Assert.That(code, Is.EqualTo(2));
            (code, _, stderr) = Run("forecast", "--checkpoint", csv, "--data", csv, "--out", Path.Combine(dir, "next"));
            Assert.That(code, Is.EqualTo(1));
            Assert.That(stderr, Does.Contain(csv));
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }
}
