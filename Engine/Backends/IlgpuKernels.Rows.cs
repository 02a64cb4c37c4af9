using AttnCore.Kernels.Gpu;
using ILGPU;
using ILGPU.Runtime;

namespace AttnCore.Backends;

// The team-per-row kernels (softmax, layer norm forward/backward, cross-entropy forward).
// Each row kernel exists in two builds, one warp per row and one group per row (Kernels/Gpu/RowTeam.cs); a build is
// compiled the first time it is launched, so a device that never takes the warp path never compiles shuffles.
internal sealed partial class IlgpuKernels
{
    /// <summary>
    /// True where the warp build of the row kernels can run: CUDA (32-lane warps) and the CPU accelerator (4-lane
    /// warps, emulated). OpenCL devices always take the group build: ILGPU needs sub-groups for shuffles, PoCL (the
    /// OpenCL device CI has) reports none, and a path no machine here can run is not enabled blind on other vendors.
    /// </summary>
    public bool WarpShuffles => _acc.AcceleratorType is AcceleratorType.Cuda or AcceleratorType.CPU && _acc.WarpSize > 1;

    /// <summary>Rows one group covers in the warp build (GroupSize / WarpSize: 8 on NVIDIA GPUs, 4 on the CPU accelerator).</summary>
    public int RowsPerGroup => GroupSize / _acc.WarpSize;

    public TeamKernel<Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int, int>> SoftmaxRows { get; }

    public TeamKernel<Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNormArgs>> LayerNormForward { get; }

    public TeamKernel<Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNormArgs>> LayerNormBackward { get; }

    public TeamKernel<Action<KernelConfig, ArrayView<float>, ArrayView<long>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, CrossEntropyArgs>> CrossEntropyForward { get; }
}

/// <summary>The warp and the group build of one row kernel, each loaded on first use.</summary>
internal sealed class TeamKernel<TDelegate>(Func<TDelegate> warp, Func<TDelegate> group) where TDelegate : Delegate
{
    private readonly Lazy<TDelegate> _warp = new(warp), _group = new(group);

    /// <summary>The launch delegate of the warp (true) or group (false) build.</summary>
    public TDelegate For(bool warpTeam) => warpTeam ? _warp.Value : _group.Value;
}
