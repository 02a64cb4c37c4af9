using AttnCore.Models.IO;
using AttnCore.Tests.Models;
using NUnit.Framework;

namespace AttnCore.Tests.Gpu;

/// <summary>Safetensors files load straight onto ILGPU devices (converted dtypes included) with the CPU load's exact values.</summary>
public class SafetensorsGpuTests(string deviceName) : DeviceFixture<SafetensorsGpuTests>(deviceName)
{
    [Test]
    public void Every_readable_dtype_loads_onto_the_device_with_the_cpu_values()
    {
        var device = TestDevice;
        string path = Path.Combine(Path.GetTempPath(), $"attncore-stgpu-{Guid.NewGuid():N}.safetensors");
        File.WriteAllBytes(path, SafetensorsBytes.EveryDType());
        var (cpu, _) = Safetensors.Load(path);
        try
        {
            using var file = Safetensors.Open(path);
            foreach (var (name, c) in cpu)
            {
                if (c.DType == DType.Float64)
                {
                    // Devices hold float32 and int64: float64 is refused by name, never narrowed silently.
                    var ex = Assert.Throws<NotSupportedException>(() => file.Read(name, device))!;
                    Assert.That(ex.Message, Does.Contain(path).And.Contain($"'{name}'"));
                    continue;
                }
                using var d = file.Read(name, device);
                Assert.That((d.Device, d.DType, d.Shape), Is.EqualTo((device, c.DType, c.Shape)), name);
                if (c.DType == DType.Int64) Assert.That(d.ToArray<long>(), Is.EqualTo(c.ToArray<long>()), name);
                else Assert.That(d.ToArray<float>().Select(BitConverter.SingleToInt32Bits), Is.EqualTo(c.ToArray<float>().Select(BitConverter.SingleToInt32Bits)), name);
            }
        }
        finally
        {
            foreach (var t in cpu.Values) t.Dispose();
            File.Delete(path);
        }
    }
}
