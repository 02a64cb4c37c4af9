using System.Text.Json;
using NUnit.Framework;

namespace AttnCore.Tests.Cli;

/// <summary><c>attncore bench</c> on ILGPU devices: the JSON a GPU run reports, and --vs cublas where there is no CUDA.</summary>
[TestFixture, Category("Cli"), NonParallelizable]
public class BenchGpuCliTests
{
    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = AttnCore.Cli.Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Test]
    public void Bench_gemm_on_the_ilgpu_cpu_device_reports_the_device_and_positive_throughput()
    {
        var (code, stdout, stderr) = Run("bench", "gemm", "--m", "20", "--n", "24", "--k", "12", "--device", "ilgpu-cpu", "--seconds", "0.1", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        var j = JsonDocument.Parse(stdout.TrimEnd().Split('\n').Last()).RootElement;
        Assert.That(j.GetProperty("op").GetString(), Is.EqualTo("gemm"));
        Assert.That((j.GetProperty("m").GetInt32(), j.GetProperty("n").GetInt32(), j.GetProperty("k").GetInt32()), Is.EqualTo((20, 24, 12)));
        Assert.That(j.GetProperty("device").GetString(), Is.EqualTo("ilgpu-cpu"));
        Assert.That(j.GetProperty("ms").GetDouble(), Is.GreaterThan(0));
        // GFLOP/s = 2·m·n·k / ms / 1e6, kept to 4 significant digits however slow the device.
        double gflops = j.GetProperty("gflops").GetDouble(), expected = 2.0 * 20 * 24 * 12 / (j.GetProperty("ms").GetDouble() * 1e6);
        Assert.That(gflops, Is.GreaterThan(0));
        Assert.That(gflops, Is.EqualTo(expected).Within(1e-3 * expected));
        Assert.That(j.TryGetProperty("speedup", out _), Is.False, "no reference was asked for");
    }

    [Test]
    public void Vs_cublas_without_a_cuda_device_fails_with_a_one_line_reason()
    {
        foreach (var device in new[] { "ilgpu-cpu", "cpu" })
        {
            var (code, _, err) = Run("bench", "gemm", "--n", "8", "--seconds", "0.1", "--device", device, "--vs", "cublas");
            Assert.That(code, Is.Not.EqualTo(0), device);
            Assert.That(err, Does.Contain("--vs cublas needs a CUDA device").And.Contain(device), device);
            Assert.That(err.Trim().Split('\n'), Has.Length.EqualTo(1), err);
        }
        // cuBLAS is a GEMM reference only.
        var (c2, _, err2) = Run("bench", "softmax", "--rows", "4", "--cols", "8", "--vs", "cublas");
        Assert.That(c2, Is.Not.EqualTo(0));
        Assert.That(err2, Does.Contain("cublas"));
    }
}
