using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using AttnCore.Distributed;
using AttnCore.Kernels.Cpu;
using AttnCore.Models.Transformers;
using AttnCore.Optim;

namespace AttnCore.Cli.Bench;

/// <summary>
/// <c>attncore bench allreduce</c> and <c>attncore bench ddp-step</c>, meant to run under mpirun (alone they measure a
/// world of one). Benchmarks/allreduce/run.sh runs the first next to a plain C loop over MPI_Allreduce, the reference
/// the binding's overhead is judged against. Only rank 0 prints.
/// </summary>
public static class BenchDistributed
{
    /// <summary>The two commands.</summary>
    public static IEnumerable<Command> Commands(CliIO io) => [Allreduce(io), DdpStep(io)];

    /// <summary>The GPT of <c>bench gpt-step</c> and <c>bench ddp-step</c> (vocabulary 65) and its batch: tiny, baby (the default) or small.</summary>
    public static (GptConfig Config, int Batch) GptStepConfig(string name) => name switch
    {
        "small" => (new GptConfig(65, BlockSize: 256, Layers: 6, Heads: 6, Dim: 384), 16),
        "tiny" => (new GptConfig(65, BlockSize: 16, Layers: 1, Heads: 2, Dim: 16), 2),
        _ => (new GptConfig(65, BlockSize: 64, Layers: 4, Heads: 4, Dim: 128), 12),
    };

    // The spread of repeated timings: each repetition's seconds averaged over the ranks, then the fastest, median and slowest.
    private static (double Min, double Median, double Max) Spread(Communicator world, double[] seconds)
    {
        world.AllreduceSum(seconds);
        var sorted = seconds.Select(s => s / world.Size).Order().ToArray();
        int m = sorted.Length / 2;
        return (sorted[0], sorted.Length % 2 == 1 ? sorted[m] : (sorted[m - 1] + sorted[m]) / 2, sorted[^1]);
    }

    private static Option<bool> JsonOption() => new("--json") { Description = "print the result as one JSON object on the last line" };

