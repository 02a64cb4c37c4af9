using AttnCore.Kernels.Cpu;
using BenchmarkDotNet.Attributes;

namespace AttnCore.Benchmarks.Suites;

/// <summary>SGEMM on square and skinny shapes, straight on the kernel (no Tensor overhead).</summary>
[MemoryDiagnoser]
public class GemmBenchmarks
{
    private float[] _a = [], _b = [], _c = [];

    [Params("256x256x256", "1024x1024x1024", "2048x2048x2048", "1x4096x1024", "4096x64x64")]
    public string Shape { get; set; } = "";

    private int M, N, K;

    [GlobalSetup]
    public void Setup()
    {
        // Parse once here: the timed methods must allocate nothing of their own, so MemoryDiagnoser sees the kernel.
        var d = Shape.Split('x').Select(int.Parse).ToArray();
        (M, N, K) = (d[0], d[1], d[2]);
        var g = new Generator(1);
        _a = Enumerable.Range(0, M * K).Select(_ => (float)g.NextNormal()).ToArray();
        _b = Enumerable.Range(0, K * N).Select(_ => (float)g.NextNormal()).ToArray();
        _c = new float[M * N];
    }

    [Benchmark]
    public void Sgemm() => Gemm.Sgemm(false, false, M, N, K, 1f, _a, K, _b, N, 0f, _c, N);

    [Benchmark]
    public void SgemmTransposedB() => Gemm.Sgemm(false, true, M, N, K, 1f, _a, K, _b, K, 0f, _c, N);
}
