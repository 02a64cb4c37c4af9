namespace AttnCore.Models.Recommendation;

/// <summary>HR@10 and NDCG@10 of one evaluation, sampled (target among 100 negatives) and, when asked, over every item.</summary>
/// <param name="HitRate">Sampled HR@10.</param>
/// <param name="Ndcg">Sampled NDCG@10.</param>
/// <param name="Users">Users evaluated.</param>
/// <param name="FullHitRate">HR@10 ranking the target against every item the history does not hold (null when not computed).</param>
/// <param name="FullNdcg">NDCG@10 of the same full ranking (null when not computed).</param>
public sealed record RankingReport(double HitRate, double Ndcg, int Users, double? FullHitRate = null, double? FullNdcg = null);

/// <summary>
/// The SASRec evaluation protocol (the authors' <c>evaluate</c> and <c>evaluate_valid</c>). With more than
/// <c>maxUsers</c> users, that many are sampled once (seeded) and reused by every call, so validation curves compare
/// like with like; a sampled user is evaluated when they have a training item and a target. The model reads the
/// training items (plus the validation item when testing), newest last, left-padded to its length. The target is
/// ranked against <c>negatives</c> items drawn uniformly (independently, so repeats are possible, as the authors')
/// from those the user never interacted with; the draws are seeded per call, so two calls on one model agree. The
/// full ranking ranks the target against every item but the padding id and the items of the history.
/// Differences from the authors' code, on purpose: negatives avoid the user's validation and test items too (they
/// avoid training items only), and ties count against the target (see <see cref="RankingMetrics.RankOf"/>).
/// </summary>
public sealed class RankingEvaluator
{
    private readonly LeaveOneOutSplit _split;
    private readonly int[] _sampledUsers;
    private readonly int _seed;

    /// <summary>An evaluator over <paramref name="split"/> for models reading <paramref name="maxLength"/> positions.</summary>
    public RankingEvaluator(LeaveOneOutSplit split, int maxLength, int seed, int negatives = 100, int maxUsers = 10_000)
    {
        if (maxLength < 1) throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, "RankingEvaluator: maxLength must be at least 1");
        if (negatives < 1) throw new ArgumentOutOfRangeException(nameof(negatives), negatives, "RankingEvaluator: negatives must be at least 1");
        if (maxUsers < 1) throw new ArgumentOutOfRangeException(nameof(maxUsers), maxUsers, "RankingEvaluator: maxUsers must be at least 1");
        _split = split; MaxLength = maxLength; Negatives = negatives; _seed = seed;
        var users = Enumerable.Range(1, split.UserCount).ToArray();
        if (users.Length > maxUsers)
        {
            // partial Fisher-Yates: a uniform sample of maxUsers distinct users
            var random = new Random(seed);
            for (int i = 0; i < maxUsers; i++) { int j = random.Next(i, users.Length); (users[i], users[j]) = (users[j], users[i]); }
            users = users[..maxUsers];
            Array.Sort(users);
        }
        _sampledUsers = users;
    }

    /// <summary>Positions of the histories given to the model.</summary>
    public int MaxLength { get; }
    /// <summary>Sampled negatives per user.</summary>
    public int Negatives { get; }

    /// <summary>The users one evaluation ranks: sampled, with a training item and a target.</summary>
    public int[] Users(bool test) => _sampledUsers.Where(u => _split.Train[u].Length >= 1 && Target(u, test) != 0).ToArray();

    private int Target(int user, bool test) => test ? _split.Test[user] : _split.Validation[user];

    /// <summary>The history the model reads for <paramref name="user"/>: newest item last, left-padded with 0 (or cut) to <see cref="MaxLength"/>.</summary>
    public long[] HistoryRow(int user, bool test)
    {
        var row = new long[MaxLength];
        var items = _split.History(user, test).ToArray();
        int take = Math.Min(items.Length, MaxLength);
        for (int i = 0; i < take; i++) row[MaxLength - take + i] = items[items.Length - take + i];
        return row;
    }

    /// <summary>Candidates of one user: the target first, then <see cref="Negatives"/> draws outside everything the user interacted with.</summary>
    public long[] Candidates(int user, bool test, Random random)
    {
        var excluded = new HashSet<int>(_split.Data.ByUser[user]);
        if (excluded.Count >= _split.ItemCount)
            throw new InvalidOperationException($"RankingEvaluator: user {user} interacted with all {_split.ItemCount} items; no negative can be drawn");
        var row = new long[Negatives + 1];
        row[0] = Target(user, test);
        for (int i = 1; i <= Negatives; i++) row[i] = SequenceSampler.DrawOutside(excluded, _split.ItemCount, random);
        return row;
    }

    /// <summary>
    /// Evaluates <paramref name="model"/> on the validation targets, or the test targets when <paramref name="test"/>;
    /// <paramref name="fullRanking"/> adds the unsampled ranking. Runs in evaluation mode without recording, in batches
    /// of <paramref name="batch"/> users, and leaves the model's training mode as it was.
    /// </summary>
    public RankingReport Evaluate(SequentialRecommender model, bool test, bool fullRanking = false, int batch = 256, Device? device = null)
    {
        if (model.MaxLength != MaxLength) throw new ArgumentException($"RankingEvaluator: the model reads {model.MaxLength} positions, the evaluator builds {MaxLength}");
        if (model.ItemCount < _split.ItemCount) throw new ArgumentException($"RankingEvaluator: the model knows {model.ItemCount} items, the data has {_split.ItemCount}");
        var users = Users(test);
        var random = new Random(unchecked(_seed * 2 + (test ? 1 : 0)));
        var sampled = new RankingTally();
        var full = new RankingTally();
        bool wasTraining = model.Training;
        model.Eval();
        try
        {
            using var ng = new NoGrad();
            int t = MaxLength, c = Negatives + 1;
            for (int start = 0; start < users.Length; start += batch)
            {
                int b = Math.Min(batch, users.Length - start);
                var histories = new long[b * t];
                var candidates = new long[b * c];
                for (int i = 0; i < b; i++)
                {
                    HistoryRow(users[start + i], test).CopyTo(histories, i * t);
                    Candidates(users[start + i], test, random).CopyTo(candidates, i * c);
                }
                using var scope = new TensorScope();
                var h = Tensor.FromArray(histories, [b, t], device);
                var scores = model.Score(h, Tensor.FromArray(candidates, [b, c], device)).To(DType.Float32).ToArray<float>();
                for (int i = 0; i < b; i++) sampled.Add(RankingMetrics.RankOf(scores.AsSpan(i * c, c), 0));
                if (!fullRanking) continue;
                int n = model.ItemCount + 1;
                var all = model.ScoreAll(h).To(DType.Float32).ToArray<float>();
                var excluded = new bool[n];
                for (int i = 0; i < b; i++)
                {
                    int user = users[start + i];
                    Array.Clear(excluded);
                    excluded[0] = true;
                    foreach (int item in _split.History(user, test)) excluded[item] = true;
                    int target = Target(user, test);
                    excluded[target] = false;
                    full.Add(RankingMetrics.RankOf(all.AsSpan(i * n, n), target, excluded));
                }
            }
        }
        finally { model.Train(wasTraining); }
        return fullRanking ? new RankingReport(sampled.HitRate, sampled.Ndcg, sampled.Users, full.HitRate, full.Ndcg)
            : new RankingReport(sampled.HitRate, sampled.Ndcg, sampled.Users);
    }
}
