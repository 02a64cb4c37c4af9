using AttnCore.Kernels.Gpu;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace AttnCore.Backends;

/// <summary>
/// The one ILGPU <see cref="Context"/> of the process and the accelerators of ILGPU-backed devices.
/// </summary>
/// <remarks>
/// The context is built with O2 and the algorithms library. O2 inlines the small helpers (PoCL's OpenCL C
/// compiler rejects the <c>__generic</c> pointers that non-inlined helpers carry); the algorithms library
/// supplies the XMath/MathF intrinsics the PTX backend otherwise lacks (see /work/shared/KERNEL-NOTES.md).
/// The CPU accelerator is 4 warps of 4 threads on one multiprocessor: 16 threads per group, and every
/// emulated thread is an OS thread, so checks stay quick on a small machine.
/// CUDA and OpenCL devices plug in here: add <c>.Cuda()</c>/<c>.OpenCL(...)</c> to the builder and a case to
/// <see cref="CreateAccelerator"/>; <see cref="IlgpuKernels"/> picks the launch sizes from the accelerator.
/// </remarks>
internal static class IlgpuRuntime
{
    private static readonly Lazy<Context> Shared = new(() => Context.Create(b =>
    {
        b.CPU(new CPUDevice(numThreadsPerWarp: 4, numWarpsPerMultiprocessor: 4, numMultiprocessors: 1))
         .Optimize(OptimizationLevel.O2)
         .EnableAlgorithms();
        // Every OpenCL device, not only those ILGPU deems complete: PoCL lacks the generic address space
        // (see CreateAccelerator). CUDA devices are found when a driver is installed, and none otherwise.
        b.OpenCL(_ => true);
        b.Cuda();
    }), LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The process-wide context (created on first use, lives as long as the process).</summary>
    public static Context Context => Shared.Value;

    /// <summary>Number of CUDA devices found.</summary>
    public static int CudaCount => Context.GetCudaDevices().Count;

    /// <summary>Number of OpenCL devices found.</summary>
    public static int OpenCLCount => Context.GetCLDevices().Count;

    /// <summary>Index of the first OpenCL device whose type is GPU, or -1.</summary>
    public static int FirstOpenCLGpu
    {
        get
        {
            var devices = Context.GetCLDevices();
            for (int i = 0; i < devices.Count; i++)
                if (devices[i].DeviceType.HasFlag(ILGPU.Runtime.OpenCL.CLDeviceType.CL_DEVICE_TYPE_GPU)) return i;
            return -1;
        }
    }

    /// <summary>The ILGPU description of <paramref name="device"/>.</summary>
    public static ILGPU.Runtime.Device Describe(Device device) => device.Kind switch
    {
        DeviceKind.IlgpuCpu => Context.GetCPUDevice(device.Index),
        DeviceKind.Cuda when device.Index < CudaCount => Context.GetCudaDevices()[device.Index],
        DeviceKind.OpenCL when device.Index < OpenCLCount => Context.GetCLDevices()[device.Index],
        _ => throw new NotSupportedException($"IlgpuRuntime: no {device} on this machine ({CudaCount} CUDA and {OpenCLCount} OpenCL devices found)"),
    };

    /// <summary>
    /// A new accelerator for <paramref name="device"/> (its backend owns and disposes it). OpenCL devices without
    /// the generic address space (PoCL 3.x) are accepted on purpose: the context is built with O2, which inlines
    /// every helper, so the generated OpenCL C never needs <c>__generic</c> pointers. ILGPU only exposes that
    /// capability flag through a non-public setter, which is set here by reflection; the OpenCL tests show the
    /// kernels then build and agree with the CPU backend on PoCL.
    /// </summary>
    public static Accelerator CreateAccelerator(Device device)
    {
        var d = Describe(device);
        if (d is ILGPU.Runtime.OpenCL.CLDevice cl && !cl.Capabilities.GenericAddressSpace)
        {
            var flag = cl.Capabilities.GetType().GetProperty("GenericAddressSpace", System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance);
            flag?.GetSetMethod(nonPublic: true)?.Invoke(cl.Capabilities, [true]);
        }
        return d.CreateAccelerator(Context);
    }
}
