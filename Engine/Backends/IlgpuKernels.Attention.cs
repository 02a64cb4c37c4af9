using AttnCore.Kernels.Gpu;
using ILGPU;
using ILGPU.Runtime;

namespace AttnCore.Backends;

// The fused attention kernels (Kernels/Gpu/Attention.cs), created in the constructor and compiled on first use:
// 16-thread tiles on the CPU accelerator, 128-thread tiles (AttentionGpuTiles) on GPUs and OpenCL devices.
internal sealed partial class IlgpuKernels
{
    /// <summary>Query rows (forward, dQ) and keys (dK/dV) per attention group.</summary>
    public int AttentionRows => Small ? default(AttentionSmallTiles).Rows : default(AttentionGpuTiles).Rows;
    /// <summary>Threads per attention group.</summary>
    public int AttentionThreads => Small ? default(AttentionSmallTiles).Rows * default(AttentionSmallTiles).Lanes : default(AttentionGpuTiles).Rows * default(AttentionGpuTiles).Lanes;

    /// <summary>q, k, v, o, lse, mask, args.</summary>
    public Lazy<Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionArgs>> AttentionForward { get; }

    /// <summary>dO, O, di, args.</summary>
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionArgs>> AttentionDelta { get; }

    /// <summary>q, k, v, dO, lse, di, mask, dk, dv, args.</summary>
    public Lazy<Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<float>, ArrayView<float>, AttentionArgs>> AttentionKeyValueGrad { get; }

    /// <summary>q, k, v, dO, lse, di, mask, dq, args.</summary>
    public Lazy<Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<float>, AttentionArgs>> AttentionQueryGrad { get; }
}
