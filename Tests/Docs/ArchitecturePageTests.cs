using System.Reflection;
using System.Text.RegularExpressions;
using AttnCore.Backends;
using NUnit.Framework;

namespace AttnCore.Tests.Docs;

/// <summary>
/// docs/architecture.md cannot drift from the code: its IBackend counts and family table are the interface's
/// (by reflection), every file path it names exists, and every Tensor/Device member it names exists.
/// </summary>
[TestFixture, Category("Docs")]
public class ArchitecturePageTests
{
    private static string Page() => File.ReadAllText(Path.Combine(DocsTests.Root(), "docs", "architecture.md"));

    private static string Section(string page, string heading)
    {
        int start = page.IndexOf("\n## " + heading, StringComparison.Ordinal);
        Assert.That(start, Is.GreaterThanOrEqualTo(0), $"architecture.md has no '## {heading}' section");
        int end = page.IndexOf("\n## ", start + 4, StringComparison.Ordinal);
        return end < 0 ? page[start..] : page[start..end];
    }

    private static MethodInfo[] BackendMethods() => typeof(IBackend).GetMethods().Where(m => !m.IsSpecialName).ToArray();

    [Test]
    public void The_page_states_the_method_and_property_counts_of_IBackend()
    {
        string section = Section(Page(), "The backend interface");
        var methods = Regex.Match(section, @"\*\*(\d+) methods\*\*");
        var properties = Regex.Match(section, @"(\d+) properties");
        Assert.That(methods.Success && properties.Success, Is.True, "the backend section states no '**N methods**' and 'M properties'");
        Assert.That(int.Parse(methods.Groups[1].Value), Is.EqualTo(BackendMethods().Length), "IBackend method count in docs/architecture.md");
        Assert.That(int.Parse(properties.Groups[1].Value), Is.EqualTo(typeof(IBackend).GetProperties().Length), "IBackend property count in docs/architecture.md");
    }

    [Test]
    public void The_family_table_lists_exactly_the_methods_of_IBackend()
    {
        string section = Section(Page(), "The backend interface");
        var tableNames = section.Split('\n').Where(l => l.StartsWith('|') && !l.StartsWith("|---", StringComparison.Ordinal))
            .SelectMany(l => Regex.Matches(l, @"`(\w+)`").Select(m => m.Groups[1].Value)).ToHashSet();
        var interfaceNames = BackendMethods().Select(m => m.Name).ToHashSet();
        Assert.That(tableNames, Is.EquivalentTo(interfaceNames), "the IBackend family table of docs/architecture.md");
    }

    /// <summary>Repository paths (Engine/Tensor.Nn.cs, Kernels/Cpu/, Engine/Tensor.*.cs) and bare file names in a text.</summary>
    internal static List<string> NamedPaths(string text)
    {
        var paths = Regex.Matches(text, @"(?<![\w/.])(?:Kernels|Engine|Autograd|Models|Cli|Benchmarks|Tests|docs)/[\w./*-]*[\w*/]")
            .Select(m => m.Value).ToList();
        paths.AddRange(Regex.Matches(text, @"(?<![\w/.*-])[\w-]+(?:\.[\w-]+)*\.(?:cs|md|props|csproj|json|py|png|sln)\b(?![\w/])").Select(m => m.Value));
        return paths;
    }

    private static bool Exists(string root, string path)
    {
        foreach (string baseDir in new[] { root, Path.Combine(root, "docs") })
        {
            string full = Path.Combine(baseDir, path.TrimEnd('/'));
            if (path.Contains('*'))
            {
                string dir = Path.GetDirectoryName(full)!;
                if (Directory.Exists(dir) && Directory.GetFiles(dir, Path.GetFileName(full)).Length > 0) return true;
            }
            else if (File.Exists(full) || Directory.Exists(full)) return true;
        }
        return false;
    }

    [Test]
    public void Every_path_the_page_names_exists()
    {
        string root = DocsTests.Root();
        var paths = NamedPaths(Page());
        Assert.That(paths.Count, Is.GreaterThan(30), "the path extractor found too few paths to be checking anything");
        Assert.That(paths.Where(p => !Exists(root, p)).Distinct().ToList(), Is.Empty, "docs/architecture.md names paths that do not exist");
    }

    [Test]
    public void The_path_extractor_finds_paths_globs_and_bare_file_names()
    {
        var found = NamedPaths("Tensor.MatMul(b)   Engine/Tensor.Nn.cs, `Kernels/Cpu/` and Engine/Tensor.*.cs; see DESIGN.md and gpu.md.");
        Assert.That(found, Is.EquivalentTo(new[] { "Engine/Tensor.Nn.cs", "Kernels/Cpu/", "Engine/Tensor.*.cs", "DESIGN.md", "gpu.md" }));
        string root = DocsTests.Root();
        Assert.That(found.Where(p => !Exists(root, p)), Is.EquivalentTo(new[] { "DESIGN.md" }));
    }

    [Test]
    public void Every_Tensor_and_Device_member_the_page_names_exists()
    {
        var types = new Dictionary<string, Type> { ["Tensor"] = typeof(Tensor), ["Device"] = typeof(Device) };
        var named = Regex.Matches(Page(), @"`(Tensor|Device)\.(\w+)").Select(m => (Type: m.Groups[1].Value, Member: m.Groups[2].Value)).ToList();
        Assert.That(named, Has.Count.GreaterThan(8));
        var missing = named.Where(n => types[n.Type].GetMember(n.Member, BindingFlags.Public | BindingFlags.Static | BindingFlags.Instance).Length == 0)
            .Select(n => $"{n.Type}.{n.Member}").ToList();
        Assert.That(missing, Is.Empty, "docs/architecture.md names members that do not exist");
    }

    [Test]
    public void The_page_cites_no_design_file_outside_the_repository()
    {
        Assert.That(Page(), Does.Not.Contain("DESIGN.md"));
    }
}
