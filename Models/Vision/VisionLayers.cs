using AttnCore.Models.Nn;

namespace AttnCore.Models.Vision;

/// <summary>
/// 2-d convolution over [N, C, H, W] (torch.nn.Conv2d): weight [out, in/groups, k, k], optional bias [out].
/// Initialised as PyTorch's default (Kaiming uniform with a = √5: bound 1/√fanIn for weight and bias);
/// <see cref="ResNet"/> re-initialises its convolutions as torchvision (Kaiming normal, fan-out, ReLU gain).
/// </summary>
public sealed class Conv2d : Module<Tensor, Tensor>
{
    /// <summary>A convolution from <paramref name="inChannels"/> to <paramref name="outChannels"/> with a square kernel.</summary>
    public Conv2d(int inChannels, int outChannels, int kernelSize, int stride = 1, int padding = 0, int dilation = 1, int groups = 1, bool bias = true,
        Generator? generator = null, Device? device = null)
    {
        if (inChannels <= 0 || outChannels <= 0 || kernelSize <= 0 || stride <= 0 || padding < 0 || dilation <= 0 || groups <= 0)
            throw new ArgumentException($"Conv2d: channels {inChannels} -> {outChannels}, kernel {kernelSize}, stride {stride}, dilation {dilation} and groups {groups} must be positive, padding {padding} not negative");
        if (inChannels % groups != 0 || outChannels % groups != 0)
            throw new ArgumentException($"Conv2d: channels {inChannels} -> {outChannels} must both be divisible by groups {groups}");
        var g = generator ?? Generator.Default;
        InChannels = inChannels; OutChannels = outChannels; KernelSize = kernelSize; Stride = stride; Padding = padding; Dilation = dilation; Groups = groups;
        int fanIn = inChannels / groups * kernelSize * kernelSize;
        Weight = Parameter("weight", Init.KaimingUniform([outChannels, inChannels / groups, kernelSize, kernelSize], fanIn, g, device));
        Bias = bias ? Parameter("bias", Init.KaimingUniform([outChannels], fanIn, g, device)) : null;
    }

    /// <summary>Input channels.</summary>
    public int InChannels { get; }
    /// <summary>Output channels.</summary>
    public int OutChannels { get; }
    /// <summary>Square kernel side.</summary>
    public int KernelSize { get; }
    /// <summary>Stride in both directions.</summary>
    public int Stride { get; }
    /// <summary>Zero padding on every side.</summary>
    public int Padding { get; }
    /// <summary>Dilation in both directions.</summary>
    public int Dilation { get; }
    /// <summary>Channel groups.</summary>
    public int Groups { get; }
    /// <summary>[out, in/groups, k, k]</summary>
    public Tensor Weight { get; }
    /// <summary>[out], or null.</summary>
    public Tensor? Bias { get; }

    /// <summary>Re-draws the weight as torch.nn.init.kaiming_normal_(mode="fan_out", nonlinearity="relu"): N(0, 2/fanOut), fanOut = out·k·k (the bias is left as it is, as torchvision's loop).</summary>
    public void KaimingNormalFanOut(Generator generator)
    {
        using var ng = new NoGrad();
        using var w = Init.Normal(Weight.Shape, Math.Sqrt(2.0 / (OutChannels * KernelSize * KernelSize)), generator, Weight.Device);
        Weight.CopyFrom(w);
    }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x)
    {
        if (x.Rank != 4 || x.Size(1) != InChannels)
            throw new ArgumentException($"Conv2d: input must be [N, {InChannels}, H, W], got {Shape.Format(x.Shape)}");
        return x.Conv2d(Weight, Bias, Stride, Padding, Dilation, Groups);
    }
}

