namespace AttnCore.Models.TimeSeries;

/// <summary>Which columns go in and which are forecast (the Informer/ETT convention).</summary>
public enum ForecastFeatures
{
    /// <summary>Multivariate: every column in, every column forecast.</summary>
    M,
    /// <summary>Univariate: the target column in, the target forecast.</summary>
    S,
    /// <summary>Multivariate in, the target forecast (the target is moved to the last channel; the loss reads that channel).</summary>
    MS,
}

/// <summary>Which split.</summary>
public enum ForecastSplit
{
    /// <summary>Training windows.</summary>
    Train,
    /// <summary>Validation windows (early stopping).</summary>
    Validation,
    /// <summary>Test windows (the reported metrics).</summary>
    Test,
}

/// <summary>
/// Mean and standard deviation per channel fitted on the training rows only, as scikit-learn's StandardScaler
/// (population standard deviation, ddof 0) that the Informer/DLinear/PatchTST/iTransformer code uses; a constant
/// channel gets a scale of 1 (as scikit-learn) so it maps to 0 instead of NaN.
/// </summary>
public sealed class StandardScaler
{
    /// <summary>A scaler with the given statistics.</summary>
    public StandardScaler(double[] mean, double[] scale)
    {
        if (mean.Length != scale.Length) throw new ArgumentException($"StandardScaler: {mean.Length} means but {scale.Length} scales");
        Mean = mean; Scale = scale;
    }

    /// <summary>Per-channel mean.</summary>
    public double[] Mean { get; }
    /// <summary>Per-channel standard deviation (1 where the channel is constant).</summary>
    public double[] Scale { get; }

    /// <summary>Fits rows [<paramref name="start"/>, <paramref name="end"/>) of <paramref name="values"/> [rows, channels] in float64.</summary>
    public static StandardScaler Fit(double[] values, int channels, int start, int end)
    {
        if (end <= start) throw new ArgumentException($"StandardScaler.Fit: the row range [{start}, {end}) is empty");
        var mean = new double[channels];
        var m2 = new double[channels];
        // Welford's update: one pass, no cancellation when a channel's mean is large against its spread.
        for (int r = start; r < end; r++)
        {
            int n = r - start + 1;
            for (int c = 0; c < channels; c++)
            {
                double x = values[(long)r * channels + c];
                double d = x - mean[c];
                mean[c] += d / n;
                m2[c] += d * (x - mean[c]);
            }
        }
        var scale = m2.Select(s => Math.Sqrt(s / (end - start))).Select(s => s == 0 ? 1.0 : s).ToArray();
        return new StandardScaler(mean, scale);
    }

    /// <summary>(x - mean) / scale of channel <paramref name="channel"/>.</summary>
    public double Transform(double x, int channel) => (x - Mean[channel]) / Scale[channel];
    /// <summary>x * scale + mean of channel <paramref name="channel"/>.</summary>
    public double Inverse(double x, int channel) => x * Scale[channel] + Mean[channel];
}

/// <summary>
/// A forecasting dataset: a <see cref="TimeSeriesTable"/> with its columns selected, split, scaled and cut into
/// sliding windows of <c>SeqLen</c> inputs and <c>PredLen</c> targets, as the Informer code (Dataset_ETT_hour,
/// Dataset_Custom) that DLinear, PatchTST and iTransformer reuse.
/// <para>
/// Splits (rows of the file): the ETT hourly files (ETTh1, ETTh2) use 12/4/4 months of 30 days,
/// borders1 = [0, 8640 - L, 11520 - L], borders2 = [8640, 11520, 14400]; other files 70/10/20,
/// borders1 = [0, ⌊0.7n⌋ - L, n - ⌊0.2n⌋ - L], borders2 = [⌊0.7n⌋, n - ⌊0.2n⌋, n]. Each split's windows start at
/// its border1, so the first validation and test windows look back L rows into the split before. A split of
/// s rows has s - L - H + 1 windows, every one of which the metrics read.
/// </para>
/// The scaler is fitted on the training rows [0, borders2[0]) only. The whole scaled series lives once on the
/// device as [rows, channels]; a window is a view of it (<see cref="Window"/>), and a batch gathers its windows'
/// rows with one index-select.
/// </summary>
public sealed class ForecastData : IDisposable
{
    private readonly int[] _border1 = new int[3], _border2 = new int[3];

