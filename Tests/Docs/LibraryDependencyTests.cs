using System.Xml.Linq;
using NUnit.Framework;

namespace AttnCore.Tests.Docs;

/// <summary>
/// The four library packages depend only on what computing needs: a user who wants a Linear layer gets no terminal UI
/// or plotting stack. Progress bars and charts live in AttnCore.Presentation, which only the apps reference.
/// </summary>
[TestFixture, Category("Docs")]
public class LibraryDependencyTests
{
    static readonly string[] Libraries =
    [
        "Kernels/AttnCore.Kernels.csproj", "Engine/AttnCore.Engine.csproj", "Autograd/AttnCore.Autograd.csproj", "Models/AttnCore.Models.csproj",
        "Distributed/AttnCore.Distributed.csproj",
    ];

    static readonly string[] ComputePackages = ["System.Numerics.Tensors", "ILGPU", "ILGPU.Algorithms"];

    [Test]
    public void The_library_projects_and_everything_they_reference_use_only_the_compute_packages()
    {
        string root = DocsTests.Root();
        var libraryPaths = Libraries.Select(l => Path.GetFullPath(Path.Combine(root, l))).ToHashSet();
        // Directory.Build.props and Directory.Packages.props apply to every project: a PackageReference there counts too.
        var shared = new[] { "Directory.Build.props", "Directory.Build.targets" }.Select(f => Path.Combine(root, f)).Where(File.Exists);
        foreach (var library in Libraries)
        {
            var seen = new HashSet<string>();
            var pending = new Stack<string>([Path.GetFullPath(Path.Combine(root, library))]);
            while (pending.Count > 0)
            {
                string project = pending.Pop();
                if (!seen.Add(project)) continue;
                Assert.That(File.Exists(project), Is.True, $"{library} references {project}, which does not exist");
                Assert.That(libraryPaths, Does.Contain(project), $"{library} references {Path.GetRelativePath(root, project)}, which is not one of the libraries");
                foreach (var reference in Items(project, "ProjectReference"))
                    pending.Push(Path.GetFullPath(Path.Combine(Path.GetDirectoryName(project)!, reference.Replace('\\', '/'))));
            }
            foreach (var file in seen.Concat(shared))
            {
                foreach (var package in Items(file, "PackageReference"))
                    Assert.That(ComputePackages, Does.Contain(package),
                        $"{library}: {Path.GetRelativePath(root, file)} references the package {package}; the libraries may use only {string.Join(", ", ComputePackages)}");
                foreach (var kind in new[] { "Reference", "FrameworkReference" })
                    Assert.That(Items(file, kind), Is.Empty, $"{library}: {Path.GetRelativePath(root, file)} has a {kind}; the libraries need only the base framework");
            }
        }
    }

    [Test]
    public void The_presentation_packages_are_referenced_by_the_presentation_layer()
    {
        // The other half of the split: what left the libraries is still referenced, by the layer the apps use.
        string root = DocsTests.Root();
        Assert.That(Items(Path.Combine(root, "Presentation", "AttnCore.Presentation.csproj"), "PackageReference"),
            Is.EquivalentTo(new[] { "Spectre.Console", "ScottPlot" }));
    }

    static IEnumerable<string> Items(string msbuildFile, string itemName) =>
        XDocument.Load(msbuildFile).Descendants(itemName)
            .Select(e => (string?)e.Attribute("Include") ?? (string?)e.Attribute("Update") ?? "")
            .ToArray();
}
