using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using AttnCore.Kernels.Cpu;

namespace AttnCore.Cli.Bench;

/// <summary>
/// <c>attncore bench gemm --blockings "MC,KC,NC ..."</c>: one product under several cache blockings in one process,
/// taking turns call by call with the order rotated each round, so that the host's slow and fast minutes fall on all
/// of them alike (separate processes, one per blocking, were too noisy to rank them here). The way to choose
/// ATTNCORE_GEMM_BLOCKING for a machine; docs/kernels-cpu.md has the sweeps behind the defaults.
/// </summary>
internal static unsafe class BenchGemmBlocking
{
    /// <summary>Why the --blockings text cannot run, or null when every item parses.</summary>
    public static string? Malformed(string text)
    {
        try { Parse(text); return null; }
        catch (ArgumentException e) { return e.Message; }
    }

    // The distinct blockings the text names; an ArgumentException for none or a malformed one.
    private static (int MC, int KC, int NC)[] Parse(string text)
    {
        var list = text.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(s => Gemm.ParseBlocking(s, "--blockings")).Distinct().ToArray();
        return list.Length > 0 ? list : throw new ArgumentException("--blockings names no blocking; give one or more \"MC,KC,NC\" separated by spaces");
    }

    public static int Run(CliIO io, int m, int n, int k, int threads, double seconds, bool json, string blockings)
    {
        var list = Parse(blockings);
        float* a = Aligned((long)m * k), b = Aligned((long)k * n), c = Aligned((long)m * n);
        try
        {
            var random = new Random(1);
            for (long i = 0; i < (long)m * k; i++) a[i] = (float)random.NextDouble() - 0.5f;
            for (long i = 0; i < (long)k * n; i++) b[i] = (float)random.NextDouble() - 0.5f;
            void Call((int, int, int) blocking) => Gemm.SgemmStridedBatchedWithBlocking(blocking, 1, false, false, m, n, k, 1f,
                new ReadOnlySpan<float>(a, m * k), k, 0, new ReadOnlySpan<float>(b, k * n), n, 0, 0f, new Span<float>(c, m * n), n, 0);
            for (int w = 0; w < 2; w++) foreach (var blocking in list) Call(blocking);
            var peak = FmaPeak.Measure(BenchPeak.InlineSeconds, parallel: threads > 1);
            var times = list.Select(_ => new List<double>()).ToArray();
            var total = Stopwatch.StartNew();
            for (int round = 0; round < 5 || total.Elapsed.TotalSeconds < seconds * list.Length; round++)
            {
                for (int q = 0; q < list.Length; q++)
                {
                    int i = (q + round) % list.Length;
                    long t0 = Stopwatch.GetTimestamp();
                    Call(list[i]);
                    times[i].Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                }
                if (times[0].Count >= 2000) break;
            }
            double flops = 2.0 * m * n * k;
            io.Out.WriteLine($"gemm m={m} n={n} k={k} threads={threads} device=cpu rounds={times[0].Count}, blockings taking turns call by call");
            io.Out.WriteLine(BenchPeak.Describe(peak));
            io.Out.WriteLine("  MC,KC,NC           median ms   GFLOP/s  of peak     best ms");
            var rows = new List<Dictionary<string, object>>();
            for (int i = 0; i < list.Length; i++)
            {
                var sorted = times[i].OrderBy(t => t).ToArray();
                double median = sorted[sorted.Length / 2], best = sorted[0], gflops = flops / (median * 1e6);
                string name = Gemm.FormatBlocking(list[i]);
                io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  {name,-16} {median,11:F3} {gflops,9:F1} {100 * gflops / peak.Gflops,7:F1}% {best,11:F3}{(list[i] == Gemm.Blocking ? "  (this process's)" : "")}"));
                rows.Add(new() { ["blocking"] = name, ["ms"] = Math.Round(median, 4), ["best_ms"] = Math.Round(best, 4), ["gflops"] = Math.Round(gflops, 1), ["peak_fraction"] = Math.Round(gflops / peak.Gflops, 4) });
            }
            if (json)
                io.Json(new Dictionary<string, object>
                {
                    ["op"] = "gemm-blockings", ["m"] = m, ["n"] = n, ["k"] = k, ["threads"] = threads, ["rounds"] = times[0].Count,
                    ["peak_gflops"] = Math.Round(peak.Gflops, 1), ["blockings"] = rows,
                });
            return 0;
        }
        finally
        {
            NativeMemory.AlignedFree(a); NativeMemory.AlignedFree(b); NativeMemory.AlignedFree(c);
        }
    }

    // 64-byte aligned, so the ranking measures the blocking alone. A tensor's storage is a pinned .NET array, aligned to
    // 8 bytes only, which costs a 4096³ product 1-3% more (docs/kernels-cpu.md).
    private static float* Aligned(long length) => (float*)NativeMemory.AlignedAlloc((nuint)(length * sizeof(float)), 64);
}
