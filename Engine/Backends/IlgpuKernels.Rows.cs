using AttnCore.Kernels.Gpu;
using ILGPU;
using ILGPU.Runtime;

namespace AttnCore.Backends;

// The team-per-row kernels (softmax, layer norm forward/backward, cross-entropy forward) and the register-tiled GEMM.
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

    private TeamKernel<Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int, int>>? _softmax;
    private TeamKernel<Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNormArgs>>? _lnForward;
    private TeamKernel<Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNormArgs>>? _lnBackward;
    private TeamKernel<Action<KernelConfig, ArrayView<float>, ArrayView<long>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, CrossEntropyArgs>>? _ceForward;
    private Lazy<Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs>>? _gemmRegisterTiled;

    public TeamKernel<Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int, int>> SoftmaxRows =>
        LazyInitializer.EnsureInitialized(ref _softmax, () => new(
            () => LoadGroupedKernel<ArrayView<float>, ArrayView<float>, int, int, int>(Small ? Softmax.RowKernel<WarpTeam, Size16> : Softmax.RowKernel<WarpTeam, Size256>),
            () => LoadGroupedKernel<ArrayView<float>, ArrayView<float>, int, int, int>(Small ? Softmax.RowKernel<GroupTeam, Size16> : Softmax.RowKernel<GroupTeam, Size256>)));

    public TeamKernel<Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNormArgs>> LayerNormForward =>
        LazyInitializer.EnsureInitialized(ref _lnForward, () => new(
            () => LoadGroupedKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNormArgs>(
                Small ? LayerNorm.ForwardKernel<WarpTeam, Size16> : LayerNorm.ForwardKernel<WarpTeam, Size256>),
            () => LoadGroupedKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNormArgs>(
                Small ? LayerNorm.ForwardKernel<GroupTeam, Size16> : LayerNorm.ForwardKernel<GroupTeam, Size256>)));

    public TeamKernel<Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNormArgs>> LayerNormBackward =>
        LazyInitializer.EnsureInitialized(ref _lnBackward, () => new(
            () => LoadGroupedKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNormArgs>(
                Small ? LayerNorm.BackwardKernel<WarpTeam, Size16> : LayerNorm.BackwardKernel<WarpTeam, Size256>),
            () => LoadGroupedKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNormArgs>(
                Small ? LayerNorm.BackwardKernel<GroupTeam, Size16> : LayerNorm.BackwardKernel<GroupTeam, Size256>)));

    public TeamKernel<Action<KernelConfig, ArrayView<float>, ArrayView<long>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, CrossEntropyArgs>> CrossEntropyForward =>
        LazyInitializer.EnsureInitialized(ref _ceForward, () => new(
            () => LoadGroupedKernel<ArrayView<float>, ArrayView<long>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, CrossEntropyArgs>(
                Small ? CrossEntropy.ForwardKernel<WarpTeam, Size16> : CrossEntropy.ForwardKernel<WarpTeam, Size256>),
            () => LoadGroupedKernel<ArrayView<float>, ArrayView<long>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, CrossEntropyArgs>(
                Small ? CrossEntropy.ForwardKernel<GroupTeam, Size16> : CrossEntropy.ForwardKernel<GroupTeam, Size256>)));

    /// <summary>The register-tiled GEMM: GemmTile x GemmTile threads per group, each owning an 8 x 8 micro-tile.</summary>
    public Lazy<Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs>> GemmRegisterTiled =>
        LazyInitializer.EnsureInitialized(ref _gemmRegisterTiled, () => new(() => LoadGroupedKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs>(
            Small ? Kernels.Gpu.Gemm.RegisterTiledKernel<Size4, Size8> : Kernels.Gpu.Gemm.RegisterTiledKernel<Size16, Size8>)));

    /// <summary>Rows (and columns) of C per group of the register-tiled GEMM: 128 on GPUs, 32 on the CPU accelerator.</summary>
    public int GemmBlock => Kernels.Gpu.Gemm.MicroTile * GemmTile;
}

/// <summary>The warp and the group build of one row kernel, each loaded on first use.</summary>
internal sealed class TeamKernel<TDelegate>(Func<TDelegate> warp, Func<TDelegate> group) where TDelegate : Delegate
{
    private readonly Lazy<TDelegate> _warp = new(warp), _group = new(group);

    /// <summary>The launch delegate of the warp (true) or group (false) build.</summary>
    public TDelegate For(bool warpTeam) => warpTeam ? _warp.Value : _group.Value;
}
