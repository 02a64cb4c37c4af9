using BenchmarkDotNet.Attributes;

namespace AttnCore.Benchmarks.Suites;

/// <summary>
/// A pre-norm block's residual add and layer norm at GPT small's activation (4096 rows of 384), as the engine runs them
/// (tensors, both threads): the add and the norm as two ops against <see cref="Tensor.AddLayerNorm"/>, and the norm's
/// input gradient plus the residual's as a backward and an add against the backward given the addend.
/// </summary>
[MemoryDiagnoser]
public class ResidualLayerNormBenchmarks
{
    private Tensor _x = null!, _residual = null!, _gamma = null!, _beta = null!, _dy = null!, _addend = null!, _sum = null!, _mean = null!, _rstd = null!;

    [Params(4096)]
    public int Rows { get; set; }

    [Params(384)]
    public int Cols { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var g = new Generator(1);
        (_x, _residual, _dy, _addend) = (Tensor.Randn([Rows, Cols], g), Tensor.Randn([Rows, Cols], g), Tensor.Randn([Rows, Cols], g), Tensor.Randn([Rows, Cols], g));
        (_gamma, _beta) = (Tensor.Randn([Cols], g), Tensor.Randn([Cols], g));
        _sum = _x + _residual;
        Tensor y;
        (y, _mean, _rstd) = _sum.LayerNormWithStats([Cols], _gamma, _beta);
        y.Dispose();
    }

    [Benchmark(Baseline = true)]
    public void AddThenLayerNorm()
    {
        using var sum = _x + _residual;
        using var y = sum.LayerNorm([Cols], _gamma, _beta);
    }

    [Benchmark]
    public void AddLayerNorm()
    {
        var (sum, y) = _x.AddLayerNorm(_residual, [Cols], _gamma, _beta);
        sum.Dispose(); y.Dispose();
    }

    [Benchmark]
    public void BackwardThenAdd()
    {
        var (dx, dw, db) = Tensor.LayerNormBackward(_dy, _sum, _gamma, _mean, _rstd, 1, true);
        using var total = dx + _addend;
        dx.Dispose(); dw?.Dispose(); db?.Dispose();
    }

    [Benchmark]
    public void BackwardWithAddend()
    {
        var (dx, dw, db) = Tensor.LayerNormBackward(_dy, _sum, _gamma, _mean, _rstd, 1, true, _addend);
        dx.Dispose(); dw?.Dispose(); db?.Dispose();
    }
}
