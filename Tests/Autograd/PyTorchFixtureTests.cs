using System.Text.Json;
using AttnCore.Optim;
using NUnit.Framework;

namespace AttnCore.Tests.Autograd;

/// <summary>
/// The network of Tests/Fixtures/make_autograd_small_net.py, rebuilt from AttnCore ops: loss, every
/// parameter gradient, and every parameter after one AdamW step must match PyTorch's values.
/// </summary>
[TestFixture, Category("Autograd")]
public class PyTorchFixtureTests
{
    const int V = 7, D = 8, H = 2, T = 5, B = 2;

    static Tensor Param(int k, int[] shape, double scale, double add = 0)
    {
        int n = shape.Aggregate(1, (a, b) => a * b);
        var v = Enumerable.Range(0, n).Select(i => (float)((float)(Math.Sin(0.37 * i + 1.3 * k) * scale) + add)).ToArray();
        return Tensor.FromArray(v, shape).RequiresGrad_();
    }

    [Test]
    public void Loss_gradients_and_one_AdamW_step_match_pytorch()
    {
        var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "autograd_small_net.json"))).RootElement;
        var p = new Dictionary<string, Tensor>
        {
            ["emb"] = Param(1, [V, D], 0.5), ["ln_w"] = Param(2, [D], 0.2, 1.0), ["ln_b"] = Param(3, [D], 0.1),
            ["wq"] = Param(4, [D, D], 0.3), ["wk"] = Param(5, [D, D], 0.3), ["wv"] = Param(6, [D, D], 0.3), ["wo"] = Param(7, [D, D], 0.3),
            ["head_w"] = Param(8, [D, V], 0.4), ["head_b"] = Param(9, [V], 0.05),
        };
        using var tokens = Tensor.FromArray(json.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt64()).ToArray(), [B, T]);
        using var targets = Tensor.FromArray(json.GetProperty("targets").EnumerateArray().Select(e => e.GetInt64()).ToArray());

        Tensor loss;
        using (var scope = new TensorScope())
        {
            var x = Tensor.Embedding(tokens, p["emb"]);
            var h = x.LayerNorm([D], p["ln_w"], p["ln_b"], 1e-5);
            Tensor Heads(Tensor t) => t.Reshape(B, T, H, D / H).Transpose(1, 2);
            var q = Heads(h.MatMul(p["wq"])); var k = Heads(h.MatMul(p["wk"])); var v = Heads(h.MatMul(p["wv"]));
            var s = q.MatMul(k.Transpose(-1, -2)) / Math.Sqrt(D / H);
            var mask = Tensor.Ones([T, T]).Triu(1);     // 1 above the diagonal: future positions
            s = s.MaskedFill(mask, double.NegativeInfinity);
            var a = s.Softmax(-1).MatMul(v).Transpose(1, 2).Reshape(B, T, D).MatMul(p["wo"]);
            var y = (x + a).MatMul(p["head_w"]) + p["head_b"];
            loss = scope.Keep(y.Reshape(B * T, V).CrossEntropy(targets, ignoreIndex: -100, labelSmoothing: 0.1));
        }
        double torchLoss = json.GetProperty("loss").GetDouble();
        Assert.That(Math.Abs(loss.Item() - torchLoss), Is.LessThanOrEqualTo(1e-5 * Math.Abs(torchLoss)), $"loss {loss.Item()} vs torch {torchLoss}");
        loss.Backward();
        foreach (var (name, t) in p)
            AssertClose(t.Grad!.ToArray<float>(), json.GetProperty("grads").GetProperty(name), $"grad {name}");
        using var opt = new AdamW(p.Values, 1e-2, 0.9, 0.99, 1e-8, 0.1);
        opt.Step();
        foreach (var (name, t) in p)
            AssertClose(t.ToArray<float>(), json.GetProperty("after_adamw").GetProperty(name), $"after AdamW {name}");
    }

    // 1e-5 relative, with an absolute floor of 1e-6 for entries that are (nearly) zero.
    static void AssertClose(float[] actual, JsonElement expected, string what)
    {
        var e = expected.EnumerateArray().Select(v => v.GetDouble()).ToArray();
        Assert.That(actual.Length, Is.EqualTo(e.Length), what);
        for (int i = 0; i < e.Length; i++)
            Assert.That(Math.Abs(actual[i] - e[i]), Is.LessThanOrEqualTo(1e-5 * Math.Abs(e[i]) + 1e-6), $"{what}[{i}]: {actual[i]} vs torch {e[i]}");
    }
}
