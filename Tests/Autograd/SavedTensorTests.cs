using AttnCore.Memory;
using AttnCore.Kernels;
using NUnit.Framework;

namespace AttnCore.Tests.Autograd;

/// <summary>
/// What the graph keeps for backward: each op saves exactly what its rule reads (GradNode.SavesOf plus the
/// extras its call site passes), so graphs through ops that save nothing can be walked again, as in PyTorch,
/// and tensors no rule needs are freed with the forward temporaries.
/// </summary>
[TestFixture, Category("Autograd"), NonParallelizable]
public class SavedTensorTests
{
    [Test]
    public void Backward_twice_through_ops_that_save_nothing_accumulates_as_PyTorch_does()
    {
        // torch: x = tensor([1., 2.], requires_grad=True); y = (x * 3).sum(); y.backward(); y.backward() -> x.grad = [6, 6]
        using var x = Tensor.FromArray(new double[] { 1, 2 }).RequiresGrad_();
        using var scaled = (x * 3.0).Sum();
        scaled.Backward();
        scaled.Backward();
        Assert.That(x.Grad!.ToArray<double>(), Is.EqualTo(new double[] { 6, 6 }));

        // (x + x).sum() twice: 2 per walk
        new[] { x }.ZeroGrad();
        using var doubled = (x + x).Sum();
        doubled.Backward();
        doubled.Backward();
        Assert.That(x.Grad!.ToArray<double>(), Is.EqualTo(new double[] { 4, 4 }));

        // Views, Cat, Sub, Neg, AddScalar and Expand save nothing either: (-(cat(x, x)[1:3] - 1)).expand(2, 2).sum()
        new[] { x }.ZeroGrad();
        using var viewed = (-(Tensor.Cat([x, x], 0).Narrow(0, 1, 2) + 1.0)).Reshape(1, 2).Expand(2, 2).Sum();
        viewed.Backward();
        viewed.Backward();
        // d/dx: cat(x, x)[1:3] = [x1, x0], each expanded twice with sign -1, two walks: -4 each
        Assert.That(x.Grad!.ToArray<double>(), Is.EqualTo(new double[] { -4, -4 }));
    }

    [Test]
    public void A_second_Backward_through_a_freed_op_names_it_and_suggests_retainGraph()
    {
        using var x = Tensor.FromArray(new double[] { 0.5, 2 }).RequiresGrad_();
        using var loss = (x.Log() * 2.0).Sum();
        loss.Backward();
        var ex = Assert.Throws<InvalidOperationException>(() => loss.Backward());
        Assert.That(ex!.Message, Does.Contain("Backward of Log").And.Contain("freed").And.Contain("retainGraph: true"));
        // The first walk's gradient stays what it was: d/dx 2 ln x = 2 / x
        Assert.That(x.Grad!.ToArray<double>(), Is.EqualTo(new double[] { 4, 1 }).Within(1e-12));
    }

    [Test]
    public void RetainGraph_walks_a_graph_with_saved_tensors_again_and_accumulates()
    {
        // loss = sum(x * sigmoid(x) + exp(x) / x): Mul, Sigmoid, Exp, Div all save tensors
        double[] v = { 0.7, -1.3 };
        using var x = Tensor.FromArray(v).RequiresGrad_();
        using var loss = (x * x.Sigmoid() + x.Exp() / x).Sum();
        loss.Backward(retainGraph: true);
        loss.Backward(retainGraph: true);
        loss.Backward();
        for (int i = 0; i < v.Length; i++)
        {
            double s = 1 / (1 + Math.Exp(-v[i]));
            double d = s + v[i] * s * (1 - s) + Math.Exp(v[i]) * (v[i] - 1) / (v[i] * v[i]);
            Assert.That(x.Grad!.ToArray<double>()[i], Is.EqualTo(3 * d).Within(1e-12));
        }
        Assert.Throws<InvalidOperationException>(() => loss.Backward());
    }

    [Test]
    public void Version_checks_apply_to_what_is_saved_and_only_to_that()
    {
        // Mul saves both inputs: overwriting one is reported
        using var a = Tensor.FromArray(new double[] { 1, 2 }).RequiresGrad_();
        using var b = Tensor.FromArray(new double[] { 3, 4 });
        using var product = (a * b).Sum();
        b.Fill_(0);
        var ex = Assert.Throws<InvalidOperationException>(() => product.Backward());
        Assert.That(ex!.Message, Does.Contain("Backward of Mul").And.Contain("modified in place"));

        // MulScalar saves nothing: as in PyTorch, overwriting its input afterwards is harmless
        using var c = Tensor.FromArray(new double[] { 1, 2 }).RequiresGrad_();
        using var h = c * 1.0;                  // a non-leaf to write into
        using var scaled = (h * 5.0).Sum();
        using (new NoGrad()) h.Fill_(7);
        scaled.Backward();
        Assert.That(c.Grad!.ToArray<double>(), Is.EqualTo(new double[] { 5, 5 }));
    }

