namespace AttnCore.Optim;

/// <summary>Parameters that share hyper-parameters (PyTorch's param_groups). Options not set fall back to the optimizer's defaults.</summary>
public sealed class ParamGroup
{
    /// <summary>A group of <paramref name="parameters"/>, optionally with its own learning rate and weight decay.</summary>
    public ParamGroup(IEnumerable<Tensor> parameters, double? learningRate = null, double? weightDecay = null)
    {
        Parameters = parameters.ToArray();
        LearningRateOverride = learningRate;
        WeightDecayOverride = weightDecay;
    }

    /// <summary>The tensors this group updates.</summary>
    public IReadOnlyList<Tensor> Parameters { get; }
    internal double? LearningRateOverride { get; }
    internal double? WeightDecayOverride { get; }
    /// <summary>The learning rate in force (schedules write it).</summary>
    public double LearningRate { get; set; }
    /// <summary>The learning rate the group started with (schedules scale it).</summary>
    public double InitialLearningRate { get; internal set; }
    /// <summary>The weight decay of this group.</summary>
    public double WeightDecay { get; set; }
}

/// <summary>
/// Base of SGD, Adam and AdamW: parameter groups, per-parameter state buffers on the parameter's device,
/// ZeroGrad, and a state file that restores training bit for bit.
/// </summary>
public abstract class Optimizer : IDisposable
{
    private readonly Dictionary<Tensor, Tensor[]> _state = new(ReferenceEqualityComparer.Instance);

    /// <summary>Sets up the groups with the optimizer's default learning rate and weight decay.</summary>
    protected Optimizer(IEnumerable<ParamGroup> groups, double learningRate, double weightDecay)
    {
        if (learningRate < 0) throw new ArgumentException($"{GetType().Name}: learning rate must be non-negative, got {learningRate}");
        ParamGroups = groups.ToArray();
        if (ParamGroups.Count == 0 || ParamGroups.All(g => g.Parameters.Count == 0))
            throw new ArgumentException($"{GetType().Name}: got no parameters to optimize");
        foreach (var g in ParamGroups)
        {
            g.LearningRate = g.InitialLearningRate = g.LearningRateOverride ?? learningRate;
            g.WeightDecay = g.WeightDecayOverride ?? weightDecay;
            foreach (var p in g.Parameters)
            {
                if (!p.RequiresGrad || !p.IsLeaf) throw new ArgumentException($"{GetType().Name}: parameter {Shape.Format(p.Shape)} must be a leaf tensor with RequiresGrad = true");
                if (!p.IsContiguous || p.Layout.Offset != 0) throw new ArgumentException($"{GetType().Name}: parameter {Shape.Format(p.Shape)} must be contiguous");
            }
        }
    }

    /// <summary>The parameter groups.</summary>
    public IReadOnlyList<ParamGroup> ParamGroups { get; }

    /// <summary>Number of Step calls so far.</summary>
    public long StepCount { get; protected set; }

    /// <summary>How many state buffers each parameter keeps (Adam: 2; SGD with momentum: 1).</summary>
    protected abstract int BuffersPerParameter { get; }

    /// <summary>The state buffers of <paramref name="p"/>, created as zeros on first use.</summary>
    protected Tensor[] State(Tensor p)
    {
        if (_state.TryGetValue(p, out var s)) return s;
        var scope = TensorScope.Suspend();
        try
        {
            s = new Tensor[BuffersPerParameter];
            for (int i = 0; i < s.Length; i++) s[i] = Tensor.Zeros(p.Shape, p.DType, p.Device);
        }
        finally { TensorScope.Resume(scope); }
        _state[p] = s;
        return s;
    }

    /// <summary>Updates every parameter that has a gradient.</summary>
    public void Step()
    {
        StepCount++;
        using var ng = new NoGrad();
        foreach (var g in ParamGroups)
            foreach (var p in g.Parameters)
                if (p.Grad is { } grad) Update(g, p, grad);
    }

    /// <summary>The update of one parameter.</summary>
    protected abstract void Update(ParamGroup group, Tensor parameter, Tensor grad);

    /// <summary>Drops every parameter's gradient.</summary>
    public void ZeroGrad()
    {
        foreach (var g in ParamGroups) g.Parameters.ZeroGrad();
    }

    /// <summary>Writes the step count, each group's learning rate and weight decay, and every state buffer.</summary>
    public void SaveState(BinaryWriter w)
    {
        w.Write("AttnCore.Optimizer/1"); w.Write(GetType().Name); w.Write(StepCount); w.Write(ParamGroups.Count);
        foreach (var g in ParamGroups)
        {
            w.Write(g.LearningRate); w.Write(g.InitialLearningRate); w.Write(g.WeightDecay); w.Write(g.Parameters.Count);
            foreach (var p in g.Parameters)
            {
                bool has = _state.TryGetValue(p, out var bufs);
                w.Write(has);
                if (has) foreach (var b in bufs!) TensorIO.Write(w, b);
            }
        }
        WriteExtra(w);
    }

    /// <summary>Per-optimizer state beyond the buffers (per-parameter step counts ...).</summary>
    protected virtual void WriteExtra(BinaryWriter w) { }

    /// <summary>Reads what <see cref="WriteExtra"/> wrote.</summary>
    protected virtual void ReadExtra(BinaryReader r) { }