/// <summary>
/// Batch normalisation over the channels of [N, C, H, W] (torch.nn.BatchNorm2d): batch statistics in training
/// mode, moving the running mean and (unbiased) variance by <see cref="Momentum"/>; running statistics in
/// evaluation mode. Weight 1, bias 0, running mean 0, running var 1, as PyTorch; buffers named as torchvision.
/// </summary>
public sealed class BatchNorm2d : Module<Tensor, Tensor>
{
    /// <summary>A layer over <paramref name="channels"/> channels.</summary>
    public BatchNorm2d(int channels, double eps = 1e-5, double momentum = 0.1, Device? device = null)
    {
        if (channels <= 0) throw new ArgumentException($"BatchNorm2d: channels must be positive, got {channels}");
        if (eps <= 0 || momentum is < 0 or > 1) throw new ArgumentException($"BatchNorm2d: eps must be positive and momentum in [0, 1], got eps {eps}, momentum {momentum}");
        Channels = channels; Eps = eps; Momentum = momentum;
        Weight = Parameter("weight", Tensor.Ones([channels], DType.Float32, device));
        Bias = Parameter("bias", Tensor.Zeros([channels], DType.Float32, device));
        RunningMean = Buffer("running_mean", Tensor.Zeros([channels], DType.Float32, device));
        RunningVar = Buffer("running_var", Tensor.Ones([channels], DType.Float32, device));
        BatchesTracked = Buffer("num_batches_tracked", Tensor.Zeros([], DType.Int64, device));
    }

    /// <summary>Channels normalised.</summary>
    public int Channels { get; }
    /// <summary>Variance epsilon.</summary>
    public double Eps { get; }
    /// <summary>Weight of the newest batch in the running statistics.</summary>
    public double Momentum { get; }
    /// <summary>Scale [C].</summary>
    public Tensor Weight { get; }
    /// <summary>Shift [C].</summary>
    public Tensor Bias { get; }
    /// <summary>Running mean [C].</summary>
    public Tensor RunningMean { get; }
    /// <summary>Running unbiased variance [C].</summary>
    public Tensor RunningVar { get; }
    /// <summary>Training batches seen (int64 scalar; kept for torchvision's state dict).</summary>
    public Tensor BatchesTracked { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x) => Normalize(x, relu: false);

    /// <summary>
    /// max(0, Forward(x)) in one fused pass (Tensor.BatchNorm2dRelu): the same statistics, running-statistics update and
    /// parameters, with no intermediate tensor between the normalisation and the ReLU.
    /// </summary>
    public Tensor ForwardRelu(Tensor x) => Normalize(x, relu: true);

    private Tensor Normalize(Tensor x, bool relu)
    {
        if (x.Rank != 4 || x.Size(1) != Channels)
            throw new ArgumentException($"BatchNorm2d: input must be [N, {Channels}, H, W], got {Shape.Format(x.Shape)}");
        var y = relu ? x.BatchNorm2dRelu(RunningMean, RunningVar, Weight, Bias, Training, Momentum, Eps)
            : x.BatchNorm2d(RunningMean, RunningVar, Weight, Bias, Training, Momentum, Eps);
        if (Training)
        {
            using var ng = new NoGrad();
            using var next = BatchesTracked + 1;
            BatchesTracked.CopyFrom(next);
        }
        return y;
    }
}

/// <summary>Max pooling (torch.nn.MaxPool2d) with a square window.</summary>
public sealed class MaxPool2d(int kernelSize, int? stride = null, int padding = 0, bool ceilMode = false) : Module<Tensor, Tensor>
{
    /// <summary>Window side.</summary>
    public int KernelSize { get; } = kernelSize;
    /// <summary>Stride (the window side when not given).</summary>
    public int Stride { get; } = stride ?? kernelSize;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x) => x.MaxPool2d(KernelSize, Stride, padding, 1, ceilMode);
}

/// <summary>Average pooling (torch.nn.AvgPool2d) with a square window.</summary>
public sealed class AvgPool2d(int kernelSize, int? stride = null, int padding = 0, bool ceilMode = false, bool countIncludePad = true) : Module<Tensor, Tensor>
{
    /// <summary>Window side.</summary>
    public int KernelSize { get; } = kernelSize;
    /// <summary>Stride (the window side when not given).</summary>
    public int Stride { get; } = stride ?? kernelSize;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x) => x.AvgPool2d(KernelSize, Stride, padding, ceilMode, countIncludePad);
}

