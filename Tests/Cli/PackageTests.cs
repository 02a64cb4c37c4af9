using System.Globalization;
using System.IO.Compression;
using System.Reflection.Metadata;
using System.Text.Json;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using AttnCore.Models.IO;
using AttnCore.Tests.Docs;
using NUnit.Framework;

namespace AttnCore.Tests.Cli;

/// <summary>
/// The way in for a .NET developer, walked as one would walk it outside the repository: the solution packs (through
/// build.ps1 under PowerShell when pwsh is installed, as CI does), every package carries its readme, licence, XML
/// docs and symbols, the CLI installs as a .NET tool and runs, and each sample restores the packages from that
/// local feed, not the source projects, builds and prints what it should. Packing reuses the test run's build
/// (--no-build), so the repository's outputs are not rewritten while the tests use them.
/// </summary>
[TestFixture, Category("Cli"), NonParallelizable]
public class PackageTests
{
    private static readonly TimeSpan Slow = TimeSpan.FromMinutes(8);
    private string _root = "", _work = "", _feed = "", _version = "";
    private ExternalProcess.Result _pack = null!;
    private string? _pwsh;
    private Lazy<ExternalProcess.Result> _samplesBuild = null!;

    // The configuration this test assembly was built in: the packages are made from the same build.
    private static string Configuration =>
        TestContext.CurrentContext.TestDirectory.Split(Path.DirectorySeparatorChar).Contains("Debug") ? "Debug" : "Release";

    [OneTimeSetUp]
    public void Pack_the_solution_into_a_temporary_feed()
    {
        _root = DocsTests.Root();
        _version = RepositoryVersion(_root);
        _work = Path.Combine(Path.GetTempPath(), "attncore-packages-" + Guid.NewGuid().ToString("N")[..8]);
        _feed = Path.Combine(_work, "feed");
        Directory.CreateDirectory(_work);
        // build.ps1 packs Release, the configuration the README's test command builds.
        _pwsh = Configuration == "Release" ? BuildScript.FindPwsh() : null;
        _pack = _pwsh is not null
            ? ExternalProcess.Run(_pwsh, ["-NoProfile", "-NonInteractive", "-File", Path.Combine(_root, "build.ps1"), "pack", _feed, "--no-build"], _root, Slow)
            : ExternalProcess.Run("dotnet", ["pack", Path.Combine(_root, "AttnCore.sln"), "-c", Configuration, "-o", _feed, "--no-build"], _root, Slow);
        // Sources for `dotnet tool install` come from --add-source alone, as on a clean machine.
        File.WriteAllText(Path.Combine(_work, "nuget.config"), "<configuration><packageSources><clear /></packageSources></configuration>");
        _samplesBuild = new Lazy<ExternalProcess.Result>(BuildSamples);
    }

    [OneTimeTearDown]
    public void Remove_the_feed() { if (Directory.Exists(_work)) Directory.Delete(_work, true); }

    // A fresh package folder: a stale AttnCore 0.1.0 from an earlier run must not stand in for the one just packed.
    private Dictionary<string, string> FreshPackageFolder() => new() { ["NUGET_PACKAGES"] = Path.Combine(_work, "packages") };

    private void RequirePacked() => Assert.That(_pack.ExitCode, Is.EqualTo(0), $"packing failed:\n{_pack.Output}");

