using BenchmarkDotNet.Attributes;

namespace AttnCore.Benchmarks.Suites;

/// <summary>
/// A Linear layer's forward with a bias: Tensor.Linear (one GEMM adding the bias as it writes C) against the
/// product followed by a broadcast add (a second pass over C and a temporary), at a Transformer's shapes.
/// </summary>
[MemoryDiagnoser]
public class LinearBenchmarks
{
    private Tensor _x = null!, _w = null!, _b = null!;

    // rows x in x out: a GPT-small MLP's expansion and projection (4096 tokens), and a decoder-sized block.
    [Params("4096x384x1536", "4096x1536x384", "512x256x256")]
    public string Shape { get; set; } = "";

    [GlobalSetup]
    public void Setup()
    {
        var d = Shape.Split('x').Select(int.Parse).ToArray();
        var g = new Generator(1);
        _x = Tensor.Randn([d[0], d[1]], g);
        _w = Tensor.Randn([d[2], d[1]], g);
        _b = Tensor.Randn([d[2]], g);
    }

    [GlobalCleanup]
    public void Cleanup() { _x.Dispose(); _w.Dispose(); _b.Dispose(); }

    [Benchmark(Baseline = true)]
    public void MatMulThenAdd()
    {
        using var wt = _w.T;
        using var p = _x.MatMul(wt);
        using var y = p + _b;
    }

    [Benchmark]
    public void FusedLinear()
    {
        using var y = Tensor.Linear(_x, _w, _b);
    }
}