    [Test]
    public void Inputs_no_rule_needs_are_freed_with_the_forward_temporaries()
    {
        var gen = new Generator(3);
        using var x = Tensor.Randn([64, 32], gen);
        using var w = Tensor.Randn([32, 64], gen).RequiresGrad_();
        Storage hidden, logged;
        Tensor loss;
        long inUseBefore = CpuMemoryPool.BytesInUse;
        using (var scope = new TensorScope())
        {
            // h feeds MulScalar, Exp (saves its output), Tanh (output), Add, Sum, and a dropout-style Mul by a constant
            // mask (which saves the mask only: h is needed only for the mask's gradient): none of them needs h itself.
            using var mask = Tensor.FromArray(Enumerable.Range(0, 64).Select(i => i % 3 == 0 ? 0f : 1.5f).ToArray());
            var h = x.MatMul(w);
            hidden = h.Storage;
            // g feeds Log, whose rule needs its input: g must stay alive until Backward
            var g = (h * 0.01).Square() + 1.0;
            logged = g.Storage;
            loss = scope.Keep(((h * 2.0).Exp() * 1e-3 + h.Tanh() + h * mask).Sum() + g.Log().Sum());
        }
        Assert.That(hidden.IsFreed, Is.True, "h is read by no rule, so the scope's Dispose freed it");
        Assert.That(logged.IsFreed, Is.False, "Log saved g for its gradient");
        loss.Backward();
        Assert.That(logged.IsFreed, Is.True, "released once Log's rule ran");
        loss.Dispose();
        w.Grad!.Dispose(); w.Grad = null;
        Assert.That(CpuMemoryPool.BytesInUse, Is.EqualTo(inUseBefore), "every buffer of the step went back to the pool");
    }

