using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using AttnCore.Presentation;

namespace AttnCore.Benchmarks;

/// <summary>
/// Regenerates docs/benchmarks.md and docs/benchmarks.png from a fresh run: each case is one
/// <c>attncore bench ... --vs torch --json</c> call (AttnCore and PyTorch interleaved inside it), so the
/// figures in the docs are always copied from a run, with its date, machine and commit, the configuration the
/// PyTorch process reported about itself, and each GEMM and attention rate as a fraction of the FMA peak
/// measured in the same run.
/// Usage: <c>dotnet run -c Release --project Benchmarks -- report [--threads 2] [--quick] [--seconds S] [--out DIR]</c>
/// (run from the repository root after <c>dotnet build -c Release</c>; --seconds is the measurement time per side
/// and case, default bench's 3; --out writes the page and chart to DIR instead of docs/, for a dry run).
/// </summary>
public static class BenchReport
{
    private sealed record Case(string Label, string Args, string Unit);

    private static readonly Case[] Cases =
    [
        new("SGEMM 1024³", "gemm --n 1024", "GFLOP/s"),
        new("SGEMM 2048³", "gemm --n 2048", "GFLOP/s"),
        new("SGEMM 4096³", "gemm --n 4096", "GFLOP/s"),
        new("Attention fwd B1 H8 L1024 D64", "attention --b 1 --h 8 --l 1024 --d 64", "GFLOP/s"),
        new("Attention fwd causal", "attention --b 1 --h 8 --l 1024 --d 64 --causal", "GFLOP/s"),
        new("Attention fwd+bwd", "attention --b 1 --h 8 --l 1024 --d 64 --backward", "GFLOP/s"),
        new("Softmax 4096x1024", "softmax --rows 4096 --cols 1024", "GB/s"),
        new("LayerNorm 4096x1024", "layernorm --rows 4096 --cols 1024", "GB/s"),
        new("GPT step baby", "gpt-step --config baby", "tokens/s"),
        new("GPT step small", "gpt-step --config small", "tokens/s"),
    ];

    public static int Run(string[] args)
    {
        string threads = Arg(args, "--threads") ?? "2";
        bool quick = args.Contains("--quick");
        string seconds = Arg(args, "--seconds") is { } s ? $" --seconds {s}" : "";
        string root = FindRoot();
        string cli = Path.Combine(root, "Cli", "bin", "Release", "net10.0", "attncore.dll");
        if (!File.Exists(cli))
        {
            Console.Error.WriteLine($"report: {cli} not found; run `dotnet build -c Release` first");
            return 2;
        }
        // The tree as it was measured: taken before the runs, and blind to this report's own outputs (the chart is
        // written before the page, so a check at the end would always find the tree changed).
        bool dirty = Git("status --porcelain --untracked-files=no").Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Any(line => !line.EndsWith("docs/benchmarks.md", StringComparison.Ordinal) && !line.EndsWith("docs/benchmarks.png", StringComparison.Ordinal));
        string commit = Git("rev-parse --short HEAD") + (dirty ? " (with uncommitted changes)" : "");
        var rows = new List<(Case Case, JsonElement Json)>();
        foreach (var c in quick ? Cases.Where(c => !c.Args.Contains("4096") && !c.Args.Contains("small")).ToArray() : Cases)
        {
            string arguments = $"bench {c.Args} --threads {threads}{seconds} --vs torch --json";
            Console.WriteLine($"-- {c.Label}: attncore {arguments}");
            var (code, lastLine) = RunCli(cli, arguments);
            if (code != 0 || lastLine is null)
            {
                Console.Error.WriteLine($"report: '{c.Args}' failed (exit {code}); skipping it");
                continue;
            }
            rows.Add((c, JsonDocument.Parse(lastLine).RootElement.Clone()));
        }
        if (rows.Count == 0) { Console.Error.WriteLine("report: no case succeeded"); return 1; }

        string docs = Arg(args, "--out") ?? Path.Combine(root, "docs");
        Directory.CreateDirectory(docs);
        string png = Path.Combine(docs, "benchmarks.png");
        WriteChart(rows, png, threads);
        WriteMarkdown(rows, Path.Combine(docs, "benchmarks.md"), threads, commit);
        Console.WriteLine($"wrote {Path.Combine(docs, "benchmarks.md")} and {png}");
        return 0;
    }

