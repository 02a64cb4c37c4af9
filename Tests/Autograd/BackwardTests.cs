using NUnit.Framework;

namespace AttnCore.Tests.Autograd;

[TestFixture, Category("Autograd")]
public class BackwardTests
{
    [Test]
    public void Gradients_accumulate_across_backward_calls_and_reach_shared_inputs()
    {
        using var x = Tensor.FromArray(new double[] { 1, 2, 3 }).RequiresGrad_();
        using (var y = (x * x + x).Sum()) y.Backward();     // d/dx = 2x + 1
        Assert.That(x.Grad!.ToArray<double>(), Is.EqualTo(new double[] { 3, 5, 7 }));
        using (var y = (x * 3.0).Sum()) y.Backward();
        Assert.That(x.Grad!.ToArray<double>(), Is.EqualTo(new double[] { 6, 8, 10 }));
        new[] { x }.ZeroGrad();
        Assert.That(x.Grad, Is.Null);
    }

    [Test]
    public void The_readme_example_relu_of_affine_gives_the_textbook_gradients()
    {
        // loss = ((x @ W + b).Relu()).Sum(): dW = x^T (mask), db = sum of mask
        using var x = Tensor.FromArray(new float[] { 1, -2, 3, 0.5f }, [2, 2]);
        using var w = Tensor.FromArray(new float[] { 0.5f, -1, 2, 1 }, [2, 2]).RequiresGrad_();
        using var b = Tensor.FromArray(new float[] { 0.1f, -0.2f }).RequiresGrad_();
        using var loss = (x.MatMul(w) + b).Relu().Sum();
        loss.Backward();
        // x@W+b = [[1*.5-2*2+.1, -1-2-.2], [1.5+1+.1, -3+.5-.2]] = [[-3.4,-3.2],[2.6,-2.7]] -> mask [[0,0],[1,0]]
        Assert.That(w.Grad!.ToArray<float>(), Is.EqualTo(new float[] { 3, 0, 0.5f, 0 }));
        Assert.That(b.Grad!.ToArray<float>(), Is.EqualTo(new float[] { 1, 0 }));
    }

    // A pre-norm block, h = x + f(LayerNorm(x)): the residual path reaches x first, so when the layer norm's rule runs x
    // has a gradient pending, and Backward hands it to the rule to add in the same pass. The values are checked by
    // GradCheckTests (LayerNormOnAResidualPath, AddLayerNorm); this checks the hand-over happens, and only where it can.
    [Test]
    public void A_layer_norm_is_handed_the_gradient_its_input_already_has()
    {
        var g = new Generator(7);
        using var x = Tensor.Randn([4, 8], g).RequiresGrad_();
        using var norm = x.LayerNorm([8]);
        var node = norm.GradFn!;
        using var pendingDense = Tensor.Randn([4, 8], g);
        using var pendingT = Tensor.Randn([8, 4], g);
        using var pendingStrided = pendingT.T;
        var pending = new Dictionary<Tensor, Tensor>(ReferenceEqualityComparer.Instance) { [x] = pendingDense };
        Assert.That(AutogradExtensions.PendingAddend(node, pending), Is.SameAs(pendingDense));
        pending[x] = pendingStrided; // a transposed view would be copied first: not handed over
        Assert.That(AutogradExtensions.PendingAddend(node, pending), Is.Null);
        pending.Clear();
        Assert.That(AutogradExtensions.PendingAddend(node, pending), Is.Null, "nothing pending");
        using var e = x.Exp();
        pending[x] = pendingDense;
        Assert.That(AutogradExtensions.PendingAddend(e.GradFn!, pending), Is.Null, "not a layer norm");

        // End to end, the gradient is the same as the one from a graph where the sum is taken apart from the norm.
        using var w = Tensor.Randn([4, 8], g);
        using var y = x + x.LayerNorm([8]).Tanh();
        using var loss = (y * w).Sum();
        loss.Backward();
        var fused = x.Grad!.ToArray<float>();
        new[] { x }.ZeroGrad();
        using (var l1 = (x.LayerNorm([8]).Tanh() * w).Sum()) l1.Backward();
        using (var l2 = (x * w).Sum()) l2.Backward();
        Assert.That(fused, Is.EqualTo(x.Grad!.ToArray<float>()).Within(1e-6));
    }

