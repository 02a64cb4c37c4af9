using System.Text.Json;
using AttnCore.Optim;
using NUnit.Framework;

namespace AttnCore.Tests.Autograd;

/// <summary>OneCycle against torch.optim.lr_scheduler.OneCycleLR (Tests/Fixtures/make_one_cycle.py, values in one_cycle.json).</summary>
[TestFixture, Category("Autograd")]
public class OneCycleTests
{
    [Test]
    public void OneCycle_matches_PyTorchs_OneCycleLR_at_every_step()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "one_cycle.json")));
        int cases = 0;
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            int total = c.GetProperty("total").GetInt32();
            double maxLr = c.GetProperty("max_lr").GetDouble();
            using var p = Tensor.FromArray(new float[] { 0 }).RequiresGrad_();
            using var opt = new Sgd([p], maxLr, momentum: 0.9, nesterov: true);
            var schedule = new OneCycle(opt, total, c.GetProperty("pct_start").GetDouble(), c.GetProperty("div_factor").GetDouble(), c.GetProperty("final_div_factor").GetDouble());
            var expected = c.GetProperty("lrs").EnumerateArray().Select(e => e.GetDouble()).ToArray();
            Assert.That(expected, Has.Length.EqualTo(total));
            for (int s = 0; s < total; s++)
            {
                Assert.That(opt.ParamGroups[0].LearningRate, Is.EqualTo(expected[s]).Within(1e-12 * maxLr), $"total {total}, step {s}");
                if (s + 1 < total) schedule.Step();
            }
            cases++;
        }
        Assert.That(cases, Is.EqualTo(4));
    }

    [Test]
    public void OneCycle_rejects_settings_PyTorch_rejects_naming_them()
    {
        using var p = Tensor.FromArray(new float[] { 0 }).RequiresGrad_();
        using var opt = new Sgd([p], 0.1);
        Assert.That(() => new OneCycle(opt, 1), Throws.ArgumentException.With.Message.Contains("totalSteps"));
        Assert.That(() => new OneCycle(opt, 100, pctStart: 1.5), Throws.ArgumentException.With.Message.Contains("pctStart"));
        Assert.That(() => new OneCycle(opt, 100, divFactor: 0), Throws.ArgumentException.With.Message.Contains("divFactor"));
    }
}
