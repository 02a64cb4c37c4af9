using AttnCore.Kernels.Gpu;
using ILGPU;
using ILGPU.Runtime;
using GpuAttention = AttnCore.Kernels.Gpu.Attention;

namespace AttnCore.Backends;

// The fused attention kernels (Kernels/Gpu/Attention.cs), compiled on first use: 16-thread tiles on the CPU
// accelerator, 128-thread tiles (AttentionGpuTiles) on GPUs and OpenCL devices.
internal sealed partial class IlgpuKernels
{
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionArgs>? _attentionForward;
    private Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionArgs>? _attentionDelta;
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<float>, ArrayView<float>, AttentionArgs>? _attentionKeyValueGrad;
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<float>, AttentionArgs>? _attentionQueryGrad;

    /// <summary>Query rows (forward, dQ) and keys (dK/dV) per attention group.</summary>
    public int AttentionRows => Small ? default(AttentionSmallTiles).Rows : default(AttentionGpuTiles).Rows;
    /// <summary>Threads per attention group.</summary>
    public int AttentionThreads => Small ? default(AttentionSmallTiles).Rows * default(AttentionSmallTiles).Lanes : default(AttentionGpuTiles).Rows * default(AttentionGpuTiles).Lanes;

    /// <summary>q, k, v, o, lse, mask, args.</summary>
    public Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionArgs> AttentionForward =>
        _attentionForward ??= Small
            ? LoadGroupedKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionArgs>(GpuAttention.ForwardKernel<AttentionSmallTiles>)
            : LoadGroupedKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionArgs>(GpuAttention.ForwardKernel<AttentionGpuTiles>);

    /// <summary>dO, O, di, args.</summary>
    public Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionArgs> AttentionDelta =>
        _attentionDelta ??= _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionArgs>(GpuAttention.DeltaKernel);

    /// <summary>q, k, v, dO, lse, di, mask, dk, dv, args.</summary>
    public Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<float>, ArrayView<float>, AttentionArgs> AttentionKeyValueGrad =>
        _attentionKeyValueGrad ??= Small
            ? LoadGroupedKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, AttentionArgs>(GpuAttention.KeyValueGradKernel<AttentionSmallTiles>)
            : LoadGroupedKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, AttentionArgs>(GpuAttention.KeyValueGradKernel<AttentionGpuTiles>);

    /// <summary>q, k, v, dO, lse, di, mask, dq, args.</summary>
    public Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<float>, AttentionArgs> AttentionQueryGrad =>
        _attentionQueryGrad ??= Small
            ? LoadGroupedKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, AttentionArgs>(GpuAttention.QueryGradKernel<AttentionSmallTiles>)
            : LoadGroupedKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, AttentionArgs>(GpuAttention.QueryGradKernel<AttentionGpuTiles>);
}
