using System.Globalization;
using AttnCore.Models.TimeSeries;
using NUnit.Framework;

namespace AttnCore.Tests.Models;

/// <summary>
/// The CSV reader, the ETT and 70/10/20 splits, the training-rows-only scaler and the sliding windows, checked against
/// an independent float64 re-implementation here (its own CSV parsing, borders written out as the Informer code's
/// border1s/border2s, two-pass mean and population standard deviation).
/// </summary>
[TestFixture, Category("Models")]
public class ForecastDataTests
{
    internal static string EttPath()
    {
        string path = Path.GetFullPath(Path.Combine(AttnCore.Tests.Docs.DocsTests.Root(), "..", "shared", "data", "ETTh1.csv"));
        if (!File.Exists(path)) Assert.Ignore($"ETTh1 is not at {path}");
        return path;
    }

    // The independent reference: rows of doubles, the date column dropped.
    static double[][] ReadPlain(string path) => File.ReadLines(path).Skip(1).Where(l => l.Length > 0)
        .Select(l => l.Split(',').Skip(1).Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray()).ToArray();

    static (double[] Mean, double[] Std) TwoPass(double[][] rows, int start, int end)
    {
        int c = rows[0].Length;
        var mean = new double[c]; var std = new double[c];
        for (int j = 0; j < c; j++)
        {
            for (int r = start; r < end; r++) mean[j] += rows[r][j];
            mean[j] /= end - start;
            for (int r = start; r < end; r++) std[j] += (rows[r][j] - mean[j]) * (rows[r][j] - mean[j]);
            std[j] = Math.Sqrt(std[j] / (end - start));
        }
        return (mean, std);
    }

    [Test]
    public void ETTh1_split_scaler_and_windows_match_the_informer_protocol_in_float64()
    {
        string path = EttPath();
        const int seqLen = 336, predLen = 96;
        using var data = ForecastData.FromCsv(path, seqLen, predLen);
        var rows = ReadPlain(path);
        Assert.That(data.Table.Rows, Is.EqualTo(rows.Length));
        Assert.That(data.Channels, Is.EqualTo(7));
        int[] border1s = [0, 12 * 30 * 24 - seqLen, 12 * 30 * 24 + 4 * 30 * 24 - seqLen];
        int[] border2s = [12 * 30 * 24, 12 * 30 * 24 + 4 * 30 * 24, 12 * 30 * 24 + 8 * 30 * 24];
        for (int s = 0; s < 3; s++)
        {
            Assert.That(data.SplitStart((ForecastSplit)s), Is.EqualTo(border1s[s]));
            Assert.That(data.SplitEnd((ForecastSplit)s), Is.EqualTo(border2s[s]));
            Assert.That(data.WindowCount((ForecastSplit)s), Is.EqualTo(border2s[s] - border1s[s] - seqLen - predLen + 1));
        }
        Assert.That(data.WindowCount(ForecastSplit.Test), Is.EqualTo(2785));
        var (mean, std) = TwoPass(rows, 0, border2s[0]);
        for (int j = 0; j < 7; j++)
        {
            Assert.That(data.Scaler.Mean[j], Is.EqualTo(mean[j]).Within(1e-9 * Math.Abs(mean[j]) + 1e-12), $"mean of {data.Table.Columns[j]}");
            Assert.That(data.Scaler.Scale[j], Is.EqualTo(std[j]).Within(1e-9 * std[j]), $"std of {data.Table.Columns[j]}");
        }
        // The last test window ends at the last test row; the first validation window starts seq_len rows before the split.
        foreach (var (split, index) in new[] { (ForecastSplit.Test, data.WindowCount(ForecastSplit.Test) - 1), (ForecastSplit.Validation, 0), (ForecastSplit.Train, 1234) })
        {
            var (x, y) = data.Window(split, index);
            using (x) using (y)
            {
                int start = border1s[(int)split] + index;
                var xs = x.ToArray<float>(); var ys = y.ToArray<float>();
                for (int t = 0; t < seqLen; t++)
                    for (int j = 0; j < 7; j++)
                        Assert.That(xs[t * 7 + j], Is.EqualTo((rows[start + t][j] - mean[j]) / std[j]).Within(1e-5), $"{split} window {index} x[{t},{j}]");
                for (int t = 0; t < predLen; t++)
                    for (int j = 0; j < 7; j++)
                        Assert.That(ys[t * 7 + j], Is.EqualTo((rows[start + seqLen + t][j] - mean[j]) / std[j]).Within(1e-5), $"{split} window {index} y[{t},{j}]");
            }
        }
        Assert.That(data.SplitEnd(ForecastSplit.Test) - 1, Is.EqualTo(data.SplitStart(ForecastSplit.Test) + data.WindowCount(ForecastSplit.Test) - 1 + seqLen + predLen - 1));
    }

