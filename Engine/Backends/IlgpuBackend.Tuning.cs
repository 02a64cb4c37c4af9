using ILGPU;
using ILGPU.Runtime;

namespace AttnCore.Backends;

/// <summary>Which threads share a row in the row kernels (softmax, layer norm, cross-entropy) of an ILGPU device.</summary>
public enum RowTeamMode
{
    /// <summary>A warp per row for rows up to <see cref="IlgpuBackend.WarpRowLimit"/> where the device has warp shuffles, a group per row otherwise.</summary>
    Auto,
    /// <summary>Always a warp per row (devices with warp shuffles only).</summary>
    Warp,
    /// <summary>Always a group per row, reduced through shared memory (every device).</summary>
    Group,
}

/// <summary>Which GEMM kernel an ILGPU device's MatMul launches.</summary>
public enum GemmKernelMode
{
    /// <summary>Register-tiled when it yields at least one group per multiprocessor, the shared-memory tiled kernel otherwise.</summary>
    Auto,
    /// <summary>The shared-memory tiled reference kernel (one output per thread).</summary>
    Tiled,
    /// <summary>The register-tiled kernel (an 8 x 8 micro-tile per thread).</summary>
    RegisterTiled,
}

// Kernel selection switches (for tests and benchmarks; Auto is right for training) and the accelerator accessor
// that lets a benchmark run a vendor library on the same device buffers.
public sealed partial class IlgpuBackend
{
    private RowTeamMode _rowTeam;

    /// <summary>Longest row the Auto mode gives to one warp (32 elements per lane on a 32-lane warp).</summary>
    public const int WarpRowLimit = 1024;

    /// <summary>True where the row kernels can run a warp per row (CUDA and the CPU accelerator; not OpenCL, see docs/gpu.md).</summary>
    public bool HasWarpShuffles => _k.WarpShuffles;

    /// <summary>
    /// For an OpenCL device: the OpenCL C ILGPU generates for the explicitly grouped kernel <paramref name="method"/>,
    /// and the source this backend builds instead (every barrier widened to fence local memory; see IlgpuGroupedKernels.cs).
    /// </summary>
    public (string Generated, string Loaded) OpenCLSource(System.Reflection.MethodInfo method) => _acc is ILGPU.Runtime.OpenCL.CLAccelerator cl
        ? IlgpuKernels.OpenCLSource(cl, method)
        : throw new NotSupportedException($"OpenCLSource: {Device} is not an OpenCL device");

    /// <summary>OpenCL C with every global-only work-group barrier widened to fence local memory as well.</summary>
    public static string FenceLocalMemory(string openCLSource) => IlgpuKernels.FenceLocalMemory(openCLSource);

    /// <summary>How the row kernels split rows among threads (default <see cref="RowTeamMode.Auto"/>).</summary>
    /// <exception cref="NotSupportedException">Warp on a device without warp shuffles.</exception>
    public RowTeamMode RowTeam
    {
        get => _rowTeam;
        set
        {
            if (value == RowTeamMode.Warp && !HasWarpShuffles)
                throw new NotSupportedException($"IlgpuBackend: {Device} ({_acc.Name}) has no warp shuffles, so its row kernels must run a group per row");
            _rowTeam = value;
        }
    }

    /// <summary>Which GEMM kernel MatMul launches (default <see cref="GemmKernelMode.Auto"/>).</summary>
    public GemmKernelMode GemmKernel { get; set; }

    /// <summary>The ILGPU accelerator behind this device (for vendor libraries such as cuBLAS on the same buffers).</summary>
    public Accelerator Accelerator => _acc;

    /// <summary>The float32 elements of a storage of this device, as an ILGPU view (length = <see cref="Storage.Length"/>).</summary>
    public ArrayView<float> FloatView(Storage storage) => Float(storage, "FloatView").Floats;

    private bool WarpRows(int cols) => _rowTeam switch
    {
        RowTeamMode.Warp => true,
        RowTeamMode.Group => false,
        _ => HasWarpShuffles && cols <= WarpRowLimit,
    };

    // Warp build: RowsPerGroup rows per group; group build: one group per row.
    private KernelConfig RowLaunch(string op, int rows, bool warp)
    {
        int groups = warp ? (int)(((long)rows + _k.RowsPerGroup - 1) / _k.RowsPerGroup) : rows;
        return new KernelConfig(Threads(op, groups), new Index1D(_k.GroupSize));
    }

    private bool RegisterTiled(int batch, int m, int n) => GemmKernel switch
    {
        GemmKernelMode.Tiled => false,
        GemmKernelMode.RegisterTiled => true,
        _ => (long)((m + _k.GemmBlock - 1) / _k.GemmBlock) * ((n + _k.GemmBlock - 1) / _k.GemmBlock) * batch >= _acc.NumMultiprocessors,
    };
}
