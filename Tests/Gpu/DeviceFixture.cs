using NUnit.Framework;

namespace AttnCore.Tests.Gpu;

/// <summary>
/// The base of every fixture that reruns its tests on each ILGPU device: one fixture per device name ("ilgpu-cpu",
/// "opencl"), in the Gpu category, never in parallel (the emulated devices use every core). <see cref="TestDevice"/> is
/// static so the fixtures' static helpers can reach it; it is static per fixture class (<typeparamref name="TFixture"/>),
/// set in OneTimeSetUp, and fixtures of one class run one after another.
/// </summary>
[TestFixture("ilgpu-cpu"), TestFixture("opencl"), Category("Gpu"), NonParallelizable]
public abstract class DeviceFixture<TFixture>(string deviceName) where TFixture : DeviceFixture<TFixture>
{
    /// <summary>The device this fixture instance runs on (the ILGPU CPU accelerator until OneTimeSetUp picks it).</summary>
    protected static Device TestDevice { get; private set; } = Device.IlgpuCpu;

    /// <summary>The device name this fixture instance was made for ("ilgpu-cpu" or "opencl").</summary>
    protected string DeviceName => deviceName;

    /// <summary>Selects the device, or ignores the fixture when the machine has no such device.</summary>
    [OneTimeSetUp]
    public void PickDevice() => TestDevice = GpuDevices.Require(deviceName);
}

internal static class GpuDevices
{
    public static Device Require(string name)
    {
        if (name == "opencl" && Device.OpenCLCount == 0)
            Assert.Ignore("no OpenCL device on this machine: install pocl-opencl-icd and ocl-icd-opencl-dev (.ci/run does) to run the Gpu tests through PoCL");
        return Device.Parse(name);
    }
}