    [Test]
    public void Every_packable_project_packs_with_readme_licence_xml_docs_and_symbols()
    {
        RequirePacked();
        string readme = File.ReadAllText(Path.Combine(_root, "docs", "nuget-readme.md"));
        var expected = PackableProjects(_root).ToList();
        Assert.That(expected.Select(p => p.Id), Is.SupersetOf(new[] { "AttnCore.Kernels", "AttnCore.Engine", "AttnCore.Autograd", "AttnCore.Models", "AttnCore.Presentation", "attncore" }));
        foreach (var (id, assembly, isTool) in expected)
        {
            string nupkg = Path.Combine(_feed, $"{id}.{_version}.nupkg");
            Assert.That(File.Exists(nupkg), Is.True, $"{id} did not pack to {nupkg}:\n{_pack.Output}");
            using var package = ZipFile.OpenRead(nupkg);
            var nuspec = XDocument.Load(package.GetEntry($"{id}.nuspec")!.Open());
            string Meta(string name) => nuspec.Descendants().FirstOrDefault(e => e.Name.LocalName == name)?.Value ?? "";
            Assert.That(Meta("version"), Is.EqualTo(_version), id);
            var license = nuspec.Descendants().Single(e => e.Name.LocalName == "license");
            Assert.That((license.Attribute("type")?.Value, license.Value), Is.EqualTo(("expression", "MIT")), id);
            Assert.That(Meta("readme"), Is.EqualTo("README.md"), id);
            Assert.That(Meta("description"), Is.Not.Empty, id);
            using (var r = new StreamReader(package.GetEntry("README.md")!.Open())) Assert.That(r.ReadToEnd(), Is.EqualTo(readme), id);
            if (isTool)
            {
                Assert.That(nuspec.Descendants().Where(e => e.Name.LocalName == "packageType").Select(e => e.Attribute("name")?.Value), Does.Contain("DotnetTool"));
                var settings = XDocument.Load(package.Entries.Single(e => e.FullName.EndsWith("DotnetToolSettings.xml", StringComparison.Ordinal)).Open());
                Assert.That(settings.Descendants("Command").Single().Attribute("Name")?.Value, Is.EqualTo("attncore"));
                continue;
            }
            Assert.That(package.GetEntry($"lib/net10.0/{assembly}.dll"), Is.Not.Null, $"{id}: no lib/net10.0/{assembly}.dll");
            var xml = package.GetEntry($"lib/net10.0/{assembly}.xml");
            Assert.That(xml, Is.Not.Null, $"{id} ships no XML documentation");
            Assert.That(XDocument.Load(xml!.Open()).Descendants("member").Count(), Is.GreaterThan(0), $"{id}: empty XML documentation");
            string snupkg = Path.ChangeExtension(nupkg, ".snupkg");
            Assert.That(File.Exists(snupkg), Is.True, $"{id} has no symbol package");
            using var symbols = ZipFile.OpenRead(snupkg);
            var pdb = symbols.GetEntry($"lib/net10.0/{assembly}.pdb");
            Assert.That(pdb, Is.Not.Null, $"{id}: the symbol package holds no {assembly}.pdb");
            var documents = PdbDocuments(pdb!);
            Assert.That(documents, Is.Not.Empty, $"{id}: the pdb names no source file");
            // A CI build is deterministic: ContinuousIntegrationBuild maps the checkout's path to /_/.
            if (Environment.GetEnvironmentVariable("CI") == "true")
                Assert.That(documents.Where(d => !d.StartsWith("/_/", StringComparison.Ordinal) && !d.Contains("/obj/", StringComparison.Ordinal)), Is.Empty, $"{id}: a CI build keeps machine paths in its pdb");
        }
    }

    [Test]
    public void Build_ps1_packs_the_solution_under_powershell()
    {
        if (Configuration != "Release") Assert.Ignore("the tests are a Debug build; build.ps1 packs the Release build");
        if (_pwsh is null) Assert.Ignore($"pwsh is not installed (looked on PATH and in {BuildScript.ToolFolder}); .ci/run installs the PowerShell .NET tool");
        RequirePacked();
        Assert.That(_pack.StdOut, Does.Contain($"Successfully created package '{Path.Combine(_feed, $"AttnCore.Models.{_version}.nupkg")}'"));
        Assert.That(_pack.StdOut, Does.Contain($"Successfully created package '{Path.Combine(_feed, $"attncore.{_version}.nupkg")}'"));
        // dotnet's failure is the wrapper's exit code, so CI cannot pass over a broken pack.
        var failing = ExternalProcess.Run(_pwsh, ["-NoProfile", "-NonInteractive", "-File", Path.Combine(_root, "build.ps1"), "pack", Path.Combine(_work, "unused"), "--no-such-option"], _root, Slow);
        Assert.That(failing.ExitCode, Is.Not.EqualTo(0), failing.Output);
    }

