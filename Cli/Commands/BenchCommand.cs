using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using AttnCore.Cli.Bench;
using AttnCore.Kernels.Cpu;
using AttnCore.Models.Transformers;
using AttnCore.Optim;

namespace AttnCore.Cli.Commands;

/// <summary>
/// <c>attncore bench &lt;op&gt;</c>: warm up, then the median of many timed runs; with --vs torch the same
/// shapes in PyTorch (and for gemm on CUDA, --vs cublas: cuBLAS on the same device buffers), alternating
/// batches of runs between the two so machine noise hits both alike. Device runs are timed up to the end of
/// the work: every run is followed by Device.Synchronize before the clock stops. The PyTorch reference runs in
/// its best configuration for this machine unless --torch-untuned (see <see cref="TorchBridge.CreateStartInfo"/>),
/// and CPU GEMM and attention figures are also given as a fraction of the FMA peak measured in the same run.
/// </summary>
public static class BenchCommand
{
    internal sealed record Work(string Op, Dictionary<string, object> Shape, double Flops, double Bytes, Action Run, Action Cleanup, Dictionary<string, object> TorchSetup)
    {
        /// <summary>cuBLAS on the work's own device buffers (gemm only).</summary>
        public Func<IBenchReference>? CuBlas { get; init; }
    }

    /// <summary>Builds <c>bench</c> and its sub-commands.</summary>
    public static Command Create(CliIO io)
    {
        var bench = new Command("bench", "Time a kernel or a training step, optionally next to PyTorch (--vs torch)");
        bench.Subcommands.Add(Gemm(io));
        bench.Subcommands.Add(Rows(io, "softmax"));
        bench.Subcommands.Add(Rows(io, "layernorm"));
        bench.Subcommands.Add(Attention(io));
        bench.Subcommands.Add(GptStep(io));
        bench.Subcommands.Add(SasRecStepBench.Create(io));
        bench.Subcommands.Add(BenchPeak.Create(io));
        bench.Subcommands.Add(ResNetStepBench.Create(io));
        bench.Subcommands.Add(BenchGptInfer.Create(io));
        foreach (var distributed in BenchDistributed.Commands(io)) bench.Subcommands.Add(distributed);
        bench.Subcommands.Add(BenchForecastCommand.Create(io));
        return bench;
    }

    internal static Option<string?> VsOption() => new Option<string?>("--vs") { Description = "compare with a reference: torch" }.AcceptOnlyFromAmong("torch");
    private static Option<string?> GemmVsOption() =>
        new Option<string?>("--vs") { Description = "compare with a reference: torch, or cublas (CUDA devices: cuBLAS SGEMM on the same buffers)" }.AcceptOnlyFromAmong("torch", "cublas");
    internal static Option<double> SecondsOption() => NumericOption.Number("--seconds", "measurement time per side", 3.0, 0, 3600, minExclusive: true);
    private static Option<int?> OptionalSize(string name, string description) => NumericOption.OptionalInt(name, description, 1, NumericOption.MaxSize);
    private static Option<int> Size(string name, string description, int defaultValue) => NumericOption.Int(name, description, defaultValue, 1, NumericOption.MaxSize);

    // Each operand must fit in one .NET array: a usage error while parsing, not an allocation failure after it.
    private static string? Fits(string what, params long[] lengths)
    {
        long elements = lengths.Aggregate(1L, (a, b) => a * b);
        return elements > Array.MaxLength ? $"{what} = {elements:N0} elements, more than one tensor holds ({Array.MaxLength:N0})" : null;
    }

