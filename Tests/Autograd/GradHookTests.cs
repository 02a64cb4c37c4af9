using NUnit.Framework;

namespace AttnCore.Tests.Autograd;

/// <summary>The post-accumulate gradient hook data-parallel training starts its bucket all-reduces from.</summary>
[TestFixture, Category("Autograd")]
public class GradHookTests
{
    [Test]
    public void Hook_runs_once_per_backward_with_the_final_gradient_of_a_leaf_used_twice()
    {
        // y = sum(w * x) + sum(w * w): dy/dw = x + 2w = [1 + 2, 2 + 4] = [3, 6]; the hook must see the sum, not a partial.
        using var w = Tensor.FromArray(new double[] { 1, 2 }).RequiresGrad_();
        using var x = Tensor.FromArray(new double[] { 1, 2 });
        var seen = new List<double[]>();
        using var hook = w.RegisterPostAccumulateGradHook(t => seen.Add(t.Grad!.ToArray<double>()));
        using (var y = (w * x).Sum() + (w * w).Sum()) y.Backward();
        Assert.That(seen, Has.Count.EqualTo(1));
        Assert.That(seen[0], Is.EqualTo(new double[] { 3, 6 }));
        // A second Backward accumulates (as PyTorch) and the hook sees the accumulated gradient.
        using (var y = (w * x).Sum()) y.Backward();
        Assert.That(seen, Has.Count.EqualTo(2));
        Assert.That(seen[1], Is.EqualTo(new double[] { 4, 8 }));
    }

    [Test]
    public void Hooks_fire_in_backward_order_and_a_disposed_hook_no_longer_runs()
    {
        // h = tanh(x @ a) @ b: backward reaches b (the last layer) before a.
        using var x = Tensor.Randn([3, 4], 1, DType.Float64);
        using var a = Tensor.Randn([4, 5], 2, DType.Float64).RequiresGrad_();
        using var b = Tensor.Randn([5, 2], 3, DType.Float64).RequiresGrad_();
        var order = new List<string>();
        var ha = a.RegisterPostAccumulateGradHook(_ => order.Add("a"));
        using var hb = b.RegisterPostAccumulateGradHook(_ => order.Add("b"));
        using (var loss = x.MatMul(a).Tanh().MatMul(b).Sum()) loss.Backward();
        Assert.That(order, Is.EqualTo(new[] { "b", "a" }));
        ha.Dispose();
        using (var loss = x.MatMul(a).Tanh().MatMul(b).Sum()) loss.Backward();
        Assert.That(order, Is.EqualTo(new[] { "b", "a", "b" }));
    }

    [Test]
    public void Hook_on_a_computed_tensor_is_refused()
    {
        using var w = Tensor.Randn([2], 1).RequiresGrad_();
        using var y = w * 2.0;
        Assert.That(() => y.RegisterPostAccumulateGradHook(_ => { }), Throws.ArgumentException.With.Message.Contains("RegisterPostAccumulateGradHook: needs a leaf"));
    }
}
