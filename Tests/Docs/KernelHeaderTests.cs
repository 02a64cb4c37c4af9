using System.Reflection;
using System.Text.RegularExpressions;
using NUnit.Framework;

namespace AttnCore.Tests.Docs;

/// <summary>
/// Every kernel file opens with a header comment stating its algorithm, and every method, type, test class or path its
/// "Reference:" clause cites exists: by reflection over the Kernels (and test) assembly for names, on disk for paths.
/// </summary>
[TestFixture, Category("Docs")]
public class KernelHeaderTests
{
    private static readonly Assembly KernelsAssembly = typeof(AttnCore.Kernels.Cpu.Gemm).Assembly;
    private static readonly Assembly TestsAssembly = typeof(KernelHeaderTests).Assembly;
    private const BindingFlags AnyMember = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.Instance;

    private static IEnumerable<string> KernelFiles()
    {
        string root = DocsTests.Root();
        return new[] { "Cpu", "Gpu", "Common" }.SelectMany(d => Directory.GetFiles(Path.Combine(root, "Kernels", d), "*.cs")).Order(StringComparer.Ordinal);
    }

    /// <summary>The comment lines a file opens with, without their "//" (blank comment lines kept as "").</summary>
    internal static List<string> Header(string text)
    {
        var lines = new List<string>();
        foreach (string raw in text.Split('\n'))
        {
            string line = raw.TrimEnd('\r');
            if (!line.StartsWith("//", StringComparison.Ordinal) || line.StartsWith("///", StringComparison.Ordinal)) break;
            lines.Add(line[2..].Trim());
        }
        return lines;
    }

    /// <summary>
    /// The text of each "Reference:" clause in a header: from the tag to a blank comment line, the next tag line
    /// ("FLOPs:", "Bound:" ...) or the end of the header.
    /// </summary>
    internal static List<string> ReferenceClauses(List<string> header)
    {
        var clauses = new List<string>();
        for (int i = 0; i < header.Count; i++)
        {
            int at = header[i].IndexOf("Reference:", StringComparison.Ordinal);
            if (at < 0) continue;
            var clause = new List<string> { header[i][(at + "Reference:".Length)..] };
            for (int j = i + 1; j < header.Count && header[j].Length > 0 && !Regex.IsMatch(header[j], @"^[A-Z][A-Za-z0-9 ]{0,30}:\s"); j++)
                clause.Add(header[j]);
            clauses.Add(string.Join(' ', clause));
        }
        return clauses;
    }

