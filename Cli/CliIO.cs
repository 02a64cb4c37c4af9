using System.CommandLine;
using System.Text.Json;
using AttnCore.Kernels.Cpu;

namespace AttnCore.Cli;

/// <summary>The output streams and the options every computing command shares.</summary>
public sealed class CliIO(TextWriter stdout, TextWriter stderr)
{
    /// <summary>Standard output.</summary>
    public TextWriter Out { get; } = stdout;
    /// <summary>Standard error.</summary>
    public TextWriter Err { get; } = stderr;

    /// <summary>Writes the one-line JSON result (always the last line of stdout).</summary>
    public void Json(object result) => Out.WriteLine(JsonSerializer.Serialize(result));
}

/// <summary>--device, --seed, --threads and --json, added to each computing command.</summary>
public sealed class CommonOptions
{
    /// <summary>cpu | ilgpu-cpu | best</summary>
    public Option<string> Device { get; } = new("--device") { Description = "cpu | ilgpu-cpu | cuda[:i] | opencl[:i] | best", DefaultValueFactory = _ => "cpu" };
    /// <summary>Random seed.</summary>
    public Option<ulong> Seed { get; } = new("--seed") { Description = "random seed", DefaultValueFactory = _ => 1UL };
    /// <summary>Worker threads.</summary>
    public Option<int> Threads { get; } = new("--threads") { Description = "CPU worker threads", DefaultValueFactory = _ => Environment.ProcessorCount };
    /// <summary>JSON result line.</summary>
    public Option<bool> Json { get; } = new("--json") { Description = "print the result as one JSON object on the last line" };

    /// <summary>Adds the options to <paramref name="cmd"/>.</summary>
    public Command AddTo(Command cmd)
    {
        cmd.Options.Add(Device); cmd.Options.Add(Seed); cmd.Options.Add(Threads); cmd.Options.Add(Json);
        return cmd;
    }

    /// <summary>Applies --threads and resolves --device.</summary>
    public Device Apply(ParseResult p)
    {
        int threads = p.GetValue(Threads);
        if (threads < 1) throw new ArgumentException($"--threads must be at least 1, got {threads}");
        WorkerPool.ThreadCount = threads;
        string name = p.GetValue(Device) ?? "cpu";
        return name == "best" ? AttnCore.Device.Cpu : AttnCore.Device.Parse(name);
    }
}
