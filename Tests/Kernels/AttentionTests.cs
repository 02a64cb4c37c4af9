using AttnCore.Kernels.Cpu;
using NUnit.Framework;

namespace AttnCore.Tests.Kernels;

/// <summary>The fused attention kernels against the float64 materialised reference.</summary>
[TestFixture, Category("Kernels")]
public class AttentionTests
{
    public record Case(string Name, int B, int H, int Lq, int Lk, int D, bool Causal, bool Pad, float Dropout, bool Strided)
    {
        public override string ToString() => Name;
    }

    public static readonly Case[] Cases =
    [
        new("plain", 2, 3, 37, 37, 64, false, false, 0, false),
        new("causal", 1, 2, 70, 70, 64, true, false, 0, false),
        new("padding", 2, 2, 20, 33, 32, false, true, 0, false),
        new("causal_and_padding", 2, 1, 9, 9, 16, true, true, 0, false),
        new("cross_length_causal", 1, 2, 5, 70, 64, true, false, 0, false),
        new("dim_not_multiple_of_16", 1, 2, 19, 23, 24, false, false, 0, false),
        new("dim_1_length_1", 1, 1, 1, 1, 1, false, false, 0, false),
        new("dim_80_two_slices", 1, 1, 8, 130, 80, false, false, 0, false),
        new("dropout", 1, 2, 17, 17, 32, true, false, 0.3f, false),
        new("strided_BLHD_views", 2, 3, 21, 21, 16, true, false, 0, true),
    ];

    static float[] Rand(Generator g, int n) { var x = new float[n]; for (int i = 0; i < n; i++) x[i] = (float)g.NextNormal(); return x; }

    [TestCaseSource(nameof(Cases))]
    public void Forward_and_backward_match_the_float64_reference(Case c)
    {
        ulong seed = TestContext.CurrentContext.Random.NextULong();
        var g = new Generator(seed);
        var shape = new AttentionShape(c.B, c.H, c.Lq, c.Lk, c.D, 1f / MathF.Sqrt(c.D), c.Causal, c.Dropout, seed);
        // Strided: the tensors are [B, L, H, D] in memory and read as [B, H, L, D] views.
        AttentionOperand Op(int l) => c.Strided ? new AttentionOperand(0, (long)l * c.H * c.D, c.D, (long)c.H * c.D) : AttentionOperand.Contiguous(c.H, l, c.D);
        var qo = Op(c.Lq); var ko = Op(c.Lk); var oo = Op(c.Lq);
        var q = Rand(g, c.B * c.H * c.Lq * c.D); var k = Rand(g, c.B * c.H * c.Lk * c.D); var v = Rand(g, c.B * c.H * c.Lk * c.D);
        var dO = Rand(g, q.Length);
        var pad = c.Pad ? Enumerable.Range(0, c.B * c.Lk).Select(i => (byte)(i % c.Lk >= c.Lk - 3 - i / c.Lk ? 1 : 0)).ToArray() : [];
        var o = new float[q.Length]; var lse = new float[c.B * c.H * c.Lq];
        Attention.Forward(shape, q, qo, k, ko, v, ko, o, oo, lse, pad);

        double[] D(float[] x) => x.Select(f => (double)f).ToArray();
        var ro = new double[q.Length]; var rl = new double[lse.Length];
        AttentionReference.Forward(shape, D(q), qo, D(k), ko, D(v), ko, ro, oo, rl, pad);
        for (int i = 0; i < o.Length; i++) Assert.That(o[i], Is.EqualTo(ro[i]).Within(2e-5 + 2e-5 * Math.Abs(ro[i])), $"O[{i}] {c.Name} seed={seed}");
        for (int i = 0; i < lse.Length; i++)
            if (double.IsNegativeInfinity(rl[i])) Assert.That(lse[i], Is.EqualTo(float.NegativeInfinity));
            else Assert.That(lse[i], Is.EqualTo(rl[i]).Within(2e-5 * (1 + Math.Abs(rl[i]))), $"lse[{i}] {c.Name} seed={seed}");

        var dq = new float[q.Length]; var dk = new float[k.Length]; var dv = new float[v.Length];
        Attention.Backward(shape, q, qo, k, ko, v, ko, o, oo, dO, oo, lse, pad, dq, qo, dk, ko, dv, ko);
        var rdq = new double[q.Length]; var rdk = new double[k.Length]; var rdv = new double[v.Length];
        AttentionReference.Backward(shape, D(q), qo, D(k), ko, D(v), ko, D(dO), oo, pad, rdq, qo, rdk, ko, rdv, ko);
        void Same(float[] got, double[] want, string name)
        {
            double scale = want.Select(Math.Abs).DefaultIfEmpty(0).Max();
            for (int i = 0; i < got.Length; i++) Assert.That(got[i], Is.EqualTo(want[i]).Within(1e-4 * (1 + scale)), $"{name}[{i}] {c.Name} seed={seed}");
        }
        Same(dq, rdq, "dQ"); Same(dk, rdk, "dK"); Same(dv, rdv, "dV");
    }

    [Test]
    public void Fully_masked_rows_give_zero_output_not_nan()
    {
        var shape = new AttentionShape(1, 1, 2, 3, 4, 0.5f, false);
        var q = new float[8]; var k = new float[12]; var v = Enumerable.Range(0, 12).Select(i => (float)i).ToArray();
        var o = new float[8]; var lse = new float[2];
        Attention.Forward(shape, q, AttentionOperand.Contiguous(1, 2, 4), k, AttentionOperand.Contiguous(1, 3, 4), v, AttentionOperand.Contiguous(1, 3, 4),
            o, AttentionOperand.Contiguous(1, 2, 4), lse, new byte[] { 1, 1, 1 });
        Assert.That(o, Is.All.EqualTo(0f));
        Assert.That(lse, Is.All.EqualTo(float.NegativeInfinity));
    }

    [Test]
    public void Bad_shapes_are_reported_with_the_sizes()
    {
        var shape = new AttentionShape(1, 1, 4, 4, 8, 1, false);
        var ex = Assert.Throws<ArgumentException>(() => Attention.Forward(shape, new float[10], AttentionOperand.Contiguous(1, 4, 8), new float[32], AttentionOperand.Contiguous(1, 4, 8),
            new float[32], AttentionOperand.Contiguous(1, 4, 8), new float[32], AttentionOperand.Contiguous(1, 4, 8), new float[4], []));
        Assert.That(ex!.Message, Does.Contain("Attention.Forward").And.Contain("q (10 elements"));
    }
}