    /// <summary>Selects, splits and scales <paramref name="table"/>.</summary>
    /// <param name="table">The series.</param>
    /// <param name="seqLen">Look-back L.</param>
    /// <param name="predLen">Horizon H.</param>
    /// <param name="features">Column selection.</param>
    /// <param name="target">Target column for S and MS (ETT: OT).</param>
    /// <param name="ettMonths">True for the ETT hourly 12/4/4-month split, false for 70/10/20.</param>
    /// <param name="device">Where the scaled series is kept.</param>
    public ForecastData(TimeSeriesTable table, int seqLen, int predLen, ForecastFeatures features = ForecastFeatures.M, string target = "OT",
        bool ettMonths = false, Device? device = null)
    {
        if (seqLen <= 0 || predLen <= 0) throw new ArgumentException($"ForecastData: seq_len and pred_len must be positive, got {seqLen} and {predLen}");
        if (!Enum.IsDefined(features)) throw new ArgumentOutOfRangeException(nameof(features), features, "ForecastData: features must be M, S or MS");
        Table = table; SeqLen = seqLen; PredLen = predLen; Features = features; Target = target;
        int targetIndex = features == ForecastFeatures.M && Array.IndexOf(table.Columns, target) < 0 ? -1 : table.ColumnIndex(target);
        // MS moves the target last, as Dataset_Custom reorders the columns to [date, others, target].
        ColumnIndices = features switch
        {
            ForecastFeatures.S => [targetIndex],
            ForecastFeatures.MS => [.. Enumerable.Range(0, table.Columns.Length).Where(i => i != targetIndex), targetIndex],
            _ => Enumerable.Range(0, table.Columns.Length).ToArray(),
        };
        Channels = ColumnIndices.Length;
        OutputChannels = features == ForecastFeatures.MS ? 1 : Channels;
        int n = table.Rows;
        if (ettMonths)
        {
            const int month = 30 * 24;
            (_border2[0], _border2[1], _border2[2]) = (12 * month, 16 * month, 20 * month);
            if (n < _border2[2]) throw new ArgumentException($"ForecastData: the ETT split needs {_border2[2]} hourly rows (12/4/4 months), the file has {n}");
        }
        else
        {
            int train = (int)(n * 0.7), test = (int)(n * 0.2);
            (_border2[0], _border2[1], _border2[2]) = (train, n - test, n);
        }
        (_border1[0], _border1[1], _border1[2]) = (0, _border2[0] - seqLen, _border2[1] - seqLen);
        for (int s = 0; s < 3; s++)
            if (_border1[s] < 0 || WindowCount((ForecastSplit)s) <= 0)
                throw new ArgumentException($"ForecastData: the {(ForecastSplit)s} split (rows [{Math.Max(_border1[s], 0)}, {_border2[s]}) of {n}) is too short for seq_len {seqLen} + pred_len {predLen}");

        var selected = new double[(long)n * Channels];
        for (int r = 0; r < n; r++)
            for (int c = 0; c < Channels; c++) selected[(long)r * Channels + c] = table[r, ColumnIndices[c]];
        Scaler = StandardScaler.Fit(selected, Channels, 0, _border2[0]);
        var scaled = new float[selected.Length];
        for (long i = 0; i < selected.Length; i++) scaled[i] = (float)Scaler.Transform(selected[i], (int)(i % Channels));
        TimeFeatureCount = TimeFeatures.Count(table.Rows >= 2 ? table.Frequency : TimeSpan.FromHours(1));
        var suspended = TensorScope.Suspend();
        try
        {
            Series = Tensor.FromArray(scaled, [n, Channels], device);
            Marks = Tensor.FromArray(TimeFeatures.Encode(table.Timestamps, TimeFeatureCount), [n, TimeFeatureCount], device);
        }
        finally { TensorScope.Resume(suspended); }
    }

