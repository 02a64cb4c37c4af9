using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using AttnCore.Models.Nn;
using AttnCore.Models.Transformers;
using AttnCore.Onnx;
using Microsoft.ML.OnnxRuntime;

namespace AttnCore.Cli.Bench;

/// <summary>
/// <c>attncore bench gpt-infer [--vs onnxruntime]</c>: GPT inference throughput in tokens/s for the prompt pass
/// (all prompt positions in one Forward) and for cached generation (one token per step, greedy), AttnCore with its
/// key/value cache against ONNX Runtime's CPU provider on graphs exported by <see cref="OnnxExport"/> from the same
/// weights, in the same process. Two ONNX graphs are timed: the plain one (no cache: each generated token
/// recomputes the whole sequence, which is what a graph without cache inputs forces) and the one with
/// past/present key/value inputs and outputs (the fair comparison for generation). Sides alternate run by run so
/// machine noise hits them alike; figures are medians. The prompt logits of the two runtimes are compared too.
/// </summary>
public static class BenchGptInfer
{
    /// <summary>Builds <c>bench gpt-infer</c>.</summary>
    public static Command Create(CliIO io)
    {
        var common = new CommonOptions();
        var config = new Option<string>("--config") { Description = "baby (4 layers, 4 heads, 128 channels, T=64), small (6, 6, 384, T=256) or tiny (1, 2, 16, T=16)", DefaultValueFactory = _ => "baby" }.AcceptOnlyFromAmong("baby", "small", "tiny");
        var prompt = NumericOption.OptionalInt("--prompt", "prompt tokens (default: half the block size)", 1, NumericOption.MaxSize);
        var tokens = NumericOption.OptionalInt("--tokens", "generated tokens (default: the rest of the block)", 1, NumericOption.MaxSize);
        var vs = new Option<string?>("--vs") { Description = "compare with a reference: onnxruntime (CPU provider, exported graphs without and with a key/value cache)" }.AcceptOnlyFromAmong("onnxruntime");
        var seconds = NumericOption.Number("--seconds", "measurement time per side and phase", 3.0, 0, 3600, minExclusive: true);
        var cmd = common.AddTo(new Command("gpt-infer", "GPT inference tokens/s: prompt pass and cached generation (vocabulary 65, random weights)") { config, prompt, tokens, vs, seconds });
        cmd.AddRule(r =>
        {
            var cfg = Preset(r.GetValue(config) ?? "baby");
            int pr = r.GetValue(prompt) ?? cfg.BlockSize / 2, n = r.GetValue(tokens) ?? cfg.BlockSize - pr;
            if (pr + n > cfg.BlockSize) return $"--prompt {pr} + --tokens {n} exceed the block size {cfg.BlockSize} of --config {r.GetValue(config) ?? "baby"}";
            return n < 1 ? $"--prompt {pr} leaves no room to generate in the block size {cfg.BlockSize}" : null;
        });
        cmd.SetAction(p =>
        {
            var device = common.Apply(p);
            string name = p.GetValue(config) ?? "baby";
            var cfg = Preset(name);
            int promptLength = p.GetValue(prompt) ?? cfg.BlockSize / 2, generate = p.GetValue(tokens) ?? cfg.BlockSize - promptLength;
            double secs = p.GetValue(seconds);
            int threads = p.GetValue(common.Threads);
            var rng = new Random((int)(p.GetValue(common.Seed) % int.MaxValue));
            var promptIds = Enumerable.Range(0, promptLength).Select(_ => (long)rng.Next(cfg.Vocab)).ToArray();
            using var model = new Gpt(cfg, new Generator(p.GetValue(common.Seed)), device);
            model.Eval();
            using var engine = new EngineSide(model, promptIds, generate, device);
            var sides = new List<ISide> { engine };
            string? folder = null;
            try
            {
                if (p.GetValue(vs) is "onnxruntime")
                {
                    folder = Directory.CreateTempSubdirectory("attncore-gpt-infer-").FullName;
                    using var sample = Tensor.FromArray(promptIds, [1, promptLength]);
                    foreach (bool withCache in new[] { false, true })
                    {
                        string path = Path.Combine(folder, withCache ? "gpt-kv-cache.onnx" : "gpt.onnx");
                        model.ExportOnnx(path, new OnnxExportOptions(withCache), sample);
                        sides.Add(new OrtSide(path, withCache, cfg, promptIds, generate, threads));
                    }
                }
                var promptTimes = Alternate(sides, s => s.Prompt, secs);
                var generateTimes = Alternate(sides, s => s.Generate, secs);
                Report(io, p.GetValue(common.Json), name, cfg, promptLength, generate, threads, device, sides, promptTimes, generateTimes);
            }
            finally
            {
                foreach (var s in sides.Skip(1)) s.Dispose();
                if (folder is not null) Directory.Delete(folder, true);
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>The GPT sizes of bench's --config presets (gpt-step, ddp-step and gpt-infer): one table, in BenchDistributed.</summary>
    internal static GptConfig Preset(string name) => BenchDistributed.GptStepConfig(name).Config;

    /// <summary>One runtime: a prompt pass and a cached generation, each an untimed setup and a timed part.</summary>
    private interface ISide : IDisposable
    {
        string Label { get; }
        (Action Setup, Action Timed) Prompt { get; }
        (Action Setup, Action Timed) Generate { get; }
        /// <summary>The logits of the last prompt position from the last prompt pass.</summary>
        float[] LastPromptLogits { get; }
    }

    private static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }

    // AttnCore on the CPU: a GptDecoder (kernel calls over preallocated buffers, its own caches); the prompt pass
    // returns every position's logits, as the ONNX graphs do. On other devices: Forward under InferenceMode,
    // generation appending to one KeyValueCache per block.
    private sealed class EngineSide : ISide
    {
        private readonly KeyValueCache[] _caches = [];
        private readonly GptDecoder? _decoder;
        private readonly long[] _next = new long[1];
        private float[] _last = [];

        public EngineSide(Gpt model, long[] prompt, int generate, Device device)
        {
            var c = model.Config;
            if (device.Kind == DeviceKind.Cpu && GptDecoder.Supports(model))
            {
                var decoder = _decoder = new GptDecoder(model);
                _last = new float[c.Vocab];
                void Prefill(bool allPositions)
                {
                    decoder.Reset();
                    decoder.Forward(prompt, allPositions)[^c.Vocab..].CopyTo(_last);
                }
                Prompt = (() => { }, () => Prefill(allPositions: true));
                Generate = (() => Prefill(allPositions: false), () =>
                {
                    var logits = (ReadOnlySpan<float>)_last;
                    for (int i = 0; i < generate; i++) { _next[0] = ArgMax(logits); logits = decoder.Forward(_next); }
                    logits.CopyTo(_last);
                });
                return;
            }
            _caches = Enumerable.Range(0, c.Layers).Select(_ => new KeyValueCache(1, c.Heads, c.BlockSize, c.Dim / c.Heads, device)).ToArray();
            float[] Step(long[] ids, bool cached)
            {
                using var inference = new InferenceMode();
                using var scope = new TensorScope();
                var t = Tensor.FromArray(ids, [1, ids.Length], device);
                var logits = cached ? model.Forward(t, _caches, _caches[0].Length) : model.Forward(t);
                return logits.Select(1, ids.Length - 1).Reshape(-1).ToArray<float>();
            }
            Prompt = (() => { }, () => _last = Step(prompt, cached: false));
            Generate = (() => { foreach (var k in _caches) k.Clear(); _last = Step(prompt, cached: true); },
                () => { for (int i = 0; i < generate; i++) _last = Step([ArgMax(_last)], cached: true); });
        }

        public string Label => "attncore (kv cache)";
        public (Action Setup, Action Timed) Prompt { get; }
        public (Action Setup, Action Timed) Generate { get; }
        public float[] LastPromptLogits => _last;
        public void Dispose() { _decoder?.Dispose(); foreach (var k in _caches) k.Dispose(); }
    }

    // ONNX Runtime, CPU provider: without a cache every token reruns the whole sequence; with one, the presents of
    // a step are the pasts of the next.
    private sealed class OrtSide : ISide
    {
        private readonly InferenceSession _session;
        private readonly RunOptions _run = new();
        private readonly string[] _outputs;
        private IDisposableReadOnlyCollection<OrtValue>? _state;
        private float[] _last = [];

        public OrtSide(string path, bool withCache, GptConfig c, long[] prompt, int generate, int threads)
        {
            using var options = new SessionOptions { IntraOpNumThreads = threads, InterOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
            _session = new InferenceSession(path, options);
            _outputs = _session.OutputNames.ToArray();
            Label = withCache ? "onnxruntime (kv cache)" : "onnxruntime (no cache)";
            int dh = c.Dim / c.Heads;
            var sequence = new List<long>(prompt);
            float[] Run(long[] ids, bool fromState)
            {
                var names = new List<string> { "tokens" };
                var values = new List<OrtValue> { OrtValue.CreateTensorValueFromMemory(ids, [1, ids.Length]) };
                var fresh = new List<OrtValue>(values);
                for (int l = 0; l < c.Layers && withCache; l++)
                    for (int kv = 0; kv < 2; kv++)
                    {
                        names.Add($"{(kv == 0 ? "past_key" : "past_value")}_{l}");
                        var past = fromState ? _state![1 + 2 * l + kv] : OrtValue.CreateTensorValueFromMemory(Array.Empty<float>(), [1, c.Heads, 0, dh]);
                        values.Add(past);
                        if (!fromState) fresh.Add(past);
                    }
                var results = _session.Run(_run, names, values, _outputs);
                foreach (var v in fresh) v.Dispose();
                _state?.Dispose();
                _state = results;
                var logits = results[0].GetTensorDataAsSpan<float>();
                return logits[^c.Vocab..].ToArray();
            }
            Prompt = (() => { }, () => _last = Run(prompt, fromState: false));
            if (withCache)
                Generate = (() => _last = Run(prompt, fromState: false),
                    () => { for (int i = 0; i < generate; i++) _last = Run([ArgMax(_last)], fromState: true); });
            else
                Generate = (() => { sequence.RemoveRange(prompt.Length, sequence.Count - prompt.Length); _last = Run(prompt, fromState: false); },
                    () => { for (int i = 0; i < generate; i++) { sequence.Add(ArgMax(_last)); _last = Run(sequence.ToArray(), fromState: false); } });
        }

        public string Label { get; }
        public (Action Setup, Action Timed) Prompt { get; }
        public (Action Setup, Action Timed) Generate { get; }
        public float[] LastPromptLogits => _last;
        public void Dispose() { _state?.Dispose(); _run.Dispose(); _session.Dispose(); }
    }

    // A warm-up per side (a third of `seconds`, at most 1 s, so that the JIT's optimised tier replaces the first
    // quick compilation even on a busy machine), then rounds in which every side runs once, until each side has had
    // `seconds` (at least 3 rounds). Returns each side's median and fastest run: on a loaded machine the fastest is
    // the one least disturbed by other processes.
    private static (double[] Median, double[] Best) Alternate(List<ISide> sides, Func<ISide, (Action Setup, Action Timed)> phase, double seconds)
    {
        var times = sides.Select(_ => new List<double>()).ToArray();
        foreach (var s in sides)
        {
            long warm = Stopwatch.GetTimestamp();
            do { phase(s).Setup(); phase(s).Timed(); } while (Stopwatch.GetElapsedTime(warm).TotalSeconds < Math.Min(1.0, seconds / 3));
        }
        var total = new double[sides.Count];
        for (int round = 0; round < 3 || (total.Min() < seconds && round < 10_000); round++)
            for (int i = 0; i < sides.Count; i++)
            {
                var (setup, timed) = phase(sides[i]);
                setup();
                long start = Stopwatch.GetTimestamp();
                timed();
                double t = Stopwatch.GetElapsedTime(start).TotalSeconds;
                times[i].Add(t);
                total[i] += t;
            }
        return (times.Select(t => t.Order().ElementAt(t.Count / 2)).ToArray(), times.Select(t => t.Min()).ToArray());
    }

    private static void Report(CliIO io, bool json, string name, GptConfig cfg, int prompt, int generate, int threads, Device device, List<ISide> sides,
        (double[] Median, double[] Best) promptRuns, (double[] Median, double[] Best) generateRuns)
    {
        var (promptTimes, generateTimes) = (promptRuns.Median, generateRuns.Median);
        var inv = CultureInfo.InvariantCulture;
        // The last prompt pass of each side ran on the same tokens: the runtimes must agree on its logits.
        foreach (var s in sides) s.Prompt.Timed();
        double agreement = sides.Skip(1).Select(s => s.LastPromptLogits.Zip(sides[0].LastPromptLogits, (a, b) => (double)Math.Abs(a - b)).Max()).DefaultIfEmpty(0).Max();
        // Managed bytes AttnCore allocates per generated token (tensor objects, layouts; buffers come from pools).
        sides[0].Generate.Setup();
        long before = GC.GetAllocatedBytesForCurrentThread();
        sides[0].Generate.Timed();
        double bytesPerToken = (GC.GetAllocatedBytesForCurrentThread() - before) / (double)generate;
        io.Out.WriteLine(string.Create(inv, $"gpt-infer {name}: {cfg.Layers} layers, {cfg.Heads} heads, width {cfg.Dim}, vocabulary {cfg.Vocab}; prompt {prompt} tokens, then {generate} generated (greedy), batch 1, {threads} thread{(threads == 1 ? "" : "s")}, AttnCore on {device}"));
        io.Out.WriteLine($"  {"",-24} {"prompt tok/s",14} {"generation tok/s",18}");
        var rows = new Dictionary<string, object>();
        for (int i = 0; i < sides.Count; i++)
        {
            double pt = prompt / promptTimes[i], gt = generate / generateTimes[i], ptBest = prompt / promptRuns.Best[i], gtBest = generate / generateRuns.Best[i];
            io.Out.WriteLine(string.Create(inv, $"  {sides[i].Label,-24} {pt,14:F0} {gt,18:F0}   (fastest run: {ptBest:F0} / {gtBest:F0})"));
            rows[sides[i].Label.Replace(" (", "_", StringComparison.Ordinal).Replace(")", "", StringComparison.Ordinal).Replace(' ', '_')] =
                new Dictionary<string, object>
                {
                    ["prompt_tokens_per_s"] = Math.Round(pt, 1), ["generation_tokens_per_s"] = Math.Round(gt, 1),
                    ["prompt_tokens_per_s_fastest_run"] = Math.Round(ptBest, 1), ["generation_tokens_per_s_fastest_run"] = Math.Round(gtBest, 1),
                };
        }
        io.Out.WriteLine(string.Create(inv, $"  attncore allocates {bytesPerToken:F0} managed bytes per generated token"));
        if (sides.Count > 1)
        {
            io.Out.WriteLine(string.Create(inv, $"  attncore / onnxruntime: prompt {promptTimes[1] / promptTimes[0]:F2}x (no-cache graph) {promptTimes[2] / promptTimes[0]:F2}x (kv-cache graph); generation {generateTimes[1] / generateTimes[0]:F2}x (no cache) {generateTimes[2] / generateTimes[0]:F2}x (kv cache)"));
            var (pb, gb) = (promptRuns.Best, generateRuns.Best);
            io.Out.WriteLine(string.Create(inv, $"  fastest runs: prompt {pb[1] / pb[0]:F2}x (no-cache graph) {pb[2] / pb[0]:F2}x (kv-cache graph); generation {gb[1] / gb[0]:F2}x (no cache) {gb[2] / gb[0]:F2}x (kv cache)"));
            io.Out.WriteLine(string.Create(inv, $"  prompt logits agree to {agreement:E2} (largest absolute difference)"));
        }
        if (json)
        {
            var result = new Dictionary<string, object>
            {
                ["op"] = "gpt-infer", ["config"] = name, ["prompt"] = prompt, ["tokens"] = generate, ["batch"] = 1, ["threads"] = threads, ["device"] = device.ToString(),
                ["results"] = rows, ["attncore_managed_bytes_per_generated_token"] = Math.Round(bytesPerToken),
            };
            if (sides.Count > 1) result["max_abs_logit_difference"] = agreement;
            io.Json(result);
        }
    }
}
