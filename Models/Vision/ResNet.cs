using AttnCore.Models.Nn;

namespace AttnCore.Models.Vision;

/// <summary>The attention block a ResNet adds to its residual branches.</summary>
public enum VisionAttention
{
    /// <summary>Plain ResNet.</summary>
    None,
    /// <summary>Squeeze-and-Excitation on each block's residual branch, before the addition (SE-ResNet).</summary>
    SE,
    /// <summary>CBAM on each block's residual branch, before the addition.</summary>
    Cbam,
    /// <summary>BoTNet: multi-head self-attention with relative positions in place of the 3x3 convolution of the last stage's blocks.</summary>
    Mhsa,
}

/// <summary>How a ResNet block is built: its attention and, for the attention blocks, their settings.</summary>
/// <param name="Attention">The attention block.</param>
/// <param name="Reduction">SE / CBAM reduction ratio r.</param>
/// <param name="UseMhsa">True in the last stage of an <see cref="VisionAttention.Mhsa"/> network.</param>
/// <param name="Heads">MHSA heads.</param>
/// <param name="MaxExtent">Largest feature-map side the MHSA takes.</param>
public readonly record struct BlockOptions(VisionAttention Attention, int Reduction, bool UseMhsa, int Heads = 4, int MaxExtent = 16);

/// <summary>A residual block: its output for x, as every ResNet block.</summary>
public abstract class ResidualBlock : Module<Tensor, Tensor>
{
    private protected Module<Tensor, Tensor>? _attention;
    private protected Sequential? _downsample;

    /// <summary>The SE, CBAM or MHSA module of this block, or null.</summary>
    public Module? AttentionModule { get; private protected set; }

    /// <summary>When set, the block's CBAM or MHSA keeps its last attention map (see <see cref="Cbam.LastAttention"/>, <see cref="BotMhsa2d.LastAttention"/>).</summary>
    public bool CaptureAttention
    {
        get => AttentionModule switch { Cbam c => c.CaptureAttention, BotMhsa2d m => m.CaptureAttention, _ => false };
        set { if (AttentionModule is Cbam c) c.CaptureAttention = value; else if (AttentionModule is BotMhsa2d m) m.CaptureAttention = value; }
    }

    /// <summary>The last captured attention map (CBAM [N, 1, H, W], MHSA [N, heads, HW, HW]), or null.</summary>
    public Tensor? LastAttention => AttentionModule switch { Cbam c => c.LastAttention, BotMhsa2d m => m.LastAttention, _ => null };

    // SE or CBAM after the branch's last BatchNorm, then the shortcut and the final ReLU.
    private protected Tensor Finish(Tensor branch, Tensor x)
    {
        var shortcut = _downsample is null ? x : _downsample.Forward(x);
        if (_attention is SqueezeExcitation se)
        {
            // SE's recalibration, the residual add and the ReLU in one pass (and one pass back).
            using var s = se.Scale(branch);
            return branch.ScaleAddRelu(s, shortcut);
        }
        var attended = _attention is null ? branch : _attention.Forward(branch);
        return attended.AddRelu(shortcut);
    }

    private protected void AddBranchAttention(int channels, in BlockOptions o, Generator g, Device? device)
    {
        _attention = o.Attention switch
        {
            VisionAttention.SE => Child("se", new SqueezeExcitation(channels, o.Reduction, g, device)),
            VisionAttention.Cbam => Child("cbam", new Cbam(channels, o.Reduction, generator: g, device: device)),
            _ => null,
        };
        AttentionModule ??= _attention;
    }

    private protected void AddDownsample(int inChannels, int outChannels, int stride, Generator g, Device? device)
    {
        if (stride != 1 || inChannels != outChannels)
            _downsample = Child("downsample", new Sequential(new Conv2d(inChannels, outChannels, 1, stride, bias: false, generator: g, device: device), new BatchNorm2d(outChannels, device: device)));
    }
}

