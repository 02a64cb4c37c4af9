using System.Globalization;
using System.Text.RegularExpressions;
using NUnit.Framework;

namespace AttnCore.Tests.Docs;

/// <summary>
/// docs/attention-by-hand.md computes the survey's self-attention example step by step. Every table on the page
/// marked <c>&lt;!-- check: NAME --&gt;</c> is compared cell by cell with the engine's result (float64), and every
/// other number in its text must be an input, a value computed here, or one of the survey's figures, which the
/// test shows to be wrong. A typo or a stale number anywhere on the page fails.
/// </summary>
[TestFixture, Category("Docs")]
public class AttentionByHandPageTests
{
    private static readonly double[] Embedding = [0.1, 0.2, 0.3, 0.4, 0.5];
    private static readonly double[] WeightQ = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    private static readonly double[] WeightK = [1, 3, 2, 4, 5, 7, 6, 8, 9, 10];

    // The survey's figures the page quotes: a₁,₁ ≈ 0.01, a₁,₂ ≈ 0.19, the weights 0.01, 0.19, 0.19, 0.14, 0.01, C₁ ≈ 2.04, y₁ = 3.04.
    private static readonly double[] SurveyWeights = [0.01, 0.19, 0.19, 0.14, 0.01];
    private const double SurveyC1 = 2.04, SurveyY1 = 3.04;

    private static string Page() => File.ReadAllText(Path.Combine(DocsTests.Root(), "docs", "attention-by-hand.md"));

    /// <summary>Every quantity of the page, computed with the engine's ops in float64.</summary>
    private static Dictionary<string, double[,]> Compute()
    {
        var xe = Tensor.FromArray(Enumerable.Range(0, 25).Select(i => i / 5 == i % 5 ? Embedding[i / 5] : 0.0).ToArray(), [5, 5]);
        var wq = Tensor.FromArray(WeightQ, [5, 2]);
        var wk = Tensor.FromArray(WeightK, [5, 2]);
        var wv = wq;
        var q = xe.MatMul(wq); var k = xe.MatMul(wk); var v = xe.MatMul(wv);
        var s = q.MatMul(k.T);
        var a = s.Softmax(-1);
        var c = a.MatMul(v);
        var r = xe + c.MatMul(wv.T);
        var mean = r.Mean(-1, keepDim: true);
        var centred = r - mean;
        var variance = (centred * centred).Mean(-1, keepDim: true);
        var y = r.LayerNorm([5]);
        return new()
        {
            ["W_Q"] = Matrix(wq), ["W_K"] = Matrix(wk), ["Q"] = Matrix(q), ["K"] = Matrix(k), ["V"] = Matrix(v), ["S"] = Matrix(s),
            ["A"] = Matrix(a), ["C"] = Matrix(c), ["R"] = Matrix(r), ["mean and variance"] = Matrix(Tensor.Cat([mean, variance], 1)), ["Y"] = Matrix(y),
            ["fused C"] = Matrix(Tensor.ScaledDotProductAttention(q.Reshape(1, 1, 5, 2), k.Reshape(1, 1, 5, 2), v.Reshape(1, 1, 5, 2), scale: 1).Reshape(5, 2)),
            ["one token q, k"] = Matrix(Tensor.FromArray(Embedding, [1, 5]).MatMul(Tensor.Cat([wq, wk], 1))),
        };
    }

    private static double[,] Matrix(Tensor t)
    {
        var values = t.ToArray<double>();
        int rows = t.Shape[0], cols = t.Shape[1];
        var m = new double[rows, cols];
        for (int i = 0; i < rows; i++) for (int j = 0; j < cols; j++) m[i, j] = values[i * cols + j];
        return m;
    }

    /// <summary>The tables under each <c>&lt;!-- check: NAME --&gt;</c> marker: rows of numbers after the header.</summary>
    private static Dictionary<string, List<string[]>> CheckedTables(string page)
    {
        var tables = new Dictionary<string, List<string[]>>();
        foreach (Match m in Regex.Matches(page, @"<!-- check: ([^>]+?) -->\n((?:\|.*\|\n?)+)"))
            tables[m.Groups[1].Value] = m.Groups[2].Value.Trim().Split('\n').Skip(2)
                .Select(row => row.Trim().Trim('|').Split('|').Skip(1).Select(c => c.Trim()).ToArray()).ToList();
        return tables;
    }

    [Test]
    public void Every_checked_table_is_the_engines_result_to_four_decimals()
    {
        var computed = Compute();
        var tables = CheckedTables(Page());
        Assert.That(tables.Keys, Is.EquivalentTo(new[] { "W_Q", "W_K", "Q", "K", "S", "A", "C", "R", "mean and variance", "Y" }));
        foreach (var (name, rows) in tables)
        {
            var expected = computed[name];
            Assert.That(rows, Has.Count.EqualTo(expected.GetLength(0)), name);
            for (int i = 0; i < rows.Count; i++)
            {
                Assert.That(rows[i], Has.Length.EqualTo(expected.GetLength(1)), $"{name} row {i + 1}");
                for (int j = 0; j < rows[i].Length; j++)
                    Assert.That(double.Parse(rows[i][j], CultureInfo.InvariantCulture), Is.EqualTo(expected[i, j]).Within(0.5e-4 + 1e-12), $"{name}[{i + 1}, {j + 1}]");
            }
        }
    }

