using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using ScottPlot;

namespace AttnCore.Benchmarks;

/// <summary>
/// Regenerates docs/benchmarks.md and docs/benchmarks.png from a fresh run: each case is one
/// <c>attncore bench ... --vs torch --json</c> call (AttnCore and PyTorch interleaved inside it), so the
/// figures in the docs are always copied from a run, with its date, machine and commit.
/// Usage: <c>dotnet run -c Release --project Benchmarks -- report [--threads 2] [--quick]</c>
/// (run from the repository root after <c>dotnet build -c Release</c>).
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
        string root = FindRoot();
        string cli = Path.Combine(root, "Cli", "bin", "Release", "net10.0", "attncore.dll");
        if (!File.Exists(cli))
        {
            Console.Error.WriteLine($"report: {cli} not found; run `dotnet build -c Release` first");
            return 2;
        }
        var rows = new List<(Case Case, JsonElement Json)>();
        foreach (var c in quick ? Cases.Where(c => !c.Args.Contains("4096") && !c.Args.Contains("small")).ToArray() : Cases)
        {
            Console.WriteLine($"-- {c.Label}: attncore bench {c.Args} --threads {threads} --vs torch --json");
            var (code, lastLine) = RunCli(cli, $"bench {c.Args} --threads {threads} --vs torch --json");
            if (code != 0 || lastLine is null)
            {
                Console.Error.WriteLine($"report: '{c.Args}' failed (exit {code}); skipping it");
                continue;
            }
            rows.Add((c, JsonDocument.Parse(lastLine).RootElement.Clone()));
        }
        if (rows.Count == 0) { Console.Error.WriteLine("report: no case succeeded"); return 1; }

        string docs = Path.Combine(root, "docs");
        string png = Path.Combine(docs, "benchmarks.png");
        WriteChart(rows, png);
        WriteMarkdown(rows, Path.Combine(docs, "benchmarks.md"), threads);
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

    private static void WriteChart(List<(Case Case, JsonElement Json)> rows, string path)
    {
        var plot = new Plot();
        var ours = new List<Bar>();
        var torch = new List<Bar>();
        for (int i = 0; i < rows.Count; i++)
        {
            double speedup = Num(rows[i].Json, "speedup");
            ours.Add(new Bar { Position = i * 3, Value = speedup, FillColor = Colors.SteelBlue });
            torch.Add(new Bar { Position = i * 3 + 1, Value = 1.0, FillColor = Colors.Orange });
        }
        plot.Add.Bars(ours).LegendText = "AttnCore";
        plot.Add.Bars(torch).LegendText = "PyTorch (= 1)";
        plot.Axes.Bottom.SetTicks(rows.Select((_, i) => i * 3 + 0.5).ToArray(), rows.Select(r => r.Case.Label.Replace(" ", "\n", StringComparison.Ordinal)).ToArray());
        plot.Axes.Bottom.MajorTickStyle.Length = 0;
        plot.Axes.Margins(bottom: 0);
        plot.YLabel("speed relative to PyTorch (higher is better)");
        plot.Title("AttnCore vs PyTorch, same machine, same run, 2 threads");
        plot.ShowLegend(Alignment.UpperRight);
        plot.SavePng(path, 1200, 520);
    }

    private static void WriteMarkdown(List<(Case Case, JsonElement Json)> rows, string path, string threads)
    {
        string commit = Git("rev-parse --short HEAD") + (Git("status --porcelain --untracked-files=no").Length > 0 ? " (with uncommitted changes)" : "");
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
        sb.AppendLine();
        sb.AppendLine("| Benchmark | AttnCore ms | PyTorch ms | AttnCore | PyTorch | Speedup (torch ms / ours) |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|");
        foreach (var (c, j) in rows)
        {
            var (ours, torch) = Throughput(j, c.Unit);
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {c.Label} | {Num(j, "ms"):F2} | {Num(j, "torch_ms"):F2} | {ours:F1} {c.Unit} | {torch:F1} {c.Unit} | {Num(j, "speedup"):F2}x |"));
        }
        sb.AppendLine();
        sb.AppendLine("![AttnCore vs PyTorch](benchmarks.png)");
        sb.AppendLine();
        sb.AppendLine("## Reproduce one figure");
        sb.AppendLine();
        sb.AppendLine("```");
        sb.AppendLine("apt-get install -y python3-torch python3-numpy libopenblas0-pthread   # the reference");
        sb.AppendLine("dotnet run -c Release --project Cli -- bench gemm --n 2048 --threads 2 --vs torch");
        sb.AppendLine("```");
        sb.AppendLine();
        sb.AppendLine("The BenchmarkDotNet suites (with MemoryDiagnoser, showing that steady-state calls allocate nothing)");
        sb.AppendLine("run with `dotnet run -c Release --project Benchmarks -- --filter '*'`.");
        File.WriteAllText(path + ".tmp", sb.ToString());
        File.Move(path + ".tmp", path, overwrite: true);
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