    private static Command Gemm(CliIO io)
    {
        var common = new CommonOptions();
        var n = OptionalSize("--n", "columns of C (alone: the square size m = n = k)");
        var m = OptionalSize("--m", "rows of C (default: n)"); var k = OptionalSize("--k", "inner size (default: n)");
        var vs = GemmVsOption(); var secs = SecondsOption(); var torch = new TorchOptions();
        var blockings = new Option<string?>("--blockings")
        {
            Description = "CPU cache blockings to rank, \"MC,KC,NC MC,KC,NC ...\": each runs the product in turn, in one process (see ATTNCORE_GEMM_BLOCKING)"
        };
        // The products of a Linear layer's training step: forward x·Wᵀ (nt), input gradient dy·W (nn), weight gradient
        // dyᵀ·x (tn). A transposed operand is a transposed view of a row-major tensor, as autograd passes it.
        var layout = new Option<string>("--layout")
        {
            Description = "which operands are transposed views: nn (A @ B), tn (Aᵀ @ B, A stored [K, M]: a weight gradient) or nt (A @ Bᵀ, B stored [N, K]: a Linear forward)",
            DefaultValueFactory = _ => "nn",
        }.AcceptOnlyFromAmong("nn", "tn", "nt");
        var cmd = torch.AddTo(common.AddTo(new Command("gemm", "C = A @ B in float32 (--n N, or --m M --n N --k K)") { n, m, k, layout, vs, secs, blockings }));
        cmd.AddRule(r =>
        {
            int N = r.GetValue(n) ?? 1024, M = r.GetValue(m) ?? N, K = r.GetValue(k) ?? N;
            return Fits($"--m {M} x --k {K}", M, K) ?? Fits($"--k {K} x --n {N}", K, N) ?? Fits($"--m {M} x --n {N}", M, N);
        });
        cmd.AddRule(r => r.GetValue(blockings) is null ? null
            : r.GetValue(vs) is not null ? "--blockings ranks AttnCore's own blockings and takes no --vs"
            : r.GetValue(layout) != "nn" ? "--blockings times A @ B only (--layout nn)"
            : (r.GetValue(common.Device) ?? "cpu") != "cpu" ? "--blockings is for the CPU GEMM (--device cpu)"
            : BenchGemmBlocking.Malformed(r.GetValue(blockings)!));
        cmd.SetAction(p =>
        {
            if (p.GetValue(blockings) is not { } list) return Execute(io, p, common, vs, secs, torch, device => GemmWork(p, n, m, k, p.GetValue(layout)!, device));
            common.Apply(p);
            int N = p.GetValue(n) ?? 1024;
            return BenchGemmBlocking.Run(io, p.GetValue(m) ?? N, N, p.GetValue(k) ?? N, p.GetValue(common.Threads), p.GetValue(secs), p.GetValue(common.Json), list);
        });
        return cmd;
    }

    private static Work GemmWork(ParseResult p, Option<int?> n, Option<int?> m, Option<int?> k, string layout, Device device)
    {
        int N = p.GetValue(n) ?? 1024;
        int M = p.GetValue(m) ?? N, K = p.GetValue(k) ?? N;
        bool ta = layout[0] == 't', tb = layout[1] == 't';
        var a = Tensor.Randn(ta ? [K, M] : [M, K], 1, DType.Float32, device); var b = Tensor.Randn(tb ? [N, K] : [K, N], 2, DType.Float32, device);
        // The operands as the product sees them, made once (as the PyTorch side's .t() views), not in the timed call.
        var opA = ta ? a.T : a; var opB = tb ? b.T : b;
        var shape = new Dictionary<string, object> { ["m"] = M, ["n"] = N, ["k"] = K };
        if (layout != "nn") shape["layout"] = layout;
        // The CPU's cache blocking (ATTNCORE_GEMM_BLOCKING can change it), so that a sweep's lines say what each ran.
        if (device.Kind == DeviceKind.Cpu) shape["blocking"] = Kernels.Cpu.Gemm.FormatBlocking(Kernels.Cpu.Gemm.Blocking);
        return new Work("gemm", shape, 2.0 * M * N * K, 4.0 * (M * K + K * N + M * N),
            () => { using var c = opA.MatMul(opB); }, () => { if (ta) opA.Dispose(); if (tb) opB.Dispose(); a.Dispose(); b.Dispose(); },
            new() { ["op"] = "gemm", ["m"] = M, ["n"] = N, ["k"] = K, ["layout"] = layout })
        { CuBlas = () => layout == "nn" ? CuBlasGemm.Create(a, b, M, N, K) : throw new ArgumentException($"bench gemm: --vs cublas times A @ B only (--layout nn), got --layout {layout}") };
    }

