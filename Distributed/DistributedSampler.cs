namespace AttnCore.Distributed;

/// <summary>
/// Which samples each rank trains on, as PyTorch's DistributedSampler but split by global batch: every epoch is a
/// permutation of the data set drawn from (seed, epoch), the same on every rank; it is cut into global batches, and each
/// global batch into one contiguous shard per rank (<see cref="Shard"/>). So every sample is used exactly once per epoch
/// across the ranks, every rank takes the same number of steps, and the global batches are the ones a single process with
/// the same global batch size would take: the run does not depend on the number of ranks (and resumes with any number).
/// </summary>
public sealed class DistributedSampler
{
    /// <summary>A sampler over <paramref name="datasetSize"/> samples for rank <paramref name="rank"/> of <paramref name="ranks"/>.</summary>
    public DistributedSampler(int datasetSize, int rank, int ranks, ulong seed, bool shuffle = true)
    {
        if (datasetSize < 1) throw new ArgumentOutOfRangeException(nameof(datasetSize), $"DistributedSampler: the data set is empty ({datasetSize} samples)");
        if (ranks < 1 || rank < 0 || rank >= ranks) throw new ArgumentOutOfRangeException(nameof(rank), $"DistributedSampler: rank {rank} is not one of {ranks} ranks");
        DatasetSize = datasetSize; Rank = rank; Ranks = ranks; Seed = seed; Shuffle = shuffle;
    }

    /// <summary>Samples in the data set.</summary>
    public int DatasetSize { get; }
    /// <summary>This process's rank.</summary>
    public int Rank { get; }
    /// <summary>Number of ranks.</summary>
    public int Ranks { get; }
    /// <summary>The seed every epoch's permutation derives from.</summary>
    public ulong Seed { get; }
    /// <summary>False: every epoch visits the samples in order 0, 1, 2, ...</summary>
    public bool Shuffle { get; }

    /// <summary>The epoch's order of all samples, the same on every rank (a Fisher-Yates shuffle drawn from seed and epoch).</summary>
    public int[] EpochOrder(int epoch)
    {
        if (epoch < 0) throw new ArgumentOutOfRangeException(nameof(epoch), $"DistributedSampler: epoch must be non-negative, got {epoch}");
        var order = new int[DatasetSize];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        if (!Shuffle) return order;
        var g = new Generator(unchecked(Seed + 0x9E3779B97F4A7C15UL * (ulong)(epoch + 1)));
        for (int i = order.Length - 1; i > 0; i--)
        {
            int j = (int)g.NextInt64(0, i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }

    /// <summary>
    /// This rank's share of each global batch of <paramref name="globalBatch"/> samples in the epoch (the last batch holds
    /// the remainder). A share can be empty when a batch has fewer samples than there are ranks: the rank still takes the
    /// step (<see cref="DataParallel.SetBatchShare"/> with 0 samples), so the ranks stay in step.
    /// </summary>
    public IEnumerable<(int[] Samples, int GlobalBatchSize)> Batches(int epoch, int globalBatch)
    {
        if (globalBatch < 1) throw new ArgumentOutOfRangeException(nameof(globalBatch), $"DistributedSampler: the global batch must be at least 1, got {globalBatch}");
        var order = EpochOrder(epoch);
        for (int start = 0; start < order.Length; start += globalBatch)
        {
            int size = Math.Min(globalBatch, order.Length - start);
            var (offset, count) = Shard(size, Rank, Ranks);
            yield return (order.AsSpan(start + offset, count).ToArray(), size);
        }
    }

    /// <summary>
    /// The contiguous part [Start, Start + Count) of a batch of <paramref name="batchSize"/> that rank <paramref name="rank"/>
    /// of <paramref name="ranks"/> takes: sizes differ by at most one, the first batchSize % ranks ranks taking one more.
    /// </summary>
    public static (int Start, int Count) Shard(int batchSize, int rank, int ranks)
    {
        if (batchSize < 0) throw new ArgumentOutOfRangeException(nameof(batchSize), $"Shard: the batch size must be non-negative, got {batchSize}");
        if (ranks < 1 || rank < 0 || rank >= ranks) throw new ArgumentOutOfRangeException(nameof(rank), $"Shard: rank {rank} is not one of {ranks} ranks");
        int q = batchSize / ranks, extra = batchSize % ranks;
        return (rank * q + Math.Min(rank, extra), q + (rank < extra ? 1 : 0));
    }
}
