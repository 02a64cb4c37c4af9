using System.Text.RegularExpressions;
using NUnit.Framework;

namespace AttnCore.Tests.Docs;

/// <summary>The documentation stays true: links resolve, commands exist, generated figures carry their provenance.</summary>
[TestFixture, Category("Docs")]
public class DocsTests
{
    internal static string Root()
    {
        var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "AttnCore.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("AttnCore.sln not found above the test directory");
    }

    [Test]
    public void Every_relative_link_in_the_readme_and_docs_points_to_a_file()
    {
        string root = Root();
        var files = new[] { Path.Combine(root, "README.md") }.Concat(Directory.GetFiles(Path.Combine(root, "docs"), "*.md"));
        foreach (var file in files)
            foreach (Match m in Regex.Matches(File.ReadAllText(file), @"\]\(([^)#\s]+)(#[^)]*)?\)"))
            {
                string target = m.Groups[1].Value;
                if (target.StartsWith("http", StringComparison.Ordinal) || target.StartsWith("mailto:", StringComparison.Ordinal)) continue;
                string path = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(file)!, target));
                Assert.That(File.Exists(path) || Directory.Exists(path), Is.True, $"{Path.GetFileName(file)} links to {target}, which does not exist");
            }
    }

    [Test]
    public void The_benchmark_page_states_date_machine_and_commit_of_its_run()
    {
        string text = File.ReadAllText(Path.Combine(Root(), "docs", "benchmarks.md"));
        Assert.That(text, Does.Match(@"- Date: \d{4}-\d{2}-\d{2}"));
        Assert.That(text, Does.Match(@"- Commit: [0-9a-f]{7}"));
        Assert.That(text, Does.Contain("- Machine: "));
        Assert.That(File.Exists(Path.Combine(Root(), "docs", "benchmarks.png")), Is.True);
    }

    [Test]
    public void The_readme_documents_the_commands_the_cli_has()
    {
        string readme = File.ReadAllText(Path.Combine(Root(), "README.md"));
        var o = new StringWriter();
        AttnCore.Cli.Program.Run(["--help"], o, new StringWriter());
        foreach (var cmd in new[] { "demo", "devices", "bench", "train", "eval", "generate" })
        {
            Assert.That(o.ToString(), Does.Contain(cmd), $"the CLI lacks {cmd}");
            Assert.That(readme, Does.Contain($"attncore {cmd}").Or.Contain($"-- {cmd}"), $"README does not mention {cmd}");
        }
        Assert.That(readme, Does.Contain("dotnet test -c Release"));
        Assert.That(readme, Does.Contain("dotnet run -c Release --project Cli -- demo"));
    }
}
