using System.Text.Json;
using AttnCore.Models.IO;
using AttnCore.Models.Recommendation;
using AttnCore.Models.TimeSeries;
using AttnCore.Models.Vision;
using AttnCore.Tests.Onnx;
using Microsoft.ML.OnnxRuntime;
using NUnit.Framework;

namespace AttnCore.Tests.Cli;

/// <summary>
/// <c>attncore export</c> on a vision, a forecaster and a recommender checkpoint: the file it writes, run by ONNX
/// Runtime, gives the checkpoint's model's outputs to 1e-4 (at a batch size other than the export's sample), and
/// carries the metadata a consumer needs; options meant for another family are usage errors.
/// </summary>
[TestFixture, Category("Cli"), NonParallelizable]
public class ExportFamilyCliTests
{
    private string _dir = "";

    [OneTimeSetUp]
    public void CreateDirectory() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "attncore-export-family-" + Guid.NewGuid().ToString("N")));

    [OneTimeTearDown]
    public void DeleteDirectory() { if (Directory.Exists(_dir)) Directory.Delete(_dir, true); }

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = AttnCore.Cli.Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    private static float[] RandomFloats(int count, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
    }

    private string Export(string checkpoint, string name, params string[] extra)
    {
        string onnx = Path.Combine(_dir, name + ".onnx");
        var (code, stdout, stderr) = Run(["export", "--checkpoint", checkpoint, "--onnx", onnx, "--json", .. extra]);
        Assert.That(code, Is.EqualTo(0), stderr);
        using var doc = JsonDocument.Parse(stdout.TrimEnd().Split('\n')[^1]);
        Assert.That(doc.RootElement.GetProperty("opset").GetInt32(), Is.EqualTo(17));
        Assert.That(doc.RootElement.GetProperty("bytes").GetInt64(), Is.EqualTo(new FileInfo(onnx).Length));
        return onnx;
    }

    [Test]
    public void Export_of_a_vision_checkpoint_runs_in_onnx_runtime_to_its_logits()
    {
        using var model = VisionModels.Create("resnet20-se", 3, 4, new Generator(3));
        model.Eval();
        string checkpoint = Path.Combine(_dir, "vision.safetensors");
        string[] classes = ["a", "b", "c", "d"];
        Safetensors.Save(checkpoint, model, new Dictionary<string, string>
        {
            ["attncore.model"] = "vision", ["attncore.vision.model"] = "resnet20-se", ["attncore.vision.input"] = "[3,8,8]",
            ["attncore.vision.classes"] = JsonSerializer.Serialize(classes), ["attncore.vision.mean"] = "[0.5,0.5,0.5]",
            ["attncore.vision.std"] = "[0.25,0.25,0.25]", ["attncore.vision.epochs"] = "1",
        });
        string onnx = Export(checkpoint, "vision");
        using var session = new InferenceSession(onnx);
        Assert.That(session.ModelMetadata.CustomMetadataMap["attncore.vision.classes"], Is.EqualTo(JsonSerializer.Serialize(classes)));
        var pixels = RandomFloats(2 * 3 * 8 * 8, 4);
        float[] expected;
        using (new InferenceMode())
        using (var image = Tensor.FromArray(pixels, [2, 3, 8, 8]))
        using (var logits = model.Forward(image))
            expected = logits.ToArray<float>();
        OnnxExportTests.AssertClose(OnnxExportTests.RunOrt(session, ("image", OnnxExportTests.Floats(pixels, 2, 3, 8, 8)))["logits"].Values, expected, "vision logits, batch 2");
    }

    [Test]
    public void Export_of_a_forecaster_checkpoint_runs_in_onnx_runtime_to_its_forecast()
    {
        var config = new ForecasterConfig("patchtst", 24, 4, 2, DModel: 8, Heads: 2, Layers: 1, DFf: 16, PatchLen: 8, Stride: 4);
        using var model = Forecaster.Create(config, new Generator(5));
        model.Eval();
        string checkpoint = Path.Combine(_dir, "forecast.safetensors");
        ForecastCheckpoint.Save(checkpoint, model, new ForecastModelInfo(config, ["x", "y"], ForecastFeatures.M, "y", [1, 2], [3, 4]));
        string onnx = Export(checkpoint, "forecast");
        using var session = new InferenceSession(onnx);
        Assert.That(session.ModelMetadata.CustomMetadataMap["attncore.forecast"], Does.Contain("\"Columns\":[\"x\",\"y\"]"));
        var x = RandomFloats(3 * 24 * 2, 6);
        float[] expected;
        using (new InferenceMode())
        using (var input = Tensor.FromArray(x, [3, 24, 2]))
        using (var y = model.Forward(input))
            expected = y.ToArray<float>();
        OnnxExportTests.AssertClose(OnnxExportTests.RunOrt(session, ("x", OnnxExportTests.Floats(x, 3, 24, 2)))["forecast"].Values, expected, "forecast, batch 3");
    }

    [TestCase(false, TestName = "Export_of_a_recommender_checkpoint_scores_every_item_as_the_model")]
    [TestCase(true, TestName = "Export_of_a_recommender_checkpoint_with_candidates_scores_them_as_the_model")]
    public void Export_of_a_recommender_checkpoint(bool candidates)
    {
        var config = new SasRecConfig(Items: 12, MaxLength: 5, Dim: 8, Blocks: 1, Heads: 2);
        using var model = new TargetAttentionRecommender(config, new Generator(9));
        model.Eval();
        string checkpoint = Path.Combine(_dir, "recommender.safetensors");
        RecommenderCheckpoint.Save(checkpoint, model, 1);
        string onnx = Export(checkpoint, "recommender-" + candidates, candidates ? ["--candidates"] : []);
        using var session = new InferenceSession(onnx);
        long[] history = [0, 0, 3, 7, 1, 0, 2, 12, 5, 5];
        long[] chosen = [4, 9, 1, 12, 0, 6];
        float[] expected;
        using (new InferenceMode())
        using (var h = OnnxExportTests.Ids(history, 2, 5))
        using (var c = OnnxExportTests.Ids(chosen, 2, 3))
        using (var scores = candidates ? model.Score(h, c) : model.ScoreAll(h))
            expected = scores.ToArray<float>();
        var inputs = new List<(string, OrtValue)> { ("history", OnnxExportTests.Longs(history, 2, 5)) };
        if (candidates) inputs.Add(("candidates", OnnxExportTests.Longs(chosen, 2, 3)));
        OnnxExportTests.AssertClose(OnnxExportTests.RunOrt(session, inputs.ToArray())["scores"].Values, expected, "recommender scores, batch 2");
    }

    [Test]
    public void Options_of_another_family_are_usage_errors()
    {
        var config = new ForecasterConfig("dlinear", 12, 3, 2, MovingAverage: 3);
        using var model = Forecaster.Create(config, new Generator(1));
        string checkpoint = Path.Combine(_dir, "dlinear.safetensors");
        ForecastCheckpoint.Save(checkpoint, model, new ForecastModelInfo(config, ["x", "y"], ForecastFeatures.M, "y", [0, 0], [1, 1]));
        string onnx = Path.Combine(_dir, "never.onnx");
        var (code, _, stderr) = Run(["export", "--checkpoint", checkpoint, "--onnx", onnx, "--kv-cache"]);
        Assert.That(code, Is.EqualTo(2), stderr);
        Assert.That(stderr, Does.Contain("--kv-cache").And.Contain("forecaster"));
        (code, _, stderr) = Run(["export", "--checkpoint", checkpoint, "--onnx", onnx, "--candidates"]);
        Assert.That(code, Is.EqualTo(2), stderr);
        Assert.That(stderr, Does.Contain("--candidates").And.Contain("forecaster"));
        Assert.That(File.Exists(onnx), Is.False);
    }
}