    // In-place float32 sum of --bytes over all ranks, timed per call after a warm-up; the figures are the mean over ranks.
    // Bus bandwidth is NCCL-tests' definition: a ring all-reduce moves 2 (p - 1) / p of the buffer through each link.
    private static Command Allreduce(CliIO io)
    {
        var bytes = NumericOption.Int("--bytes", "message size in bytes (float32 elements x 4)", 1 << 20, 4, 1 << 30);
        var iterations = NumericOption.Int("--iterations", "timed all-reduces", 100, 1, 1_000_000);
        var warmup = NumericOption.Int("--warmup", "untimed all-reduces first", 10, 0, 1_000_000);
        var json = JsonOption();
        var cmd = new Command("allreduce", "Latency and bus bandwidth of AttnCore's MPI_Allreduce (run it under mpirun -np N)") { bytes, iterations, warmup, json };
        cmd.SetAction(p =>
        {
            var world = Communicator.World;
            var say = world.IsPrimary ? io : new CliIO(TextWriter.Null, io.Err);
            int n = p.GetValue(bytes) / sizeof(float), iters = p.GetValue(iterations);
            var data = new float[n];
            for (int i = 0; i < p.GetValue(warmup); i++) { data.AsSpan().Fill(1); world.AllreduceSum(data); }
            data.AsSpan().Fill(1);
            world.AllreduceSum(data);
            if (data[0] != world.Size || data[^1] != world.Size)
                throw new InvalidOperationException($"bench allreduce: a sum of ones over {world.Size} ranks gave {data[0]} and {data[^1]}");
            var perCall = new double[iters];
            world.Barrier();
            var clock = Stopwatch.StartNew();
            long last = Stopwatch.GetTimestamp();
            for (int i = 0; i < iters; i++)
            {
                world.AllreduceSum(data);
                long now = Stopwatch.GetTimestamp();
                perCall[i] = Stopwatch.GetElapsedTime(last, now).TotalSeconds;
                last = now;
            }
            double seconds = world.AllreduceSum(clock.Elapsed.TotalSeconds) / world.Size / iters;
            var (fastest, median, slowest) = Spread(world, perCall);
            long size = (long)n * sizeof(float);
            double algorithmGBs = size / seconds / 1e9, busGBs = world.Size == 1 ? 0 : algorithmGBs * 2.0 * (world.Size - 1) / world.Size;
            say.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"allreduce float32 sum, {size:N0} bytes, {world.Size} ranks: {seconds * 1e6:F1} us per call (min {fastest * 1e6:F1}, median {median * 1e6:F1}, max {slowest * 1e6:F1}), algorithm bandwidth {algorithmGBs:F3} GB/s, bus bandwidth {busGBs:F3} GB/s ({iters} calls)"));
            if (p.GetValue(json))
                say.Json(new { op = "allreduce", bytes = size, ranks = world.Size, iterations = iters, latency_us = seconds * 1e6, latency_us_min = fastest * 1e6,
                    latency_us_median = median * 1e6, latency_us_max = slowest * 1e6, algbw_gbs = algorithmGBs, busbw_gbs = busGBs });
            world.Dispose();
            return 0;
        });
        return cmd;
    }

    // GPT training steps with DataParallel, each rank on its own batch of the config's size (weak scaling: samples/s grow
    // with ranks when communication hides behind backward). Then the same gradient bytes are all-reduced blocking, bucket
    // by bucket, to get what communication would cost unhidden; the overlap share is 1 - exposed / that.
    private static Command DdpStep(CliIO io)
    {
        var config = new Option<string>("--config") { Description = "tiny (1 layer, 16 channels), baby (4, 128) or small (6, 384): as bench gpt-step", DefaultValueFactory = _ => "baby" }.AcceptOnlyFromAmong("tiny", "baby", "small");
        var steps = NumericOption.Int("--steps", "timed training steps (after 2 warm-up steps)", 10, 1, 100_000);
        var threads = NumericOption.Int("--threads", "CPU worker threads per rank", 1, 1, 1024);
        var bucketMb = NumericOption.Number("--bucket-mb", "gradient bucket size, MiB", DataParallelOptions.DefaultBucketBytes / (double)(1 << 20), 1.0 / (1 << 20), 1 << 20);
        var json = JsonOption();
        var cmd = new Command("ddp-step", "Data-parallel GPT training steps: samples/s, and the share of all-reduce time hidden behind backward (run it under mpirun -np N)") { config, steps, threads, bucketMb, json };
        cmd.SetAction(p =>
        {
            WorkerPool.ThreadCount = p.GetValue(threads);
            var world = Communicator.World;
            var say = world.IsPrimary ? io : new CliIO(TextWriter.Null, io.Err);
            string name = p.GetValue(config) ?? "baby";
            var (cfg, batch) = GptStepConfig(name);
            using var model = new Gpt(cfg, new Generator(1));
            long bucketBytes = (long)Math.Max(1, Math.Round(p.GetValue(bucketMb) * (1 << 20)));
            using var dp = new DataParallel(world, model.NamedParameters(), model.NamedBuffers(), new DataParallelOptions { BucketBytes = bucketBytes });
            using var opt = new AdamW(model.Parameters(), 1e-3, 0.9, 0.99, 1e-8, 0.1);
            using var x = Tensor.RandInt(0, 65, [batch, cfg.BlockSize], 5 + (ulong)world.Rank);
            using var y = Tensor.RandInt(0, 65, [batch, cfg.BlockSize], 6 + (ulong)world.Rank);
            void Step()
            {
                using var scope = new TensorScope();
                opt.ZeroGrad();
                model.Loss(x, y).Backward();
                dp.SynchronizeGradients();
                opt.Step();
            }
            Step(); Step();
            double exposedBefore = dp.ExposedCommunicationSeconds;
            int n = p.GetValue(steps);
            var perStep = new double[n];
            world.Barrier();
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < n; i++)
            {
                long start = Stopwatch.GetTimestamp();
                Step();
                perStep[i] = Stopwatch.GetElapsedTime(start).TotalSeconds;
            }
            double stepSeconds = world.AllreduceSum(clock.Elapsed.TotalSeconds) / world.Size / n;
            var (fastest, median, slowest) = Spread(world, perStep);
            double exposed = world.AllreduceSum(dp.ExposedCommunicationSeconds - exposedBefore) / world.Size / n;
            // The same bytes in the same bucket sizes, blocking: communication as it would cost with nothing to hide behind.
            long elements = model.Parameters().Sum(t => t.Numel);
            var grads = new float[elements];
            int perBucket = (int)Math.Clamp(bucketBytes / sizeof(float), 1, Array.MaxLength);
            world.Barrier();
            var comm = Stopwatch.StartNew();
            for (int i = 0; i < n; i++)
                for (long at = 0; at < elements; at += perBucket)
                    world.AllreduceSum(grads.AsSpan((int)at, (int)Math.Min(perBucket, elements - at)));
            double allreduce = world.AllreduceSum(comm.Elapsed.TotalSeconds) / world.Size / n;
            double hidden = world.Size == 1 || allreduce <= 0 ? 0 : Math.Clamp(1 - exposed / allreduce, 0, 1);
            double samples = (double)batch * world.Size / stepSeconds;
            say.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"ddp-step {name}: {world.Size} rank{(world.Size == 1 ? "" : "s")} x {WorkerPool.ThreadCount} thread{(WorkerPool.ThreadCount == 1 ? "" : "s")}, batch {batch} per rank, {model.ParameterCount():N0} parameters in {dp.BucketCount} buckets"));
            say.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  step {stepSeconds * 1e3:F1} ms (min {fastest * 1e3:F1}, median {median * 1e3:F1}, max {slowest * 1e3:F1}), {samples:F1} samples/s; all-reduce {allreduce * 1e3:F2} ms a step blocking, {exposed * 1e3:F2} ms exposed after backward: {hidden * 100:F0}% hidden"));
            if (p.GetValue(json))
                say.Json(new { op = "ddp-step", config = name, ranks = world.Size, threads = WorkerPool.ThreadCount, batch_per_rank = batch, step_ms = stepSeconds * 1e3,
                    step_ms_min = fastest * 1e3, step_ms_median = median * 1e3, step_ms_max = slowest * 1e3,
                    samples_per_s = samples, allreduce_ms = allreduce * 1e3, exposed_ms = exposed * 1e3, hidden_share = hidden, buckets = dp.BucketCount });
            dp.Dispose();
            world.Dispose();
            return 0;
        });
        return cmd;
    }
}
