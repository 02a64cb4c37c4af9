using System.Text.Json;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using AttnCore.Tests.Cli;
using NUnit.Framework;

namespace AttnCore.Tests.Docs;

/// <summary>
/// The packaging rules live once, in Directory.Build.props/.targets, and reach a project nobody has written yet;
/// the samples stay short, listed, outside the solution and on the repository's version. (That the packages and
/// samples really build and run is PackageTests' job.)
/// </summary>
[TestFixture, Category("Docs")]
public class PackagingTests
{
    private static readonly string[] PackagingProperties =
        ["IsPackable", "IsDocumentedLibrary", "GenerateDocumentationFile", "Version", "PackageLicenseExpression", "PackageReadmeFile",
         "IncludeSymbols", "SymbolPackageFormat", "Deterministic", "ContinuousIntegrationBuild", "TreatWarningsAsErrors"];

    /// <summary>Evaluates a project that has only an Sdk attribute (and <paramref name="body"/>), placed inside the repository.</summary>
    private static Dictionary<string, string> EvaluateNewProject(string body, bool ci)
    {
        string root = DocsTests.Root();
        // Under Tests/bin, so the repository's Directory.Build.props and .targets are the ones MSBuild finds above it.
        string folder = Path.Combine(TestContext.CurrentContext.TestDirectory, "probe-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(folder);
        try
        {
            Assert.That(Path.GetFullPath(folder), Does.StartWith(root));
            string project = Path.Combine(folder, "AttnCore.Probe.csproj");
            File.WriteAllText(project, $"<Project Sdk=\"Microsoft.NET.Sdk\">{body}</Project>");
            var result = ExternalProcess.Run("dotnet", ["msbuild", project, .. PackagingProperties.Select(p => "-getProperty:" + p)], folder,
                TimeSpan.FromMinutes(3), new Dictionary<string, string> { ["CI"] = ci ? "true" : "" });
            Assert.That(result.ExitCode, Is.EqualTo(0), result.Output);
            using var json = JsonDocument.Parse(result.StdOut);
            return json.RootElement.GetProperty("Properties").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "");
        }
        finally { Directory.Delete(folder, true); }
    }

    [Test]
    public void A_library_added_later_packs_documented_with_symbols_licence_readme_and_the_one_version()
    {
        var library = EvaluateNewProject("", ci: true);
        string version = PackageTests.RepositoryVersion(DocsTests.Root());
        Assert.That(library, Is.EquivalentTo(new Dictionary<string, string>
        {
            ["IsPackable"] = "true", ["IsDocumentedLibrary"] = "true", ["GenerateDocumentationFile"] = "true", ["Version"] = version,
            ["PackageLicenseExpression"] = "MIT", ["PackageReadmeFile"] = "README.md", ["IncludeSymbols"] = "true",
            ["SymbolPackageFormat"] = "snupkg", ["Deterministic"] = "true", ["ContinuousIntegrationBuild"] = "true", ["TreatWarningsAsErrors"] = "true",
        }));
    }

    [Test]
    public void An_app_is_not_held_to_xml_docs_and_a_local_build_keeps_its_paths()
    {
        var app = EvaluateNewProject("<PropertyGroup><OutputType>Exe</OutputType><IsPackable>false</IsPackable></PropertyGroup>", ci: false);
        Assert.That(app["IsDocumentedLibrary"], Is.Empty);
        Assert.That(app["ContinuousIntegrationBuild"], Is.Empty, "only CI maps source paths to /_/; a developer's debugger needs the real ones");
    }

    [Test]
    public void The_licence_file_states_the_packages_licence()
    {
        string root = DocsTests.Root();
        string license = XDocument.Load(Path.Combine(root, "Directory.Build.props")).Descendants("PackageLicenseExpression").Single().Value;
        Assert.That(File.ReadAllLines(Path.Combine(root, "LICENSE"))[0], Is.EqualTo($"{license} License"));
    }

    [Test]
    public void Each_sample_is_short_listed_in_its_readme_built_from_packages_and_outside_the_solution()
    {
        string root = DocsTests.Root();
        string samples = Path.Combine(root, "samples");
        string readme = File.ReadAllText(Path.Combine(samples, "README.md"));
        string solution = File.ReadAllText(Path.Combine(samples, "Samples.slnx"));
        var projects = Directory.GetFiles(samples, "*.csproj", SearchOption.AllDirectories)
            .Where(p => !p.Split(Path.DirectorySeparatorChar).Any(part => part is "bin" or "obj")).ToList();
        Assert.That(projects, Has.Count.GreaterThanOrEqualTo(3));
        foreach (var project in projects)
        {
            string name = Path.GetFileNameWithoutExtension(project);
            string program = Path.Combine(Path.GetDirectoryName(project)!, "Program.cs");
            Assert.That(File.ReadAllLines(program), Has.Length.LessThanOrEqualTo(100), $"{name}/Program.cs is over 100 lines");
            Assert.That(Regex.Matches(readme, $@"^\| \[{name}\]\({name}/Program\.cs\) \| .+\|$", RegexOptions.Multiline), Has.Count.EqualTo(1), $"samples/README.md has no line for {name}");
            Assert.That(solution, Does.Contain($"\"{name}/{name}.csproj\""), $"Samples.slnx lacks {name}");
            var xml = XDocument.Load(project);
            Assert.That(xml.Descendants("ProjectReference"), Is.Empty, $"{name} references a source project; samples use the packages");
            var packages = xml.Descendants("PackageReference").ToList();
            Assert.That(packages.Select(p => (string?)p.Attribute("Include")), Has.All.StartWith("AttnCore."), name);
            Assert.That(packages.Select(p => (string?)p.Attribute("Version")), Has.All.EqualTo("$(AttnCoreVersion)"), name);
        }
        var props = XDocument.Load(Path.Combine(samples, "Directory.Build.props"));
        Assert.That(props.Descendants("AttnCoreVersion").Single().Value, Is.EqualTo(PackageTests.RepositoryVersion(root)),
            "samples/Directory.Build.props restores another version than the repository packs");
        Assert.That(XDocument.Load(Path.Combine(samples, "Directory.Packages.props")).Descendants("ManagePackageVersionsCentrally").Single().Value, Is.EqualTo("false"));
        Assert.That(File.ReadAllText(Path.Combine(root, "AttnCore.sln")), Does.Not.Contain("samples"), "the samples build from packages, outside the solution's test build");
    }
}
