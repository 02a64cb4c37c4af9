using AttnCore.Models.Nn;
using AttnCore.Models.Transformers;
using NUnit.Framework;

namespace AttnCore.Tests.Models;

/// <summary>
/// GptDecoder (kernel calls over preallocated buffers) against the Tensor path it replaces on the CPU: the prompt
/// pass's logits at every position against Gpt.Forward without a cache, each later step (one token, and a chunk of
/// three that takes Gemv and the many-query attention kernel) against Gpt.Forward with KeyValueCaches, for several
/// shapes; that a warmed-up step allocates no managed memory; and its refusals.
/// </summary>
[TestFixture, Category("Models")]
public class GptDecoderTests
{
    private const double Tolerance = 1e-5;

    // Head dims 8, 5 (scalar tails in every dot product) and 16 with one head; biases on and off; a ReLU-free GELU
    // MLP everywhere (GptBlock's), widths around the 16-float vectors.
    private static IEnumerable<TestCaseData> Configs()
    {
        yield return new TestCaseData(new GptConfig(13, BlockSize: 24, Layers: 2, Heads: 4, Dim: 32)).SetArgDisplayNames("4 heads of 8, no bias");
        yield return new TestCaseData(new GptConfig(17, BlockSize: 24, Layers: 3, Heads: 4, Dim: 20, Bias: true)).SetArgDisplayNames("4 heads of 5, bias");
        yield return new TestCaseData(new GptConfig(65, BlockSize: 24, Layers: 1, Heads: 1, Dim: 16, Bias: true)).SetArgDisplayNames("1 head of 16, bias");
    }

    [TestCaseSource(nameof(Configs))]
    public void Prompt_and_cached_steps_give_the_tensor_paths_logits(GptConfig cfg)
    {
        using var gpt = new Gpt(cfg, new Generator(11));
        gpt.Eval();
        RandomiseNormParameters(gpt);
        var rng = new Random(5);
        long[] ids = Enumerable.Range(0, 16).Select(_ => (long)rng.Next(cfg.Vocab)).ToArray();
        using var inference = new InferenceMode();
        using var decoder = new GptDecoder(gpt);
        var caches = Enumerable.Range(0, cfg.Layers).Select(_ => new KeyValueCache(1, cfg.Heads, cfg.BlockSize, cfg.Dim / cfg.Heads, Device.Cpu)).ToArray();
        try
        {
            // Prompt of 7 (more rows than Gemv takes): every position against a full forward without a cache.
            using (var prompt = Tensor.FromArray(ids[..7], [1, 7]))
            using (var full = gpt.Forward(prompt))
            {
                AssertClose(decoder.Forward(ids.AsSpan(0, 7), allPositions: true), full.ToArray<float>(), "prompt, all positions");
                using var cached = gpt.Forward(prompt, caches, 0);
            }
            Assert.That(decoder.Length, Is.EqualTo(7));
            // Single tokens, then a chunk of 3, then single tokens: last-position logits against the cached Tensor path.
            int position = 7;
            foreach (int count in new[] { 1, 1, 3, 1, 1, 1 })
            {
                using var chunk = Tensor.FromArray(ids.AsSpan(position, count).ToArray(), [1, count]);
                using var expected = gpt.Forward(chunk, caches, position);
                using var last = expected.Select(1, count - 1);
                AssertClose(decoder.Forward(ids.AsSpan(position, count)), last.ToArray<float>(), $"{count} token(s) at position {position}");
                position += count;
                Assert.That(decoder.Length, Is.EqualTo(position));
            }
            // Reset starts over: the prompt again gives its logits again.
            decoder.Reset();
            using var again = Tensor.FromArray(ids[..2], [1, 2]);
            using var againLogits = gpt.Forward(again);
            using var againLast = againLogits.Select(1, 1);
            AssertClose(decoder.Forward(ids.AsSpan(0, 2)), againLast.ToArray<float>(), "after Reset");
        }
        finally { foreach (var c in caches) c.Dispose(); }
    }

    [Test]
    public void A_generation_step_allocates_no_managed_memory()
    {
        var cfg = new GptConfig(65, BlockSize: 64, Layers: 2, Heads: 4, Dim: 64, Bias: true);
        using var gpt = new Gpt(cfg, new Generator(2));
        gpt.Eval();
        using var decoder = new GptDecoder(gpt);
        long[] next = [3];
        void Steps(int count)
        {
            var logits = decoder.Forward([1, 2, 3, 4, 5, 6]);
            for (int i = 0; i < count; i++)
            {
                next[0] = ArgMax(logits);
                logits = decoder.Forward(next);
            }
        }
        // Warm-up: every kernel and buffer the steps touch (thread-local scratch included) exists afterwards.
        for (int round = 0; round < 3; round++) { decoder.Reset(); Steps(40); }
        decoder.Reset();
        long before = GC.GetAllocatedBytesForCurrentThread();
        Steps(40);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(allocated, Is.Zero, "managed bytes allocated by a 6-token prompt and 40 single-token steps");
    }