    /// <summary>Reads a CSV and builds the dataset; the ETT month split is used when the file name starts with ETTh.</summary>
    public static ForecastData FromCsv(string path, int seqLen, int predLen, ForecastFeatures features = ForecastFeatures.M, string target = "OT", Device? device = null)
        => new(TimeSeriesCsv.Read(path), seqLen, predLen, features, target, IsEttHourly(path), device);

    /// <summary>True for the ETT hourly files (ETTh1.csv, ETTh2.csv), which take the 12/4/4-month split.</summary>
    public static bool IsEttHourly(string path) => Path.GetFileName(path).StartsWith("ETTh", StringComparison.OrdinalIgnoreCase);

    /// <summary>The source table.</summary>
    public TimeSeriesTable Table { get; }
    /// <summary>Look-back L.</summary>
    public int SeqLen { get; }
    /// <summary>Horizon H.</summary>
    public int PredLen { get; }
    /// <summary>Column selection.</summary>
    public ForecastFeatures Features { get; }
    /// <summary>Target column name.</summary>
    public string Target { get; }
    /// <summary>The table's column of each channel.</summary>
    public int[] ColumnIndices { get; }
    /// <summary>Input channels C.</summary>
    public int Channels { get; }
    /// <summary>Channels the loss and metrics read (the last <see cref="OutputChannels"/> of the model's output).</summary>
    public int OutputChannels { get; }
    /// <summary>Fitted on the training rows.</summary>
    public StandardScaler Scaler { get; }
    /// <summary>The scaled series [rows, C].</summary>
    public Tensor Series { get; }
    /// <summary>Time features of every row [rows, F] (see <see cref="TimeFeatures"/>).</summary>
    public Tensor Marks { get; }
    /// <summary>F.</summary>
    public int TimeFeatureCount { get; }

    /// <summary>First row of the split's first window (border1).</summary>
    public int SplitStart(ForecastSplit split) => _border1[(int)split];
    /// <summary>End of the split's rows (border2).</summary>
    public int SplitEnd(ForecastSplit split) => _border2[(int)split];
    /// <summary>Windows in the split: rows - L - H + 1.</summary>
    public int WindowCount(ForecastSplit split) => _border2[(int)split] - _border1[(int)split] - SeqLen - PredLen + 1;

    /// <summary>
    /// Window <paramref name="index"/> of <paramref name="split"/> as views of <see cref="Series"/> (no copy):
    /// X [L, C] starting at border1 + index, Y [H, C] right after it.
    /// </summary>
    public (Tensor X, Tensor Y) Window(ForecastSplit split, int index)
    {
        int start = CheckedStart(split, index);
        return (Series.Narrow(0, start, SeqLen), Series.Narrow(0, start + SeqLen, PredLen));
    }

    private int CheckedStart(ForecastSplit split, int index)
    {
        int count = WindowCount(split);
        if (index < 0 || index >= count) throw new ArgumentOutOfRangeException(nameof(index), index, $"ForecastData: window {index} of the {split} split, which has {count}");
        return _border1[(int)split] + index;
    }

