using AttnCore.Optim;
using NUnit.Framework;

namespace AttnCore.Tests.Autograd;

[TestFixture, Category("Autograd")]
public class OptimizerTests
{
    // A float64 reference of PyTorch's formulas, written out step by step.
    static double[] ReferenceAdam(double[] p, Func<double[], double[]> grad, int steps, double lr, double b1, double b2, double eps, double wd, bool decoupled)
    {
        p = (double[])p.Clone();
        var m = new double[p.Length]; var v = new double[p.Length];
        for (int t = 1; t <= steps; t++)
        {
            var g = grad(p);
            for (int i = 0; i < p.Length; i++)
            {
                double gi = g[i];
                if (decoupled) p[i] *= 1 - lr * wd; else gi += wd * p[i];
                m[i] = b1 * m[i] + (1 - b1) * gi;
                v[i] = b2 * v[i] + (1 - b2) * gi * gi;
                double mhat = m[i] / (1 - Math.Pow(b1, t)), vhat = v[i] / (1 - Math.Pow(b2, t));
                p[i] -= lr * mhat / (Math.Sqrt(vhat) + eps);
            }
        }
        return p;
    }

    static double[] ReferenceSgd(double[] p, Func<double[], double[]> grad, int steps, double lr, double mu, double damp, double wd, bool nesterov)
    {
        p = (double[])p.Clone();
        var buf = new double[p.Length];
        for (int t = 1; t <= steps; t++)
        {
            var g = grad(p);
            for (int i = 0; i < p.Length; i++)
            {
                double d = g[i] + wd * p[i];
                if (mu != 0) { buf[i] = t == 1 ? d : mu * buf[i] + (1 - damp) * d; d = nesterov ? d + mu * buf[i] : buf[i]; }
                p[i] -= lr * d;
            }
        }
        return p;
    }

    // loss = sum(c * p^2) / 2 + sum(p): gradient c*p + 1
    static readonly double[] C = [0.5, 2, 1, 3, 0.1];
    static double[] Grad(double[] p) => p.Select((v, i) => C[i] * v + 1).ToArray();
    static void Backprop(Tensor p)
    {
        using var c = Tensor.FromArray(C);
        using var loss = (c * p.Square() * 0.5 + p).Sum();
        loss.Backward();
    }

    [TestCase(false), TestCase(true)]
    public void Adam_and_AdamW_follow_pytorchs_formulas(bool decoupled)
    {
        var start = new double[] { 1, -2, 0.5, 3, -1 };
        using var p = Tensor.FromArray(start).RequiresGrad_();
        using Optimizer opt = decoupled ? new AdamW([p], 0.05, 0.8, 0.95, 1e-8, 0.1) : new Adam([p], 0.05, 0.8, 0.95, 1e-8, 0.1);
        for (int i = 0; i < 7; i++) { opt.ZeroGrad(); Backprop(p); opt.Step(); }
        var expected = ReferenceAdam(start, Grad, 7, 0.05, 0.8, 0.95, 1e-8, 0.1, decoupled);
        Assert.That(p.ToArray<double>(), Is.EqualTo(expected).Within(1e-12));
    }

    [TestCase(0.0, 0.0, false), TestCase(0.9, 0.0, false), TestCase(0.9, 0.0, true), TestCase(0.5, 0.3, false)]
    public void Sgd_follows_pytorchs_formulas(double momentum, double dampening, bool nesterov)
    {
        var start = new double[] { 1, -2, 0.5, 3, -1 };
        using var p = Tensor.FromArray(start).RequiresGrad_();
        using var opt = new Sgd([p], 0.1, momentum, dampening, 0.01, nesterov);
        for (int i = 0; i < 6; i++) { opt.ZeroGrad(); Backprop(p); opt.Step(); }
        Assert.That(p.ToArray<double>(), Is.EqualTo(ReferenceSgd(start, Grad, 6, 0.1, momentum, dampening, 0.01, nesterov)).Within(1e-12));
    }

    [Test]
    public void Param_groups_use_their_own_learning_rate_and_weight_decay()
    {
        using var a = Tensor.FromArray(new double[] { 1 }).RequiresGrad_();
        using var b = Tensor.FromArray(new double[] { 1 }).RequiresGrad_();
        using var opt = new Sgd([new ParamGroup([a]), new ParamGroup([b], learningRate: 0.5, weightDecay: 1)], 0.1);
        using (var l = (a + b).Sum()) l.Backward();
        opt.Step();
        Assert.That(a.Item(), Is.EqualTo(0.9).Within(1e-15));
        Assert.That(b.Item(), Is.EqualTo(0.0).Within(1e-15));   // 1 - 0.5 * (1 + 1*1)
    }

    [Test]
    public void ClipGradNorm_scales_to_the_max_norm_and_returns_the_old_norm()
    {
        using var a = Tensor.FromArray(new double[] { 3, 0 }).RequiresGrad_();
        using var b = Tensor.FromArray(new double[] { 0, 4 }).RequiresGrad_();
        using (var l = (a * a * 0.5).Sum() + (b * b * 0.5).Sum()) l.Backward();
        double norm;
        using (var n = GradClip.ClipGradNorm([a, b], 1.0)) norm = n.Item();
        Assert.That(norm, Is.EqualTo(5).Within(1e-12));
        Assert.That(a.Grad!.ToArray<double>()[0], Is.EqualTo(3 / (5 + 1e-6)).Within(1e-12));
        Assert.That(b.Grad!.ToArray<double>()[1], Is.EqualTo(4 / (5 + 1e-6)).Within(1e-12));
        using var after = GradClip.ClipGradNorm([a, b], 10);
        Assert.That(after.Item(), Is.EqualTo(1).Within(1e-5), "below the limit nothing changes");
        Assert.That(a.Grad!.ToArray<double>()[0], Is.EqualTo(3 / (5 + 1e-6)).Within(1e-12), "and the gradients are left as they were");
    }

