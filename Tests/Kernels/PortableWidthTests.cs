using System.Numerics;
using System.Runtime.Intrinsics;
using System.Text.RegularExpressions;
using AttnCore.Tests.Cli;
using NUnit.Framework;

namespace AttnCore.Tests.Kernels;

/// <summary>
/// The kernels' paths for machines without AVX-512 are tested here too, on this AVX-512 machine: every Kernels test
/// runs again in a child test process whose JIT is told to leave AVX-512 out (DOTNET_EnableAVX512=0: Vector512 is not
/// accelerated and Vector&lt;float&gt; has 8 lanes, an AVX2 machine), in a second child AVX2 as well
/// (DOTNET_EnableAVX2=0: 4 lanes, the width of Arm64's AdvSimd), and in a third every SIMD instruction set
/// (DOTNET_EnableHWIntrinsic=0: the scalar loops). Each child must run the same tests with none failing.
/// </summary>
[TestFixture, Category("Kernels"), NonParallelizable]
public class PortableWidthTests
{
    // The knobs the child runs with, and the lanes Vector<float> must then have.
    private static readonly (string Knob, int Lanes, string Machine)[] Widths =
    [
        ("DOTNET_EnableAVX512", 8, "an AVX2 machine"),
        ("DOTNET_EnableAVX2", 4, "a 128-bit machine (Arm64's width)"),
        ("DOTNET_EnableHWIntrinsic", 0, "a machine without SIMD (the scalar loops)"),
    ];

    [TestCase(0)]
    [TestCase(1)]
    [TestCase(2)]
    public void Every_kernel_test_passes_at_the_narrower_vector_width(int which)
    {
        var (knob, lanes, machine) = Widths[which];
        if (!Vector512.IsHardwareAccelerated || Environment.GetEnvironmentVariable(knob) == "0")
            Assert.Ignore($"this process already runs without AVX-512 ({knob}={Environment.GetEnvironmentVariable(knob) ?? "unset"}); the child runs check the narrower paths from an AVX-512 host");
        string assembly = typeof(PortableWidthTests).Assembly.Location;
        var result = ExternalProcess.Run(Distributed.MpiRun.Dotnet,
            ["test", assembly, "--filter", $"TestCategory=Kernels&FullyQualifiedName!~{nameof(PortableWidthTests)}"],
            Path.GetDirectoryName(assembly)!, TimeSpan.FromMinutes(8),
            new Dictionary<string, string> { [knob] = "0", ["ATTNCORE_EXPECT_LANES"] = lanes.ToString() });
        var summary = Regex.Match(result.StdOut, @"(Passed|Failed)!\s+-\s+Failed:\s+(\d+),\s+Passed:\s+(\d+)");
        Assert.That(summary.Success, Is.True, $"no test summary from the child ({knob}=0, {machine}):\n{Quoted(result.Output)}");
        int failed = int.Parse(summary.Groups[2].Value), passed = int.Parse(summary.Groups[3].Value);
        var failures = Regex.Matches(result.StdOut, @"^\s+Failed (\S.*)$", RegexOptions.Multiline).Select(m => m.Groups[1].Value.Trim());
        Assert.That(failed, Is.Zero, $"kernel tests failed with {knob}=0 ({machine}): {string.Join("; ", failures)}\n{Quoted(result.Output)}");
        Assert.That(passed, Is.GreaterThan(800), $"the child ran too few kernel tests with {knob}=0");
        Assert.That(result.ExitCode, Is.Zero, $"the child exited with {result.ExitCode}");
    }

    // Runs in the children (and here, where it checks nothing): the knob took effect, so the runs above did test the
    // narrower paths rather than the AVX-512 ones again.
    [Test]
    public void A_child_run_gets_the_vector_width_it_asked_for()
    {
        if (Environment.GetEnvironmentVariable("ATTNCORE_EXPECT_LANES") is not { Length: > 0 } expect)
        {
            Assert.That(Vector<float>.Count, Is.AnyOf(4, 8, 16));
            return;
        }
        int lanes = int.Parse(expect);
        Assert.Multiple(() =>
        {
            Assert.That(Vector512.IsHardwareAccelerated, Is.False, "Vector512 is still accelerated");
            // 0 lanes: no SIMD at all, so Vector<float> is not accelerated either.
            Assert.That(Vector.IsHardwareAccelerated, Is.EqualTo(lanes > 0), "Vector<float> acceleration");
            if (lanes > 0) Assert.That(Vector<float>.Count, Is.EqualTo(lanes), "lanes of Vector<float>");
        });
    }

    // The end of the child's output, each line marked: its own "Passed!"/"Failed!" summary must not start a line of this
    // run's output, where CI sums those lines.
    private static string Quoted(string s)
    {
        string tail = s.Length <= 6000 ? s : s[^6000..];
        return string.Join('\n', tail.Split('\n').Select(line => "child| " + line));
    }
}