    [Test]
    public void A_window_is_a_view_and_a_batch_gathers_the_same_rows()
    {
        using var data = new ForecastData(Synthetic(200, 3), 12, 4);
        var (x, y) = data.Window(ForecastSplit.Validation, 2);
        using (x) using (y)
        {
            Assert.That(ReferenceEquals(x.Storage, data.Series.Storage), "the window shares the series' storage");
            using var batch = data.Batch(ForecastSplit.Validation, [5, 2], labelLen: 6);
            Assert.That(batch.X.Shape, Is.EqualTo(new[] { 2, 12, 3 }));
            Assert.That(batch.YMark.Shape, Is.EqualTo(new[] { 2, 10, data.TimeFeatureCount }));
            using var second = batch.X.Select(0, 1);
            using var secondY = batch.Y.Select(0, 1);
            Assert.That(second.ToArray<float>(), Is.EqualTo(x.ToArray<float>()));
            Assert.That(secondY.ToArray<float>(), Is.EqualTo(y.ToArray<float>()));
            using var marks = batch.YMark.Select(0, 1);
            using var expectedMarks = data.Marks.Narrow(0, data.SplitStart(ForecastSplit.Validation) + 2 + 12 - 6, 10);
            Assert.That(marks.ToArray<float>(), Is.EqualTo(expectedMarks.ToArray<float>()));
        }
    }