    [Test]
    public void Every_rule_reads_exactly_what_its_op_saves()
    {
        // Every GradCheck case plus cases for the kinds the catalogue reaches only without gradients.
        var cases = GradCheckTests.Cases.Concat(GradCheckTests.CatalogueCases).Concat(GradCheckTests.BinaryCatalogueCases)
            .Select(c => (c.Name, c.Shapes, c.F)).Concat(
        [
            ("ToDType", new[] { new[] { 3 } }, (Func<Tensor[], Tensor>)(x => x[0].To(DType.Float32).To(DType.Float64))),
            ("ClampMaxOnly", new[] { new[] { 4 } }, x => x[0].Clamp(max: 0.1)),
            ("MatMulOneSideFrozen", new[] { new[] { 2, 3 } }, x => Tensor.Ones([4, 2], DType.Float64).MatMul(x[0])),
            ("MatMulOtherSideFrozen", new[] { new[] { 4, 2 } }, x => x[0].MatMul(Tensor.Ones([2, 3], DType.Float64))),
            ("MulByConstantMask", new[] { new[] { 2, 3 } }, x => x[0] * Tensor.FromArray(new double[] { 0, 2, 2 })),
            ("Attention", new[] { new[] { 1, 2, 5, 8 }, new[] { 1, 2, 5, 8 }, new[] { 1, 2, 5, 8 } }, x => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], causal: true)),
            ("AttentionMasked", new[] { new[] { 1, 2, 5, 8 }, new[] { 1, 2, 6, 8 }, new[] { 1, 2, 6, 8 } },
                x => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], mask: Tensor.Randn([5, 6], new Generator(3), DType.Float64))),
            ("PackedAttention", new[] { new[] { 1, 5, 24 } }, x => Tensor.PackedSelfAttention(x[0], heads: 1, causal: true)),
            // vision-models: a learned score bias (OpKind.AttentionBias)
            ("AttentionBias", new[] { new[] { 1, 2, 5, 8 }, new[] { 1, 2, 6, 8 }, new[] { 1, 2, 6, 8 }, new[] { 2, 5, 6 } },
                x => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], mask: x[3], causal: true)),
            ("CrossEntropy", new[] { new[] { 4, 5 } }, x => x[0].CrossEntropy(Tensor.FromArray(new long[] { 0, 4, 2, 1 }))),
            ("CrossEntropyWeighted", new[] { new[] { 4, 5 } },
                x => x[0].CrossEntropy(Tensor.FromArray(new long[] { 0, 4, 2, 1 }), labelSmoothing: 0.1, weight: Tensor.FromArray(new double[] { 1, 2, 0.5, 1, 3 }))),
            ("CrossEntropyProbabilities", new[] { new[] { 4, 5 }, new[] { 4, 5 } }, x => x[0].CrossEntropy(x[1], reduction: Reduction.Sum)),
            // recommend: both inputs differentiable, with and without a weight
            ("BinaryCrossEntropyWithLogits", new[] { new[] { 2, 3 }, new[] { 2, 3 } }, x => x[0].BinaryCrossEntropyWithLogits(x[1])),
            ("BinaryCrossEntropyWithLogitsWeighted", new[] { new[] { 3 }, new[] { 3 } },
                x => x[0].BinaryCrossEntropyWithLogits(x[1], Tensor.FromArray(new double[] { 1, 0, 2 }), Reduction.None)),
            // bnrelu: the fused BatchNorm2d + ReLU (saves x and its output), weight only
            ("BatchNorm2dReluWeightOnly", new[] { new[] { 2, 2, 3, 2 }, new[] { 2 } }, x => x[0].BatchNorm2dRelu(null, null, x[1], null, training: true)),
        ]).ToArray();
        var seen = new HashSet<string>();
        var problems = new List<string>();
        foreach (var (name, shapes, f) in cases)
        {
            using var scope = new TensorScope();
            var gen = new Generator(5);
            // positive inputs keep Log/Sqrt/Pow in their domain; every case's rule only needs values, not a domain
            var inputs = shapes.Select(s => (Tensor.Rand(s, gen, DType.Float64) + 0.5).RequiresGrad_()).ToArray();
            var y = f(inputs);
            var nodes = GraphNodes(y);
            using var r = Tensor.Ones(y.Shape, DType.Float64);
            try { (y * r).Sum().Backward(); }
            catch (Exception e) { problems.Add($"{name}: Backward threw {e.Message}"); continue; }
            foreach (var n in nodes)
            {
                if (n.Kind == OpKind.Custom) continue;
                seen.Add(n.Kind is OpKind.Unary or OpKind.Binary ? $"{n.Kind}.{n.Name}" : n.Kind.ToString());
                for (int i = 0; i < n.Saved.SavedCount; i++)
                    if (!n.Saved.WasRead(i)) problems.Add($"{name}: {n.Name} saved tensor {i} (declared {n.Saves}, {n.Saved.SavedCount} in all) but its rule never read it");
                if (!n.Saved.IsReleased && n.Saved.SavedCount > 0) problems.Add($"{name}: {n.Name} kept its saved tensors after Backward");
            }
        }
        // Every OpKind, and under Unary and Binary every differentiable element-wise op of the catalogue.
        var expected = Enum.GetValues<OpKind>().Where(k => k is not (OpKind.Custom or OpKind.Unary or OpKind.Binary)).Select(k => k.ToString())
            .Concat(ElementwiseCatalogue.Unary.Where(e => e.Differentiable).Select(e => $"Unary.{e.Name}"))
            .Concat(ElementwiseCatalogue.Binary.Where(e => e.Differentiable).Select(e => $"Binary.{e.Name}"));
        var unseen = expected.Where(k => !seen.Contains(k)).ToArray();
        Assert.Multiple(() =>
        {
            Assert.That(problems, Is.Empty);
            Assert.That(unseen, Is.Empty, "every OpKind and element-wise op is exercised");
        });
    }

    [Test]
    public void A_rule_that_reads_what_its_op_did_not_save_gets_a_clear_error()
    {
        using var x = Tensor.FromArray(new double[] { 1, 2 }).RequiresGrad_();
        using var y = x + x;                       // Add saves nothing
        var ex = Assert.Throws<InvalidOperationException>(() => _ = y.GradFn!.SavedInput(0));
        Assert.That(ex!.Message, Does.Contain("Add").And.Contain("Input0").And.Contain("GradNode.SavesOf"));
        Assert.That(y.GradFn!.Saved.SavedCount, Is.EqualTo(0));
        using var mask = Tensor.FromArray(new double[] { 0, 2 });
        using var dropped = x * mask;              // Mul saves an input only for the other's gradient: the mask
        Assert.That(dropped.GradFn!.Saved.SavedCount, Is.EqualTo(1));
        Assert.That(ReferenceEquals(dropped.GradFn.SavedInput(1).Storage, mask.Storage), Is.True);
        Assert.Throws<InvalidOperationException>(() => _ = dropped.GradFn.SavedInput(0));
        using var e = x.Exp();                     // Exp saves its output only
        Assert.That(e.GradFn!.Saves, Is.EqualTo(Saves.Output));
        Assert.That(ReferenceEquals(e.GradFn.SavedOutput.Storage, e.Storage), Is.True);
        Assert.Throws<InvalidOperationException>(() => _ = e.GradFn.SavedInput(0));
    }

    private static List<GradNode> GraphNodes(Tensor root)
    {
        var nodes = new List<GradNode>();
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<Tensor>([root]);
        while (stack.Count > 0)
        {
            var t = stack.Pop();
            if (!seen.Add(t) || t.GradFn is not { } n) continue;
            nodes.Add(n);
            foreach (var i in n.Inputs) stack.Push(i);
        }
        return nodes;
    }
}