    [Test]
    public void The_cli_installs_as_a_dotnet_tool_and_runs()
    {
        RequirePacked();
        string tools = Path.Combine(_work, "tools");
        var install = ExternalProcess.Run("dotnet", ["tool", "install", "--tool-path", tools, "attncore", "--add-source", _feed, "--version", _version], _work, Slow, FreshPackageFolder());
        Assert.That(install.ExitCode, Is.EqualTo(0), install.Output);
        string attncore = Path.Combine(tools, OperatingSystem.IsWindows() ? "attncore.exe" : "attncore");
        var help = ExternalProcess.Run(attncore, ["--help"], _work, Slow);
        Assert.That(help.ExitCode, Is.EqualTo(0), help.Output);
        foreach (var command in new[] { "demo", "devices", "bench", "train", "generate", "eval" })
            Assert.That(help.StdOut, Does.Contain(command), $"the installed tool's --help lacks {command}");
        var devices = ExternalProcess.Run(attncore, ["devices"], _work, Slow);
        Assert.That(devices.ExitCode, Is.EqualTo(0), devices.Output);
        Assert.That(devices.StdOut, Does.Contain("cpu"));
        var usage = ExternalProcess.Run(attncore, ["bench", "gemm", "--n", "-3"], _work, Slow);
        Assert.That(usage.ExitCode, Is.EqualTo(2), "the installed tool keeps the CLI's exit codes");
    }

    private ExternalProcess.Result BuildSamples()
    {
        // A copy outside the repository, as a user would have it: only the samples' own Directory.Build.props applies.
        string samples = Path.Combine(_work, "samples");
        CopyDirectory(Path.Combine(_root, "samples"), samples);
    // The samples' own nuget.config points at ../artifacts; here they get this run's feed, and the machine's
    // package cache as a source for ILGPU and System.Numerics.Tensors, so nothing is downloaded.
    string cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
        ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
    File.WriteAllText(Path.Combine(samples, "nuget.config"), $"""
        <?xml version="1.0" encoding="utf-8"?>
        <configuration>
          <packageSources>
            <clear />
            <add key="feed" value="{_feed}" />
            <add key="cache" value="{cache}" />
          </packageSources>
          <packageSourceMapping>
            <packageSource key="feed"><package pattern="AttnCore.*" /><package pattern="attncore" /></packageSource>
            <packageSource key="cache"><package pattern="*" /></packageSource>
          </packageSourceMapping>
        </configuration>
        """);
        return ExternalProcess.Run("dotnet", ["build", Path.Combine(samples, "Samples.slnx"), "-c", "Release", $"-p:AttnCoreVersion={_version}"], samples, Slow, FreshPackageFolder());
    }

    private string RunSample(string name, params string[] arguments)
    {
        RequirePacked();
        var build = _samplesBuild.Value;
        Assert.That(build.ExitCode, Is.EqualTo(0), $"the samples did not build from the feed:\n{build.Output}");
        string dll = Path.Combine(_work, "samples", name, "bin", "Release", "net10.0", name + ".dll");
        var run = ExternalProcess.Run("dotnet", [dll, .. arguments], _work, Slow);
        Assert.That(run.ExitCode, Is.EqualTo(0), $"{name}:\n{run.Output}");
        // The packages, not the source projects: every AttnCore library the sample uses was restored as a package.
        using var assets = JsonDocument.Parse(File.ReadAllText(Path.Combine(_work, "samples", name, "obj", "project.assets.json")));
        var attnCore = assets.RootElement.GetProperty("libraries").EnumerateObject().Where(l => l.Name.StartsWith("AttnCore.", StringComparison.Ordinal)).ToList();
        Assert.That(attnCore, Is.Not.Empty, name);
        foreach (var library in attnCore)
            Assert.That((library.Name, library.Value.GetProperty("type").GetString()), Is.EqualTo(($"{library.Name.Split('/')[0]}/{_version}", "package")));
        return run.StdOut;
    }

    [Test]
    public void The_readmes_shortest_program_is_the_hello_sample_and_prints_the_gradient()
    {
        string readme = File.ReadAllText(Path.Combine(_root, "README.md"));
        string program = Regex.Match(readme, "```csharp\n(.*?)```", RegexOptions.Singleline).Groups[1].Value;
        Assert.That(File.ReadAllText(Path.Combine(_root, "samples", "Hello", "Program.cs")), Is.EqualTo(program), "the README's first program is samples/Hello/Program.cs");
        string output = RunSample("Hello");
        // The same program, run here on the source projects: the package build prints the same gradient.
        var x = Tensor.Randn([4, 8], seed: 1);
        var w = Tensor.Randn([8, 3], seed: 2).RequiresGrad_();
        var loss = x.MatMul(w).Softmax(-1).Square().Sum();
        loss.Backward();
        Assert.That(output.TrimEnd(), Is.EqualTo(w.Grad!.ToString().TrimEnd()));
        Assert.That(output, Does.StartWith("tensor([["));
        Assert.That(output.TrimEnd().Split('\n'), Has.Length.EqualTo(8), "one printed row per row of w");
    }

