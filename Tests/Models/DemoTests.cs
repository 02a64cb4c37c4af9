using AttnCore.Models.Tasks;
using NUnit.Framework;

namespace AttnCore.Tests.Models;

[TestFixture, Category("Models")]
public class DemoTests
{
    [Test]
    public void Digit_reversal_demo_learns_short_strings_and_writes_its_pictures()
    {
        string dir = Path.Combine(Path.GetTempPath(), "attncore-demo-" + Guid.NewGuid().ToString("N"));
        TestContext.Out.WriteLine($"run directory {dir}");
        try
        {
            var r = DigitReversalDemo.Run(new DigitReversalDemo.Options(Steps: 400, Batch: 32, MinLength: 2, MaxLength: 5, Dim: 32, Heads: 2, Layers: 1,
                LearningRate: 3e-3, TestSequences: 100, RunDirectory: dir, ShowProgress: false));
            Assert.That(r.ExactMatch, Is.GreaterThan(0.9), $"exact match {r.ExactMatch}");
            Assert.That(File.Exists(Path.Combine(dir, "attention.png")), Is.True);
            Assert.That(File.Exists(Path.Combine(dir, "loss.png")), Is.True);
            Assert.That(File.Exists(Path.Combine(dir, "metrics.json")), Is.True);
            Assert.That(File.Exists(Path.Combine(dir, "model.safetensors")), Is.True);
            TestContext.Out.WriteLine($"exact match {r.ExactMatch:P1} in {r.WallSeconds:F1}s");
        }
        finally { if (Directory.Exists(dir) && Environment.GetEnvironmentVariable("ATTNCORE_KEEP_TEST_RUNS") is null) Directory.Delete(dir, true); }
    }
}
