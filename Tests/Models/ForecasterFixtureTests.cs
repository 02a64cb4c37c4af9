using System.Text.Json;
using AttnCore.Models.TimeSeries;
using NUnit.Framework;

namespace AttnCore.Tests.Models;

/// <summary>
/// DLinear (shared and individual), PatchTST and iTransformer against the PyTorch models of
/// Tests/Fixtures/make_forecasters.py (written after the papers' code), from the same weights: the forecast, the loss
/// and the gradient of every parameter. Tolerance: |ours - torch| ≤ 1e-4 · max|torch| + 1e-5 for outputs and the loss,
/// ≤ 1e-3 · max|torch grad| + 1e-5 per parameter's gradient (float32 on both sides, different summation orders through
/// batch norm and attention).
/// </summary>
[TestFixture, Category("Models")]
public class ForecasterFixtureTests
{
    static readonly JsonElement Root = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "forecasters.json"))).RootElement;

    static float[] Floats(JsonElement e) => e.EnumerateArray().Select(v => (float)v.GetDouble()).ToArray();

    [TestCase("dlinear_shared", "dlinear")]
    [TestCase("dlinear_individual", "dlinear")]
    [TestCase("patchtst", "patchtst")]
    [TestCase("patchtst_res", "patchtst")]
    [TestCase("itransformer", "itransformer")]
    public void Forecast_loss_and_gradients_match_pytorch(string key, string model)
    {
        int b = Root.GetProperty("B").GetInt32(), l = Root.GetProperty("L").GetInt32(), c = Root.GetProperty("C").GetInt32(), h = Root.GetProperty("H").GetInt32();
        var fixture = Root.GetProperty(key);
        var cfg = fixture.GetProperty("config");
        int Int(string name, int fallback) => cfg.TryGetProperty(name, out var v) ? v.GetInt32() : fallback;
        var config = new ForecasterConfig(model, l, h, c, DModel: Int("DModel", 16), Heads: Int("Heads", 4), Layers: Int("Layers", 3), DFf: Int("DFf", 128),
            Dropout: 0, PatchLen: Int("PatchLen", 16), Stride: Int("Stride", 8), FcDropout: 0, HeadDropout: 0, MovingAverage: Int("MovingAverage", 25),
            Individual: cfg.TryGetProperty("Individual", out var ind) && ind.GetBoolean(),
            ResAttention: cfg.TryGetProperty("ResAttention", out var res) && res.GetBoolean());
        using var net = Forecaster.Create(config, new Generator(3));
        var state = new Dictionary<string, Tensor>();
        foreach (var p in fixture.GetProperty("params").EnumerateObject())
            state[p.Name] = Tensor.FromArray(Floats(p.Value.GetProperty("values")), p.Value.GetProperty("shape").EnumerateArray().Select(s => s.GetInt32()).ToArray());
        net.LoadStateDict(state);
        foreach (var t in state.Values) t.Dispose();
        net.Train();

        using var x = Tensor.FromArray(Floats(Root.GetProperty("x")), [b, l, c]);
        using var target = Tensor.FromArray(Floats(Root.GetProperty("target")), [b, h, c]);
        using var y = net.Forward(x);
        Assert.That(y.Shape, Is.EqualTo(new[] { b, h, c }));
        AssertClose(y.ToArray<float>(), Floats(fixture.GetProperty("output")), 1e-4, $"{key} forecast");
        using var diff = y - target;
        using var sq = diff.Square();
        using var loss = sq.Mean();
        double torchLoss = fixture.GetProperty("loss").GetDouble();
        Assert.That(loss.Item(), Is.EqualTo(torchLoss).Within(1e-4 * Math.Abs(torchLoss) + 1e-5), $"{key} loss");
        loss.Backward();
        var parameters = net.NamedParameters().ToDictionary(p => p.Name, p => p.Parameter);
        var grads = fixture.GetProperty("grads").EnumerateObject().ToArray();
        Assert.That(grads.Select(g => g.Name), Is.EquivalentTo(parameters.Keys), $"{key}: the fixture has a gradient for every parameter");
        foreach (var g in grads)
            AssertClose(parameters[g.Name].Grad!.ToArray<float>(), Floats(g.Value), 1e-3, $"{key} grad {g.Name}");
    }

    static void AssertClose(float[] actual, float[] expected, double relative, string what)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length), $"{what}: length");
        double scale = expected.Max(v => Math.Abs((double)v));
        double tol = relative * scale + 1e-5;
        for (int i = 0; i < actual.Length; i++)
            Assert.That(actual[i], Is.EqualTo(expected[i]).Within(tol), $"{what}[{i}] (tolerance {tol:G3})");
    }
}