    [Test]
    public void Sample_attention_by_hand_matches_the_engine()
    {
        string output = RunSample("AttentionByHand");
        foreach (bool causal in new[] { false, true })
        {
            var m = Regex.Match(output, (causal ? "causal" : "full") + @" attention \[2, 3, 7, 16\]: out\[0, 0, 0, 0\.\.3\] = (\S+) (\S+) (\S+) (\S+), max \|hand - engine\| = (\S+)");
            Assert.That(m.Success, Is.True, output);
            Assert.That(double.Parse(m.Groups[5].Value, CultureInfo.InvariantCulture), Is.LessThan(1e-5), output);
            // The printed numbers are the attention of the sample's seeded inputs, computed here independently.
            using var q = Tensor.Randn([2, 3, 7, 16], seed: 1);
            using var k = Tensor.Randn([2, 3, 7, 16], seed: 2);
            using var v = Tensor.Randn([2, 3, 7, 16], seed: 3);
            using var reference = Tensor.ScaledDotProductAttention(q, k, v, causal: causal);
            float[] expected = reference.ToArray<float>();
            for (int i = 0; i < 4; i++)
                Assert.That(double.Parse(m.Groups[i + 1].Value, CultureInfo.InvariantCulture), Is.EqualTo(expected[i]).Within(1e-5), $"{(causal ? "causal" : "full")} out[{i}]");
        }
    }

