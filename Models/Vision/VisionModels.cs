namespace AttnCore.Models.Vision;

/// <summary>
/// The ResNet family by name: resnet20, resnet32, resnet56 (CIFAR form: 3 stages of 16, 32, 64 channels, n = 3, 5, 9
/// basic blocks each), resnet18, resnet34 (basic blocks) and resnet50 (bottlenecks), each optionally suffixed -se,
/// -cbam or -mhsa (<see cref="VisionAttention"/>). SE and CBAM use r = 16 in the ImageNet networks and r = 4 in the
/// CIFAR ones (16 channels at r = 16 would squeeze to a single unit).
/// </summary>
public static class VisionModels
{
    /// <summary>Every base name <see cref="Create"/> takes.</summary>
    public static readonly IReadOnlyList<string> BaseNames = ["resnet20", "resnet32", "resnet56", "resnet18", "resnet34", "resnet50"];

    /// <summary>Every name <see cref="Create"/> takes: each base name plain and with -se, -cbam and -mhsa.</summary>
    public static IReadOnlyList<string> Names => [.. BaseNames.SelectMany(b => new[] { b, b + "-se", b + "-cbam", b + "-mhsa" })];

    /// <summary>
    /// The network called <paramref name="name"/> (see <see cref="Names"/>; case-insensitive) for images of
    /// <paramref name="inChannels"/> channels and <paramref name="numClasses"/> classes.
    /// </summary>
    public static ResNet Create(string name, int inChannels, int numClasses, Generator? generator = null, Device? device = null)
    {
        var (baseName, attention) = Parse(name);
        return baseName switch
        {
            "resnet20" => Cifar(3, inChannels, numClasses, attention, generator, device),
            "resnet32" => Cifar(5, inChannels, numClasses, attention, generator, device),
            "resnet56" => Cifar(9, inChannels, numClasses, attention, generator, device),
            "resnet18" => ImageNet([2, 2, 2, 2], false, inChannels, numClasses, attention, generator, device),
            "resnet34" => ImageNet([3, 4, 6, 3], false, inChannels, numClasses, attention, generator, device),
            _ => new ResNet50WithAttention(attention, inChannels, numClasses, generator, device),
        };
    }

    /// <summary>The base name and attention of <paramref name="name"/>; an unknown name throws, listing the valid ones.</summary>
    public static (string BaseName, VisionAttention Attention) Parse(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        var lower = name.Trim().ToLowerInvariant();
        foreach (var (suffix, attention) in new[] { ("-se", VisionAttention.SE), ("-cbam", VisionAttention.Cbam), ("-mhsa", VisionAttention.Mhsa), ("", VisionAttention.None) })
        {
            if (!lower.EndsWith(suffix, StringComparison.Ordinal)) continue;
            var b = lower[..^suffix.Length];
            if (BaseNames.Contains(b)) return (b, attention);
        }
        throw new ArgumentException($"VisionModels: unknown model '{name}'; valid names: {string.Join(", ", Names)}", nameof(name));
    }

    private static ResNet Cifar(int n, int inChannels, int numClasses, VisionAttention attention, Generator? generator, Device? device)
        => new([n, n, n], [16, 32, 64], bottleneck: false, imagenetStem: false, inChannels, numClasses, attention, reduction: 4, generator: generator, device: device);

    private static ResNet ImageNet(int[] blocks, bool bottleneck, int inChannels, int numClasses, VisionAttention attention, Generator? generator, Device? device)
        => new(blocks, [64, 128, 256, 512], bottleneck, imagenetStem: true, inChannels, numClasses, attention, generator: generator, device: device);
}

/// <summary>
/// ResNet-50 (torchvision's v1.5 bottlenecks, [3, 4, 6, 3] blocks, widths 64..512, 2048 features) with the attention
/// option of <see cref="VisionAttention"/>: SE-ResNet-50, CBAM-ResNet-50 or, with MHSA, BoTNet-50 (self-attention in
/// place of the 3x3 convolutions of the last stage's three blocks).
/// </summary>
public sealed class ResNet50WithAttention(VisionAttention attention = VisionAttention.None, int inChannels = 3, int numClasses = 1000, Generator? generator = null, Device? device = null)
    : ResNet([3, 4, 6, 3], [64, 128, 256, 512], bottleneck: true, imagenetStem: true, inChannels, numClasses, attention, generator: generator, device: device);
