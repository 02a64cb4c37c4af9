using System.CommandLine;
using System.Globalization;
using AttnCore.Kernels.Cpu;

namespace AttnCore.Cli.Bench;

/// <summary>
/// <c>attncore bench peak</c>: this machine's float32 FMA peak (Kernels/Cpu/Peak.cs) on one thread and on all
/// <c>--threads</c> threads of the WorkerPool: the ceiling that bench's "% of peak" figures are fractions of.
/// </summary>
public static class BenchPeak
{
    /// <summary>How long bench measures the peak next to a GEMM or attention run, in seconds.</summary>
    public const double InlineSeconds = 0.2;

    /// <summary>Builds <c>bench peak</c>.</summary>
    public static Command Create(CliIO io)
    {
        var threads = NumericOption.Int("--threads", "threads for the all-threads figure (WorkerPool)", Environment.ProcessorCount, 1, 1024);
        var seconds = NumericOption.Number("--seconds", "measurement time for each thread count", 1.0, 0, 60, minExclusive: true);
        var json = new Option<bool>("--json") { Description = "print the result as one JSON object on the last line" };
        var cmd = new Command("peak", "Float32 FMA peak of this CPU (independent Vector512 FMA chains) on 1 thread and on --threads threads") { threads, seconds, json };
        cmd.SetAction(p =>
        {
            int n = p.GetValue(threads);
            double secs = p.GetValue(seconds);
            WorkerPool.ThreadCount = n;
            var one = FmaPeak.Measure(secs, parallel: false);
            var all = n > 1 ? FmaPeak.Measure(secs, parallel: true) : one;
            io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"peak fp32 FMA: {one.Chains} independent Vector{one.VectorBits} FMA chains per thread, {FmaPeak.FlopsPerIteration(one.VectorBits)} FLOPs per iteration"));
            io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  1 thread   {one.Gflops,10:F1} GFLOP/s"));
            if (n > 1)
                io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {n} threads {all.Gflops,10:F1} GFLOP/s  ({all.Gflops / one.Gflops:F2}x one thread)"));
            if (p.GetValue(json))
                io.Json(new Dictionary<string, object>
                {
                    ["op"] = "peak", ["vector_bits"] = one.VectorBits, ["chains"] = one.Chains, ["threads"] = n,
                    ["gflops_1_thread"] = Math.Round(one.Gflops, 2), ["gflops"] = Math.Round(all.Gflops, 2),
                });
            return 0;
        });
        return cmd;
    }

    /// <summary>A one-line description of a peak measured next to a benchmark.</summary>
    public static string Describe(PeakMeasurement peak) => string.Create(CultureInfo.InvariantCulture,
        $"  {"peak",-16} {peak.Gflops,10:F1} GFLOP/s  fp32 FMA, {peak.Chains} Vector{peak.VectorBits} chains x {peak.Threads} thread{(peak.Threads == 1 ? "" : "s")}, measured in this run");
}
