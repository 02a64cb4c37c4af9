namespace AttnCore.Models.Recommendation;

/// <summary>
/// Leave-one-out ranking metrics as the SASRec paper reports them: each evaluated user has one held-out target,
/// ranked (0-based) among candidates by the model's scores; HR@k is the share of users whose target ranks below k,
/// NDCG@k the mean over users of 1/log2(rank + 2) for a hit and 0 otherwise (one relevant item, so the ideal DCG is 1).
/// </summary>
public static class RankingMetrics
{
    /// <summary>
    /// The 0-based rank of <c>scores[target]</c>: how many other candidates score at least as high. Ties count against
    /// the target (a constant model ranks every target last, not first) and a NaN target score ranks last; candidates
    /// with <paramref name="excluded"/> set (when given) are left out.
    /// </summary>
    public static int RankOf(ReadOnlySpan<float> scores, int target, ReadOnlySpan<bool> excluded = default)
    {
        if ((uint)target >= (uint)scores.Length)
            throw new ArgumentOutOfRangeException(nameof(target), target, $"RankingMetrics.RankOf: target index {target} outside the {scores.Length} candidates");
        if (!excluded.IsEmpty && excluded.Length != scores.Length)
            throw new ArgumentException($"RankingMetrics.RankOf: {excluded.Length} exclusion flags for {scores.Length} candidates");
        float s = scores[target];
        int rank = 0;
        for (int j = 0; j < scores.Length; j++)
        {
            if (j == target || (!excluded.IsEmpty && excluded[j])) continue;
            if (float.IsNaN(s) || scores[j] >= s) rank++;
        }
        return rank;
    }

    /// <summary>1/log2(rank + 2) when <paramref name="rank"/> &lt; <paramref name="k"/>, else 0.</summary>
    public static double Ndcg(int rank, int k = 10) => rank < k ? 1.0 / Math.Log2(rank + 2) : 0;
}

/// <summary>Accumulates per-user ranks into HR@k and NDCG@k.</summary>
public sealed class RankingTally(int k = 10)
{
    private double _ndcg;
    private int _hits;

    /// <summary>The cut-off.</summary>
    public int K { get; } = k;
    /// <summary>Users added.</summary>
    public int Users { get; private set; }

    /// <summary>Adds one user's 0-based target rank.</summary>
    public void Add(int rank)
    {
        Users++;
        if (rank < K) { _hits++; _ndcg += RankingMetrics.Ndcg(rank, K); }
    }

    /// <summary>HR@k (0 with no users).</summary>
    public double HitRate => Users == 0 ? 0 : (double)_hits / Users;
    /// <summary>NDCG@k (0 with no users).</summary>
    public double Ndcg => Users == 0 ? 0 : _ndcg / Users;
}
