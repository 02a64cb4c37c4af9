using AttnCore.Models.Nn;
using AttnCore.Models.Transformers;
using AttnCore.Onnx;
using Microsoft.ML.OnnxRuntime;
using NUnit.Framework;

namespace AttnCore.Tests.Onnx;

/// <summary>
/// The exported graphs, run by ONNX Runtime (CPU provider), give the engine's outputs to 1e-4 for random inputs
/// of several batch sizes and sequence lengths from ONE exported file each: that proves the dynamic axes as well
/// as the operator mapping (attention with its causal mask, LayerNormalization, the expanded erf GELU, tied head).
/// </summary>
[TestFixture, Category("Models"), NonParallelizable]
public class OnnxExportTests
{
    private const double Tolerance = 1e-4;
    private string _dir = "";

    [OneTimeSetUp]
    public void CreateDirectory() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "attncore-onnx-" + Guid.NewGuid().ToString("N")));

    [OneTimeTearDown]
    public void DeleteDirectory() { if (Directory.Exists(_dir)) Directory.Delete(_dir, true); }

    private string PathFor(string name) => Path.Combine(_dir, name + ".onnx");

    internal static long[] RandomIds(int count, int vocab, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => (long)rng.Next(vocab)).ToArray();
    }

    internal static Tensor Ids(long[] ids, int batch, int length) => Tensor.FromArray(ids, [batch, length]);

    /// <summary>Runs the model in ONNX Runtime on the named inputs and returns every output as (shape, values).</summary>
    internal static Dictionary<string, (long[] Shape, float[] Values)> RunOrt(InferenceSession session, params (string Name, OrtValue Value)[] inputs)
    {
        using var options = new RunOptions();
        using var results = session.Run(options, inputs.Select(i => i.Name).ToArray(), inputs.Select(i => i.Value).ToArray(), session.OutputNames.ToArray());
        var outputs = new Dictionary<string, (long[], float[])>();
        for (int i = 0; i < results.Count; i++)
            outputs[session.OutputNames[i]] = (results[i].GetTensorTypeAndShape().Shape, results[i].GetTensorDataAsSpan<float>().ToArray());
        foreach (var (_, value) in inputs) value.Dispose();
        return outputs;
    }

    internal static OrtValue Longs(long[] values, params long[] shape) => OrtValue.CreateTensorValueFromMemory(values, shape);
    internal static OrtValue Floats(float[] values, params long[] shape) => OrtValue.CreateTensorValueFromMemory(values, shape);

    internal static void AssertClose(float[] actual, float[] expected, string context)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), context);
        double worst = 0; int at = -1;
        for (int i = 0; i < actual.Length; i++)
        {
            double d = Math.Abs(actual[i] - expected[i]);
            if (!(d <= worst)) { worst = d; at = i; }
        }
        Assert.That(worst, Is.LessThanOrEqualTo(Tolerance), $"{context}: largest difference {worst:E3} at element {at} (ONNX Runtime {(at >= 0 ? actual[at] : 0)}, engine {(at >= 0 ? expected[at] : 0)})");
    }

    internal static float[] Engine(Func<Tensor> forward)
    {
        using var inference = new InferenceMode();
        using var y = forward();
        return y.ToArray<float>();
    }

    [TestCase(false, TestName = "Gpt_without_bias_matches_onnx_runtime_for_several_batches_and_lengths")]
    [TestCase(true, TestName = "Gpt_with_bias_matches_onnx_runtime_for_several_batches_and_lengths")]
    public void Gpt_matches_onnx_runtime(bool bias)
    {
        var config = new GptConfig(Vocab: 23, BlockSize: 16, Layers: 2, Heads: 4, Dim: 32, Bias: bias);
        using var gpt = new Gpt(config, new Generator(11));
        gpt.Eval();
        string path = PathFor($"gpt-bias-{bias}");
        using (var sample = Ids(RandomIds(2 * 5, config.Vocab, 1), 2, 5)) gpt.ExportOnnx(path, sample);
        using var session = new InferenceSession(path);
        foreach (var (b, t) in new[] { (1, 1), (2, 5), (3, 16), (1, 9) })
        {
            var ids = RandomIds(b * t, config.Vocab, 100 * b + t);
            using var tokens = Ids(ids, b, t);
            var expected = Engine(() => gpt.Forward(tokens));
            var outputs = RunOrt(session, ("tokens", Longs(ids, b, t)));
            Assert.That(outputs["logits"].Shape, Is.EqualTo(new long[] { b, t, config.Vocab }));
            AssertClose(outputs["logits"].Values, expected, $"GPT logits, batch {b}, length {t}");
        }
    }

    [Test]
    public void Gpt_graph_with_key_value_cache_matches_the_full_forward_token_by_token()
    {
        var config = new GptConfig(Vocab: 19, BlockSize: 12, Layers: 2, Heads: 2, Dim: 16);
        using var gpt = new Gpt(config, new Generator(5));
        gpt.Eval();
        string path = PathFor("gpt-cache");
        using (var sample = Ids([1, 2, 3], 1, 3)) gpt.ExportOnnx(path, new OnnxExportOptions(KeyValueCache: true), sample);
        using var session = new InferenceSession(path);
        int b = 2, prompt = 4, steps = 3, dh = config.Dim / config.Heads;
        var all = RandomIds(b * (prompt + steps), config.Vocab, 42);
        using var full = Ids(all, b, prompt + steps);
        var expected = Engine(() => gpt.Forward(full)); // [b, prompt + steps, V]

        // The prompt pass with an empty past, then one token per step fed with the presents of the step before.
        var past = new float[2 * config.Layers][];
        for (int i = 0; i < past.Length; i++) past[i] = [];
        int length = 0;
        for (int pos = 0; pos < prompt + steps; pos += pos == 0 ? prompt : 1)
        {
            int t = pos == 0 ? prompt : 1;
            var ids = new long[b * t];
            for (int s = 0; s < b; s++) Array.Copy(all, s * (prompt + steps) + pos, ids, s * t, t);
            var inputs = new List<(string, OrtValue)> { ("tokens", Longs(ids, b, t)) };
            for (int l = 0; l < config.Layers; l++)
            {
                inputs.Add(($"past_key_{l}", Floats(past[2 * l], b, config.Heads, length, dh)));
                inputs.Add(($"past_value_{l}", Floats(past[2 * l + 1], b, config.Heads, length, dh)));
            }
            var outputs = RunOrt(session, inputs.ToArray());
            length += t;
            Assert.That(outputs["present_key_0"].Shape, Is.EqualTo(new long[] { b, config.Heads, length, dh }));
            for (int l = 0; l < config.Layers; l++) (past[2 * l], past[2 * l + 1]) = (outputs[$"present_key_{l}"].Values, outputs[$"present_value_{l}"].Values);
            // The engine's logits of the same positions, cut from the full forward.
            var want = new List<float>();
            for (int s = 0; s < b; s++)
                want.AddRange(expected.AsSpan((s * (prompt + steps) + pos) * config.Vocab, t * config.Vocab).ToArray());
            AssertClose(outputs["logits"].Values, want.ToArray(), $"cached GPT logits at positions {pos}..{pos + t - 1}");
        }
    }

    [TestCase(true, TestName = "Pre_norm_transformer_matches_onnx_runtime_for_several_shapes")]
    [TestCase(false, TestName = "Post_norm_transformer_matches_onnx_runtime_for_several_shapes")]
    public void Transformer_matches_onnx_runtime(bool preNorm)
    {
        var config = new TransformerConfig(SourceVocab: 13, TargetVocab: 17, Dim: 16, Heads: 2, EncoderLayers: 2, DecoderLayers: 2, Hidden: 32,
            MaxLength: 20, Dropout: 0.1, PreNorm: preNorm);
        using var model = new Transformer(config, new Generator(3));
        model.Eval();
        string path = PathFor($"transformer-{preNorm}");
        using (var s = Ids(RandomIds(6, 13, 1), 2, 3))
        using (var t = Ids(RandomIds(8, 17, 2), 2, 4))
            model.ExportOnnx(path, s, t);
        using var session = new InferenceSession(path);
        foreach (var (b, ls, lt) in new[] { (1, 1, 1), (2, 7, 3), (3, 4, 9) })
        {
            var src = RandomIds(b * ls, config.SourceVocab, b + 10 * ls);
            var tgt = RandomIds(b * lt, config.TargetVocab, b + 10 * lt + 1);
            using var source = Ids(src, b, ls);
            using var target = Ids(tgt, b, lt);
            var expected = Engine(() => model.Forward(source, target));
            var outputs = RunOrt(session, ("source", Longs(src, b, ls)), ("target", Longs(tgt, b, lt)));
            Assert.That(outputs["logits"].Shape, Is.EqualTo(new long[] { b, lt, config.TargetVocab }));
            AssertClose(outputs["logits"].Values, expected, $"Transformer logits, batch {b}, source {ls}, target {lt}");
        }
    }

    [Test]
    public void Transformer_with_padding_masks_matches_onnx_runtime_including_a_query_that_sees_no_key()
    {
        var config = new TransformerConfig(SourceVocab: 13, TargetVocab: 17, Dim: 16, Heads: 2, EncoderLayers: 1, DecoderLayers: 2, Hidden: 32, MaxLength: 20);
        using var model = new Transformer(config, new Generator(4));
        model.Eval();
        string path = PathFor("transformer-masks");
        using (var s = Ids(RandomIds(6, 13, 1), 2, 3))
        using (var t = Ids(RandomIds(8, 17, 2), 2, 4))
            model.ExportOnnx(path, new OnnxExportOptions(PaddingMasks: true), s, t);
        using var session = new InferenceSession(path);
        const int b = 3, ls = 5, lt = 4;
        // Source rows padded at the end by 0, 2 and 4; target rows: none, the last token, and the FIRST token, so
        // that row's first query sees no key at all (causal + padding): the engine gives it zero weights.
        bool[] sourcePad = [.. new[] { 0, 2, 4 }.SelectMany(n => Enumerable.Range(0, ls).Select(j => j >= ls - n))];
        bool[] targetPad = [false, false, false, false, false, false, false, true, true, false, false, false];
        var src = RandomIds(b * ls, config.SourceVocab, 5);
        var tgt = RandomIds(b * lt, config.TargetVocab, 6);
        using var source = Ids(src, b, ls);
        using var target = Ids(tgt, b, lt);
        using var sourceMask = Tensor.FromArray(sourcePad.Select(p => p ? 1f : 0f).ToArray(), [b, ls]);
        using var targetMask = Tensor.FromArray(targetPad.Select(p => p ? 1f : 0f).ToArray(), [b, lt]);
        var expected = Engine(() => model.Forward(source, target, sourceMask, targetMask));
        var outputs = RunOrt(session, ("source", Longs(src, b, ls)), ("target", Longs(tgt, b, lt)),
            ("source_padding_mask", OrtValue.CreateTensorValueFromMemory(sourcePad, [b, ls])), ("target_padding_mask", OrtValue.CreateTensorValueFromMemory(targetPad, [b, lt])));
        Assert.That(outputs["logits"].Values, Has.All.Matches<float>(float.IsFinite));
        AssertClose(outputs["logits"].Values, expected, "Transformer logits with padding masks");
    }

    [TestCase(false, TestName = "FeedForward_with_gelu_exports_through_the_layer_table")]
    [TestCase(true, TestName = "FeedForward_with_relu_exports_through_the_layer_table")]
    public void A_mapped_layer_exports_alone(bool relu)
    {
        using var ff = new FeedForward(8, 24, relu: relu, generator: new Generator(9));
        ff.Eval();
        string path = PathFor($"ff-{relu}");
        using (var sample = Tensor.Randn([2, 3, 8], 1, DType.Float32)) ff.ExportOnnx(path, sample);
        using var session = new InferenceSession(path);
        foreach (var shape in new[] { new[] { 1, 1, 8 }, new[] { 4, 5, 8 } })
        {
            using var x = Tensor.Randn(shape, 7, DType.Float32);
            var expected = Engine(() => ff.Forward(x));
            var outputs = RunOrt(session, ("input", Floats(x.ToArray<float>(), shape.Select(d => (long)d).ToArray())));
            AssertClose(outputs["output"].Values, expected, $"FeedForward {Shape.Format(shape)}");
        }
    }

    /// <summary>A model family added later: it registers a graph builder that composes the table's layers.</summary>
    private sealed class GroupedQueryBlock : Module
    {
        public GroupedQueryBlock(Generator g)
        {
            Attention = Child("attn", new MultiHeadAttention(16, 4, false, 0, true, g, kvHeads: 2));
            Norm = Child("norm", new LayerNorm(16));
        }
        public MultiHeadAttention Attention { get; }
        public LayerNorm Norm { get; }
        public Tensor Forward(Tensor x) { using var n = Norm.Forward(x); return Attention.Forward(n, causal: true); }
    }

    [Test]
    public void A_registered_model_with_grouped_query_attention_matches_onnx_runtime()
    {
        OnnxExport.RegisterModel<GroupedQueryBlock>((block, samples, options) =>
        {
            var g = new OnnxGraph("gqa_block");
            var x = g.Input("x", OnnxGraph.ElementType.Float, "batch", "sequence", 16);
            var n = OnnxLayers.Emit(g, block.Norm, "norm", x);
            g.Output(OnnxLayers.Attention(g, block.Attention, "attn", n, null, causal: true, null, out _), "y", OnnxGraph.ElementType.Float, "batch", "sequence", 16);
            return g;
        });
        using var block = new GroupedQueryBlock(new Generator(21));
        block.Eval();
        string path = PathFor("gqa");
        using (var sample = Tensor.Randn([1, 4, 16], 2, DType.Float32)) block.ExportOnnx(path, sample);
        using var session = new InferenceSession(path);
        foreach (var (b, t) in new[] { (1, 3), (2, 6) })
        {
            using var x = Tensor.Randn([b, t, 16], (ulong)(30 + t), DType.Float32);
            var expected = Engine(() => block.Forward(x));
            AssertClose(RunOrt(session, ("x", Floats(x.ToArray<float>(), b, t, 16)))["y"].Values, expected, $"grouped-query attention, batch {b}, length {t}");
        }
    }

    [Test]
    public void The_file_is_opset_17_of_the_standard_domain_with_each_weight_stored_once()
    {
        var config = new GptConfig(Vocab: 11, BlockSize: 8, Layers: 1, Heads: 2, Dim: 8);
        using var gpt = new Gpt(config, new Generator(1));
        string path = PathFor("gpt-proto");
        using (var sample = Ids([1, 2], 1, 2)) gpt.ExportOnnx(path, sample);
        var model = AttnCore.Onnx.Proto.ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));
        Assert.That(model.IrVersion, Is.EqualTo(8));
        Assert.That(model.OpsetImport.Select(o => (o.Domain, o.Version)), Is.EqualTo(new[] { ("", 17L) }));
        Assert.That(model.Graph.Node.Select(n => n.Domain), Is.All.Empty, "standard operators only");
        // The head is tied to the token embedding: one initializer per parameter, under its state-dict name.
        var weights = model.Graph.Initializer.Select(i => i.Name).Where(n => n.EndsWith(".weight", StringComparison.Ordinal) || n.EndsWith(".bias", StringComparison.Ordinal));
        Assert.That(weights, Is.EquivalentTo(gpt.NamedParameters().Select(p => p.Name)));
        Assert.That(model.Graph.Input.Select(i => string.Join(",", i.Type.TensorType.Shape.Dim.Select(d => d.DimParam))), Is.EqualTo(new[] { "batch,sequence" }));
        Assert.That(Directory.GetFiles(_dir, ".*tmp*"), Is.Empty, "no temporary file left behind");
    }

    private sealed class Unmapped : Module<Tensor, Tensor>
    {
        public override Tensor Forward(Tensor input) => input.Relu();
    }

    [Test]
    public void An_unmapped_module_fails_naming_it_and_writes_nothing()
    {
        string path = PathFor("unmapped");
        using var m = new Unmapped();
        using var x = Tensor.Zeros([2, 3], DType.Float32);
        var e = Assert.Throws<NotSupportedException>(() => m.ExportOnnx(path, x))!;
        Assert.That(e.Message, Does.Contain("Unmapped").And.Contain("Gpt").And.Contain("Linear"));
        Assert.That(File.Exists(path), Is.False);
    }

    [Test]
    public void Bad_sample_inputs_fail_naming_the_model_and_the_shapes()
    {
        var config = new GptConfig(Vocab: 11, BlockSize: 8, Layers: 1, Heads: 2, Dim: 8);
        using var gpt = new Gpt(config, new Generator(1));
        string path = PathFor("bad");
        using var floats = Tensor.Zeros([1, 4], DType.Float32);
        Assert.That(Assert.Throws<ArgumentException>(() => gpt.ExportOnnx(path, floats))!.Message, Does.Contain("Gpt").And.Contain("Float32").And.Contain("[1,4]"));
        using var tooLong = Ids(new long[9], 1, 9);
        Assert.That(Assert.Throws<ArgumentException>(() => gpt.ExportOnnx(path, tooLong))!.Message, Does.Contain("9 positions").And.Contain("8"));
        using var outside = Ids([3, 11], 1, 2);
        Assert.That(Assert.Throws<ArgumentException>(() => gpt.ExportOnnx(path, outside))!.Message, Does.Contain("[3, 11]").And.Contain("[0, 11)"));
        Assert.That(Assert.Throws<ArgumentException>(() => gpt.ExportOnnx(path))!.Message, Does.Contain("0 sample inputs"));
        using var transformer = new Transformer(new TransformerConfig(5, 5, Dim: 8, Heads: 2, EncoderLayers: 1, DecoderLayers: 1, Hidden: 16), new Generator(2));
        using var s = Ids([1, 2], 1, 2);
        using var t = Ids([1, 2, 3, 4], 2, 2);
        Assert.That(Assert.Throws<ArgumentException>(() => transformer.ExportOnnx(path, s, t))!.Message, Does.Contain("batch size").And.Contain("[1,2]").And.Contain("[2,2]"));
        Assert.That(Assert.Throws<NotSupportedException>(() => transformer.ExportOnnx(path, new OnnxExportOptions(KeyValueCache: true), s, s))!.Message, Does.Contain("Transformer"));
        Assert.That(File.Exists(path), Is.False);
    }
}
