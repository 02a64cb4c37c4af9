using AttnCore.Backends;
using AttnCore.Models.Nn;
using AttnCore.Models.Training;
using AttnCore.Optim;
using NUnit.Framework;

namespace AttnCore.Tests.Gpu;

/// <summary>
/// The trainer's non-finite check on an ILGPU device: it reads the loss and the clip norm in the one download a
/// step always had, and a NaN step leaves the weights on the device as they were.
/// </summary>
public class TrainerGpuTests(string deviceName) : DeviceFixture<TrainerGpuTests>(deviceName)
{

    [Test]
    public void A_step_downloads_once_and_a_nan_step_leaves_the_weights_on_the_device_untouched()
    {
        var backend = (IlgpuBackend)TestDevice.Backend;
        string dir = Path.Combine(Path.GetTempPath(), "attncore-trainer-gpu-" + Guid.NewGuid().ToString("N"));
        using var model = new Linear(3, 1, generator: new Generator(5), device: TestDevice);
        using var optimizer = new AdamW(model.Parameters(), 0.05);
        using var x = Tensor.Randn([8, 3], 11, DType.Float32, TestDevice);
        using var y = Tensor.Randn([8, 1], 12, DType.Float32, TestDevice);
        var downloadsAtStep = new List<long>();
        float[]? weightsBeforeNan = null;
        var trainer = new Trainer(model, optimizer, null, new Generator(1), new TrainerOptions
        {
            Steps = 6, EvalEvery = 1000, RunDirectory = dir, ClipNorm = 1.0,
        });
        try
        {
            var ex = Assert.Throws<TrainingDivergedException>(() => trainer.Run(() =>
            {
                downloadsAtStep.Add(backend.Downloads);
                var loss = (model.Forward(x) - y).Square().Mean();
                if (downloadsAtStep.Count < 4) return loss;
                weightsBeforeNan = model.Weight.ToArray<float>();
                return loss * double.NaN;
            }, () => 0));
            Assert.That(ex!.Step, Is.EqualTo(4));
            // Steps 2 and 3 (no evaluation, no checkpoint): the loss and the norm came down together.
            Assert.That(downloadsAtStep[2] - downloadsAtStep[1], Is.EqualTo(1));
            Assert.That(downloadsAtStep[3] - downloadsAtStep[2], Is.EqualTo(1));
            Assert.That(model.Weight.ToArray<float>(), Is.EqualTo(weightsBeforeNan));
            Assert.That(optimizer.StepCount, Is.EqualTo(3));
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }
}
