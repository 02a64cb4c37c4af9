using System.Globalization;
using System.Reflection;
using System.Text.RegularExpressions;
using AttnCore.Models.Transformers;
using NUnit.Framework;

namespace AttnCore.Tests.Docs;

/// <summary>
/// docs/tour.md is a reading path whose links must lead somewhere and whose exercise answers must be true: each
/// answer (the code span opening its "Answer" block) is recomputed here with the engine, so a change to the code
/// that makes an answer stale fails this test until the page is updated.
/// </summary>
[TestFixture, Category("Docs")]
public class TourPageTests
{
    private static string Page() => File.ReadAllText(Path.Combine(DocsTests.Root(), "docs", "tour.md"));

    private static string F4(IEnumerable<float> values) => string.Join(" ", values.Select(v => v.ToString("F4", CultureInfo.InvariantCulture)));

    private static string Softmax1000(Device device)
    {
        using var x = Tensor.FromArray(new float[] { 1000, 1001, 1002 }, device: device);
        using var y = x.Softmax(-1);
        return F4(y.ToArray<float>());
    }

    /// <summary>The answer to each exercise, computed with the engine the way the exercise says.</summary>
    private static readonly Func<string>[] Answers =
    [
        () =>
        {
            using var x = Tensor.Arange(12).Reshape(3, 4);
            using var y = x.T;
            using var dense = y.Contiguous();
            return $"strides [{string.Join(", ", y.Strides)}], contiguous {y.IsContiguous}, y[3, 2] = {dense.ToArray<float>()[3 * 3 + 2]}";
        },
        () =>
        {
            using var a = Tensor.Arange(3).Reshape(3, 1);
            using var b = Tensor.Arange(4);
            using var sum = a + b;
            using var expanded = a.Expand(3, 4);
            return $"shape [{string.Join(", ", sum.Shape)}], a.Expand(3, 4) strides [{string.Join(", ", expanded.Strides)}]";
        },
        () =>
        {
            int Tile(string name) => (int)typeof(AttnCore.Kernels.Cpu.Gemm).GetField(name, BindingFlags.NonPublic | BindingFlags.Static)!.GetRawConstantValue()!;
            int mr = Tile("MR"), nr = Tile("NR");
            const long m = 96, n = 64, k = 256;
            Assert.That(m % mr == 0 && n % nr == 0, "the exercise's shape is a whole number of tiles");
            return $"{2 * m * n * k} FLOPs, {m / mr * (n / nr)} tiles of {mr} x {nr}";
        },
        () => Softmax1000(Device.Cpu),
        () =>
        {
            const long b = 1, h = 8, l = 1024, bytes = sizeof(float);
            long mib = b * h * l * l * bytes / (1 << 20);
            using var q = Tensor.Randn([1, 2, 5, 4], seed: 1);
            using var k = Tensor.Randn([1, 2, 5, 4], seed: 2);
            using var v = Tensor.Randn([1, 2, 5, 4], seed: 3);
            using var o = Tensor.ScaledDotProductAttention(q, k, v, causal: true);
            var (out0, v0) = (o.ToArray<float>(), v.ToArray<float>());
            bool firstRowIsValue = Enumerable.Range(0, 2).All(head => Enumerable.Range(0, 4).All(d => Math.Abs(out0[head * 20 + d] - v0[head * 20 + d]) < 1e-6));
            return $"{mib} MiB; output row 0 = {(firstRowIsValue ? "value row 0" : "something else")}";
        },
        () =>
        {
            using var x = Tensor.FromArray(new float[] { 1000, 1001, 1002 }).RequiresGrad_();
            using var y = x.Softmax(-1);
            using var pick = Tensor.FromArray(new float[] { 0, 0, 1 });
            using var picked = y * pick;
            using var loss = picked.Sum();
            loss.Backward();
            return F4(x.Grad!.ToArray<float>());
        },
        () => Softmax1000(Device.IlgpuCpu),
        () =>
        {
            using var gpt = new Gpt(new GptConfig(Vocab: 65, BlockSize: 64, Layers: 4, Heads: 4, Dim: 128), new Generator(0));
            return $"{gpt.ParameterCount()} parameters";
        },
    ];

    [Test]
    public void Every_exercise_has_the_answer_the_engine_computes()
    {
        string page = Page();
        var exercises = Regex.Matches(page, @"\*\*Exercise (\d+)\.\*\*").Select(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).ToList();
        Assert.That(exercises, Is.EqualTo(Enumerable.Range(1, Answers.Length)), "the exercises are numbered 1..N and each has a computed answer here");
        var answers = Regex.Matches(page, @"<details><summary>Answer</summary>\s*`([^`]+)`").Select(m => m.Groups[1].Value).ToList();
        Assert.That(answers, Has.Count.EqualTo(Answers.Length), "each exercise has one answer block opening with its answer in a code span");
        for (int i = 0; i < Answers.Length; i++)
            Assert.That(answers[i], Is.EqualTo(Answers[i]()), $"docs/tour.md exercise {i + 1}");
    }

    [Test]
    public void Every_stop_links_files_that_exist()
    {
        string page = Page();
        var stops = Regex.Split(page, @"^## ", RegexOptions.Multiline).Skip(1).ToList();
        Assert.That(stops.Select(s => s.Split('\n')[0]), Is.EqualTo(new[]
        {
            "1. A tensor and its views", "2. One element-wise op, from the API to the SIMD loop", "3. The GEMM", "4. Softmax",
            "5. Fused attention", "6. The derivative table and Backward", "7. One GPU kernel", "8. One model: GPT",
        }));
        string docs = Path.Combine(DocsTests.Root(), "docs");
        foreach (var stop in stops)
        {
            var links = Regex.Matches(stop, @"\]\(([^)#\s]+)\)").Select(m => m.Groups[1].Value).Where(l => !l.StartsWith("http", StringComparison.Ordinal)).ToList();
            Assert.That(links.Count(l => l.EndsWith(".cs", StringComparison.Ordinal)), Is.GreaterThanOrEqualTo(3), $"stop '{stop.Split('\n')[0]}' links fewer than three source files");
            foreach (var link in links)
                Assert.That(File.Exists(Path.GetFullPath(Path.Combine(docs, link))), Is.True, $"docs/tour.md links {link}, which is not a file");
        }
    }
}
