using AttnCore.Kernels;
using AttnCore.Kernels.Cpu;
using BenchmarkDotNet.Attributes;

namespace AttnCore.Benchmarks.Suites;

/// <summary>The fused attention kernels at B=1, H=8, D=64.</summary>
[MemoryDiagnoser]
public class AttentionBenchmarks
{
    private float[] _q = [], _k = [], _v = [], _o = [], _lse = [], _dq = [], _dk = [], _dv = [];
    private AttentionOperand _op;

    [Params(256, 1024)]
    public int L { get; set; }

    [Params(false, true)]
    public bool Causal { get; set; }

    private AttentionShape Shape => new(1, 8, L, L, 64, 0.125f, Causal);

    [GlobalSetup]
    public void Setup()
    {
        var g = new Generator(1);
        int n = 8 * L * 64;
        float[] R() => Enumerable.Range(0, n).Select(_ => (float)g.NextNormal()).ToArray();
        _q = R(); _k = R(); _v = R(); _o = new float[n]; _lse = new float[8 * L];
        _dq = new float[n]; _dk = new float[n]; _dv = new float[n];
        _op = AttentionOperand.Contiguous(8, L, 64);
        Attention.Forward(Shape, _q, _op, _k, _op, _v, _op, _o, _op, _lse, []);
    }

    [Benchmark] public void Forward() => Attention.Forward(Shape, _q, _op, _k, _op, _v, _op, _o, _op, _lse, []);
    [Benchmark] public void Backward() => Attention.Backward(Shape, _q, _op, _k, _op, _v, _op, _o, _op, _o, _op, _lse, [], default, _dq, _op, _dk, _op, _dv, _op);
}
