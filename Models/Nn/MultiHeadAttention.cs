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

    /// <summary>
    /// The inference step: writes the keys and values of the packed projection qkv [B, t, (H + 2·Hkv)·Dh] into the
    /// cache and returns the merged heads [B, t, H·Dh] of the t queries attending causally to everything cached
    /// (<see cref="Tensor.CachedSelfAttention"/>).
    /// </summary>
    internal Tensor AppendAndAttend(Tensor qkv, int heads, int kvHeads)
    {
        var merged = Tensor.CachedSelfAttention(qkv, heads, Keys, Values, Length, kvHeads);
        Length += qkv.Size(1);
        return merged;
    }

    /// <summary>
    /// Counts <paramref name="positions"/> more positions as stored, for a caller that wrote their keys and values into
    /// <see cref="Keys"/> and <see cref="Values"/> itself (GptDecoder's kernel-level step).
    /// </summary>
    internal void Advance(int positions)
    {
        if (positions < 0 || Length + positions > MaxLength)
            throw new ArgumentOutOfRangeException(nameof(positions), positions, $"KeyValueCache.Advance: {Length} + {positions} positions exceed the capacity {MaxLength}");
        Length += positions;
    }

    /// <summary>Forgets every position.</summary>
    public void Clear() => Length = 0;

    /// <summary>Frees the cache.</summary>
    public void Dispose() { Keys.Dispose(); Values.Dispose(); }
}

/// <summary>
/// Multi-head attention ("Attention Is All You Need", 3.2.2), optionally grouped-query (Ainslie et al. 2023,
/// "GQA": <c>kvHeads</c> key/value heads shared by groups of query heads; 1 is multi-query attention, Shazeer
/// 2019). Self-attention projects q, k, v with one fused weight (`qkv`: [3D, D], or [D + 2·Hkv·Dh, D] with
/// grouped-query heads, rows in the order q, k, v); cross-attention projects the query with `q` and the memory
/// with `kv` ([2·Hkv·Dh, D]). Uses <see cref="Tensor.ScaledDotProductAttention"/> unless the weights are asked for.
/// </summary>
public sealed class MultiHeadAttention : Module
{
    private readonly Linear? _qkv, _q, _kv;
    private readonly Linear _proj;

    /// <summary>
    /// Attention over <paramref name="dim"/>-wide vectors split into <paramref name="heads"/> query heads and
    /// <paramref name="kvHeads"/> key/value heads (0: as many as query heads; it must divide <paramref name="heads"/>).
    /// </summary>
    public MultiHeadAttention(int dim, int heads, bool crossAttention = false, double dropout = 0, bool bias = true, Generator? generator = null, Device? device = null,
        int kvHeads = 0)
    {
        if (heads <= 0 || dim % heads != 0) throw new ArgumentException($"MultiHeadAttention: dim {dim} is not divisible by {heads} heads");
        int hkv = kvHeads == 0 ? heads : kvHeads;
        if (hkv <= 0 || heads % hkv != 0) throw new ArgumentException($"MultiHeadAttention: {heads} query heads are not a multiple of {kvHeads} key/value heads");
        Dim = dim; Heads = heads; KvHeads = hkv; Dropout = dropout; IsCrossAttention = crossAttention;
        _generator = generator ?? Generator.Default;
        int kvDim = hkv * (dim / heads);
        if (crossAttention)
        {
            _q = Child("q", new Linear(dim, dim, bias, _generator, device));
            _kv = Child("kv", new Linear(dim, 2 * kvDim, bias, _generator, device));
        }
        else _qkv = Child("qkv", new Linear(dim, dim + 2 * kvDim, bias, _generator, device));
        _proj = Child("proj", new Linear(dim, dim, bias, _generator, device));
    }

    private readonly Generator _generator;

    /// <summary>Model width.</summary>
    public int Dim { get; }
    /// <summary>Number of (query) heads.</summary>
    public int Heads { get; }
    /// <summary>Number of key/value heads (<see cref="Heads"/> unless grouped-query); a <see cref="KeyValueCache"/> for this layer has this many.</summary>
    public int KvHeads { get; }
    /// <summary>Dropout on the attention weights (training only).</summary>
    public double Dropout { get; }
    /// <summary>True for encoder-decoder attention.</summary>
    public bool IsCrossAttention { get; }
    /// <summary>When set, Forward keeps the attention weights [B, H, Tq, Tk] of the last call in <see cref="LastWeights"/>.</summary>
    public bool KeepWeights { get; set; }
    /// <summary>The weights of the last Forward when <see cref="KeepWeights"/> is on.</summary>
    public Tensor? LastWeights { get; private set; }

    // [B, T, n·Dh] -> [B, n, T, Dh]
    private Tensor SplitHeads(Tensor x, int heads) { using var r = x.Reshape(x.Size(0), x.Size(1), heads, Dim / Heads); return r.Transpose(1, 2); }

