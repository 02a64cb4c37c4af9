using AttnCore.Models.IO;
using AttnCore.Models.Nn;
using AttnCore.Models.Transformers;
using AttnCore.Optim;
using NUnit.Framework;

namespace AttnCore.Tests.Models;

[TestFixture, Category("Models")]
public class ModuleTests
{
    [Test]
    public void Linear_computes_x_Wt_plus_b_with_pytorch_layout()
    {
        using var lin = new Linear(3, 2, generator: new Generator(1));
        Assert.That(lin.Weight.Shape, Is.EqualTo(new[] { 2, 3 }));
        using var x = Tensor.FromArray(new float[] { 1, 2, 3 }, [1, 3]);
        using var y = lin.Forward(x);
        var w = lin.Weight.ToArray<float>(); var b = lin.Bias!.ToArray<float>();
        Assert.That(y.ToArray<float>()[0], Is.EqualTo(w[0] + 2 * w[1] + 3 * w[2] + b[0]).Within(1e-6));
        Assert.That(y.ToArray<float>()[1], Is.EqualTo(w[3] + 2 * w[4] + 3 * w[5] + b[1]).Within(1e-6));
        Assert.That(w.All(v => Math.Abs(v) <= 1 / Math.Sqrt(3)), Is.True, "PyTorch's default init bound");
        var ex = Assert.Throws<ArgumentException>(() => lin.Forward(Tensor.Zeros([1, 4])));
        Assert.That(ex!.Message, Does.Contain("Linear").And.Contain("4"));
    }

    [Test]
    public void Gpt_parameters_have_dotted_pytorch_style_names()
    {
        using var gpt = new Gpt(new GptConfig(65, BlockSize: 16, Layers: 2, Heads: 2, Dim: 32), new Generator(3));
        var names = gpt.NamedParameters().Select(p => p.Name).ToArray();
        Assert.That(names, Does.Contain("blocks.0.attn.qkv.weight"));
        Assert.That(names, Does.Contain("blocks.1.mlp.proj.weight"));
        Assert.That(names, Does.Contain("wte.weight"));
        Assert.That(names, Does.Contain("ln_f.weight"));
        Assert.That(names, Does.Not.Contain("ln_f.bias"), "bias=False, as nanoGPT: layer norms have a scale only");
        Assert.That(names.Distinct().Count(), Is.EqualTo(names.Length));
        Assert.That(gpt.ParameterCount(), Is.EqualTo(65 * 32 + 16 * 32 + 2 * (2 * 32 + 3 * 32 * 32 + 32 * 32 + 2 * 4 * 32 * 32) + 32));
    }

