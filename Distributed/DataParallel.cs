using System.Diagnostics;
using System.Numerics.Tensors;
using System.Text;

namespace AttnCore.Distributed;

/// <summary>Settings of <see cref="DataParallel"/>.</summary>
public sealed record DataParallelOptions
{
    /// <summary>The default bucket size, PyTorch DDP's bucket_cap_mb = 25.</summary>
    public const long DefaultBucketBytes = 25L << 20;

    /// <summary>
    /// Gradients are all-reduced in buckets of about this many bytes (a bucket closes once it reaches the size; a tensor
    /// larger than it gets a bucket of its own). Smaller buckets start communicating earlier in backward; larger ones
    /// make fewer calls. The result does not depend on it.
    /// </summary>
    public long BucketBytes { get; init; } = DefaultBucketBytes;

    /// <summary>Copy rank 0's buffers (BatchNorm running statistics) to every rank after each gradient synchronisation, as DDP's broadcast_buffers.</summary>
    public bool BroadcastBuffers { get; init; } = true;
}

/// <summary>
/// Data-parallel training the way PyTorch's DistributedDataParallel does it. At construction every rank checks that all
/// ranks hold the same parameters and buffers (names, dtypes, shapes), then takes rank 0's values. Gradients are packed
/// into buckets in reverse parameter order (roughly the order backward produces them); a hook on each parameter
/// (<see cref="GradHooks.RegisterPostAccumulateGradHook"/>) copies its final gradient into its bucket's pinned host buffer,
/// and a bucket whose gradients are all in starts its all-reduce at once (MPI_Iallreduce), so communication overlaps the
/// rest of backward. <see cref="SynchronizeGradients"/>, called between Backward and the optimizer step, waits for the
/// buckets and writes back each rank's weighted sum (by default the average over ranks).
/// </summary>
/// <remarks>
/// Buckets are launched strictly in order on every rank (a bucket that is ready waits for the ones before it), because MPI
/// needs the collectives in the same order everywhere. A parameter that got no gradient on this rank (unused in this
/// step's graph) contributes zeros. Device tensors are staged through the pinned host buffers; in a world of one process
/// nothing is registered or copied and gradients are left as Backward made them.
/// </remarks>
public sealed class DataParallel : IDisposable
{
    private readonly List<Bucket> _buckets = [];
    private readonly List<IDisposable> _hooks = [];
    private readonly (string Name, Tensor Tensor)[] _buffers;
    private readonly Dictionary<Tensor, (Bucket Bucket, int Slot)> _slotOf = new(ReferenceEqualityComparer.Instance);
    private readonly double[] _scalar = GC.AllocateArray<double>(1, pinned: true);
    private int _nextLaunch;
    private double? _weight;

    /// <summary>
    /// Sets up data parallelism over <paramref name="communicator"/> for a model's named parameters and buffers (what
    /// Module.NamedParameters / NamedBuffers return). Collective: every rank must call it with the same model.
    /// Throws <see cref="InvalidOperationException"/> naming the first tensor that differs when the ranks' models disagree.
    /// </summary>
    public DataParallel(Communicator communicator, IEnumerable<(string Name, Tensor Parameter)> parameters,
        IEnumerable<(string Name, Tensor Buffer)> buffers, DataParallelOptions? options = null)
    {
        Communicator = communicator;
        Options = options ?? new DataParallelOptions();
        if (Options.BucketBytes < 1) throw new ArgumentOutOfRangeException(nameof(options), $"DataParallel: BucketBytes must be at least 1, got {Options.BucketBytes}");
        var ps = parameters.ToArray();
        _buffers = buffers.ToArray();
        foreach (var (name, p) in ps)
            if (!p.IsLeaf || !p.RequiresGrad || p.DType is not (DType.Float32 or DType.Float64))
                throw new ArgumentException($"DataParallel: parameter '{name}' {Shape.Format(p.Shape)} {p.DType} must be a float32 or float64 leaf that requires gradients");
        Parameters = ps;
        if (communicator.Size == 1) return;
        CheckSameModel(communicator, ps, _buffers);
        foreach (var (_, t) in ps.Concat(_buffers)) BroadcastFromPrimary(t);
        BuildBuckets(ps);
        foreach (var (_, p) in ps) _hooks.Add(p.RegisterPostAccumulateGradHook(OnGradientReady));
    }

