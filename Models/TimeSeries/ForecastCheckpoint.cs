using System.Globalization;
using System.Text.Json;
using AttnCore.Models.IO;

namespace AttnCore.Models.TimeSeries;

/// <summary>
/// What a forecaster needs besides its weights to forecast from a CSV: its configuration, the input columns in
/// channel order, the column selection, and the scaler fitted on the training rows (forecasts are returned in the
/// original units through it).
/// </summary>
/// <param name="Config">The model's sizes.</param>
/// <param name="Columns">Input column names, channel by channel.</param>
/// <param name="Features">M, S or MS.</param>
/// <param name="Target">Target column.</param>
/// <param name="Mean">Scaler means per channel.</param>
/// <param name="Scale">Scaler standard deviations per channel.</param>
public sealed record ForecastModelInfo(ForecasterConfig Config, string[] Columns, ForecastFeatures Features, string Target, double[] Mean, double[] Scale);

/// <summary>Saves and loads a forecaster as safetensors with a <see cref="ForecastModelInfo"/> in its metadata.</summary>
public static class ForecastCheckpoint
{
    private const string Kind = "forecaster";

    /// <summary>The info of a model trained on <paramref name="data"/>.</summary>
    public static ForecastModelInfo InfoOf(Forecaster model, ForecastData data) =>
        new(model.Config, data.ColumnIndices.Select(i => data.Table.Columns[i]).ToArray(), data.Features, data.Target, data.Scaler.Mean, data.Scaler.Scale);

    /// <summary>Writes <paramref name="model"/>'s weights and <paramref name="info"/> to <paramref name="path"/> (atomically).</summary>
    public static void Save(string path, Forecaster model, ForecastModelInfo info) =>
        Safetensors.Save(path, model, new Dictionary<string, string>
        {
            ["attncore.model"] = Kind,
            ["attncore.config"] = model.Config.ToJson(),
            ["attncore.forecast"] = JsonSerializer.Serialize(info with { Config = model.Config }),
        });

    /// <summary>Reads a checkpoint written by <see cref="Save"/>; throws naming the path when it holds another kind of model.</summary>
    public static (Forecaster Model, ForecastModelInfo Info) Load(string path, Device? device = null)
    {
        using var file = Safetensors.Open(path);
        var meta = file.Metadata;
        if (!meta.TryGetValue("attncore.model", out var kind) || kind != Kind || !meta.TryGetValue("attncore.forecast", out var json))
            throw new CheckpointFormatException("ForecastCheckpoint", path, $"not a forecaster checkpoint (attncore.model is '{kind ?? "missing"}'); train one with `attncore train forecast`");
        var info = JsonSerializer.Deserialize<ForecastModelInfo>(json) ?? throw new CheckpointFormatException("ForecastCheckpoint", path, "the forecaster metadata is empty");
        var model = Forecaster.Create(info.Config, new Generator(0), device);
        try { Safetensors.LoadInto(path, model); }
        catch { model.Dispose(); throw; }
        model.Eval();
        return (model, info);
    }

    /// <summary>The timestamps of the <paramref name="count"/> steps after <paramref name="last"/>, <paramref name="step"/> apart.</summary>
    public static DateTime[] FutureTimestamps(DateTime last, TimeSpan step, int count) =>
        Enumerable.Range(1, count).Select(i => last + step * i).ToArray();

    /// <summary>
    /// Forecasts the <c>PredLen</c> steps after the last row of <paramref name="table"/> in the original units:
    /// [H, output columns] with the timestamps continued at the table's frequency.
    /// </summary>
    public static (DateTime[] Times, string[] Columns, double[,] Values) ForecastNext(Forecaster model, ForecastModelInfo info, TimeSeriesTable table)
    {
        var cfg = info.Config;
        if (table.Rows < cfg.SeqLen)
            throw new ArgumentException($"ForecastCheckpoint: the data has {table.Rows} rows; the model looks back {cfg.SeqLen}");
        var indices = info.Columns.Select(table.ColumnIndex).ToArray();
        int c = indices.Length, l = cfg.SeqLen, h = cfg.PredLen, start = table.Rows - l;
        var x = new float[l * c];
        for (int t = 0; t < l; t++)
            for (int j = 0; j < c; j++) x[t * c + j] = (float)((table[start + t, indices[j]] - info.Mean[j]) / info.Scale[j]);
        var step = table.Frequency;
        var future = FutureTimestamps(table.Timestamps[^1], step, h);
        int f = cfg.TimeFeatures, label = cfg.LabelLen;
        var device = model.Parameters().First().Device;
        float[] output;
        using (new NoGrad())
        using (var scope = new TensorScope())
        {
            var input = Tensor.FromArray(x, [1, l, c], device);
            Tensor y;
            if (model.UsesTimeFeatures)
            {
                var xMark = Tensor.FromArray(TimeFeatures.Encode(table.Timestamps[start..], f), [1, l, f], device);
                var decTimes = table.Timestamps[(table.Rows - label)..].Concat(future).ToArray();
                var yMark = Tensor.FromArray(TimeFeatures.Encode(decTimes, f), [1, label + h, f], device);
                y = model.Forward(input, xMark, yMark);
            }
            else y = model.Forward(input);
            output = y.ToArray<float>();
        }
        int outStart = info.Features == ForecastFeatures.MS ? c - 1 : 0;
        int outCount = c - outStart;
        var values = new double[h, outCount];
        for (int t = 0; t < h; t++)
            for (int j = 0; j < outCount; j++) values[t, j] = output[t * c + outStart + j] * info.Scale[outStart + j] + info.Mean[outStart + j];
        return (future, info.Columns[outStart..], values);
    }

    /// <summary>Writes a forecast as CSV (date column, then the columns), atomically.</summary>
    public static void WriteCsv(string path, DateTime[] times, string[] columns, double[,] values)
    {
        Training.AtomicFile.Write(path, tmp =>
        {
            using var w = new StreamWriter(tmp);
            w.WriteLine("date," + string.Join(",", columns));
            for (int t = 0; t < times.Length; t++)
                w.WriteLine(times[t].ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture) + ","
                    + string.Join(",", Enumerable.Range(0, columns.Length).Select(j => values[t, j].ToString("R", CultureInfo.InvariantCulture))));
        });
    }
}
