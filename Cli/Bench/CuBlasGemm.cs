using System.Diagnostics;
using AttnCore.Backends;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace AttnCore.Cli.Bench;

/// <summary>A reference implementation timed next to AttnCore in <c>attncore bench</c> (PyTorch, cuBLAS).</summary>
public interface IBenchReference : IDisposable
{
    /// <summary>The name printed in the report and used as the JSON prefix (e.g. "torch", "cublas").</summary>
    string Key { get; }
    /// <summary>The label printed in the report (name and version).</summary>
    string Label { get; }
    /// <summary>Times <paramref name="reps"/> runs, in milliseconds each.</summary>
    double[] Run(int reps);
    /// <summary>How the reference is configured (printed by bench and written to its JSON); empty when there is nothing to say.</summary>
    IReadOnlyDictionary<string, string> Configuration => new Dictionary<string, string>();
}

/// <summary>
/// cuBLAS SGEMM (ILGPU.Algorithms' CuBlas, default math mode: true FP32, no TF32 tensor cores) on the same
/// CUDA accelerator and the same device buffers as AttnCore's kernel, for <c>bench gemm --vs cublas</c>.
/// AttnCore's tensors are row-major and cuBLAS is column-major, so C = A B is computed as Cᵀ = Bᵀ Aᵀ: the
/// row-major buffers read as column-major are exactly those transposes, and no copy is needed.
/// </summary>
public sealed class CuBlasGemm : IBenchReference
{
    private readonly CuBlas _blas;
    private readonly Accelerator _acc;
    private readonly ArrayView<float> _a, _b, _c;
    private readonly Storage _cStorage;
    private readonly int _m, _n, _k;

    private CuBlasGemm(CuBlas blas, Accelerator acc, ArrayView<float> a, ArrayView<float> b, Storage c, ArrayView<float> cView, int m, int n, int k)
        => (_blas, _acc, _a, _b, _cStorage, _c, _m, _n, _k) = (blas, acc, a, b, c, cView, m, n, k);

    /// <summary>cuBLAS for C = a @ b with contiguous float32 a [m, k] and b [k, n] on a CUDA device.</summary>
    /// <exception cref="ArgumentException">The tensors are not on a CUDA device.</exception>
    public static CuBlasGemm Create(Tensor a, Tensor b, int m, int n, int k)
    {
        if (a.Device.Kind != DeviceKind.Cuda || a.Device.Backend is not IlgpuBackend backend || backend.Accelerator is not CudaAccelerator cuda)
            throw new ArgumentException($"bench gemm: --vs cublas needs a CUDA device (--device cuda[:i]); got --device {a.Device}. cuBLAS runs only on NVIDIA GPUs");
        if (!a.IsContiguous || !b.IsContiguous)
            throw new ArgumentException($"bench gemm: cuBLAS needs contiguous operands, got {Shape.Format(a.Shape)} and {Shape.Format(b.Shape)}");
        CuBlas blas;
        try { blas = new CuBlas(cuda); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or CuBlasException)
        {
            throw new InvalidOperationException($"bench gemm: cuBLAS could not be loaded on {a.Device} ({e.Message}); install the CUDA toolkit's libcublas", e);
        }
        blas.Stream = (CudaStream)cuda.DefaultStream; // ordered with AttnCore's launches
        blas.PointerMode = CuBlasPointerMode.Host;     // alpha and beta are host scalars
        blas.MathMode = CuBlasMathMode.DefaultMath;    // FP32 throughout, as AttnCore's kernel
        var c = backend.Allocate(DType.Float32, (long)m * n);
        var av = backend.FloatView(a.Storage).SubView(a.Layout.Offset, (long)m * k);
        var bv = backend.FloatView(b.Storage).SubView(b.Layout.Offset, (long)k * n);
        return new CuBlasGemm(blas, cuda, av, bv, c, backend.FloatView(c), m, n, k);
    }

    /// <inheritdoc/>
    public string Key => "cublas";

    /// <inheritdoc/>
    public string Label => $"cuBLAS {_blas.Version}";

    /// <inheritdoc/>
    public double[] Run(int reps)
    {
        var times = new double[reps];
        for (int i = 0; i < reps; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            _blas.Gemm(CuBlasOperation.NonTranspose, CuBlasOperation.NonTranspose, _n, _m, _k, 1f, _b, _n, _a, _k, 0f, _c, _n);
            _acc.Synchronize();
            times[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }
        return times;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _acc.Synchronize();
        _blas.Dispose();
        _cStorage.Release();
    }
}