    /// <summary>
    /// x [B, Tq, D] attends to itself, or to <paramref name="memory"/> [B, Tk, D] for cross-attention.
    /// <paramref name="keyPaddingMask"/> [B, Tk] hides padded keys; <paramref name="mask"/> is an additive mask
    /// broadcastable to [B, Heads, Tq, Tk] (0 keeps, -inf hides, see <see cref="Tensor.ScaledDotProductAttention"/>);
    /// <paramref name="cache"/> makes a self-attention step attend to all earlier positions too.
    /// </summary>
    public Tensor Forward(Tensor x, Tensor? memory = null, Tensor? keyPaddingMask = null, bool causal = false, KeyValueCache? cache = null, Tensor? mask = null)
    {
        if (x.Rank != 3 || x.Size(2) != Dim) throw new ArgumentException($"MultiHeadAttention: input must be [B, T, {Dim}], got {Shape.Format(x.Shape)}");
        if (IsCrossAttention != memory is not null) throw new ArgumentException($"MultiHeadAttention: {(IsCrossAttention ? "cross-attention needs" : "self-attention takes no")} memory");
        using var scope = new TensorScope();
        Tensor q, k, v;
        double dropoutP = Training ? Dropout : 0;
        if (_qkv is not null && cache is null && !KeepWeights)
        {
            // The common training path: one fused kernel from the packed projection to the merged heads.
            var merged0 = Tensor.PackedSelfAttention(_qkv.Forward(x), Heads, keyPaddingMask, causal, dropoutP, _generator, mask, KvHeads);
            return scope.Keep(_proj.Forward(merged0));
        }
        if (_qkv is not null && cache is not null && causal && !KeepWeights && mask is null && keyPaddingMask is null && !GradMode.IsEnabled
            && (!Training || Dropout == 0))
        {
            // Decoding: the new keys and values go straight from the projection into the cache, no head views.
            return scope.Keep(_proj.Forward(cache.AppendAndAttend(_qkv.Forward(x), Heads, KvHeads)));
        }
        int kvDim = KvHeads * (Dim / Heads);
        if (_qkv is not null)
        {
            var qkv = _qkv.Forward(x);
            (q, k, v) = (SplitHeads(qkv.Narrow(-1, 0, Dim), Heads), SplitHeads(qkv.Narrow(-1, Dim, kvDim), KvHeads), SplitHeads(qkv.Narrow(-1, Dim + kvDim, kvDim), KvHeads));
            if (cache is not null) (k, v) = cache.Append(k, v);
        }
        else
        {
            q = SplitHeads(_q!.Forward(x), Heads);
            var kv = _kv!.Forward(memory!);
            (k, v) = (SplitHeads(kv.Narrow(-1, 0, kvDim), KvHeads), SplitHeads(kv.Narrow(-1, kvDim, kvDim), KvHeads));
        }
        double p = Training ? Dropout : 0;
        Tensor a;
        if (KeepWeights)
        {
            var (o, w) = Tensor.AttentionWithWeights(q, k, v, keyPaddingMask, causal, p, _generator, mask: mask);
            LastWeights?.Dispose();
            using (new NoGrad()) LastWeights = TensorScopeEscape(w.Detach());
            a = o;
        }
        else a = Tensor.ScaledDotProductAttention(q, k, v, keyPaddingMask, causal, p, _generator, mask: mask);
        var merged = a.Transpose(1, 2).Reshape(x.Size(0), x.Size(1), Dim);
        return scope.Keep(_proj.Forward(merged));
    }

    /// <summary>
    /// Self-attention with residual attention scores (He et al., "RealFormer", 2020; PatchTST's code default
    /// <c>res_attention=True</c>): S = Q Kᵀ/√Dh + <paramref name="previousScores"/>, O = softmax(S) V, and S [B, H, T, T]
    /// is handed back in <paramref name="scores"/> for the next layer to add to its own. Unfused (matmul, softmax,
    /// matmul): the next layer reads S and its gradient flows back through it, which the fused kernel, keeping no
    /// scores, cannot give. Attention dropout as <see cref="Forward"/>; <see cref="KeepWeights"/> keeps softmax(S).
    /// </summary>
    public Tensor ForwardResidual(Tensor x, Tensor? previousScores, out Tensor scores)
    {
        if (_qkv is null || KvHeads != Heads) throw new InvalidOperationException($"MultiHeadAttention.ForwardResidual: needs self-attention with as many key/value heads as query heads (cross-attention {IsCrossAttention}, {Heads} heads, {KvHeads} key/value heads)");
        if (x.Rank != 3 || x.Size(2) != Dim) throw new ArgumentException($"MultiHeadAttention.ForwardResidual: input must be [B, T, {Dim}], got {Shape.Format(x.Shape)}");
        int t = x.Size(1);
        if (previousScores is not null && !previousScores.Shape.SequenceEqual(new[] { x.Size(0), Heads, t, t }))
            throw new ArgumentException($"MultiHeadAttention.ForwardResidual: previous scores must be [{x.Size(0)}, {Heads}, {t}, {t}], got {Shape.Format(previousScores.Shape)}");
        using var scope = new TensorScope();
        var qkv = _qkv.Forward(x);
        var (q, k, v) = (SplitHeads(qkv.Narrow(-1, 0, Dim), Heads), SplitHeads(qkv.Narrow(-1, Dim, Dim), Heads), SplitHeads(qkv.Narrow(-1, 2 * Dim, Dim), Heads));
        var s = q.MatMul(k.Transpose(-1, -2)) * (1.0 / Math.Sqrt(Dim / Heads));
        if (previousScores is not null) s = s + previousScores;
        var w = s.Softmax(-1);
        if (KeepWeights)
        {
            LastWeights?.Dispose();
            using (new NoGrad()) LastWeights = TensorScopeEscape(w.Detach());
        }
        if (Training && Dropout > 0)
        {
            var keep = Tensor.DropoutMask(w.Shape, Dropout, _generator, w.DType, w.Device);
            w = w * keep;
        }
        var merged = w.MatMul(v).Transpose(1, 2).Reshape(x.Size(0), t, Dim);
        scores = scope.Keep(s);
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
