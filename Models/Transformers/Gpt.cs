using AttnCore.Models.Nn;

namespace AttnCore.Models.Transformers;

/// <summary>Sizes of a decoder-only <see cref="Gpt"/> (nanoGPT's names).</summary>
public sealed record GptConfig(int Vocab, int BlockSize = 64, int Layers = 4, int Heads = 4, int Dim = 128, double Dropout = 0, bool Bias = false);

/// <summary>One GPT-2 block: x + attn(ln1(x)), then + mlp(ln2(x)).</summary>
public sealed class GptBlock : Module
{
    private readonly LayerNorm _ln1, _ln2;
    private readonly MultiHeadAttention _attn;
    private readonly FeedForward _mlp;
    private readonly Dropout _drop;

    /// <summary>A block of the given config.</summary>
    public GptBlock(GptConfig c, Generator g, Device? device)
    {
        _ln1 = Child("ln1", new LayerNorm(c.Dim, device: device, bias: c.Bias));
        _attn = Child("attn", new MultiHeadAttention(c.Dim, c.Heads, false, c.Dropout, c.Bias, g, device));
        _ln2 = Child("ln2", new LayerNorm(c.Dim, device: device, bias: c.Bias));
        _mlp = Child("mlp", new FeedForward(c.Dim, 4 * c.Dim, c.Dropout, bias: c.Bias, generator: g, device: device));
        _drop = Child("drop", new Dropout(c.Dropout, g));
    }

    /// <summary>The causal self-attention.</summary>
    public MultiHeadAttention Attention => _attn;
    // The parts GptDecoder reads the weights of.
    internal LayerNorm Norm1 => _ln1;
    internal LayerNorm Norm2 => _ln2;
    internal FeedForward Mlp => _mlp;

    /// <summary>x [B, T, D].</summary>
    public Tensor Forward(Tensor x, KeyValueCache? cache = null)
    {
        using var scope = new TensorScope();
        var (h, delta) = ForwardDeferred(x, null, cache);
        return scope.Keep(h + delta);
    }

    /// <summary>
    /// The block with its last residual add left to the caller: returns the stream before it and the MLP's output, so
    /// that the next layer norm can add them in its own pass (<see cref="LayerNorm.Forward(Tensor, Tensor)"/>); the block's
    /// output is Stream + Delta. <paramref name="pendingDelta"/> is the previous block's Delta (or null), added to x here
    /// in the same way before ln1.
    /// </summary>
    internal (Tensor Stream, Tensor Delta) ForwardDeferred(Tensor x, Tensor? pendingDelta, KeyValueCache? cache)
    {
        using var scope = new TensorScope();
        var (stream, n1) = pendingDelta is null ? (x, _ln1.Forward(x)) : _ln1.Forward(x, pendingDelta);
        var (h, n2) = _ln2.Forward(stream, _drop.Forward(_attn.Forward(n1, null, null, causal: true, cache)));
        var delta = _drop.Forward(_mlp.Forward(n2));
        return (scope.Keep(h), scope.Keep(delta));
    }
}

/// <summary>
/// A decoder-only Transformer language model in the shape of GPT-2 / nanoGPT: token and learned position
/// embeddings, pre-norm blocks, a final layer norm, and an output head tied to the token embedding.
/// Initialisation follows GPT-2: N(0, 0.02), residual projections scaled by 1/sqrt(2·layers).
/// </summary>
public sealed class Gpt : Module
{
    private readonly Embedding _wte;
    private readonly LearnedPositionalEncoding _wpe;
    private readonly ModuleList<GptBlock> _blocks;
    private readonly LayerNorm _lnF;
    private readonly Dropout _drop;

    /// <summary>A model of the given sizes, initialised from <paramref name="generator"/>.</summary>
    public Gpt(GptConfig config, Generator? generator = null, Device? device = null)
    {
        Config = config;
        var g = generator ?? Generator.Default;
        _wte = Child("wte", new Embedding(config.Vocab, config.Dim, g, device, std: 0.02));
        _wpe = Child("wpe", new LearnedPositionalEncoding(config.Dim, config.BlockSize, g, device));
        _drop = Child("drop", new Dropout(config.Dropout, g));
        _blocks = Child("blocks", new ModuleList<GptBlock>(Enumerable.Range(0, config.Layers).Select(_ => new GptBlock(config, g, device))));
        _lnF = Child("ln_f", new LayerNorm(config.Dim, device: device, bias: config.Bias));
        using var ng = new NoGrad();
        foreach (var (name, p) in NamedParameters())
        {
            if (!name.EndsWith(".weight", StringComparison.Ordinal) || p.Rank != 2 || name.StartsWith("wte", StringComparison.Ordinal) || name.StartsWith("wpe", StringComparison.Ordinal)) continue;
            double std = name.EndsWith("proj.weight", StringComparison.Ordinal) ? 0.02 / Math.Sqrt(2 * config.Layers) : 0.02;
            using var init = Init.Normal(p.Shape, std, g, p.Device);
            p.CopyFrom(init);
        }
        foreach (var (name, p) in NamedParameters())
            if (name.EndsWith(".bias", StringComparison.Ordinal) && !name.Contains("ln", StringComparison.Ordinal)) p.Fill_(0);
    }

    /// <summary>The sizes.</summary>
    public GptConfig Config { get; }
    /// <summary>The blocks (for attention maps).</summary>
    public IReadOnlyList<GptBlock> Blocks => _blocks.Items;

