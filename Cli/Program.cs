using System.CommandLine;
using AttnCore.Cli.Commands;

namespace AttnCore.Cli;

/// <summary>
/// The <c>attncore</c> app. Contract (docs/architecture.md, DESIGN "The CLI contract"): with --json the last
/// stdout line is one JSON object; exit 0 on success, non-zero with a one-line reason on stderr otherwise.
/// </summary>
public static class Program
{
    /// <summary>Process entry point.</summary>
    public static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>Runs the CLI with the given streams (what the tests call).</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var root = new RootCommand("AttnCore: tensors, autograd and Transformers in C#, with hand-written SIMD and ILGPU kernels.");
        var io = new CliIO(stdout, stderr);
        root.Subcommands.Add(DemoCommand.Create(io));
        root.Subcommands.Add(DevicesCommand.Create(io));
        root.Subcommands.Add(BenchCommand.Create(io));
        root.Subcommands.Add(TrainCommand.Create(io));
        root.Subcommands.Add(EvalCommand.Create(io));
        root.Subcommands.Add(GenerateCommand.Create(io));
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            stderr.WriteLine($"attncore: {parsed.Errors[0].Message} (see 'attncore {string.Join(' ', args.TakeWhile(a => !a.StartsWith('-')).Take(2))} --help')");
            return 2;
        }
        try
        {
            return parsed.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or NotSupportedException or IOException or InvalidDataException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"attncore: {e.Message}");
            return 1;
        }
    }
}
