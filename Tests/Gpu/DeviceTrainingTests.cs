using AttnCore.Backends;
using AttnCore.Models.Transformers;
using AttnCore.Optim;
using NUnit.Framework;

namespace AttnCore.Tests.Gpu;

/// <summary>
/// A GPT training step on an ILGPU device as a whole: it never waits for the host (no upload, no download, once
/// the batch is on the device), its memory comes from the caching allocator only (no driver allocation and no
/// growth in steady state), and a bad index is still reported, at the next synchronisation.
/// </summary>
public class DeviceTrainingTests(string deviceName) : DeviceFixture<DeviceTrainingTests>(deviceName)
{

    static IlgpuBackend Backend => (IlgpuBackend)TestDevice.Backend;

    sealed class Setup : IDisposable
    {
        public readonly Gpt Model;
        public readonly AdamW Optimizer;
        public readonly Tensor X, Y;

        public Setup(Device device)
        {
            Model = new Gpt(new GptConfig(13, BlockSize: 8, Layers: 1, Heads: 2, Dim: 16, Dropout: 0.1), new Generator(5), device);
            Optimizer = new AdamW(Model.Parameters(), 3e-3);
            var rng = new Random(7);
            X = Tensor.FromArray(Enumerable.Range(0, 16).Select(_ => (long)rng.Next(13)).ToArray(), [2, 8], device);
            Y = Tensor.FromArray(Enumerable.Range(0, 16).Select(_ => (long)rng.Next(13)).ToArray(), [2, 8], device);
        }

        // Forward, backward, clip, AdamW, and the loss left on the device.
        public Tensor Step()
        {
            Model.Train();
            Optimizer.ZeroGrad();
            var loss = Model.Loss(X, Y);
            loss.Backward();
            GradClip.ClipGradNorm(Model.Parameters(), 1.0);
            Optimizer.Step();
            return loss;
        }

        public void Dispose() { Optimizer.Dispose(); Model.Dispose(); X.Dispose(); Y.Dispose(); }
    }

    [Test]
    public void A_training_step_makes_no_host_transfer()
    {
        using var s = new Setup(TestDevice);
        using (new TensorScope()) s.Step(); // first step: kernels compile, optimizer state is created
        long up = Backend.Uploads, down = Backend.Downloads;
        for (int i = 0; i < 3; i++) { using var scope = new TensorScope(); s.Step(); }
        Assert.That((Backend.Uploads - up, Backend.Downloads - down), Is.EqualTo((0L, 0L)), "(uploads, downloads) during three steps");
        using (new TensorScope())
        {
            double loss = s.Step().Item(); // reading the loss is one download, by choice
            Assert.That(double.IsFinite(loss), $"loss {loss}");
        }
        Assert.That(Backend.Downloads - down, Is.EqualTo(1));
    }

    /// <summary>
    /// 1,000 steps of a tiny model: after the first steps the driver is asked for nothing, and the bytes held by
    /// live tensors and by the cache stay flat.
    /// </summary>
    [Test]
    public void A_thousand_steps_ask_the_driver_for_nothing_and_do_not_grow()
    {
        // PoCL (and a GPU) runs a step of this model in ~5 ms; the CPU accelerator emulates every GPU thread with an OS
        // thread (~2 s a step), so there the same check runs over 10 steps.
        int steps = DeviceName == "ilgpu-cpu" ? 10 : 1000;
        using var s = new Setup(TestDevice);
        var pool = Backend.Memory;
        for (int i = 0; i < 5; i++) { using var scope = new TensorScope(); s.Step(); }
        TestDevice.Synchronize();
        long driver = pool.DriverAllocations, inUse = pool.BytesInUse, cached = pool.CachedBytes;
        double first = 0, last = 0;
        for (int i = 0; i < steps; i++)
        {
            using var scope = new TensorScope();
            var loss = s.Step();
            if (i == 0) first = loss.Item();
            if (i == steps - 1) last = loss.Item();
        }
        TestDevice.Synchronize();
        Assert.That(pool.DriverAllocations, Is.EqualTo(driver), "driver allocations after warm-up");
        Assert.That(pool.BytesInUse, Is.EqualTo(inUse), "bytes held by live tensors");
        Assert.That(pool.CachedBytes, Is.EqualTo(cached), "bytes waiting in the cache");
        Assert.That(last, Is.LessThan(first), $"and it trains: loss {first} -> {last}");
    }

    [Test]
    public void Dropout_masks_are_drawn_on_the_device_and_match_the_cpu_bit_for_bit()
    {
        using var cpu = Tensor.DropoutMask([1000, 37], 0.3, new Generator(11));
        long up = Backend.Uploads;
        using var dev = Tensor.DropoutMask([1000, 37], 0.3, new Generator(11), DType.Float32, TestDevice);
        Assert.That(Backend.Uploads, Is.EqualTo(up), "nothing is uploaded");
        var v = cpu.ToArray<float>();
        Assert.That(dev.ToArray<float>(), Is.EqualTo(v));
        // Keep rate 1-p within 5 standard deviations of a Bernoulli mean over 37,000 draws; kept values are 1/(1-p).
        double kept = v.Count(x => x != 0) / (double)v.Length;
        Assert.That(kept, Is.EqualTo(0.7).Within(5 * Math.Sqrt(0.21 / v.Length)));
        Assert.That(v.Where(x => x != 0).Distinct(), Is.EqualTo(new[] { (float)(1 / 0.7) }));
        using var other = Tensor.DropoutMask([1000, 37], 0.3, new Generator(12));
        Assert.That(other.ToArray<float>(), Is.Not.EqualTo(v), "another seed, another mask");
    }

    [Test]
    public void A_bad_index_on_the_device_is_reported_at_the_next_synchronisation()
    {
        using var w = Tensor.Randn([5, 3], 1, DType.Float32, TestDevice);
        using var ids = Tensor.FromArray(new long[] { 1, 7, 2 }, null, TestDevice);
        using var rows = Tensor.Embedding(ids, w); // queued: nothing waits for the host here
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => rows.ToArray<float>());
        Assert.That(ex!.Message, Does.StartWith("IndexSelect: index 7 is out of range for dim 0 of").And.Contain("of size 5"));
        // Reported once; the device is usable afterwards.
        using var ok = Tensor.Embedding(Tensor.FromArray(new long[] { 4, 0 }, null, TestDevice), w);
        Assert.That(ok.ToArray<float>(), Has.Length.EqualTo(6));

        using var logits = Tensor.Zeros([2, 4], DType.Float32, TestDevice);
        using var targets = Tensor.FromArray(new long[] { -100, 4 }, null, TestDevice);
        using var loss = logits.CrossEntropy(targets);
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => loss.Item());
        Assert.That(ex!.Message, Does.StartWith("CrossEntropy: index 4 is out of range for the classes of logits"));
    }
}
