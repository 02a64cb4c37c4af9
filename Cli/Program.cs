using System.CommandLine;
using AttnCore.Cli.Commands;

namespace AttnCore.Cli;

/// <summary>
/// The <c>attncore</c> app. Contract (docs/architecture.md, DESIGN "The CLI contract"): with --json the last
/// stdout line is one JSON object; exit 0 on success, non-zero with a one-line reason on stderr otherwise:
/// 2 for a usage error found while parsing (nothing run or written), 1 for a run that failed, 70 for a bug.
/// </summary>
public static class Program
{
    /// <summary>Process entry point.</summary>
    public static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>Runs the CLI with the given streams (what the tests call).</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var root = Commands(new CliIO(stdout, stderr));
        var parsed = root.Parse(args);
        string? usageError = parsed.Errors.Count > 0 ? Readable(parsed.Errors[0]) : OptionRules.FirstViolation(parsed);
        if (usageError is not null)
        {
            string command = string.Join(' ', args.TakeWhile(a => !a.StartsWith('-')).Take(2).Prepend("attncore"));
            stderr.WriteLine($"attncore: {OneLine(usageError)} (see '{command} --help')");
            return 2;
        }
        try
        {
            return parsed.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or NotSupportedException or IOException or InvalidDataException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"attncore: {OneLine(e.Message)}");
            return 1;
        }
        catch (TypeInitializationException e) when (e.InnerException is ArgumentException inner)
        {
            // A setting read once per process (ATTNCORE_GEMM_BLOCKING) that is malformed: the user's input, not a bug.
            stderr.WriteLine($"attncore: {OneLine(inner.Message)}");
            return 1;
        }
        catch (OutOfMemoryException e)
        {
            // Sizes are checked while parsing, but what fits depends on the machine: not a bug, and not a stack trace.
            stderr.WriteLine($"attncore: out of memory: {OneLine(e.Message)} (try smaller sizes)");
            return 1;
        }
        catch (Exception e) when (e is not StackOverflowException)
        {
            // Anything else is a bug in AttnCore: still one line (the contract), with the stack trace on request.
            stderr.WriteLine($"attncore: internal error: {e.GetType().Name}: {OneLine(e.Message)}" +
                (Environment.GetEnvironmentVariable("ATTNCORE_DEBUG") is null ? " (set ATTNCORE_DEBUG=1 for the stack trace)" : ""));
            if (Environment.GetEnvironmentVariable("ATTNCORE_DEBUG") is not null) stderr.WriteLine(e);
            return 70;
        }
    }

    /// <summary>
    /// The command tree, every option with its checks attached: what <see cref="Run"/> parses, and what the tests
    /// walk to prove that every numeric option has a range (<see cref="NumericRange"/>) and every path a rule (<see cref="PathRule"/>).
    /// </summary>
    public static RootCommand Commands(CliIO io)
    {
        var root = new RootCommand("AttnCore: tensors, autograd and Transformers in C#, with hand-written SIMD and ILGPU kernels.");
        root.Subcommands.Add(DemoCommand.Create(io));
        root.Subcommands.Add(DevicesCommand.Create(io));
        root.Subcommands.Add(BenchCommand.Create(io));
        root.Subcommands.Add(TrainCommand.Create(io));
        root.Subcommands.Add(EvalCommand.Create(io));
        root.Subcommands.Add(GenerateCommand.Create(io));
        root.Subcommands.Add(ExportCommand.Create(io));
        root.Subcommands.Add(ClassifyCommand.Create(io));
        root.Subcommands.Add(RecommendCommand.Create(io));
        root.Subcommands.Add(PlayCommand.Create(io));
        root.Subcommands.Add(ForecastCommand.Create(io));
        return root;
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();

    // System.CommandLine names CLR types in its parse errors ("as expected type 'System.Nullable`1[System.Int32]'"),
    // separates choices with tabs, and does not always name the option ("Argument 'x' not recognized").
    private static string Readable(System.CommandLine.Parsing.ParseError error)
    {
        string message = error.Message.Replace("\t", "", StringComparison.Ordinal);
        foreach (var (clr, word) in new[] { ("System.Nullable`1[System.Int32]", "an integer"), ("System.Int32", "an integer"), ("System.UInt64", "a non-negative integer"),
                     ("System.Double", "a number"), ("System.Nullable`1[System.Double]", "a number"), ("System.Boolean", "true or false") })
            message = message.Replace($"as expected type '{clr}'", $"as {word}", StringComparison.Ordinal);
        for (var r = error.SymbolResult; r is not null; r = r.Parent)
            if (r is System.CommandLine.Parsing.OptionResult o && !message.Contains(o.Option.Name, StringComparison.Ordinal))
                return OneLine($"{o.Option.Name}: {message}");
        return OneLine(message);
    }
}