/// <summary>
/// The two-convolution block of ResNet-18/34 and the CIFAR ResNets: y = ReLU(A(BN(conv3x3(ReLU(BN(conv3x3_s(x)))))) + S(x)),
/// A the optional SE / CBAM, S the identity or a 1x1 strided convolution with BatchNorm ("downsample", option B).
/// With MHSA the second 3x3 convolution (stride 1) is the self-attention, named mhsa.
/// </summary>
public sealed class BasicBlock : ResidualBlock
{
    /// <summary>Output channels per input channel of the block's width (1).</summary>
    public const int Expansion = 1;
    private readonly Conv2d _conv1;
    private readonly Module<Tensor, Tensor> _conv2;
    private readonly BatchNorm2d _bn1, _bn2;

    /// <summary>A block from <paramref name="inChannels"/> to <paramref name="channels"/> with the first convolution's <paramref name="stride"/>.</summary>
    public BasicBlock(int inChannels, int channels, int stride, BlockOptions options, Generator? generator = null, Device? device = null)
    {
        var g = generator ?? Generator.Default;
        _conv1 = Child("conv1", new Conv2d(inChannels, channels, 3, stride, 1, bias: false, generator: g, device: device));
        _bn1 = Child("bn1", new BatchNorm2d(channels, device: device));
        if (options.UseMhsa)
        {
            var mhsa = new BotMhsa2d(channels, options.Heads, options.MaxExtent, g, device);
            _conv2 = Child("mhsa", mhsa);
            AttentionModule = mhsa;
        }
        else _conv2 = Child("conv2", new Conv2d(channels, channels, 3, 1, 1, bias: false, generator: g, device: device));
        _bn2 = Child("bn2", new BatchNorm2d(channels, device: device));
        AddBranchAttention(channels, options, g, device);
        AddDownsample(inChannels, channels, stride, g, device);
    }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x)
    {
        using var scope = new TensorScope();
        var h = _bn1.ForwardRelu(_conv1.Forward(x));
        h = _bn2.Forward(_conv2.Forward(h));
        return scope.Keep(Finish(h, x));
    }
}

/// <summary>
/// The bottleneck block of ResNet-50 (torchvision's v1.5: the stride on the 3x3 convolution):
/// y = ReLU(A(BN(conv1x1↑4(ReLU(BN(conv3x3_s(ReLU(BN(conv1x1(x))))))))) + S(x)). With MHSA (BoTNet) the 3x3
/// convolution is the self-attention (named mhsa), followed by a 2x2 average pool where the stride is 2.
/// </summary>
public sealed class Bottleneck : ResidualBlock
{
    /// <summary>Output channels per channel of the block's width (4).</summary>
    public const int Expansion = 4;
    private readonly Conv2d _conv1, _conv3;
    private readonly Module<Tensor, Tensor> _conv2;
    private readonly AvgPool2d? _pool;
    private readonly BatchNorm2d _bn1, _bn2, _bn3;

    /// <summary>A block from <paramref name="inChannels"/> through width <paramref name="width"/> to 4·width channels.</summary>
    public Bottleneck(int inChannels, int width, int stride, BlockOptions options, Generator? generator = null, Device? device = null)
    {
        var g = generator ?? Generator.Default;
        _conv1 = Child("conv1", new Conv2d(inChannels, width, 1, bias: false, generator: g, device: device));
        _bn1 = Child("bn1", new BatchNorm2d(width, device: device));
        if (options.UseMhsa)
        {
            var mhsa = new BotMhsa2d(width, options.Heads, options.MaxExtent, g, device);
            _conv2 = Child("mhsa", mhsa);
            AttentionModule = mhsa;
            if (stride == 2) _pool = new AvgPool2d(2);
            else if (stride != 1) throw new ArgumentException($"Bottleneck: MHSA blocks take stride 1 or 2, got {stride}");
        }
        else _conv2 = Child("conv2", new Conv2d(width, width, 3, stride, 1, bias: false, generator: g, device: device));
        _bn2 = Child("bn2", new BatchNorm2d(width, device: device));
        _conv3 = Child("conv3", new Conv2d(width, width * Expansion, 1, bias: false, generator: g, device: device));
        _bn3 = Child("bn3", new BatchNorm2d(width * Expansion, device: device));
        AddBranchAttention(width * Expansion, options, g, device);
        AddDownsample(inChannels, width * Expansion, stride, g, device);
    }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x)
    {
        using var scope = new TensorScope();
        var h = _bn1.ForwardRelu(_conv1.Forward(x));
        h = _conv2.Forward(h);
        if (_pool is not null) h = _pool.Forward(h);
        h = _bn2.ForwardRelu(h);
        h = _bn3.Forward(_conv3.Forward(h));
        return scope.Keep(Finish(h, x));
    }
}

