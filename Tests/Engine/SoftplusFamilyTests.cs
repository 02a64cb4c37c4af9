using System.Text.Json;
using NUnit.Framework;

namespace AttnCore.Tests.Engine;

/// <summary>
/// Softplus, Mish and LogSigmoid against PyTorch 1.13 in float64 (Tests/Fixtures/softplus_family.json, made by
/// make_softplus_family.py): the softplus threshold at 20, and |x| up to 100 where a naive ln(1 + e^x) overflows
/// or rounds e^x away. Values and gradients agree to 1e-12 absolute plus 1e-9 relative; the gradients to 3e-9
/// relative, because above the threshold PyTorch's softplus gradient is exactly 1 where sigmoid(x), the rule here,
/// is 1 - e^-x (at most 2.1e-9 below it).
/// </summary>
[TestFixture, Category("Engine")]
public class SoftplusFamilyTests
{
    static IEnumerable<TestCaseData> Cases()
    {
        var root = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "softplus_family.json"))).RootElement;
        foreach (var c in root.GetProperty("cases").EnumerateArray())
        {
            double[] Doubles(string key) => c.GetProperty(key).EnumerateArray().Select(e => e.GetDouble()).ToArray();
            yield return new TestCaseData(c.GetProperty("name").GetString(), Doubles("x"), Doubles("y"), Doubles("grad")).SetName(c.GetProperty("name").GetString() + "_matches_pytorch");
        }
    }

    static Tensor Apply(string name, Tensor x) => name switch
    {
        "Softplus" => x.Softplus(),
        "Mish" => x.Mish(),
        "LogSigmoid" => x.LogSigmoid(),
        _ => throw new ArgumentOutOfRangeException(nameof(name), $"no op named {name} in softplus_family.json"),
    };

    [TestCaseSource(nameof(Cases))]
    public void Value_and_gradient_match_pytorch(string name, double[] xs, double[] ys, double[] grads)
    {
        using var x = Tensor.FromArray(xs).RequiresGrad_();
        using var y = Apply(name, x);
        using var loss = y.Sum();
        loss.Backward();
        var got = y.ToArray<double>();
        var grad = x.Grad!.ToArray<double>();
        for (int i = 0; i < xs.Length; i++)
        {
            Assert.That(got[i], Is.EqualTo(ys[i]).Within(1e-12 + 1e-9 * Math.Abs(ys[i])), $"{name}({xs[i]})");
            Assert.That(grad[i], Is.EqualTo(grads[i]).Within(1e-12 + 3e-9 * Math.Abs(grads[i])), $"d{name}/dx at {xs[i]}");
        }
    }
}