    /// <summary>The ranks this model is trained over.</summary>
    public Communicator Communicator { get; }
    /// <summary>The settings in force.</summary>
    public DataParallelOptions Options { get; }
    /// <summary>The parameters whose gradients are synchronised, in the model's order.</summary>
    public IReadOnlyList<(string Name, Tensor Parameter)> Parameters { get; }
    /// <summary>How many buckets the gradients were packed into (0 in a world of one process).</summary>
    public int BucketCount => _buckets.Count;
    /// <summary>Buckets whose all-reduce started during backward (before <see cref="SynchronizeGradients"/>), summed over all steps.</summary>
    public long BucketsStartedInBackward { get; private set; }
    /// <summary>Seconds spent in <see cref="SynchronizeGradients"/> waiting for all-reduces to finish, summed over all steps: the communication backward did not hide.</summary>
    public double ExposedCommunicationSeconds { get; private set; }

    /// <summary>
    /// For the coming step only (call it before Backward): this rank holds <paramref name="samplesHere"/> of the
    /// <paramref name="samplesAllRanks"/> samples of the global batch, so its gradient (of its mean loss) is weighted by that share
    /// instead of 1 / ranks, and the synchronised gradient is that of the mean loss over the whole batch even when the
    /// last batch of an epoch does not split evenly. Collective in effect: every rank passes its own share.
    /// </summary>
    public void SetBatchShare(long samplesHere, long samplesAllRanks)
    {
        if (samplesAllRanks < 1 || samplesHere < 0 || samplesHere > samplesAllRanks)
            throw new ArgumentOutOfRangeException(nameof(samplesHere), $"DataParallel.SetBatchShare: {samplesHere} samples on this rank of {samplesAllRanks} in all is not a share");
        _weight = (double)samplesHere / samplesAllRanks;
    }

    /// <summary>
    /// This rank's contiguous rows [Start, Start + Count) of a global batch of <paramref name="batchSize"/> samples
    /// (<see cref="DistributedSampler.Shard"/>), recorded as the coming step's share (<see cref="SetBatchShare"/>). In a world
    /// of one process, the whole batch. Count is 0 on the last ranks when the batch has fewer samples than there are ranks:
    /// such a rank skips forward and backward but still calls <see cref="SynchronizeGradients"/>, contributing zeros.
    /// </summary>
    public (int Start, int Count) ShareOf(int batchSize)
    {
        var share = DistributedSampler.Shard(batchSize, Communicator.Rank, Communicator.Size);
        SetBatchShare(share.Count, batchSize);
        return share;
    }

    /// <summary>
    /// The mean of a per-sample quantity (a step's loss) over the whole global batch, from this rank's mean over its
    /// <paramref name="samplesHere"/> of the <paramref name="samplesAllRanks"/> samples: the sum over ranks of mean x share,
    /// in float64. An empty shard adds nothing. Collective: every rank calls it for the same step.
    /// </summary>
    public double BatchMean(double meanHere, long samplesHere, long samplesAllRanks)
    {
        if (samplesAllRanks < 1 || samplesHere < 0 || samplesHere > samplesAllRanks)
            throw new ArgumentOutOfRangeException(nameof(samplesHere), $"DataParallel.BatchMean: {samplesHere} samples on this rank of {samplesAllRanks} in all is not a share");
        return SumOverRanks(samplesHere == 0 ? 0 : meanHere * samplesHere / samplesAllRanks);
    }

    /// <summary>
    /// Waits for every bucket's all-reduce (starting those backward did not complete) and sets each parameter's gradient to
    /// the sum over ranks of each rank's weighted gradient: the average over ranks, as DDP, unless <see cref="SetBatchShare"/>
    /// set this step's weight. Collective: every rank calls it once per step, between Backward and the optimizer step.
    /// </summary>
    public void SynchronizeGradients()
    {
        if (Communicator.Size == 1) { _weight = null; return; }
        var clock = Stopwatch.StartNew();
        foreach (var b in _buckets)
            if (!b.Launched) b.ZeroMissing();
        for (; _nextLaunch < _buckets.Count; _nextLaunch++) _buckets[_nextLaunch].Launch(Communicator, _weight);
        foreach (var b in _buckets) b.Request!.Wait();
        ExposedCommunicationSeconds += clock.Elapsed.TotalSeconds;
        foreach (var b in _buckets) b.WriteBack();
        if (Options.BroadcastBuffers) foreach (var (_, t) in _buffers) BroadcastFromPrimary(t);
        foreach (var b in _buckets) b.Reset();
        _nextLaunch = 0;
        _weight = null;
    }

    /// <summary>The mean of <paramref name="value"/> over ranks (a step's loss), within the communicator's timeout.</summary>
    public double AverageOverRanks(double value) => SumOverRanks(value) / Communicator.Size;

