using AttnCore.Models.Nn;
using AttnCore.Models.Recommendation;
using AttnCore.Models.TimeSeries;
using AttnCore.Models.Vision;
using AttnCore.Onnx;
using Microsoft.ML.OnnxRuntime;
using NUnit.Framework;
using static AttnCore.Tests.Onnx.OnnxExportTests;

namespace AttnCore.Tests.Onnx;

/// <summary>
/// The vision, forecasting and recommendation models, each exported once and run by ONNX Runtime (CPU provider) on
/// random inputs of two batch sizes (and, for the recommenders, two candidate counts): every output matches the
/// engine's inference Forward to 1e-4. BatchNorm running statistics and RevIN's affine weights are randomised first,
/// so a graph that used batch statistics or dropped a scale would fail. Models are tiny so the tests take seconds.
/// </summary>
[TestFixture, Category("Models"), NonParallelizable]
public class OnnxFamilyExportTests
{
    private string _dir = "";

    [OneTimeSetUp]
    public void CreateDirectory() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "attncore-onnx-family-" + Guid.NewGuid().ToString("N")));

    [OneTimeTearDown]
    public void DeleteDirectory() { if (Directory.Exists(_dir)) Directory.Delete(_dir, true); }

    private string PathFor(string name) => Path.Combine(_dir, name + ".onnx");

    private static float[] RandomFloats(int count, int seed, double scale = 1)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => (float)((rng.NextDouble() * 2 - 1) * scale)).ToArray();
    }

    // Running means in ±0.5, variances in [0.5, 1.5], affine weights away from 1: evaluation-mode statistics matter.
    private static void RandomiseStatistics(Module model, int seed)
    {
        using var ng = new NoGrad();
        var rng = new Random(seed);
        foreach (var (name, t) in model.NamedBuffers().Concat(model.NamedParameters()))
        {
            if (t.DType != DType.Float32 || t.Rank != 1) continue;
            double low, high;
            if (name.EndsWith("running_mean", StringComparison.Ordinal) || name.EndsWith("affine_bias", StringComparison.Ordinal)) (low, high) = (-0.5, 0.5);
            else if (name.EndsWith("running_var", StringComparison.Ordinal) || name.EndsWith("affine_weight", StringComparison.Ordinal)) (low, high) = (0.5, 1.5);
            else continue;
            var values = Enumerable.Range(0, (int)t.Numel).Select(_ => (float)(low + rng.NextDouble() * (high - low))).ToArray();
            using var v = Tensor.FromArray(values, t.Shape);
            t.CopyFrom(v);
        }
    }

    // ---- vision ----

    private static IEnumerable<TestCaseData> VisionCases()
    {
        foreach (var attention in new[] { VisionAttention.None, VisionAttention.SE, VisionAttention.Cbam, VisionAttention.Mhsa })
        {
            // CIFAR form: 3x3 stem, basic blocks, a strided second stage (option-B shortcut); MHSA on a 4x4 map.
            yield return new TestCaseData(attention, false).SetName($"Cifar_resnet_{attention}_matches_onnx_runtime_for_two_batch_sizes");
            // ImageNet form: 7x7/2 stem and max pool, bottlenecks; MHSA in the strided stage pools 2x2 after the attention.
            yield return new TestCaseData(attention, true).SetName($"Bottleneck_resnet_{attention}_matches_onnx_runtime_for_two_batch_sizes");
        }
    }

    [TestCaseSource(nameof(VisionCases))]
    public void Resnet_matches_onnx_runtime(VisionAttention attention, bool imagenet)
    {
        using var model = imagenet
            ? new ResNet([1, 1], [4, 8], bottleneck: true, imagenetStem: true, 3, 5, attention, reduction: 4, mhsaHeads: 2, mhsaMaxExtent: 8, generator: new Generator(3))
            : new ResNet([1, 2], [8, 16], bottleneck: false, imagenetStem: false, 3, 5, attention, reduction: 4, mhsaHeads: 2, mhsaMaxExtent: 4, generator: new Generator(4));
        RandomiseStatistics(model, 9);
        model.Eval();
        int side = imagenet ? 32 : 8;
        string path = PathFor($"resnet-{attention}-{imagenet}");
        using (var sample = Tensor.FromArray(RandomFloats(3 * side * side, 1), [1, 3, side, side])) model.ExportOnnx(path, sample);
        using var session = new InferenceSession(path);
        foreach (int b in new[] { 1, 3 })
        {
            var pixels = RandomFloats(b * 3 * side * side, 10 + b);
            using var image = Tensor.FromArray(pixels, [b, 3, side, side]);
            var expected = OnnxExportTests.Engine(() => model.Forward(image));
            var outputs = RunOrt(session, ("image", Floats(pixels, b, 3, side, side)));
            Assert.That(outputs["logits"].Shape, Is.EqualTo(new long[] { b, 5 }));
            AssertClose(outputs["logits"].Values, expected, $"{attention} ResNet logits, batch {b}");
        }
    }

    [Test]
    public void Named_resnet20_cbam_matches_onnx_runtime()
    {
        using var model = VisionModels.Create("resnet20-cbam", 3, 10, new Generator(2));
        RandomiseStatistics(model, 5);
        model.Eval();
        string path = PathFor("resnet20-cbam");
        using (var sample = Tensor.FromArray(RandomFloats(3 * 8 * 8, 2), [1, 3, 8, 8])) model.ExportOnnx(path, sample);
        using var session = new InferenceSession(path);
        var pixels = RandomFloats(2 * 3 * 8 * 8, 3);
        using var image = Tensor.FromArray(pixels, [2, 3, 8, 8]);
        var expected = OnnxExportTests.Engine(() => model.Forward(image));
        AssertClose(RunOrt(session, ("image", Floats(pixels, 2, 3, 8, 8)))["logits"].Values, expected, "resnet20-cbam logits");
    }

    // ---- forecasting ----

    private static IEnumerable<TestCaseData> ForecastCases()
    {
        yield return new TestCaseData(new ForecasterConfig("dlinear", 24, 6, 3, MovingAverage: 5)).SetName("Dlinear_shared_matches_onnx_runtime_for_two_batch_sizes");
        yield return new TestCaseData(new ForecasterConfig("dlinear", 24, 6, 3, MovingAverage: 7, Individual: true)).SetName("Dlinear_individual_matches_onnx_runtime_for_two_batch_sizes");
        yield return new TestCaseData(new ForecasterConfig("patchtst", 40, 8, 3, DModel: 16, Heads: 2, Layers: 2, DFf: 32)).SetName("Patchtst_matches_onnx_runtime_for_two_batch_sizes");
        yield return new TestCaseData(new ForecasterConfig("patchtst", 40, 8, 3, DModel: 16, Heads: 2, Layers: 3, DFf: 32, ResAttention: true)).SetName("Patchtst_with_residual_attention_matches_onnx_runtime_for_two_batch_sizes");
        yield return new TestCaseData(new ForecasterConfig("itransformer", 16, 4, 3, DModel: 16, Heads: 2, Layers: 2, DFf: 32)).SetName("Itransformer_matches_onnx_runtime_for_two_batch_sizes");
        yield return new TestCaseData(new ForecasterConfig("transformer", 12, 4, 2, DModel: 16, Heads: 2, Layers: 2, DFf: 32, DecoderLayers: 1, LabelLen: 6, TimeFeatures: 3)).SetName("Transformer_forecaster_matches_onnx_runtime_for_two_batch_sizes");
        yield return new TestCaseData(new ForecasterConfig("transformer", 8, 3, 2, DModel: 8, Heads: 2, Layers: 1, DFf: 16, DecoderLayers: 2, LabelLen: 0, TimeFeatures: 2)).SetName("Transformer_forecaster_without_label_rows_matches_onnx_runtime");
    }

    [TestCaseSource(nameof(ForecastCases))]
    public void Forecaster_matches_onnx_runtime(ForecasterConfig config)
    {
        using var model = Forecaster.Create(config, new Generator(6));
        RandomiseStatistics(model, 8);
        model.Eval();
        int marked = config.LabelLen + config.PredLen;
        Tensor[] Inputs(int b, int seed)
        {
            var x = Tensor.FromArray(RandomFloats(b * config.SeqLen * config.Channels, seed, 2), [b, config.SeqLen, config.Channels]);
            if (!model.UsesTimeFeatures) return [x];
            return [x, Tensor.FromArray(RandomFloats(b * config.SeqLen * config.TimeFeatures, seed + 1, 0.5), [b, config.SeqLen, config.TimeFeatures]),
                       Tensor.FromArray(RandomFloats(b * marked * config.TimeFeatures, seed + 2, 0.5), [b, marked, config.TimeFeatures])];
        }
        string path = PathFor($"forecast-{config.Model}-{config.Individual}-{config.LabelLen}");
        var samples = Inputs(2, 1);
        try { model.ExportOnnx(path, samples); }
        finally { foreach (var s in samples) s.Dispose(); }
        using var session = new InferenceSession(path);
        Assert.That(session.InputNames, Is.EqualTo(model.UsesTimeFeatures ? new[] { "x", "x_mark", "y_mark" } : new[] { "x" }));
        foreach (int b in new[] { 1, 4 })
        {
            var inputs = Inputs(b, 20 + b);
            try
            {
                var expected = OnnxExportTests.Engine(() => inputs.Length == 1 ? model.Forward(inputs[0]) : model.Forward(inputs[0], inputs[1], inputs[2]));
                var names = new[] { "x", "x_mark", "y_mark" };
                var ort = inputs.Select((t, i) => (names[i], Floats(t.ToArray<float>(), t.Shape.Select(d => (long)d).ToArray()))).ToArray();
                var outputs = RunOrt(session, ort);
                Assert.That(outputs["forecast"].Shape, Is.EqualTo(new long[] { b, config.PredLen, config.Channels }));
                AssertClose(outputs["forecast"].Values, expected, $"{config.Model} forecast, batch {b}");
            }
            finally { foreach (var t in inputs) t.Dispose(); }
        }
    }

    // ---- recommendation ----

    // Left-padded histories: row r has r·2 leading zeros (capped so at least one item remains).
    private static long[] Histories(int batch, int length, int items, int seed)
    {
        var rng = new Random(seed);
        var ids = new long[batch * length];
        for (int r = 0; r < batch; r++)
            for (int t = Math.Min(2 * r, length - 1); t < length; t++) ids[r * length + t] = rng.Next(1, items + 1);
        return ids;
    }

    [TestCase("sasrec", TestName = "Sasrec_scores_of_all_items_and_of_candidates_match_onnx_runtime")]
    [TestCase("target-attention", TestName = "Target_attention_scores_of_all_items_and_of_candidates_match_onnx_runtime")]
    public void Recommender_matches_onnx_runtime(string name)
    {
        var config = new SasRecConfig(Items: 30, MaxLength: 8, Dim: 16, Blocks: 2, Heads: 2, Dropout: 0.2);
        using var model = RecommenderCheckpoint.Create(name, config, new Generator(7));
        model.Eval();
        string all = PathFor(name + "-all"), some = PathFor(name + "-candidates");
        using (var h = Ids(Histories(2, 8, 30, 1), 2, 8))
        {
            model.ExportOnnx(all, h);
            using var c = Ids(RandomIds(2 * 5, 31, 2), 2, 5);
            model.ExportOnnx(some, h, c);
        }
        using var allSession = new InferenceSession(all);
        using var someSession = new InferenceSession(some);
        foreach (var (b, count) in new[] { (1, 3), (4, 7) })
        {
            var ids = Histories(b, 8, 30, 10 + b);
            var candidates = RandomIds(b * count, 31, 20 + b);
            using var history = Ids(ids, b, 8);
            using var candidateIds = Ids(candidates, b, count);
            var everything = RunOrt(allSession, ("history", Longs(ids, b, 8)))["scores"];
            Assert.That(everything.Shape, Is.EqualTo(new long[] { b, 31 }));
            AssertClose(everything.Values, OnnxExportTests.Engine(() => model.ScoreAll(history)), $"{name} scores of all items, batch {b}");
            var chosen = RunOrt(someSession, ("history", Longs(ids, b, 8)), ("candidates", Longs(candidates, b, count)))["scores"];
            Assert.That(chosen.Shape, Is.EqualTo(new long[] { b, count }));
            AssertClose(chosen.Values, OnnxExportTests.Engine(() => model.Score(history, candidateIds)), $"{name} scores of {count} candidates, batch {b}");
        }
    }

    // ---- refusals ----

    [Test]
    public void Bad_sample_inputs_and_unmapped_layers_fail_naming_them_and_write_nothing()
    {
        string path = PathFor("refused");
        using var resnet = new ResNet([1], [4], false, false, 3, 2, VisionAttention.Mhsa, mhsaHeads: 2, mhsaMaxExtent: 4, generator: new Generator(1));
        using (var wrongChannels = Tensor.Zeros([1, 1, 8, 8], DType.Float32))
            Assert.That(Assert.Throws<ArgumentException>(() => resnet.ExportOnnx(path, wrongChannels))!.Message, Does.Contain("ResNet").And.Contain("[1,1,8,8]").And.Contain("[batch, 3, H, W]"));
        using (var tooLarge = Tensor.Zeros([1, 3, 8, 8], DType.Float32))
            Assert.That(Assert.Throws<ArgumentException>(() => resnet.ExportOnnx(path, tooLarge))!.Message, Does.Contain("layer1.0.mhsa").And.Contain("8x8").And.Contain("4x4"));

        using var dlinear = Forecaster.Create(new ForecasterConfig("dlinear", 24, 6, 3, MovingAverage: 5));
        using (var shortWindow = Tensor.Zeros([2, 20, 3], DType.Float32))
            Assert.That(Assert.Throws<ArgumentException>(() => dlinear.ExportOnnx(path, shortWindow))!.Message, Does.Contain("DLinear").And.Contain("[batch, 24, 3]").And.Contain("[2,20,3]"));
        using var transformer = Forecaster.Create(new ForecasterConfig("transformer", 8, 3, 2, DModel: 8, Heads: 2, Layers: 1, DFf: 16, LabelLen: 4, TimeFeatures: 2));
        using (var x = Tensor.Zeros([1, 8, 2], DType.Float32))
            Assert.That(Assert.Throws<ArgumentException>(() => transformer.ExportOnnx(path, x))!.Message, Does.Contain("TransformerForecaster").And.Contain("x_mark").And.Contain("1 sample inputs"));

        using var sasrec = new SasRec(new SasRecConfig(Items: 10, MaxLength: 4, Dim: 8, Blocks: 1, Heads: 1));
        using (var outside = Ids([0, 3, 11, 2], 1, 4))
            Assert.That(Assert.Throws<ArgumentException>(() => sasrec.ExportOnnx(path, outside))!.Message, Does.Contain("SasRec").And.Contain("history").And.Contain("[0, 11]").And.Contain("[0, 10]"));
        using (var h = Ids([0, 3, 1, 2], 1, 4))
        using (var c = Ids([1, 2, 3, 4], 2, 2))
            Assert.That(Assert.Throws<ArgumentException>(() => sasrec.ExportOnnx(path, h, c))!.Message, Does.Contain("batch size").And.Contain("[2,2]").And.Contain("[1,4]"));
        using (var h = Ids([0, 3, 1, 2], 1, 4))
            Assert.That(Assert.Throws<NotSupportedException>(() => sasrec.ExportOnnx(path, new OnnxExportOptions(KeyValueCache: true), h))!.Message, Does.Contain("SasRec"));

        using var pool = new AdaptiveAvgPool2d(2);
        using (var x = Tensor.Zeros([1, 2, 4, 4], DType.Float32))
            Assert.That(Assert.Throws<NotSupportedException>(() => pool.ExportOnnx(path, x))!.Message, Does.Contain("AdaptiveAvgPool2d").And.Contain("2x2").And.Contain("output size 1"));
        Assert.That(File.Exists(path), Is.False);
        Assert.That(OnnxExport.SupportedModels, Is.SupersetOf(new[] { "ResNet", "ResNet50WithAttention", "DLinear", "PatchTst", "ITransformer", "TransformerForecaster", "SasRec", "TargetAttentionRecommender" }));
    }
}
