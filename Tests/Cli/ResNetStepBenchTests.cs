using System.Diagnostics;
using System.Text.Json;
using AttnCore.Cli.Bench;
using AttnCore.Models.Vision;
using NUnit.Framework;

namespace AttnCore.Tests.Cli;

/// <summary>
/// <c>bench resnet-step</c>: a tiny dry run next to PyTorch reports both medians and images/s in its JSON line, and
/// the PyTorch reference (Cli/Bench/torch_resnet.py) builds the same architectures: its parameter counts equal AttnCore's.
/// </summary>
[TestFixture, Category("Cli"), NonParallelizable]
public class ResNetStepBenchTests
{
    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = AttnCore.Cli.Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Test]
    public void A_tiny_step_next_to_pytorch_reports_both_medians_and_images_per_second()
    {
        if (!BenchTorchTests.TorchInstalled()) Assert.Ignore(TorchBridge.InstallHint);
        var (code, stdout, stderr) = Run("bench", "resnet-step", "--config", "tiny", "--seconds", "0.1", "--threads", "1", "--vs", "torch", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        var j = JsonDocument.Parse(stdout.TrimEnd().Split('\n').Last()).RootElement;
        Assert.That(j.GetProperty("op").GetString(), Is.EqualTo("resnet-step"));
        Assert.That(j.GetProperty("model").GetString(), Is.EqualTo("resnet20-se"));
        Assert.That(j.GetProperty("images").GetInt32(), Is.EqualTo(2));
        foreach (var who in new[] { "", "torch_" })
        {
            double ms = j.GetProperty(who + "ms").GetDouble();
            Assert.That(ms, Is.GreaterThan(0), who + "ms");
            Assert.That(j.GetProperty(who + "images_per_s").GetDouble(), Is.EqualTo(2 / (ms / 1e3)).Within(0.01 + 1e-3 * 2 / (ms / 1e3)), who + "images/s from the median");
        }
        Assert.That(j.GetProperty("speedup").GetDouble(), Is.EqualTo(j.GetProperty("torch_ms").GetDouble() / j.GetProperty("ms").GetDouble()).Within(2e-3 * j.GetProperty("speedup").GetDouble() + 1e-3));
        Assert.That(j.TryGetProperty("gflops", out _), Is.False, "no FLOP rate is claimed");
        (code, _, stderr) = Run("bench", "resnet-step", "--config", "resnet101");
        Assert.That(code, Is.EqualTo(2), "an unknown config is a usage error");
        Assert.That(stderr, Does.Contain("resnet101"));
    }

    [TestCase("resnet20-se", 10)]
    [TestCase("resnet50", 1000)]
    [TestCase("resnet18-se", 100)]
    public void The_pytorch_reference_trains_the_same_architecture(string model, int classes)
    {
        string dir = Path.Combine(AppContext.BaseDirectory, "Bench");
        if (!File.Exists(Path.Combine(dir, "torch_resnet.py"))) Assert.Ignore($"{dir}/torch_resnet.py is not next to the tests");
        var start = new ProcessStartInfo("/usr/bin/python3", ["-c", $"import torch_resnet; m = torch_resnet.make_resnet('{model}', {classes}); print(sum(p.numel() for p in m.parameters()))"])
        { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
        using var python = Process.Start(start)!;
        string output = python.StandardOutput.ReadToEnd(), error = python.StandardError.ReadToEnd();
        python.WaitForExit();
        if (python.ExitCode != 0 && error.Contains("No module named 'torch'")) Assert.Ignore(TorchBridge.InstallHint);
        Assert.That(python.ExitCode, Is.EqualTo(0), error);
        using var ours = VisionModels.Create(model, 3, classes, new Generator(1));
        Assert.That(long.Parse(output.Trim()), Is.EqualTo(ours.ParameterCount()), $"{model}: PyTorch's parameters");
    }
}
