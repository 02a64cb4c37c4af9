using AttnCore.Kernels.Gpu;
using ILGPU;
using ILGPU.Runtime;
using GpuAttention = AttnCore.Kernels.Gpu.Attention;

namespace AttnCore.Backends;

/// <summary>
/// Every kernel of AttnCore.Kernels.Gpu for one accelerator, compiled on first use and kept as a launch
/// delegate for the accelerator's lifetime (compiling takes milliseconds to seconds; launching, microseconds).
/// Launch sizes that must be compile-time constants (shared-memory tiles) are chosen here from the accelerator.
/// One loading style for every kernel: a <see cref="Lazy{T}"/> launcher created in the constructor through
/// <c>Auto</c> (ILGPU picks the group) or <c>Grouped</c> (explicit grid and group); a row kernel is a
/// <see cref="TeamKernel{TDelegate}"/>, two such launchers. Families declare their properties in partial files
/// (IlgpuKernels.Family.cs).
/// </summary>
internal sealed partial class IlgpuKernels
{
    private readonly Accelerator _acc;

    /// <summary>The accelerator the kernels are loaded on.</summary>
    public Accelerator Accelerator => _acc;

    /// <summary>True on the CPU accelerator (16-thread groups), false on GPUs (256-thread groups).</summary>
    public bool Small { get; }

