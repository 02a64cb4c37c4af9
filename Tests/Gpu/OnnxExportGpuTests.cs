using AttnCore.Models.Nn;
using AttnCore.Models.Recommendation;
using AttnCore.Models.TimeSeries;
using AttnCore.Models.Transformers;
using AttnCore.Models.Vision;
using AttnCore.Onnx;
using AttnCore.Tests.Onnx;
using Microsoft.ML.OnnxRuntime;
using NUnit.Framework;

namespace AttnCore.Tests.Gpu;

/// <summary>A model living on an ILGPU device exports like one on the CPU: weights and sample inputs are read back from the device.</summary>
public class OnnxExportGpuTests(string deviceName) : DeviceFixture<OnnxExportGpuTests>(deviceName)
{
    [Test]
    public void A_gpt_on_the_device_exports_to_the_devices_logits()
    {
        var config = new GptConfig(Vocab: 11, BlockSize: 8, Layers: 1, Heads: 2, Dim: 8);
        using var gpt = new Gpt(config, new Generator(6), TestDevice);
        gpt.Eval();
        string path = Path.Combine(Path.GetTempPath(), $"attncore-onnx-gpu-{Guid.NewGuid():N}.onnx");
        try
        {
            var ids = OnnxExportTests.RandomIds(2 * 5, config.Vocab, 3);
            using var tokens = Tensor.FromArray(ids, [2, 5], TestDevice);
            gpt.ExportOnnx(path, tokens);
            float[] expected;
            using (new InferenceMode())
            using (var logits = gpt.Forward(tokens))
                expected = logits.ToArray<float>();
            using var session = new InferenceSession(path);
            var actual = OnnxExportTests.RunOrt(session, ("tokens", OnnxExportTests.Longs(ids, 2, 5)))["logits"].Values;
            Assert.That(actual.Zip(expected, (a, e) => Math.Abs(a - e)).Max(), Is.LessThanOrEqualTo(1e-4));
        }
        finally { File.Delete(path); }
    }

    // onnxfam: the new families read their weights, BatchNorm statistics and sample inputs back from the device too.
    [Test]
    public void A_resnet_a_forecaster_and_a_recommender_on_the_device_export_to_the_devices_outputs()
    {
        using var resnet = new ResNet([1], [4], bottleneck: false, imagenetStem: false, 3, 3, VisionAttention.SE, reduction: 2, generator: new Generator(2), device: TestDevice);
        using var dlinear = Forecaster.Create(new ForecasterConfig("dlinear", 12, 3, 2, MovingAverage: 5), new Generator(3), TestDevice);
        using var sasrec = new SasRec(new SasRecConfig(Items: 9, MaxLength: 4, Dim: 8, Blocks: 1, Heads: 2), new Generator(4), TestDevice);
        var pixels = Enumerable.Range(0, 2 * 3 * 4 * 4).Select(i => MathF.Sin(i)).ToArray();
        var series = Enumerable.Range(0, 2 * 12 * 2).Select(i => MathF.Cos(0.3f * i)).ToArray();
        long[] history = [0, 2, 9, 4, 1, 1, 3, 5];
        Check(resnet, "image", pixels, [2, 3, 4, 4], "logits", x => resnet.Forward(x));
        Check(dlinear, "x", series, [2, 12, 2], "forecast", x => dlinear.Forward(x));
        Check(sasrec, "history", history, [2, 4], "scores", sasrec.ScoreAll);
    }

    private void Check<T>(Module model, string input, T[] values, long[] shape, string output, Func<Tensor, Tensor> forward) where T : unmanaged
    {
        model.Eval();
        string path = Path.Combine(Path.GetTempPath(), $"attncore-onnx-gpu-{Guid.NewGuid():N}.onnx");
        try
        {
            using var x = Tensor.FromArray(values, shape.Select(d => (int)d).ToArray(), TestDevice);
            model.ExportOnnx(path, x);
            float[] expected;
            using (new InferenceMode())
            using (var y = forward(x))
                expected = y.ToArray<float>();
            using var session = new InferenceSession(path);
            var actual = OnnxExportTests.RunOrt(session, (input, OrtValue.CreateTensorValueFromMemory(values, shape)))[output].Values;
            Assert.That(actual.Zip(expected, (a, e) => Math.Abs(a - e)).Max(), Is.LessThanOrEqualTo(1e-4), model.GetType().Name);
        }
        finally { File.Delete(path); }
    }
}
