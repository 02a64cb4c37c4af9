using System.Linq.Expressions;
using System.Reflection;
using System.Text.RegularExpressions;
using ILGPU;
using ILGPU.Backends;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace AttnCore.Backends;

// Loading of every kernel on CUDA: ILGPU's PTX with its "uniform" hints removed.
//
// Why: at O2, ILGPU 1.5.3 marks branches it believes every lane of a warp takes the same way as `bra.uni` (and
// returns as `ret.uni`), a promise to the hardware that the warp does not diverge there. Its analysis takes a
// kernel's parameters as uniform, and an implicitly grouped kernel's thread index is a parameter in its IR (the
// backend computes it from %ctaid/%tid only when it writes the PTX), so every branch on data a thread loaded
// through its own index is promised uniform too. On an H200 (2026-12-04) the warp then followed one lane's
// branch: argmax/argmin and max/min-with-indices returned other rows' indices, even an index one past the row.
// The hint only ever saves the compiler a divergence analysis that ptxas does anyway, so dropping it is always
// correct, and the rest of O2 (address-space inference, if-conversion) is kept. The emulated and OpenCL devices
// never see PTX and load as before.
internal sealed partial class IlgpuKernels
{
    private static readonly Regex UniformHint = new(@"\b(bra|ret|call|brx\.idx)\.uni\b", RegexOptions.Compiled);

    /// <summary>PTX with every uniform hint (bra.uni, ret.uni, call.uni, brx.idx.uni) replaced by the plain instruction.</summary>
    internal static string WithoutUniformHints(string ptx) => UniformHint.Replace(ptx, "$1");

    /// <summary>The PTX that ILGPU generates for <paramref name="method"/> on <paramref name="backend"/>, before and after the hints are removed.</summary>
    internal static (string Generated, string Loaded) CudaPtx(PTXBackend backend, MethodInfo method, bool explicitlyGrouped)
    {
        var compiled = CompilePtx(backend, method, explicitlyGrouped);
        return (compiled.PTXAssembly, WithoutUniformHints(compiled.PTXAssembly));
    }

    private static PTXCompiledKernel CompilePtx(PTXBackend backend, MethodInfo method, bool explicitlyGrouped)
    {
        var entry = explicitlyGrouped ? EntryPointDescription.FromExplicitlyGroupedKernel(method) : EntryPointDescription.FromImplicitlyGroupedKernel(method);
        return (PTXCompiledKernel)backend.Compile(entry, new KernelSpecialization());
    }

    // ILGPU keeps the compiled kernel's entry point and PTXCompiledKernel's constructor internal; both are reached by
    // reflection to rebuild the kernel around the patched PTX.
    private static readonly PropertyInfo CompiledEntryPoint = typeof(CompiledKernel).GetProperty("EntryPoint", BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)!;
    private static readonly ConstructorInfo PtxKernelCtor = typeof(PTXCompiledKernel).GetConstructors(BindingFlags.Instance | BindingFlags.NonPublic).Single();

    private static PTXCompiledKernel WithoutUniformHints(PTXCompiledKernel k) =>
        (PTXCompiledKernel)PtxKernelCtor.Invoke([k.Context, CompiledEntryPoint.GetValue(k), k.Info, WithoutUniformHints(k.PTXAssembly)]);

    /// <summary>A grouped kernel for CUDA, compiled and loaded without uniform hints.</summary>
    private Kernel LoadCudaGrouped(CudaAccelerator cuda, MethodInfo method) =>
        _acc.LoadKernel(WithoutUniformHints(CompilePtx((PTXBackend)cuda.Backend, method, explicitlyGrouped: true)));

    // An implicitly grouped kernel k (Action<Index1D, T1, ..., Tn>): on CUDA compiled and loaded without uniform hints,
    // ILGPU picking the group size as LoadAutoGroupedStreamKernel does, the launcher on the default stream; elsewhere
    // what <paramref name="elsewhere"/> loads.
    private TStream LoadAuto<TStream>(TStream k, Func<TStream> elsewhere) where TStream : Delegate =>
        _acc is CudaAccelerator cuda
            ? DefaultStreamLauncher<TStream>(_acc.LoadAutoGroupedKernel(WithoutUniformHints(CompilePtx((PTXBackend)cuda.Backend, k.Method, explicitlyGrouped: false))))
            : elsewhere();

    /// <summary>
    /// A launcher of type <typeparamref name="TStream"/> (the kernel's arguments, no stream) that runs
    /// <paramref name="kernel"/> on the accelerator's default stream.
    /// </summary>
    private TStream DefaultStreamLauncher<TStream>(Kernel kernel) where TStream : Delegate
    {
        var args = typeof(TStream).GetMethod("Invoke")!.GetParameters().Select(p => p.ParameterType).ToArray();
        var launcherType = Expression.GetActionType([typeof(AcceleratorStream), .. args]);
        var launcher = typeof(Kernel).GetMethod(nameof(Kernel.CreateLauncherDelegate))!.MakeGenericMethod(launcherType).Invoke(kernel, null)!;
        var ps = args.Select(Expression.Parameter).ToArray();
        var call = Expression.Invoke(Expression.Constant(launcher, launcherType), [Expression.Constant(_acc.DefaultStream), .. ps]);
        return Expression.Lambda<TStream>(call, ps).Compile();
    }
}
