using AttnCore.Models.Data.Vision;

namespace AttnCore.Presentation.Vision;

/// <summary>
/// Grad-CAM (Selvaraju et al. 2017): where in the image a class's score comes from. For a feature map A [K, h, w]
/// of the last convolutional stage and the class score y^c, the channel weights are the spatially averaged gradients
/// α_k = (1/hw) Σ_ij ∂y^c/∂A_kij, and the map is L = ReLU(Σ_k α_k A_k) [h, w], upsampled bilinearly to the image and
/// scaled to [0, 1] for display. The gradient comes from autograd through the network's head: the features are
/// detached into a leaf that requires gradients, the head maps them to logits, and Backward of Σ_n y^{c_n}_n leaves
/// ∂y/∂A in the leaf's gradient (one backward for the whole batch: image n's score depends only on its own features).
/// </summary>
public static class GradCam
{
    /// <summary>
    /// L = ReLU(Σ_k α_k A_k) with α_k the mean of <paramref name="gradients"/> over channel k; both inputs are [K, h, w].
    /// Accumulates in double.
    /// </summary>
    public static float[] Map(ReadOnlySpan<float> features, ReadOnlySpan<float> gradients, int channels, int height, int width)
    {
        int plane = height * width;
        if (features.Length != channels * plane || gradients.Length != channels * plane)
            throw new ArgumentException($"GradCam.Map: features ({features.Length}) and gradients ({gradients.Length}) must both hold [{channels},{height},{width}] = {channels * plane} values");
        var sum = new double[plane];
        for (int k = 0; k < channels; k++)
        {
            double alpha = 0;
            foreach (float g in gradients.Slice(k * plane, plane)) alpha += g;
            alpha /= plane;
            var a = features.Slice(k * plane, plane);
            for (int p = 0; p < plane; p++) sum[p] += alpha * a[p];
        }
        var map = new float[plane];
        for (int p = 0; p < plane; p++) map[p] = (float)Math.Max(0, sum[p]);
        return map;
    }

    /// <summary>
    /// Bilinear resize of a [h, w] map to [H, W] as PyTorch's interpolate(mode="bilinear", align_corners=False): the
    /// output pixel centre (i + 0.5)·h/H − 0.5, clamped at 0, is interpolated between its two neighbours on each axis.
    /// </summary>
    public static float[] Upsample(ReadOnlySpan<float> map, int height, int width, int outHeight, int outWidth)
    {
        if (map.Length != height * width) throw new ArgumentException($"GradCam.Upsample: {map.Length} values are not a [{height},{width}] map");
        var result = new float[outHeight * outWidth];
        static (int I0, int I1, double T) Source(int i, int inSize, int outSize)
        {
            double s = Math.Max(0, (i + 0.5) * inSize / outSize - 0.5);
            int i0 = Math.Min((int)s, inSize - 1);
            return (i0, Math.Min(i0 + 1, inSize - 1), s - i0);
        }
        for (int y = 0; y < outHeight; y++)
        {
            var (y0, y1, ty) = Source(y, height, outHeight);
            for (int x = 0; x < outWidth; x++)
            {
                var (x0, x1, tx) = Source(x, width, outWidth);
                double top = map[y0 * width + x0] * (1 - tx) + map[y0 * width + x1] * tx;
                double bottom = map[y1 * width + x0] * (1 - tx) + map[y1 * width + x1] * tx;
                result[y * outWidth + x] = (float)(top * (1 - ty) + bottom * ty);
            }
        }
        return result;
    }

    /// <summary>Scales a map to [0, 1] by its maximum (an all-zero map stays zero).</summary>
    public static float[] Normalize(float[] map)
    {
        float max = map.Length == 0 ? 0 : map.Max();
        return max > 0 ? map.Select(v => v / max).ToArray() : map;
    }

    /// <summary>
    /// Grad-CAM maps [h, w] (unscaled) for each image of a batch: <paramref name="features"/> [N, K, h, w] is the last
    /// stage's output, <paramref name="head"/> maps such features to logits [N, classes], and <paramref name="classes"/>
    /// names the class to explain for each image (usually the predicted one).
    /// </summary>
    public static float[][] Maps(Tensor features, Func<Tensor, Tensor> head, IReadOnlyList<int> classes)
    {
        if (features.Rank != 4) throw new ArgumentException($"GradCam.Maps: features must be [N,K,h,w], got {AttnCore.Shape.Format(features.Shape)}");
        int n = features.Shape[0], k = features.Shape[1], h = features.Shape[2], w = features.Shape[3];
        if (classes.Count != n) throw new ArgumentException($"GradCam.Maps: {classes.Count} classes for a batch of {n}");
        using var scope = new TensorScope();
        var leaf = features.Detach().Contiguous().Clone().RequiresGrad_();
        var logits = head(leaf);
        if (logits.Rank != 2 || logits.Shape[0] != n)
            throw new ArgumentException($"GradCam.Maps: the head returned {AttnCore.Shape.Format(logits.Shape)}, not logits [{n}, classes]");
        var select = new float[logits.Numel];
        for (int i = 0; i < n; i++)
        {
            if ((uint)classes[i] >= (uint)logits.Shape[1]) throw new ArgumentOutOfRangeException(nameof(classes), classes[i], $"GradCam.Maps: class of image {i} is outside the {logits.Shape[1]} logits");
            select[i * logits.Shape[1] + classes[i]] = 1;
        }
        var score = logits.Mul(Tensor.FromArray(select, logits.Shape, logits.Device)).Sum();
        score.Backward();
        var a = leaf.Detach().ToArray<float>();
        var g = leaf.Grad!.ToArray<float>();
        leaf.Grad.Dispose();
        int size = k * h * w;
        return Enumerable.Range(0, n).Select(i => Map(a.AsSpan(i * size, size), g.AsSpan(i * size, size), k, h, w)).ToArray();
    }
}