/// <summary>
/// Adaptive average pooling to [N, C, out, out] (torch.nn.AdaptiveAvgPool2d): cell (i, j) averages rows
/// ⌊i·H/out⌋ .. ⌈(i+1)·H/out⌉ and likewise columns. Output 1 is a mean over H and W; an output dividing the
/// input is an ordinary average pool; other sizes average each cell's window.
/// </summary>
public sealed class AdaptiveAvgPool2d : Module<Tensor, Tensor>
{
    /// <summary>Pools to <paramref name="outputSize"/> x <paramref name="outputSize"/>.</summary>
    public AdaptiveAvgPool2d(int outputSize)
    {
        if (outputSize <= 0) throw new ArgumentException($"AdaptiveAvgPool2d: output size must be positive, got {outputSize}");
        OutputSize = outputSize;
    }

    /// <summary>Output side.</summary>
    public int OutputSize { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x)
    {
        if (x.Rank != 4) throw new ArgumentException($"AdaptiveAvgPool2d: input must be [N, C, H, W], got {Shape.Format(x.Shape)}");
        int h = x.Size(2), w = x.Size(3), o = OutputSize;
        if (o == 1) return x.Mean([2, 3], keepDim: true);
        if (h % o == 0 && w % o == 0) return x.AvgPool2d((h / o, w / o));
        using var scope = new TensorScope();
        var rows = new Tensor[o];
        for (int i = 0; i < o; i++)
        {
            var cells = new Tensor[o];
            int r0 = i * h / o, r1 = ((i + 1) * h + o - 1) / o;
            for (int j = 0; j < o; j++)
            {
                int c0 = j * w / o, c1 = ((j + 1) * w + o - 1) / o;
                cells[j] = x.Narrow(2, r0, r1 - r0).Narrow(3, c0, c1 - c0).Mean([2, 3], keepDim: true);
            }
            rows[i] = Tensor.Cat(cells, 3);
        }
        return scope.Keep(Tensor.Cat(rows, 2));
    }
}

/// <summary>Flattens dims startDim..end into one (torch.nn.Flatten, default from dim 1): [N, C, H, W] -> [N, C·H·W].</summary>
public sealed class Flatten(int startDim = 1) : Module<Tensor, Tensor>
{
    /// <inheritdoc/>
    public override Tensor Forward(Tensor x) => x.Flatten(startDim);
}

/// <summary>max(x, 0) (torch.nn.ReLU).</summary>
public sealed class ReLU : Module<Tensor, Tensor>
{
    /// <inheritdoc/>
    public override Tensor Forward(Tensor x) => x.Relu();
}

/// <summary>x·σ(x) (torch.nn.SiLU, the swish of EfficientNet).</summary>
public sealed class SiLU : Module<Tensor, Tensor>
{
    /// <inheritdoc/>
    public override Tensor Forward(Tensor x) => x.Silu();
}

/// <summary>Sub-modules applied in order, named 0, 1, 2 ... (torch.nn.Sequential; torchvision's "downsample.0").</summary>
public sealed class Sequential : Module<Tensor, Tensor>
{
    private readonly List<Module<Tensor, Tensor>> _items = [];

    /// <summary>Holds <paramref name="items"/> in order.</summary>
    public Sequential(params Module<Tensor, Tensor>[] items)
    {
        foreach (var m in items) _items.Add(Child(_items.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), m));
    }

    /// <summary>The i-th module.</summary>
    public Module<Tensor, Tensor> this[int i] => _items[i];
    /// <summary>How many modules.</summary>
    public int Count => _items.Count;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x)
    {
        using var scope = new TensorScope();
        var y = x;
        foreach (var m in _items) y = m.Forward(y);
        return scope.Keep(ReferenceEquals(y, x) ? x.View(x.Shape) : y);
    }
}

// What a block's CaptureAttention keeps: a copy outside any TensorScope and outside the graph, owned by the block.
internal static class Captured
{
    public static Tensor DetachedCopy(Tensor t)
    {
        var outer = TensorScope.Suspend();
        try
        {
            using var ng = new NoGrad();
            using var d = t.Detach();
            return d.Clone();
        }
        finally { TensorScope.Resume(outer); }
    }
}
