using AttnCore.Models.Transformers;
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
}