/// <summary>
/// A residual network (He et al. 2016) mapping images [N, C, H, W] to logits [N, classes], with torchvision's
/// parameter names (conv1.weight, bn1.running_mean, layer1.0.conv1.weight, layer2.0.downsample.0.weight, fc.weight).
/// The ImageNet form (ResNet-18/34/50) has a 7x7/2 convolution and a 3x3/2 max pool as stem and four stages of
/// 64, 128, 256, 512 widths; the CIFAR form (ResNet-20/32/56) a 3x3 convolution stem and three stages of 16, 32,
/// 64 channels with n blocks each (depth 6n + 2). Every shortcut that changes shape is option B (a 1x1 strided
/// convolution with BatchNorm), for CIFAR too. Convolutions are initialised as torchvision (Kaiming normal, fan
/// out), BatchNorms to 1 and 0, the classifier as torch.nn.Linear.
/// </summary>
public class ResNet : Module<Tensor, Tensor>
{
    private readonly Conv2d _conv1;
    private readonly BatchNorm2d _bn1;
    private readonly MaxPool2d? _maxpool;
    private readonly List<Sequential> _stages = [];
    private readonly AdaptiveAvgPool2d _avgpool;
    private readonly Linear _fc;

    /// <summary>
    /// A ResNet of <paramref name="blocksPerStage"/> blocks per stage (stage widths <paramref name="widths"/>), built of
    /// <see cref="Bottleneck"/> blocks when <paramref name="bottleneck"/>, else <see cref="BasicBlock"/>; <paramref name="imagenetStem"/>
    /// selects the 7x7 + max-pool stem over the CIFAR 3x3 one. <paramref name="reduction"/> is the SE / CBAM ratio.
    /// </summary>
    public ResNet(int[] blocksPerStage, int[] widths, bool bottleneck, bool imagenetStem, int inChannels, int numClasses,
        VisionAttention attention = VisionAttention.None, int reduction = 16, int mhsaHeads = 4, int mhsaMaxExtent = 16,
        Generator? generator = null, Device? device = null)
    {
        if (blocksPerStage.Length == 0 || blocksPerStage.Length != widths.Length || blocksPerStage.Any(b => b <= 0) || widths.Any(w => w <= 0))
            throw new ArgumentException($"ResNet: blocks per stage [{string.Join(",", blocksPerStage)}] and widths [{string.Join(",", widths)}] must be non-empty, positive and of one length");
        if (inChannels <= 0 || numClasses <= 0) throw new ArgumentException($"ResNet: input channels {inChannels} and classes {numClasses} must be positive");
        var g = generator ?? Generator.Default;
        InChannels = inChannels; NumClasses = numClasses; Attention = attention;
        int stem = widths[0];
        _conv1 = Child("conv1", imagenetStem
            ? new Conv2d(inChannels, stem, 7, 2, 3, bias: false, generator: g, device: device)
            : new Conv2d(inChannels, stem, 3, 1, 1, bias: false, generator: g, device: device));
        _bn1 = Child("bn1", new BatchNorm2d(stem, device: device));
        if (imagenetStem) _maxpool = new MaxPool2d(3, 2, 1);
        int channels = stem, expansion = bottleneck ? Bottleneck.Expansion : BasicBlock.Expansion;
        for (int s = 0; s < widths.Length; s++)
        {
            var options = new BlockOptions(attention == VisionAttention.Mhsa ? VisionAttention.None : attention, reduction,
                attention == VisionAttention.Mhsa && s == widths.Length - 1, mhsaHeads, mhsaMaxExtent);
            var blocks = new Module<Tensor, Tensor>[blocksPerStage[s]];
            for (int b = 0; b < blocks.Length; b++)
            {
                int stride = b == 0 && s > 0 ? 2 : 1;
                blocks[b] = bottleneck ? new Bottleneck(channels, widths[s], stride, options, g, device) : new BasicBlock(channels, widths[s], stride, options, g, device);
                channels = widths[s] * expansion;
            }
            _stages.Add(Child($"layer{s + 1}", new Sequential(blocks)));
        }
        FeatureChannels = channels;
        _avgpool = new AdaptiveAvgPool2d(1);
        _fc = Child("fc", new Linear(channels, numClasses, generator: g, device: device));
        foreach (var conv in Convolutions(this)) conv.KaimingNormalFanOut(g);
    }

