// GptDecoder: a CPU GPT's inference (the prompt pass and every cached generation step) as straight kernel calls over
// the weights' arrays and preallocated buffers, with no Tensor op in between.
//
// Why: a decode step of a small GPT is ~20 tensor ops per block of a few microseconds each, and each op's fixed
// cost (checks, a tensor object and layout, a pooled buffer, about 0.5 µs, and ~600 managed bytes) was a quarter
// of the step (docs/onnx.md, "Where decode time goes"). Here a step allocates nothing and pays no per-op dispatch.
//
// Per block, for the T new positions (rows of the residual stream x [T, D]) after L cached ones:
//   n = LayerNorm(x; ln1)                        Kernels.Cpu.LayerNorm
//   qkv = n·W_qkvᵀ (+ b)                         Gemv for T <= Cpu.Gemv.MaxRows rows, else the blocked GEMM on
//                                                the weight packed once (Cpu.Gemm.SgemmPrepacked; below)
//   K, V rows of qkv -> cache slots [L, L + T)   one row copy per (position, kv head)
//   a = attention(q, K[0, L + T), V[0, L + T))   Kernels.Cpu.Attention, causal, bottom-right aligned (query i sees
//                                                keys j <= L + i); the decode kernel for one or two queries
//   x += a·W_projᵀ (+ b)
//   n = LayerNorm(x; ln2); h = GELU(n·W_fcᵀ + b) bias and activation in one pass over each row while it is in L1
//   x += h·W_proj2ᵀ (+ b)
// then LayerNorm(ln_f) and the tied head (wte) for the last row (or every row when asked).
// These are the same kernels, shapes and order of operations as the Tensor path (Gpt.Forward with caches), so the
// logits agree with it to rounding; Tests/Models/GptDecoderTests.cs checks that, and that a step allocates nothing.
// Prepacked weights: the prompt pass's GEMMs (T > MaxRows rows) would pack each whole weight into the GEMM's panel
// layout on every call, as much memory traffic as the multiply at T = 32; the decoder keeps each weight packed
// (ONNX Runtime's MLAS does the same at load) and repacks it when the weight's storage version changes, which every
// in-place tensor write does (CopyFrom, Fill_, the optimizers' steps, LoadStateDict). The packed copies cost as
// much memory as the weights, allocated on the first prompt of more than MaxRows tokens.
// Inference only: no autograd graph, no dropout (a model training with dropout is refused).
using System.Numerics.Tensors;
using AttnCore.Backends;
using AttnCore.Kernels;
using Cpu = AttnCore.Kernels.Cpu;
using AttnCore.Models.Nn;

namespace AttnCore.Models.Transformers;

/// <summary>
/// Runs a <see cref="Gpt"/> living on the CPU in float32 for inference: each call appends tokens to the decoder's
/// key/value caches (one <see cref="KeyValueCache"/> per block) and returns their logits, computed by kernel calls
/// over preallocated buffers (no tensor ops; a single-token step allocates no managed memory). Later changes to the
/// weights are seen: steps of up to <see cref="Kernels.Cpu.Gemv.MaxRows"/> tokens read them in place, and longer ones
/// use packed copies that are refreshed when a weight's <see cref="Storage.Version"/> changes (code that writes a
/// storage's array directly must call <see cref="Storage.BumpVersion"/>). Not thread-safe; other devices use
/// <see cref="Gpt.Forward"/> with caches instead (<see cref="Supports"/> says which applies).
/// </summary>
public sealed class GptDecoder : IDisposable
{
    private sealed record Block(LayerNorm Norm1, Linear Qkv, Linear Proj, LayerNorm Norm2, Linear Fc, Linear Out, bool Relu);

    private readonly Gpt _model;
    private readonly Block[] _blocks;
    private readonly KeyValueCache[] _caches;
    private readonly Tensor _wte, _wpe;
    private readonly LayerNorm _lnF;
    private readonly int _dim, _heads, _kvHeads, _headDim, _qkvWidth, _hidden, _vocab, _blockSize;
    // Per-position buffers for up to BlockSize rows: the residual stream, a normed or projected copy, the packed
    // q|k|v, the merged attention heads, the MLP's hidden layer, the logits, and the kernels' side outputs.
    private readonly float[] _x, _scratch, _qkv, _attended, _hiddenRows, _logits, _mean, _rstd, _lse;
    // Each weight's packed copy for the GEMMs of more than Gemv.MaxRows rows, with the storage and version it was packed from.
    private sealed class PackedWeight { public Storage? Source; public long Version; public Cpu.PackedMatrix? Matrix; }
    private readonly Dictionary<Tensor, PackedWeight> _packed = new(ReferenceEqualityComparer.Instance);

