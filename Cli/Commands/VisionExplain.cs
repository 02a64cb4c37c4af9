using System.Globalization;
using AttnCore.Models.Data.Vision;
using AttnCore.Models.Vision;
using AttnCore.Presentation.Vision;

namespace AttnCore.Cli.Commands;

/// <summary>
/// The explanation pictures of a trained vision model on a few test images (spread evenly over the test set):
/// gradcam.png (Grad-CAM of the predicted class on the last stage's features, every model) and, for CBAM and MHSA
/// models, attention.png: the spatial attention map of the last CBAM block, or the attention of the centre query of
/// the last MHSA block averaged over its heads, each upsampled to the image and scaled to [0, 1] by its maximum.
/// </summary>
internal static class VisionExplain
{
    public static IReadOnlyList<string> Draw(ResNet net, string modelName, ImageSet test, Normalization norm, int count, string outDir, Device device)
    {
        var written = new List<string>();
        int[] picked = Enumerable.Range(0, count).Select(i => (int)((long)i * test.Count / count)).ToArray();
        int size = test.ImageSize, h = test.Height, w = test.Width;
        var input = new float[count * size];
        for (int i = 0; i < count; i++)
            ImageTransform.Apply(test.Image(picked[i]), test.Channels, h, w, 0, 0, 0, false, norm, input.AsSpan(i * size, size));
        bool attention = net.Attention is VisionAttention.Cbam or VisionAttention.Mhsa;
        using var scope = new TensorScope();
        net.Eval();
        net.CaptureAttention = attention;
        Tensor logits, features;
        try
        {
            using (new NoGrad()) (logits, features) = net.ForwardWithFeatures(Tensor.FromArray(input, [count, test.Channels, h, w], device));
        }
        finally { net.CaptureAttention = false; }
        float[] probs;
        using (new NoGrad()) probs = logits.Softmax(-1).ToArray<float>();
        int classes = logits.Shape[1];
        int[] predicted = Enumerable.Range(0, count).Select(i => Enumerable.Range(0, classes).MaxBy(c => probs[i * classes + c])).ToArray();
        string Caption(int i) => string.Create(CultureInfo.InvariantCulture,
            $"{test.ClassNames[test.Labels[picked[i]]]} -> {test.ClassNames[predicted[i]]} ({probs[i * classes + predicted[i]]:F2})");

        var cams = GradCam.Maps(features, net.Head, predicted);
        net.Parameters().ZeroGrad();
        int fh = features.Shape[2], fw = features.Shape[3];
        var tiles = Enumerable.Range(0, count).Select(i => new HeatTile(test.Image(picked[i]).ToArray(), test.Channels, h, w,
            GradCam.Normalize(GradCam.Upsample(cams[i], fh, fw, h, w)), Caption(i))).ToList();
        string gradcam = Path.Combine(outDir, "gradcam.png");
        VisionPictures.HeatGrid(tiles, $"Grad-CAM of the predicted class, {modelName} (true -> predicted (probability))", gradcam);
        written.Add(gradcam);

        var block = attention ? net.Blocks().LastOrDefault(b => b.LastAttention is not null) : null;
        if (block?.LastAttention is Tensor map)
        {
            var values = map.ToArray<float>();
            string what;
            float[][] maps;
            if (net.Attention == VisionAttention.Cbam)
            {
                int mh = map.Shape[2], mw = map.Shape[3];
                maps = Enumerable.Range(0, count).Select(i => GradCam.Upsample(values.AsSpan(i * mh * mw, mh * mw), mh, mw, h, w)).ToArray();
                what = "CBAM spatial attention of the last block";
            }
            else
            {
                // [N, heads, HW, HW]: the row of the centre query, averaged over the heads.
                int heads = map.Shape[1], hw = map.Shape[2], side = (int)Math.Round(Math.Sqrt(hw));
                int mh = fh * fw == hw ? fh : side, mw = hw / mh, query = mh / 2 * mw + mw / 2;
                maps = new float[count][];
                for (int i = 0; i < count; i++)
                {
                    var row = new float[hw];
                    for (int head = 0; head < heads; head++)
                        for (int k = 0; k < hw; k++) row[k] += values[(((long)i * heads + head) * hw + query) * hw + k] / heads;
                    maps[i] = GradCam.Upsample(row, mh, mw, h, w);
                }
                what = "MHSA attention of the centre query, last block, mean over heads";
            }
            var attentionTiles = Enumerable.Range(0, count).Select(i => tiles[i] with { Heat = GradCam.Normalize(maps[i]) }).ToList();
            string attentionPng = Path.Combine(outDir, "attention.png");
            VisionPictures.HeatGrid(attentionTiles, $"{what}, {modelName}", attentionPng);
            written.Add(attentionPng);
        }
        return written;
    }
}