    private static string? Arg(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(Directory.GetCurrentDirectory());
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "AttnCore.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("report: run it inside the AttnCore repository (AttnCore.sln not found above the current directory)");
    }

    private static (int Code, string? LastLine) RunCli(string cli, string arguments)
    {
        var psi = new ProcessStartInfo("dotnet", $"\"{cli}\" {arguments}") { RedirectStandardOutput = true, UseShellExecute = false };
        using var p = Process.Start(psi)!;
        string? last = null;
        while (p.StandardOutput.ReadLine() is { } line)
        {
            Console.WriteLine("   " + line);
            if (line.TrimStart().StartsWith('{')) last = line;
        }
        p.WaitForExit();
        return (p.ExitCode, last);
    }

    private static double Num(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : double.NaN;

    private static (double Ours, double Torch) Throughput(JsonElement j, string unit) => unit switch
    {
        "GB/s" => (Num(j, "gbps"), Num(j, "torch_gbps")),
        "tokens/s" => (Num(j, "tokens_per_s"), Num(j, "torch_tokens_per_s")),
        _ => (Num(j, "gflops"), Num(j, "torch_gflops")),
    };

    private static void WriteChart(List<(Case Case, JsonElement Json)> rows, string path, string threads) =>
        Plots.SpeedupBars(rows.Select(r => (r.Case.Label, Num(r.Json, "speedup"))).ToArray(), "AttnCore", "PyTorch",
            $"AttnCore vs PyTorch, same machine, same run, {threads} threads", path);

    private static void WriteMarkdown(List<(Case Case, JsonElement Json)> rows, string path, string threads, string commit)
    {
        string cpu = File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown CPU"
            : "unknown CPU";
        var sb = new StringBuilder();
        sb.AppendLine("# Benchmarks: AttnCore against PyTorch on the CPU");
        sb.AppendLine();
        sb.AppendLine("Every figure below was produced by `dotnet run -c Release --project Benchmarks -- report`, which calls");
        sb.AppendLine("`attncore bench <op> --vs torch --json` for each case: AttnCore and PyTorch (Debian's python3-torch on");
        sb.AppendLine("OpenBLAS/oneDNN, `torch.set_num_threads` to the same count) run the same shapes interleaved in one");
        sb.AppendLine("process pair, and the medians are compared as a ratio, because the machine is shared and noisy.");
        sb.AppendLine("Re-run the command to refresh this page and the chart; do not edit the numbers by hand.");
        sb.AppendLine();
        sb.AppendLine($"- Date: {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
        sb.AppendLine($"- Machine: {cpu}, {Environment.ProcessorCount} cores, {threads} threads");
        sb.AppendLine($"- Commit: {commit}");
        sb.AppendLine($"- .NET {Environment.Version}");
        sb.AppendLine($"- Reference: {ReferenceConfiguration(rows)}");
        sb.AppendLine($"- {PeakRange(rows, threads)}");
        sb.AppendLine();
        sb.AppendLine("| Benchmark | AttnCore ms | PyTorch ms | AttnCore | PyTorch | AttnCore % of peak | PyTorch % of peak | Speedup (torch ms / ours) |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var (c, j) in rows)
        {
            var (ours, torch) = Throughput(j, c.Unit);
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {c.Label} | {Num(j, "ms"):F2} | {Num(j, "torch_ms"):F2} | {ours:F1} {c.Unit} | {torch:F1} {c.Unit} | {Percent(Num(j, "peak_fraction"))} | {Percent(Num(j, "torch_peak_fraction"))} | {Num(j, "speedup"):F2}x |"));
        }
        sb.AppendLine();
        foreach (var line in ReferenceText) sb.AppendLine(line);
        sb.AppendLine();
        sb.AppendLine("![AttnCore vs PyTorch](benchmarks.png)");
        sb.AppendLine();
        sb.AppendLine("## Reproduce one figure");
        sb.AppendLine();
        sb.AppendLine("```");
        sb.AppendLine("apt-get install -y python3-torch python3-numpy libopenblas0-pthread   # the reference");
        sb.AppendLine("dotnet run -c Release --project Cli -- bench peak --threads 2                      # the FMA ceiling");
        sb.AppendLine("dotnet run -c Release --project Cli -- bench gemm --n 2048 --threads 2 --vs torch");
        sb.AppendLine("dotnet run -c Release --project Cli -- bench gemm --n 2048 --threads 2 --vs torch --torch-untuned   # the handicapped reference, for contrast");
        sb.AppendLine("```");
        sb.AppendLine();
        sb.AppendLine("The BenchmarkDotNet suites (with MemoryDiagnoser, showing that steady-state calls allocate nothing)");
        sb.AppendLine("run with `dotnet run -c Release --project Benchmarks -- --filter '*'`.");
        File.WriteAllText(path + ".tmp", sb.ToString());
        File.Move(path + ".tmp", path, overwrite: true);
    }

    /// <summary>How the reference is set up and what "% of peak" means: the same text as docs/benchmarks.md's section.</summary>
    internal static readonly string[] ReferenceText =
    [
        "## How the reference is configured",
        "",
        "PyTorch runs in its own `/usr/bin/python3` process (`Cli/Bench/torch_bench.py`), started and driven by",
        "`attncore bench`, and batches of AttnCore runs and PyTorch runs alternate. Unless `--torch-untuned` is given,",
        "that process gets its best configuration for this machine (`TorchBridge.CreateStartInfo`):",
        "",
        "- OpenBLAS chooses its own kernels: `OPENBLAS_CORETYPE` and `OPENBLAS_L2_SIZE`, which this environment sets",
        "  for other tools, are removed from the child's environment. Inherited, they force OpenBLAS's AVX2 (Haswell)",
        "  kernels on an AVX-512 CPU, at well under half its SGEMM rate. The core OpenBLAS really runs is read back",
        "  with `openblas_get_corename` and printed. Where OpenBLAS does not know the CPU (0.3.21 on an Emerald Rapids",
        "  Xeon falls back to Prescott, SSE3 kernels, about a sixth of the SGEMM rate), the process is started again",
        "  with the core the CPU's flags allow (`TorchBridge.CoreTypeFor`: Cooperlake with AVX512-BF16, else SkylakeX",
        "  with AVX-512, else Haswell with AVX2), and the report says so.",
        "- Freed memory stays in the process: jemalloc through `LD_PRELOAD` with",
        "  `MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1` where libjemalloc2 is installed (PyTorch's CPU tuning",
        "  guides recommend jemalloc or tcmalloc), otherwise glibc malloc with `MALLOC_MMAP_THRESHOLD_` and",
        "  `MALLOC_TRIM_THRESHOLD_` at 16 GiB and `MALLOC_TOP_PAD_` at 1 GiB; `--torch-allocator` chooses. Page faults",
        "  are expensive in this virtual machine, and with the defaults every large PyTorch temporary is mapped and",
        "  faulted in afresh (most of a naive attention forward's time went there).",
        "- Threads: `torch.set_num_threads` and `OMP_NUM_THREADS` equal AttnCore's `--threads`, and",
        "  `OMP_WAIT_POLICY=PASSIVE` makes idle OpenMP threads sleep instead of spinning through AttnCore's batches.",
        "- OpenBLAS's idle threads spin for 2^18 cycles (about 70 µs) before sleeping: `OPENBLAS_THREAD_TIMEOUT=18`",
        "  (since 2026-12-06). With OpenBLAS's default of 2^28 cycles (about 0.1 s), its two threads spun after each",
        "  matmul while PyTorch's OpenMP threads ran the softmax or GELU that followed, on the same two cores. Setting",
        "  it made PyTorch's attention forward about 20% faster here (22.3 against 17.6-18.0 ms), its causal forward",
        "  27% faster and its GPT-small step 7-10% faster, so reports before that date compared against a reference",
        "  that slowed itself down.",
        "- Turns do not overlap: after its batch, OpenBLAS's own threads keep spinning for work (0.13 s of CPU after",
        "  a 2048 SGEMM here), so a PyTorch turn ends only when its process has used no CPU for 50 ms",
        "  (`TorchBridge.WaitUntilIdle`, at most 2 s). Before 2026-12-04 (d910073) AttnCore's next batch, and the",
        "  peak measured after the warm-up, shared a core with that spinning: the figures of earlier reports",
        "  understate AttnCore's two-thread GEMM and the two-thread peak.",
        "- The same instruction set as AttnCore: where AttnCore's JIT is told to leave AVX-512 out",
        "  (`DOTNET_EnableAVX512=0`, which makes this machine an AVX2 one for .NET), the reference is held to AVX2 too:",
        "  `ATEN_CPU_CAPABILITY=avx2` and `OPENBLAS_CORETYPE=Haswell` (`TorchBridge.IsaMatchFor`; 128-bit vectors:",
        "  `default` and Nehalem), and the report says so. Otherwise an inherited `ATEN_CPU_CAPABILITY` is removed.",
        "",
        "Every run prints the configuration the reference process reports about itself (torch version, OpenBLAS",
        "core and threads, allocator, threads, `OMP_WAIT_POLICY`, the `OPENBLAS_*` variables it sees); the JSON",
        "carries it as `torch_config`.",
        "",
        "## Fraction of peak",
        "",
        "`attncore bench peak` measures the float32 FMA peak in C# (`Kernels/Cpu/Peak.cs`: 16 independent Vector512",
        "FMA chains per thread, 12 Vector256 chains where AVX-512 is not accelerated, 12 Vector128 chains where",
        "neither is) on one thread and on all",
        "`--threads` threads of the WorkerPool. Each GEMM and attention run measures that peak again for its own",
        "thread count (about 0.2 s, best round) and gives both AttnCore's and PyTorch's rate as a fraction of it",
        "(\"% of peak\"): a figure close to 100% leaves no room, whatever the other side does.",
    ];

    private static string Percent(double fraction) => double.IsNaN(fraction) ? "–" : string.Create(CultureInfo.InvariantCulture, $"{100 * fraction:F0}%");

    // The configuration the PyTorch process reported (the same in every case of one report).
    private static string ReferenceConfiguration(List<(Case Case, JsonElement Json)> rows)
    {
        var j = rows[0].Json;
        if (!j.TryGetProperty("torch_config", out var c)) return "PyTorch (configuration not reported)";
        string Get(string key) => c.TryGetProperty(key, out var v) ? v.GetString() ?? "?" : "?";
        bool tuned = j.TryGetProperty("torch_tuned", out var t) && t.GetBoolean();
        return $"PyTorch {Get("torch")}, {(tuned ? "tuned" : "**untuned** (inherited environment)")}: OpenBLAS core {Get("blas_core")} ({Get("blas_threads")} threads), "
            + $"allocator {Get("allocator")}, {Get("threads")} threads, OMP_WAIT_POLICY={Get("omp_wait_policy")}, "
            + $"OPENBLAS_CORETYPE={Get("openblas_coretype")}"
            + (c.TryGetProperty("openblas_fallback_core", out var g) ? $" (set from the CPU's flags: by itself OpenBLAS chose {g.GetString()}, a generic core)" : "")
            + $", OPENBLAS_L2_SIZE={Get("openblas_l2_size")}, OPENBLAS_THREAD_TIMEOUT={Get("openblas_thread_timeout")}"
            + $", ATEN_CPU_CAPABILITY={Get("aten_cpu_capability")}"
            + (c.TryGetProperty("isa_matched", out var isa) ? $"; instruction set matched to AttnCore's {isa.GetString()}" : "");
    }

    private static string PeakRange(List<(Case Case, JsonElement Json)> rows, string threads)
    {
        var peaks = rows.Select(r => Num(r.Json, "peak_gflops")).Where(double.IsFinite).ToArray();
        if (peaks.Length == 0) return "FMA peak: not measured (no GEMM or attention case ran)";
        return string.Create(CultureInfo.InvariantCulture,
            $"FMA peak ({threads} threads, measured in each GEMM/attention run): {peaks.Min():F0}-{peaks.Max():F0} GFLOP/s");
    }

    private static string Git(string args)
    {
        try
        {
            var p = Process.Start(new ProcessStartInfo("git", args) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false })!;
            string s = p.StandardOutput.ReadToEnd().Trim();
            p.WaitForExit();
            return s;
        }
        catch (System.ComponentModel.Win32Exception) { return "unknown"; }
    }
}