    /// <summary>The sum of <paramref name="value"/> over ranks, within the communicator's timeout.</summary>
    public double SumOverRanks(double value)
    {
        if (Communicator.Size == 1) return value;
        _scalar[0] = value;
        Communicator.StartAllreduceSum(_scalar, 0, 1).Wait();
        return _scalar[0];
    }

    /// <summary>
    /// True on every rank when any rank passes true (a time budget spent on one rank's clock), so that all ranks leave a
    /// loop together instead of one waiting alone in the next gradient all-reduce.
    /// </summary>
    public bool AnyRank(bool here) => SumOverRanks(here ? 1 : 0) > 0;

    /// <summary>
    /// Fails unless every rank passes the same <paramref name="value"/> (the step a resumed run starts from, a batch size),
    /// naming <paramref name="what"/> and each rank's value.
    /// </summary>
    public void CheckAgreement(string what, long value)
    {
        if (Communicator.Size == 1) return;
        var all = new long[Communicator.Size];
        Communicator.Allgather<long>([value], all);
        if (all.Any(v => v != all[0]))
            throw new InvalidOperationException($"DataParallel: the ranks disagree on {what}: {string.Join(", ", all.Select((v, r) => $"rank {r} has {v}"))}");
    }

    /// <summary>Removes the gradient hooks.</summary>
    public void Dispose()
    {
        foreach (var h in _hooks) h.Dispose();
        _hooks.Clear();
    }

    private void OnGradientReady(Tensor parameter)
    {
        if (!_slotOf.TryGetValue(parameter, out var at)) return;
        var (bucket, slot) = at;
        if (bucket.Launched)
            throw new InvalidOperationException($"DataParallel: backward reached '{bucket.Names[slot]}' again after its bucket's all-reduce started; call SynchronizeGradients after each Backward (gradient accumulation over several backward passes is not supported)");
        bucket.Stage(slot, parameter.Grad!);
        // Launch in bucket order only: every rank must issue the same collectives in the same order.
        while (_nextLaunch < _buckets.Count && _buckets[_nextLaunch].Complete)
        {
            _buckets[_nextLaunch++].Launch(Communicator, _weight);
            BucketsStartedInBackward++;
        }
        // Open MPI progresses non-blocking collectives only inside MPI calls: test the oldest one in flight now and then.
        foreach (var b in _buckets)
            if (b.Request is { } r && !r.Test()) break;
    }

    private void BuildBuckets((string Name, Tensor Parameter)[] ps)
    {
        Bucket? current = null;
        for (int i = ps.Length - 1; i >= 0; i--)
        {
            var (name, p) = ps[i];
            long bytes = p.Numel * p.DType.SizeOf();
            if (current is null || current.DType != p.DType || current.Bytes >= Options.BucketBytes || current.Elements + p.Numel > Array.MaxLength)
            {
                current = new Bucket(p.DType);
                _buckets.Add(current);
            }
            _slotOf[p] = (current, current.Add(name, p));
            current.Bytes += bytes;
        }
        foreach (var b in _buckets) b.Allocate();
    }

    private void BroadcastFromPrimary(Tensor t)
    {
        if (t.DType == DType.Float64) { var host = t.ToArray<double>(); Communicator.Broadcast<double>(host); if (!Communicator.IsPrimary) Upload(t, host); }
        else if (t.DType == DType.Float32) { var host = t.ToArray<float>(); Communicator.Broadcast<float>(host); if (!Communicator.IsPrimary) Upload(t, host); }
        else if (t.DType == DType.Int64) { var host = t.ToArray<long>(); Communicator.Broadcast<long>(host); if (!Communicator.IsPrimary) Upload(t, host); }
        else throw new NotSupportedException($"DataParallel: cannot broadcast a {t.DType} tensor {Shape.Format(t.Shape)}");
    }

    private static void Upload<T>(Tensor t, T[] host) where T : unmanaged
    {
        using var ng = new NoGrad();
        using var src = Tensor.FromArray(host, t.Shape, t.Device);
        t.CopyFrom(src);
    }

