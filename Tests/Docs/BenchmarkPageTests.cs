using NUnit.Framework;

namespace AttnCore.Tests.Docs;

/// <summary>The benchmark page says against which PyTorch configuration its figures were measured, and how the tuned one is set up.</summary>
[TestFixture, Category("Docs")]
public class BenchmarkPageTests
{
    static string Page() => File.ReadAllText(Path.Combine(DocsTests.Root(), "docs", "benchmarks.md"));

    [Test]
    public void The_benchmark_page_states_the_reference_configuration_of_its_figures()
    {
        string text = Page();
        // The generator writes one "- Reference: PyTorch <version>, tuned|untuned ..." line from what the reference process reported.
        var line = text.Split('\n').SingleOrDefault(l => l.StartsWith("- Reference: PyTorch ", StringComparison.Ordinal));
        Assert.That(line, Is.Not.Null, "docs/benchmarks.md has no '- Reference: PyTorch ...' line");
        Assert.That(line, Does.Contain("tuned").And.Contain("OMP_WAIT_POLICY"));
        if (line!.Contains("**untuned**", StringComparison.Ordinal))
            Assert.That(text, Does.Contain("untuned").And.Contain("must not be quoted"), "figures against the untuned reference are marked as such");
        foreach (var fact in new[] { "OPENBLAS_CORETYPE", "openblas_get_corename", "jemalloc", "MALLOC_MMAP_THRESHOLD_", "OMP_WAIT_POLICY=PASSIVE", "OPENBLAS_THREAD_TIMEOUT=18", "--torch-untuned", "bench peak", "% of peak" })
            Assert.That(text, Does.Contain(fact), $"the page's account of the reference and the peak lacks {fact}");
    }
}