    private static Command Rows(CliIO io, string op)
    {
        var common = new CommonOptions();
        var rows = Size("--rows", "rows (independent vectors)", 4096);
        var cols = Size("--cols", "length of each row (the normalised axis)", 1024);
        var vs = VsOption(); var secs = SecondsOption(); var torch = new TorchOptions();
        var cmd = torch.AddTo(common.AddTo(new Command(op, $"{op} over rows x cols in float32 (reports GB/s)") { rows, cols, vs, secs }));
        cmd.AddRule(r => Fits($"--rows {r.GetValue(rows)} x --cols {r.GetValue(cols)}", r.GetValue(rows), r.GetValue(cols)));
        cmd.SetAction(p => Execute(io, p, common, vs, secs, torch, device =>
        {
            int r = p.GetValue(rows), c = p.GetValue(cols);
            var x = Tensor.Randn([r, c], 1, DType.Float32, device);
            var w = Tensor.Ones([c], DType.Float32, device); var bias = Tensor.Zeros([c], DType.Float32, device);
            Action run = op == "softmax" ? () => { using var y = x.Softmax(-1); } : () => { using var y = x.LayerNorm([c], w, bias); };
            return new Work(op, new() { ["rows"] = r, ["cols"] = c }, (op == "softmax" ? 5.0 : 8.0) * r * c, 8.0 * r * c,
                run, () => { x.Dispose(); w.Dispose(); bias.Dispose(); }, new() { ["op"] = op, ["rows"] = r, ["cols"] = c });
        }));
        return cmd;
    }

    // AttnCore's side of the attention benchmark. --impl fused (default) is Tensor.ScaledDotProductAttention, which
    // dispatches to the fused FlashAttention-style kernel (Kernels/Cpu/Attention.cs) on the CPU; --impl naive is
    // Tensor.AttentionWithWeights, the materialising matmul-softmax-matmul that PyTorch's side also runs.
    private static Tensor AttentionForward(Tensor q, Tensor k, Tensor v, bool causal, bool naive) =>
        naive ? Tensor.AttentionWithWeights(q, k, v, null, causal).Output : Tensor.ScaledDotProductAttention(q, k, v, null, causal);

    private static Command Attention(CliIO io)
    {
        var common = new CommonOptions();
        var b = Size("--b", "batch", 1); var h = Size("--h", "heads", 8);
        var l = Size("--l", "sequence length", 1024); var d = Size("--d", "head dimension", 64);
        var causal = new Option<bool>("--causal") { Description = "hide keys after each query" };
        var impl = new Option<string>("--impl") { Description = "fused (FlashAttention-style kernel) or naive (matmul-softmax-matmul)", DefaultValueFactory = _ => "fused" }.AcceptOnlyFromAmong("fused", "naive");
        var backward = new Option<bool>("--backward") { Description = "time forward + backward" };
        var vs = VsOption(); var secs = SecondsOption(); var torch = new TorchOptions();
        var cmd = torch.AddTo(common.AddTo(new Command("attention", "softmax(Q Kᵀ/√d) V for [B,H,L,D]; PyTorch side: matmul-softmax-matmul") { b, h, l, d, causal, impl, backward, vs, secs }));
        cmd.AddRule(r =>
        {
            int B = r.GetValue(b), H = r.GetValue(h), L = r.GetValue(l), D = r.GetValue(d);
            // The naive path and PyTorch's side hold the [B,H,L,L] weights.
            bool weights = r.GetValue(impl) == "naive" || r.GetValue(vs) is not null;
            return Fits($"--b {B} x --h {H} x --l {L} x --d {D}", B, H, L, D) ?? (weights ? Fits($"the attention weights --b {B} x --h {H} x --l {L} x --l {L}", B, H, L, L) : null);
        });
        cmd.SetAction(p => Execute(io, p, common, vs, secs, torch, device =>
        {
            int B = p.GetValue(b), H = p.GetValue(h), L = p.GetValue(l), D = p.GetValue(d);
            bool isCausal = p.GetValue(causal), bwd = p.GetValue(backward), naive = p.GetValue(impl) == "naive";
            var q = Tensor.Randn([B, H, L, D], 1, DType.Float32, device); var k = Tensor.Randn([B, H, L, D], 2, DType.Float32, device); var v = Tensor.Randn([B, H, L, D], 3, DType.Float32, device);
            if (bwd) { q.RequiresGrad = true; k.RequiresGrad = true; v.RequiresGrad = true; }
            double flops = 4.0 * B * H * L * L * D * (isCausal ? 0.5 : 1) * (bwd ? 3.5 : 1);
            Action run = () =>
            {
                using var scope = new TensorScope();
                var o = AttentionForward(q, k, v, isCausal, naive);
                if (bwd)
                {
                    o.Backward(o.OnesLike());
                    foreach (var t in new[] { q, k, v }) { t.Grad?.Dispose(); t.Grad = null; }
                }
            };
            return new Work("attention", new() { ["b"] = B, ["h"] = H, ["l"] = L, ["d"] = D, ["causal"] = isCausal, ["backward"] = bwd, ["impl"] = naive ? "naive" : "fused" }, flops, 16.0 * B * H * L * D,
                run, () => { q.Dispose(); k.Dispose(); v.Dispose(); },
                new() { ["op"] = "attention", ["b"] = B, ["h"] = H, ["l"] = L, ["d"] = D, ["causal"] = isCausal, ["backward"] = bwd });
        }));
        return cmd;
    }

