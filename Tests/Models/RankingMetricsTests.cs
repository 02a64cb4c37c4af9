using AttnCore.Models.Recommendation;
using NUnit.Framework;

namespace AttnCore.Tests.Models;

/// <summary>
/// HR@10 and NDCG@10 on hand-made rankings (values worked out by hand in the comments), and the whole evaluation
/// protocol on models whose rankings are known in advance.
/// </summary>
[TestFixture, Category("Models")]
public class RankingMetricsTests
{
    [Test]
    public void Rank_counts_the_candidates_scoring_at_least_the_target()
    {
        float[] scores = [0.5f, 0.9f, 0.1f, 0.5f, 0.7f];
        // target 0 (0.5): 0.9, 0.5 (a tie, counted against it) and 0.7 are at least as high
        Assert.That(RankingMetrics.RankOf(scores, 0), Is.EqualTo(3));
        Assert.That(RankingMetrics.RankOf(scores, 1), Is.EqualTo(0));
        Assert.That(RankingMetrics.RankOf(scores, 2), Is.EqualTo(4));
        // leaving out 1 and 3 leaves 0.7 above the target
        Assert.That(RankingMetrics.RankOf(scores, 0, [false, true, false, true, false]), Is.EqualTo(1));
        // a constant model ranks the target last, a NaN target score too
        Assert.That(RankingMetrics.RankOf([1f, 1f, 1f], 0), Is.EqualTo(2));
        Assert.That(RankingMetrics.RankOf([float.NaN, 0f, -1f], 0), Is.EqualTo(2));
        Assert.Throws<ArgumentOutOfRangeException>(() => RankingMetrics.RankOf(scores, 5));
        Assert.Throws<ArgumentException>(() => RankingMetrics.RankOf(scores, 0, [true]));
    }

    [Test]
    public void Hr_and_ndcg_at_10_of_four_hand_made_ranks()
    {
        // ranks 0, 2, 9, 10: hits are 0, 2 and 9 (below 10)
        // NDCG: 1/log2(2) = 1, 1/log2(4) = 0.5, 1/log2(11) = 0.28906..., rank 10 = 0; mean over 4 users
        var tally = new RankingTally();
        foreach (int r in new[] { 0, 2, 9, 10 }) tally.Add(r);
        Assert.That(tally.Users, Is.EqualTo(4));
        Assert.That(tally.HitRate, Is.EqualTo(0.75));
        Assert.That(tally.Ndcg, Is.EqualTo((1 + 0.5 + 0.2890648263178879) / 4).Within(1e-15));
        Assert.That(RankingMetrics.Ndcg(1), Is.EqualTo(0.6309297535714574).Within(1e-15));
        Assert.That(new RankingTally().Ndcg, Is.Zero);
    }

    // User u's items are u, u+1, u+2, u+3 (200 users, items 1..300): the validation target is u+2 and the test
    // target u+3, each one more than the newest item of the history the model reads.
    static LeaveOneOutSplit Consecutive() =>
        new(Interactions.FromSequences([[], .. Enumerable.Range(1, 200).Select(u => new[] { u, u + 1, u + 2, u + 3 })], itemCount: 300));

    [Test]
    public void An_oracle_scores_1_an_anti_oracle_0_and_one_better_item_gives_ndcg_of_rank_1()
    {
        var split = Consecutive();
        var evaluator = new RankingEvaluator(split, maxLength: 5, seed: 7);
        using var oracle = new NextItemModel(5, 300, sign: 1);
        var report = evaluator.Evaluate(oracle, test: true, fullRanking: true, batch: 64);
        Assert.That(report.Users, Is.EqualTo(200));
        Assert.That((report.HitRate, report.Ndcg, report.FullHitRate, report.FullNdcg), Is.EqualTo((1.0, 1.0, 1.0, 1.0)));
        Assert.That(oracle.Training, Is.True, "evaluation restores training mode");
        using var anti = new NextItemModel(5, 300, sign: -1);
        report = evaluator.Evaluate(anti, test: false, fullRanking: true);
        Assert.That((report.HitRate, report.Ndcg, report.FullHitRate, report.FullNdcg), Is.EqualTo((0.0, 0.0, 0.0, 0.0)));
        // the item after the target always outranks it in the full ranking (it is never in the history): rank 1
        using var second = new NextItemModel(5, 300, sign: 1, favourTwoAhead: true);
        report = evaluator.Evaluate(second, test: true, fullRanking: true);
        Assert.That(report.FullHitRate, Is.EqualTo(1.0));
        Assert.That(report.FullNdcg, Is.EqualTo(1 / Math.Log2(3)).Within(1e-12));
    }

