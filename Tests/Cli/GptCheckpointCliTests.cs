using System.Text.Json;
using System.Text.RegularExpressions;
using AttnCore.Models.IO;
using AttnCore.Models.Transformers;
using NUnit.Framework;

namespace AttnCore.Tests.Cli;

/// <summary>
/// <c>attncore generate</c> on damaged GPT checkpoints: a broken file, config or vocabulary ends the command
/// with exit code 1 and one stderr line naming the file and the problem, never "internal error" (70).
/// </summary>
[TestFixture, Category("Cli"), NonParallelizable]
public class GptCheckpointCliTests
{
    private const string Vocabulary = "abcde";
    private static readonly GptConfig Config = new(Vocabulary.Length, BlockSize: 8, Layers: 1, Heads: 2, Dim: 8);
    private string _dir = "";

    [OneTimeSetUp]
    public void CreateDirectory() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "attncore-gptckpt-" + Guid.NewGuid().ToString("N")));

    [OneTimeTearDown]
    public void DeleteDirectory() { if (Directory.Exists(_dir)) Directory.Delete(_dir, true); }

    // As 'train gpt' saves it.
    private string Save(string configJson, string vocabulary = Vocabulary, GptConfig? weightsOf = null)
    {
        string path = Path.Combine(_dir, $"gpt-{Guid.NewGuid():N}.safetensors");
        using var model = new Gpt(weightsOf ?? Config, new Generator(4));
        Safetensors.Save(path, model, new Dictionary<string, string>
        {
            ["attncore.model"] = "gpt", ["attncore.config"] = configJson, ["attncore.vocab"] = vocabulary, ["attncore.steps"] = "1",
        });
        return path;
    }

    private static (int Code, string Err) Generate(string path)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = AttnCore.Cli.Program.Run(["generate", "--checkpoint", path, "--prompt", "ab", "--tokens", "3"], o, e);
        return (code, e.ToString());
    }

    private static void Rejected(string path, string fragment, string context = "")
    {
        var (code, err) = Generate(path);
        Assert.That(code, Is.EqualTo(1), $"{context} {err}");
        Assert.That(err.TrimEnd().Split('\n'), Has.Length.EqualTo(1), $"{context} one line: {err}");
        Assert.That(err, Does.Not.Contain("internal error").And.Contain(path).And.Contain(fragment), context);
    }

    [Test]
    public void A_good_checkpoint_generates()
    {
        var (code, err) = Generate(Save(JsonSerializer.Serialize(Config)));
        Assert.That(code, Is.EqualTo(0), err);
    }

    [Test]
    public void Damaged_configs_and_vocabularies_exit_1_with_one_line_naming_the_file()
    {
        string good = JsonSerializer.Serialize(Config);
        // Not JSON: the old loader let JsonException out as "internal error" (exit 70).
        Rejected(Save("{not json"), "GPT checkpoint: ");
        // A width of 10^9 made the old loader try to allocate a model of ~10^19 weights.
        Rejected(Save(good.Replace("\"Dim\":8", "\"Dim\":1000000000")), "needs at least");
        Rejected(Save(good.Replace("\"Heads\":2", "\"Heads\":3")), "not a multiple of its 3 heads");
        Rejected(Save(good.Replace("\"Layers\":1", "\"Layers\":-1")), "has a size below 1");
        Rejected(Save(good.Replace("\"Dropout\":0", "\"Dropout\":1.5")), "dropout 1.5");
        Rejected(Save(good.Replace("\"Vocab\":5,", "")), "not valid");
        Rejected(Save(good.Replace("{", "{\"Extra\":1,")), "not valid");
        Rejected(Save("null"), "the config is null");
        Rejected(Save(good, vocabulary: "abcda"), "4 distinct");
        Rejected(Save(good, vocabulary: "abcdef"), "the config says 5");
        Rejected(Save(good.Replace("\"Layers\":1", "\"Layers\":2")), "needs at least 1640 weights, the file holds 896");
        Rejected(Save(good.Replace("\"BlockSize\":8", "\"BlockSize\":9")), "the weights do not fit the config");
    }

    [Test]
    public void A_damaged_safetensors_file_exits_1_naming_the_file()
    {
        string path = Save(JsonSerializer.Serialize(Config));
        var bytes = File.ReadAllBytes(path);
        bytes[8] = (byte)'[';   // the header no longer starts with '{'; the old reader's JsonException was "internal error"
        File.WriteAllBytes(path, bytes);
        Rejected(path, "Safetensors: ");
    }

    [Test]
    public void Mutated_configs_never_end_in_an_internal_error()
    {
        const int seed = 77, iterations = 120;
        var rng = new Random(seed);
        string good = JsonSerializer.Serialize(Config);
        string[] numbers = ["0", "-1", "1", "3", "7", "64", "2147483647", "2147483648", "1e9", "0.5", "NaN", "\"8\"", "null", "true"];
        var fields = new Regex(@"-?\d+(\.\d+)?|true|false");
        int ok = 0;
        for (int i = 0; i < iterations; i++)
        {
            var matches = fields.Matches(good);
            var m = matches[rng.Next(matches.Count)];
            string with = numbers[rng.Next(numbers.Length)];
            string json = rng.Next(6) == 0 ? good[..rng.Next(good.Length)] : good[..m.Index] + with + good[(m.Index + m.Length)..];
            string path = Save(json);
            var (code, err) = Generate(path);
            Assert.That(code, Is.AnyOf(0, 1), $"seed {seed}, mutant {i}: {json}: {err}");
            if (code == 1)
                Assert.That(err, Does.Contain(path).And.Not.Contain("internal error"), $"seed {seed}, mutant {i}: {json}");
            else ok++;
            File.Delete(path);
        }
        TestContext.Out.WriteLine($"seed {seed}: {ok} of {iterations} mutated configs still described the weights");
    }
}
