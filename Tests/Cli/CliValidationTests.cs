using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using AttnCore.Cli;
using NUnit.Framework;

namespace AttnCore.Tests.Cli;

/// <summary>
/// Every option of every command, found by walking the System.CommandLine tree (so an option added later cannot
/// escape): bad values are usage errors (one line, exit 2, no stack trace, nothing run or written), the bounds
/// themselves are accepted, and a training run that diverges or cannot write ends with one line and no stray files.
/// </summary>
[TestFixture, Category("Cli"), NonParallelizable]
public class CliValidationTests
{
    string _root = "";
    string _text = "";

    [SetUp]
    public void MakeFolder()
    {
        _root = Path.Combine(Path.GetTempPath(), "attncore-cli-validation-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_root);
        _text = Path.Combine(_root, "input.txt");
        File.WriteAllText(_text, string.Concat(Enumerable.Repeat("to be or not to be, that is the question. ", 40)));
    }

    [TearDown]
    public void RemoveFolder() => Directory.Delete(_root, true);

    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    /// <summary>Every command that runs something, with the words that name it (["bench", "gemm"]).</summary>
    static List<(string[] Words, Command Command)> Leaves()
    {
        var found = new List<(string[], Command)>();
        void Walk(Command c, string[] words)
        {
            if (c.Action is not null) found.Add((words, c));
            foreach (var sub in c.Subcommands) Walk(sub, [.. words, sub.Name]);
        }
        Walk(Program.Commands(new CliIO(TextWriter.Null, TextWriter.Null)), []);
        return found;
    }

    // Values that let a command parse: the required options (all existing files today) and the outputs inside the test folder.
    string[] BaseArgs(string[] words, Command command, Option? except = null)
    {
        var args = new List<string>(words);
        foreach (var option in command.Options.Where(o => o != except))
        {
            var rule = PathRule.Of(option);
            if (option.Required && rule?.Kind == PathKind.OutputFile) args.AddRange([option.Name, Path.Combine(_root, "out.onnx")]);
            else if (option.Required)
            {
                Assert.That(rule?.Kind, Is.EqualTo(PathKind.ExistingFile).Or.EqualTo(PathKind.ExistingPath), $"{string.Join(' ', words)} {option.Name}: a required option the test cannot fill in");
                args.AddRange([option.Name, _text]);
            }
            else if (rule?.Kind == PathKind.OutputFolder) args.AddRange([option.Name, Path.Combine(_root, "out")]);
        }
        return [.. args];
    }

    static readonly Type[] NumericTypes = [typeof(int), typeof(int?), typeof(double), typeof(ulong)];

    static bool Parses(Type type, string text, out double value)
    {
        value = double.NaN;
        var inv = CultureInfo.InvariantCulture;
        if (type == typeof(int) || type == typeof(int?)) { bool ok = int.TryParse(text, NumberStyles.Integer, inv, out int i); value = i; return ok; }
        if (type == typeof(ulong)) { bool ok = ulong.TryParse(text, NumberStyles.Integer, inv, out ulong u); value = u; return ok; }
        return double.TryParse(text, NumberStyles.Float, inv, out value);
    }

    static IEnumerable<string> BadCandidates(NumericRange r)
    {
        var inv = CultureInfo.InvariantCulture;
        yield return "abc"; yield return "NaN"; yield return "0"; yield return "-3"; yield return "1.5"; yield return "1e400"; yield return "-Infinity";
        yield return "99999999999999999999";
        yield return (r.MinExclusive ? r.Min : r.Min - 1).ToString("R", inv);
        if (double.IsFinite(r.Max) && r.Max < int.MaxValue) yield return (r.MaxExclusive ? r.Max : r.Max + 1).ToString("R", inv);
    }

    [Test]
    public void The_walk_finds_every_command()
    {
        var names = Leaves().Select(l => string.Join(' ', l.Words)).ToArray();
        Assert.That(names, Is.SupersetOf(new[] { "demo", "devices", "bench gemm", "bench softmax", "bench layernorm", "bench attention", "bench gpt-step", "train gpt", "eval", "generate" }));
    }

    [Test]
    public void Every_numeric_option_declares_a_range_and_rejects_values_outside_it_as_a_one_line_usage_error()
    {
        int checkedValues = 0;
        foreach (var (words, command) in Leaves())
            foreach (var option in command.Options.Where(o => NumericTypes.Contains(o.ValueType)))
            {
                string where = $"{string.Join(' ', words)} {option.Name}";
                var range = NumericRange.Of(option);
                Assert.That(range, Is.Not.Null, $"{where}: a numeric option without a NumericRange");
                Assert.That(option.Description, Does.Contain(range!.Describe()), $"{where}: the help states the range");
                foreach (var value in BadCandidates(range).Distinct())
                {
                    if (Parses(option.ValueType, value, out double v) && range.Contains(v)) continue; // a valid value for this option
                    var (code, stdout, stderr) = Run([.. BaseArgs(words, command, option), option.Name, value]);
                    string context = $"{where} {value}: {stderr}";
                    Assert.That(code, Is.EqualTo(2), context);
                    Assert.That(stderr.TrimEnd().Split('\n'), Has.Length.EqualTo(1), context);
                    Assert.That(stderr, Does.Contain(option.Name).And.Contain(value), context);
                    Assert.That(stderr, Does.Not.Contain(" at ").And.Not.Contain("Exception").And.Not.Contain("internal error"), context);
                    Assert.That(stdout, Is.Empty, context);
                    checkedValues++;
                }
            }
        Assert.That(Directory.GetFileSystemEntries(_root), Is.EqualTo(new[] { _text }), "a usage error writes nothing");
        Assert.That(checkedValues, Is.GreaterThan(150));
    }

    [Test]
    public void The_bounds_of_every_numeric_range_are_accepted()
    {
        var inv = CultureInfo.InvariantCulture;
        foreach (var (words, command) in Leaves())
            foreach (var option in command.Options.Where(o => NumericRange.Of(o) is not null))
            {
                var r = NumericRange.Of(option)!;
                var bounds = new List<double> { r.MinExclusive ? r.Min + (r.Integer ? 1 : 1e-3) : r.Min };
                if (double.IsFinite(r.Max) && r.Max <= int.MaxValue) bounds.Add(r.MaxExclusive ? r.Max - (r.Integer ? 1 : 1e-3) : r.Max);
                foreach (var b in bounds)
                {
                    var parsed = Program.Commands(new CliIO(TextWriter.Null, TextWriter.Null)).Parse([.. BaseArgs(words, command, option), option.Name, b.ToString("R", inv)]);
                    Assert.That(parsed.Errors.Select(e => e.Message), Is.Empty, $"{string.Join(' ', words)} {option.Name} {b}");
                }
            }
    }

    [Test]
    public void Path_options_reject_missing_files_and_unusable_output_folders_while_parsing()
    {
        string underAFile = Path.Combine(_text, "run");
        int pathOptions = 0;
        foreach (var (words, command) in Leaves())
            foreach (var option in command.Options.Where(o => o.ValueType == typeof(string)))
            {
                string where = $"{string.Join(' ', words)} {option.Name}";
                var rule = PathRule.Of(option);
                string[] bad = rule?.Kind switch
                {
                    PathKind.ExistingFile => [Path.Combine(_root, "missing.txt"), _root, ""],
                    PathKind.OutputFolder => [underAFile, _text, ""],
                    PathKind.OutputFile => [underAFile, _root, ""],
                    PathKind.ExistingPath => [Path.Combine(_root, "missing"), ""],
                    _ => option.Name == "--prompt" ? ["no-such-choice-xyz", ""] : ["no-such-choice-xyz"],
                };
                foreach (var value in bad)
                {
                    var (code, _, stderr) = Run([.. BaseArgs(words, command, option), option.Name, value]);
                    if (rule is null && option.Name == "--prompt" && value.Length > 0) { Assert.That(code, Is.Not.EqualTo(2), "free text"); continue; }
                    Assert.That(code, Is.EqualTo(2), $"{where} '{value}': {stderr}");
                    Assert.That(stderr.TrimEnd().Split('\n'), Has.Length.EqualTo(1), $"{where} '{value}'");
                    Assert.That(stderr, Does.Contain(option.Name), $"{where} '{value}'");
                    if (value.Length > 0) Assert.That(stderr, Does.Contain(value), $"{where} '{value}'");
                    if (rule is not null) pathOptions++;
                }
            }
        Assert.That(pathOptions, Is.GreaterThanOrEqualTo(3 * 6), "--data x2, --checkpoint x2, --out x2");
        Assert.That(Directory.GetFileSystemEntries(_root), Is.EqualTo(new[] { _text }), "a usage error writes nothing");
    }

    static readonly string[] TinyGpt = ["--steps", "30", "--block", "16", "--dim", "16", "--heads", "2", "--layers", "1", "--batch", "4", "--eval-batches", "2", "--quiet"];

    [Test]
    public void A_diverging_run_stops_with_one_line_naming_the_step_and_keeps_its_last_checkpoint()
    {
        // The defect: --lr 1e6 --clip 1e30 died in its first checkpoint ("infinity cannot be written as valid JSON") and left checkpoint.bin.tmp-PID.
        string run = Path.Combine(_root, "run");
        var (code, _, stderr) = Run(["train", "gpt", "--data", _text, .. TinyGpt, "--lr", "1e6", "--clip", "1e30", "--warmup", "0", "--checkpoint-every", "1", "--out", run]);
        Assert.That(code, Is.EqualTo(1), stderr);
        Assert.That(stderr.TrimEnd().Split('\n'), Has.Length.EqualTo(1), stderr);
        Assert.That(stderr, Does.Match(@"diverged at step \d+ of 30").And.Contain("last good checkpoint (step ").And.Not.Contain("internal error"));
        Assert.That(Directory.GetFiles(run, "*tmp*"), Is.Empty);
        Assert.That(File.Exists(Path.Combine(run, "gpt.safetensors")), Is.False, "no final model from a diverged run");
        int diverged = int.Parse(System.Text.RegularExpressions.Regex.Match(stderr, @"diverged at step (\d+)").Groups[1].Value, CultureInfo.InvariantCulture);
        using (var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json"))))
            Assert.That(doc.RootElement.EnumerateArray().Last().GetProperty("Step").GetInt32(), Is.EqualTo(diverged), "metrics.json ends with the step that diverged");
        // The checkpoint it kept resumes.
        int step = int.Parse(System.Text.RegularExpressions.Regex.Match(stderr, @"checkpoint \(step (\d+)\)").Groups[1].Value, CultureInfo.InvariantCulture);
        Assert.That(step, Is.EqualTo(diverged - 1), "a checkpoint every step: the last good one is the step before");
        (code, _, stderr) = Run(["train", "gpt", "--data", _text, .. TinyGpt[2..], "--steps", step.ToString(CultureInfo.InvariantCulture), "--warmup", "0", "--resume", "--out", run]);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(File.Exists(Path.Combine(run, "gpt.safetensors")), Is.True);
    }

    [Test]
    public void Skipping_non_finite_steps_stops_after_the_limit_in_a_row()
    {
        string run = Path.Combine(_root, "run");
        var (code, _, stderr) = Run(["train", "gpt", "--data", _text, .. TinyGpt, "--lr", "1e6", "--clip", "1e30", "--warmup", "0",
            "--on-nonfinite", "skip", "--max-skips", "2", "--out", run]);
        Assert.That(code, Is.EqualTo(1), stderr);
        Assert.That(stderr, Does.Contain("2 skipped steps in a row"));
        Assert.That(stderr.TrimEnd().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(Directory.GetFiles(run, "*tmp*"), Is.Empty);
    }

    [Test]
    public void A_warmup_longer_than_the_run_is_cut_to_the_run_with_a_note()
    {
        string run = Path.Combine(_root, "run");
        var (code, stdout, stderr) = Run(["train", "gpt", "--data", _text, .. TinyGpt[2..], "--steps", "5", "--out", run, "--json"]);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stderr, Does.Contain("--warmup 100 is more than --steps 5"));
        using var doc = JsonDocument.Parse(stdout.TrimEnd().Split('\n').Last());
        Assert.That(doc.RootElement.GetProperty("steps").GetInt32(), Is.EqualTo(5));
        Assert.That(doc.RootElement.GetProperty("skipped_steps").GetInt32(), Is.EqualTo(0));
    }

    [Test]
    public void An_output_folder_that_cannot_be_created_fails_before_training_with_one_line_and_leaves_nothing()
    {
        if (!Directory.Exists("/proc/self")) Assert.Ignore("needs Linux /proc, where nobody (root included) can create a folder");
        string run = "/proc/attncore-cannot-write-here";
        foreach (string[] args in new string[][] { ["train", "gpt", "--data", _text, .. TinyGpt, "--out", run], ["demo", "--steps", "1", "--out", run] })
        {
            var (code, stdout, stderr) = Run(args);
            Assert.That(code, Is.EqualTo(1), stderr);
            Assert.That(stderr.TrimEnd().Split('\n'), Has.Length.EqualTo(1));
            Assert.That(stderr, Does.Contain("cannot write to --out").And.Contain(run));
            Assert.That(stdout, Does.Not.Contain("step "), "nothing was trained");
        }
        Assert.That(Directory.GetFileSystemEntries(_root), Is.EqualTo(new[] { _text }));
    }

    [Test]
    public void A_block_longer_than_the_text_is_a_one_line_error_naming_both()
    {
        var (code, _, stderr) = Run(["train", "gpt", "--data", _text, "--block", "1000", "--out", Path.Combine(_root, "run")]);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(stderr, Does.Contain("--block 1000").And.Contain(_text));
        Assert.That(Directory.GetFileSystemEntries(_root), Is.EqualTo(new[] { _text }), "checked before the run folder is made");
    }
}
