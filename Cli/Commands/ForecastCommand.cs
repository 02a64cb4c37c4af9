using System.CommandLine;
using AttnCore.Models.TimeSeries;
using AttnCore.Presentation;

namespace AttnCore.Cli.Commands;

/// <summary>
/// <c>attncore forecast</c>: the next H steps after the last row of a CSV, from a checkpoint of <c>train forecast</c>,
/// in the original units (the training scaler inverted), as CSV with the timestamps continued at the data's frequency,
/// plus a PNG of the history and the forecast.
/// </summary>
public static class ForecastCommand
{
    /// <summary>Builds <c>forecast</c>.</summary>
    public static Command Create(CliIO io)
    {
        var common = new CommonOptions();
        var checkpoint = PathRule.ExistingFile("--checkpoint", "model.safetensors written by 'attncore train forecast'");
        var data = PathRule.ExistingFile("--data", "the CSV to continue (the columns the model was trained on, at least --seq-len rows)");
        var output = PathRule.OutputFolder("--out", "folder for forecast.csv and forecast.png", Path.Combine("runs", "forecast-next"));
        var cmd = common.AddTo(new Command("forecast", "Forecast the steps after a CSV's last row with a trained forecaster") { checkpoint, data, output });
        cmd.SetAction(p =>
        {
            var device = common.Apply(p);
            string outDir = p.GetValue(output)!;
            PathRule.PrepareOutputFolder("forecast", "--out", outDir);
            var (model, info) = ForecastCheckpoint.Load(p.GetValue(checkpoint)!, device);
            using (model)
            {
                var table = TimeSeriesCsv.Read(p.GetValue(data)!);
                var (times, columns, values) = ForecastCheckpoint.ForecastNext(model, info, table);
                string csv = Path.Combine(outDir, "forecast.csv"), png = Path.Combine(outDir, "forecast.png");
                ForecastCheckpoint.WriteCsv(csv, times, columns, values);
                int l = info.Config.SeqLen, shown = Math.Min(columns.Length, 3);
                var panels = Enumerable.Range(columns.Length - shown, shown).Select(j =>
                {
                    int column = table.ColumnIndex(columns[j]);
                    return new ForecastPanel(columns[j], Enumerable.Range(table.Rows - l, l).Select(r => table[r, column]).ToArray(),
                        Enumerable.Range(0, times.Length).Select(t => values[t, j]).ToArray(), null);
                }).ToArray();
                ForecastPlots.Panels(panels, shown, $"{info.Config.Model}: next {times.Length} steps after {table.Timestamps[^1]:yyyy-MM-dd HH:mm}", png);
                io.Out.WriteLine($"forecast {times[0]:yyyy-MM-dd HH:mm:ss} .. {times[^1]:yyyy-MM-dd HH:mm:ss} ({times.Length} steps, {columns.Length} columns); wrote {csv}, {png}");
                if (p.GetValue(common.Json)) io.Json(new { model = info.Config.Model, steps = times.Length, columns, first = times[0], last = times[^1], csv, png });
            }
            return 0;
        });
        return cmd;
    }
}
