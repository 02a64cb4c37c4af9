using AttnCore.Models.Nn;
using AttnCore.Models.Reinforcement;
using NUnit.Framework;

namespace AttnCore.Tests.Models.Reinforcement;

[TestFixture, Category("Models")]
public class GaeTests
{
    // Independent reference: δ_t first, then each advantage as the forward sum Σ_l (γλ)^l δ_{t+l} inside the episode,
    // stopping after the step that ended it or at the end of the rollout.
    static double[] Reference(int steps, int envs, double[] r, double[] v, bool[] term, bool[] trunc, double[] finalV, double[] nextV, double g, double l)
    {
        var delta = new double[steps * envs];
        for (int t = 0; t < steps; t++)
            for (int i = 0; i < envs; i++)
            {
                int k = t * envs + i;
                double next = term[k] ? 0.0 : trunc[k] ? finalV[k] : (t + 1 < steps ? v[k + envs] : nextV[i]);
                delta[k] = r[k] + g * next - v[k];
            }
        var adv = new double[steps * envs];
        for (int i = 0; i < envs; i++)
            for (int t = 0; t < steps; t++)
            {
                double sum = 0, w = 1;
                for (int u = t; u < steps; u++)
                {
                    int k = u * envs + i;
                    sum += w * delta[k];
                    if (term[k] || trunc[k]) break;
                    w *= g * l;
                }
                adv[t * envs + i] = sum;
            }
        return adv;
    }

    /// <summary>
    /// A hand-made rollout of 3 environments over 6 steps: environment 0 terminates at step 2, environment 1 is truncated
    /// at step 3 (bootstrapped from V(final) = 5) and environment 2 runs on past the rollout's end (bootstrapped from
    /// the next value). Checked against the forward-sum reference and, for the first values, against numbers worked out by hand.
    /// </summary>
    [Test]
    public void Gae_matches_the_forward_sum_reference_with_termination_and_truncation()
    {
        const int T = 6, N = 3;
        double[] r = [1, 0, 2, 1, 1, 0.5, 1, -1, 0, 1, 2, 1, 0.5, 0.5, 1, 1, 1, 1];
        double[] v = [0.5, 1, 2, 0.4, 1.5, 2.2, 0.3, 1.2, 1.9, 0.9, 0.8, 2.1, 0.7, 0.6, 2.0, 0.1, 0.2, 2.4];
        var term = new bool[T * N]; var trunc = new bool[T * N]; var finalV = new double[T * N];
        term[2 * N + 0] = true;
        trunc[3 * N + 1] = true; finalV[3 * N + 1] = 5.0;
        double[] nextV = [0.3, 0.4, 3.0];
        var adv = new double[T * N]; var ret = new double[T * N];
        Gae.Compute(T, N, r, v, term, trunc, finalV, nextV, 0.99, 0.95, adv, ret);
        Assert.That(adv, Is.EqualTo(Reference(T, N, r, v, term, trunc, finalV, nextV, 0.99, 0.95)).Within(1e-12));
        for (int k = 0; k < T * N; k++) Assert.That(ret[k], Is.EqualTo(adv[k] + v[k]).Within(1e-12));
        // By hand (index t·N + i): env 0 terminated at step 2 (k = 6, r = 1, V = 0.3): A = r − V, nothing after it
        Assert.That(adv[6], Is.EqualTo(1 - 0.3).Within(1e-12));
        // env 1 truncated at step 3 (k = 10, r = 2, V = 0.8): A = r + γ·V(final) − V
        Assert.That(adv[10], Is.EqualTo(2 + 0.99 * 5.0 - 0.8).Within(1e-12));
        // env 2 at the last step (k = 17, r = 1, V = 2.4): A = r + γ·V(next) − V
        Assert.That(adv[17], Is.EqualTo(1 + 0.99 * 3.0 - 2.4).Within(1e-12));
    }

    [Test]
    public void Gae_on_random_rollouts_matches_the_reference()
    {
        var g = new Generator(3);
        for (int trial = 0; trial < 20; trial++)
        {
            int T = 1 + (int)g.NextInt64(0, 20), N = 1 + (int)g.NextInt64(0, 5);
            int n = T * N;
            double[] Rand() => Enumerable.Range(0, n).Select(_ => g.NextNormal()).ToArray();
            var r = Rand(); var v = Rand(); var fv = Rand();
            var term = Enumerable.Range(0, n).Select(_ => g.NextDouble() < 0.1).ToArray();
            var trunc = Enumerable.Range(0, n).Select(_ => g.NextDouble() < 0.1).ToArray();
            var next = Enumerable.Range(0, N).Select(_ => g.NextNormal()).ToArray();
            var adv = new double[n]; var ret = new double[n];
            Gae.Compute(T, N, r, v, term, trunc, fv, next, 0.97, 0.9, adv, ret);
            Assert.That(adv, Is.EqualTo(Reference(T, N, r, v, term, trunc, fv, next, 0.97, 0.9)).Within(1e-10), $"trial {trial}");
        }
    }