    [Test]
    public void AddLayerNorm_returns_the_sum_and_its_norm_and_names_bad_inputs()
    {
        var g = new Generator(11);
        using var x = Tensor.Randn([2, 3, 16], g);
        using var r = Tensor.Randn([2, 3, 16], g);
        using var w = Tensor.Randn([16], g);
        using var b = Tensor.Randn([16], g);
        var (sum, y) = x.AddLayerNorm(r, [16], w, b);
        using var expectSum = x + r;
        using var expectY = expectSum.LayerNorm([16], w, b);
        Assert.That(sum.ToArray<float>(), Is.EqualTo(expectSum.ToArray<float>()));
        Assert.That(y.ToArray<float>(), Is.EqualTo(expectY.ToArray<float>()));
        sum.Dispose(); y.Dispose();
        // A strided residual is read through a dense copy, with the same result.
        using var rt = r.Transpose(0, 1).Contiguous().Transpose(0, 1);
        var (sum2, y2) = x.AddLayerNorm(rt, [16], w, b);
        Assert.That(y2.ToArray<float>(), Is.EqualTo(expectY.ToArray<float>()));
        sum2.Dispose(); y2.Dispose();

        var e = Assert.Throws<ArgumentException>(() => x.AddLayerNorm(r, [8]));
        Assert.That(e!.Message, Does.Contain("AddLayerNorm").And.Contain("[8]").And.Contain("[2,3,16]"));
        using var r64 = r.To(DType.Float64);
        Assert.That(Assert.Throws<ArgumentException>(() => x.AddLayerNorm(r64, [16]))!.Message, Does.Contain("AddLayerNorm").And.Contain("Float64").IgnoreCase);
        using var wrong = Tensor.Randn([3, 16], g);
        var (s3, y3) = x.AddLayerNorm(wrong, [16]); // broadcasts through the unfused add
        using var expect3 = (x + wrong).LayerNorm([16]);
        Assert.That(y3.ToArray<float>(), Is.EqualTo(expect3.ToArray<float>()));
        s3.Dispose(); y3.Dispose();
    }

    [Test]
    public void NoGrad_records_nothing_and_Detach_cuts_the_graph()
    {
        using var x = Tensor.Ones([2]).RequiresGrad_();
        using (new NoGrad())
        {
            using var y = x * 2.0;
            Assert.That(y.RequiresGrad, Is.False);
        }
        using var d = x.Detach();
        Assert.That(d.RequiresGrad, Is.False);
        using var z = (x * 2.0).Sum();
        Assert.That(z.RequiresGrad, Is.True);
        Assert.That(z.IsLeaf, Is.False);
        Assert.Throws<InvalidOperationException>(() => d.Sum().Backward());
        Assert.Throws<ArgumentException>(() => (x * 2.0).Backward());
        Assert.Throws<ArgumentException>(() => Tensor.Zeros([2], DType.Int64).RequiresGrad = true);
    }

    [Test]
    public void An_in_place_write_to_a_saved_tensor_is_reported_not_silently_wrong()
    {
        using var x = Tensor.FromArray(new double[] { 1, 2 }).RequiresGrad_();
        using var y = x.Exp();        // saves y for its backward
        using var loss = y.Sum();
        y.Fill_(0);                   // overwrite what Exp's backward needs
        var ex = Assert.Throws<InvalidOperationException>(() => loss.Backward());
        Assert.That(ex!.Message, Does.Contain("Exp").And.Contain("modified in place"));
    }

    [Test]
    public void Walking_a_freed_graph_twice_is_an_error_unless_retained()
    {
        using var x = Tensor.FromArray(new double[] { 1, 2 }).RequiresGrad_();
        using var loss = x.Exp().Sum();
        loss.Backward(retainGraph: true);
        loss.Backward();
        Assert.That(x.Grad!.ToArray<double>()[0], Is.EqualTo(2 * Math.E).Within(1e-12));
        Assert.Throws<InvalidOperationException>(() => loss.Backward());
    }

    [Test]
    public void A_small_mlp_learns_xor_with_plain_gradient_descent()
    {
        using var x = Tensor.FromArray(new float[] { 0, 0, 0, 1, 1, 0, 1, 1 }, [4, 2]);
        using var t = Tensor.FromArray(new float[] { 0, 1, 1, 0 }, [4, 1]);
        var w1 = (Tensor.Randn([2, 8], 7) * 1.0).RequiresGrad_();
        var b1 = Tensor.Zeros([8]).RequiresGrad_();
        var w2 = (Tensor.Randn([8, 1], 8) * 0.5).RequiresGrad_();
        var b2 = Tensor.Zeros([1]).RequiresGrad_();
        var ps = new[] { w1, b1, w2, b2 };
        double loss = 0;
        for (int step = 0; step < 2000; step++)
        {
            using var scope = new TensorScope();
            var y = (x.MatMul(w1) + b1).Tanh().MatMul(w2) + b2;
            var l = (y.Sigmoid() - t).Square().Mean();
            l.Backward();
            loss = l.Item();
            using (new NoGrad())
                foreach (var p in ps) { p.CopyFrom(p - p.Grad! * 2.0); }
            ps.ZeroGrad();
        }
        Assert.That(loss, Is.LessThan(0.01));
        using var pred = (x.MatMul(w1) + b1).Tanh().MatMul(w2) + b2;
        Assert.That(pred.Gt(0).ToArray<float>(), Is.EqualTo(new float[] { 0, 1, 1, 0 }));
    }

