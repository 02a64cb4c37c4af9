using AttnCore.Distributed;
using NUnit.Framework;

namespace AttnCore.Tests.Gpu;

/// <summary>
/// Data-parallel training on an ILGPU device: gradients cross to the all-reduce buckets' pinned host buffers and back
/// (HostStaging), including views, and a parameter that got no gradient on this rank receives the summed one.
/// </summary>
public class DistributedStagingGpuTests(string deviceName) : DeviceFixture<DistributedStagingGpuTests>(deviceName)
{
    [Test]
    public void Device_gradients_stage_into_host_buffers_and_summed_values_come_back()
    {
        using var p = Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6 }, [2, 3], TestDevice).RequiresGrad_();
        using (var loss = (p * p).Sum()) loss.Backward();
        var host = new float[6];
        p.Grad!.CopyToHost<float>(host);
        Assert.That(host, Is.EqualTo(new float[] { 2, 4, 6, 8, 10, 12 }));
        // A transposed view is made dense on the device before the download.
        using var transposed = p.Grad!.T;
        transposed.CopyToHost<float>(host);
        Assert.That(host, Is.EqualTo(new float[] { 2, 8, 4, 10, 6, 12 }));
        Assert.That(() => p.Grad!.CopyToHost<float>(new float[5]), Throws.ArgumentException.With.Message.Contains("cannot stage a float32 tensor [2,3] into 5 float32 elements"));

        // Written back in place into the existing device gradient ...
        var before = p.Grad;
        p.SetGradFromHost<float>(new float[] { -1, -2, -3, -4, -5, -6 });
        Assert.That(p.Grad, Is.SameAs(before));
        Assert.That(p.Grad!.ToArray<float>(), Is.EqualTo(new float[] { -1, -2, -3, -4, -5, -6 }));
        Assert.That(p.Grad!.Device, Is.EqualTo(TestDevice));
        // ... or, for a parameter this rank computed no gradient for, as a new one on the parameter's device.
        using var unused = Tensor.Zeros([3], DType.Float32, TestDevice).RequiresGrad_();
        unused.SetGradFromHost<float>(new float[] { 7, 8, 9 });
        Assert.That(unused.Grad!.Device, Is.EqualTo(TestDevice));
        Assert.That(unused.Grad!.ToArray<float>(), Is.EqualTo(new float[] { 7, 8, 9 }));
    }
}
