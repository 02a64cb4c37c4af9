using AttnCore.Models.Nn;

namespace AttnCore.Models.Vision;

/// <summary>
/// Squeeze-and-Excitation (Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018), as torchvision.ops.SqueezeExcitation:
/// <code>
///   z_c = 1/(H·W) Σ_ij x_cij                      squeeze: global average pool, z ∈ R^C
///   s   = σ(W₂ δ(W₁ z + b₁) + b₂)                 excite: W₁ ∈ R^{C/r × C}, W₂ ∈ R^{C × C/r}, δ = ReLU
///   y_c = s_c · x_c                               recalibrate each channel
/// </code>
/// W₁ and W₂ are 1x1 convolutions named fc1 and fc2 (torchvision's names); C/r is at least 1.
/// </summary>
public sealed class SqueezeExcitation : Module<Tensor, Tensor>
{
    private readonly Conv2d _fc1, _fc2;

    /// <summary>A block over <paramref name="channels"/> channels with reduction ratio <paramref name="reduction"/> (the paper's r = 16).</summary>
    public SqueezeExcitation(int channels, int reduction = 16, Generator? generator = null, Device? device = null)
    {
        if (channels <= 0 || reduction <= 0) throw new ArgumentException($"SqueezeExcitation: channels {channels} and reduction {reduction} must be positive");
        Channels = channels; Reduction = reduction;
        int hidden = Math.Max(1, channels / reduction);
        _fc1 = Child("fc1", new Conv2d(channels, hidden, 1, generator: generator, device: device));
        _fc2 = Child("fc2", new Conv2d(hidden, channels, 1, generator: generator, device: device));
    }

    /// <summary>Channels recalibrated.</summary>
    public int Channels { get; }
    /// <summary>The reduction ratio r.</summary>
    public int Reduction { get; }

    /// <summary>The channel weights s [N, C, 1, 1] for x [N, C, H, W].</summary>
    public Tensor Scale(Tensor x)
    {
        if (x.Rank != 4 || x.Size(1) != Channels) throw new ArgumentException($"SqueezeExcitation: input must be [N, {Channels}, H, W], got {Shape.Format(x.Shape)}");
        using var scope = new TensorScope();
        var z = x.Mean([2, 3], keepDim: true);
        return scope.Keep(_fc2.Forward(_fc1.Forward(z).Relu()).Sigmoid());
    }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x)
    {
        using var s = Scale(x);
        return x * s;
    }
}