    [Test]
    public void A_leaf_adopts_a_first_gradient_nothing_else_holds_and_copies_one_that_is_shared()
    {
        // Adopted: the tensor the rule returned becomes the leaf's Grad, not a copy of it.
        using var x = Tensor.FromArray(new double[] { 1, 2, 3 }).RequiresGrad_();
        using (var y = HandOver.Apply(x, keepView: false).Sum()) y.Backward();
        Assert.That(x.Grad, Is.SameAs(HandOver.Last));
        Assert.That(x.Grad!.ToArray<double>(), Is.EqualTo(new double[] { 2, 2, 2 }));

        // Shared (a view of it is alive): copied, so writing the Grad cannot reach the view's holder.
        using var z = Tensor.FromArray(new double[] { 1, 2, 3 }).RequiresGrad_();
        using (var y = HandOver.Apply(z, keepView: true).Sum()) y.Backward();
        Assert.That(z.Grad, Is.Not.SameAs(HandOver.Last));
        z.Grad!.Fill_(7);
        Assert.That(HandOver.View!.ToArray<double>(), Is.EqualTo(new double[] { 2, 2, 2 }));
        HandOver.View!.Dispose();
    }

    [Test]
    public void Leaves_that_receive_one_gradient_object_each_get_a_storage_of_their_own()
    {
        // Add hands its incoming gradient object to both inputs.
        using var p = Tensor.FromArray(new double[] { 1, 2 }).RequiresGrad_();
        using var q = Tensor.FromArray(new double[] { 3, 4 }).RequiresGrad_();
        using (var y = ((p + q) * 3.0).Sum()) y.Backward();
        Assert.That(p.Grad!.Storage, Is.Not.SameAs(q.Grad!.Storage));
        p.Grad.Fill_(-1);
        Assert.That(q.Grad.ToArray<double>(), Is.EqualTo(new double[] { 3, 3 }));

        // The same object also pending for a non-leaf (h = c·2) when a is accumulated. Each Grad survives the scope
        // Backward ran in.
        using var a = Tensor.FromArray(new double[] { 1, 2 }).RequiresGrad_();
        using var b = Tensor.FromArray(new double[] { 3, 4 }).RequiresGrad_();
        using var c = Tensor.FromArray(new double[] { 5, 6 }).RequiresGrad_();
        using (new TensorScope())
        {
            using var h = c * 2.0;
            var s = (a + b + h) * 3.0;
            s.Sum().Backward();
        }
        Assert.That(a.Grad!.Storage, Is.Not.SameAs(b.Grad!.Storage));
        a.Grad.Fill_(-1);
        Assert.That(b.Grad.ToArray<double>(), Is.EqualTo(new double[] { 3, 3 }));
        Assert.That(c.Grad!.ToArray<double>(), Is.EqualTo(new double[] { 6, 6 }));
        Assert.That(a.Grad.ToArray<double>(), Is.EqualTo(new double[] { -1, -1 }));
    }

    [Test]
    public void A_Linear_without_bias_is_one_node_whose_weight_gradient_has_the_weight_layout()
    {
        using var x = Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6 }, [3, 2]).RequiresGrad_();
        using var w = Tensor.FromArray(new float[] { 1, -1, 0.5f, 2 }, [2, 2]).RequiresGrad_();
        using var y = Tensor.Linear(x, w);
        Assert.That(y.GradFn!.Kind, Is.EqualTo(OpKind.Linear));
        Assert.That(y.GradFn.Inputs, Has.Length.EqualTo(2));
        using (var s = y.Sum()) s.Backward();
        // dW[o, i] = sum over rows of x[r, i]; dx[r, i] = sum over o of W[o, i]
        Assert.That(w.Grad!.IsContiguous, Is.True);
        Assert.That(w.Grad.ToArray<float>(), Is.EqualTo(new float[] { 9, 12, 9, 12 }));
        Assert.That(x.Grad!.ToArray<float>(), Is.EqualTo(new float[] { 1.5f, 1, 1.5f, 1, 1.5f, 1 }));
    }

    // y = 2x, whose backward hands over a fresh tensor (Last), optionally keeping a view of it alive (View).
    private sealed class HandOver(bool keepView) : ICustomOp
    {
        public static Tensor? Last, View;
        public string Name => "HandOver";
        public static Tensor Apply(Tensor x, bool keepView)
        {
            Tensor y;
            using (new NoGrad()) y = x * 2.0;
            return y.RecordCustom(new HandOver(keepView), [x], []);
        }
        public Tensor?[] Backward(GradNode node, Tensor g)
        {
            Last = g * 2.0;
            if (keepView)
            {
                var outer = TensorScope.Suspend();
                View = Last.Reshape(-1);
                TensorScope.Resume(outer);
            }
            return [Last];
        }
    }
}