    private static Command GptStep(CliIO io)
    {
        var common = new CommonOptions();
        var config = new Option<string>("--config") { Description = "baby (4 layers, 4 heads, 128 channels, T=64, batch 12), small (6, 6, 384, T=256, batch 16) or tiny (1, 2, 16, T=16, batch 2: dry runs on emulated devices)", DefaultValueFactory = _ => "baby" }.AcceptOnlyFromAmong("baby", "small", "tiny");
        var vs = VsOption(); var secs = SecondsOption(); var torch = new TorchOptions();
        var cmd = torch.AddTo(common.AddTo(new Command("gpt-step", "One AdamW training step of a character-level GPT (vocabulary 65, random tokens)") { config, vs, secs }));
        cmd.SetAction(p => Execute(io, p, common, vs, secs, torch, device =>
        {
            string name = p.GetValue(config) ?? "baby";
            var (cfg, batch) = BenchDistributed.GptStepConfig(name);
            var model = new Gpt(cfg, new Generator(p.GetValue(common.Seed)), device);
            var opt = new AdamW(model.Parameters(), 1e-3, 0.9, 0.99, 1e-8, 0.1);
            var x = Tensor.RandInt(0, 65, [batch, cfg.BlockSize], 5, device); var y = Tensor.RandInt(0, 65, [batch, cfg.BlockSize], 6, device);
            Action run = () =>
            {
                using var scope = new TensorScope();
                opt.ZeroGrad();
                var loss = model.Loss(x, y);
                loss.Backward();
                opt.Step();
            };
            long tokens = (long)batch * cfg.BlockSize;
            return new Work("gpt-step", new() { ["config"] = name, ["tokens"] = tokens }, 6.0 * model.ParameterCount() * tokens, 0,
                run, () => { opt.Dispose(); model.Dispose(); x.Dispose(); y.Dispose(); },
                new() { ["op"] = "gpt-step", ["vocab"] = 65, ["block"] = cfg.BlockSize, ["layers"] = cfg.Layers, ["heads"] = cfg.Heads, ["dim"] = cfg.Dim, ["batch"] = batch });
        }));
        return cmd;
    }

