using AttnCore.Models.TimeSeries;
using AttnCore.Optim;
using AttnCore.Tests.Models;
using NUnit.Framework;

namespace AttnCore.Tests.Gpu;

/// <summary>
/// Each forecaster trains on an ILGPU device (ilgpu-cpu, OpenCL through PoCL) with the losses of the CPU: the same
/// weights (copied from a CPU model), the same batches gathered on each device from <see cref="ForecastData"/>, Adam,
/// dropout off; four steps, losses within 1e-4 relative (float32 on both, different reduction orders).
/// </summary>
public class ForecastGpuTests(string deviceName) : DeviceFixture<ForecastGpuTests>(deviceName)
{
    [TestCase("dlinear")]
    [TestCase("patchtst")]
    [TestCase("itransformer")]
    [TestCase("transformer")]
    public void A_forecaster_trains_with_the_losses_of_the_cpu(string model)
    {
        var table = ForecastDataTests.Synthetic(120, 2);
        var config = new ForecasterConfig(model, 16, 4, 2, DModel: 8, Heads: 2, Layers: 1, DFf: 16, Dropout: 0, PatchLen: 8, Stride: 4, FcDropout: 0,
            MovingAverage: 5, LabelLen: 8, TimeFeatures: 4);
        var cpu = Losses(table, config, Device.Cpu);
        var device = Losses(table, config, TestDevice);
        for (int i = 0; i < cpu.Length; i++)
            Assert.That(device[i], Is.EqualTo(cpu[i]).Within(1e-4 * Math.Abs(cpu[i]) + 1e-6), $"{model} step {i + 1} on {DeviceName}");
        Assert.That(cpu[^1], Is.LessThan(cpu[0]), $"{model} learns: {string.Join(", ", cpu)}");
    }

    static double[] Losses(TimeSeriesTable table, ForecasterConfig config, Device device)
    {
        using var data = new ForecastData(table, config.SeqLen, config.PredLen, device: device);
        using var reference = Forecaster.Create(config, new Generator(9), Device.Cpu);
        using var model = Forecaster.Create(config, new Generator(9), device);
        model.LoadStateDict(reference.StateDict());
        using var optimizer = new Adam(model.Parameters(), 0.01);
        var losses = new double[4];
        for (int step = 0; step < losses.Length; step++)
        {
            using var scope = new TensorScope();
            optimizer.ZeroGrad();
            using var batch = data.Batch(ForecastSplit.Train, [step, 10 + step, 20 + step, 30 + step], ForecastTraining.LabelLength(model));
            var loss = ForecastTraining.Loss(model, data, batch);
            loss.Backward();
            optimizer.Step();
            losses[step] = loss.Item();
        }
        return losses;
    }
}
