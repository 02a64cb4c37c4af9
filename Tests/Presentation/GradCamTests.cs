using AttnCore.Models.Data.Vision;
using AttnCore.Presentation.Vision;
using NUnit.Framework;

namespace AttnCore.Tests.Presentation;

/// <summary>
/// Grad-CAM's arithmetic against float64 computed here, its autograd plumbing against the closed form for a
/// global-average-pool + linear head (∂y_c/∂A_kij = W_ck/(hw), so α_k = W_ck/(hw)), the bilinear resize against
/// hand-computed values, and the confusion matrix on a hand-made example.
/// </summary>
[TestFixture, Category("Models")]
public class GradCamTests
{
    static float[] Sequence(int n, double a, double b) => Enumerable.Range(0, n).Select(i => (float)Math.Sin(a * i + b)).ToArray();

    [Test]
    public void The_map_is_the_relu_of_the_gradient_weighted_channel_sum()
    {
        int k = 3, h = 2, w = 3, plane = h * w;
        var a = Sequence(k * plane, 0.7, 0.2);
        var g = Sequence(k * plane, 1.3, -0.4);
        var map = GradCam.Map(a, g, k, h, w);
        for (int p = 0; p < plane; p++)
        {
            double sum = 0;
            for (int c = 0; c < k; c++)
            {
                double alpha = Enumerable.Range(0, plane).Sum(q => (double)g[c * plane + q]) / plane;
                sum += alpha * a[c * plane + p];
            }
            Assert.That(map[p], Is.EqualTo(Math.Max(0, sum)).Within(1e-6), $"pixel {p}");
        }
        Assert.That(map, Has.Some.EqualTo(0f).And.Some.GreaterThan(0f), "the case has both signs, so the ReLU is exercised");
        Assert.That(() => GradCam.Map(a, g.AsSpan(1), k, h, w), Throws.ArgumentException.With.Message.Contains("[3,2,3]"));
    }

    [Test]
    public void Autograd_through_a_pooled_linear_head_gives_the_closed_form_weights()
    {
        int n = 2, k = 4, h = 3, w = 2, classes = 3;
        var features = Tensor.FromArray(Sequence(n * k * h * w, 0.9, 0.1), [n, k, h, w]);
        var weights = Sequence(classes * k, 0.5, 1.1);
        using var fc = Tensor.FromArray(weights, [classes, k]).RequiresGrad_();
        int[] target = [2, 0];
        var maps = GradCam.Maps(features, f => f.Mean([2, 3]).MatMul(fc.Transpose(0, 1)), target);
        var a = features.ToArray<float>();
        for (int i = 0; i < n; i++)
            for (int p = 0; p < h * w; p++)
            {
                double sum = 0;
                for (int c = 0; c < k; c++) sum += weights[target[i] * k + c] / (h * w) * a[(i * k + c) * h * w + p];
                Assert.That(maps[i][p], Is.EqualTo(Math.Max(0, sum)).Within(1e-6), $"image {i} pixel {p}");
            }
        Assert.That(() => GradCam.Maps(features, f => f.Mean([2, 3]).MatMul(fc.Transpose(0, 1)), [0]), Throws.ArgumentException.With.Message.Contains("1 classes for a batch of 2"));
        features.Dispose();
    }

    [Test]
    public void Bilinear_upsampling_matches_hand_computed_values_and_normalising_scales_to_one()
    {
        // 1x2 -> 1x4, align_corners=False: source x = (i + 0.5)/2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to the last pixel).
        var up = GradCam.Upsample([2f, 6f], 1, 2, 1, 4);
        Assert.That(up, Is.EqualTo(new[] { 2f, 3f, 5f, 6f }).Within(1e-6));
        // 2x2 -> 4x4 centre pixel (1,1): source (0.25, 0.25) -> 0.75·0.75·a + 0.75·0.25·b + 0.25·0.75·c + 0.25·0.25·d.
        var up2 = GradCam.Upsample([1f, 2f, 3f, 4f], 2, 2, 4, 4);
        Assert.That(up2[5], Is.EqualTo(0.5625 * 1 + 0.1875 * 2 + 0.1875 * 3 + 0.0625 * 4).Within(1e-6));
        Assert.That(GradCam.Normalize([1f, 4f, 2f]), Is.EqualTo(new[] { 0.25f, 1f, 0.5f }));
        Assert.That(GradCam.Normalize([0f, 0f]), Is.EqualTo(new[] { 0f, 0f }));
    }

    [Test]
    public void The_confusion_matrix_counts_true_rows_against_predicted_columns()
    {
        var m = new ConfusionMatrix(3);
        m.Add([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2]);
        Assert.That(m.Counts, Is.EqualTo(new long[,] { { 1, 1, 0 }, { 0, 1, 0 }, { 1, 0, 2 } }));
        Assert.That(m.Accuracy, Is.EqualTo(4.0 / 6));
        Assert.That(m.PerClassAccuracy(), Is.EqualTo(new[] { 0.5, 1.0, 2.0 / 3 }));
        Assert.That(() => m.Add([0], [3]), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("predicted 3"));
        Assert.That(() => m.Add([0, 1], [0]), Throws.ArgumentException.With.Message.Contains("2 labels but 1 predictions"));
    }
}