    /// <summary>A decoder for <paramref name="model"/>, with empty caches of the model's block size.</summary>
    /// <exception cref="ArgumentException">A parameter is not a contiguous float32 tensor on the CPU.</exception>
    public GptDecoder(Gpt model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (Unsupported(model) is string why) throw new ArgumentException($"GptDecoder: {why}; use Gpt.Forward with KeyValueCaches on this model");
        _model = model;
        var c = model.Config;
        (_dim, _heads, _headDim) = (c.Dim, c.Heads, c.Dim / c.Heads);
        _kvHeads = model.Blocks.Count > 0 ? model.Blocks[0].Attention.KvHeads : c.Heads;
        _qkvWidth = _dim + 2 * _kvHeads * _headDim;
        _vocab = c.Vocab; _blockSize = c.BlockSize;
        _blocks = model.Blocks.Select(b => new Block(b.Norm1, Child<Linear>(b.Attention, "qkv"), Child<Linear>(b.Attention, "proj"), b.Norm2,
            Child<Linear>(b.Mlp, "fc"), b.Mlp.Projection, b.Mlp.UsesRelu)).ToArray();
        _hidden = _blocks.Length == 0 ? 0 : _blocks[0].Fc.OutFeatures;
        _wte = Parameter(model, "wte.weight"); _wpe = Parameter(model, "wpe.weight");
        _lnF = Child<LayerNorm>(model, "ln_f");
        int rows = _blockSize;
        _x = new float[rows * _dim]; _scratch = new float[rows * _dim]; _attended = new float[rows * _dim];
        _qkv = new float[rows * _qkvWidth]; _hiddenRows = new float[rows * Math.Max(1, _hidden)]; _logits = new float[rows * _vocab];
        _mean = new float[rows]; _rstd = new float[rows]; _lse = new float[rows * _heads];
        _caches = new KeyValueCache[_blocks.Length];
        try { for (int i = 0; i < _caches.Length; i++) _caches[i] = new KeyValueCache(1, _kvHeads, _blockSize, _headDim, Device.Cpu); }
        catch { Dispose(); throw; }
    }

    /// <summary>
    /// True when <paramref name="model"/> can run here: every parameter a contiguous float32 CPU tensor, and no
    /// dropout active (evaluation mode, or dropout 0).
    /// </summary>
    public static bool Supports(Gpt model) => Unsupported(model) is null;

    private static string? Unsupported(Gpt model)
    {
        foreach (var (name, p) in model.NamedParameters())
            if (p.Device.Kind != DeviceKind.Cpu || p.DType != DType.Float32 || !p.IsContiguous)
                return $"parameter {name} ({Shape.Format(p.Shape)}, {p.DType}, {(p.IsContiguous ? "contiguous" : "strided")}, on {p.Device}) is not a contiguous float32 tensor on the CPU";
        return TrainingDropout(model);
    }

    private static string? TrainingDropout(Gpt model) =>
        model.Training && model.Config.Dropout > 0 ? $"the model is in training mode with dropout {model.Config.Dropout} (call Eval(); the decoder applies no dropout)" : null;

    /// <summary>The model whose weights the decoder reads.</summary>
    public Gpt Model => _model;
    /// <summary>Positions in the caches (the position of the next token).</summary>
    public int Length { get; private set; }
    /// <summary>The most positions the caches hold (the model's block size).</summary>
    public int Capacity => _blockSize;
    /// <summary>One key/value cache per block (for tests that compare them with the Tensor path's).</summary>
    internal IReadOnlyList<KeyValueCache> Caches => _caches;

    /// <summary>Empties the caches: the next call starts at position 0.</summary>
    public void Reset()
    {
        foreach (var c in _caches) c.Clear();
        Length = 0;
    }