    /// <summary>
    /// A batch of the windows <paramref name="indices"/> of <paramref name="split"/>: X [B, L, C], Y [B, H, C], the
    /// time features of the inputs XMark [B, L, F] and of the decoder span YMark [B, labelLen + H, F] (the last
    /// <paramref name="labelLen"/> input rows and the horizon), each one gather from the series on its device.
    /// </summary>
    public ForecastBatch Batch(ForecastSplit split, ReadOnlySpan<int> indices, int labelLen = 0)
    {
        if (labelLen < 0 || labelLen > SeqLen) throw new ArgumentOutOfRangeException(nameof(labelLen), labelLen, $"ForecastData.Batch: label_len must be in [0, {SeqLen}]");
        int b = indices.Length, span = SeqLen + PredLen, dec = labelLen + PredLen;
        var rows = new long[b * span];
        var decRows = new long[b * dec];
        for (int i = 0; i < b; i++)
        {
            int start = CheckedStart(split, indices[i]);
            for (int t = 0; t < span; t++) rows[i * span + t] = start + t;
            for (int t = 0; t < dec; t++) decRows[i * dec + t] = start + SeqLen - labelLen + t;
        }
        using var scope = new TensorScope();
        var index = Tensor.FromArray(rows, [rows.Length], Series.Device);
        var decIndex = Tensor.FromArray(decRows, [decRows.Length], Series.Device);
        var all = Series.IndexSelect(0, index).View(b, span, Channels);
        var marks = Marks.IndexSelect(0, index).View(b, span, TimeFeatureCount);
        var x = all.Narrow(1, 0, SeqLen);
        var y = all.Narrow(1, SeqLen, PredLen);
        return new ForecastBatch(scope.Keep(x), scope.Keep(y), scope.Keep(marks.Narrow(1, 0, SeqLen)),
            scope.Keep(Marks.IndexSelect(0, decIndex).View(b, dec, TimeFeatureCount)));
    }

    /// <summary>Frees the series on its device.</summary>
    public void Dispose() { Series.Dispose(); Marks.Dispose(); }
}

/// <summary>One batch of windows (see <see cref="ForecastData.Batch"/>); disposing frees all four.</summary>
/// <param name="X">Inputs [B, L, C].</param>
/// <param name="Y">Targets [B, H, C].</param>
/// <param name="XMark">Time features of the inputs [B, L, F].</param>
/// <param name="YMark">Time features of the decoder span [B, labelLen + H, F].</param>
public sealed record ForecastBatch(Tensor X, Tensor Y, Tensor XMark, Tensor YMark) : IDisposable
{
    /// <summary>Frees the tensors.</summary>
    public void Dispose() { X.Dispose(); Y.Dispose(); XMark.Dispose(); YMark.Dispose(); }
}

/// <summary>
/// The "timeF" calendar features of the Informer code (utils/timefeatures.py), each scaled to [-0.5, 0.5]:
/// minute of hour (sub-hourly data only), hour of day (sub-daily data), day of week, day of month, day of year.
/// </summary>
public static class TimeFeatures
{
    /// <summary>How many features a series with step <paramref name="frequency"/> gets: 3 daily or slower, 4 hourly, 5 faster.</summary>
    public static int Count(TimeSpan frequency) => frequency < TimeSpan.FromHours(1) ? 5 : frequency < TimeSpan.FromDays(1) ? 4 : 3;

    /// <summary>[rows, <paramref name="count"/>] features of <paramref name="times"/>, row-major.</summary>
    public static float[] Encode(IReadOnlyList<DateTime> times, int count)
    {
        if (count is < 3 or > 5) throw new ArgumentOutOfRangeException(nameof(count), count, "TimeFeatures: 3, 4 or 5 features");
        var f = new float[times.Count * count];
        for (int r = 0; r < times.Count; r++)
        {
            var t = times[r];
            int k = r * count;
            if (count == 5) f[k++] = (float)(t.Minute / 59.0 - 0.5);
            if (count >= 4) f[k++] = (float)(t.Hour / 23.0 - 0.5);
            f[k++] = (float)((int)t.DayOfWeek == 0 ? 6 / 6.0 - 0.5 : ((int)t.DayOfWeek - 1) / 6.0 - 0.5); // pandas: Monday = 0
            f[k++] = (float)((t.Day - 1) / 30.0 - 0.5);
            f[k] = (float)((t.DayOfYear - 1) / 365.0 - 0.5);
        }
        return f;
    }
}
