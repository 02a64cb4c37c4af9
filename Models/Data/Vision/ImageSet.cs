namespace AttnCore.Models.Data.Vision;

/// <summary>
/// A decoded image data set held in memory as bytes: <see cref="Count"/> images of <see cref="Channels"/> x
/// <see cref="Height"/> x <see cref="Width"/> pixels, channel-major per image ([N, C, H, W], as PyTorch's tensors),
/// one class index per image and the class names. Bytes rather than floats: CIFAR-10's 60,000 images take 184 MB
/// as bytes and four times that as floats; batches are converted (and augmented) as they are drawn.
/// </summary>
public sealed class ImageSet
{
    /// <summary>Wraps decoded pixels and labels after checking that they agree; <paramref name="source"/> names where they came from in errors.</summary>
    public ImageSet(byte[] pixels, int[] labels, int channels, int height, int width, IReadOnlyList<string> classNames, string source)
    {
        if (channels < 1 || height < 1 || width < 1)
            throw new ArgumentException($"ImageSet '{source}': image shape [{channels},{height},{width}] must be positive in every dimension");
        if (classNames.Count < 1) throw new ArgumentException($"ImageSet '{source}': no classes");
        long perImage = (long)channels * height * width;
        if (pixels.LongLength != perImage * labels.Length)
            throw new ArgumentException($"ImageSet '{source}': {labels.Length} labels but {pixels.LongLength} pixel bytes, which is {pixels.LongLength / (double)perImage:0.###} images of [{channels},{height},{width}]");
        for (int i = 0; i < labels.Length; i++)
            if ((uint)labels[i] >= (uint)classNames.Count)
                throw new ArgumentException($"ImageSet '{source}': label {labels[i]} of image {i} is outside the {classNames.Count} classes [0, {classNames.Count - 1}]");
        Pixels = pixels; Labels = labels; Channels = channels; Height = height; Width = width; ClassNames = classNames; Source = source;
    }

    /// <summary>The pixels, [N, C, H, W] row-major, 0 to 255.</summary>
    public byte[] Pixels { get; }
    /// <summary>The class index of each image.</summary>
    public int[] Labels { get; }
    /// <summary>Colour channels (1 grey, 3 RGB).</summary>
    public int Channels { get; }
    /// <summary>Image height in pixels.</summary>
    public int Height { get; }
    /// <summary>Image width in pixels.</summary>
    public int Width { get; }
    /// <summary>The class names; a label indexes this list.</summary>
    public IReadOnlyList<string> ClassNames { get; }
    /// <summary>The file or folder the set was read from (for messages).</summary>
    public string Source { get; }
    /// <summary>Number of images.</summary>
    public int Count => Labels.Length;
    /// <summary>Bytes per image (C·H·W).</summary>
    public int ImageSize => Channels * Height * Width;

    /// <summary>The pixels of image <paramref name="index"/>, [C, H, W].</summary>
    public ReadOnlySpan<byte> Image(int index)
    {
        if ((uint)index >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(index), index, $"ImageSet '{Source}': image {index} of {Count}");
        return Pixels.AsSpan(index * ImageSize, ImageSize);
    }

    /// <summary>
    /// The first <paramref name="count"/> images (all when it is at least <see cref="Count"/>): a copy, for short runs and tests.
    /// </summary>
    public ImageSet Take(int count)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), count, $"ImageSet.Take: count must be positive");
        if (count >= Count) return this;
        return new ImageSet(Pixels.AsSpan(0, count * ImageSize).ToArray(), Labels[..count], Channels, Height, Width, ClassNames, Source);
    }

    /// <summary>
    /// <paramref name="count"/> images drawn at random without replacement (all when it is at least <see cref="Count"/>),
    /// kept in their original order: a copy, for short runs on folders sorted by class, where the first N images would
    /// all be one class. The same <paramref name="seed"/> draws the same images (a partial Fisher-Yates shuffle).
    /// </summary>
    public ImageSet Sample(int count, ulong seed)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), count, $"ImageSet.Sample: count must be positive");
        if (count >= Count) return this;
        var order = new int[Count];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        var rng = new Generator(seed);
        for (int i = 0; i < count; i++)
        {
            int j = (int)rng.NextInt64(i, Count);
            (order[i], order[j]) = (order[j], order[i]);
        }
        Array.Sort(order, 0, count);
        var pixels = new byte[(long)count * ImageSize];
        var labels = new int[count];
        for (int i = 0; i < count; i++)
        {
            Image(order[i]).CopyTo(pixels.AsSpan(i * ImageSize, ImageSize));
            labels[i] = Labels[order[i]];
        }
        return new ImageSet(pixels, labels, Channels, Height, Width, ClassNames, Source);
    }

    /// <summary>The mean and standard deviation of each channel over all pixels, on the 0-1 scale (what <see cref="Augmentation"/> normalises with).</summary>
    public (double[] Mean, double[] Std) ChannelStatistics()
    {
        var sum = new double[Channels]; var sumSq = new double[Channels];
        int plane = Height * Width;
        for (int i = 0; i < Count; i++)
            for (int c = 0; c < Channels; c++)
            {
                long s = 0, s2 = 0;
                foreach (byte v in Pixels.AsSpan(i * ImageSize + c * plane, plane)) { s += v; s2 += v * v; }
                sum[c] += s; sumSq[c] += s2;
            }
        double n = (double)Count * plane;
        var mean = new double[Channels]; var std = new double[Channels];
        for (int c = 0; c < Channels; c++)
        {
            mean[c] = sum[c] / n / 255;
            std[c] = Math.Sqrt(Math.Max(0, sumSq[c] / n / (255.0 * 255) - mean[c] * mean[c]));
        }
        return (mean, std);
    }
}