    /// <summary>
    /// Appends <paramref name="tokens"/> at positions <see cref="Length"/>.. and returns logits: [Vocab] for the last
    /// token, or [T, Vocab] row-major for all of them when <paramref name="allPositions"/>. The span points into the
    /// decoder's buffer and is valid until the next call.
    /// </summary>
    /// <exception cref="ArgumentException">No tokens, or more than the caches have room for.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A token id outside [0, Vocab).</exception>
    /// <exception cref="InvalidOperationException">The model was switched to training with dropout.</exception>
    public ReadOnlySpan<float> Forward(ReadOnlySpan<long> tokens, bool allPositions = false)
    {
        int t = tokens.Length, start = Length;
        if (t == 0) throw new ArgumentException("GptDecoder.Forward: no tokens", nameof(tokens));
        if (start + t > _blockSize)
            throw new ArgumentException($"GptDecoder.Forward: {start} cached + {t} new positions exceed the block size {_blockSize} (Reset() to start over)", nameof(tokens));
        if (TrainingDropout(_model) is string why) throw new InvalidOperationException($"GptDecoder.Forward: {why}");
        for (int i = 0; i < t; i++)
            if ((ulong)tokens[i] >= (ulong)_vocab)
                throw new ArgumentOutOfRangeException(nameof(tokens), tokens[i], $"GptDecoder.Forward: token {i} of {t} is {tokens[i]}, outside the vocabulary [0, {_vocab})");
        Embed(tokens, start);
        for (int b = 0; b < _blocks.Length; b++) RunBlock(b, t, start);
        Length += t;
        // Only the rows whose logits are wanted go through ln_f and the head.
        int first = allPositions ? 0 : t - 1, rows = t - first;
        var x = _x.AsSpan(first * _dim, rows * _dim);
        Norm(_lnF, x, _scratch, rows);
        var logits = _logits.AsSpan(0, rows * _vocab);
        MatMulTransposed(_scratch, rows, _dim, _wte, logits, _vocab);
        return logits;
    }

    // x[i] = wte[token i] + wpe[start + i].
    private void Embed(ReadOnlySpan<long> tokens, int start)
    {
        var wte = Floats(_wte); var wpe = Floats(_wpe);
        for (int i = 0; i < tokens.Length; i++)
            TensorPrimitives.Add(wte.Slice((int)tokens[i] * _dim, _dim), wpe.Slice((start + i) * _dim, _dim), _x.AsSpan(i * _dim, _dim));
    }

    private void RunBlock(int index, int t, int start)
    {
        var blk = _blocks[index];
        var x = _x.AsSpan(0, t * _dim);
        var projected = _scratch.AsSpan(0, t * _dim);
        Norm(blk.Norm1, x, _scratch, t);
        Linear(_scratch, t, blk.Qkv, _qkv, Epilogue.Bias);
        Attend(_caches[index], t, start);
        Linear(_attended, t, blk.Proj, _scratch, Epilogue.Bias);
        TensorPrimitives.Add(x, projected, x);
        Norm(blk.Norm2, x, _scratch, t);
        Linear(_scratch, t, blk.Fc, _hiddenRows, blk.Relu ? Epilogue.BiasRelu : Epilogue.BiasGelu);
        Linear(_hiddenRows, t, blk.Out, _scratch, Epilogue.Bias);
        TensorPrimitives.Add(x, projected, x);
    }

    // Stores the T new key/value rows of qkv in the cache, then attends the T queries over all L + T positions.
    private void Attend(KeyValueCache cache, int t, int start)
    {
        var keys = Floats(cache.Keys); var values = Floats(cache.Values);
        int max = cache.MaxLength, dh = _headDim, kvDim = _kvHeads * dh;
        for (int i = 0; i < t; i++)
        {
            var row = _qkv.AsSpan(i * _qkvWidth, _qkvWidth);
            for (int hk = 0; hk < _kvHeads; hk++)
            {
                int slot = (hk * max + start + i) * dh;
                row.Slice(_dim + hk * dh, dh).CopyTo(keys.Slice(slot, dh));
                row.Slice(_dim + kvDim + hk * dh, dh).CopyTo(values.Slice(slot, dh));
            }
        }
        cache.Advance(t);
        int seen = start + t;
        var shape = new AttentionShape(1, _heads, t, seen, dh, 1.0 / Math.Sqrt(dh), Causal: true, KvHeads: _kvHeads);
        var cacheOperand = new AttentionOperand(0, (long)_kvHeads * max * dh, (long)max * dh, dh);
        // q head h is columns [h·Dh, (h + 1)·Dh) of qkv's rows; output head h the same columns of the merged rows.
        Cpu.Attention.Forward(shape, _qkv.AsSpan(0, t * _qkvWidth), new AttentionOperand(0, (long)t * _qkvWidth, dh, _qkvWidth),
            keys, cacheOperand, values, cacheOperand,
            _attended.AsSpan(0, t * _dim), new AttentionOperand(0, (long)t * _dim, dh, _dim), _lse.AsSpan(0, t * _heads));
    }