    internal static int Execute(CliIO io, ParseResult p, CommonOptions common, Option<string?> vs, Option<double> secs, TorchOptions torch, Func<Device, Work> make)
    {
        var device = common.Apply(p);
        int threads = p.GetValue(common.Threads);
        bool json = p.GetValue(common.Json);
        double seconds = p.GetValue(secs);
        string? vsName = p.GetValue(vs);
        if (vsName == "cublas" && device.Kind != DeviceKind.Cuda)
            throw new ArgumentException($"bench: --vs cublas needs a CUDA device (--device cuda[:i]); got --device {device}. cuBLAS runs only on NVIDIA GPUs");
        var torchSettings = torch.Read(p, threads, vsName == "torch");
        IBenchReference? reference = null;
        var work = make(device);
        try
        {
            if (vsName == "torch")
                reference = TorchBridge.Start(work.TorchSetup, torchSettings);
            else if (vsName == "cublas")
                reference = (work.CuBlas ?? throw new ArgumentException($"bench {work.Op}: --vs cublas is offered for gemm only"))();
            // Warm up (tiered JIT, pools, caches), then size the batches to ~0.2 s.
            var warm = Stopwatch.StartNew();
            int warmRuns = 0;
            // GPU kernels launch asynchronously: every timed run waits for its device to finish.
            while (warmRuns < 3 || (warm.Elapsed.TotalSeconds < 0.5 && warmRuns < 50)) { work.Run(); device.Synchronize(); warmRuns++; }
            double estimate = warm.Elapsed.TotalMilliseconds / warmRuns;
            reference?.Run(2); // its first calls load libraries and kernels too
            int reps = (int)Math.Clamp(200 / Math.Max(estimate, 1e-3), 1, 50);
            // The ceiling for the thread count used, measured once here, briefly: the machine's state now is what both sides run on.
            PeakMeasurement? peak = device.Kind == DeviceKind.Cpu && work.Op is "gemm" or "attention"
                ? FmaPeak.Measure(BenchPeak.InlineSeconds, parallel: threads > 1) : null;
            var ours = new List<double>(); var theirs = new List<double>();
            var total = Stopwatch.StartNew();
            while (ours.Count < 5 || total.Elapsed.TotalSeconds < seconds * (reference is null ? 1 : 2))
            {
                for (int i = 0; i < reps; i++)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    work.Run();
                    device.Synchronize();
                    ours.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                }
                if (reference is not null) theirs.AddRange(reference.Run(reps));
                if (ours.Count >= 2000) break;
            }
            double ms = Median(ours);
            var shape = string.Join(" ", work.Shape.Select(kv => $"{kv.Key}={Fmt(kv.Value)}"));
            io.Out.WriteLine($"{work.Op} {shape} threads={threads} device={device} runs={ours.Count}");
            var result = new Dictionary<string, object> { ["op"] = work.Op };
            foreach (var kv in work.Shape) result[kv.Key] = kv.Value;
            result["threads"] = threads;
            result["device"] = device.ToString();
            if (peak is { } pk)
            {
                io.Out.WriteLine(BenchPeak.Describe(pk));
                result["peak_gflops"] = Significant(pk.Gflops);
                result["peak_vector_bits"] = pk.VectorBits;
            }
            Report(io, "AttnCore", ms, work, result, "", peak);
            if (reference is not null)
            {
                double tms = Median(theirs);
                Report(io, reference.Label, tms, work, result, reference.Key + "_", peak);
                double speedup = tms / ms;
                string who = reference.Key == "torch" ? "PyTorch" : "cuBLAS";
                io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  speedup   {speedup:F2}x ({who} time / AttnCore time)"));
                result["speedup"] = Math.Round(speedup, 3);
                if (reference.Configuration.Count > 0)
                {
                    io.Out.WriteLine(DescribeReference(reference.Configuration, torchSettings));
                    result[reference.Key + "_config"] = reference.Configuration;
                    if (reference.Key == "torch") result["torch_tuned"] = !torchSettings.Untuned;
                }
            }
            if (json) io.Json(result);
            return 0;
        }
        finally
        {
            reference?.Dispose();
            work.Cleanup();
        }
    }

    private static void Report(CliIO io, string who, double ms, Work work, Dictionary<string, object> result, string prefix, PeakMeasurement? peak)
    {
        result[prefix + "ms"] = Math.Round(ms, 4);
        string line = string.Create(CultureInfo.InvariantCulture, $"  {who,-16} {ms,10:F3} ms");
        if (work.Op is "softmax" or "layernorm")
        {
            double gbps = work.Bytes / (ms * 1e6);
            result[prefix + "gbps"] = Significant(gbps);
            line += string.Create(CultureInfo.InvariantCulture, $"  {gbps,8:F1} GB/s");
        }
        double gflops = work.Flops / (ms * 1e6);
        if (work.Flops > 0)
        {
            result[prefix + "gflops"] = Significant(gflops);
            line += string.Create(CultureInfo.InvariantCulture, $"  {gflops,8:F1} GFLOP/s");
        }
        if (peak is { } pk)
        {
            double fraction = gflops / pk.Gflops;
            result[prefix + "peak_fraction"] = Significant(fraction);
            line += string.Create(CultureInfo.InvariantCulture, $"  {100 * fraction,5:F1}% of peak");
        }
        if (work.Shape.TryGetValue("tokens", out var tokens))
        {
            double tps = Convert.ToDouble(tokens, CultureInfo.InvariantCulture) / (ms / 1e3);
            result[prefix + "tokens_per_s"] = Math.Round(tps, 1);
            line += string.Create(CultureInfo.InvariantCulture, $"  {tps,10:F0} tokens/s");
        }
        // The training-step benches state what one step processes (a batch of images, forecast windows or user
        // sequences): their throughput is that count over the median step, the figure the issues' targets name.
        foreach (string unit in new[] { "images", "windows", "sequences" })
            if (work.Shape.TryGetValue(unit, out var count))
            {
                double rate = Convert.ToDouble(count, CultureInfo.InvariantCulture) / (ms / 1e3);
                result[prefix + unit + "_per_s"] = Math.Round(rate, 2);
                line += string.Create(CultureInfo.InvariantCulture, $"  {rate,10:F1} {unit}/s");
            }
        io.Out.WriteLine(line);
    }

    // One line: what the reference process reported about itself, so a reader can judge the comparison.
    private static string DescribeReference(IReadOnlyDictionary<string, string> c, TorchSettings settings)
    {
        string Get(string key) => c.TryGetValue(key, out var v) ? v : "?";
        return $"  reference ({(settings.Untuned ? "untuned: inherited environment" : "tuned")}): PyTorch {Get("torch")}, BLAS core {Get("blas_core")} ({Get("blas_threads")} threads)"
            + $", allocator {Get("allocator")}, torch threads {Get("threads")}, OMP_WAIT_POLICY={Get("omp_wait_policy")}"
            + $", OPENBLAS_CORETYPE={Get("openblas_coretype")}"
            + (c.TryGetValue(TorchBridge.FallbackKey, out var generic) ? $" (set from the CPU's flags: by itself OpenBLAS chose {generic}, a generic core)" : "")
            + $", OPENBLAS_L2_SIZE={Get("openblas_l2_size")}, OPENBLAS_THREAD_TIMEOUT={Get("openblas_thread_timeout")}"
            + $", ATEN_CPU_CAPABILITY={Get("aten_cpu_capability")}"
            + (c.TryGetValue(TorchBridge.IsaMatchKey, out var held) ? $"; instruction set matched: {held}" : "");
    }

    private static string Fmt(object v) => v is bool b ? (b ? "true" : "false") : Convert.ToString(v, CultureInfo.InvariantCulture) ?? "";

    private static double Median(List<double> xs)
    {
        var s = xs.OrderBy(v => v).ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : 0.5 * (s[s.Length / 2 - 1] + s[s.Length / 2]);
    }

    // Rates keep 4 significant digits in JSON: fixed decimals would round an emulator's 0.004 GFLOP/s to 0.
    private static double Significant(double v)
    {
        if (v == 0 || !double.IsFinite(v)) return v;
        int digits = Math.Clamp(3 - (int)Math.Floor(Math.Log10(Math.Abs(v))), 0, 15);
        return Math.Round(v, digits);
    }
}