    /// <summary>
    /// What a clause cites, each with whether it exists: repository paths (Tests/..., Kernels/...), bare file names
    /// (beside the citing file), names ending in Reference (a Kernels type, or a member of a type declared in the
    /// citing file or in a Kernels file the clause names), Type.Member of a Kernels type, and test classes (*Tests).
    /// </summary>
    internal static List<(string Cited, bool Exists)> Citations(string clause, string citingFile, string root)
    {
        var found = new List<(string, bool)>();
        string dir = Path.GetDirectoryName(citingFile)!;
        var kernelTypes = KernelsAssembly.GetTypes();

        var citedFiles = new List<string> { citingFile };
        foreach (Match m in Regex.Matches(clause, @"\b(?:Tests|Kernels|Engine|Autograd|Models|Cli|Benchmarks|docs)/[\w./-]*\w"))
        {
            string path = Path.Combine(root, m.Value);
            found.Add((m.Value, File.Exists(path) || Directory.Exists(path)));
            if (File.Exists(path)) citedFiles.Add(path);
        }
        foreach (Match m in Regex.Matches(clause, @"(?<![\w/.])(\w+\.(?:cs|py|json))\b"))
        {
            string path = Path.Combine(dir, m.Groups[1].Value);
            found.Add((m.Groups[1].Value, File.Exists(path)));
            if (File.Exists(path)) citedFiles.Add(path);
        }

        // Types declared in the citing file and in the Kernels files the clause names: bare method names resolve there.
        var declared = citedFiles.Where(f => f.Contains($"{Path.DirectorySeparatorChar}Kernels{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .SelectMany(f => Regex.Matches(File.ReadAllText(f), @"\b(?:class|struct|interface|enum)\s+(\w+)").Select(m => m.Groups[1].Value))
            .SelectMany(name => kernelTypes.Where(t => t.Name == name || t.Name.StartsWith(name + "`", StringComparison.Ordinal)))
            .ToList();

        bool HasMember(IEnumerable<Type> types, string member) => types.Any(t => t.GetMember(member, AnyMember).Length > 0);
        IEnumerable<Type> TypesNamed(string name) => kernelTypes.Where(t => t.Name == name || t.Name.StartsWith(name + "`", StringComparison.Ordinal));

        foreach (Match m in Regex.Matches(clause, @"(?<![\w./])([A-Z]\w*)\.([A-Z]\w*)\b(?!\.(?:cs|py|json))"))
        {
            string type = m.Groups[1].Value, member = m.Groups[2].Value;
            if (!type.EndsWith("Reference", StringComparison.Ordinal) && !TypesNamed(type).Any()) continue; // prose such as Math.Exp
            found.Add((m.Value, HasMember(TypesNamed(type), member)));
        }
        foreach (Match m in Regex.Matches(clause, @"(?<![\w.])(\w*Reference)\b(?!\.\w|\w)"))
        {
            string name = m.Groups[1].Value;
            found.Add((name, name != "Reference" && (TypesNamed(name).Any() || HasMember(declared, name))));
        }
        foreach (Match m in Regex.Matches(clause, @"(?<![\w./])([A-Z]\w+Tests)\b(?!\.\w|[\w/])"))
            found.Add((m.Value, TestsAssembly.GetTypes().Any(t => t.Name == m.Value)));
        return found;
    }

    [Test]
    public void Every_kernel_file_opens_with_a_header_comment_stating_its_algorithm()
    {
        var missing = new List<string>();
        foreach (string file in KernelFiles())
        {
            var header = Header(File.ReadAllText(file));
            // A sentence or two at least: a lone "// Gemm" line does not state an algorithm.
            if (string.Join(' ', header).Length < 120) missing.Add(Path.GetRelativePath(DocsTests.Root(), file));
        }
        Assert.That(missing, Is.Empty, "kernel files without a header comment (of at least 120 characters) before their first line of code");
    }

    [Test]
    public void Every_name_and_path_a_kernel_header_cites_as_its_reference_exists()
    {
        string root = DocsTests.Root();
        var broken = new List<string>();
        int checkedCount = 0;
        foreach (string file in KernelFiles())
            foreach (string clause in ReferenceClauses(Header(File.ReadAllText(file))))
                foreach (var (cited, exists) in Citations(clause, file, root))
                {
                    checkedCount++;
                    if (!exists) broken.Add($"{Path.GetRelativePath(root, file)} cites {cited}");
                }
        Assert.That(broken, Is.Empty, "kernel headers cite references that do not exist");
        Assert.That(checkedCount, Is.GreaterThan(40), "the citation parser found too few citations to be checking anything");
    }

    [Test]
    public void The_citation_parser_flags_names_and_paths_that_do_not_exist()
    {
        string root = DocsTests.Root();
        string layerNorm = Path.Combine(root, "Kernels", "Cpu", "LayerNorm.cs");
        var header = new List<string>
        {
            "LayerNorm: rows.",
            "Reference: ForwardReference / NoSuchReference, AttentionReference.Backward and AttentionReference.Nowhere,",
            "Tests/Kernels/RowKernelTests.cs, Tests/Kernels/Missing.cs, Missing.cs, RowKernelTests and NoSuchTests.",
            "Bound: Tests/Nowhere.cs is past the clause.",
        };
        var clauses = ReferenceClauses(header);
        Assert.That(clauses, Has.Count.EqualTo(1));
        var cited = Citations(clauses[0], layerNorm, root).ToDictionary(c => c.Cited, c => c.Exists);
        Assert.That(cited, Is.EquivalentTo(new Dictionary<string, bool>
        {
            ["ForwardReference"] = false, // LayerNorm has no method of that name
            ["NoSuchReference"] = false,
            ["AttentionReference.Backward"] = true,
            ["AttentionReference.Nowhere"] = false,
            ["Tests/Kernels/RowKernelTests.cs"] = true,
            ["Tests/Kernels/Missing.cs"] = false,
            ["Missing.cs"] = false,
            ["RowKernelTests"] = true,
            ["NoSuchTests"] = false,
        }));
    }
}
