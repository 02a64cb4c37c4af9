using System.Text.RegularExpressions;
using NUnit.Framework;

namespace AttnCore.Tests.Docs;

/// <summary>
/// Kernels/Cpu and Kernels/Gpu do not reference each other: what both need (shapes, operand layouts, argument
/// checks, the dropout hashes) lives in Kernels/Common (namespace AttnCore.Kernels), which references neither.
/// The source files are scanned, comments removed, for a namespace reference to the other side.
/// </summary>
[TestFixture, Category("Docs"), Category("Kernels")]
public class KernelLayeringTests
{
    // A reference to the Cpu (or Gpu) kernel namespace in code: "Cpu.X", "AttnCore.Kernels.Cpu", "using ... Cpu;".
    static Regex Reference(string side) => new($@"(\b{side}\.[A-Za-z_]|\bKernels\.{side}\b|^\s*using\b[^;]*\b{side}\s*;)", RegexOptions.Multiline);

    // Line comments and block comments blanked (keeping line numbers); string literals in kernels do not contain "//".
    static string WithoutComments(string source) =>
        Regex.Replace(Regex.Replace(source, @"/\*.*?\*/", m => new string('\n', m.Value.Count(c => c == '\n')), RegexOptions.Singleline), @"//[^\n]*", "");

    internal static IEnumerable<string> Violations(string file, string source, string forbidden)
    {
        var code = WithoutComments(source);
        foreach (Match m in Reference(forbidden).Matches(code))
        {
            int line = code.Take(m.Index).Count(c => c == '\n') + 1;
            yield return $"{file}:{line} references the {forbidden} kernels: {m.Value.Trim()}";
        }
    }

    static IEnumerable<string> Scan(string folder, params string[] forbidden)
    {
        string dir = Path.Combine(DocsTests.Root(), "Kernels", folder);
        Assert.That(Directory.Exists(dir), Is.True, dir);
        var files = Directory.GetFiles(dir, "*.cs");
        Assert.That(files, Is.Not.Empty, dir);
        foreach (var file in files)
            foreach (var side in forbidden)
                foreach (var v in Violations(Path.GetRelativePath(DocsTests.Root(), file), File.ReadAllText(file), side))
                    yield return v;
    }

    [Test]
    public void Cpu_kernels_do_not_reference_the_gpu_kernels() => Assert.That(Scan("Cpu", "Gpu").ToArray(), Is.Empty);

    [Test]
    public void Gpu_kernels_do_not_reference_the_cpu_kernels() => Assert.That(Scan("Gpu", "Cpu").ToArray(), Is.Empty);

    [Test]
    public void Common_kernel_types_reference_neither_side() => Assert.That(Scan("Common", "Cpu", "Gpu").ToArray(), Is.Empty);

    [Test]
    public void The_scan_finds_the_references_it_forbids_and_ignores_comments()
    {
        // The forms the Gpu kernels used before the shared types moved, and forms that must not count.
        Assert.That(Violations("x.cs", "public static ConvGeometry From(Cpu.Conv2dShape s) => new();", "Cpu").Count(), Is.EqualTo(1));
        Assert.That(Violations("x.cs", "using AttnCore.Kernels.Cpu;\nclass A { }", "Cpu").Count(), Is.EqualTo(1));
        Assert.That(Violations("x.cs", "class A { }\nvar k = AttnCore.Kernels.Gpu.RandomMask.KeepScale(1, 2, 0f, 1f);", "Gpu").Single(), Does.StartWith("x.cs:2 "));
        Assert.That(Violations("x.cs", "using CpuAttention = AttnCore.Kernels.Cpu.Attention;", "Cpu"), Is.Not.Empty);
        Assert.That(Violations("x.cs", "// as Kernels.Cpu.Attention.Keep does\n/* Cpu.Conv2dShape */ int GpuCount; var c = MyCpu.X;", "Cpu"), Is.Empty);
    }
}
