using System.Text.Json;
using NUnit.Framework;

namespace AttnCore.Tests.Cli;

[TestFixture, Category("Cli"), NonParallelizable]
public class CliTests
{
    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = AttnCore.Cli.Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    static JsonElement LastJson(string stdout) =>
        JsonDocument.Parse(stdout.TrimEnd().Split('\n').Last()).RootElement;

    /// <summary>
    /// The demo command's wiring: options, output lines, JSON, and the three files it writes (loss.png and attention.png
    /// drawn by AttnCore.Presentation). A few steps of the full-size model suffice; that the model learns the task is
    /// DemoTests' job, on a small configuration.
    /// </summary>
    [Test]
    public void Demo_runs_reports_json_on_its_last_line_and_writes_its_pictures_and_metrics()
    {
        string dir = Path.Combine(Path.GetTempPath(), "attncore-cli-demo-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (code, stdout, stderr) = Run("demo", "--steps", "12", "--out", dir, "--json", "--threads", "2");
            Assert.That(code, Is.EqualTo(0), stderr);
            var j = LastJson(stdout);
            Assert.That(j.GetProperty("demo").GetString(), Is.EqualTo("digit-reversal-transformer"));
            Assert.That(j.GetProperty("steps").GetInt32(), Is.EqualTo(12));
            Assert.That(j.GetProperty("exact_match").GetDouble(), Is.InRange(0.0, 1.0), stdout);
            Assert.That(double.IsFinite(j.GetProperty("final_loss").GetDouble()), Is.True, stdout);
            Assert.That(j.GetProperty("wall_s").GetDouble(), Is.GreaterThan(0));
            Assert.That(stdout, Does.Contain("held-out examples"));
            Assert.That(stdout, Does.Contain($"wrote {Path.Combine(dir, "attention.png")}, {Path.Combine(dir, "loss.png")}, {Path.Combine(dir, "metrics.json")}"));
            Assert.That(stdout, Does.Not.Contain("step 12/12"), "--json shows no progress");
            foreach (var png in new[] { "attention.png", "loss.png" })
                Assert.That(File.ReadAllBytes(Path.Combine(dir, png)).Take(4).ToArray(), Is.EqualTo(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }), png);
            using var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "metrics.json")));
            Assert.That(metrics.RootElement.EnumerateArray().Last().GetProperty("Step").GetInt32(), Is.EqualTo(12));
            Assert.That(Directory.GetFiles(dir, "*tmp*"), Is.Empty);
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Test]
    public void Bench_gemm_prints_a_json_line_with_positive_throughput()
    {
        var (code, stdout, stderr) = Run("bench", "gemm", "--n", "64", "--seconds", "0.2", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        var j = LastJson(stdout);
        Assert.That(j.GetProperty("op").GetString(), Is.EqualTo("gemm"));
        Assert.That(j.GetProperty("m").GetInt32(), Is.EqualTo(64));
        Assert.That(j.GetProperty("gflops").GetDouble(), Is.GreaterThan(0));
        Assert.That(j.GetProperty("ms").GetDouble(), Is.GreaterThan(0));
    }

    [Test]
    public void Bench_gemm_blockings_ranks_each_blocking_in_one_process_and_rejects_a_malformed_one()
    {
        var (code, stdout, stderr) = Run("bench", "gemm", "--n", "100", "--blockings", "96,256,4096 12,7,64", "--seconds", "0.1", "--threads", "2", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        var j = LastJson(stdout);
        Assert.That(j.GetProperty("op").GetString(), Is.EqualTo("gemm-blockings"));
        var rows = j.GetProperty("blockings").EnumerateArray().ToArray();
        Assert.That(rows.Select(r => r.GetProperty("blocking").GetString()), Is.EqualTo(new[] { "96,256,4096", "12,7,64" }));
        foreach (var r in rows)
            Assert.That(r.GetProperty("best_ms").GetDouble(), Is.GreaterThan(0).And.LessThanOrEqualTo(r.GetProperty("ms").GetDouble()));
        Assert.That(j.GetProperty("rounds").GetInt32(), Is.GreaterThanOrEqualTo(5));
        (code, stdout, stderr) = Run("bench", "gemm", "--n", "100", "--blockings", "96,256,4096 95,256,4096");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("\"95,256,4096\"").And.Contain("multiple of 6"));
        Assert.That(stdout, Is.Empty);
    }

    [Test]
    public void Bench_softmax_reports_bandwidth()
    {
        var (code, stdout, _) = Run("bench", "softmax", "--rows", "64", "--cols", "100", "--seconds", "0.2", "--json");
        Assert.That(code, Is.EqualTo(0));
        Assert.That(LastJson(stdout).GetProperty("gbps").GetDouble(), Is.GreaterThan(0));
    }

    [Test]
    public void Bad_arguments_and_missing_files_exit_non_zero_with_a_one_line_reason()
    {
        var (code, _, err) = Run("bench", "gemm", "--n", "-5");
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(err.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(err, Does.Contain("--n"));
        (code, _, err) = Run("bench", "gemm", "--bogus");
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(err, Does.Contain("--bogus"));
        (code, _, err) = Run("generate", "--checkpoint", "/nonexistent/model.safetensors");
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(err, Does.Contain("/nonexistent/model.safetensors"));
        (code, _, err) = Run("train", "gpt", "--data", "/nonexistent/input.txt");
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(err, Does.Contain("/nonexistent/input.txt"));
        (code, _, _) = Run("demo", "--device", "quantum");
        Assert.That(code, Is.Not.EqualTo(0));
    }

    [Test]
    public void Parse_errors_name_the_expected_kind_of_value_not_a_clr_type()
    {
        var (code, stdout, err) = Run("bench", "gemm", "--n", "abc");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(err, Does.Contain("'abc'").And.Contain("integer").And.Contain("attncore bench gemm --help"));
        Assert.That(err, Does.Not.Contain("System."));
        Assert.That(err.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(stdout, Is.Empty);
        (code, _, err) = Run("bench", "gemm", "--n", "8", "--seconds", "0");
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(err, Does.Contain("--seconds"));
        (code, _, err) = Run("bench", "attention", "--impl", "magic");
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(err, Does.Contain("magic"));
    }

    [Test]
    public void Bench_vs_torch_without_pytorch_says_how_to_install_it_and_fails()
    {
        string? before = Environment.GetEnvironmentVariable("ATTNCORE_PYTHON");
        Environment.SetEnvironmentVariable("ATTNCORE_PYTHON", "/nonexistent/python3");
        try
        {
            var (code, _, err) = Run("bench", "gemm", "--n", "16", "--seconds", "0.1", "--vs", "torch");
            Assert.That(code, Is.Not.EqualTo(0));
            Assert.That(err, Does.Contain("apt-get install -y python3-torch python3-numpy libopenblas0-pthread"));
            Assert.That(err.Trim().Split('\n'), Has.Length.EqualTo(1));
        }
        finally { Environment.SetEnvironmentVariable("ATTNCORE_PYTHON", before); }
    }

    [Test]
    public void Bench_attention_times_the_fused_and_the_naive_path()
    {
        foreach (var impl in new[] { "fused", "naive" })
        {
            var (code, stdout, stderr) = Run("bench", "attention", "--b", "1", "--h", "2", "--l", "32", "--d", "16", "--causal", "--impl", impl, "--seconds", "0.1", "--json");
            Assert.That(code, Is.EqualTo(0), stderr);
            var j = LastJson(stdout);
            Assert.That(j.GetProperty("impl").GetString(), Is.EqualTo(impl));
            Assert.That(j.GetProperty("causal").GetBoolean(), Is.True);
            Assert.That(j.GetProperty("gflops").GetDouble(), Is.GreaterThan(0));
        }
    }

    [Test]
    public void Ci_script_and_build_ps1_run_exactly_the_readme_commands()
    {
        string root = RepositoryRoot();
        string readme = File.ReadAllText(Path.Combine(root, "README.md"));
        string ci = File.ReadAllText(Path.Combine(root, ".ci", "run"));
        string ps1 = File.ReadAllText(Path.Combine(root, "build.ps1"));
        foreach (var command in new[] { "dotnet test -c Release", "dotnet run -c Release --project Cli -- demo" })
        {
            Assert.That(readme, Does.Contain(command), "README quick start");
            Assert.That(ps1, Does.Contain(command), "build.ps1");
        }
        Assert.That(ci, Does.Match(@"(?m)^\s*dotnet test -c Release( |$)"), ".ci/run runs the README's test command");
        Assert.That(ci, Does.Contain("set -euo pipefail"));
    }

    static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "AttnCore.sln"))) return dir.FullName;
        Assert.Ignore("the repository (AttnCore.sln) is not above the test binaries");
        return "";
    }

    [Test]
    public void Help_lists_every_command()
    {
        var (code, stdout, _) = Run("--help");
        Assert.That(code, Is.EqualTo(0));
        foreach (var c in new[] { "demo", "train", "eval", "generate", "devices", "bench" }) Assert.That(stdout, Does.Contain(c));
        (code, stdout, _) = Run("bench", "attention", "--help");
        Assert.That(code, Is.EqualTo(0));
        Assert.That(stdout, Does.Contain("--causal"));
    }

    [Test]
    public void Devices_lists_the_cpu_and_the_ilgpu_emulator()
    {
        var (code, stdout, _) = Run("devices", "--json");
        Assert.That(code, Is.EqualTo(0));
        var names = LastJson(stdout).GetProperty("devices").EnumerateArray().Select(d => d.GetProperty("device").GetString()).ToArray();
        Assert.That(names, Does.Contain("cpu").And.Contain("ilgpu-cpu"));
    }

    [Test]
    public void Train_generate_and_eval_round_trip_on_a_small_text()
    {
        string dir = Path.Combine(Path.GetTempPath(), "attncore-cli-gpt-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string text = string.Concat(Enumerable.Repeat("to be or not to be, that is the question. ", 60));
            string data = Path.Combine(dir, "input.txt");
            File.WriteAllText(data, text);
            var (code, stdout, stderr) = Run("train", "gpt", "--data", data, "--steps", "60", "--layers", "1", "--heads", "2", "--dim", "32", "--block", "16",
                "--batch", "8", "--eval-every", "30", "--eval-batches", "5", "--warmup", "5", "--lr", "3e-3", "--out", Path.Combine(dir, "run"), "--json");
            Assert.That(code, Is.EqualTo(0), stderr);
            var j = LastJson(stdout);
            Assert.That(j.GetProperty("model").GetString(), Is.EqualTo("gpt"));
            // Untrained, the loss is ln(15) = 2.71 (15 distinct characters); character frequencies alone give their entropy,
            // 2.38. Measured over --seed 1-5: val loss 1.50-1.58 here and 1.49-1.57 from eval below. Asserted: < 2.0, a
            // 0.4 margin above the worst seed and below what a model that learned only frequencies reaches.
            Assert.That(j.GetProperty("val_loss").GetDouble(), Is.LessThan(2.0), "a repetitive text is easy");
            string ckpt = Path.Combine(dir, "run", "gpt.safetensors");
            (code, stdout, stderr) = Run("generate", "--checkpoint", ckpt, "--prompt", "to be", "--tokens", "20", "--seed", "3");
            Assert.That(code, Is.EqualTo(0), stderr);
            Assert.That(stdout.TrimEnd().Length, Is.EqualTo("to be".Length + 20));
            (code, stdout, stderr) = Run("eval", "--checkpoint", ckpt, "--data", data, "--batches", "3", "--json");
            Assert.That(code, Is.EqualTo(0), stderr);
            Assert.That(LastJson(stdout).GetProperty("val_loss").GetDouble(), Is.LessThan(2.0));
        }
        finally { Directory.Delete(dir, true); }
    }
}