    [Test]
    public void Safetensors_round_trip_restores_every_tensor_exactly_and_writes_atomically()
    {
        string dir = Path.Combine(Path.GetTempPath(), "attncore-tests-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var a = new Gpt(new GptConfig(11, BlockSize: 8, Layers: 1, Heads: 2, Dim: 8), new Generator(5));
            using var b = new Gpt(new GptConfig(11, BlockSize: 8, Layers: 1, Heads: 2, Dim: 8), new Generator(6));
            string path = Path.Combine(dir, "ckpt", "model.safetensors");
            Safetensors.Save(path, a, new Dictionary<string, string> { ["step"] = "7" });
            Assert.That(Directory.GetFiles(Path.GetDirectoryName(path)!), Has.Length.EqualTo(1), "no temporary file left behind");
            var meta = Safetensors.LoadInto(path, b);
            Assert.That(meta["step"], Is.EqualTo("7"));
            foreach (var ((na, pa), (nb, pb)) in a.NamedParameters().Zip(b.NamedParameters()))
                Assert.That(pb.ToArray<float>(), Is.EqualTo(pa.ToArray<float>()), na);
            // The header is what any safetensors reader expects: u64 length, then JSON with dtype/shape/data_offsets.
            var bytes = File.ReadAllBytes(path);
            ulong n = BitConverter.ToUInt64(bytes, 0);
            var header = System.Text.Json.JsonDocument.Parse(bytes.AsMemory(8, (int)n)).RootElement;
            var qkv = header.GetProperty("blocks.0.attn.qkv.weight");
            Assert.That(qkv.GetProperty("dtype").GetString(), Is.EqualTo("F32"));
            Assert.That(qkv.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()), Is.EqualTo(new[] { 24, 8 }));
            Assert.That((8 + (long)n) % 8, Is.EqualTo(0), "data starts 8-byte aligned");
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Test]
    public void Safetensors_reader_rejects_corrupt_files_with_the_path_in_the_message()
    {
        string path = Path.Combine(Path.GetTempPath(), $"attncore-bad-{Guid.NewGuid():N}.safetensors");
        try
        {
            var header = System.Text.Encoding.UTF8.GetBytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}");
            var bytes = BitConverter.GetBytes((ulong)header.Length).Concat(header).Concat(new byte[8]).ToArray();   // 8 data bytes, 16 promised
            File.WriteAllBytes(path, bytes);
            var ex = Assert.Throws<SafetensorsFormatException>(() => Safetensors.Load(path));
            Assert.That(ex!.Message, Does.Contain(path).And.Contain("'w'"));
            File.WriteAllBytes(path, BitConverter.GetBytes(1000UL));
            Assert.Throws<SafetensorsFormatException>(() => Safetensors.Load(path));
            Assert.Throws<FileNotFoundException>(() => Safetensors.Load(path + ".missing"));
        }
        finally { File.Delete(path); }
    }

    [Test]
    public void Gpt_generation_with_the_key_value_cache_matches_full_recomputation()
    {
        using var gpt = new Gpt(new GptConfig(13, BlockSize: 24, Layers: 2, Heads: 2, Dim: 16), new Generator(9));
        gpt.Eval();
        long[] prompt = [1, 5, 2];
        var fast = gpt.Generate(prompt, 12, temperature: 1.0, topK: 5, seed: 42);
        // Greedy re-check without a cache: the cached logits for the final context equal a full forward pass.
        using var ctx = Tensor.FromArray(prompt.Concat(fast).Take(15).ToArray(), [1, 15]);
        using var full = gpt.Forward(ctx);
        var caches = Enumerable.Range(0, 2).Select(_ => new KeyValueCache(1, 2, 24, 8, Device.Cpu)).ToArray();
        using (new NoGrad())
        {
            using var first = gpt.Forward(ctx.Narrow(1, 0, 10), caches, 0);
            using var rest = gpt.Forward(ctx.Narrow(1, 10, 5), caches, 10);
            var a = full.Narrow(1, 10, 5).ToArray<float>();
            var b = rest.ToArray<float>();
            for (int i = 0; i < a.Length; i++) Assert.That(b[i], Is.EqualTo(a[i]).Within(1e-4));
        }
        foreach (var c in caches) c.Dispose();
        Assert.That(fast, Has.Length.EqualTo(12));
        Assert.That(gpt.Generate(prompt, 12, 1.0, 5, seed: 42), Is.EqualTo(fast), "same seed, same text");
    }

    [Test]
    public void A_tiny_gpt_memorises_a_repeating_sequence()
    {
        using var gpt = new Gpt(new GptConfig(5, BlockSize: 12, Layers: 1, Heads: 2, Dim: 16), new Generator(2));
        long[] seq = Enumerable.Range(0, 13).Select(i => (long)(i % 5)).ToArray();
        using var x = Tensor.FromArray(seq[..12], [1, 12]);
        using var y = Tensor.FromArray(seq[1..], [1, 12]);
        using var opt = new AdamW(gpt.Parameters(), 1e-2, weightDecay: 0);
        double loss = 0;
        for (int i = 0; i < 150; i++)
        {
            using var scope = new TensorScope();
            opt.ZeroGrad();
            var l = gpt.Loss(x, y);
            l.Backward();
            opt.Step();
            loss = l.Item();
        }
        Assert.That(loss, Is.LessThan(0.05));
        gpt.Eval();
        Assert.That(gpt.Generate([0, 1], 6, temperature: 0.01, seed: 1), Is.EqualTo(new long[] { 2, 3, 4, 0, 1, 2 }));
    }

    [Test]
    public void Encoder_decoder_transformer_learns_to_copy_digits()
    {
        var cfg = new TransformerConfig(SourceVocab: 12, TargetVocab: 12, Dim: 32, Heads: 4, EncoderLayers: 1, DecoderLayers: 1, Hidden: 64, MaxLength: 16, Dropout: 0);
        using var model = new Transformer(cfg, new Generator(4));
        using var opt = new AdamW(model.Parameters(), 3e-3, weightDecay: 0);
        var g = new Generator(8);
        const long Bos = 10, Eos = 11;
        for (int step = 0; step < 200; step++)
        {
            using var scope = new TensorScope();
            var src = Enumerable.Range(0, 16 * 5).Select(_ => g.NextInt64(0, 10)).ToArray();
            var tgtIn = new List<long>(); var tgtOut = new List<long>();
            for (int i = 0; i < 16; i++) { tgtIn.Add(Bos); tgtIn.AddRange(src[(i * 5)..(i * 5 + 5)]); tgtOut.AddRange(src[(i * 5)..(i * 5 + 5)]); tgtOut.Add(Eos); }
            var s = Tensor.FromArray(src, [16, 5]);
            var ti = Tensor.FromArray(tgtIn.ToArray(), [16, 6]);
            var to = Tensor.FromArray(tgtOut.ToArray(), [16 * 6]);
            opt.ZeroGrad();
            var loss = model.Forward(s, ti).Reshape(-1, 12).CrossEntropy(to);
            loss.Backward();
            opt.Step();
        }
        model.Eval();
        using var test = Tensor.FromArray(new long[] { 3, 1, 4, 1, 5, 9, 2, 6, 5, 3 }, [2, 5]);
        var decoded = model.GreedyDecode(test, Bos, Eos, 8);
        Assert.That(decoded[0], Is.EqualTo(new long[] { 3, 1, 4, 1, 5 }));
        Assert.That(decoded[1], Is.EqualTo(new long[] { 9, 2, 6, 5, 3 }));
    }
}
