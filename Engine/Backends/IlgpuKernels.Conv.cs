using AttnCore.Kernels.Gpu;
using ILGPU;
using ILGPU.Runtime;

namespace AttnCore.Backends;

// Convolution, pooling, batch norm and SGD kernels, loaded on first use.
internal sealed partial class IlgpuKernels
{
    private Action<Index1D, ArrayView<float>, ArrayView<float>, ConvGeometry, int, int, int>? _im2col, _col2im;
    private Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvGeometry, int, int, int, int>? _unpackOutput;
    private Action<Index1D, ArrayView<float>, ArrayView<float>, ConvGeometry, int, int, int>? _packOutputGrad;
    private Action<Index1D, ArrayView<float>, ArrayView<float>, long, int>? _addInto;
    private Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<long>, PoolGeometry>? _maxPool;
    private Action<Index1D, ArrayView<float>, ArrayView<long>, ArrayView<float>, PoolGeometry>? _maxPoolBackward;
    private Action<Index1D, ArrayView<float>, ArrayView<float>, PoolGeometry>? _avgPool, _avgPoolBackward;
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormArgs>? _bnStats;
    private Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormArgs, int>? _bnNormalize;
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormArgs>? _bnSums;
    private Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>? _bnDx;
    private Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, SgdArgs>? _sgd;

    public Action<Index1D, ArrayView<float>, ArrayView<float>, ConvGeometry, int, int, int> Im2Col =>
        _im2col ??= _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ConvGeometry, int, int, int>(Conv.Im2ColKernel);
    public Action<Index1D, ArrayView<float>, ArrayView<float>, ConvGeometry, int, int, int> Col2Im =>
        _col2im ??= _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ConvGeometry, int, int, int>(Conv.Col2ImKernel);
    public Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvGeometry, int, int, int, int> UnpackConvOutput =>
        _unpackOutput ??= _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvGeometry, int, int, int, int>(Conv.UnpackOutputKernel);
    public Action<Index1D, ArrayView<float>, ArrayView<float>, ConvGeometry, int, int, int> PackConvOutputGrad =>
        _packOutputGrad ??= _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ConvGeometry, int, int, int>(Conv.PackOutputGradKernel);
    public Action<Index1D, ArrayView<float>, ArrayView<float>, long, int> AddInto =>
        _addInto ??= _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, long, int>(Conv.AddIntoKernel);

    public Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<long>, PoolGeometry> MaxPool =>
        _maxPool ??= _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<long>, PoolGeometry>(Pool.MaxForwardKernel);
    public Action<Index1D, ArrayView<float>, ArrayView<long>, ArrayView<float>, PoolGeometry> MaxPoolBackward =>
        _maxPoolBackward ??= _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<long>, ArrayView<float>, PoolGeometry>(Pool.MaxBackwardKernel);
    public Action<Index1D, ArrayView<float>, ArrayView<float>, PoolGeometry> AvgPool =>
        _avgPool ??= _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, PoolGeometry>(Pool.AvgForwardKernel);
    public Action<Index1D, ArrayView<float>, ArrayView<float>, PoolGeometry> AvgPoolBackward =>
        _avgPoolBackward ??= _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, PoolGeometry>(Pool.AvgBackwardKernel);

    /// <summary>Group per channel (grid = C, group = <see cref="GroupSize"/>).</summary>
    public Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormArgs> BatchNormStats =>
        _bnStats ??= LoadGroupedKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormArgs>(
            Small ? BatchNorm.StatsKernel<Size16> : BatchNorm.StatsKernel<Size256>);
    public Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormArgs, int> BatchNormNormalize =>
        _bnNormalize ??= _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormArgs, int>(BatchNorm.NormalizeKernel);
    /// <summary>Group per channel (grid = C, group = <see cref="GroupSize"/>).</summary>
    public Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormArgs> BatchNormBackwardSums =>
        _bnSums ??= LoadGroupedKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormArgs>(
            Small ? BatchNorm.BackwardSumsKernel<Size16> : BatchNorm.BackwardSumsKernel<Size256>);
    public Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int> BatchNormDx =>
        _bnDx ??= _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(BatchNorm.BackwardDxKernel);

    public Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, SgdArgs> Sgd =>
        _sgd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, SgdArgs>(Optim.SgdKernel);
}
