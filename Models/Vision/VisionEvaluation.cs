using AttnCore.Models.Data.Vision;
using AttnCore.Models.Nn;

namespace AttnCore.Models.Vision;

/// <summary>The result of <see cref="VisionEvaluation.Evaluate"/>.</summary>
/// <param name="Loss">Mean cross-entropy (no smoothing) of the reported prediction.</param>
/// <param name="Confusion">Confusion matrix of the reported prediction (with mirroring: of the averaged distribution).</param>
/// <param name="PlainConfusion">With mirroring, the confusion matrix of the original images alone; otherwise the same as <see cref="Confusion"/>.</param>
public sealed record VisionEvaluationResult(double Loss, ConfusionMatrix Confusion, ConfusionMatrix PlainConfusion);

/// <summary>
/// A classifier scored on a whole test set, in order, without augmentation; optionally with flip test-time augmentation
/// (the prediction for an image is the mean of the softmax distributions for the image and its left-right mirror, as
/// in the fast CIFAR-10 training recipes, e.g. Page 2018, Jordan 2024). The mirror is the one the training flip makes
/// (<see cref="ImageTransform.Apply"/> with flip), taken on the normalised batch by <see cref="Tensor.IndexSelect"/>
/// along the width. The loss of the averaged distribution p is −log p[label]: the cross-entropy of logits log p.
/// </summary>
public static class VisionEvaluation
{
    /// <summary>
    /// <paramref name="net"/> (in evaluation mode, no gradients) over every image of <paramref name="test"/> in batches
    /// of <paramref name="batch"/>, normalised by <paramref name="norm"/>; with <paramref name="mirror"/>, flip
    /// test-time augmentation as described on the class.
    /// </summary>
    public static VisionEvaluationResult Evaluate(Module<Tensor, Tensor> net, ImageSet test, int batch, Normalization norm, Device device, bool mirror = false)
    {
        ArgumentNullException.ThrowIfNull(net);
        ArgumentNullException.ThrowIfNull(test);
        using var loader = new VisionLoader(test, batch, Augmentation.None, norm, shuffle: false, dropLast: false, seed: 0);
        var confusion = new ConfusionMatrix(test.ClassNames.Count);
        var plain = mirror ? new ConfusionMatrix(test.ClassNames.Count) : confusion;
        double sum = 0;
        bool wasTraining = net.Training;
        net.Eval();
        try
        {
            using var noGrad = new NoGrad();
            using var reversed = Tensor.FromArray(Enumerable.Range(0, test.Width).Reverse().Select(i => (long)i).ToArray(), null, device);
            for (int k = 0; k < loader.BatchesPerEpoch; k++)
            {
                using var scope = new TensorScope();
                var (x, y) = loader.Next(device);
                var logits = net.Forward(x);
                var truth = y.ToArray<long>();
                if (mirror)
                {
                    plain.Add(truth, logits.ArgMax(1).ToArray<long>());
                    var mirroredLogits = net.Forward(x.IndexSelect(3, reversed));
                    logits = ((logits.Softmax(1) + mirroredLogits.Softmax(1)) * 0.5).Log();
                }
                sum += logits.CrossEntropy(y, reduction: Reduction.Sum).Item();
                confusion.Add(truth, logits.ArgMax(1).ToArray<long>());
            }
        }
        finally
        {
            if (wasTraining) net.Train();
        }
        return new VisionEvaluationResult(sum / test.Count, confusion, plain);
    }
}
