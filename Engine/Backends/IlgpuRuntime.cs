using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;

namespace AttnCore.Backends;

/// <summary>
/// The one ILGPU <see cref="Context"/> of the process. It is built with O2 optimisation and the algorithms
/// library: O2 inlines the small helpers (which PoCL's OpenCL C compiler needs: non-inlined helpers carry
/// <c>__generic</c> pointers it rejects) and the algorithms library supplies XMath/MathF intrinsics for PTX.
/// The CPU accelerator is configured as 4 warps of 4 threads (16 threads per group, one group at a time)
/// so kernel checks stay quick: each ILGPU CPU thread is an OS thread.
/// </summary>
internal static class IlgpuRuntime
{
    private static readonly Lazy<Context> Shared = new(() => Context.Create(b => b
        .CPU(new CPUDevice(4, 4, 1))
        .Optimize(OptimizationLevel.O2)
        .EnableAlgorithms()), LazyThreadSafetyMode.ExecutionAndPublication);

    public static Context Context => Shared.Value;

    /// <summary>The accelerator behind an ILGPU-backed <see cref="Device"/>.</summary>
    public static Accelerator CreateAccelerator(Device device) => device.Kind switch
    {
        DeviceKind.IlgpuCpu => Context.GetCPUDevice(0).CreateAccelerator(Context),
        _ => throw new NotSupportedException($"IlgpuRuntime: {device} is not available in this build (CUDA and OpenCL devices arrive with the GPU backend)"),
    };
}
