// Random (GPU): the ILGPU kernel that writes dropout keep-masks; the counter-based hash itself, shared with the
// CPU backend, is Kernels/Common/RandomMask.cs, so every device draws the same mask.
//
// One thread per element, no state: the host advances its Generator by one draw per mask (the seed), so no device
// ever waits for the host or for another thread.
// FLOPs: ~10 integer ops per element. Bytes: 4 written per element. Bound: memory on a GPU.
// Reference: Tests/Gpu/DeviceTrainingTests.cs (device vs CPU, bit for bit) and the keep rate against p.
using ILGPU;

namespace AttnCore.Kernels.Gpu;

/// <summary>The ILGPU kernel that writes a dropout mask (the hash is <see cref="RandomMask.KeepScale"/>).</summary>
public static class RandomMaskKernels
{
    /// <summary>dst[i] = RandomMask.KeepScale(seed, i, p, scale) for i below the launch size.</summary>
    public static void DropoutMaskKernel(Index1D i, ArrayView<float> dst, ulong seed, float p, float scale) => dst[i] = RandomMask.KeepScale(seed, i, p, scale);
}
