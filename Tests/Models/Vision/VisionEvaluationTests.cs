using AttnCore.Models.Data.Vision;
using AttnCore.Models.Vision;
using NUnit.Framework;

namespace AttnCore.Tests.Models.Vision;

/// <summary>
/// <see cref="VisionEvaluation"/> on real Fashion-MNIST test images, with and without flip test-time augmentation,
/// against a reference built here: the images normalised and mirrored one by one with <see cref="ImageTransform.Apply"/>
/// (the training flip), one forward pass over all of them, and the averaged softmax, its loss and its argmax in float64.
/// </summary>
[TestFixture, Category("Models")]
public class VisionEvaluationTests
{
    [Test]
    public void Flip_test_time_augmentation_averages_the_softmax_of_each_image_and_its_mirror()
    {
        VisionTestData.RequireFashionMnist();
        const int count = 37, batch = 16;   // three batches, the last one partial
        var test = Idx.LoadFolder(VisionTestData.FashionMnist).Test.Take(count);
        var norm = Normalization.Of(test);
        using var net = VisionModels.Create("resnet20-se", 1, 10, new Generator(5));
        // A few training steps, so that the predictions are not one class for every image.
        using (var opt = new AttnCore.Optim.Sgd(net.Parameters(), 0.05, 0.9))
        using (var loader = new VisionLoader(test, batch, Augmentation.None, norm, shuffle: true, dropLast: true, seed: 1))
            for (int step = 0; step < 6; step++)
            {
                using var scope = new TensorScope();
                var (x, y) = loader.Next();
                opt.ZeroGrad();
                net.Forward(x).CrossEntropy(y).Backward();
                opt.Step();
            }

        var plain = VisionEvaluation.Evaluate(net, test, batch, norm, Device.Cpu);
        var flipped = VisionEvaluation.Evaluate(net, test, batch, norm, Device.Cpu, mirror: true);
        Assert.That(net.Training, Is.True, "the evaluation restores training mode");

        double[,] Logits(bool mirror)
        {
            int size = test.Height * test.Width;
            var pixels = new float[count * size];
            for (int i = 0; i < count; i++)
                ImageTransform.Apply(test.Image(i), 1, test.Height, test.Width, 0, 0, 0, mirror, norm, pixels.AsSpan(i * size, size));
            net.Eval();
            try
            {
                using var noGrad = new NoGrad();
                using var x = Tensor.FromArray(pixels, [count, 1, test.Height, test.Width]);
                using var logits = net.Forward(x);
                var flat = logits.ToArray<float>();
                var result = new double[count, 10];
                for (int i = 0; i < count; i++) for (int c = 0; c < 10; c++) result[i, c] = flat[i * 10 + c];
                return result;
            }
            finally { net.Train(); }
        }
        static double[] Softmax(double[,] z, int i)
        {
            var p = new double[10];
            double max = double.NegativeInfinity, sum = 0;
            for (int c = 0; c < 10; c++) max = Math.Max(max, z[i, c]);
            for (int c = 0; c < 10; c++) sum += p[c] = Math.Exp(z[i, c] - max);
            for (int c = 0; c < 10; c++) p[c] /= sum;
            return p;
        }
        var (original, mirrored) = (Logits(false), Logits(true));
        double plainLoss = 0, flipLoss = 0;
        int plainRight = 0, flipRight = 0;
        for (int i = 0; i < count; i++)
        {
            int label = test.Labels[i];
            double[] p = Softmax(original, i), q = Softmax(mirrored, i), mean = [.. p.Zip(q, (a, b) => (a + b) / 2)];
            plainLoss -= Math.Log(p[label]);
            flipLoss -= Math.Log(mean[label]);
            if (Array.IndexOf(p, p.Max()) == label) plainRight++;
            if (Array.IndexOf(mean, mean.Max()) == label) flipRight++;
        }
        plainLoss /= count; flipLoss /= count;

        Assert.That(plain.Loss, Is.EqualTo(plainLoss).Within(1e-4 * plainLoss), "loss without mirroring");
        Assert.That(plain.Confusion.Accuracy, Is.EqualTo(plainRight / (double)count), "accuracy without mirroring");
        Assert.That(flipped.Loss, Is.EqualTo(flipLoss).Within(1e-4 * flipLoss), "loss of the averaged distribution");
        Assert.That(flipped.Confusion.Accuracy, Is.EqualTo(flipRight / (double)count), "accuracy of the averaged distribution");
        Assert.That(flipped.PlainConfusion.Accuracy, Is.EqualTo(plain.Confusion.Accuracy), "the mirrored run's plain accuracy");
        Assert.That(Math.Abs(flipLoss - plainLoss), Is.GreaterThan(1e-3), "mirroring changes the prediction");
        Assert.That(plain.Confusion.Total, Is.EqualTo(count));
    }
}
