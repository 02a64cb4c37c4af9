namespace AttnCore.Models.Data.Vision;

/// <summary>
/// Batches of an <see cref="ImageSet"/> as float tensors [B, C, H, W] and class indices [B] (Int64), augmented and
/// normalised, the next batch prepared on a background thread while the caller trains on the current one.
/// <para>
/// Determinism: batch k of the run (epoch k / <see cref="BatchesPerEpoch"/>, index k mod it) is a pure function of
/// (seed, epoch, index): the epoch's shuffle comes from a generator seeded by (seed, epoch) and the augmentation draws
/// from one seeded by (seed, epoch, index). What the background thread does and when cannot change a batch, and a
/// resumed run that sets <see cref="Position"/> gets the same batches as one that never stopped.
/// </para>
/// </summary>
public sealed class VisionLoader : IDisposable
{
    private readonly ImageSet _set;
    private readonly Augmentation _augmentation;
    private readonly Normalization _norm;
    private readonly ulong _seed;
    private readonly bool _shuffle;
    private readonly float[] _pixels;
    private readonly long[] _labels;
    private int[]? _order;
    private long _orderEpoch = -1;
    private readonly object _orderLock = new();
    private Task<int>? _pending;
    private long _pendingPosition = -1;

    /// <summary>
    /// A loader over <paramref name="set"/>. Training: <paramref name="shuffle"/> with augmentation, and whole batches
    /// only (<paramref name="dropLast"/>, as the CIFAR recipe). Evaluation: in order, <see cref="Augmentation.None"/>,
    /// keeping the last partial batch.
    /// </summary>
    public VisionLoader(ImageSet set, int batchSize, Augmentation augmentation, Normalization normalization, bool shuffle, bool dropLast, ulong seed)
    {
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "VisionLoader: batch size must be positive");
        if (augmentation.Padding < 0) throw new ArgumentOutOfRangeException(nameof(augmentation), augmentation.Padding, "VisionLoader: crop padding must be non-negative");
        normalization.Check(set.Channels, "VisionLoader");
        if (dropLast && set.Count < batchSize)
            throw new ArgumentException($"VisionLoader: '{set.Source}' has {set.Count} images, fewer than one batch of {batchSize}");
        _set = set; _augmentation = augmentation; _norm = normalization; _shuffle = shuffle; _seed = seed;
        BatchSize = batchSize;
        BatchesPerEpoch = dropLast ? set.Count / batchSize : (set.Count + batchSize - 1) / batchSize;
        _pixels = new float[(long)batchSize * set.ImageSize];
        _labels = new long[batchSize];
    }

    /// <summary>Images per full batch.</summary>
    public int BatchSize { get; }
    /// <summary>Batches in one pass over the set.</summary>
    public int BatchesPerEpoch { get; }
    /// <summary>The run-wide index of the batch <see cref="Next"/> returns (epoch·BatchesPerEpoch + index); set it to resume.</summary>
    public long Position { get; set; }

    /// <summary>The batch at <see cref="Position"/>, then advances; starts preparing the following batch in the background.</summary>
    public (Tensor Images, Tensor Labels) Next(Device? device = null)
    {
        long position = Position;
        int count;
        if (_pending is not null && _pendingPosition == position) count = _pending.GetAwaiter().GetResult();
        else
        {
            _pending?.Wait();
            count = Fill(position);
        }
        _pending = null;
        var images = Tensor.FromSpan<float>(_pixels.AsSpan(0, count * _set.ImageSize), [count, _set.Channels, _set.Height, _set.Width], device);
        var labels = Tensor.FromSpan<long>(_labels.AsSpan(0, count), [count], device);
        Position = position + 1;
        // The buffers are free again (FromSpan copied them): the next batch can be written into them while this one trains.
        _pendingPosition = position + 1;
        _pending = Task.Run(() => Fill(position + 1));
        return (images, labels);
    }

    /// <summary>The dataset indices of batch <paramref name="position"/>, in batch order (what <see cref="Next"/> draws).</summary>
    public int[] Indices(long position)
    {
        var (order, start, count) = Locate(position);
        return order.AsSpan(start, count).ToArray();
    }

    private (int[] Order, int Start, int Count) Locate(long position)
    {
        if (position < 0) throw new ArgumentOutOfRangeException(nameof(position), position, "VisionLoader: batch position must be non-negative");
        long epoch = position / BatchesPerEpoch;
        int index = (int)(position % BatchesPerEpoch);
        int[] order;
        // The background thread and Indices both read the cached shuffle.
        lock (_orderLock)
        {
            if (_orderEpoch != epoch)
            {
                _order = Order(epoch);
                _orderEpoch = epoch;
            }
            order = _order!;
        }
        int start = index * BatchSize;
        return (order, start, Math.Min(BatchSize, _set.Count - start));
    }

    private int[] Order(long epoch)
    {
        var order = new int[_set.Count];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        if (!_shuffle) return order;
        var g = new Generator(Mix(_seed, (ulong)epoch, ulong.MaxValue));
        for (int i = order.Length - 1; i > 0; i--)
        {
            int j = (int)g.NextInt64(0, i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }

    private int Fill(long position)
    {
        var (order, start, count) = Locate(position);
        var g = new Generator(Mix(_seed, (ulong)(position / BatchesPerEpoch), (ulong)(position % BatchesPerEpoch)));
        int size = _set.ImageSize;
        for (int b = 0; b < count; b++)
        {
            int i = order[start + b];
            var (dy, dx, flip) = _augmentation.Draw(g);
            var image = _pixels.AsSpan(b * size, size);
            ImageTransform.Apply(_set.Image(i), _set.Channels, _set.Height, _set.Width, _augmentation.Padding, dy, dx, flip, _norm, image);
            ImageTransform.Erase(image, _set.Channels, _set.Height, _set.Width, _augmentation.DrawErasing(g, _set.Height, _set.Width));
            _labels[b] = _set.Labels[i];
        }
        return count;
    }

    // SplitMix64 over the three words: nearby seeds, epochs and batch indices give unrelated generator seeds.
    private static ulong Mix(ulong seed, ulong epoch, ulong index)
    {
        static ulong Step(ulong z)
        {
            z += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }
        return Step(Step(Step(seed) ^ epoch) ^ index);
    }

    /// <summary>Waits for the batch being prepared, so nothing runs after the loader is gone.</summary>
    public void Dispose()
    {
        try { _pending?.Wait(); }
        catch (AggregateException) { }
        _pending = null;
    }
}