    /// <summary>Logits [B, T, V] for tokens [B, T] (int64), positions starting at <paramref name="offset"/>.</summary>
    public Tensor Forward(Tensor tokens, IReadOnlyList<KeyValueCache>? caches = null, int offset = 0)
    {
        if (tokens.Rank != 2) throw new ArgumentException($"Gpt: tokens must be [B, T], got {Shape.Format(tokens.Shape)}");
        if (offset + tokens.Size(1) > Config.BlockSize) throw new ArgumentException($"Gpt: {offset + tokens.Size(1)} positions exceed the block size {Config.BlockSize}");
        using var scope = new TensorScope();
        var h = _drop.Forward(_wpe.Forward(_wte.Forward(tokens), offset));
        // Each block's last residual add is done by the next layer norm (ln1 of the next block, then ln_f), in its pass.
        Tensor? delta = null;
        for (int i = 0; i < _blocks.Count; i++) (h, delta) = _blocks[i].ForwardDeferred(h, delta, caches?[i]);
        h = delta is null ? _lnF.Forward(h) : _lnF.Forward(h, delta).Output;
        return scope.Keep(h.MatMul(_wte.Weight.T));
    }

    /// <summary>Mean next-token cross-entropy of tokens [B, T] against targets [B, T].</summary>
    public Tensor Loss(Tensor tokens, Tensor targets)
    {
        using var scope = new TensorScope();
        var logits = Forward(tokens);
        var loss = logits.Reshape(-1, Config.Vocab).CrossEntropy(targets.Reshape(-1));
        return scope.Keep(loss);
    }

    /// <summary>
    /// Samples <paramref name="maxNewTokens"/> tokens after <paramref name="prompt"/> with temperature and
    /// optional top-k, reproducibly from <paramref name="seed"/>. A key/value cache per block makes each
    /// new token cost O(T); when the context fills the block size the cache is rebuilt from the last
    /// BlockSize/2 tokens. On the CPU (float32, no active dropout) the steps run in a <see cref="GptDecoder"/>
    /// (kernel calls, no tensor ops); elsewhere through <see cref="Forward"/> with caches.
    /// </summary>
    public long[] Generate(IReadOnlyList<long> prompt, int maxNewTokens, double temperature = 1.0, int? topK = null, ulong seed = 0, Device? device = null)
    {
        if (prompt.Count == 0) throw new ArgumentException("Gpt.Generate: the prompt is empty");
        if (temperature <= 0) throw new ArgumentException($"Gpt.Generate: temperature must be positive, got {temperature}");
        using var inference = new InferenceMode();
        var dev = device ?? _wte.Weight.Device;
        if (dev.Kind == DeviceKind.Cpu && GptDecoder.Supports(this))
        {
            using var decoder = new GptDecoder(this);
            return Generate(prompt, maxNewTokens, temperature, topK, seed, (context, restart) =>
            {
                if (restart) decoder.Reset();
                return decoder.Forward(context);
            });
        }
        var caches = Enumerable.Range(0, Config.Layers).Select(_ => new KeyValueCache(1, Config.Heads, Config.BlockSize, Config.Dim / Config.Heads, dev)).ToArray();
        try
        {
            return Generate(prompt, maxNewTokens, temperature, topK, seed, (context, restart) =>
            {
                if (restart) foreach (var c in caches) c.Clear();
                return Step(context, caches, caches[0].Length, dev);
            });
        }
        finally { foreach (var c in caches) c.Dispose(); }
    }

    // Next-token logits after appending the tokens to the caches (emptied first when restart).
    private delegate ReadOnlySpan<float> StepLogits(long[] tokens, bool restart);

    private long[] Generate(IReadOnlyList<long> prompt, int maxNewTokens, double temperature, int? topK, ulong seed, StepLogits step)
    {
        var rng = new Generator(seed);
        var all = new List<long>(prompt);
        var logits = step(all.TakeLast(Config.BlockSize).ToArray(), true);
        int cached = Math.Min(all.Count, Config.BlockSize);
        for (int n = 0; n < maxNewTokens; n++)
        {
            long next = Sample(logits, temperature, topK, rng);
            all.Add(next);
            if (cached >= Config.BlockSize)
            {
                var context = all.TakeLast(Config.BlockSize / 2).ToArray();
                logits = step(context, true);
                cached = context.Length;
            }
            else { logits = step([next], false); cached++; }
        }
        return all.Skip(prompt.Count).ToArray();
    }

    private float[] Step(long[] tokens, KeyValueCache[] caches, int offset, Device dev)
    {
        using var scope = new TensorScope();
        var t = Tensor.FromArray(tokens, [1, tokens.Length], dev);
        var logits = Forward(t, caches, offset);
        return logits.Select(1, tokens.Length - 1).Reshape(-1).ToArray<float>();
    }

    private static long Sample(ReadOnlySpan<float> logits, double temperature, int? topK, Generator rng)
    {
        var scaled = new double[logits.Length];
        for (int i = 0; i < scaled.Length; i++) scaled[i] = logits[i] / temperature;
        if (topK is int k && k > 0 && k < scaled.Length)
        {
            double kth = scaled.OrderByDescending(v => v).ElementAt(k - 1);
            for (int i = 0; i < scaled.Length; i++) if (scaled[i] < kth) scaled[i] = double.NegativeInfinity;
        }
        double max = scaled.Max();
        var p = scaled.Select(v => Math.Exp(v - max)).ToArray();
        double sum = p.Sum(), u = rng.NextDouble() * sum, acc = 0;
        for (int i = 0; i < p.Length; i++) { acc += p[i]; if (u < acc) return i; }
        return p.Length - 1;
    }
}
