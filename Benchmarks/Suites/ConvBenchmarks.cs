using AttnCore.Kernels;
using AttnCore.Kernels.Cpu;
using BenchmarkDotNet.Attributes;

namespace AttnCore.Benchmarks.Suites;

/// <summary>A ResNet-style 3x3 convolution (N=8, 64 -> 64 channels, 32x32), forward and both backward passes.</summary>
[MemoryDiagnoser]
public class ConvBenchmarks
{
    private readonly Conv2dShape _s = new(8, 64, 32, 32, 64, 3, 3, 1, 1, 1, 1);
    private float[] _x = [], _w = [], _b = [], _y = [], _dx = [], _dw = [], _db = [];

    [GlobalSetup]
    public void Setup()
    {
        var g = new Generator(1);
        float[] R(int n) => Enumerable.Range(0, n).Select(_ => (float)g.NextNormal()).ToArray();
        _x = R(_s.N * _s.C * _s.H * _s.W); _w = R(_s.K * _s.C * 9); _b = R(_s.K);
        _y = new float[_s.N * _s.K * _s.P * _s.Q]; _dx = new float[_x.Length]; _dw = new float[_w.Length]; _db = new float[_s.K];
    }

    [Benchmark] public void Forward() => Conv2d.Forward<float>(_x, _w, _b, _y, _s);
    [Benchmark] public void BackwardData() => Conv2d.BackwardData<float>(_y, _w, _dx, _s);
    [Benchmark] public void BackwardWeights() => Conv2d.BackwardWeights<float>(_y, _x, _dw, _db, _s);
}
