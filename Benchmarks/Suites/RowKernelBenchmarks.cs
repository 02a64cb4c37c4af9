using AttnCore.Kernels.Cpu;
using BenchmarkDotNet.Attributes;

namespace AttnCore.Benchmarks.Suites;

/// <summary>Softmax, layer norm and cross-entropy kernels on spans (MemoryDiagnoser shows no per-call allocation).</summary>
[MemoryDiagnoser]
public class RowKernelBenchmarks
{
    private float[] _x = [], _y = [], _gamma = [], _beta = [], _mean = [], _rstd = [], _lse = [], _rowScale = [];
    private long[] _targets = [];

    [Params(1024, 4096)]
    public int Rows { get; set; }

    [Params(1024)]
    public int Cols { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var g = new Generator(1);
        _x = Enumerable.Range(0, Rows * Cols).Select(_ => (float)g.NextNormal()).ToArray();
        _y = new float[_x.Length];
        _gamma = Enumerable.Repeat(1f, Cols).ToArray(); _beta = new float[Cols];
        _mean = new float[Rows]; _rstd = new float[Rows]; _lse = new float[Rows]; _rowScale = new float[Rows];
        _targets = Enumerable.Range(0, Rows).Select(i => (long)(i % Cols)).ToArray();
    }

    [Benchmark] public void Softmax() => AttnCore.Kernels.Cpu.Softmax.Forward(_x, _y, Rows, Cols);
    [Benchmark] public void LogSoftmax() => AttnCore.Kernels.Cpu.Softmax.LogSoftmaxForward(_x, _y, Rows, Cols);
    [Benchmark] public void LayerNormForward() => LayerNorm.Forward(_x, _gamma, _beta, _y, _mean, _rstd, Rows, Cols, 1e-5f);
    [Benchmark] public double CrossEntropyForward() =>
        CrossEntropy.Forward<float>(_x, _targets, default, default, _lse, _rowScale, default, new CrossEntropyProblem(Rows, Cols, 1, false, -100, 0.1), out _);
}
