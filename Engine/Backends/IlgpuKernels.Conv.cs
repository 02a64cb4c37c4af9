using AttnCore.Kernels.Gpu;
using ILGPU;
using ILGPU.Runtime;

namespace AttnCore.Backends;

// Convolution, pooling and batch norm kernels (created in the constructor, loaded on first use).
internal sealed partial class IlgpuKernels
{
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<float>, ConvGeometry, int, int, int>> Im2Col { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<float>, ConvGeometry, int, int, int>> Col2Im { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvGeometry, int, int, int, int>> UnpackConvOutput { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<float>, ConvGeometry, int, int, int>> PackConvOutputGrad { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<float>, long, int>> AddInto { get; }

    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<long>, PoolGeometry>> MaxPool { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<long>, ArrayView<float>, PoolGeometry>> MaxPoolBackward { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<float>, PoolGeometry>> AvgPool { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<float>, PoolGeometry>> AvgPoolBackward { get; }

    /// <summary>Group per channel (grid = C, group = <see cref="GroupSize"/>).</summary>
    public Lazy<Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormArgs>> BatchNormStats { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormArgs, int>> BatchNormNormalize { get; }
    /// <summary>Group per channel (grid = C, group = <see cref="GroupSize"/>).</summary>
    public Lazy<Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormArgs>> BatchNormBackwardSums { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int>> BatchNormDx { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>> ReluBackward { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>> AddRelu { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>> ScaleAddRelu { get; }
    /// <summary>Group per run (grid = runs, group = <see cref="GroupSize"/>).</summary>
    public Lazy<Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ScaleAddReluArgs>> ScaleAddReluBackward { get; }
}
