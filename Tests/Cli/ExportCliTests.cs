using System.Text.Json;
using AttnCore.Models.IO;
using AttnCore.Models.Transformers;
using AttnCore.Tests.Onnx;
using Microsoft.ML.OnnxRuntime;
using NUnit.Framework;

namespace AttnCore.Tests.Cli;

/// <summary>
/// <c>attncore export</c> turns a GPT checkpoint into an ONNX file that ONNX Runtime runs to the checkpoint's own
/// logits; bad paths and damaged checkpoints end it with the CLI's exit codes and write nothing.
/// <c>attncore bench gpt-infer --vs onnxruntime</c> runs end to end (a smoke check, not a measurement).
/// </summary>
[TestFixture, Category("Cli"), NonParallelizable]
public class ExportCliTests
{
    private const string Vocabulary = "abcdefg";
    private static readonly GptConfig Config = new(Vocabulary.Length, BlockSize: 8, Layers: 2, Heads: 2, Dim: 8);
    private string _dir = "";

    [OneTimeSetUp]
    public void CreateDirectory() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "attncore-export-" + Guid.NewGuid().ToString("N")));

    [OneTimeTearDown]
    public void DeleteDirectory() { if (Directory.Exists(_dir)) Directory.Delete(_dir, true); }

    private string SaveCheckpoint(Gpt model)
    {
        string path = Path.Combine(_dir, $"gpt-{Guid.NewGuid():N}.safetensors");
        Safetensors.Save(path, model, new Dictionary<string, string>
        {
            ["attncore.model"] = "gpt", ["attncore.config"] = JsonSerializer.Serialize(Config), ["attncore.vocab"] = Vocabulary, ["attncore.steps"] = "1",
        });
        return path;
    }

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = AttnCore.Cli.Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [TestCase(false, TestName = "Export_writes_a_model_onnx_runtime_runs_to_the_checkpoints_logits")]
    [TestCase(true, TestName = "Export_with_kv_cache_writes_the_cache_inputs_and_outputs")]
    public void Export(bool withCache)
    {
        using var model = new Gpt(Config, new Generator(8));
        model.Eval();
        string checkpoint = SaveCheckpoint(model);
        string onnx = Path.Combine(_dir, "out", withCache ? "gpt-cache.onnx" : "gpt.onnx");
        var (code, stdout, stderr) = Run(["export", "--checkpoint", checkpoint, "--onnx", onnx, "--json", .. (withCache ? new[] { "--kv-cache" } : [])]);
        Assert.That(code, Is.EqualTo(0), stderr);
        using (var doc = JsonDocument.Parse(stdout.TrimEnd().Split('\n')[^1]))
        {
            Assert.That(doc.RootElement.GetProperty("opset").GetInt32(), Is.EqualTo(17));
            Assert.That(doc.RootElement.GetProperty("bytes").GetInt64(), Is.EqualTo(new FileInfo(onnx).Length));
            Assert.That(doc.RootElement.GetProperty("inputs").GetArrayLength(), Is.EqualTo(withCache ? 1 + 2 * Config.Layers : 1));
        }
        using var session = new InferenceSession(onnx);
        Assert.That(session.ModelMetadata.CustomMetadataMap["attncore.vocab"], Is.EqualTo(Vocabulary));
        foreach (var (b, t) in new[] { (1, 3), (2, 8) })
        {
            var ids = OnnxExportTests.RandomIds(b * t, Config.Vocab, b * 10 + t);
            float[] expected;
            using (new InferenceMode())
            using (var tokens = OnnxExportTests.Ids(ids, b, t))
            using (var logits = model.Forward(tokens))
                expected = logits.ToArray<float>();
            var inputs = new List<(string, OrtValue)> { ("tokens", OnnxExportTests.Longs(ids, b, t)) };
            for (int l = 0; l < Config.Layers && withCache; l++)
            {
                inputs.Add(($"past_key_{l}", OnnxExportTests.Floats([], b, Config.Heads, 0, Config.Dim / Config.Heads)));
                inputs.Add(($"past_value_{l}", OnnxExportTests.Floats([], b, Config.Heads, 0, Config.Dim / Config.Heads)));
            }
            var actual = OnnxExportTests.RunOrt(session, inputs.ToArray())["logits"].Values;
            Assert.That(actual.Zip(expected, (a, e) => Math.Abs(a - e)).Max(), Is.LessThanOrEqualTo(1e-4), $"batch {b}, length {t}");
        }
    }

    [Test]
    public void A_damaged_checkpoint_fails_with_exit_1_naming_it_and_writes_nothing()
    {
        string broken = Path.Combine(_dir, "broken.safetensors");
        File.WriteAllText(broken, "not a safetensors file");
        string onnx = Path.Combine(_dir, "never.onnx");
        var (code, _, stderr) = Run(["export", "--checkpoint", broken, "--onnx", onnx]);
        Assert.That(code, Is.EqualTo(1), stderr);
        Assert.That(stderr, Does.Contain(broken).And.Not.Contain("internal error"));
        Assert.That(File.Exists(onnx), Is.False);
    }

    [Test]
    public void An_onnx_path_that_is_a_folder_is_a_usage_error()
    {
        using var model = new Gpt(Config, new Generator(8));
        var (code, _, stderr) = Run(["export", "--checkpoint", SaveCheckpoint(model), "--onnx", _dir]);
        Assert.That(code, Is.EqualTo(2), stderr);
        Assert.That(stderr, Does.Contain("--onnx").And.Contain("is a folder"));
    }

    [Test]
    public void Bench_gpt_infer_against_onnx_runtime_runs_and_the_runtimes_agree()
    {
        var (code, stdout, stderr) = Run(["bench", "gpt-infer", "--config", "tiny", "--vs", "onnxruntime", "--seconds", "0.01", "--threads", "1", "--json"]);
        Assert.That(code, Is.EqualTo(0), stderr);
        using var doc = JsonDocument.Parse(stdout.TrimEnd().Split('\n')[^1]);
        var results = doc.RootElement.GetProperty("results");
        foreach (var side in new[] { "attncore_kv_cache", "onnxruntime_no_cache", "onnxruntime_kv_cache" })
            foreach (var figure in new[] { "prompt_tokens_per_s", "generation_tokens_per_s" })
                Assert.That(results.GetProperty(side).GetProperty(figure).GetDouble(), Is.GreaterThan(0), $"{side} {figure}");
        Assert.That(doc.RootElement.GetProperty("max_abs_logit_difference").GetDouble(), Is.LessThan(1e-4));
        var (tooLong, _, err) = Run(["bench", "gpt-infer", "--config", "tiny", "--prompt", "10", "--tokens", "10"]);
        Assert.That(tooLong, Is.EqualTo(2), err);
        Assert.That(err, Does.Contain("block size 16"));
    }
}
