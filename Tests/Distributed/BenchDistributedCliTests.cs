using System.Text.Json;
using NUnit.Framework;

namespace AttnCore.Tests.Distributed;

/// <summary>The distributed benchmarks run without mpirun too (a world of one), reporting figures that fit that world.</summary>
[TestFixture, Category("Cli"), NonParallelizable]
public class BenchDistributedCliTests
{
    private static JsonElement Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        Assert.That(AttnCore.Cli.Program.Run(args, stdout, stderr), Is.EqualTo(0), stderr.ToString());
        return JsonDocument.Parse(stdout.ToString().Trim().Split('\n')[^1]).RootElement;
    }

    [Test]
    public void Bench_allreduce_alone_reports_one_rank_and_no_bus_traffic()
    {
        var r = Run("bench", "allreduce", "--bytes", "4096", "--iterations", "5", "--json");
        Assert.That(r.GetProperty("ranks").GetInt32(), Is.EqualTo(1));
        Assert.That(r.GetProperty("bytes").GetInt64(), Is.EqualTo(4096));
        // A ring over one rank moves nothing between ranks: 2 (p - 1) / p = 0.
        Assert.That(r.GetProperty("busbw_gbs").GetDouble(), Is.EqualTo(0));
        // The spread over the 5 calls brackets their mean.
        Assert.That(r.GetProperty("latency_us_min").GetDouble(), Is.LessThanOrEqualTo(r.GetProperty("latency_us_median").GetDouble()));
        Assert.That(r.GetProperty("latency_us_median").GetDouble(), Is.LessThanOrEqualTo(r.GetProperty("latency_us_max").GetDouble()));
        Assert.That(r.GetProperty("latency_us").GetDouble(), Is.InRange(r.GetProperty("latency_us_min").GetDouble(), r.GetProperty("latency_us_max").GetDouble()));
    }

    [Test]
    public void Bench_ddp_step_alone_reports_one_rank_and_nothing_hidden()
    {
        var r = Run("bench", "ddp-step", "--config", "tiny", "--steps", "2", "--json");
        Assert.That((r.GetProperty("ranks").GetInt32(), r.GetProperty("buckets").GetInt32(), r.GetProperty("hidden_share").GetDouble()), Is.EqualTo((1, 0, 0.0)));
        Assert.That(r.GetProperty("samples_per_s").GetDouble(), Is.GreaterThan(0));
        Assert.That(r.GetProperty("step_ms_min").GetDouble(), Is.GreaterThan(0).And.LessThanOrEqualTo(r.GetProperty("step_ms_median").GetDouble()));
        Assert.That(r.GetProperty("step_ms_median").GetDouble(), Is.LessThanOrEqualTo(r.GetProperty("step_ms_max").GetDouble()));
    }

    [Test]
    public void Bench_allreduce_refuses_a_message_below_one_float()
    {
        var stderr = new StringWriter();
        Assert.That(AttnCore.Cli.Program.Run(["bench", "allreduce", "--bytes", "2"], new StringWriter(), stderr), Is.EqualTo(2));
        Assert.That(stderr.ToString(), Does.Contain("--bytes must be an integer from 4"));
    }
}