    [Test]
    public void Weights_written_between_two_prompts_are_seen_by_the_second()
    {
        // The prompt pass multiplies by packed copies of the weights: writing a weight (CopyFrom, as LoadStateDict and
        // the optimizers write in place) must repack it, or the second prompt would use the first's weights.
        var cfg = new GptConfig(17, BlockSize: 16, Layers: 2, Heads: 2, Dim: 32, Bias: true);
        using var gpt = new Gpt(cfg, new Generator(8));
        gpt.Eval();
        long[] ids = [1, 2, 3, 4, 5, 6, 7, 8];
        using var inference = new InferenceMode();
        using var decoder = new GptDecoder(gpt);
        using var prompt = Tensor.FromArray(ids, [1, ids.Length]);
        using (var before = gpt.Forward(prompt))
            AssertClose(decoder.Forward(ids, allPositions: true), before.ToArray<float>(), "first prompt");
        using (new NoGrad())
            foreach (var (name, p) in gpt.NamedParameters())
                if (p.Shape.Length == 2)
                {
                    using var changed = Tensor.FromArray(p.ToArray<float>().Select((v, i) => -0.7f * v + 0.01f * (i % 5)).ToArray(), p.Shape);
                    p.CopyFrom(changed);
                }
        decoder.Reset();
        using var after = gpt.Forward(prompt);
        AssertClose(decoder.Forward(ids, allPositions: true), after.ToArray<float>(), "prompt after the weights changed");
    }

    [Test]
    public void Bad_calls_fail_naming_what_is_wrong()
    {
        var cfg = new GptConfig(13, BlockSize: 8, Layers: 1, Heads: 2, Dim: 16, Dropout: 0.1);
        using var gpt = new Gpt(cfg, new Generator(1));
        Assert.That(GptDecoder.Supports(gpt), Is.False, "training mode with dropout");
        var training = Assert.Throws<ArgumentException>(() => new GptDecoder(gpt))!;
        Assert.That(training.Message, Does.Contain("GptDecoder").And.Contain("dropout 0.1"));
        gpt.Eval();
        Assert.That(GptDecoder.Supports(gpt), Is.True);
        using var decoder = new GptDecoder(gpt);
        Assert.That(Assert.Throws<ArgumentException>(() => decoder.Forward([]))!.Message, Does.Contain("no tokens"));
        var outside = Assert.Throws<ArgumentOutOfRangeException>(() => decoder.Forward([1, 13]))!;
        Assert.That(outside.Message, Does.Contain("token 1 of 2 is 13").And.Contain("[0, 13)"));
        Assert.Throws<ArgumentOutOfRangeException>(() => decoder.Forward([-1]));
        Assert.That(decoder.Length, Is.Zero, "a refused call stores nothing");
        decoder.Forward([1, 2, 3, 4, 5]);
        var full = Assert.Throws<ArgumentException>(() => decoder.Forward([1, 2, 3, 4]))!;
        Assert.That(full.Message, Does.Contain("5 cached + 4 new positions exceed the block size 8"));
        gpt.Train();
        Assert.That(Assert.Throws<InvalidOperationException>(() => decoder.Forward([1]))!.Message, Does.Contain("training mode"));
    }

    [Test]
    public void Generate_on_the_cpu_runs_the_decoder_through_a_cache_restart()
    {
        // 20 tokens after a 5-token prompt overflow the block of 16, so the cache is rebuilt from the last 8 tokens:
        // the text must be what the Tensor path's cached steps produce (rebuilt the same way), here replayed greedily.
        var cfg = new GptConfig(13, BlockSize: 16, Layers: 2, Heads: 2, Dim: 16);
        using var gpt = new Gpt(cfg, new Generator(4));
        gpt.Eval();
        long[] prompt = [1, 2, 3, 4, 5];
        var text = gpt.Generate(prompt, 20, temperature: 1e-6, seed: 3);
        var all = new List<long>(prompt);
        using var inference = new InferenceMode();
        var caches = Enumerable.Range(0, cfg.Layers).Select(_ => new KeyValueCache(1, cfg.Heads, cfg.BlockSize, cfg.Dim / cfg.Heads, Device.Cpu)).ToArray();
        try
        {
            float[] Step(long[] ids)
            {
                using var t = Tensor.FromArray(ids, [1, ids.Length]);
                using var logits = gpt.Forward(t, caches, caches[0].Length);
                using var last = logits.Select(1, ids.Length - 1);
                return last.ToArray<float>();
            }
            var next = Step(prompt);
            for (int n = 0; n < 20; n++)
            {
                all.Add(ArgMax(next));
                if (caches[0].Length >= cfg.BlockSize)
                {
                    foreach (var c in caches) c.Clear();
                    next = Step(all.TakeLast(cfg.BlockSize / 2).ToArray());
                }
                else next = Step([all[^1]]);
            }
        }
        finally { foreach (var c in caches) c.Dispose(); }
        Assert.That(text, Is.EqualTo(all.Skip(prompt.Length).ToArray()));
    }

    // LayerNorm starts at γ = 1, β = 0; random values make a decoder that ignored them fail.
    private static void RandomiseNormParameters(Gpt gpt)
    {
        using var noGrad = new NoGrad();
        var g = new Generator(21);
        foreach (var (name, p) in gpt.NamedParameters())
        {
            if (!name.Contains("ln", StringComparison.Ordinal) && !name.EndsWith(".bias", StringComparison.Ordinal)) continue;
            using var noise = Init.Normal(p.Shape, 0.3, g);
            using var shifted = noise + (name.EndsWith("weight", StringComparison.Ordinal) ? 1.0 : 0.0);
            p.CopyFrom(shifted);
        }
    }

    private static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }

    private static void AssertClose(ReadOnlySpan<float> actual, float[] expected, string what)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length), what);
        double worst = 0;
        for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
        Assert.That(worst, Is.LessThanOrEqualTo(Tolerance), $"{what}: largest |decoder - tensor path|");
    }
}
