using System.Globalization;

namespace AttnCore.Models.TimeSeries;

/// <summary>
/// A multivariate time series read from a CSV file: one date/time column and numeric columns, one row per time
/// step, in time order (the layout of the ETT, Weather and Electricity files of the Informer benchmarks).
/// </summary>
public sealed class TimeSeriesTable
{
    /// <summary>A table over <paramref name="values"/> [rows, columns] (row-major) at <paramref name="timestamps"/>.</summary>
    public TimeSeriesTable(DateTime[] timestamps, string[] columns, double[] values)
    {
        if (values.Length != (long)timestamps.Length * columns.Length)
            throw new ArgumentException($"TimeSeriesTable: {values.Length} values for {timestamps.Length} rows x {columns.Length} columns");
        Timestamps = timestamps; Columns = columns; Values = values;
    }

    /// <summary>The time of each row, strictly increasing.</summary>
    public DateTime[] Timestamps { get; }
    /// <summary>The numeric columns' names, in file order (the date column excluded).</summary>
    public string[] Columns { get; }
    /// <summary>[rows, columns] row-major.</summary>
    public double[] Values { get; }
    /// <summary>Number of time steps.</summary>
    public int Rows => Timestamps.Length;

    /// <summary>The value at <paramref name="row"/> of column <paramref name="column"/>.</summary>
    public double this[int row, int column] => Values[(long)row * Columns.Length + column];

    /// <summary>
    /// The step between rows: the most common difference between consecutive timestamps (one irregular gap, such
    /// as a missing hour, does not change it).
    /// </summary>
    public TimeSpan Frequency
    {
        get
        {
            if (Rows < 2) throw new InvalidOperationException("TimeSeriesTable: a frequency needs at least two rows");
            return Enumerable.Range(1, Rows - 1).Select(i => Timestamps[i] - Timestamps[i - 1])
                .GroupBy(d => d).OrderByDescending(g => g.Count()).ThenBy(g => g.Key).First().Key;
        }
    }

    /// <summary>Index of column <paramref name="name"/>; throws naming the columns there are.</summary>
    public int ColumnIndex(string name)
    {
        int i = Array.IndexOf(Columns, name);
        if (i < 0) throw new ArgumentException($"TimeSeriesTable: no column '{name}'; the columns are {string.Join(", ", Columns)}");
        return i;
    }
}

/// <summary>
/// Reads a time-series CSV: a header line, then one row per time step. The date column is the one named
/// <c>date</c> (any case), else the first; every other column must hold a finite number on every line. Errors
/// name the file, the line (1-based, the header is line 1) and the column: a missing or non-numeric value, a
/// line with the wrong number of fields (each an <see cref="InvalidDataException"/>), a timestamp that cannot be read, a timestamp that is not after the
/// previous line's (unsorted) or repeats it (duplicated).
/// </summary>
public static class TimeSeriesCsv
{
    /// <summary>Reads <paramref name="path"/>.</summary>
    public static TimeSeriesTable Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"TimeSeriesCsv: no CSV file at '{path}'", path);
        using var reader = new StreamReader(path);
        return Parse(reader, path);
    }

    /// <summary>Parses CSV text from <paramref name="reader"/>; <paramref name="source"/> names it in errors.</summary>
    public static TimeSeriesTable Parse(TextReader reader, string source)
    {
        string? header = reader.ReadLine();
        if (header is null || header.Trim().Length == 0) throw new InvalidDataException($"TimeSeriesCsv: '{source}' is empty; it needs a header line (date column plus numeric columns)");
        var names = header.Split(',').Select(n => n.Trim().Trim('"')).ToArray();
        int dateColumn = Array.FindIndex(names, n => n.Equals("date", StringComparison.OrdinalIgnoreCase));
        if (dateColumn < 0) dateColumn = 0;
        if (names.Length < 2) throw new InvalidDataException($"TimeSeriesCsv: '{source}' line 1: the header has {names.Length} column; it needs a date column and at least one numeric column");
        var numeric = names.Where((_, i) => i != dateColumn).ToArray();
        var duplicate = numeric.GroupBy(n => n).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new InvalidDataException($"TimeSeriesCsv: '{source}' line 1: the column '{duplicate.Key}' appears twice");

        var times = new List<DateTime>();
        var values = new List<double>();
        int lineNo = 1;
        for (string? line = reader.ReadLine(); line is not null; line = reader.ReadLine())
        {
            lineNo++;
            if (line.Trim().Length == 0) continue;
            var fields = line.Split(',');
            if (fields.Length != names.Length)
                throw new InvalidDataException($"TimeSeriesCsv: '{source}' line {lineNo}: {fields.Length} fields, the header has {names.Length}");
            string stamp = fields[dateColumn].Trim().Trim('"');
            if (!DateTime.TryParse(stamp, CultureInfo.InvariantCulture, DateTimeStyles.AllowWhiteSpaces | DateTimeStyles.RoundtripKind, out var time))
                throw new InvalidDataException($"TimeSeriesCsv: '{source}' line {lineNo}, column '{names[dateColumn]}': '{stamp}' is not a date/time");
            if (times.Count > 0)
            {
                var previous = times[^1];
                if (time == previous)
                    throw new InvalidDataException($"TimeSeriesCsv: '{source}' line {lineNo}: the timestamp {stamp} repeats line {lineNo - 1}'s (duplicated timestamps)");
                if (time < previous)
                    throw new InvalidDataException($"TimeSeriesCsv: '{source}' line {lineNo}: the timestamp {stamp} is before line {lineNo - 1}'s {previous:yyyy-MM-dd HH:mm:ss} (the rows must be sorted by time)");
            }
            times.Add(time);
            for (int i = 0; i < fields.Length; i++)
            {
                if (i == dateColumn) continue;
                string text = fields[i].Trim().Trim('"');
                if (text.Length == 0)
                    throw new InvalidDataException($"TimeSeriesCsv: '{source}' line {lineNo}, column '{names[i]}': the value is missing");
                if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !double.IsFinite(v))
                    throw new InvalidDataException($"TimeSeriesCsv: '{source}' line {lineNo}, column '{names[i]}': '{text}' is not a finite number");
                values.Add(v);
            }
        }
        if (times.Count == 0) throw new InvalidDataException($"TimeSeriesCsv: '{source}' has a header but no rows");
        return new TimeSeriesTable([.. times], numeric, [.. values]);
    }
}