    [Test]
    public void Gae_refuses_arrays_of_the_wrong_length_naming_them()
    {
        var e = Assert.Throws<ArgumentException>(() => Gae.Compute(2, 2, new double[4], new double[3], new bool[4], new bool[4], new double[4], new double[2], 0.99, 0.95, new double[4], new double[4]))!;
        Assert.That(e.Message, Does.Contain("values 3").And.Contain("2 × 2 = 4"));
    }
}

[TestFixture, Category("Models")]
public class PpoLossTests
{
    // float64 reference of CleanRL's minibatch loss: (total, policy, value, entropy).
    static (double Loss, double Pg, double V, double H) Reference(double[,] logits, int[] a, double[] oldLp, double[] adv, double[] ret, double[] oldV, double[] newV, PpoCoefficients c)
    {
        int b = a.Length, na = logits.GetLength(1);
        double mean = adv.Average(), var = adv.Sum(x => (x - mean) * (x - mean)) / (b - 1);
        double pg = 0, vl = 0, h = 0;
        for (int i = 0; i < b; i++)
        {
            double max = double.NegativeInfinity;
            for (int j = 0; j < na; j++) max = Math.Max(max, logits[i, j]);
            double z = 0;
            for (int j = 0; j < na; j++) z += Math.Exp(logits[i, j] - max);
            double Lp(int j) => logits[i, j] - max - Math.Log(z);
            for (int j = 0; j < na; j++) h -= Math.Exp(Lp(j)) * Lp(j);
            double A = c.NormalizeAdvantages ? (adv[i] - mean) / (Math.Sqrt(var) + 1e-8) : adv[i];
            double ratio = Math.Exp(Lp(a[i]) - oldLp[i]);
            pg += Math.Max(-A * ratio, -A * Math.Clamp(ratio, 1 - c.ClipCoefficient, 1 + c.ClipCoefficient));
            double e1 = (newV[i] - ret[i]) * (newV[i] - ret[i]);
            double vc = oldV[i] + Math.Clamp(newV[i] - oldV[i], -c.ClipCoefficient, c.ClipCoefficient);
            vl += c.ClipValueLoss ? Math.Max(e1, (vc - ret[i]) * (vc - ret[i])) : e1;
        }
        pg /= b; vl = 0.5 * vl / b; h /= b;
        return (pg - c.EntropyCoefficient * h + c.ValueCoefficient * vl, pg, vl, h);
    }

    static (double[,] Logits, int[] A, double[] OldLp, double[] Adv, double[] Ret, double[] OldV, double[] NewV) Batch(int b, int na, ulong seed)
    {
        var g = new Generator(seed);
        var logits = new double[b, na];
        for (int i = 0; i < b; i++) for (int j = 0; j < na; j++) logits[i, j] = g.NextNormal();
        var a = Enumerable.Range(0, b).Select(_ => (int)g.NextInt64(0, na)).ToArray();
        // old log-probs near the new ones, so that some ratios fall inside and some outside the clip range
        var oldLp = new double[b];
        for (int i = 0; i < b; i++)
        {
            double z = 0;
            for (int j = 0; j < na; j++) z += Math.Exp(logits[i, j]);
            oldLp[i] = logits[i, a[i]] - Math.Log(z) + 0.4 * g.NextNormal();
        }
        double[] R(double s) => Enumerable.Range(0, b).Select(_ => s * g.NextNormal()).ToArray();
        var oldV = R(1);
        var newV = oldV.Select(x => x + 0.4 * g.NextNormal()).ToArray();
        return (logits, a, oldLp, R(2), R(1.5), oldV, newV);
    }

    static Tensor T2(double[,] x, DType d) { var f = new double[x.Length]; Buffer.BlockCopy(x, 0, f, 0, f.Length * 8); using var t = Tensor.FromArray(f, [x.GetLength(0), x.GetLength(1)]); return t.To(d); }
    static Tensor T1(double[] x, DType d) { using var t = Tensor.FromArray(x); return t.To(d); }

