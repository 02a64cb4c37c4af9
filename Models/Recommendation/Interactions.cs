using System.Globalization;

namespace AttnCore.Models.Recommendation;

/// <summary>
/// Implicit-feedback interactions: for each user (1-based id; index 0 unused), the items they interacted with in
/// time order. Item ids are 1-based too, 0 being the padding id the sequence models reserve. As the SASRec authors'
/// <c>data_partition</c>, the user and item counts are the largest ids seen (an id that never occurs still counts).
/// </summary>
public sealed class Interactions
{
    private Interactions(int[][] byUser, int itemCount, int count)
    {
        ByUser = byUser; ItemCount = itemCount; Count = count;
    }

    /// <summary>Items per user in time order; <c>ByUser[0]</c> is empty (ids start at 1).</summary>
    public IReadOnlyList<int[]> ByUser { get; }
    /// <summary>The largest user id.</summary>
    public int UserCount => ByUser.Count - 1;
    /// <summary>The largest item id (items are 1..ItemCount).</summary>
    public int ItemCount { get; }
    /// <summary>Number of interactions.</summary>
    public int Count { get; }

    /// <summary>
    /// From per-user sequences (index = user id, entry 0 ignored); every item id must be at least 1.
    /// <paramref name="itemCount"/> defaults to the largest id present.
    /// </summary>
    public static Interactions FromSequences(IReadOnlyList<int[]> byUser, int? itemCount = null)
    {
        var copy = new int[Math.Max(1, byUser.Count)][];
        copy[0] = [];
        int max = 0, count = 0;
        for (int u = 1; u < byUser.Count; u++)
        {
            copy[u] = (int[])byUser[u].Clone();
            foreach (int i in copy[u])
            {
                if (i < 1) throw new ArgumentException($"Interactions: user {u} has item id {i}; item ids start at 1 (0 is padding)");
                max = Math.Max(max, i);
            }
            count += copy[u].Length;
        }
        int items = itemCount ?? max;
        if (items < max) throw new ArgumentException($"Interactions: item count {items} is below the largest item id {max}");
        return new Interactions(copy, items, count);
    }

    /// <summary>
    /// Reads the SASRec authors' format: one <c>user item</c> pair per line (whitespace-separated positive
    /// integers), each user's lines in time order. Blank lines are skipped; anything else that is not two positive
    /// integers is an <see cref="InvalidDataException"/> naming the file, the line number and its text.
    /// </summary>
    public static Interactions ReadUserItem(string path)
    {
        var pairs = new List<(int User, int Item, long Time)>();
        int lineNumber = 0;
        foreach (var line in ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            var fields = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length != 2)
                throw Bad(path, lineNumber, line, $"expected 'user item' (two ids), found {fields.Length} fields");
            pairs.Add((Id(path, lineNumber, line, fields[0], "user"), Id(path, lineNumber, line, fields[1], "item"), pairs.Count));
        }
        return Group(path, pairs);
    }

    /// <summary>
    /// Reads <c>user,item,timestamp</c> lines (an optional header line whose first field is not a number), and
    /// orders each user's items by timestamp (integers, e.g. Unix seconds; lines with equal timestamps keep their
    /// file order). Malformed lines raise an <see cref="InvalidDataException"/> naming the file, line and text.
    /// </summary>
    public static Interactions ReadCsv(string path)
    {
        var rows = new List<(int User, int Item, long Time)>();
        int lineNumber = 0;
        foreach (var line in ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            var fields = line.Split(',');
            if (lineNumber == 1 && !long.TryParse(fields[0].Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out _)) continue; // header
            if (fields.Length != 3)
                throw Bad(path, lineNumber, line, $"expected 'user,item,timestamp' (three fields), found {fields.Length}");
            if (!long.TryParse(fields[2].Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out long time))
                throw Bad(path, lineNumber, line, $"timestamp '{fields[2].Trim()}' is not an integer");
            rows.Add((Id(path, lineNumber, line, fields[0].Trim(), "user"), Id(path, lineNumber, line, fields[1].Trim(), "item"), time));
        }
        return Group(path, rows);
    }

    private static IEnumerable<string> ReadLines(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Interactions: no interaction file at '{path}'", path);
        return File.ReadLines(path);
    }

    // Users' items ordered by time; OrderBy is stable, so equal times keep file order.
    private static Interactions Group(string path, List<(int User, int Item, long Time)> rows)
    {
        if (rows.Count == 0) throw new InvalidDataException($"Interactions: '{path}' holds no interactions");
        int users = rows.Max(r => r.User), items = rows.Max(r => r.Item);
        var lists = new List<(int Item, long Time)>[users + 1];
        foreach (var (u, i, t) in rows) (lists[u] ??= []).Add((i, t));
        var byUser = new int[users + 1][];
        for (int u = 0; u <= users; u++) byUser[u] = lists[u] is null ? [] : lists[u].OrderBy(p => p.Time).Select(p => p.Item).ToArray();
        return new Interactions(byUser, items, rows.Count);
    }

    private static int Id(string path, int lineNumber, string line, string text, string what)
    {
        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int id) || id < 1)
            throw Bad(path, lineNumber, line, $"{what} id '{text}' is not a positive integer (ids start at 1)");
        return id;
    }

    private static InvalidDataException Bad(string path, int lineNumber, string line, string problem) =>
        new($"Interactions: '{path}' line {lineNumber}: {problem}: \"{(line.Length > 80 ? line[..80] + "..." : line)}\"");
}

/// <summary>
/// The SASRec leave-one-out split (Kang and McAuley 2018, section IV-B; the authors' <c>data_partition</c>): a user
/// with fewer than 3 interactions trains on all of them and is never evaluated; otherwise the last item is the test
/// target, the one before it the validation target, and the rest is training history.
/// </summary>
public sealed class LeaveOneOutSplit
{
    /// <summary>Splits <paramref name="data"/>.</summary>
    public LeaveOneOutSplit(Interactions data)
    {
        Data = data;
        int n = data.UserCount + 1;
        var train = new int[n][];
        Validation = new int[n];
        Test = new int[n];
        train[0] = [];
        for (int u = 1; u < n; u++)
        {
            var items = data.ByUser[u];
            if (items.Length < 3) { train[u] = items; continue; }
            train[u] = items[..^2];
            Validation[u] = items[^2];
            Test[u] = items[^1];
        }
        Train = train;
    }

    /// <summary>The interactions split.</summary>
    public Interactions Data { get; }
    /// <summary>Training items per user, time order.</summary>
    public IReadOnlyList<int[]> Train { get; }
    /// <summary>Validation target per user (0: none, a user with fewer than 3 interactions).</summary>
    public int[] Validation { get; }
    /// <summary>Test target per user (0: none).</summary>
    public int[] Test { get; }
    /// <summary>The largest user id.</summary>
    public int UserCount => Data.UserCount;
    /// <summary>The largest item id.</summary>
    public int ItemCount => Data.ItemCount;

    /// <summary>
    /// What the model sees for user <paramref name="user"/> when predicting the validation target (the training items)
    /// or the test target (the training items, then the validation item), oldest first.
    /// </summary>
    public IEnumerable<int> History(int user, bool test) => test && Validation[user] != 0 ? Train[user].Append(Validation[user]) : Train[user];
}
