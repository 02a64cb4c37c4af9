namespace AttnCore.Models.Nn;

/// <summary>
/// Keys and values of the positions seen so far, per layer, so that generating token t costs O(t)
/// instead of recomputing all t positions: K and V live in preallocated [B, H, MaxLength, Dh] tensors and
/// each step writes its slice in place.
/// </summary>
public sealed class KeyValueCache : IDisposable
{
    /// <summary>An empty cache for sequences of up to <paramref name="maxLength"/>.</summary>
    public KeyValueCache(int batch, int heads, int maxLength, int headDim, Device device)
    {
        var scope = TensorScope.Suspend();
        try
        {
            Keys = Tensor.Zeros([batch, heads, maxLength, headDim], DType.Float32, device);
            Values = Tensor.Zeros([batch, heads, maxLength, headDim], DType.Float32, device);
        }
        finally { TensorScope.Resume(scope); }
        MaxLength = maxLength;
    }

    internal Tensor Keys { get; }
    internal Tensor Values { get; }
    /// <summary>Capacity in positions.</summary>
    public int MaxLength { get; }
    /// <summary>Positions stored so far.</summary>
    public int Length { get; private set; }

    /// <summary>Appends k and v [B, H, t, Dh] and returns views of everything cached so far.</summary>
    internal (Tensor K, Tensor V) Append(Tensor k, Tensor v)
    {
        int t = k.Size(2);
        if (Length + t > MaxLength) throw new InvalidOperationException($"KeyValueCache: {Length} + {t} positions exceed the capacity {MaxLength}");
        using (var ks = Keys.Narrow(2, Length, t)) ks.CopyFrom(k);
        using (var vs = Values.Narrow(2, Length, t)) vs.CopyFrom(v);
        Length += t;
        return (Keys.Narrow(2, 0, Length), Values.Narrow(2, 0, Length));
    }

    /// <summary>Forgets every position.</summary>
    public void Clear() => Length = 0;

    /// <summary>Frees the cache.</summary>
    public void Dispose() { Keys.Dispose(); Values.Dispose(); }
}

/// <summary>
/// Multi-head attention ("Attention Is All You Need", 3.2.2). Self-attention projects q, k, v with one
/// fused [3D, D] weight (`qkv`); cross-attention projects the query with `q` and the memory with `kv`.
/// Uses <see cref="Tensor.ScaledDotProductAttention"/> unless the weights are asked for.
/// </summary>
public sealed class MultiHeadAttention : Module
{
    private readonly Linear? _qkv, _q, _kv;
    private readonly Linear _proj;

    /// <summary>Attention over <paramref name="dim"/>-wide vectors split into <paramref name="heads"/> heads.</summary>
    public MultiHeadAttention(int dim, int heads, bool crossAttention = false, double dropout = 0, bool bias = true, Generator? generator = null, Device? device = null)
    {
        if (heads <= 0 || dim % heads != 0) throw new ArgumentException($"MultiHeadAttention: dim {dim} is not divisible by {heads} heads");
        Dim = dim; Heads = heads; Dropout = dropout; IsCrossAttention = crossAttention;
        _generator = generator ?? Generator.Default;
        if (crossAttention)
        {
            _q = Child("q", new Linear(dim, dim, bias, _generator, device));
            _kv = Child("kv", new Linear(dim, 2 * dim, bias, _generator, device));
        }
        else _qkv = Child("qkv", new Linear(dim, 3 * dim, bias, _generator, device));
        _proj = Child("proj", new Linear(dim, dim, bias, _generator, device));
    }

    private readonly Generator _generator;

    /// <summary>Model width.</summary>
    public int Dim { get; }
    /// <summary>Number of heads.</summary>
    public int Heads { get; }
    /// <summary>Dropout on the attention weights (training only).</summary>
    public double Dropout { get; }
    /// <summary>True for encoder-decoder attention.</summary>
    public bool IsCrossAttention { get; }
    /// <summary>When set, Forward keeps the attention weights [B, H, Tq, Tk] of the last call in <see cref="LastWeights"/>.</summary>
    public bool KeepWeights { get; set; }
    /// <summary>The weights of the last Forward when <see cref="KeepWeights"/> is on.</summary>
    public Tensor? LastWeights { get; private set; }

    // [B, T, D] -> [B, H, T, Dh]
    private Tensor SplitHeads(Tensor x) { using var r = x.Reshape(x.Size(0), x.Size(1), Heads, Dim / Heads); return r.Transpose(1, 2); }

    /// <summary>
    /// x [B, Tq, D] attends to itself, or to <paramref name="memory"/> [B, Tk, D] for cross-attention.
    /// <paramref name="keyPaddingMask"/> [B, Tk] hides padded keys; <paramref name="cache"/> makes a
    /// self-attention step attend to all earlier positions too.
    /// </summary>
    public Tensor Forward(Tensor x, Tensor? memory = null, Tensor? keyPaddingMask = null, bool causal = false, KeyValueCache? cache = null)
    {
        if (x.Rank != 3 || x.Size(2) != Dim) throw new ArgumentException($"MultiHeadAttention: input must be [B, T, {Dim}], got {Shape.Format(x.Shape)}");
        if (IsCrossAttention != memory is not null) throw new ArgumentException($"MultiHeadAttention: {(IsCrossAttention ? "cross-attention needs" : "self-attention takes no")} memory");
        using var scope = new TensorScope();
        Tensor q, k, v;
        double dropoutP = Training ? Dropout : 0;
        if (_qkv is not null && cache is null && !KeepWeights)
        {
            // The common training path: one fused kernel from the packed projection to the merged heads.
            var merged0 = Tensor.PackedSelfAttention(_qkv.Forward(x), Heads, keyPaddingMask, causal, dropoutP, _generator);
            return scope.Keep(_proj.Forward(merged0));
        }
        if (_qkv is not null)
        {
            var parts = _qkv.Forward(x).Chunk(3, -1);
            (q, k, v) = (SplitHeads(parts[0]), SplitHeads(parts[1]), SplitHeads(parts[2]));
            if (cache is not null) (k, v) = cache.Append(k, v);
        }
        else
        {
            q = SplitHeads(_q!.Forward(x));
            var kv = _kv!.Forward(memory!).Chunk(2, -1);
            (k, v) = (SplitHeads(kv[0]), SplitHeads(kv[1]));
        }
        double p = Training ? Dropout : 0;
        Tensor a;
        if (KeepWeights)
        {
            var (o, w) = Tensor.AttentionWithWeights(q, k, v, keyPaddingMask, causal, p, _generator);
            LastWeights?.Dispose();
            using (new NoGrad()) LastWeights = TensorScopeEscape(w.Detach());
            a = o;
        }
        else a = Tensor.ScaledDotProductAttention(q, k, v, keyPaddingMask, causal, p, _generator);
        var merged = a.Transpose(1, 2).Reshape(x.Size(0), x.Size(1), Dim);
        return scope.Keep(_proj.Forward(merged));
    }

    private static Tensor TensorScopeEscape(Tensor t)
    {
        var s = TensorScope.Suspend();
        try { return t.Clone(); } finally { TensorScope.Resume(s); }
    }

    /// <inheritdoc/>
    public override void Dispose() { LastWeights?.Dispose(); base.Dispose(); }
}