    [TestCase(true, true)]
    [TestCase(false, false)]
    public void Loss_terms_match_the_float64_reference(bool normalize, bool clipValue)
    {
        var c = new PpoCoefficients(NormalizeAdvantages: normalize, ClipValueLoss: clipValue);
        var (logits, a, oldLp, adv, ret, oldV, newV) = Batch(64, 3, 11);
        var want = Reference(logits, a, oldLp, adv, ret, oldV, newV, c);
        using var scope = new TensorScope();
        var d = DType.Float32;
        var terms = PpoLoss.Compute(T2(logits, d), T1(newV, d), Tensor.FromArray(a.Select(x => (long)x).ToArray()), T1(oldLp, d), T1(adv, d), T1(ret, d), T1(oldV, d), c);
        Assert.That(terms.Loss.Item(), Is.EqualTo(want.Loss).Within(2e-5 + 1e-5 * Math.Abs(want.Loss)));
        Assert.That(terms.PolicyLoss.Item(), Is.EqualTo(want.Pg).Within(2e-5));
        Assert.That(terms.ValueLoss.Item(), Is.EqualTo(want.V).Within(2e-5 * (1 + want.V)));
        Assert.That(terms.Entropy.Item(), Is.EqualTo(want.H).Within(1e-5));
        Assert.That(terms.ClipFraction.Item(), Is.InRange(0.05, 0.95), "the batch exercises both sides of the clip");
    }

    /// <summary>The gradient of the loss with respect to the logits and the values, against central differences in float64.</summary>
    [Test]
    public void Loss_gradient_matches_finite_differences()
    {
        var c = new PpoCoefficients();
        var (logits, a, oldLp, adv, ret, oldV, newV) = Batch(16, 4, 12);
        var d = DType.Float64;
        var lg = T2(logits, d).RequiresGrad_(); var nv = T1(newV, d).RequiresGrad_();
        var actions = Tensor.FromArray(a.Select(x => (long)x).ToArray());
        var olp = T1(oldLp, d); var ad = T1(adv, d); var rt = T1(ret, d); var ov = T1(oldV, d);
        GradCheck.Assert(x => PpoLoss.Compute(x[0], x[1], actions, olp, ad, rt, ov, c).Loss, [lg, nv], name: "PpoLoss");
    }

    [Test]
    public void Categorical_sampling_follows_the_probabilities()
    {
        float[] lp = [MathF.Log(0.2f), MathF.Log(0.5f), MathF.Log(0.3f)];
        var g = new Generator(5);
        var counts = new int[3];
        const int n = 40000;
        for (int i = 0; i < n; i++) counts[Categorical.Sample(lp, g)]++;
        // 5 standard deviations of a binomial count
        Assert.That(counts[0], Is.EqualTo(0.2 * n).Within(5 * Math.Sqrt(n * 0.2 * 0.8)));
        Assert.That(counts[1], Is.EqualTo(0.5 * n).Within(5 * Math.Sqrt(n * 0.5 * 0.5)));
        Assert.That(Categorical.Mode(lp), Is.EqualTo(1));
    }

    [Test]
    public void Mismatched_shapes_are_refused_with_the_shapes_named()
    {
        using var logits = Tensor.Zeros([4, 2]);
        using var v4 = Tensor.Zeros([4]); using var v3 = Tensor.Zeros([3]);
        using var act = Tensor.FromArray(new long[] { 0, 1, 0, 1 });
        var e = Assert.Throws<ArgumentException>(() => PpoLoss.Compute(logits, v4, act, v4, v3, v4, v4, new PpoCoefficients()))!;
        Assert.That(e.Message, Does.Contain("advantages").And.Contain("[3]").And.Contain("[4]"));
    }
}

[TestFixture, Category("Models")]
public class OrthogonalInitTests
{
    [TestCase(64, 4)]
    [TestCase(4, 64)]
    [TestCase(64, 64)]
    [TestCase(1, 64)]
    [TestCase(2, 1)]
    public void Orthogonal_matrix_has_orthonormal_rows_or_columns_times_the_gain(int rows, int cols)
    {
        double gain = Math.Sqrt(2);
        var w = OrthogonalInit.Matrix(rows, cols, gain, new Generator(7));
        // W Wᵀ = gain²·I for rows ≤ cols, Wᵀ W = gain²·I otherwise
        bool wide = rows <= cols;
        int n = wide ? rows : cols, m = wide ? cols : rows;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                double dot = 0;
                for (int k = 0; k < m; k++) dot += wide ? w[i * cols + k] * w[j * cols + k] : w[k * cols + i] * w[k * cols + j];
                Assert.That(dot, Is.EqualTo(i == j ? gain * gain : 0).Within(1e-12), $"{rows}x{cols} ({i},{j})");
            }
    }

    [Test]
    public void Apply_sets_a_linear_layer_orthogonal_with_zero_bias()
    {
        var g = new Generator(1);
        using var layer = new Linear(4, 64, true, g);
        OrthogonalInit.Apply(layer, 1.0, g, bias: 0);
        using var w = layer.Weight.Detach();
        using var wt = w.T;
        using var gram = wt.MatMul(w);   // [4, 4] = Wᵀ W
        using var eye = Tensor.Eye(4);
        using var diff = (gram - eye).Abs().Max();
        Assert.That(diff.Item(), Is.LessThan(1e-5));
        Assert.That(layer.Bias!.ToArray<float>(), Is.All.EqualTo(0f));
    }
}