    public IlgpuKernels(Accelerator accelerator)
    {
        _acc = accelerator;
        // The CPU accelerator allows 16 threads per group: 4x4 GEMM tiles, 16-thread reductions. GPUs: 16x16 and 256.
        bool small = Small = accelerator.MaxNumThreadsPerGroup < 256;
        GemmTile = small ? 4 : 16;
        GroupSize = small ? 16 : 256;
        Unary = Auto<ArrayView<float>, StridedIndex, ArrayView<float>, int, float>(Elementwise.UnaryKernel);
        Binary = Auto<ArrayView<float>, StridedIndex, ArrayView<float>, StridedIndex, ArrayView<float>, int>(Elementwise.BinaryKernel);
        Where = Auto<ArrayView<float>, StridedIndex, ArrayView<float>, StridedIndex, ArrayView<float>, StridedIndex, ArrayView<float>>(Elementwise.WhereKernel);
        Fill = Auto<ArrayView<float>, StridedIndex, float>(Elementwise.FillKernel);
        FillLong = Auto<ArrayView<long>, StridedIndex, long>(Elementwise.FillLongKernel);
        Copy = Auto<ArrayView<float>, StridedIndex, ArrayView<float>, StridedIndex>(Elementwise.CopyKernel);
        CopyLong = Auto<ArrayView<long>, StridedIndex, ArrayView<long>, StridedIndex>(Elementwise.CopyLongKernel);
        LongToFloat = Auto<ArrayView<long>, StridedIndex, ArrayView<float>, StridedIndex>(Elementwise.LongToFloatKernel);
        FloatToLong = Auto<ArrayView<float>, StridedIndex, ArrayView<long>, StridedIndex>(Elementwise.FloatToLongKernel);
        Compare = Auto<ArrayView<float>, StridedIndex, ArrayView<float>, StridedIndex, ArrayView<byte>, int>(ElementwiseBool.CompareKernel);
        CompareLong = Auto<ArrayView<long>, StridedIndex, ArrayView<long>, StridedIndex, ArrayView<byte>, int>(ElementwiseBool.CompareLongKernel);
        Logical = Auto<ArrayView<byte>, StridedIndex, ArrayView<byte>, StridedIndex, ArrayView<byte>, int>(ElementwiseBool.LogicalKernel);
        WhereMask = Auto<ArrayView<byte>, StridedIndex, ArrayView<float>, StridedIndex, ArrayView<float>, StridedIndex, ArrayView<float>>(ElementwiseBool.WhereMaskKernel);
        WhereBoolValues = Auto<ArrayView<float>, StridedIndex, ArrayView<byte>, StridedIndex, ArrayView<byte>, StridedIndex, ArrayView<byte>>(ElementwiseBool.WhereBoolValuesKernel);
        FillBool = Auto<ArrayView<byte>, StridedIndex, byte>(ElementwiseBool.FillKernel);
        CopyBool = Auto<ArrayView<byte>, StridedIndex, ArrayView<byte>, StridedIndex>(ElementwiseBool.CopyKernel);
        BoolToFloat = Auto<ArrayView<byte>, StridedIndex, ArrayView<float>, StridedIndex>(ElementwiseBool.BoolToFloatKernel);
        BoolToLong = Auto<ArrayView<byte>, StridedIndex, ArrayView<long>, StridedIndex>(ElementwiseBool.BoolToLongKernel);
        FloatToBool = Auto<ArrayView<float>, StridedIndex, ArrayView<byte>, StridedIndex>(ElementwiseBool.FloatToBoolKernel);
        LongToBool = Auto<ArrayView<long>, StridedIndex, ArrayView<byte>, StridedIndex>(ElementwiseBool.LongToBoolKernel);
        ReduceThreads = Auto<ArrayView<float>, StridedIndex, StridedIndex, long, ArrayView<float>, int>(Reduce.ReduceKernel);
        ArgReduce = Auto<ArrayView<float>, StridedIndex, long, long, ArrayView<long>, int>(Reduce.ArgReduceKernel);
        TopK = Auto<ArrayView<float>, StridedIndex, long, long, int, int, ArrayView<long>>(Reduce.TopKKernel);
        ReduceGroups = Grouped<ArrayView<float>, StridedIndex, StridedIndex, long, ArrayView<float>, int>(
            small ? Reduce.GroupReduceKernel<Size16> : Reduce.GroupReduceKernel<Size256>);
        IndexSelect = Auto<ArrayView<float>, ArrayView<long>, ArrayView<float>, long, long, int>(IndexOps.SelectKernel);
        Gather = Auto<ArrayView<float>, ArrayView<long>, ArrayView<float>, long, long, int>(IndexOps.GatherKernel);
        IndexAdd = Auto<ArrayView<float>, ArrayView<long>, ArrayView<float>, long, long, int>(IndexOps.IndexAddKernel);
        CheckRange = Auto<ArrayView<long>, long, long, int, ArrayView<long>, long>(IndexOps.CheckRangeKernel);
        UnaryLong = Auto<ArrayView<long>, StridedIndex, ArrayView<long>, int, long>(ElementwiseInt64.UnaryKernel);
        BinaryLong = Auto<ArrayView<long>, StridedIndex, ArrayView<long>, StridedIndex, ArrayView<long>, int, ArrayView<long>, long>(ElementwiseInt64.BinaryKernel);
        WhereLong = Auto<ArrayView<float>, StridedIndex, ArrayView<long>, StridedIndex, ArrayView<long>, StridedIndex, ArrayView<long>>(ElementwiseInt64.WhereKernel);
        ReduceLong = Auto<ArrayView<long>, StridedIndex, StridedIndex, long, ArrayView<long>, int>(ElementwiseInt64.ReduceKernel);
        ArgReduceLong = Auto<ArrayView<long>, StridedIndex, long, long, ArrayView<long>, int>(ElementwiseInt64.ArgReduceKernel);
        SortKeys = Auto<ArrayView<long>, ArrayView<long>, int>(IndexOps.SortKeysKernel);
        BitonicStep = Auto<ArrayView<long>, int, int>(IndexOps.BitonicStepKernel);
        IndexAddSorted = Auto<ArrayView<float>, ArrayView<long>, ArrayView<float>, long, long, int>(IndexOps.IndexAddSortedKernel);
        DropoutMask = Auto<ArrayView<float>, ulong, float, float>(RandomMaskKernels.DropoutMaskKernel);
        ScatterAdd = Auto<ArrayView<float>, ArrayView<long>, ArrayView<float>, long, long, int>(IndexOps.ScatterAddKernel);
        LayerNormParamsPartial = Auto<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int>(RowKernels.LayerNormParamsPartialKernel);
        LayerNormParamsFinish = Auto<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int>(RowKernels.LayerNormParamsFinishKernel);
        CrossEntropyBackward = Auto<ArrayView<float>, ArrayView<long>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, CrossEntropyArgs>(CrossEntropy.BackwardKernel);
        CrossEntropyReduce = Grouped<ArrayView<float>, ArrayView<float>, int, ArrayView<float>, ArrayView<float>, int>(
            small ? CrossEntropy.ReduceKernel<Size16> : CrossEntropy.ReduceKernel<Size256>);
        Adam = Auto<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, float, float, float, float, float, float, float, int>(Optim.AdamKernel);
        Sgd = Auto<ArrayView<float>, ArrayView<float>, ArrayView<float>, SgdArgs>(Optim.SgdKernel);
        Gemm = Grouped<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs>(small ? Kernels.Gpu.Gemm.TiledKernel<Size4> : Kernels.Gpu.Gemm.TiledKernel<Size16>);
        GemmRegisterTiled = Grouped<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs>(
            small ? Kernels.Gpu.Gemm.RegisterTiledKernel<Size4, Size8> : Kernels.Gpu.Gemm.RegisterTiledKernel<Size16, Size8>);
        // Convolution, pooling and batch norm (IlgpuKernels.Conv.cs).
        Im2Col = Auto<ArrayView<float>, ArrayView<float>, ConvGeometry, int, int, int>(Conv.Im2ColKernel);
        Col2Im = Auto<ArrayView<float>, ArrayView<float>, ConvGeometry, int, int, int>(Conv.Col2ImKernel);
        UnpackConvOutput = Auto<ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvGeometry, int, int, int, int>(Conv.UnpackOutputKernel);
        PackConvOutputGrad = Auto<ArrayView<float>, ArrayView<float>, ConvGeometry, int, int, int>(Conv.PackOutputGradKernel);
        AddInto = Auto<ArrayView<float>, ArrayView<float>, long, int>(Conv.AddIntoKernel);
        MaxPool = Auto<ArrayView<float>, ArrayView<float>, ArrayView<long>, PoolGeometry>(Pool.MaxForwardKernel);
        MaxPoolBackward = Auto<ArrayView<float>, ArrayView<long>, ArrayView<float>, PoolGeometry>(Pool.MaxBackwardKernel);
        AvgPool = Auto<ArrayView<float>, ArrayView<float>, PoolGeometry>(Pool.AvgForwardKernel);
        AvgPoolBackward = Auto<ArrayView<float>, ArrayView<float>, PoolGeometry>(Pool.AvgBackwardKernel);
        BatchNormStats = Grouped<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormArgs>(small ? BatchNorm.StatsKernel<Size16> : BatchNorm.StatsKernel<Size256>);
        BatchNormNormalize = Auto<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormArgs, int>(BatchNorm.NormalizeKernel);
        BatchNormBackwardSums = Grouped<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormArgs>(small ? BatchNorm.BackwardSumsKernel<Size16> : BatchNorm.BackwardSumsKernel<Size256>);
        BatchNormDx = Auto<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int>(BatchNorm.BackwardDxKernel);
        ReluBackward = Auto<ArrayView<float>, ArrayView<float>, ArrayView<float>>(BatchNorm.ReluBackwardKernel);
        AddRelu = Auto<ArrayView<float>, ArrayView<float>, ArrayView<float>>(BatchNorm.AddReluKernel);
        ScaleAddRelu = Auto<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(Kernels.Gpu.ScaleAddRelu.ForwardKernel);
        ScaleAddReluBackward = Grouped<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ScaleAddReluArgs>(
            small ? Kernels.Gpu.ScaleAddRelu.BackwardKernel<Size16> : Kernels.Gpu.ScaleAddRelu.BackwardKernel<Size256>);
        // Fused attention (IlgpuKernels.Attention.cs).
        AttentionForward = Grouped<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionArgs>(small ? GpuAttention.ForwardKernel<AttentionSmallTiles> : GpuAttention.ForwardKernel<AttentionGpuTiles>);
        AttentionDelta = Auto<ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionArgs>(GpuAttention.DeltaKernel);
        AttentionKeyValueGrad = Grouped<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionArgs>(small ? GpuAttention.KeyValueGradKernel<AttentionSmallTiles> : GpuAttention.KeyValueGradKernel<AttentionGpuTiles>);
        AttentionQueryGrad = Grouped<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionArgs>(small ? GpuAttention.QueryGradKernel<AttentionSmallTiles> : GpuAttention.QueryGradKernel<AttentionGpuTiles>);
        // Row kernels, a warp and a group build each (IlgpuKernels.Rows.cs).
        SoftmaxRows = new(
            () => LoadGroupedKernel<ArrayView<float>, ArrayView<float>, int, int, int>(small ? Softmax.RowKernel<WarpTeam, Size16> : Softmax.RowKernel<WarpTeam, Size256>),
            () => LoadGroupedKernel<ArrayView<float>, ArrayView<float>, int, int, int>(small ? Softmax.RowKernel<GroupTeam, Size16> : Softmax.RowKernel<GroupTeam, Size256>));
        LayerNormForward = new(
            () => LoadGroupedKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNormArgs>(
                small ? LayerNorm.ForwardKernel<WarpTeam, Size16> : LayerNorm.ForwardKernel<WarpTeam, Size256>),
            () => LoadGroupedKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNormArgs>(
                small ? LayerNorm.ForwardKernel<GroupTeam, Size16> : LayerNorm.ForwardKernel<GroupTeam, Size256>));
        LayerNormBackward = new(
            () => LoadGroupedKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNormArgs>(
                small ? LayerNorm.BackwardKernel<WarpTeam, Size16> : LayerNorm.BackwardKernel<WarpTeam, Size256>),
            () => LoadGroupedKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNormArgs>(
                small ? LayerNorm.BackwardKernel<GroupTeam, Size16> : LayerNorm.BackwardKernel<GroupTeam, Size256>));
        CrossEntropyForward = new(
            () => LoadGroupedKernel<ArrayView<float>, ArrayView<long>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, CrossEntropyArgs>(
                small ? CrossEntropy.ForwardKernel<WarpTeam, Size16> : CrossEntropy.ForwardKernel<WarpTeam, Size256>),
            () => LoadGroupedKernel<ArrayView<float>, ArrayView<long>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, CrossEntropyArgs>(
                small ? CrossEntropy.ForwardKernel<GroupTeam, Size16> : CrossEntropy.ForwardKernel<GroupTeam, Size256>));
    }