    [Test]
    public void Other_csvs_split_70_10_20_and_features_S_and_MS_select_the_target()
    {
        var table = Synthetic(1001, 4);
        using var m = new ForecastData(table, 10, 5);
        int train = (int)(1001 * 0.7), test = (int)(1001 * 0.2);
        Assert.That(new[] { m.SplitStart(ForecastSplit.Train), m.SplitStart(ForecastSplit.Validation), m.SplitStart(ForecastSplit.Test) },
            Is.EqualTo(new[] { 0, train - 10, 1001 - test - 10 }));
        Assert.That(new[] { m.SplitEnd(ForecastSplit.Train), m.SplitEnd(ForecastSplit.Validation), m.SplitEnd(ForecastSplit.Test) },
            Is.EqualTo(new[] { train, 1001 - test, 1001 }));
        using var s = new ForecastData(table, 10, 5, ForecastFeatures.S, "b");
        Assert.That((s.Channels, s.OutputChannels, s.ColumnIndices[0]), Is.EqualTo((1, 1, 1)));
        using var ms = new ForecastData(table, 10, 5, ForecastFeatures.MS, "b");
        Assert.That(ms.ColumnIndices, Is.EqualTo(new[] { 0, 2, 3, 1 }));
        Assert.That(ms.OutputChannels, Is.EqualTo(1));
        var ex = Assert.Throws<ArgumentException>(() => new ForecastData(table, 10, 5, ForecastFeatures.S, "OT"));
        Assert.That(ex!.Message, Does.Contain("'OT'").And.Contain("a, b, c, d"));
        var tooShort = Assert.Throws<ArgumentException>(() => new ForecastData(Synthetic(30, 2), 10, 5));
        Assert.That(tooShort!.Message, Does.Contain("split").And.Contain("seq_len 10"));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.Window(ForecastSplit.Test, m.WindowCount(ForecastSplit.Test)));
    }

    [Test]
    public void Hourly_time_features_are_the_informer_timeF_values()
    {
        // 2016-07-01 was a Friday (pandas dayofweek 4), day 183 of a leap year.
        var f = TimeFeatures.Encode([new DateTime(2016, 7, 1, 13, 0, 0)], 4);
        Assert.That(f, Is.EqualTo(new[] { (float)(13 / 23.0 - 0.5), (float)(4 / 6.0 - 0.5), (float)(0 / 30.0 - 0.5), (float)(182 / 365.0 - 0.5) }));
        Assert.That(TimeFeatures.Encode([new DateTime(2016, 7, 3)], 3)[0], Is.EqualTo((float)(6 / 6.0 - 0.5)), "Sunday is 6");
    }

    [TestCase("date,a,b\n2020-01-01 00:00:00,1,2\n2020-01-01 01:00:00,,2\n", "line 3, column 'a': the value is missing")]
    [TestCase("date,a,b\n2020-01-01 00:00:00,1,2\n2020-01-01 01:00:00,1,x7\n", "line 3, column 'b': 'x7' is not a finite number")]
    [TestCase("date,a,b\n2020-01-01 00:00:00,1,2\n2020-01-01 01:00:00,1,NaN\n", "line 3, column 'b': 'NaN' is not a finite number")]
    [TestCase("date,a,b\n2020-01-01 01:00:00,1,2\n2020-01-01 00:00:00,1,2\n", "line 3: the timestamp 2020-01-01 00:00:00 is before line 2's")]
    [TestCase("date,a,b\n2020-01-01 00:00:00,1,2\n2020-01-01 01:00:00,1,2\n2020-01-01 01:00:00,3,4\n", "line 4: the timestamp 2020-01-01 01:00:00 repeats line 3's")]
    [TestCase("date,a,b\n2020-01-01 00:00:00,1,2,3\n", "line 2: 4 fields, the header has 3")]
    [TestCase("date,a,b\nyesterday,1,2\n", "line 2, column 'date': 'yesterday' is not a date/time")]
    [TestCase("date,a,a\n2020-01-01 00:00:00,1,2\n", "line 1: the column 'a' appears twice")]
    [TestCase("date,a\n", "has a header but no rows")]
    public void Bad_csv_lines_are_refused_naming_the_line_and_column(string csv, string message)
    {
        var ex = Assert.Throws<InvalidDataException>(() => TimeSeriesCsv.Parse(new StringReader(csv), "bad.csv"));
        Assert.That(ex!.Message, Does.Contain("'bad.csv'").And.Contain(message));
    }

    [Test]
    public void A_missing_file_is_named()
    {
        var ex = Assert.Throws<FileNotFoundException>(() => TimeSeriesCsv.Read("/nonexistent/series.csv"));
        Assert.That(ex!.Message, Does.Contain("/nonexistent/series.csv"));
    }

    [Test]
    public void The_step_between_rows_is_the_most_common_gap()
    {
        var t = TimeSeriesCsv.Parse(new StringReader("date,a\n2020-01-01 00:00,1\n2020-01-01 01:00,2\n2020-01-01 03:00,3\n2020-01-01 04:00,4\n"), "gap.csv");
        Assert.That(t.Frequency, Is.EqualTo(TimeSpan.FromHours(1)));
    }

    internal static TimeSeriesTable Synthetic(int rows, int columns)
    {
        var times = Enumerable.Range(0, rows).Select(i => new DateTime(2020, 1, 1).AddHours(i)).ToArray();
        var values = new double[rows * columns];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < columns; c++) values[r * columns + c] = Math.Sin(0.1 * r + c) * (c + 1) + 0.01 * r + 3 * c;
        return new TimeSeriesTable(times, Enumerable.Range(0, columns).Select(c => ((char)('a' + c)).ToString()).ToArray(), values);
    }
}