    [Test]
    public void The_fused_kernel_and_the_matrix_steps_agree_and_the_page_says_what_it_claims()
    {
        var c = Compute();
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 2; j++)
                Assert.That(c["fused C"][i, j], Is.EqualTo(c["C"][i, j]).Within(1e-9), $"C[{i}, {j}]");
        for (int i = 0; i < 5; i++)
        {
            Assert.That(Enumerable.Range(0, 5).Sum(j => c["A"][i, j]), Is.EqualTo(1).Within(1e-12));
            Assert.That(Enumerable.Range(0, 2).Select(j => c["V"][i, j]), Is.EqualTo(Enumerable.Range(0, 2).Select(j => c["Q"][i, j])), "V equals Q, as the page says");
            // Reading 2 reproduces the survey's own Q entries: x_e[t] times W_Q[t, 0].
            Assert.That(c["Q"][i, 0], Is.EqualTo(Embedding[i] * WeightQ[2 * i]).Within(1e-12));
        }
        // The survey's figures are wrong, as the page says: its weights do not sum to 1, its formula gives other weights,
        // and its own weighted sum is not 2.04.
        double[] keys = [0.1 * 1, 0.2 * 2, 0.3 * 3, 0.4 * 4, 0.5 * 5];
        double total = keys.Sum(Math.Exp);
        Assert.That(Math.Abs(Math.Exp(keys[0]) / total - SurveyWeights[0]), Is.GreaterThan(0.03));
        Assert.That(Math.Abs(Math.Exp(keys[1]) / total - SurveyWeights[1]), Is.GreaterThan(0.1));
        Assert.That(Math.Abs(SurveyWeights.Sum() - 1), Is.GreaterThan(0.4));
        Assert.That(Math.Abs(SurveyWeights.Select((w, t) => w * (t + 1)).Sum() - SurveyC1), Is.GreaterThan(0.4));
        Assert.That(Math.Abs(c["C"][0, 0] - SurveyC1), Is.GreaterThan(0.5), "the correct C₁ is not the survey's");
        Assert.That(Math.Abs(c["Y"][0, 0] - SurveyY1), Is.GreaterThan(1));
    }

    [Test]
    public void Every_number_in_the_text_is_an_input_a_computed_value_or_a_refuted_survey_figure()
    {
        var computed = Compute();
        double[] keys = [0.1 * 1, 0.2 * 2, 0.3 * 3, 0.4 * 4, 0.5 * 5];
        double total = keys.Sum(Math.Exp);
        var known = computed.Values.SelectMany(m => m.Cast<double>())
            .Concat(Embedding).Concat(keys).Concat(keys.Select(x => Math.Exp(x) / total)).Append(Math.Exp(keys[0])).Append(total)
            .Append(SurveyWeights.Sum()).Append(SurveyWeights.Select((w, t) => w * (t + 1)).Sum())
            .Concat(SurveyWeights).Append(SurveyC1).Append(SurveyY1)
            .ToList();
        string text = Regex.Replace(Page(), @"<!-- check: [^>]+? -->\n(?:\|.*\|\n?)+", "");   // the tables are checked cell by cell above
        text = Regex.Replace(text, @"(?i)section 4\.[12]\b", "section");                      // the survey's section numbers
        foreach (Match m in Regex.Matches(text, @"(?<![\w.])-?\d+(?:\.(\d+))?(?![\w])"))
        {
            double value = double.Parse(m.Value, CultureInfo.InvariantCulture);
            int decimals = m.Groups[1].Length;
            // Small integers are sizes, indices and weight entries (1 to 10); everything else must be a known value.
            if (decimals == 0 && Math.Abs(value) <= 10) continue;
            double tolerance = 0.5 * Math.Pow(10, -decimals) + 1e-12;
            Assert.That(known.Any(k => Math.Abs(k - value) <= tolerance), Is.True,
                $"docs/attention-by-hand.md: '{m.Value}' (near \"{text.Substring(Math.Max(0, m.Index - 30), Math.Min(60, text.Length - Math.Max(0, m.Index - 30)))}\") is no value the test computed");
        }
    }

    [Test]
    public void The_quoted_example_is_the_surveys()
    {
        string survey = Path.GetFullPath(Path.Combine(DocsTests.Root(), "..", "shared", "survey-attention-prediction.txt"));
        if (!File.Exists(survey)) Assert.Ignore($"the survey is not at {survey}");
        string text = File.ReadAllText(survey);
        Assert.That(text, Does.Contain("x_e=[0.1, 0.2, 0.3, 0.4, 0.5]"));
        Assert.That(text, Does.Contain(@"\approx 0.01").And.Contain(@"\approx 0.19"));
        Assert.That(text, Does.Contain("C_1 = 0.01 \\times 1 + 0.19 \\times 2 + 0.19 \\times 3 + 0.14 \\times 4 + 0.01 \\times 5 \\approx 2.04"));
        Assert.That(text, Does.Contain("y_1 = 2.04 + 1 = 3.04"));
        // The weight matrices as the survey prints them, row by row.
        foreach (var row in new[] { "1 & 2", "3 & 4", "5 & 6", "7 & 8", "9 & 10", "1 & 3", "2 & 4", "5 & 7", "6 & 8" })
            Assert.That(text, Does.Contain(row));
    }
}
