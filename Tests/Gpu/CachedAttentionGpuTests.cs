using AttnCore.Backends;
using AttnCore.Models.Nn;
using AttnCore.Models.Transformers;
using AttnCore.Tests.Engine;
using NUnit.Framework;

namespace AttnCore.Tests.Gpu;

/// <summary>
/// The key/value-cached decoding step on ILGPU devices: Tensor.CachedSelfAttention against float64 (the Engine
/// test's steps, on the device), and a GPT's cached generation logits against its full forward pass there.
/// </summary>
public class CachedAttentionGpuTests(string deviceName) : DeviceFixture<CachedAttentionGpuTests>(deviceName)
{
    [OneTimeTearDown]
    public void ReturnCachedBuffers() => ((IlgpuBackend)TestDevice.Backend).Memory.Trim();

    [Test]
    public void Prefill_then_single_tokens_match_float64_on_the_device() => CachedAttentionTests.PrefillThenSingleTokens(TestDevice);

    [Test]
    public void Gpt_cached_steps_give_the_full_forward_logits_on_the_device()
    {
        var cfg = new GptConfig(11, BlockSize: 8, Layers: 1, Heads: 2, Dim: 16);
        using var gpt = new Gpt(cfg, new Generator(3), TestDevice);
        gpt.Eval();
        long[] ids = [1, 4, 2, 9, 0, 7];
        using var inference = new InferenceMode();
        using var all = Tensor.FromArray(ids, [1, ids.Length], TestDevice);
        using var full = gpt.Forward(all);
        var expected = full.ToArray<float>();
        var caches = new[] { new KeyValueCache(1, cfg.Heads, cfg.BlockSize, cfg.Dim / cfg.Heads, TestDevice) };
        try
        {
            using var prompt = all.Narrow(1, 0, 4);
            using var first = gpt.Forward(prompt, caches, 0);
            for (int p = 4; p < ids.Length; p++)
            {
                using var one = all.Narrow(1, p, 1);
                using var step = gpt.Forward(one, caches, p);
                var got = step.ToArray<float>();
                for (int v = 0; v < cfg.Vocab; v++)
                    Assert.That(got[v], Is.EqualTo(expected[p * cfg.Vocab + v]).Within(1e-4), $"position {p}, logit {v}");
            }
        }
        finally { caches[0].Dispose(); }
    }

    [Test]
    public void Generation_on_the_device_keeps_the_tensor_path_and_matches_the_cpu_decoder()
    {
        var cfg = new GptConfig(11, BlockSize: 8, Layers: 1, Heads: 2, Dim: 16);
        using var onDevice = new Gpt(cfg, new Generator(3), TestDevice);
        onDevice.Eval();
        Assert.That(GptDecoder.Supports(onDevice), Is.False, "the decoder runs CPU models only");
        var refused = Assert.Throws<ArgumentException>(() => new GptDecoder(onDevice))!;
        Assert.That(refused.Message, Does.Contain("GptDecoder").And.Contain("on " + TestDevice).And.Contain("Gpt.Forward"));
        using var onCpu = new Gpt(cfg, new Generator(99));
        onCpu.Eval();
        onCpu.LoadStateDict(onDevice.StateDict());
        Assert.That(GptDecoder.Supports(onCpu), Is.True);
        // Greedy (a tiny temperature) past the block size, so the device's cache restart runs too.
        long[] prompt = [1, 4, 2];
        Assert.That(onDevice.Generate(prompt, 9, temperature: 1e-6, seed: 5), Is.EqualTo(onCpu.Generate(prompt, 9, temperature: 1e-6, seed: 5)));
    }
}
