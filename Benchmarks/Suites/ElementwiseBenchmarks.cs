using BenchmarkDotNet.Attributes;

namespace AttnCore.Benchmarks.Suites;

/// <summary>Element-wise and reduction ops through the Engine: contiguous, broadcast and strided operands.</summary>
[MemoryDiagnoser]
public class ElementwiseBenchmarks
{
    private Tensor _x = null!, _y = null!, _row = null!, _xt = null!, _yt = null!;

    [Params(1 << 20)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _x = Tensor.Randn([Size / 1024, 1024], 1);
        _y = Tensor.Randn([Size / 1024, 1024], 2);
        _row = Tensor.Randn([1024], 3);
        _xt = _x.T;
        _yt = _y.T;
    }

    [Benchmark] public void AddContiguous() { using var r = _x + _y; }
    [Benchmark] public void AddBroadcastRow() { using var r = _x + _row; }
    [Benchmark] public void AddTransposed() { using var r = _xt + _yt; }
    [Benchmark] public void Gelu() { using var r = _x.Gelu(); }
    [Benchmark] public void SumLastDim() { using var r = _x.Sum(-1); }
    [Benchmark] public void SumFirstDim() { using var r = _x.Sum(0); }
}