    /// <summary>Restores what <see cref="SaveState"/> wrote; the groups must have the same parameter shapes.</summary>
    public void LoadState(BinaryReader r)
    {
        string magic = r.ReadString(), kind = r.ReadString();
        if (magic != "AttnCore.Optimizer/1" || kind != GetType().Name)
            throw new InvalidDataException($"{GetType().Name}.LoadState: the state was written by '{kind}' ({magic}), not by {GetType().Name}");
        long steps = r.ReadInt64();
        if (steps < 0) throw new InvalidDataException($"{GetType().Name}.LoadState: the state has a negative step count ({steps})");
        int groups = r.ReadInt32();
        if (groups != ParamGroups.Count) throw new InvalidDataException($"{GetType().Name}.LoadState: the state has {groups} parameter groups, the optimizer {ParamGroups.Count}");
        foreach (var g in ParamGroups)
        {
            double lr = r.ReadDouble(), initialLr = r.ReadDouble(), weightDecay = r.ReadDouble();
            if (!double.IsFinite(lr) || !double.IsFinite(initialLr) || !double.IsFinite(weightDecay) || lr < 0 || initialLr < 0 || weightDecay < 0)
                throw new InvalidDataException($"{GetType().Name}.LoadState: a group has learning rate {lr}, initial {initialLr}, weight decay {weightDecay} (expected finite, non-negative)");
            (g.LearningRate, g.InitialLearningRate, g.WeightDecay) = (lr, initialLr, weightDecay);
            int count = r.ReadInt32();
            if (count != g.Parameters.Count) throw new InvalidDataException($"{GetType().Name}.LoadState: a group has {count} parameters in the state, {g.Parameters.Count} in the optimizer");
            foreach (var p in g.Parameters)
            {
                if (!r.ReadBoolean()) continue;
                var bufs = State(p);
                foreach (var b in bufs)
                {
                    using var loaded = TensorIO.Read(r, p.Device);
                    if (!loaded.Shape.SequenceEqual(p.Shape)) throw new InvalidDataException($"{GetType().Name}.LoadState: a state buffer has shape {Shape.Format(loaded.Shape)}, its parameter {Shape.Format(p.Shape)}");
                    b.CopyFrom(loaded);
                }
            }
        }
        StepCount = steps;
        ReadExtra(r);
    }

    /// <summary>Frees the state buffers.</summary>
    public void Dispose()
    {
        foreach (var s in _state.Values) foreach (var t in s) t.Dispose();
        _state.Clear();
        GC.SuppressFinalize(this);
    }
}

/// <summary>Raw tensor (de)serialisation for optimizer and schedule state: dtype, shape, then the exact bits.</summary>
public static class TensorIO
{
    /// <summary>Writes <paramref name="t"/> exactly (no rounding).</summary>
    public static void Write(BinaryWriter w, Tensor t)
    {
        w.Write((int)t.DType); w.Write(t.Rank);
        foreach (var d in t.Shape) w.Write(d);
        switch (t.DType)
        {
            case DType.Float32: foreach (var v in t.ToArray<float>()) w.Write(v); break;
            case DType.Float64: foreach (var v in t.ToArray<double>()) w.Write(v); break;
            default: foreach (var v in t.ToArray<long>()) w.Write(v); break;
        }
    }

    /// <summary>Reads a tensor written by <see cref="Write"/> onto <paramref name="device"/>.</summary>
    public static Tensor Read(BinaryReader r, Device device)
    {
        var dtype = (DType)r.ReadInt32();
        if (!Enum.IsDefined(dtype)) throw new InvalidDataException($"TensorIO.Read: unknown dtype code {(int)dtype}");
        int rank = r.ReadInt32();
        if (rank < 0 || rank > 16) throw new InvalidDataException($"TensorIO.Read: implausible rank {rank}");
        var shape = new int[rank];
        for (int i = 0; i < rank; i++) { shape[i] = r.ReadInt32(); if (shape[i] < 0) throw new InvalidDataException($"TensorIO.Read: negative dimension {shape[i]}"); }
        long bytesLeft = r.BaseStream.CanSeek ? r.BaseStream.Length - r.BaseStream.Position : long.MaxValue;
        // Counted against what the stream holds as it grows, so a corrupted shape can neither overflow nor allocate past the file.
        long n = 1, fits = Math.Min(bytesLeft / dtype.SizeOf(), Array.MaxLength);
        foreach (int d in shape)
        {
            if (d != 0 && n > fits / d) throw new InvalidDataException($"TensorIO.Read: shape {Shape.Format(shape)} needs more than the {bytesLeft} bytes the stream has");
            n *= d;
        }
        switch (dtype)
        {
            case DType.Float32: { var a = new float[n]; for (long i = 0; i < n; i++) a[i] = r.ReadSingle(); return Tensor.FromArray(a, shape, device); }
            case DType.Float64: { var a = new double[n]; for (long i = 0; i < n; i++) a[i] = r.ReadDouble(); return Tensor.FromArray(a, shape, device); }
            case DType.Int64: { var a = new long[n]; for (long i = 0; i < n; i++) a[i] = r.ReadInt64(); return Tensor.FromArray(a, shape, device); }
            default: throw new InvalidDataException($"TensorIO.Read: unknown dtype code {(int)dtype}");
        }
    }
}
