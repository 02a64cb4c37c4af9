using AttnCore.Models.Nn;
using NUnit.Framework;

namespace AttnCore.Tests.Models;

/// <summary>The CrossEntropyLoss module (TorchSharp's name) against the functional form and PyTorch's state dict.</summary>
[TestFixture, Category("Models")]
public class CrossEntropyLossTests
{
    [Test]
    public void The_module_is_the_functional_loss_with_its_options_and_keeps_its_weight_in_the_state_dict()
    {
        using var x = Tensor.Randn([3, 4, 2], new Generator(9));
        using var t = Tensor.FromArray(new long[] { 0, 3, 1, 1, 2, 1 }, [3, 2]);
        using var loss = new CrossEntropyLoss(Tensor.FromArray(new float[] { 1, 0.5f, 2, 1 }), ignoreIndex: 1, reduction: Reduction.Sum, labelSmoothing: 0.1);
        using var w = Tensor.FromArray(new float[] { 1, 0.5f, 2, 1 });
        using var got = loss.Forward(x, t);
        using var want = x.CrossEntropy(t, 1, 0.1, w, Reduction.Sum);
        Assert.That(got.Item(), Is.EqualTo(want.Item()));
        Assert.That(loss.StateDict().Keys, Is.EqualTo(new[] { "weight" }));
        Assert.That(loss.Parameters(), Is.Empty);
        using var plain = new CrossEntropyLoss();
        Assert.That(plain.StateDict(), Is.Empty);
        Assert.Throws<ArgumentException>(() => new CrossEntropyLoss(labelSmoothing: -0.1));
        using var matrix = Tensor.Ones([2, 2]);
        Assert.Throws<ArgumentException>(() => new CrossEntropyLoss(matrix));
    }
}
