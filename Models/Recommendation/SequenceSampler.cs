namespace AttnCore.Models.Recommendation;

/// <summary>One training batch: B rows of <c>MaxLength</c> item ids each, row-major, 0 = padding.</summary>
/// <param name="Users">The sampled user of each row.</param>
/// <param name="History">Input items, left-padded: the user's training items but the last, newest at the right.</param>
/// <param name="Positives">At each position the item that followed (the next item), 0 where the input is padding.</param>
/// <param name="Negatives">At each non-padded position an item drawn uniformly from those the user never trained on.</param>
/// <param name="Batch">Rows.</param>
/// <param name="MaxLength">Positions per row.</param>
public sealed record SequenceBatch(int[] Users, long[] History, long[] Positives, long[] Negatives, int Batch, int MaxLength)
{
    /// <summary>The three id arrays as int64 [B, T] tensors on <paramref name="device"/>.</summary>
    public (Tensor History, Tensor Positives, Tensor Negatives) ToTensors(Device? device = null) =>
        (Tensor.FromArray(History, [Batch, MaxLength], device), Tensor.FromArray(Positives, [Batch, MaxLength], device), Tensor.FromArray(Negatives, [Batch, MaxLength], device));
}

/// <summary>
/// The SASRec authors' training sampler (<c>sample_function</c> in their sampler.py), seeded: a user drawn uniformly
/// among those with at least 2 training items; their training sequence without its last item, left-padded (or cut
/// to the newest) to <c>maxLength</c>, is the input; the item after each input position is its positive; each
/// non-padded position gets one negative drawn uniformly from 1..ItemCount outside the user's training items.
/// </summary>
public sealed class SequenceSampler
{
    private readonly LeaveOneOutSplit _split;
    private readonly HashSet<int>[] _seen;
    private readonly int[] _eligible;
    private readonly Random _random;

    /// <summary>A sampler over <paramref name="split"/>'s training items.</summary>
    public SequenceSampler(LeaveOneOutSplit split, int maxLength, int seed)
    {
        if (maxLength < 1) throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, "SequenceSampler: maxLength must be at least 1");
        _split = split;
        MaxLength = maxLength;
        _random = new Random(seed);
        _eligible = Enumerable.Range(1, split.UserCount).Where(u => split.Train[u].Length >= 2).ToArray();
        if (_eligible.Length == 0) throw new ArgumentException($"SequenceSampler: no user has 2 or more training items among {split.UserCount} users; nothing to train on");
        _seen = new HashSet<int>[split.UserCount + 1];
        if (split.Train.Skip(1).Any(t => t.Distinct().Count() >= split.ItemCount))
            throw new ArgumentException($"SequenceSampler: a user has trained on every one of the {split.ItemCount} items, so no negative can be drawn");
    }

    /// <summary>Positions per sequence.</summary>
    public int MaxLength { get; }
    /// <summary>How many users can be sampled (at least 2 training items).</summary>
    public int EligibleUsers => _eligible.Length;

    /// <summary>The next <paramref name="batchSize"/> sequences.</summary>
    public SequenceBatch Next(int batchSize)
    {
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "SequenceSampler: batch size must be at least 1");
        int t = MaxLength;
        var users = new int[batchSize];
        long[] history = new long[batchSize * t], positives = new long[batchSize * t], negatives = new long[batchSize * t];
        for (int b = 0; b < batchSize; b++)
        {
            int user = _eligible[_random.Next(_eligible.Length)];
            users[b] = user;
            var train = _split.Train[user];
            var seen = _seen[user] ??= [.. train];
            int next = train[^1], at = t - 1;
            for (int i = train.Length - 2; i >= 0 && at >= 0; i--, at--)
            {
                history[b * t + at] = train[i];
                positives[b * t + at] = next;
                negatives[b * t + at] = DrawOutside(seen, _split.ItemCount, _random);
                next = train[i];
            }
        }
        return new SequenceBatch(users, history, positives, negatives, batchSize, t);
    }

    /// <summary>An item drawn uniformly from 1..<paramref name="itemCount"/> that is not in <paramref name="excluded"/> (rejection sampling).</summary>
    public static int DrawOutside(IReadOnlySet<int> excluded, int itemCount, Random random)
    {
        int item;
        do item = random.Next(1, itemCount + 1); while (excluded.Contains(item));
        return item;
    }
}
