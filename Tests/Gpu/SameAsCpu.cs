using NUnit.Framework;

namespace AttnCore.Tests.Gpu;

/// <summary>Runs an op on CPU inputs and on copies of them on a device, and asserts device, dtype, shape and values agree exactly.</summary>
internal static class SameAsCpu
{
    public static void Check(Device device, string what, Func<Tensor[], Tensor> op, params Tensor[] cpuInputs)
    {
        using var cpu = op(cpuInputs);
        var moved = cpuInputs.Select(t => t.To(device)).ToArray();
        try
        {
            using var dev = op(moved);
            Assert.That(dev.Device, Is.EqualTo(device), what);
            Assert.That(dev.DType, Is.EqualTo(cpu.DType), what);
            Assert.That(dev.Shape, Is.EqualTo(cpu.Shape), what);
            switch (cpu.DType)
            {
                case DType.Bool: Assert.That(dev.ToArray<bool>(), Is.EqualTo(cpu.ToArray<bool>()), what); break;
                case DType.Int64: Assert.That(dev.ToArray<long>(), Is.EqualTo(cpu.ToArray<long>()), what); break;
                default: Assert.That(dev.ToArray<float>(), Is.EqualTo(cpu.ToArray<float>()), what); break;
            }
        }
        finally { foreach (var t in moved) t.Dispose(); }
    }
}