    [Test]
    public void Histories_are_left_padded_and_negatives_avoid_everything_the_user_touched()
    {
        var split = Consecutive();
        var evaluator = new RankingEvaluator(split, maxLength: 5, seed: 7, negatives: 100);
        Assert.That(evaluator.HistoryRow(10, test: true), Is.EqualTo(new long[] { 0, 0, 10, 11, 12 }));
        Assert.That(evaluator.HistoryRow(10, test: false), Is.EqualTo(new long[] { 0, 0, 0, 10, 11 }));
        var random = new Random(1);
        for (int u = 1; u <= 200; u++)
        {
            var c = evaluator.Candidates(u, test: true, random);
            Assert.That(c[0], Is.EqualTo(u + 3));
            Assert.That(c.Skip(1).Where(i => i >= u && i <= u + 3 || i < 1 || i > 300), Is.Empty, $"user {u}");
        }
    }

    [Test]
    public void More_than_max_users_are_sampled_once_with_the_seed()
    {
        var split = Consecutive();
        var a = new RankingEvaluator(split, 5, seed: 3, maxUsers: 50);
        var b = new RankingEvaluator(split, 5, seed: 3, maxUsers: 50);
        var c = new RankingEvaluator(split, 5, seed: 4, maxUsers: 50);
        Assert.That(a.Users(true), Has.Length.EqualTo(50).And.Unique);
        Assert.That(a.Users(true), Is.EqualTo(b.Users(true)));
        Assert.That(a.Users(false), Is.EqualTo(a.Users(true)), "validation and test rank the same sampled users");
        Assert.That(c.Users(true), Is.Not.EqualTo(a.Users(true)));
    }

    /// <summary>
    /// Scores item c after a history whose newest item is l by sign·(−|c − (l + 1)|): sign 1 puts the next item first,
    /// −1 last; favourTwoAhead lifts item l + 2 above everything.
    /// </summary>
    sealed class NextItemModel(int maxLength, int items, int sign, bool favourTwoAhead = false) : SequentialRecommender
    {
        public override int MaxLength => maxLength;
        public override int ItemCount => items;
        public override string Name => "next-item";

        double Value(long newest, long c) => favourTwoAhead && c == newest + 2 ? 1e6 : sign * -Math.Abs(c - (newest + 1));

        public override Tensor Score(Tensor history, Tensor candidates)
        {
            var h = history.ToArray<long>();
            var c = candidates.ToArray<long>();
            int b = history.Size(0), n = candidates.Size(1);
            var s = new float[b * n];
            for (int i = 0; i < b; i++) for (int j = 0; j < n; j++) s[i * n + j] = (float)Value(h[i * maxLength + maxLength - 1], c[i * n + j]);
            return Tensor.FromArray(s, [b, n]);
        }

        public override Tensor ScoreAll(Tensor history)
        {
            int b = history.Size(0);
            var all = Enumerable.Range(0, b).SelectMany(_ => Enumerable.Range(0, items + 1).Select(i => (long)i)).ToArray();
            return Score(history, Tensor.FromArray(all, [b, items + 1]));
        }

        public override Tensor Loss(Tensor history, Tensor positives, Tensor negatives) => throw new NotSupportedException();
        public override float[,] SelfAttentionWeights(Tensor history) => throw new NotSupportedException();
    }
}
