namespace AttnCore.Models.Data.Vision;

/// <summary>
/// The training-time augmentation of the CIFAR ResNet recipe (He et al. 2016, torchvision's
/// RandomCrop(size, padding) then RandomHorizontalFlip): pad the image with <see cref="Padding"/> zero pixels on
/// every side, cut a window of the original size at a random offset (dy, dx) in [0, 2·padding], then mirror it
/// left-right with probability 1/2. Optionally Random Erasing afterwards (Zhong et al. 2020, torchvision's
/// RandomErasing with its defaults, applied to the normalised image): with probability <see cref="ErasingProbability"/>
/// a rectangle of area fraction s ~ U(0.02, 0.33) and aspect ratio r = h/w with log r ~ U(log 0.3, log 3.3),
/// h = round(√(s·A·r)), w = round(√(s·A/r)), is set to 0 (the mean pixel) at a uniform position; the first of at most
/// ten draws that fits strictly inside the image is used, and none fitting means no erasing.
/// <see cref="None"/> leaves images as they are (evaluation).
/// </summary>
/// <param name="Padding">Zero pixels added on each side before the random crop (4 for CIFAR-10, 0 = no crop).</param>
/// <param name="HorizontalFlip">Mirror half of the images left-right.</param>
/// <param name="ErasingProbability">Probability that an image gets a random rectangle erased (0 = never).</param>
public sealed record Augmentation(int Padding, bool HorizontalFlip, double ErasingProbability = 0)
{
    private const double MinArea = 0.02, MaxArea = 0.33, MinAspect = 0.3, MaxAspect = 3.3;

    /// <summary>No augmentation: what evaluation uses.</summary>
    public static Augmentation None { get; } = new(0, false);

    /// <summary>The random choices for one image, drawn from <paramref name="g"/> in a fixed order (dy, dx, flip).</summary>
    public (int Dy, int Dx, bool Flip) Draw(Generator g)
    {
        if (Padding < 0) throw new ArgumentOutOfRangeException(nameof(Padding), Padding, "Augmentation: padding must be non-negative");
        int dy = Padding > 0 ? (int)g.NextInt64(0, 2 * Padding + 1) : Padding;
        int dx = Padding > 0 ? (int)g.NextInt64(0, 2 * Padding + 1) : Padding;
        bool flip = HorizontalFlip && g.NextDouble() < 0.5;
        return (dy, dx, flip);
    }

    /// <summary>
    /// The rectangle Random Erasing clears in an image of <paramref name="height"/> x <paramref name="width"/>, drawn
    /// from <paramref name="g"/> after <see cref="Draw"/>; Height 0 means none. No draw is made when
    /// <see cref="ErasingProbability"/> is 0, so runs without erasing see the same random stream as before it existed.
    /// </summary>
    public (int Top, int Left, int Height, int Width) DrawErasing(Generator g, int height, int width)
    {
        if (!(ErasingProbability >= 0 && ErasingProbability <= 1))
            throw new ArgumentOutOfRangeException(nameof(ErasingProbability), ErasingProbability, "Augmentation: the erasing probability must lie in [0, 1]");
        if (ErasingProbability == 0 || g.NextDouble() >= ErasingProbability) return (0, 0, 0, 0);
        double area = (double)height * width, logLo = Math.Log(MinAspect), logHi = Math.Log(MaxAspect);
        for (int attempt = 0; attempt < 10; attempt++)
        {
            double target = area * (MinArea + (MaxArea - MinArea) * g.NextDouble());
            double aspect = Math.Exp(logLo + (logHi - logLo) * g.NextDouble());
            int h = (int)Math.Round(Math.Sqrt(target * aspect)), w = (int)Math.Round(Math.Sqrt(target / aspect));
            if (h < 1 || w < 1 || h >= height || w >= width) continue;
            int top = (int)g.NextInt64(0, height - h + 1), left = (int)g.NextInt64(0, width - w + 1);
            return (top, left, h, w);
        }
        return (0, 0, 0, 0);
    }
}