    [Test]
    public void Schedules_match_their_closed_forms()
    {
        using var p = Tensor.FromArray(new double[] { 0 }).RequiresGrad_();
        using var opt = new AdamW([p], 1e-3);
        var cos = new WarmupCosine(opt, 100, 2000, minFactor: 0.1);
        Assert.That(opt.ParamGroups[0].LearningRate, Is.EqualTo(0).Within(1e-15), "nanoGPT starts the warmup at 0");
        cos.Step();
        Assert.That(cos.LastLearningRate, Is.EqualTo(1e-3 / 100).Within(1e-15));
        for (int i = 1; i < 100; i++) cos.Step();
        Assert.That(cos.LastLearningRate, Is.EqualTo(1e-3).Within(1e-15));
        for (int i = 0; i < 950; i++) cos.Step();
        Assert.That(cos.LastLearningRate, Is.EqualTo(1e-3 * (0.1 + 0.45 * (1 + Math.Cos(Math.PI * 950 / 1900)))).Within(1e-15));
        for (int i = 0; i < 2000; i++) cos.Step();
        Assert.That(cos.LastLearningRate, Is.EqualTo(1e-4).Within(1e-15));

        using var opt2 = new Sgd([p], 1.0);
        var inv = new InverseSqrtWarmup(opt2, 512, 4000);
        for (int i = 0; i < 3999; i++) inv.Step();
        Assert.That(inv.LastLearningRate, Is.EqualTo(Math.Pow(512, -0.5) * Math.Pow(4000, -0.5)).Within(1e-15), "peak at the end of warmup");
        using var opt3 = new Sgd([p], 0.1);
        var st = new StepDecay(opt3, 10, 0.5);
        for (int i = 0; i < 25; i++) st.Step();
        Assert.That(st.LastLearningRate, Is.EqualTo(0.025).Within(1e-15));
    }

    [Test]
    public void Saved_optimizer_and_schedule_state_resume_training_bit_for_bit()
    {
        var start = Enumerable.Range(0, 5).Select(i => (float)(i - 2) * 0.7f).ToArray();
        float[] Run(int before, int after, bool reload)
        {
            using var p = Tensor.FromArray(start).RequiresGrad_();
            var opt = new AdamW([p], 0.01);
            var sch = new WarmupCosine(opt, 3, 20);
            void Train(int n) { for (int i = 0; i < n; i++) { opt.ZeroGrad(); using (var l = (p.Square() * p + p).Sum()) l.Backward(); opt.Step(); sch.Step(); } }
            Train(before);
            if (reload)
            {
                var ms = new MemoryStream();
                using (var w = new BinaryWriter(ms, System.Text.Encoding.UTF8, leaveOpen: true)) { TensorIO.Write(w, p); opt.SaveState(w); sch.SaveState(w); }
                ms.Position = 0;
                using var r = new BinaryReader(ms);
                using var restored = TensorIO.Read(r, Device.Cpu);
                var p2 = restored.Clone().RequiresGrad_();
                var opt2 = new AdamW([p2], 0.01);
                var sch2 = new WarmupCosine(opt2, 3, 20);
                opt2.LoadState(r); sch2.LoadState(r);
                for (int i = 0; i < after; i++) { opt2.ZeroGrad(); using (var l = (p2.Square() * p2 + p2).Sum()) l.Backward(); opt2.Step(); sch2.Step(); }
                return p2.ToArray<float>();
            }
            Train(after);
            return p.ToArray<float>();
        }
        var straight = Run(10, 7, reload: false);
        var resumed = Run(10, 7, reload: true);
        Assert.That(resumed.Select(BitConverter.SingleToInt32Bits), Is.EqualTo(straight.Select(BitConverter.SingleToInt32Bits)));
    }

    [TestCase(-1L, 0.01, "negative step count")]
    [TestCase(3L, double.NaN, "learning rate NaN")]
    [TestCase(3L, -0.5, "learning rate -0.5")]
    public void A_corrupted_optimizer_state_is_refused_before_it_is_applied(long steps, double lr, string what)
    {
        using var p = Tensor.FromArray(new[] { 1f, 2f }).RequiresGrad_();
        using var opt = new AdamW([p], 0.01);
        var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            // SaveState's layout: magic, kind, step count, groups, then per group lr, initial lr, weight decay, count
            w.Write("AttnCore.Optimizer/1"); w.Write(nameof(AdamW)); w.Write(steps); w.Write(1);
            w.Write(lr); w.Write(0.01); w.Write(0.0); w.Write(1); w.Write(false);
        }
        ms.Position = 0;
        using var r = new BinaryReader(ms);
        var ex = Assert.Throws<InvalidDataException>(() => opt.LoadState(r), what);
        Assert.That(ex!.Message, Does.StartWith("AdamW.LoadState"));
        Assert.That(opt.StepCount, Is.EqualTo(0), "neither the step count nor the group settings of the bad state were applied");
        Assert.That(opt.ParamGroups[0].LearningRate, Is.EqualTo(0.01));
    }
}
