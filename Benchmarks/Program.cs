using BenchmarkDotNet.Running;

namespace AttnCore.Benchmarks;

/// <summary>
/// Entry point. <c>dotnet run -c Release --project Benchmarks -- --filter '*Gemm*'</c> runs the
/// BenchmarkDotNet suites (one per kernel family, each with MemoryDiagnoser);
/// <c>dotnet run -c Release --project Benchmarks -- report</c> re-measures AttnCore against PyTorch
/// through <c>attncore bench --vs torch --json</c> and rewrites docs/benchmarks.md and its chart.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "report") return BenchReport.Run(args[1..]);
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        return 0;
    }
}
