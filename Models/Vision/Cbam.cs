using AttnCore.Models.Nn;

namespace AttnCore.Models.Vision;

/// <summary>
/// Convolutional Block Attention Module (Woo, Park, Lee, Kweon, "CBAM", ECCV 2018): channel attention, then spatial attention.
/// <code>
///   M_c(F) = σ(MLP(AvgPool(F)) + MLP(MaxPool(F)))       pools over H, W; MLP(z) = W₁ δ(W₀ z + b₀) + b₁ shared, W₀ ∈ R^{C/r × C}
///   F'     = M_c(F) ⊗ F
///   M_s(F') = σ(f^{7×7}([AvgPool_c(F'); MaxPool_c(F')]))  pools over channels -> [N, 2, H, W]; f: 7x7 conv, padding 3, no bias
///   F''    = M_s(F') ⊗ F'
/// </code>
/// The MLP is two 1x1 convolutions, fc1 and fc2; the spatial convolution is spatial. The reference code adds a
/// BatchNorm after the 7x7 convolution; this follows the paper's equation, without it.
/// </summary>
public sealed class Cbam : Module<Tensor, Tensor>
{
    private readonly Conv2d _fc1, _fc2, _spatial;
    private Tensor? _last;

    /// <summary>A block over <paramref name="channels"/> channels with MLP reduction ratio <paramref name="reduction"/> (the paper's r = 16).</summary>
    public Cbam(int channels, int reduction = 16, int spatialKernel = 7, Generator? generator = null, Device? device = null)
    {
        if (channels <= 0 || reduction <= 0 || spatialKernel <= 0 || spatialKernel % 2 == 0)
            throw new ArgumentException($"Cbam: channels {channels} and reduction {reduction} must be positive, the spatial kernel {spatialKernel} odd and positive");
        Channels = channels; Reduction = reduction;
        int hidden = Math.Max(1, channels / reduction);
        _fc1 = Child("fc1", new Conv2d(channels, hidden, 1, generator: generator, device: device));
        _fc2 = Child("fc2", new Conv2d(hidden, channels, 1, generator: generator, device: device));
        _spatial = Child("spatial", new Conv2d(2, 1, spatialKernel, padding: spatialKernel / 2, bias: false, generator: generator, device: device));
    }

    /// <summary>Channels attended.</summary>
    public int Channels { get; }
    /// <summary>The MLP reduction ratio r.</summary>
    public int Reduction { get; }
    /// <summary>When set, each forward pass keeps a detached copy of the spatial map M_s in <see cref="LastAttention"/>.</summary>
    public bool CaptureAttention { get; set; }
    /// <summary>The last spatial attention map [N, 1, H, W] (when <see cref="CaptureAttention"/> was set), owned by this module.</summary>
    public Tensor? LastAttention => _last;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x)
    {
        if (x.Rank != 4 || x.Size(1) != Channels) throw new ArgumentException($"Cbam: input must be [N, {Channels}, H, W], got {Shape.Format(x.Shape)}");
        using var scope = new TensorScope();
        Tensor Mlp(Tensor z) => _fc2.Forward(_fc1.Forward(z).Relu());
        var channel = (Mlp(x.Mean([2, 3], keepDim: true)) + Mlp(x.Max([2, 3], keepDim: true))).Sigmoid();
        var refined = x * channel;
        var pooled = Tensor.Cat([refined.Mean(1, keepDim: true), refined.Max(1, keepDim: true)], 1);
        var spatial = _spatial.Forward(pooled).Sigmoid();
        if (CaptureAttention) { _last?.Dispose(); _last = Captured.DetachedCopy(spatial); }
        return scope.Keep(refined * spatial);
    }

    /// <inheritdoc/>
    public override void Dispose()
    {
        _last?.Dispose();
        base.Dispose();
    }
}
