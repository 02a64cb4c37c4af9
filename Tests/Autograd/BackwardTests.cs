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
}
