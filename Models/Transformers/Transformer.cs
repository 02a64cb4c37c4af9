using AttnCore.Models.Nn;

namespace AttnCore.Models.Transformers;

/// <summary>Sizes of an encoder-decoder <see cref="Transformer"/>.</summary>
public sealed record TransformerConfig(int SourceVocab, int TargetVocab, int Dim = 128, int Heads = 4, int EncoderLayers = 2, int DecoderLayers = 2,
    int Hidden = 512, int MaxLength = 256, double Dropout = 0.1, bool PreNorm = true);

/// <summary>
/// The encoder-decoder Transformer of "Attention Is All You Need": token embeddings scaled by sqrt(D) plus
/// sinusoidal positions, N encoder layers, N decoder layers (causal self-attention + cross-attention),
/// and a linear head tied to nothing (separate vocabularies are allowed).
/// </summary>
public sealed class Transformer : Module
{
    private readonly Embedding _srcEmbed, _tgtEmbed;
    private readonly SinusoidalPositionalEncoding _pos;
    private readonly ModuleList<TransformerEncoderLayer> _encoder;
    private readonly ModuleList<TransformerDecoderLayer> _decoder;
    private readonly LayerNorm? _encNorm, _decNorm;
    private readonly Linear _head;
    private readonly Dropout _drop;

    /// <summary>A model with the given sizes, initialised from <paramref name="generator"/>.</summary>
    public Transformer(TransformerConfig config, Generator? generator = null, Device? device = null)
    {
        Config = config;
        var g = generator ?? Generator.Default;
        _srcEmbed = Child("src_embed", new Embedding(config.SourceVocab, config.Dim, g, device, std: Math.Pow(config.Dim, -0.5)));
        _tgtEmbed = Child("tgt_embed", new Embedding(config.TargetVocab, config.Dim, g, device, std: Math.Pow(config.Dim, -0.5)));
        _pos = Child("pos", new SinusoidalPositionalEncoding(config.Dim, config.MaxLength, device));
        _encoder = Child("encoder", new ModuleList<TransformerEncoderLayer>(Enumerable.Range(0, config.EncoderLayers)
            .Select(_ => new TransformerEncoderLayer(config.Dim, config.Heads, config.Hidden, config.Dropout, config.PreNorm, g, device))));
        _decoder = Child("decoder", new ModuleList<TransformerDecoderLayer>(Enumerable.Range(0, config.DecoderLayers)
            .Select(_ => new TransformerDecoderLayer(config.Dim, config.Heads, config.Hidden, config.Dropout, config.PreNorm, g, device))));
        if (config.PreNorm)
        {
            _encNorm = Child("enc_norm", new LayerNorm(config.Dim, device: device));
            _decNorm = Child("dec_norm", new LayerNorm(config.Dim, device: device));
        }
        _head = Child("head", new Linear(config.Dim, config.TargetVocab, true, g, device));
        _drop = Child("drop", new Dropout(config.Dropout, g));
    }

    /// <summary>The sizes.</summary>
    public TransformerConfig Config { get; }
    /// <summary>The decoder layers (for attention maps).</summary>
    public IReadOnlyList<TransformerDecoderLayer> DecoderLayers => _decoder.Items;
    /// <summary>The encoder layers (for attention maps).</summary>
    public IReadOnlyList<TransformerEncoderLayer> EncoderLayers => _encoder.Items;

    private Tensor Embed(Embedding table, Tensor tokens, int offset)
    {
        using var e = table.Forward(tokens);
        using var scaled = e * Math.Sqrt(Config.Dim);
        using var p = _pos.Forward(scaled, offset);
        return _drop.Forward(p);
    }

    /// <summary>Encodes source tokens [B, S] (int64) to memory [B, S, D].</summary>
    public Tensor Encode(Tensor source, Tensor? sourcePaddingMask = null)
    {
        using var scope = new TensorScope();
        var h = Embed(_srcEmbed, source, 0);
        foreach (var layer in _encoder.Items) h = layer.Forward(h, sourcePaddingMask);
        if (_encNorm is not null) h = _encNorm.Forward(h);
        return scope.Keep(h);
    }

    /// <summary>Decoder logits [B, T, V] for target tokens [B, T] given the encoder memory.</summary>
    public Tensor Decode(Tensor target, Tensor memory, Tensor? targetPaddingMask = null, Tensor? memoryPaddingMask = null, IReadOnlyList<KeyValueCache>? caches = null, int offset = 0)
    {
        using var scope = new TensorScope();
        var h = Embed(_tgtEmbed, target, offset);
        for (int i = 0; i < _decoder.Count; i++) h = _decoder[i].Forward(h, memory, targetPaddingMask, memoryPaddingMask, caches?[i]);
        if (_decNorm is not null) h = _decNorm.Forward(h);
        return scope.Keep(_head.Forward(h));
    }

    /// <summary>Logits [B, T, V] for a (source, shifted target) pair: teacher forcing.</summary>
    public Tensor Forward(Tensor source, Tensor target, Tensor? sourcePaddingMask = null, Tensor? targetPaddingMask = null)
    {
        using var memory = Encode(source, sourcePaddingMask);
        return Decode(target, memory, targetPaddingMask, sourcePaddingMask);
    }

    /// <summary>
    /// Greedy decoding: starts every sequence with <paramref name="bos"/> and appends the most likely token
    /// until <paramref name="eos"/> or <paramref name="maxLength"/>; uses a key/value cache per decoder layer.
    /// Returns the generated tokens [B, ≤maxLength] (without bos).
    /// </summary>
    public long[][] GreedyDecode(Tensor source, long bos, long eos, int maxLength, Tensor? sourcePaddingMask = null)
    {
        using var inference = new InferenceMode();
        int b = source.Size(0);
        using var memory = Encode(source, sourcePaddingMask);
        var caches = Enumerable.Range(0, _decoder.Count).Select(_ => new KeyValueCache(b, Config.Heads, maxLength + 1, Config.Dim / Config.Heads, source.Device)).ToArray();
        try
        {
            var outputs = Enumerable.Range(0, b).Select(_ => new List<long>()).ToArray();
            var done = new bool[b];
            var next = Enumerable.Repeat(bos, b).ToArray();
            for (int t = 0; t < maxLength && !done.All(d => d); t++)
            {
                using var scope = new TensorScope();
                var tok = Tensor.FromArray(next, [b, 1], source.Device);
                var logits = Decode(tok, memory, null, sourcePaddingMask, caches, t);
                var best = logits.Select(1, 0).ArgMax(-1).ToArray<long>();
                for (int i = 0; i < b; i++)
                {
                    next[i] = best[i];
                    if (done[i]) continue;
                    if (best[i] == eos) done[i] = true; else outputs[i].Add(best[i]);
                }
            }
            return outputs.Select(o => o.ToArray()).ToArray();
        }
        finally { foreach (var c in caches) c.Dispose(); }
    }
}