    [Test]
    public void Sample_classifier_learns_fashion_mnist_and_reloads_its_checkpoint()
    {
        const string data = "/usr/share/datasets/fashion-mnist";
        if (!File.Exists(Path.Combine(data, "train-images-idx3-ubyte.gz"))) Assert.Ignore($"Fashion-MNIST is not at {data} (apt-get install dataset-fashion-mnist)");
        string checkpoint = Path.Combine(_work, "classifier.safetensors");
        string output = RunSample("Classifier", data, "300", checkpoint);
        var m = Regex.Match(output, @"test accuracy (\d\.\d{4}), reloaded from (.+): (\d\.\d{4})");
        Assert.That(m.Success, Is.True, output);
        // Ten classes: chance is 0.10; a perceptron after 300 steps of 64 images is near 0.80.
        Assert.That(double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), Is.GreaterThan(0.70), output);
        Assert.That(m.Groups[3].Value, Is.EqualTo(m.Groups[1].Value), "the reloaded model classifies the test set differently");
        var (tensors, _) = Safetensors.Load(checkpoint);
        try
        {
            Assert.That(tensors.ToDictionary(t => t.Key, t => t.Value.Shape), Is.EquivalentTo(new Dictionary<string, int[]>
            {
                ["hidden.weight"] = [256, 784], ["hidden.bias"] = [256], ["output.weight"] = [10, 256], ["output.bias"] = [10],
            }));
        }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
    }

    [Test]
    public void Sample_gpt_generates_the_text_attncore_generate_does()
    {
        string text = Path.GetFullPath(Path.Combine(_root, "..", "shared", "data", "tinyshakespeare.txt"));
        if (!File.Exists(text)) Assert.Ignore($"tinyshakespeare is not at {text}");
        string run = Path.Combine(_work, "gpt");
        var (code, stdout, stderr) = InProcess("train", "gpt", "--data", text, "--steps", "30", "--layers", "1", "--heads", "2", "--dim", "32",
            "--block", "16", "--batch", "8", "--warmup", "5", "--eval-every", "30", "--eval-batches", "2", "--out", run, "--json", "--threads", "2");
        Assert.That(code, Is.EqualTo(0), stderr);
        string checkpoint = Path.Combine(run, "gpt.safetensors");
        (code, stdout, stderr) = InProcess("generate", "--checkpoint", checkpoint, "--prompt", "ROMEO:", "--tokens", "40", "--seed", "5", "--temperature", "0.8", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        string expected = JsonDocument.Parse(stdout.TrimEnd().Split('\n').Last()).RootElement.GetProperty("text").GetString()!;
        Assert.That(expected, Has.Length.EqualTo(40));

        string output = RunSample("GptGenerate", checkpoint, "ROMEO:", "40", "5");
        Assert.That(output, Does.Contain("GPT: 1 layers, 2 heads, width 32, context 16, 65 characters"));
        string generated = output[(output.IndexOf("---\n", StringComparison.Ordinal) + 4)..].TrimEnd('\n');
        Assert.That(generated, Is.EqualTo("ROMEO:" + expected), "the sample, on the packages, samples other text than the CLI from the same checkpoint and seed");
    }

    [Test]
    public void Sample_forecast_trains_dlinear_on_a_csv_and_forecasts_the_day_after_it()
    {
        string output = RunSample("Forecast");
        var m = Regex.Match(output, @"test mse (\d+\.\d{4}) mae (\d+\.\d{4}) over (\d+) windows; repeating the last value: mse (\d+\.\d{4})");
        Assert.That(m.Success, Is.True, output);
        double mse = double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), naive = double.Parse(m.Groups[4].Value, CultureInfo.InvariantCulture);
        // The synthetic series has a daily cycle that holding the last value cannot follow; DLinear learns it.
        Assert.That(mse, Is.LessThan(naive / 4), output);
        var rows = Regex.Matches(output, @"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}) (-?\d+\.\d{3})$", RegexOptions.Multiline);
        Assert.That(rows, Has.Count.EqualTo(24), output);
        // The sample's series without its noise (10 + 3 sin(2πt/24) + 1.5 sin(2πt/168) + t/5000, t hours from 2024-01-01),
        // continued past the last of its 17520 rows: the forecast follows it.
        double error = 0;
        for (int i = 0; i < rows.Count; i++)
        {
            var time = DateTime.ParseExact(rows[i].Groups[1].Value, "yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture);
            Assert.That(time, Is.EqualTo(new DateTime(2024, 1, 1).AddHours(17520 + i)), "the forecast starts the hour after the last row");
            int t = 17520 + i;
            double truth = 10 + 3 * Math.Sin(2 * Math.PI * t / 24) + 1.5 * Math.Sin(2 * Math.PI * t / 168) + t / 5000.0;
            error += Math.Abs(double.Parse(rows[i].Groups[2].Value, CultureInfo.InvariantCulture) - truth) / rows.Count;
        }
        Assert.That(error, Is.LessThan(0.5), $"mean absolute error of the forecast against the noise-free series\n{output}");
    }

    private static (int Code, string Out, string Err) InProcess(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = AttnCore.Cli.Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    internal static string RepositoryVersion(string root) =>
        XDocument.Load(Path.Combine(root, "Directory.Build.props")).Descendants("Version").Single().Value;

    /// <summary>Every project of AttnCore.sln that packs: all but those marked IsPackable=false or test projects.</summary>
    internal static IEnumerable<(string Id, string Assembly, bool IsTool)> PackableProjects(string root)
    {
        foreach (Match m in Regex.Matches(File.ReadAllText(Path.Combine(root, "AttnCore.sln")), @"""([^""]+\.csproj)"""))
        {
            string path = Path.Combine(root, m.Groups[1].Value.Replace('\\', '/'));
            var project = XDocument.Load(path);
            string? Property(string name) => project.Descendants(name).FirstOrDefault()?.Value;
            if (Property("IsPackable") == "false" || Property("IsTestProject") == "true") continue;
            string assembly = Property("AssemblyName") ?? Path.GetFileNameWithoutExtension(path);
            yield return (Property("PackageId") ?? assembly, assembly, Property("PackAsTool") == "true");
        }
    }

    private static List<string> PdbDocuments(ZipArchiveEntry pdb)
    {
        using var stream = new MemoryStream();
        using (var s = pdb.Open()) s.CopyTo(stream);
        stream.Position = 0;
        using var provider = MetadataReaderProvider.FromPortablePdbStream(stream);
        var reader = provider.GetMetadataReader();
        return reader.Documents.Select(d => reader.GetString(reader.GetDocument(d).Name)).ToList();
    }

    private static void CopyDirectory(string from, string to)
    {
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(from, file);
            // A sample built in place has bin/ and obj/ folders; the copy starts clean.
            if (relative.Split(Path.DirectorySeparatorChar).Any(part => part is "bin" or "obj")) continue;
            Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(to, relative))!);
            File.Copy(file, Path.Combine(to, relative));
        }
    }
}

/// <summary>Where the tests find PowerShell: on PATH, or in the folder .ci/run installs the PowerShell .NET tool to.</summary>
internal static class BuildScript
{
    public static string ToolFolder => Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".attncore", "tools");

    public static string? FindPwsh()
    {
        string name = OperatingSystem.IsWindows() ? "pwsh.exe" : "pwsh";
        var folders = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries).Append(ToolFolder);
        return folders.Select(f => Path.Combine(f, name)).FirstOrDefault(File.Exists);
    }
}
