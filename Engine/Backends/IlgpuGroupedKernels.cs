using System.Linq.Expressions;
using System.Reflection;
using System.Text.RegularExpressions;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.OpenCL;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace AttnCore.Backends;

// Loading of explicitly grouped kernels (the ones with shared memory and barriers).
//
// Why not ILGPU's LoadStreamKernel on OpenCL: ILGPU 1.5.3 writes Group.Barrier() (and MemoryFence.GroupLevel())
// as work_group_barrier(CLK_GLOBAL_MEM_FENCE). In OpenCL that fence orders global memory only: shared (local)
// memory written before the barrier need not be visible after it, and a compiler may move local loads across
// it. PoCL did exactly that to the attention kernel (docs/gpu.md), and drivers that schedule local memory
// separately (AMD's LDS counters, for one) are free to. CUDA is unaffected (bar.sync orders all memory). So on
// OpenCL each grouped kernel is compiled to OpenCL C, its barriers are widened to CLK_LOCAL_MEM_FENCE |
// CLK_GLOBAL_MEM_FENCE, and the patched source is what gets built; elsewhere ILGPU's own loader is used.
internal sealed partial class IlgpuKernels
{
    private static readonly Regex GlobalOnlyBarrier = new(@"work_group_barrier\s*\(\s*CLK_GLOBAL_MEM_FENCE\s*([,)])", RegexOptions.Compiled);

    /// <summary>OpenCL C with every global-only work-group barrier widened to fence local memory as well.</summary>
    internal static string FenceLocalMemory(string source) =>
        GlobalOnlyBarrier.Replace(source, m => "work_group_barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE" + m.Groups[1].Value);

    /// <summary>The OpenCL C that ILGPU generates for an explicitly grouped kernel on <paramref name="accelerator"/>, before and after the fence fix.</summary>
    internal static (string Generated, string Loaded) OpenCLSource(CLAccelerator accelerator, MethodInfo method)
    {
        var compiled = (CLCompiledKernel)accelerator.Backend.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(method), new KernelSpecialization());
        return (compiled.Source, FenceLocalMemory(compiled.Source));
    }

    // TStream is Action<KernelConfig, T1, ..., Tn> for a kernel method (T1, ..., Tn): a launcher on the default stream.
    private TStream LoadGrouped<TStream>(MethodInfo method) where TStream : Delegate
    {
        Kernel kernel;
        if (_acc is CLAccelerator cl)
        {
            var compiled = (CLCompiledKernel)cl.Backend.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(method), new KernelSpecialization());
            // ILGPU keeps the entry point internal; it is read by reflection to rebuild the kernel around the patched source.
            var entry = (SeparateViewEntryPoint)typeof(ILGPU.Backends.CompiledKernel).GetProperty("EntryPoint", BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)!.GetValue(compiled)!;
            var patched = new CLCompiledKernel(compiled.Context, entry, compiled.Info, FenceLocalMemory(compiled.Source), compiled.CVersion);
            kernel = _acc.LoadKernel(patched);
        }
        else if (_acc is CudaAccelerator cuda) kernel = LoadCudaGrouped(cuda, method);
        else kernel = _acc.LoadKernel(method);
        return DefaultStreamLauncher<TStream>(kernel);
    }

    // One overload per kernel arity in use, so call sites read like ILGPU's LoadStreamKernel<...>(kernel).
    private Action<KernelConfig, T1, T2, T3, T4> LoadGroupedKernel<T1, T2, T3, T4>(Action<T1, T2, T3, T4> k)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct
        => LoadGrouped<Action<KernelConfig, T1, T2, T3, T4>>(k.Method);
    private Action<KernelConfig, T1, T2, T3, T4, T5> LoadGroupedKernel<T1, T2, T3, T4, T5>(Action<T1, T2, T3, T4, T5> k)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct
        => LoadGrouped<Action<KernelConfig, T1, T2, T3, T4, T5>>(k.Method);
    private Action<KernelConfig, T1, T2, T3, T4, T5, T6> LoadGroupedKernel<T1, T2, T3, T4, T5, T6>(Action<T1, T2, T3, T4, T5, T6> k)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct
        => LoadGrouped<Action<KernelConfig, T1, T2, T3, T4, T5, T6>>(k.Method);
    private Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7> LoadGroupedKernel<T1, T2, T3, T4, T5, T6, T7>(Action<T1, T2, T3, T4, T5, T6, T7> k)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct
        => LoadGrouped<Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7>>(k.Method);
    private Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8> LoadGroupedKernel<T1, T2, T3, T4, T5, T6, T7, T8>(Action<T1, T2, T3, T4, T5, T6, T7, T8> k)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct
        => LoadGrouped<Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8>>(k.Method);
    private Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9> LoadGroupedKernel<T1, T2, T3, T4, T5, T6, T7, T8, T9>(Action<T1, T2, T3, T4, T5, T6, T7, T8, T9> k)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct where T9 : struct
        => LoadGrouped<Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9>>(k.Method);
    private Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10> LoadGroupedKernel<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10>(Action<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10> k)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct where T9 : struct where T10 : struct
        => LoadGrouped<Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10>>(k.Method);
}
