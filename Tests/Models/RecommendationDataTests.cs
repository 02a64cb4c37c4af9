using AttnCore.Models.Recommendation;
using NUnit.Framework;

namespace AttnCore.Tests.Models;

/// <summary>The interaction readers, the SASRec leave-one-out split and the training sampler.</summary>
[TestFixture, Category("Models")]
public class RecommendationDataTests
{
    /// <summary>The SASRec Games file at ../shared/data beside the repository, or Assert.Ignore naming where it was looked for.</summary>
    public static string GamesPath()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "AttnCore.sln")))
            {
                string path = Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "data", "amazon-games.txt"));
                if (!File.Exists(path)) Assert.Ignore($"the Amazon Games interactions are not at {path}");
                return path;
            }
        Assert.Ignore("the repository (AttnCore.sln) is not above the test binaries");
        return "";
    }

    static string Temp(string text, string extension = ".txt")
    {
        string path = Path.Combine(Path.GetTempPath(), "attncore-rec-" + Guid.NewGuid().ToString("N") + extension);
        File.WriteAllText(path, text);
        return path;
    }

    [Test]
    public void UserItem_lines_group_by_user_in_file_order_and_ids_set_the_counts()
    {
        string path = Temp("1 5\n1 3\n\n3 7\n1 9\n3 2\n");
        try
        {
            var data = Interactions.ReadUserItem(path);
            Assert.That(data.UserCount, Is.EqualTo(3));
            Assert.That(data.ItemCount, Is.EqualTo(9));
            Assert.That(data.Count, Is.EqualTo(5));
            Assert.That(data.ByUser[1], Is.EqualTo(new[] { 5, 3, 9 }));
            Assert.That(data.ByUser[2], Is.Empty, "a user id that never occurs still counts, as the authors' data_partition");
            Assert.That(data.ByUser[3], Is.EqualTo(new[] { 7, 2 }));
        }
        finally { File.Delete(path); }
    }

    [TestCase("1 5\n2 x\n", 2, "item id 'x'")]
    [TestCase("1 5\n1 5 7\n", 2, "found 3 fields")]
    [TestCase("1 5\n1 4\n0 3\n", 3, "user id '0'")]
    [TestCase("7\n", 1, "found 1 fields")]
    [TestCase("1 -2\n", 1, "item id '-2'")]
    public void Malformed_lines_are_reported_with_the_file_and_line_number(string text, int line, string problem)
    {
        string path = Temp(text);
        try
        {
            var ex = Assert.Throws<InvalidDataException>(() => Interactions.ReadUserItem(path));
            Assert.That(ex!.Message, Does.Contain(path).And.Contain($"line {line}:").And.Contain(problem));
        }
        finally { File.Delete(path); }
    }

    [Test]
    public void Csv_sorts_each_user_by_timestamp_keeping_file_order_on_ties_and_skips_a_header()
    {
        string path = Temp("user,item,timestamp\n2,4,300\n1,8,200\n2,5,100\n1,6,100\n2,9,300\n", ".csv");
        try
        {
            var data = Interactions.ReadCsv(path);
            Assert.That(data.ByUser[1], Is.EqualTo(new[] { 6, 8 }));
            Assert.That(data.ByUser[2], Is.EqualTo(new[] { 5, 4, 9 }), "4 and 9 share time 300: file order");
        }
        finally { File.Delete(path); }
        path = Temp("1,2,3\n1,2,later\n", ".csv");
        try
        {
            var ex = Assert.Throws<InvalidDataException>(() => Interactions.ReadCsv(path));
            Assert.That(ex!.Message, Does.Contain("line 2:").And.Contain("timestamp 'later'"));
        }
        finally { File.Delete(path); }
        var missing = Assert.Throws<FileNotFoundException>(() => Interactions.ReadCsv("/nonexistent/games.csv"));
        Assert.That(missing!.Message, Does.Contain("/nonexistent/games.csv"));
        string empty = Temp("\n\n");
        try { Assert.That(Assert.Throws<InvalidDataException>(() => Interactions.ReadUserItem(empty))!.Message, Does.Contain("no interactions")); }
        finally { File.Delete(empty); }
    }

    [Test]
    public void The_split_keeps_short_users_for_training_and_holds_out_the_last_two_items()
    {
        var data = Interactions.FromSequences([[], [4], [4, 5], [4, 5, 6], [1, 2, 3, 7, 8]]);
        var split = new LeaveOneOutSplit(data);
        // users with fewer than 3 interactions: training only
        Assert.That(split.Train[1], Is.EqualTo(new[] { 4 }));
        Assert.That(split.Train[2], Is.EqualTo(new[] { 4, 5 }));
        Assert.That(split.Validation[1] + split.Validation[2] + split.Test[1] + split.Test[2], Is.Zero);
        Assert.That((split.Train[3], split.Validation[3], split.Test[3]), Is.EqualTo((new[] { 4 }, 5, 6)));
        Assert.That((split.Train[4], split.Validation[4], split.Test[4]), Is.EqualTo((new[] { 1, 2, 3 }, 7, 8)));
        Assert.That(split.History(4, test: true), Is.EqualTo(new[] { 1, 2, 3, 7 }), "testing sees the validation item");
        Assert.That(split.History(4, test: false), Is.EqualTo(new[] { 1, 2, 3 }));
    }

    [Test]
    public void The_split_of_the_Games_file_matches_an_independent_count()
    {
        string path = GamesPath();
        var split = new LeaveOneOutSplit(Interactions.ReadUserItem(path));
        // the figures for the authors' preprocessed file
        Assert.That((split.Data.Count, split.UserCount, split.ItemCount), Is.EqualTo((287_107, 31_013, 23_715)));
        // an independent pass over the lines: per user, the count and the last two items
        var lines = File.ReadLines(path).Select(l => l.Split(' ')).Select(f => (U: int.Parse(f[0]), I: int.Parse(f[1]))).ToList();
        var byUser = lines.GroupBy(p => p.U).ToDictionary(g => g.Key, g => g.Select(p => p.I).ToArray());
        int evaluated = byUser.Values.Count(v => v.Length >= 3);
        Assert.That(Enumerable.Range(1, split.UserCount).Count(u => split.Test[u] != 0), Is.EqualTo(evaluated));
        foreach (int u in new[] { 1, 2, 777, 31_013 })
        {
            var items = byUser[u];
            Assert.That(split.Test[u], Is.EqualTo(items.Length >= 3 ? items[^1] : 0), $"user {u}");
            Assert.That(split.Validation[u], Is.EqualTo(items.Length >= 3 ? items[^2] : 0), $"user {u}");
            Assert.That(split.Train[u].Length, Is.EqualTo(items.Length >= 3 ? items.Length - 2 : items.Length), $"user {u}");
        }
    }

    [Test]
    public void The_sampler_left_pads_shifts_by_one_and_never_draws_a_training_item_as_negative()
    {
        // few items, so a careless sampler would draw positives often
        var data = Interactions.FromSequences([[], [1, 2, 3, 4, 5, 6, 7, 8], [2, 4], [3, 9, 1, 10, 2]], itemCount: 12);
        var split = new LeaveOneOutSplit(data);
        var sampler = new SequenceSampler(split, maxLength: 4, seed: 3);
        var again = new SequenceSampler(split, maxLength: 4, seed: 3);
        Assert.That(sampler.EligibleUsers, Is.EqualTo(3), "user 2 has too few interactions to be evaluated, so trains on both of them");
        for (int round = 0; round < 200; round++)
        {
            var batch = sampler.Next(3);
            Assert.That(again.Next(3).Negatives, Is.EqualTo(batch.Negatives), "seeded");
            for (int b = 0; b < 3; b++)
            {
                var train = split.Train[batch.Users[b]];
                var h = batch.History.AsSpan(b * 4, 4).ToArray();
                var p = batch.Positives.AsSpan(b * 4, 4).ToArray();
                var n = batch.Negatives.AsSpan(b * 4, 4).ToArray();
                // expected from the training items: inputs all but the last, targets shifted by one, newest at the right
                var inputs = train[..^1].TakeLast(4).ToArray();
                var targets = train[1..].TakeLast(4).ToArray();
                int pad = 4 - inputs.Length;
                Assert.That(h, Is.EqualTo(Enumerable.Repeat(0L, pad).Concat(inputs.Select(i => (long)i))));
                Assert.That(p, Is.EqualTo(Enumerable.Repeat(0L, pad).Concat(targets.Select(i => (long)i))));
                for (int t = 0; t < 4; t++)
                {
                    if (t < pad) { Assert.That(n[t], Is.Zero); continue; }
                    Assert.That(n[t], Is.InRange(1, 12));
                    Assert.That(train, Does.Not.Contain((int)n[t]), $"negative {n[t]} of user {batch.Users[b]} is a training item");
                }
            }
        }
    }

    [Test]
    public void A_sampler_without_trainable_users_or_negatives_says_why()
    {
        var shortUsers = new LeaveOneOutSplit(Interactions.FromSequences([[], [1], [2]]));
        Assert.That(Assert.Throws<ArgumentException>(() => new SequenceSampler(shortUsers, 5, 0))!.Message, Does.Contain("no user has 2 or more training items"));
        var everything = new LeaveOneOutSplit(Interactions.FromSequences([[], [1, 2]]));
        Assert.That(Assert.Throws<ArgumentException>(() => new SequenceSampler(everything, 5, 0))!.Message, Does.Contain("every one of the 2 items"));
    }
}