    private static void CheckSameModel(Communicator comm, (string Name, Tensor Parameter)[] ps, (string Name, Tensor Buffer)[] bs)
    {
        var entries = ps.Select(p => $"parameter '{p.Name}' {p.Parameter.DType.Name()} {Shape.Format(p.Parameter.Shape)}")
            .Concat(bs.Select(b => $"buffer '{b.Name}' {b.Buffer.DType.Name()} {Shape.Format(b.Buffer.Shape)}")).ToArray();
        byte[] description = Encoding.UTF8.GetBytes(string.Join("\n", entries));
        var mine = new long[] { (long)Fnv1a(description), entries.Length, description.Length };
        var all = new long[3 * comm.Size];
        comm.Allgather<long>(mine, all);
        bool same = Enumerable.Range(1, comm.Size - 1).All(r => all[3 * r] == all[0] && all[3 * r + 1] == all[1] && all[3 * r + 2] == all[2]);
        if (same) return;
        // Every rank sees the same gathered hashes, so all of them take this branch and the second gather matches.
        int longest = (int)Enumerable.Range(0, comm.Size).Max(r => all[3 * r + 2]);
        var padded = new byte[longest];
        description.CopyTo(padded, 0);
        var texts = new byte[longest * comm.Size];
        comm.Allgather<byte>(padded, texts);
        string[] Of(int r) => Encoding.UTF8.GetString(texts, r * longest, (int)all[3 * r + 2]).Split('\n');
        var reference = Of(0);
        for (int r = 1; r < comm.Size; r++)
        {
            var other = Of(r);
            if (other.SequenceEqual(reference)) continue;
            int k = 0;
            while (k < Math.Min(other.Length, reference.Length) && other[k] == reference[k]) k++;
            string theirs = k < other.Length ? other[k] : "nothing more", ours = k < reference.Length ? reference[k] : "nothing more";
            throw new InvalidOperationException($"DataParallel: the ranks hold different models: tensor {k + 1} is {theirs} on rank {r} but {ours} on rank 0 " +
                $"(rank {r} has {other.Length} parameters and buffers, rank 0 has {reference.Length}); every rank must build the same model with the same options");
        }
    }

    private static ulong Fnv1a(ReadOnlySpan<byte> bytes)
    {
        ulong h = 14695981039346656037UL;
        foreach (byte b in bytes) { h ^= b; h *= 1099511628211UL; }
        return h;
    }

    // One bucket: a pinned host buffer of one dtype holding several parameters' gradients back to back.
    private sealed class Bucket(DType dtype)
    {
        private readonly List<Tensor> _params = [];
        private readonly List<long> _offsets = [];
        private bool[] _staged = [];
        private int _stagedCount;
        private float[]? _f;
        private double[]? _d;

        public DType DType { get; } = dtype;
        public long Bytes { get; set; }
        public long Elements { get; private set; }
        public List<string> Names { get; } = [];
        public AllreduceRequest? Request { get; private set; }
        public bool Launched => Request is not null;
        public bool Complete => _stagedCount == _params.Count;

        public int Add(string name, Tensor p)
        {
            Names.Add(name);
            _params.Add(p);
            _offsets.Add(Elements);
            Elements += p.Numel;
            return _params.Count - 1;
        }

        public void Allocate()
        {
            _staged = new bool[_params.Count];
            if (DType == DType.Float64) _d = GC.AllocateArray<double>((int)Elements, pinned: true);
            else _f = GC.AllocateArray<float>((int)Elements, pinned: true);
        }

        public void Stage(int slot, Tensor grad)
        {
            int offset = (int)_offsets[slot], n = (int)_params[slot].Numel;
            if (_d is not null) grad.CopyToHost(_d.AsSpan(offset, n));
            else grad.CopyToHost(_f.AsSpan(offset, n));
            if (!_staged[slot]) { _staged[slot] = true; _stagedCount++; }
        }

        public void ZeroMissing()
        {
            for (int i = 0; i < _params.Count; i++)
            {
                if (_staged[i]) continue;
                if (_d is not null) _d.AsSpan((int)_offsets[i], (int)_params[i].Numel).Clear();
                else _f.AsSpan((int)_offsets[i], (int)_params[i].Numel).Clear();
                _staged[i] = true; _stagedCount++;
            }
        }

        // The weight is applied before the sum (so unequal shards can be weighted); null means 1 / ranks.
        public void Launch(Communicator comm, double? weight)
        {
            double w = weight ?? 1.0 / comm.Size;
            if (_d is not null) { TensorPrimitives.Multiply(_d, w, _d); Request = comm.StartAllreduceSum(_d, 0, _d.Length); }
            else { TensorPrimitives.Multiply(_f, (float)w, _f); Request = comm.StartAllreduceSum(_f!, 0, _f!.Length); }
        }

        public void WriteBack()
        {
            for (int i = 0; i < _params.Count; i++)
            {
                var p = _params[i];
                int offset = (int)_offsets[i], n = (int)p.Numel;
                if (_d is not null) p.SetGradFromHost<double>(_d.AsSpan(offset, n));
                else p.SetGradFromHost<float>(_f.AsSpan(offset, n));
            }
        }

        public void Reset()
        {
            Request = null;
            Array.Clear(_staged);
            _stagedCount = 0;
        }
    }
}