    /// <summary>Threads per group of the group reductions and the row softmax.</summary>
    public int GroupSize { get; }

    public Lazy<Action<Index1D, ArrayView<float>, StridedIndex, ArrayView<float>, int, float>> Unary { get; }
    public Lazy<Action<Index1D, ArrayView<float>, StridedIndex, ArrayView<float>, StridedIndex, ArrayView<float>, int>> Binary { get; }
    public Lazy<Action<Index1D, ArrayView<float>, StridedIndex, ArrayView<float>, StridedIndex, ArrayView<float>, StridedIndex, ArrayView<float>>> Where { get; }
    public Lazy<Action<Index1D, ArrayView<float>, StridedIndex, float>> Fill { get; }
    public Lazy<Action<Index1D, ArrayView<long>, StridedIndex, long>> FillLong { get; }
    public Lazy<Action<Index1D, ArrayView<float>, StridedIndex, ArrayView<float>, StridedIndex>> Copy { get; }
    public Lazy<Action<Index1D, ArrayView<long>, StridedIndex, ArrayView<long>, StridedIndex>> CopyLong { get; }
    public Lazy<Action<Index1D, ArrayView<long>, StridedIndex, ArrayView<float>, StridedIndex>> LongToFloat { get; }
    public Lazy<Action<Index1D, ArrayView<float>, StridedIndex, ArrayView<long>, StridedIndex>> FloatToLong { get; }
    public Lazy<Action<Index1D, ArrayView<float>, StridedIndex, ArrayView<float>, StridedIndex, ArrayView<byte>, int>> Compare { get; }
    public Lazy<Action<Index1D, ArrayView<long>, StridedIndex, ArrayView<long>, StridedIndex, ArrayView<byte>, int>> CompareLong { get; }
    public Lazy<Action<Index1D, ArrayView<byte>, StridedIndex, ArrayView<byte>, StridedIndex, ArrayView<byte>, int>> Logical { get; }
    public Lazy<Action<Index1D, ArrayView<byte>, StridedIndex, ArrayView<float>, StridedIndex, ArrayView<float>, StridedIndex, ArrayView<float>>> WhereMask { get; }
    public Lazy<Action<Index1D, ArrayView<float>, StridedIndex, ArrayView<byte>, StridedIndex, ArrayView<byte>, StridedIndex, ArrayView<byte>>> WhereBoolValues { get; }
    public Lazy<Action<Index1D, ArrayView<byte>, StridedIndex, byte>> FillBool { get; }
    public Lazy<Action<Index1D, ArrayView<byte>, StridedIndex, ArrayView<byte>, StridedIndex>> CopyBool { get; }
    public Lazy<Action<Index1D, ArrayView<byte>, StridedIndex, ArrayView<float>, StridedIndex>> BoolToFloat { get; }
    public Lazy<Action<Index1D, ArrayView<byte>, StridedIndex, ArrayView<long>, StridedIndex>> BoolToLong { get; }
    public Lazy<Action<Index1D, ArrayView<float>, StridedIndex, ArrayView<byte>, StridedIndex>> FloatToBool { get; }
    public Lazy<Action<Index1D, ArrayView<long>, StridedIndex, ArrayView<byte>, StridedIndex>> LongToBool { get; }
    public Lazy<Action<Index1D, ArrayView<float>, StridedIndex, StridedIndex, long, ArrayView<float>, int>> ReduceThreads { get; }
    public Lazy<Action<Index1D, ArrayView<float>, StridedIndex, long, long, ArrayView<long>, int>> ArgReduce { get; }
    public Lazy<Action<Index1D, ArrayView<float>, StridedIndex, long, long, int, int, ArrayView<long>>> TopK { get; }
    public Lazy<Action<KernelConfig, ArrayView<float>, StridedIndex, StridedIndex, long, ArrayView<float>, int>> ReduceGroups { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<long>, ArrayView<float>, long, long, int>> IndexSelect { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int>> LayerNormParamsPartial { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int>> LayerNormParamsFinish { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<long>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, CrossEntropyArgs>> CrossEntropyBackward { get; }
    public Lazy<Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, ArrayView<float>, ArrayView<float>, int>> CrossEntropyReduce { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, float, float, float, float, float, float, float, int>> Adam { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, SgdArgs>> Sgd { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<long>, ArrayView<float>, long, long, int>> Gather { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<long>, ArrayView<float>, long, long, int>> IndexAdd { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<long>, ArrayView<float>, long, long, int>> ScatterAdd { get; }
    public Lazy<Action<Index1D, ArrayView<long>, long, long, int, ArrayView<long>, long>> CheckRange { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ulong, float, float>> DropoutMask { get; }
    public Lazy<Action<Index1D, ArrayView<long>, ArrayView<long>, int>> SortKeys { get; }
    public Lazy<Action<Index1D, ArrayView<long>, int, int>> BitonicStep { get; }
    public Lazy<Action<Index1D, ArrayView<float>, ArrayView<long>, ArrayView<float>, long, long, int>> IndexAddSorted { get; }
    public Lazy<Action<Index1D, ArrayView<long>, StridedIndex, ArrayView<long>, int, long>> UnaryLong { get; }
    public Lazy<Action<Index1D, ArrayView<long>, StridedIndex, ArrayView<long>, StridedIndex, ArrayView<long>, int, ArrayView<long>, long>> BinaryLong { get; }
    public Lazy<Action<Index1D, ArrayView<float>, StridedIndex, ArrayView<long>, StridedIndex, ArrayView<long>, StridedIndex, ArrayView<long>>> WhereLong { get; }
    public Lazy<Action<Index1D, ArrayView<long>, StridedIndex, StridedIndex, long, ArrayView<long>, int>> ReduceLong { get; }
    public Lazy<Action<Index1D, ArrayView<long>, StridedIndex, long, long, ArrayView<long>, int>> ArgReduceLong { get; }

    // One thread per element, ILGPU picks the group size: for kernels without shared memory or barriers.
    private Lazy<Action<Index1D, T1, T2, T3>> Auto<T1, T2, T3>(Action<Index1D, T1, T2, T3> k)
        where T1 : struct where T2 : struct where T3 : struct
        => new(() => LoadAuto(k, () => _acc.LoadAutoGroupedStreamKernel(k)));
    private Lazy<Action<Index1D, T1, T2, T3, T4>> Auto<T1, T2, T3, T4>(Action<Index1D, T1, T2, T3, T4> k)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct
        => new(() => LoadAuto(k, () => _acc.LoadAutoGroupedStreamKernel(k)));
    private Lazy<Action<Index1D, T1, T2, T3, T4, T5>> Auto<T1, T2, T3, T4, T5>(Action<Index1D, T1, T2, T3, T4, T5> k)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct
        => new(() => LoadAuto(k, () => _acc.LoadAutoGroupedStreamKernel(k)));
    private Lazy<Action<Index1D, T1, T2, T3, T4, T5, T6>> Auto<T1, T2, T3, T4, T5, T6>(Action<Index1D, T1, T2, T3, T4, T5, T6> k)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct
        => new(() => LoadAuto(k, () => _acc.LoadAutoGroupedStreamKernel(k)));
    private Lazy<Action<Index1D, T1, T2, T3, T4, T5, T6, T7>> Auto<T1, T2, T3, T4, T5, T6, T7>(Action<Index1D, T1, T2, T3, T4, T5, T6, T7> k)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct
        => new(() => LoadAuto(k, () => _acc.LoadAutoGroupedStreamKernel(k)));
    private Lazy<Action<Index1D, T1, T2, T3, T4, T5, T6, T7, T8>> Auto<T1, T2, T3, T4, T5, T6, T7, T8>(Action<Index1D, T1, T2, T3, T4, T5, T6, T7, T8> k)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct
        => new(() => LoadAuto(k, () => _acc.LoadAutoGroupedStreamKernel(k)));
    private Lazy<Action<Index1D, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10>> Auto<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10>(Action<Index1D, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10> k)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct where T9 : struct where T10 : struct
        => new(() => LoadAuto(k, () => _acc.LoadAutoGroupedStreamKernel(k)));
    private Lazy<Action<Index1D, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12>> Auto<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12>(Action<Index1D, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12> k)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct where T9 : struct where T10 : struct where T11 : struct where T12 : struct
        => new(() => LoadAuto(k, () => _acc.LoadAutoGroupedStreamKernel(k)));

    // Explicit grid and group (shared memory, barriers).
    private Lazy<Action<KernelConfig, T1, T2, T3, T4>> Grouped<T1, T2, T3, T4>(Action<T1, T2, T3, T4> k)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct
        => new(() => LoadGroupedKernel(k));
    private Lazy<Action<KernelConfig, T1, T2, T3, T4, T5, T6>> Grouped<T1, T2, T3, T4, T5, T6>(Action<T1, T2, T3, T4, T5, T6> k)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct
        => new(() => LoadGroupedKernel(k));
    private Lazy<Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7>> Grouped<T1, T2, T3, T4, T5, T6, T7>(Action<T1, T2, T3, T4, T5, T6, T7> k)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct
        => new(() => LoadGroupedKernel(k));
    private Lazy<Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8>> Grouped<T1, T2, T3, T4, T5, T6, T7, T8>(Action<T1, T2, T3, T4, T5, T6, T7, T8> k)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct
        => new(() => LoadGroupedKernel(k));
    private Lazy<Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9>> Grouped<T1, T2, T3, T4, T5, T6, T7, T8, T9>(Action<T1, T2, T3, T4, T5, T6, T7, T8, T9> k)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct where T9 : struct
        => new(() => LoadGroupedKernel(k));
    private Lazy<Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10>> Grouped<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10>(Action<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10> k)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct where T9 : struct where T10 : struct
        => new(() => LoadGroupedKernel(k));
}
