using System.CommandLine;
using System.CommandLine.Parsing;
using System.Text.Json;
using System.Text.RegularExpressions;
using AttnCore.Kernels.Cpu;

namespace AttnCore.Cli;

/// <summary>The output streams and the options every computing command shares.</summary>
public sealed class CliIO(TextWriter stdout, TextWriter stderr)
{
    /// <summary>Standard output.</summary>
    public TextWriter Out { get; } = stdout;
    /// <summary>Standard error.</summary>
    public TextWriter Err { get; } = stderr;

    /// <summary>Writes the one-line JSON result (always the last line of stdout); a NaN or infinite number is written as null.</summary>
    public void Json(object result) => Out.WriteLine(JsonSerializer.Serialize(result, JsonOptions));

    // JSON has no NaN or infinity, and a diverged loss must not turn a finished run into a serializer crash.
    private static readonly JsonSerializerOptions JsonOptions = new() { Converters = { new AttnCore.Models.Training.NonFiniteAsNullConverter() } };
}

/// <summary>--device, --seed, --threads and --json, added to each computing command.</summary>
public sealed class CommonOptions
{
    /// <summary>cpu | ilgpu-cpu | best</summary>
    public Option<string> Device { get; } = DeviceName(new("--device") { Description = "cpu | ilgpu-cpu | cuda[:i] | opencl[:i] | best", DefaultValueFactory = _ => "cpu" });
    /// <summary>Random seed.</summary>
    public Option<ulong> Seed { get; } = new NumericRange(0, ulong.MaxValue, Integer: true).On(new Option<ulong>("--seed") { Description = "random seed", DefaultValueFactory = _ => 1UL });
    /// <summary>Worker threads.</summary>
    public Option<int> Threads { get; } = NumericOption.Int("--threads", "CPU worker threads", Environment.ProcessorCount, 1, 1024);
    /// <summary>JSON result line.</summary>
    public Option<bool> Json { get; } = new("--json") { Description = "print the result as one JSON object on the last line" };

    /// <summary>Adds the options to <paramref name="cmd"/>.</summary>
    public Command AddTo(Command cmd)
    {
        cmd.Options.Add(Device); cmd.Options.Add(Seed); cmd.Options.Add(Threads); cmd.Options.Add(Json);
        return cmd;
    }

    private static readonly Regex DeviceSyntax = new(@"^\s*(cpu|ilgpu-?cpu|best|(cuda|opencl)(:\d+)?)\s*$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant);

    // Only the spelling is checked while parsing: whether such a device is present is known once it is opened.
    private static Option<string> DeviceName(Option<string> option)
    {
        option.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string>() is string name && !DeviceSyntax.IsMatch(name))
                r.AddError($"--device must be cpu, ilgpu-cpu, cuda[:i], opencl[:i] or best, got '{name}'");
        });
        return option;
    }

    /// <summary>Applies --threads and resolves --device.</summary>
    public Device Apply(ParseResult p)
    {
        WorkerPool.ThreadCount = p.GetValue(Threads);
        string name = p.GetValue(Device) ?? "cpu";
        return name == "best" ? AttnCore.Device.Cpu : AttnCore.Device.Parse(name);
    }
}

/// <summary>
/// The kinds of path an option names. The rule is the option's validator, so a path that cannot work is a
/// usage error found while parsing (exit 2, nothing run); <see cref="PathRule.Of"/> finds it on an option for the tests.
/// </summary>
public enum PathKind
{
    /// <summary>A file that must exist (input data, a checkpoint).</summary>
    ExistingFile,
    /// <summary>A folder the command writes into: it may not exist yet, but it cannot be a file or lie under one.</summary>
    OutputFolder,
    /// <summary>A file the command writes (replacing it): it cannot be a folder or lie under a file.</summary>
    OutputFile,
    /// <summary>A file or a folder that must exist (a data set given as a folder or as an archive).</summary>
    ExistingPath,
}

/// <summary>A path option's rule (see <see cref="PathKind"/>).</summary>
public sealed record PathRule(PathKind Kind)
{
    /// <summary>The rule on <paramref name="option"/>, or null when it has none.</summary>
    public static PathRule? Of(Option option) => option.Validators.Select(v => v.Target).OfType<PathRule>().FirstOrDefault();

    /// <summary>A required option naming an existing file.</summary>
    public static Option<string> ExistingFile(string name, string description) =>
        new PathRule(PathKind.ExistingFile).On(new Option<string>(name) { Description = description, Required = true });

    /// <summary>A required option naming an existing file or folder.</summary>
    public static Option<string> ExistingPath(string name, string description) =>
        new PathRule(PathKind.ExistingPath).On(new Option<string>(name) { Description = description, Required = true });

    /// <summary>An output folder option with a default.</summary>
    public static Option<string> OutputFolder(string name, string description, string defaultValue) =>
        new PathRule(PathKind.OutputFolder).On(new Option<string>(name) { Description = description, DefaultValueFactory = _ => defaultValue });

    /// <summary>A required option naming a file to write.</summary>
    public static Option<string> OutputFile(string name, string description) =>
        new PathRule(PathKind.OutputFile).On(new Option<string>(name) { Description = description, Required = true });

    private Option<string> On(Option<string> option)
    {
        option.Validators.Add(Validate);
        return option;
    }

    private void Validate(OptionResult result)
    {
        if (result.Errors.Any() || result.GetValueOrDefault<string>() is not string path) return;
        string name = result.Option.Name;
        if (path.Length == 0) { result.AddError($"{name} is empty"); return; }
        if (Kind == PathKind.ExistingFile)
        {
            if (Directory.Exists(path)) result.AddError($"{name} '{path}' is a folder, not a file");
            else if (!File.Exists(path)) result.AddError($"{name}: no file at '{path}'");
            return;
        }
        if (Kind == PathKind.ExistingPath)
        {
            if (!File.Exists(path) && !Directory.Exists(path)) result.AddError($"{name}: no file or folder at '{path}'");
            return;
        }
        if (Kind == PathKind.OutputFile)
        {
            if (Directory.Exists(path)) { result.AddError($"{name} '{path}' is a folder; it must name the file to write"); return; }
        }
        else if (File.Exists(path)) { result.AddError($"{name} '{path}' is a file; it must name a folder for the run's files"); return; }
        for (string? up = Path.GetDirectoryName(Path.GetFullPath(path)); up is not null; up = Path.GetDirectoryName(up))
            if (File.Exists(up)) { result.AddError($"{name} '{path}' cannot be created: '{up}' is a file"); return; }
            else if (Directory.Exists(up)) return;
    }

    /// <summary>
    /// Creates the output folder and proves it writable with a probe file (deleted again) before a command
    /// spends time computing what it will write there; the failure names the command, the option and the path.
    /// </summary>
    public static void PrepareOutputFolder(string command, string option, string path)
    {
        string probe = Path.Combine(path, $".attncore-write-probe-{Environment.ProcessId}");
        bool created = !Directory.Exists(path);
        try
        {
            Directory.CreateDirectory(path);
            File.WriteAllBytes(probe, []);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            if (created && Directory.Exists(path)) Directory.Delete(path);
            throw new IOException($"{command}: cannot write to {option} '{path}': {e.Message}", e);
        }
        finally
        {
            try { File.Delete(probe); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
    }
}
