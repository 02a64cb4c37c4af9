// KernelSize: compile-time sizes for kernels, and the attribute that says which sizes a kernel is built with on GPUs.
// ILGPU needs shared-memory extents as constants, so a size is an empty struct whose Value returns a literal and a
// kernel takes it as a type argument: the JIT folds it, and one kernel source compiles once per size it is given.
using ILGPU;

namespace AttnCore.Kernels.Gpu;

/// <summary>
/// A size fixed when a kernel is compiled (shared-memory extents must be constants in ILGPU): an empty struct
/// whose <see cref="Value"/> returns a literal. Kernels take it as a type argument, so one kernel source serves
/// a 16-thread CPU-accelerator group and a 256-thread GPU group.
/// </summary>
public interface IKernelSize
{
    /// <summary>The size (a power of two).</summary>
    int Value { get; }
}

/// <summary>4 (the GEMM tile edge on the CPU accelerator: 4 x 4 = 16 threads).</summary>
public struct Size4 : IKernelSize
{
    /// <inheritdoc/>
    public readonly int Value => 4;
}

/// <summary>8 (the K depth of a register-tiled GEMM step).</summary>
public struct Size8 : IKernelSize
{
    /// <inheritdoc/>
    public readonly int Value => 8;
}

/// <summary>16 (the GEMM tile edge on GPUs; the group size on the CPU accelerator).</summary>
public struct Size16 : IKernelSize
{
    /// <inheritdoc/>
    public readonly int Value => 16;
}

/// <summary>256 (the row/group-reduction group size on GPUs).</summary>
public struct Size256 : IKernelSize
{
    /// <inheritdoc/>
    public readonly int Value => 256;
}

/// <summary>
/// Marks a generic kernel with the type arguments it is compiled with for GPUs (for example the 256-thread
/// group). The offline PTX check instantiates every generic kernel of this namespace from it, so a new kernel
/// is checked as soon as it exists.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class GpuTypeArgumentsAttribute(params Type[] types) : Attribute
{
    /// <summary>The type arguments of the GPU build.</summary>
    public Type[] Types { get; } = types;
}
