using NUnit.Framework;

namespace AttnCore.Tests.Gpu;

/// <summary>
/// The base of every fixture that reruns its tests on each ILGPU device: one fixture per device name
/// (<see cref="GpuDevices.Names"/>: "ilgpu-cpu", "opencl", and "cuda" where a CUDA device is present), in the Gpu
/// category, never in parallel (the emulated devices use every core). <see cref="TestDevice"/> is static so the
/// fixtures' static helpers can reach it; it is static per fixture class (<typeparamref name="TFixture"/>), set in
/// OneTimeSetUp, and fixtures of one class run one after another.
/// </summary>
[TestFixtureSource(typeof(GpuDevices), nameof(GpuDevices.Names)), Category("Gpu"), NonParallelizable]
public abstract class DeviceFixture<TFixture>(string deviceName) where TFixture : DeviceFixture<TFixture>
{
    /// <summary>The device this fixture instance runs on (the ILGPU CPU accelerator until OneTimeSetUp picks it).</summary>
    protected static Device TestDevice { get; private set; } = Device.IlgpuCpu;

    /// <summary>The device name this fixture instance was made for ("ilgpu-cpu", "opencl" or "cuda").</summary>
    protected string DeviceName => deviceName;

    /// <summary>Selects the device, or ignores the fixture when the machine has no such device.</summary>
    [OneTimeSetUp]
    public void PickDevice() => TestDevice = GpuDevices.Require(deviceName);
}

internal static class GpuDevices
{
    /// <summary>
    /// The devices the fixtures run on: the CPU accelerator and OpenCL always (OpenCL is ignored where absent, with the
    /// packages to install), CUDA only where a driver and GPU are present, so a machine without one lists no CUDA
    /// fixture rather than a skipped one. <c>ATTNCORE_TEST_DEVICES</c> (comma-separated, e.g. "cuda") replaces the list,
    /// for a GPU machine where the emulated devices would only repeat what CI checks.
    /// </summary>
    public static IEnumerable<string> Names()
    {
        var chosen = Environment.GetEnvironmentVariable("ATTNCORE_TEST_DEVICES");
        if (!string.IsNullOrWhiteSpace(chosen))
            return chosen.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var names = new List<string> { "ilgpu-cpu", "opencl" };
        if (Device.CudaCount > 0) names.Add("cuda");
        return names;
    }

    public static Device Require(string name)
    {
        if (name == "opencl" && Device.OpenCLCount == 0)
            Assert.Ignore("no OpenCL device on this machine: install pocl-opencl-icd and ocl-icd-opencl-dev (.ci/run does) to run the Gpu tests through PoCL");
        if (name.StartsWith("cuda") && Device.CudaCount == 0)
            Assert.Ignore("no CUDA device on this machine ('attncore devices' says why)");
        return Device.Parse(name);
    }
}