    private enum Epilogue { Bias, BiasGelu, BiasRelu }

    // y [rows, out] = x [rows, in]·Wᵀ, then per row the bias and the activation while the row is in L1.
    private void Linear(float[] x, int rows, Linear layer, float[] y, Epilogue epilogue)
    {
        int n = layer.OutFeatures;
        MatMulTransposed(x, rows, layer.InFeatures, layer.Weight, y.AsSpan(0, rows * n), n);
        ReadOnlySpan<float> bias = layer.Bias is null ? default : Floats(layer.Bias);
        if (bias.IsEmpty && epilogue == Epilogue.Bias) return;
        for (int r = 0; r < rows; r++)
        {
            var row = y.AsSpan(r * n, n);
            if (!bias.IsEmpty) TensorPrimitives.Add(row, bias, row);
            if (epilogue == Epilogue.BiasGelu) Cpu.Activations.Gelu(row, row);
            else if (epilogue == Epilogue.BiasRelu) Cpu.ReluOp<float>.Run(row, 0f, row);
        }
    }

    // y [rows, n] = x [rows, k]·Wᵀ for a row-major W [n, k]: CpuBackend.MatMul's kernel choice (Gemv.MultiplyByWeight),
    // with the blocked GEMM's B panels packed once; the prepacked GEMM's sums are bit-identical to the unpacked one's.
    private void MatMulTransposed(float[] x, int rows, int k, Tensor weight, Span<float> y, int n) =>
        Cpu.Gemv.MultiplyByWeight(rows, n, k, x.AsSpan(0, rows * k), k, Floats(weight), k, y, n,
            (Decoder: this, Weight: weight, N: n, K: k), static s => s.Decoder.Packed(s.Weight, Floats(s.Weight), s.N, s.K));

    // The weight's packed copy, packed now if this is its first use or its storage was written or replaced since.
    private Cpu.PackedMatrix Packed(Tensor weight, ReadOnlySpan<float> w, int n, int k)
    {
        if (!_packed.TryGetValue(weight, out var entry)) _packed[weight] = entry = new PackedWeight();
        var source = weight.Storage;
        long version = source.Version;
        if (entry.Matrix is not null && ReferenceEquals(entry.Source, source) && entry.Version == version) return entry.Matrix;
        if (entry.Matrix is null) entry.Matrix = Cpu.Gemm.PackB(true, k, n, w, k);
        else Cpu.Gemm.Repack(entry.Matrix, w, k);
        (entry.Source, entry.Version) = (source, version);
        return entry.Matrix;
    }

    private void Norm(LayerNorm norm, ReadOnlySpan<float> x, float[] y, int rows)
    {
        ReadOnlySpan<float> gamma = norm.Weight is null ? default : Floats(norm.Weight), beta = norm.Bias is null ? default : Floats(norm.Bias);
        Cpu.LayerNorm.Forward(x, gamma, beta, y.AsSpan(0, rows * _dim), _mean.AsSpan(0, rows), _rstd.AsSpan(0, rows), rows, _dim, (float)norm.Eps);
    }

    // The elements of a contiguous float32 CPU tensor, in place.
    private static Span<float> Floats(Tensor t) => ((CpuStorage<float>)t.Storage).Array.AsSpan((int)t.Layout.Offset, (int)t.Numel);

    private static T Child<T>(Module parent, string name) where T : Module =>
        parent.NamedChildren().FirstOrDefault(c => c.Name == name).Module as T
        ?? throw new ArgumentException($"GptDecoder: {parent.GetType().Name} has no {typeof(T).Name} named '{name}'");

    private static Tensor Parameter(Module parent, string name) =>
        parent.NamedParameters().FirstOrDefault(p => p.Name == name).Parameter ?? throw new ArgumentException($"GptDecoder: the model has no parameter '{name}'");

    /// <summary>Frees the caches.</summary>
    public void Dispose()
    {
        foreach (var c in _caches) c?.Dispose();
    }
}