/// <summary>
/// Per-channel normalisation (torchvision's ToTensor then Normalize(mean, std)): a byte v of channel c becomes
/// (v/255 − mean[c]) / std[c]. Padding pixels are 0 before normalisation, as torchvision pads the image itself.
/// </summary>
/// <param name="Mean">Per-channel mean on the 0-1 scale.</param>
/// <param name="Std">Per-channel standard deviation on the 0-1 scale, each positive.</param>
public sealed record Normalization(double[] Mean, double[] Std)
{
    /// <summary>The mean and standard deviation of <paramref name="set"/>'s pixels (fit on the training set; use the same for the test set).</summary>
    public static Normalization Of(ImageSet set)
    {
        var (mean, std) = set.ChannelStatistics();
        for (int c = 0; c < std.Length; c++) if (std[c] <= 0) std[c] = 1; // a constant channel: centring is all normalisation can do
        return new Normalization(mean, std);
    }

    /// <summary>Throws unless there is one positive finite mean/std pair per channel of <paramref name="channels"/>.</summary>
    public void Check(int channels, string op)
    {
        if (Mean.Length != channels || Std.Length != channels)
            throw new ArgumentException($"{op}: normalisation has {Mean.Length} means and {Std.Length} standard deviations for images of {channels} channels");
        for (int c = 0; c < channels; c++)
            if (!double.IsFinite(Mean[c]) || !(Std[c] > 0) || !double.IsFinite(Std[c]))
                throw new ArgumentException($"{op}: channel {c} has mean {Mean[c]} and std {Std[c]}; the std must be positive and both finite");
    }
}

/// <summary>The per-image kernel of the loader: crop, flip and normalise one image from bytes to floats.</summary>
public static class ImageTransform
{
    /// <summary>
    /// Writes image <paramref name="src"/> ([C, H, W] bytes) to <paramref name="dst"/> ([C, H, W] floats) as
    /// out[c, y, x] = norm_c(padded[c, y + dy, x' + dx]) with x' = W−1−x when flipping (flip after crop, as
    /// torchvision applies them) and padded[c, i, j] = src[c, i − p, j − p] inside the image, 0 outside.
    /// Each output row is one clipped copy: the only per-pixel work is the normalisation.
    /// </summary>
    public static void Apply(ReadOnlySpan<byte> src, int channels, int height, int width, int padding, int dy, int dx, bool flip,
        Normalization norm, Span<float> dst)
    {
        int plane = height * width;
        for (int c = 0; c < channels; c++)
        {
            float scale = (float)(1.0 / (255.0 * norm.Std[c])), shift = (float)(-norm.Mean[c] / norm.Std[c]);
            for (int y = 0; y < height; y++)
            {
                var row = dst.Slice(c * plane + y * width, width);
                int sy = y + dy - padding;
                if ((uint)sy >= (uint)height) { row.Fill(shift); continue; }
                var srcRow = src.Slice(c * plane + sy * width, width);
                for (int x = 0; x < width; x++)
                {
                    int sx = (flip ? width - 1 - x : x) + dx - padding;
                    row[x] = (uint)sx < (uint)width ? srcRow[sx] * scale + shift : shift;
                }
            }
        }
    }

    /// <summary>Sets rows [top, top + h) x columns [left, left + w) of every channel of the normalised image <paramref name="dst"/> to 0.</summary>
    public static void Erase(Span<float> dst, int channels, int height, int width, (int Top, int Left, int Height, int Width) box)
    {
        if (box.Height == 0) return;
        if (box.Top < 0 || box.Left < 0 || box.Width < 1 || box.Top + box.Height > height || box.Left + box.Width > width)
            throw new ArgumentOutOfRangeException(nameof(box), box, $"ImageTransform.Erase: the box must lie inside the {height}x{width} image");
        for (int c = 0; c < channels; c++)
            for (int y = box.Top; y < box.Top + box.Height; y++)
                dst.Slice(c * height * width + y * width + box.Left, box.Width).Clear();
    }
}
