using AttnCore.Kernels.Gpu;
using ILGPU;
using ILGPU.Runtime;

namespace AttnCore.Backends;

// The two GEMM kernels (Kernels/Gpu/Gemm.cs): the shared-memory tiled one and the register-tiled one;
// IlgpuBackend.RegisterTiled picks between them by shape.
internal sealed partial class IlgpuKernels
{
    /// <summary>Edge of the GEMM tile (the group is GemmTile x GemmTile threads).</summary>
    public int GemmTile { get; }

    /// <summary>The tiled GEMM: GemmTile x GemmTile threads per group, one element of C each.</summary>
    public Lazy<Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs>> Gemm { get; }

    /// <summary>The register-tiled GEMM: GemmTile x GemmTile threads per group, each owning an 8 x 8 micro-tile.</summary>
    public Lazy<Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs>> GemmRegisterTiled { get; }

    /// <summary>Rows (and columns) of C per group of the register-tiled GEMM: 128 on GPUs, 32 on the CPU accelerator.</summary>
    public int GemmBlock => Kernels.Gpu.Gemm.MicroTile * GemmTile;
}