    /// <summary>Image channels taken.</summary>
    public int InChannels { get; }
    /// <summary>Classes scored.</summary>
    public int NumClasses { get; }
    /// <summary>The attention option the network was built with.</summary>
    public VisionAttention Attention { get; }
    /// <summary>Channels of the last stage's feature map (the classifier's input).</summary>
    public int FeatureChannels { get; }
    /// <summary>The stages layer1, layer2 ... in order.</summary>
    public IReadOnlyList<Sequential> Stages => _stages;
    /// <summary>The classifier [classes, FeatureChannels].</summary>
    public Linear Classifier => _fc;

    /// <summary>Every residual block, stage by stage.</summary>
    public IEnumerable<ResidualBlock> Blocks()
    {
        foreach (var stage in _stages)
            for (int i = 0; i < stage.Count; i++) yield return (ResidualBlock)stage[i];
    }

    /// <summary>Sets <see cref="ResidualBlock.CaptureAttention"/> on every block that has a CBAM or MHSA.</summary>
    public bool CaptureAttention
    {
        get => Blocks().Any(b => b.CaptureAttention);
        set { foreach (var b in Blocks()) b.CaptureAttention = value; }
    }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x)
    {
        var (logits, features) = ForwardWithFeatures(x);
        features.Dispose();
        return logits;
    }

    /// <summary>
    /// Logits [N, classes] and the last stage's feature map A [N, FeatureChannels, h, w]; the caller owns both. By
    /// default A stays in the graph (logits = Head(A)). With <paramref name="featuresAsLeaf"/> A is cut from the
    /// layers below and made a leaf that requires gradients, and the logits are computed from it, so after
    /// <c>logits[n, c].Backward()</c> <c>A.Grad</c> holds ∂y_c/∂A: what Grad-CAM weighs A's channels by
    /// (α_k = mean over h, w of ∂y_c/∂A_k, map = ReLU(Σ_k α_k A_k)).
    /// </summary>
    public (Tensor Logits, Tensor Features) ForwardWithFeatures(Tensor x, bool featuresAsLeaf = false)
    {
        if (x.Rank != 4 || x.Size(1) != InChannels)
            throw new ArgumentException($"ResNet: input must be [N, {InChannels}, H, W], got {Shape.Format(x.Shape)}");
        using var scope = new TensorScope();
        var h = _bn1.ForwardRelu(_conv1.Forward(x));
        if (_maxpool is not null) h = _maxpool.Forward(h);
        foreach (var stage in _stages) h = stage.Forward(h);
        if (featuresAsLeaf) h = h.Detach().RequiresGrad_();
        var logits = Head(h);
        return (scope.Keep(logits), scope.Keep(h));
    }

    /// <summary>The classifier on a last-stage feature map [N, FeatureChannels, h, w]: global average pool, flatten, fc.</summary>
    public Tensor Head(Tensor features)
    {
        if (features.Rank != 4 || features.Size(1) != FeatureChannels)
            throw new ArgumentException($"ResNet.Head: features must be [N, {FeatureChannels}, h, w], got {Shape.Format(features.Shape)}");
        using var scope = new TensorScope();
        return scope.Keep(_fc.Forward(_avgpool.Forward(features).Flatten(1)));
    }

    private static IEnumerable<Conv2d> Convolutions(Module m)
    {
        foreach (var (_, child) in m.NamedChildren())
        {
            if (child is Conv2d c) yield return c;
            foreach (var inner in Convolutions(child)) yield return inner;
        }
    }
}
