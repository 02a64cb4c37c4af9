namespace AttnCore.Models.Nn;

/// <summary>y = x Wᵀ + b with W stored [out, in] as in PyTorch (the transposed view reaches the GEMM without a copy).</summary>
public sealed class Linear : Module<Tensor, Tensor>
{
    /// <summary>A layer with torch.nn.Linear's default initialisation (uniform ±1/sqrt(in)).</summary>
    public Linear(int inFeatures, int outFeatures, bool bias = true, Generator? generator = null, Device? device = null)
    {
        if (inFeatures <= 0 || outFeatures <= 0) throw new ArgumentException($"Linear: sizes must be positive, got {inFeatures} -> {outFeatures}");
        var g = generator ?? Generator.Default;
        InFeatures = inFeatures; OutFeatures = outFeatures;
        Weight = Parameter("weight", Init.KaimingUniform([outFeatures, inFeatures], inFeatures, g, device));
        Bias = bias ? Parameter("bias", Init.KaimingUniform([outFeatures], inFeatures, g, device)) : null;
    }

    /// <summary>Input size.</summary>
    public int InFeatures { get; }
    /// <summary>Output size.</summary>
    public int OutFeatures { get; }
    /// <summary>[out, in]</summary>
    public Tensor Weight { get; }
    /// <summary>[out], or null.</summary>
    public Tensor? Bias { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x)
    {
        if (x.Size(-1) != InFeatures) throw new ArgumentException($"Linear: input has {x.Size(-1)} features (shape {Shape.Format(x.Shape)}), the layer expects {InFeatures}");
        return Tensor.Linear(x, Weight, Bias);
    }
}

/// <summary>A lookup table of <c>count</c> vectors of size <c>dim</c>, initialised N(0, 1) as torch.nn.Embedding.</summary>
public sealed class Embedding : Module<Tensor, Tensor>
{
    /// <summary>A table of <paramref name="count"/> x <paramref name="dim"/>.</summary>
    public Embedding(int count, int dim, Generator? generator = null, Device? device = null, double std = 1.0)
    {
        if (count <= 0 || dim <= 0) throw new ArgumentException($"Embedding: sizes must be positive, got {count} x {dim}");
        Weight = Parameter("weight", Init.Normal([count, dim], std, generator ?? Generator.Default, device));
    }

    /// <summary>[count, dim]</summary>
    public Tensor Weight { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor indices) => Tensor.Embedding(indices, Weight);
}

/// <summary>Layer normalisation over the last dim with learned scale and shift.</summary>
public sealed class LayerNorm : Module<Tensor, Tensor>
{
    /// <summary>Normalises vectors of size <paramref name="dim"/> (<paramref name="bias"/> false: a learned scale only, as GPT-2 in nanoGPT with bias=False).</summary>
    public LayerNorm(int dim, double eps = 1e-5, bool affine = true, Device? device = null, bool bias = true)
    {
        Dim = dim; Eps = eps;
        if (affine)
        {
            Weight = Parameter("weight", Tensor.Ones([dim], DType.Float32, device));
            if (bias) Bias = Parameter("bias", Tensor.Zeros([dim], DType.Float32, device));
        }
    }

    /// <summary>Normalised size.</summary>
    public int Dim { get; }
    /// <summary>Variance epsilon.</summary>
    public double Eps { get; }
    /// <summary>Scale (null without affine).</summary>
    public Tensor? Weight { get; }
    /// <summary>Shift (null without affine).</summary>
    public Tensor? Bias { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x) => x.LayerNorm([Dim], Weight, Bias, Eps);

    /// <summary>
    /// Sum = x + residual and Output = this layer norm of the sum, in one pass (<see cref="Tensor.AddLayerNorm"/>): a
    /// pre-norm block's residual add and the layer norm that follows it.
    /// </summary>
    public (Tensor Sum, Tensor Output) Forward(Tensor x, Tensor residual) => x.AddLayerNorm(residual, [Dim], Weight, Bias, Eps);
}

/// <summary>Zeroes each element with probability p in training mode and scales the rest by 1/(1-p); identity in Eval.</summary>
public sealed class Dropout : Module<Tensor, Tensor>
{
    private readonly Generator _generator;

    /// <summary>Dropout with probability <paramref name="p"/>.</summary>
    public Dropout(double p, Generator? generator = null)
    {
        if (p is < 0 or >= 1) throw new ArgumentException($"Dropout: p must be in [0, 1), got {p}");
        P = p;
        _generator = generator ?? Generator.Default;
    }

    /// <summary>Drop probability.</summary>
    public double P { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x)
    {
        if (!Training || P == 0) return x.View(x.Shape);
        using var mask = Tensor.DropoutMask(x.Shape, P, _generator, x.DType, x.Device); // drawn on x's device
        return x * mask;
    }
}

/// <summary>Sinusoidal positional encoding of "Attention Is All You Need": PE[pos, 2i] = sin(pos/10000^(2i/d)), PE[pos, 2i+1] = cos(...).</summary>
public sealed class SinusoidalPositionalEncoding : Module<Tensor, Tensor>
{
    /// <summary>A table for positions up to <paramref name="maxLength"/>.</summary>
    public SinusoidalPositionalEncoding(int dim, int maxLength, Device? device = null)
    {
        var table = new float[maxLength * dim];
        for (int pos = 0; pos < maxLength; pos++)
            for (int i = 0; i < dim; i++)
            {
                double angle = pos / Math.Pow(10000, 2 * (i / 2) / (double)dim);
                table[pos * dim + i] = (float)(i % 2 == 0 ? Math.Sin(angle) : Math.Cos(angle));
            }
        Table = Buffer("pe", Tensor.FromArray(table, [maxLength, dim], device));
    }

    /// <summary>[maxLength, dim]</summary>
    public Tensor Table { get; }

    /// <summary>x [B, T, D] plus the encoding of positions offset..offset+T-1.</summary>
    public Tensor Forward(Tensor x, int offset)
    {
        int t = x.Size(-2);
        if (offset + t > Table.Size(0)) throw new ArgumentException($"SinusoidalPositionalEncoding: positions up to {offset + t} exceed the table's {Table.Size(0)}");
        using var pe = Table.Narrow(0, offset, t);
        return x + pe;
    }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x) => Forward(x, 0);
}

/// <summary>A learned position embedding added to the input (GPT-2).</summary>
public sealed class LearnedPositionalEncoding : Module<Tensor, Tensor>
{
    /// <summary>A table for positions up to <paramref name="maxLength"/>, N(0, 0.02) as GPT-2.</summary>
    public LearnedPositionalEncoding(int dim, int maxLength, Generator? generator = null, Device? device = null)
    {
        Weight = Parameter("weight", Init.Normal([maxLength, dim], 0.02, generator ?? Generator.Default, device));
    }

    /// <summary>[maxLength, dim]</summary>
    public Tensor Weight { get; }

    /// <summary>x [B, T, D] plus the embeddings of positions offset..offset+T-1.</summary>
    public Tensor Forward(Tensor x, int offset)
    {
        int t = x.Size(-2);
        if (offset + t > Weight.Size(0)) throw new ArgumentException($"LearnedPositionalEncoding: positions up to {offset + t} exceed the table's {Weight.Size(0)}");
        using var pe = Weight.Narrow(0, offset, t);
        return x + pe;
    }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x) => Forward(x, 0);
}
